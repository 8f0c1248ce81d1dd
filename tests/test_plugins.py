"""A head and a joint written outside pmilab (tests/plugin_pkg, its own pyproject.toml with entry
points) plug in with no edit to pmilab/: by import path on sys.path, and by entry-point name
from an installed distribution's metadata (a dist-info built on a tmp path from that
pyproject.toml). docs/extending.md walks through the same package."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

import pmilab as pl
from pmilab import registry
from pmilab.cli import main
from pmilab.interfaces import HeadInputs

PLUGIN = Path(__file__).resolve().parent / "plugin_pkg"
HEAD = "pmilab_plugin_demo.heads:MixtureHead"
JOINT = "pmilab_plugin_demo.joints:noisy_channel"
LATENT = "latent:nx=24,ny=20,k=8,seed=0"


@pytest.fixture
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    return PLUGIN


def cli(*args: str) -> subprocess.Popen:
    """`python -m pmilab ARGS` in a fresh process that sees the plugin only on PYTHONPATH."""
    path = [str(PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.Popen(
        [sys.executable, "-m", "pmilab", *args], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_cli_fit_trains_the_plugin_head_and_joint_and_the_mixture_beats_linear(tmp_path):
    """The mixture of K=4 linear parts of D=2 against a linear head of the same size, d=8, on a
    K=8 latent joint (population loss, so both are deterministic). Measured: 0.140 against
    0.343; the assertion asks for less than 0.6 times the linear head's error."""
    common = ["fit", "--quiet", "--dist", LATENT, "--population", "--steps", "300"]
    runs = {
        "mix": cli(*common, "--similarity", HEAD, "--dim", "2", "--points", "4",
                   "--out", str(tmp_path / "mix")),
        "lin": cli(*common, "--similarity", "linear", "--dim", "8", "--out", str(tmp_path / "lin")),
        "joint": cli("fit", "--quiet", "--dist", JOINT, "--similarity", "kme", "--dim", "2",
                     "--points", "2", "--steps", "30", "--batch-size", "32",
                     "--out", str(tmp_path / "joint")),
    }  # fmt: skip
    for name, proc in runs.items():
        rc, err = finish(proc)
        assert rc == 0, (name, err)
    metrics = {n: json.loads((tmp_path / n / "metrics.json").read_text()) for n in runs}
    config = {n: json.loads((tmp_path / n / "config.json").read_text()) for n in runs}
    assert config["mix"]["similarity"] == HEAD  # the spec is what the run records
    assert config["joint"]["dist"].startswith("NoisyChannel(")
    assert metrics["mix"]["pmi_rmse_product"] < 0.6 * metrics["lin"]["pmi_rmse_product"]
    assert math.isfinite(metrics["joint"]["pmi_rmse_product"])


def test_a_broken_head_or_joint_is_one_line_and_exit_2(plugin_path, tmp_path, capsys):
    cases = [
        (["--similarity", "pmilab_plugin_demo.broken:NoLogits"], "has no logit_matrix"),
        (["--dist", "pmilab_plugin_demo.broken:NoDims"], "has no dim_x, dim_y"),
        (["--similarity", "pmilab_plugin_demo.heads:Nope"], "has no 'Nope'"),
        (["--similarity", "no_such_pkg.mod:Head"], "no module named 'no_such_pkg'"),
        (["--similarity", "no-such-head"], "unknown similarity 'no-such-head'"),
    ]
    for i, (args, message) in enumerate(cases):
        argv = ["fit", "--quiet", "--steps", "2", "--out", str(tmp_path / str(i))]
        if "--dist" not in args:
            argv += ["--dist", "latent:nx=4,ny=4,k=2"]
        assert main(argv + args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)
        assert not (tmp_path / str(i)).exists()  # refused before anything was written


