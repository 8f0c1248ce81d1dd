"""benchmarks/gpu_pretrain.py: argument checks and a CPU dry run through every code path."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import gpu_pretrain  # noqa: E402


def test_dry_run_writes_results_named_after_the_machine(tmp_path):
    assert gpu_pretrain.main(["--dry-run", "--out-dir", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "pretrain-dry-run-cpu.json").read_text())
    assert set(res["smoke"]) == set(res["step"]) == set(res["heads"]) == {"linear", "wpse", "kme"}
    for r in res["smoke"].values():  # bf16 autocast path of `pmilab pretrain`, on the CPU
        assert r["ok"] and r["precision"] == "bf16" and r["images_per_s"] > 0
    assert res["gemm"]["bf16_tflops"] > 0 and res["step"]["linear"]["step_ratio"] == 1.0
    md = (tmp_path / "pretrain-dry-run-cpu.md").read_text()
    assert md.startswith("# GPU check of pretraining: dry-run-cpu") and "| kme | True |" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_and_without_dry_run_it_refuses(tmp_path, capsys):
    assert gpu_pretrain.main(["--out-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "gpu_pretrain: error: no CUDA device here; use --dry-run on a CPU"
    )
    assert not list(tmp_path.iterdir())


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as e:
        gpu_pretrain.main(["--dry-run", "--steps", "0"])
    assert e.value.code == 2
