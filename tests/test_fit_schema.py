"""One settings schema (issue 24): `pmilab fit`'s options and the claims' run parameters are
both derived from FitConfig's fields, so a new field is a new flag and a new run parameter
with no other edit. The references are independent of the code under test: the dataclass's
own fields, the flags `pmilab fit` had before the schema, and the parameter dicts the claims
wrote by hand before it (their JSON, which run ids hash, must not change)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields

import pytest

from pmilab.cli import fit as fit_cli
from pmilab.errors import InputError
from pmilab.experiments.claims import heads, t1, t5
from pmilab.experiments.framework.sweep import seed_list
from pmilab.experiments.tasks.fitting import fit_kwargs
from pmilab.training.config import FitConfig, setting

# The options `pmilab fit` had when they were written by hand (they all stay).
OLD_FLAGS = (
    "--dist --normalize --drop-empty --similarity --dim --points --steps --batch-size --lr "
    "--seed --seeds --device --objective --population --temperature --logit-cap --sigma "
    "--quiet --out --overwrite"
).split()


def fit_parser(schema=FitConfig) -> argparse.ArgumentParser:
    """`pmilab fit`'s parser; with another schema, its settings' options alone."""
    if schema is FitConfig:
        root = argparse.ArgumentParser(prog="pmilab")
        fit_cli.add_parser(root.add_subparsers())
        return root._subparsers._group_actions[0].choices["fit"]
    p = argparse.ArgumentParser(prog="fit")
    fit_cli.add_settings(p, schema)
    return p


def flags(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings}


def test_every_field_is_a_fit_flag_and_the_old_flags_stay():
    p = fit_parser()
    names = {f.name for f in fields(FitConfig)} - {"extra"}
    dests = {a.dest for a in p._actions}
    assert names <= dests
    assert set(OLD_FLAGS) <= flags(p)
    # --normalize stays the table files' option; the linear head's is --normalize-embeddings
    args = p.parse_args(["--dist", "t.npy", "--out", "o", "--normalize"])
    assert args.normalize_table and fit_cli._config(args).normalize is True
    args = p.parse_args(["--dist", "t.npy", "--out", "o", "--no-normalize-embeddings"])
    assert not args.normalize_table and fit_cli._config(args).normalize is False


def test_the_old_flags_give_the_config_they_gave():
    argv = ["--dist", "t.npy", "--out", "o", "--similarity", "kme", "--dim", "3"]
    argv += ["--points", "5", "--steps", "40", "--batch-size", "32", "--lr", "0.02"]
    argv += ["--seed", "7", "--device", "cpu", "--objective", "one_sided", "--population"]
    argv += ["--temperature", "0.1", "--logit-cap", "none", "--sigma", "0.25"]
    got = fit_cli._config(fit_parser().parse_args(argv))
    want = FitConfig(
        similarity="kme",
        dim=3,
        points=5,
        steps=40,
        batch_size=32,
        lr=0.02,
        seed=7,
        device="cpu",
        objective="one_sided",
        population=True,
        temperature=0.1,
        logit_cap=None,
        sigma=0.25,
    ).validated()
    assert got == want
    # no flag: FitConfig's defaults, as the hand-written defaults were
    assert fit_cli._config(fit_parser().parse_args(["--dist", "t", "--out", "o"])) == FitConfig()


@pytest.mark.parametrize(
    "argv, line",
    [
        (["--dim", "two"], "--dim must be an integer, got 'two'"),
        (["--lr", "fast"], "--lr must be a number, got 'fast'"),
        (["--sigma", "nan"], "--sigma must be a finite number, got 'nan'"),
        (["--hidden", "64xa"], "--hidden must be layer widths such as 128x128"),
        (["--objective", "both"], "objective must be 'symmetric' or 'one_sided', got 'both'"),
        (["--amp", "fp8"], "amp must be 'auto', 'bf16' or 'off', got 'fp8'"),
        (["--points", "0"], "points must be a positive integer, got 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_it(argv, line):
    args = fit_parser().parse_args(["--dist", "t", "--out", "o", *argv])
    with pytest.raises(InputError) as e:
        fit_cli._config(args)
    assert str(e.value).startswith(line) and "\n" not in str(e.value)


def test_new_flags_reach_the_config():
    argv = ["--dist", "t", "--out", "o", "--hidden", "16x8", "--features", "quadratic"]
    argv += ["--no-learn-scale", "--bias", "--threads", "none", "--converge-window", "20"]
    argv += ["--rff-features", "64", "--weight-decay", "0.01", "--dtype", "float64"]
    cfg = fit_cli._config(fit_parser().parse_args(argv))
    assert (cfg.hidden, cfg.features, cfg.learn_scale, cfg.bias) == ((16, 8), "quadratic", 0, 1)
    assert (cfg.threads, cfg.converge_window, cfg.rff_features) == (None, 20, 64)
    assert (cfg.weight_decay, cfg.dtype) == (0.01, "float64")


def test_help_is_grouped_with_every_default():
    text = " ".join(fit_parser().format_help().split())
    for title in ("joint:", "similarity head:", "encoders", "training:", "runtime:", "output:"):
        assert title in text
    cfg = FitConfig()
    for s in FitConfig.settings():
        if s.cli:
            assert s.flag in text
    assert f"--steps N optimizer steps (default: {cfg.steps})" in text
    assert (
        "--hidden WIDTHS MLP hidden widths, e.g. 128x128 (none: a linear map) (default: 128x128)"
        in text
    )
    assert "--logit-cap X" in text and "(default: 100)" in text
    assert "--objective {symmetric,one_sided}" in text
    assert (
        text.index("similarity head:") < text.index("--sigma X initial") < text.index("training:")
    )


# ---- a new field: a flag and a run parameter with no other edit ----------------------------


@dataclass
class Wider(FitConfig):
    """FitConfig with two more fields, one described and one bare."""

    momentum: float = field(default=0.9, metadata=setting("SGD momentum", "training"))
    shots: int = 3


def test_a_new_field_is_a_flag_and_a_run_parameter_without_other_edits():
    p = fit_parser(Wider)
    assert {"--momentum", "--shots"} <= flags(p)
    text = " ".join(p.format_help().split())
    assert "--momentum X SGD momentum (default: 0.9)" in text
    assert text.index("training:") < text.index("--momentum X SGD") < text.index("other settings:")
    assert text.index("other settings:") < text.index("--shots N (default: 3)")
    args = p.parse_args(["--momentum", "0.5", "--shots", "7", "--steps", "9"])
    given = {s.name: getattr(args, s.name) for s in Wider.settings() if s.cli}
    cfg = Wider.from_text({k: v for k, v in given.items() if v is not None}).validated()
    assert (cfg.momentum, cfg.shots, cfg.steps) == (0.5, 7, 9)
    # the claims' side: written into a run's parameters and read back into fit arguments
    params = {"dist": "latent:nx=4", **Wider.table_params(momentum=0.5, shots=7, steps=9)}
    assert json.dumps(params) == '{"dist": "latent:nx=4", "momentum": 0.5, "shots": 7, "steps": 9}'
    assert Wider.from_table(params) == {"steps": 9, "momentum": 0.5, "shots": 7}
    # control: the schema without them knows neither
    with pytest.raises(InputError, match="unknown fit option 'momentum'"):
        FitConfig.table_params(momentum=0.5)
    assert FitConfig.from_table(params) == {"steps": 9}


# ---- the claims' run parameters ------------------------------------------------------------


def test_the_table_form_round_trips():
    values = dict(
        similarity="wpse",
        hidden=(64, 32),
        normalize=False,
        bias=True,
        population=True,
        logit_cap=None,
        lr=0.05,
        threads=None,
        eval_samples=99,
    )
    params = FitConfig.table_params(**values)
    # plain JSON values: 0/1, "64x32", 0 for "no cap", "none" for another None
    assert json.dumps(params) == (
        '{"similarity": "wpse", "hidden": "64x32", "normalize": 0, "bias": 1, "population": 1, '
        '"logit_cap": 0, "lr": 0.05, "threads": "none", "eval_samples": 99}'
    )
    assert FitConfig.from_table(params) == values
    assert FitConfig.from_table({"lr": ""}) == {}  # "": the field's default
    assert FitConfig.from_table({"hidden": ""})["hidden"] == ()  # no hidden layer
    assert FitConfig.from_table({"logit_cap": 0.0})["logit_cap"] is None  # T5's free head
    assert FitConfig.from_table({"logit_cap": 8.0})["logit_cap"] == 8.0


def _old_heads_params(cfg, k, sim, dim, points, seed):
    """heads.run_params as it was written by hand before the schema."""
    return {
        "dist": cfg.spec(k),
        "k": k,
        "similarity": sim,
        "dim": dim,
        "points": points,
        "normalize": 0,
        "bias": 1,
        "logit_cap": 0,
        "objective": "symmetric",
        "population": 1,
        "batch_size": 256,
        "steps": cfg.point_steps if sim in ("kme", "wpse") else cfg.steps,
        "lr": cfg.lr,
        "seed": seed,
        "probe_n": cfg.probe_n,
    }


def test_the_heads_runs_are_written_as_they_were_by_hand():
    cfg = heads.heads_config("smoke")
    n = 0
    for k in cfg.ks:
        for sim, dim, m in heads.heads_for(cfg, k):
            for seed in seed_list(cfg.seeds):
                new = heads.run_params(cfg, k, sim, dim, m, seed)
                assert json.dumps(new) == json.dumps(_old_heads_params(cfg, k, sim, dim, m, seed))
                n += 1
    assert n >= 8 and cfg.point_steps != cfg.steps  # both budgets are exercised


def test_t1_continuous_and_t5_cap_runs_are_written_as_they_were_by_hand():
    cfg = t1.config("smoke")
    run = next(r for r in t1.sweeps(cfg)[1].runs if not r.params["dist"].endswith("shuffled"))
    p = run.params
    old = {
        "dist": p["dist"],
        "similarity": p["similarity"],
        "dim": 2,
        "points": p["points"],
        "hidden": cfg.hidden,
        "features": "raw",
        "normalize": 0,
        "bias": 1,
        "logit_cap": 0,
        "objective": "symmetric",
        "population": 0,
        "batch_size": cfg.c_batch,
        "steps": cfg.c_steps,
        "lr": cfg.c_lr,
        "seed": p["seed"],
        "eval_samples": cfg.eval_samples,
        "cal_tol": p["cal_tol"],
    }
    assert json.dumps(p) == json.dumps(old)
    cfg5 = t5.config("smoke")
    free = [r.params for r in t5.sweeps(cfg5)[0].runs if not r.params["logit_cap"]]
    assert free and all(json.dumps(q["logit_cap"]) == "0.0" for q in free)  # as written
    assert all(q["normalize"] == 1 and q["bias"] == 0 for q in free)


def test_every_fit_run_of_the_claims_reads_back_to_a_valid_config():
    """What the tasks pass to `fit` (`fitting.fit_kwargs`) is a valid FitConfig for every fit
    run of T1, T2, T3, T5 and T6, and holds every setting the run names."""
    from pmilab.experiments.claims import t2, t3, t6

    seen = 0
    for mod in (t1, t2, t3, t5, t6):
        for sw in mod.sweeps(mod.config("smoke")):
            for r in sw.runs:
                p = r.params
                if not isinstance(p.get("similarity"), str) or "random" in p["similarity"]:
                    continue
                if sw.name == "t5-lossn":
                    continue  # its own trainer (tasks.t5_heads), not fit
                kw = fit_kwargs(p)
                named = {f.name for f in fields(FitConfig)} & set(p)
                assert set(kw) == {k for k in named if p[k] != "" or k == "hidden"}
                FitConfig(**kw).validated()
                seen += 1
    assert seen > 50