def test_pretrain_records_the_plugin_spec_and_eval_resolves_it(plugin_path, tmp_path, capsys):
    """The tiny settings of tests/pretrain (digits at 8 px, a width-16 CNN, 3 steps)."""
    run = tmp_path / "run"
    argv = ["pretrain", "--data", "digits", "--image-size", "8", "--width", "16", "--dim", "4"]
    argv += ["--points", "3", "--batch-size", "16", "--warmup", "1", "--steps", "3"]
    assert main([*argv, "--no-progress", "--similarity", HEAD, "--out", str(run)]) == 0
    ckpt = torch.load(run / "ckpt.pt", weights_only=False)
    assert ckpt["model_config"]["similarity"] == HEAD
    out = tmp_path / "eval"
    ev = ["eval", "--checkpoint", str(run), "--data", "digits", "--n", "40", "--no-progress"]
    assert main([*ev, "--out", str(out), "--similarity", HEAD]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert res["similarity"] == HEAD and 0.0 <= res["zeroshot_top1"] <= 1.0
    capsys.readouterr()
    assert main([*ev, "--out", str(tmp_path / "e2"), "--similarity", "linear"]) == 2
    assert f"trained with --similarity {HEAD}, not linear" in capsys.readouterr().err


def _worker_fit(p: dict) -> dict:
    """What a sweep's worker runs: the continuous task on plain-text specs, one torch thread."""
    from pmilab.experiments.framework.sweep import execute
    from pmilab.experiments.tasks.continuous import continuous_head

    return execute(continuous_head, p)[0]


def test_a_spawned_worker_resolves_the_same_specs(plugin_path):
    """The sweep's own process pool (spawn): the worker imports the specs from the path it
    inherited and gives the metrics this process gives."""
    from pmilab.experiments.framework import executors

    p = {"dist": JOINT, "similarity": HEAD, "dim": 2, "points": 2, "steps": 20}
    p |= {"batch_size": 32, "seed": 0, "hidden": "16", "eval_samples": 64}
    executors.shutdown_pools()  # a fresh pool: its workers start with this sys.path
    try:
        remote = executors.open_executor("local", 1).submit(_worker_fit, p).result(timeout=180)
    finally:
        executors.shutdown_pools()
    assert repr(remote) == repr(_worker_fit(p))  # every digit (repr: NaN equals NaN)
    assert math.isfinite(remote["pmi_rmse_product"])


def _install_metadata(tmp_path: Path) -> Path:
    """A dist-info for tests/plugin_pkg, built from its pyproject.toml (what pip would write)."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    info = tmp_path / "site" / "pmilab_plugin_demo-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = []
    for group, entries in project["entry-points"].items():
        lines += [f"[{group}]"] + [f"{k} = {v}" for k, v in entries.items()] + [""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    return info.parent


def test_entry_points_name_the_head_and_the_joint(plugin_path, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_install_metadata(tmp_path)))
    from pmilab_plugin_demo.heads import MixtureHead
    from pmilab_plugin_demo.joints import NoisyChannel

    assert registry.resolve_head("mixture") is MixtureHead
    assert isinstance(pl.dists.parse_spec("noisy-channel"), NoisyChannel)
    run = pl.fit("noisy-channel", similarity="mixture", dim=2, points=2, steps=5, progress=False)
    assert run.config.as_dict()["similarity"] == "mixture"
    with pytest.raises(pl.InputError, match="unknown similarity 'mixtur'"):
        registry.resolve_head("mixtur")


def test_the_python_api_takes_a_head_class_or_instance_and_batches_its_seeds(plugin_path):
    from pmilab_plugin_demo.heads import MixtureHead

    kw = dict(dim=2, points=2, steps=30, progress=False)
    one = pl.fit("latent:nx=12,ny=10,k=3,seed=0", similarity=MixtureHead, seed=1, **kw)
    both = pl.fit("latent:nx=12,ny=10,k=3,seed=0", similarity=HEAD, seeds=[0, 1], **kw)
    assert both[1].metrics["pmi_rmse_product"] == one.metrics["pmi_rmse_product"]
    assert one.config.as_dict()["similarity"] == HEAD  # a class is recorded by its path
    inst = pl.fit("latent:nx=12,ny=10,k=3,seed=0", similarity=MixtureHead(2, 2), **kw)
    assert inst.config.as_dict()["similarity"] == HEAD
    with pytest.raises(pl.InputError, match="needs dim, points, which this run does not set"):
        registry.build_head(HEAD, {"sigma": 0.5})


def test_the_mixture_head_against_float64_brute_force(plugin_path):
    from pmilab_plugin_demo.heads import MixtureHead

    head, g = MixtureHead(dim=3, points=4), torch.Generator().manual_seed(0)
    zx, zy = (torch.randn(n, 12, generator=g, dtype=torch.float64) for n in (5, 7))
    want = torch.tensor(
        [
            [math.log(sum(math.exp(float(zx[i, 3 * k : 3 * k + 3] @ zy[j, 3 * k : 3 * k + 3]))
                          for k in range(4))) for j in range(7)]
            for i in range(5)
        ],
        dtype=torch.float64,
    )  # fmt: skip
    assert torch.allclose(head.logit_matrix(zx, zy), want, atol=1e-12)
    assert torch.allclose(head.paired_logits(zx[:5], zy[:5]), want.diagonal()[:5], atol=1e-12)
    assert head.head_inputs(3, 4) == HeadInputs.vector(12)


def test_the_noisy_channel_pmi_is_the_closed_form_of_its_gaussian(plugin_path):
    """y = slope·x + noise·ε is, coordinate by coordinate, a bivariate Gaussian with
    ρ = slope / sqrt(slope² + noise²); PMI is unchanged by rescaling y to unit variance."""
    from pmilab_plugin_demo.joints import NoisyChannel

    d = NoisyChannel(dim=2, slope=1.5, noise=0.5)
    sd = math.sqrt(1.5**2 + 0.5**2)
    ref = pl.dists.Gaussian(2, 2, rho=[1.5 / sd] * 2)
    x, y = d.sample(300, seed=3)
    assert torch.allclose(d.pmi(x, y), ref.pmi(x, y / sd), atol=1e-10)
    assert torch.allclose(d.pmi_matrix(x[:9], y[:7]), ref.pmi_matrix(x[:9], y[:7] / sd), atol=1e-10)
    assert d.mutual_information() == pytest.approx(float(ref.mutual_information()), rel=1e-12)
    assert registry.resolve_joint(JOINT).mutual_information() == d.mutual_information()


def test_builtin_heads_declare_their_inputs_and_bad_declarations_are_refused():
    s = {"dim": 3, "points": 2}
    assert registry.head_inputs("linear", s) == HeadInputs.vector(3)
    assert registry.head_inputs("kme", s) == HeadInputs.point_set(2, 3, "log_softmax")
    assert registry.head_inputs("wpse", s) == HeadInputs.point_set(2, 3, "signed")
    assert registry.head_inputs("tabular", s).kind == "indices"
    assert HeadInputs.point_set(2, 3, "signed").width == 8
    with pytest.raises(pl.InputError, match="weights must be one of"):
        HeadInputs("points", 3, 2, "softmax")
    with pytest.raises(pl.InputError, match="kind must be one of"):
        HeadInputs("matrix", 3)
