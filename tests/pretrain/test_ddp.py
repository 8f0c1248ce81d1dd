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
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
           "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "ddp.pt"
    proc = torchrun([str(Path(__file__).parent / "ddp_worker.py"), str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out)


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
