"""The CUDA path of pretraining (skipped without a GPU; benchmarks/gpu_pretrain.py runs more)."""

import json

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)"),
]


@pytest.mark.parametrize("sim", ["linear", "wpse", "kme"])
def test_bf16_pretrain_on_cuda_runs_and_resumes(tmp_path, sim):
    from pmilab.cli import main

    out = tmp_path / "run"
    args = ["pretrain", "--data", "digits", "--tower", "hf-vit", "--text-tower", "clip"]
    args += ["--image-size", "16", "--width", "32", "--dim", "8", "--similarity", sim]
    args += ["--batch-size", "16", "--accum-freq", "2", "--warmup", "1", "--device", "cuda"]
    args += ["--precision", "bf16", "--grad-checkpointing", "--no-progress", "--out", str(out)]
    assert main([*args, "--steps", "3"]) == 0
    assert main([*args, "--steps", "5", "--resume"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["precision"] == "bf16"
    assert summary["final_loss"] == summary["final_loss"]  # finite (not NaN)


@pytest.mark.parametrize("sim", ["linear", "wpse", "kme"])
def test_accumulation_is_exact_on_cuda_in_fp64(sim):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_accum import assert_same, batch, model_for

    from pmilab.pretrain.accum import accumulate

    images, ids, mask = (t.cuda() for t in batch(16))
    ref = model_for(sim).cuda()
    loss = ref(images, ids, mask)
    loss.backward()
    model = model_for(sim).cuda()
    micro = [(images[a : a + 4], ids[a : a + 4], mask[a : a + 4]) for a in range(0, 16, 4)]
    got = accumulate(model, model, micro)

    def grads(m):
        return {n: p.grad.cpu() for n, p in m.named_parameters() if p.grad is not None}

    assert_same((loss.item(), grads(ref)), (got.item(), grads(model)))
