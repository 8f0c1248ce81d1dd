"""Data-parallel contrastive loss: all-gather with gradients and the local slab (docs/architecture.md).

Under `torchrun` each of K ranks holds a local batch of B pairs. Every rank gathers the
embeddings (or points and weights) of all K·B pairs, *with* gradients, and computes only its
own slab of the (KB, KB) logit matrix: its B images against all texts and its B texts against
all images (open_clip's `gather_with_grad` + `local_loss`). The local loss is

    L_r = 1/(2B) Σ_{i∈r} [−L_ii + logsumexp_j L_ij] + 1/(2B) Σ_{j∈r} [−L_jj + logsumexp_i L_ij]

so mean_r L_r is exactly the symmetric InfoNCE of the concatenated batch (docs/theory.md T1), and
since the gather's backward sums every rank's contribution into the owner's tensor, the DDP
gradient average mean_r ∂L_r/∂θ is exactly its gradient.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from pmilab.losses import infonce_two_way, symmetric_infonce


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


# open_clip's `world_info_from_env` order: torchrun's variables first, then MPI / SLURM / OpenMPI.
RANK_VARS = ("RANK", "PMI_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK")
WORLD_VARS = ("WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
LOCAL_VARS = ("LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK")


def _first(env, names: tuple[str, ...], default: int) -> int:
    for name in names:
        if env.get(name, "") != "":
            return int(env[name])
    return default


def detect(env=None) -> DistInfo:
    """Rank, world size and local rank from the launcher's environment (open_clip's rule).

    torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; under `srun` (SLURM) the same come from
    SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (and PMI_* / OMPI_COMM_WORLD_* under MPI). The
    first variable present wins, torchrun's first. `init` exports the resolved values as RANK /
    WORLD_SIZE / LOCAL_RANK, so `init_process_group("env://")` finds them (MASTER_ADDR and
    MASTER_PORT come from the launch script; README has an sbatch example).
    """
    env = os.environ if env is None else env
    world = _first(env, WORLD_VARS, 1)
    if world <= 1:
        return DistInfo()
    return DistInfo(_first(env, RANK_VARS, 0), world, _first(env, LOCAL_VARS, 0))


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group (nccl on CUDA, gloo on CPU) when running on several ranks."""
    if info.world > 1 and not dist.is_initialized():
        os.environ["RANK"], os.environ["WORLD_SIZE"] = str(info.rank), str(info.world)
        os.environ["LOCAL_RANK"] = str(info.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown() -> None:
    """Leave the process group cleanly: wait for every rank, then destroy it. Leaving it to
    interpreter exit lets one rank tear down its gloo sockets while another still uses them,
    which can abort the process ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather in forward; backward sums the gradient over ranks and keeps the own slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = rank, x.shape[0]
        return torch.cat(parts, 0)  # (world * B, ...)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: Tensor) -> Tensor:
    """(B, ...) on each rank -> (world·B, ...) in rank order, differentiable; identity if 1 rank."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def local_infonce(
    logit_matrix: Callable[..., Tensor], img: tuple[Tensor, ...], txt: tuple[Tensor, ...]
) -> Tensor:
    """The local slab loss L_r above; with one process, the symmetric InfoNCE of the batch.

    img, txt: this rank's encoder outputs (tuples: (z,) or (points, weights)), each (B, ...).
    logit_matrix(*img_parts, *txt_parts) -> (rows, cols) logits.
    """
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return symmetric_infonce(logit_matrix(*img, *txt))  # (B, B) logits
    all_img = tuple(gather_with_grad(t) for t in img)
    all_txt = tuple(gather_with_grad(t) for t in txt)
    b = img[0].shape[0]
    per_image = logit_matrix(*img, *all_txt)  # (B, world·B): local images vs all texts
    per_text = logit_matrix(*all_img, *txt).T  # (B, world·B): local texts vs all images
    return infonce_two_way(per_image, per_text, offset=dist.get_rank() * b)
