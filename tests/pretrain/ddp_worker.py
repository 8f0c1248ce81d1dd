"""Run by torchrun (2 ranks, gloo) from test_ddp.py: one DDP forward/backward per similarity.

Every rank builds the same float64 model from seed 0 and the same batch of 2B pairs, keeps its
B-slice, and runs the model's forward (local-slab loss, pmilab.runtime.distributed) under DDP. Rank 0
saves the mean of the local losses and the DDP-averaged gradients to argv[1]. The same again
with exact accumulation: each rank's 2B-slice of a 4B batch as 2 micro-batches of B
(pmilab.pretrain.accum). Then both ranks run `pmilab pretrain` argv[2:] in the same process
group (one torchrun launch for all the tests).
"""

import sys

import torch
import torch.distributed as dist

from pmilab.pretrain.model import ModelConfig, build_model
from pmilab.runtime import distributed

B_LOCAL = 3


def batch(n: int):
    g = torch.Generator().manual_seed(123)
    images = torch.randn(n, 3, 16, 16, generator=g, dtype=torch.float64)
    ids = torch.randint(3, 20, (n, 6), generator=g)
    ids[:, 0] = 2
    ids[n // 2 :, 4:] = 0  # some padding
    return images, ids, ids != 0


def model_for(sim: str):
    torch.manual_seed(0)
    cfg = ModelConfig(similarity=sim, vocab=20, context=6, width=16, dim=8, points=3, image_size=16)
    return build_model(cfg).double()


def accumulated(sim: str, info) -> dict:
    """2 micro-batches of B per rank under DDP; the reference is one process on all 4B pairs."""
    from pmilab.pretrain.accum import accumulate

    images, ids, mask = batch(2 * B_LOCAL * info.world)
    mine = slice(info.rank * 2 * B_LOCAL, (info.rank + 1) * 2 * B_LOCAL)
    images, ids, mask = images[mine], ids[mine], mask[mine]
    micro = [
        (images[a : a + B_LOCAL], ids[a : a + B_LOCAL], mask[a : a + B_LOCAL]) for a in (0, B_LOCAL)
    ]
    model = model_for(sim)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    loss = accumulate(model, ddp, micro, distributed=True).clone()
    dist.all_reduce(loss)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {"loss": loss / info.world, "grads": grads}


def main() -> None:
    info = distributed.detect()
    distributed.init(info, torch.device("cpu"))
    images, ids, mask = batch(B_LOCAL * info.world)
    sl = slice(info.rank * B_LOCAL, (info.rank + 1) * B_LOCAL)
    results = {}
    for sim in ("linear", "wpse", "kme"):
        model = model_for(sim)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        loss = ddp(images[sl], ids[sl], mask[sl])
        loss.backward()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        results[sim] = {
            "loss": mean_loss / info.world,
            "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
        }
        results[sim + "-accum"] = accumulated(sim, info)
    if info.main:
        torch.save(results, sys.argv[1])
    from pmilab.cli import main as cli

    rc = cli(sys.argv[2:])
    distributed.shutdown()  # pretrain already left the group on success; a no-op then
    sys.exit(rc)


if __name__ == "__main__":
    main()
