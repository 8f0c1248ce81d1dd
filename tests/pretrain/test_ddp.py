"""DDP equivalence (must-show): 2 gloo ranks == one process on the concatenated batch."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pmilab.losses import symmetric_infonce

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import B_LOCAL, batch, model_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-6  # the bar; float64 differences here are ~1e-15 (summation order only)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


PRETRAIN = [
    "pretrain",
    "--data",
    "digits",
    "--image-size",
    "8",
    "--width",
    "16",
    "--dim",
    "4",
    "--similarity",
    "wpse",
    "--points",
    "2",
    "--steps",
    "3",
    "--warmup",
    "1",
    "--precision",
    "fp64",
    "--threads",
    "1",
    "--no-progress",
]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One torchrun launch: the gradient checks, then `pmilab pretrain` with 2 ranks x 2 x 2 pairs."""
    tmp = tmp_path_factory.mktemp("ddp")
    proc = torchrun(
        [
            str(Path(__file__).parent / "ddp_worker.py"),
            str(tmp / "ddp.pt"),
            *PRETRAIN,
            "--batch-size",
            "2",
            "--accum-freq",
            "2",
            "--out",
            str(tmp / "d"),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp


@pytest.fixture(scope="module")
def ddp_results(ddp_run):
    return torch.load(ddp_run / "ddp.pt")


@pytest.mark.parametrize("sim", ["linear", "wpse", "kme"])
def test_ddp_loss_and_grads_equal_single_process(ddp_results, sim):
    images, ids, mask = batch(2 * B_LOCAL)
    model = model_for(sim)
    loss = model(images, ids, mask)
    loss.backward()
    # independent reference for the loss: the engine's symmetric InfoNCE on the full matrix
    with torch.no_grad():
        lm = model.logit_matrix(*model.encode_image(images), *model.encode_text(ids, mask))
    assert torch.allclose(loss, symmetric_infonce(lm), atol=1e-12, rtol=0)
    got = ddp_results[sim]
    assert abs(got["loss"].item() - loss.item()) < TOL
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(got["grads"]) == set(grads)
    # the similarity's own parameters (scale / bandwidth) are among them
    assert any(n.startswith("similarity.") for n in grads)
    worst = max((got["grads"][n] - g).abs().max().item() for n, g in grads.items())
    assert worst < TOL, f"max gradient difference {worst:.3g}"
    # and the gradients are not trivially zero
    assert max(g.abs().max().item() for g in grads.values()) > 1e-4


@pytest.mark.parametrize("sim", ["linear", "wpse", "kme"])
def test_ddp_with_accumulation_equals_single_process_on_the_concatenated_batch(ddp_results, sim):
    """2 ranks x 2 micro-batches of B (exact accumulation) == one process on all 4B pairs."""
    images, ids, mask = batch(4 * B_LOCAL)
    model = model_for(sim)
    loss = model(images, ids, mask)
    loss.backward()
    got = ddp_results[sim + "-accum"]
    assert abs(got["loss"].item() - loss.item()) < TOL
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(got["grads"]) == set(grads)
    worst = max((got["grads"][n] - g).abs().max().item() for n, g in grads.items())
    assert worst < TOL, f"max gradient difference {worst:.3g}"


def test_torchrun_pretrain_equals_single_process_on_the_global_batch(ddp_run, tmp_path):
    """End to end: `pmilab pretrain` on 2 ranks x 2 micro-batches x 2 pairs (--accum-freq 2)
    == 1 process x 8 pairs (3 steps)."""
    from pmilab.cli import main

    assert main([*PRETRAIN, "--batch-size", "8", "--out", str(tmp_path / "s")]) == 0
    a = torch.load(ddp_run / "d" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "s" / "ckpt.pt", weights_only=True)
    assert a["config"]["batch_size"] * 2 * 2 == b["config"]["batch_size"]
    assert a["config"]["accum_freq"] == 2 and a["world_size"] == 2
    worst = max((a["model"][k] - b["model"][k]).abs().max().item() for k in b["model"])
    assert worst < TOL, f"parameters differ by {worst:.3g} after 3 AdamW steps"
    import json

    losses = [
        json.loads((d / "summary.json").read_text())["final_loss"]
        for d in (ddp_run / "d", tmp_path / "s")
    ]
    assert abs(losses[0] - losses[1]) < TOL  # the logged loss is the global batch's
    moved = max((b["model"][k] - v).abs().max().item() for k, v in initial_state().items())
    assert moved > 1e-4  # the steps did move the parameters


def initial_state() -> dict:
    """The seed-0 initial parameters of the run above (same config, vocab from digits)."""
    from pmilab.pretrain.model import ModelConfig, build_model
    from pmilab.pretrain.readers import load_data
    from pmilab.pretrain.tokenizer import train_tokenizer

    vocab = train_tokenizer(load_data("digits").captions).get_vocab_size()
    torch.manual_seed(0)
    cfg = ModelConfig(similarity="wpse", vocab=vocab, width=16, dim=4, points=2, image_size=8)
    return build_model(cfg).double().state_dict()


def test_torchrun_streams_shards_split_by_rank_and_merges_skips(tmp_path):
    """2 ranks stream 4 shards (2 each); one corrupt image on one rank is counted once, in the
    summary rank 0 writes (the skip logs are merged over ranks)."""
    import json

    import webdataset as wds
    from test_stream import png

    rng = torch.Generator().manual_seed(0)
    for s in range(4):
        with wds.TarWriter(str(tmp_path / f"data-{s:03d}.tar")) as w:
            for j in range(6):
                pixels = (torch.rand(8, 8, 3, generator=rng) * 255).to(torch.uint8).numpy()
                image = b"garbage" if (s, j) == (3, 1) else png(pixels)
                w.write({"__key__": f"k{s}-{j}", "png": image, "txt": f"sample {s} {j}"})
    out = tmp_path / "run"
    args = ["-m", "pmilab", "pretrain", "--data", str(tmp_path / "data-{000..003}.tar")]
    args += ["--image-size", "8", "--width", "16", "--dim", "4", "--batch-size", "4"]
    args += ["--steps", "8", "--warmup", "1", "--threads", "1", "--no-progress", "--out", str(out)]
    proc = torchrun(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 8
    assert summary["skipped"] == {"corrupt_image": 1}  # 8 steps x 4 of 12 per rank: 2+ epochs
    # named in one warning: a shard always lives on the same rank
    assert proc.stderr.count(f"skipped (corrupt image): {tmp_path / 'data-003.tar'}:k3-1") == 1


def test_torchrun_with_clipping_crops_and_schedule_equals_single_process(tmp_path):
    """The loop flags of issue 26 under DDP: --grad-clip-norm clips the global gradient (after
    the all-reduce), --aug rrc draws each sample's crop from its own index (not the rank), and
    --lr-scheduler const: 2 ranks x 2 micro-batches x 2 pairs ==
    1 process x 8 pairs, and the clipping is active (a run without it ends elsewhere)."""
    from pmilab.cli import main

    flags = ["--grad-clip-norm", "0.05", "--aug", "rrc", "--lr-scheduler", "const", "--steps", "4"]
    base = [a for a in PRETRAIN if a not in ("--steps", "3")]
    proc = torchrun(
        ["-m", "pmilab", *base, *flags, "--batch-size", "2", "--accum-freq", "2"]
        + ["--out", str(tmp_path / "d")]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main([*base, *flags, "--batch-size", "8", "--out", str(tmp_path / "s")]) == 0
    unclipped = [a for a in flags if a not in ("--grad-clip-norm", "0.05")]
    assert main([*base, *unclipped, "--batch-size", "8", "--out", str(tmp_path / "u")]) == 0
    a, b, u = (
        torch.load(tmp_path / k / "ckpt.pt", weights_only=True)["model"] for k in ("d", "s", "u")
    )
    worst = max((a[k] - b[k]).abs().max().item() for k in b)
    assert worst < TOL, f"parameters differ by {worst:.3g} after 4 steps"
    assert max((u[k] - b[k]).abs().max().item() for k in b) > 1e3 * TOL  # clipping mattered
