"""`pmilab fit` end to end: a user table in, metrics.json + logits.npy out, bad input -> one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pmilab import metrics as M
from pmilab.cli import main
from pmilab.dists import random_latent_class
from pmilab.training.evaluate import EVAL_SEED_OFFSET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def user_table(tmp_path_factory):
    d = random_latent_class(12, 9, 3, concentration=0.5, seed=2)
    path = tmp_path_factory.mktemp("tables") / "mytable.npy"
    np.save(path, d.table.numpy())
    return path


def test_user_table_kme_writes_files_that_agree(user_table, tmp_path, capsys):
    out = tmp_path / "D"
    rc = main(
        [
            "fit",
            "--dist",
            str(user_table),
            "--similarity",
            "kme",
            "--points",
            "4",
            "--dim",
            "4",
            "--steps",
            "300",
            "--batch-size",
            "512",
            "--seed",
            "1",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert "pmi_rmse_product=" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    logits = torch.from_numpy(np.load(out / "logits.npy"))
    assert logits.shape == (12, 9) and logits.dtype == torch.float64
    # recompute every metric from logits.npy and the user's table alone
    p = torch.from_numpy(np.load(user_table)).double()
    px, py = p.sum(1), p.sum(0)
    pmi = p.log() - px.log()[:, None] - py.log()[None, :]
    prod = px[:, None] * py[None, :]
    want = {
        "pmi_rmse_product": M.pmi_rmse_product(logits, pmi, prod),
        "pmi_rmse_joint": M.pmi_rmse_joint(logits, pmi, p),
        "pmi_delta": M.pmi_delta(logits, pmi, prod),
        "pmi_corr": M.pmi_corr(logits, pmi, prod),
        "excess_loss": M.excess_loss(logits, p),
        "mutual_information": M.mutual_information_table(p),
    }
    for k, v in want.items():
        assert metrics[k] == pytest.approx(float(v), rel=1e-9, abs=1e-12), k
    # mi_infonce: the held-out batches are reproducible from the seed
    n, k = 512, json.loads((out / "config.json").read_text())["eval_batches"]
    flat = torch.multinomial(
        p.flatten(),
        n * k,
        replacement=True,
        generator=torch.Generator().manual_seed(EVAL_SEED_OFFSET + 1),
    )
    x, y = (flat // 9).view(k, n), (flat % 9).view(k, n)
    mats = torch.stack([logits[xb][:, yb] for xb, yb in zip(x, y, strict=True)])
    assert metrics["mi_infonce"] == pytest.approx(float(M.mi_infonce(mats)), rel=1e-6)
    assert metrics["pmi_rmse_product"] < 0.5  # trained, not left at init (init rmse ~ 1)


def test_csv_table_and_named_spec(tmp_path, user_table):
    csv = tmp_path / "t.csv"
    np.savetxt(csv, np.load(user_table), delimiter=",")
    assert (
        main(
            [
                "fit",
                "--dist",
                str(csv),
                "--similarity",
                "tabular",
                "--steps",
                "20",
                "--quiet",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "a" / "logits.npy").shape == (12, 9)
    assert (
        main(
            [
                "fit",
                "--dist",
                "gaussian:dx=1,dy=1,rho=0.75",
                "--similarity",
                "linear",
                "--steps",
                "10",
                "--batch-size",
                "32",
                "--quiet",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    assert (tmp_path / "b" / "metrics.json").exists()
    assert not (tmp_path / "b" / "logits.npy").exists()  # continuous: no table


def _bad_tables(tmp_path):
    neg = tmp_path / "neg.npy"
    np.save(neg, np.array([[0.5, -0.1], [0.3, 0.3]]))
    unnorm = tmp_path / "unnorm.npy"
    np.save(unnorm, np.ones((3, 3)))
    cube = tmp_path / "cube.npy"
    np.save(cube, np.ones((2, 2, 2)) / 8)
    text = tmp_path / "text.csv"
    text.write_text("a,b\nc,d\n")
    return [neg, unnorm, cube, text, tmp_path / "missing.npy", tmp_path / "table.txt"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--similarity", "cosine"],
        ["--steps", "0"],
        ["--steps", "many"],
        ["--temperature", "0"],
        ["--sigma", "-1"],
        ["--points", "0"],
        ["--lr", "nan"],
        ["--device", "tpu"],
    ],
)
def test_bad_numbers_and_names_exit_2_with_one_line(extra, user_table, tmp_path, capsys):
    rc = main(["fit", "--dist", str(user_table), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("pmilab fit: error:"), err
    assert not (tmp_path / "o").exists()


def test_bad_tables_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "table.txt").write_text("1")
    for path in _bad_tables(tmp_path):
        rc = main(["fit", "--dist", str(path), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, (path, err)
        assert "Traceback" not in err


def test_installed_entry_point_prints_no_traceback(tmp_path):
    exe = Path(sys.executable).parent / "pmilab"
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[0.5, -0.1], [0.3, 0.3]]))
    proc = subprocess.run(
        [str(exe), "fit", "--dist", str(bad), "--similarity", "kme", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "negative" in proc.stderr


def test_divergence_exits_nonzero_and_names_the_step(user_table, tmp_path, capsys):
    out = tmp_path / "nan"
    rc = main(
        [
            "fit",
            "--dist",
            str(user_table),
            "--similarity",
            "kme",
            "--lr",
            "1e30",
            "--steps",
            "30",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "training stopped at step" in err
    assert json.loads((out / "metrics.json").read_text())["stopped_at_step"] >= 0
    assert np.isfinite(np.load(out / "logits.npy")).all()


def test_seeds_train_as_one_batch_and_equal_single_seed_runs(tmp_path, capsys):
    """`--seeds 0:3` writes OUT/seed<s>/ whose metrics equal `--seed s` runs exactly, and
    prints the mean ± SE over seeds computed from those per-seed values."""
    import json

    from pmilab.stats import mean_se

    common = ["--dist", "latent:nx=6,ny=5,k=2,seed=0", "--similarity", "kme", "--dim", "2"]
    common += ["--points", "2", "--steps", "30", "--population", "--quiet"]
    assert main(["fit", *common, "--seeds", "0:3", "--out", str(tmp_path / "many")]) == 0
    out = capsys.readouterr().out
    vals = []
    for s in range(3):
        assert main(["fit", *common, "--seed", str(s), "--out", str(tmp_path / f"one{s}")]) == 0
        one = json.loads((tmp_path / f"one{s}" / "metrics.json").read_text())
        many = json.loads((tmp_path / "many" / f"seed{s}" / "metrics.json").read_text())
        assert one == many
        vals.append(one["pmi_rmse_product"])
    e = mean_se(torch.tensor(vals, dtype=torch.float64))
    assert f"pmi_rmse_product={float(e):.4g}±{e.se:.2g}" in out


@pytest.mark.parametrize(
    "seeds, match",
    [
        ("3:1", "names no seed"),
        ("a,b", "comma-separated list"),
        ("0:999999999", "at most 100000"),
        ("1,1", "distinct"),
        ("0,-2", "non-negative"),
    ],
)
def test_bad_seeds_exit_2_with_one_line(seeds, match, tmp_path, capsys):
    rc = main(
        [
            "fit",
            "--dist",
            "latent:nx=6,ny=5,k=2,seed=0",
            "--seeds",
            seeds,
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and match in err and "\n" not in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
