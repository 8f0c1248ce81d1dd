"""A claim written outside pmilab: the mixture head (`heads.MixtureHead`) with K components
reaches PMI + C on a K-class latent joint, trained on the exact population loss.

`pmilab verify --claims pmilab_plugin_demo.claim` runs it (or `--claims mixture-reach`, its
entry point, once the package is installed). The module is the claim (CLAIM, TITLE, config,
sweeps, evaluate: `pmilab.interfaces.ClaimModule`), and it carries its own figure (`draw`).
`bare` is the same claim without a figure, under another ID.

Each run also records which process ran it (`pid`, `parent`), so a test can see that the
verify's process pool ran it (tests/test_plugins.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import partial
from types import SimpleNamespace

from pmilab import verdicts as V
from pmilab.experiments.framework.claim import calibration, check_preset, fig, fmt, judged_row
from pmilab.experiments.framework.sweep import RunSpec, Sweep, seed_list

CLAIM = "MIX"
TITLE = "A mixture of K linear parts reaches PMI + C on a K-class latent joint"
TOL = 0.05  # the lab's reach tolerance (REACH_TOL), fixed before the first run
HEAD = "pmilab_plugin_demo.heads:MixtureHead"
FIGURE = fig("mix_reach")


@dataclass(frozen=True)
class Config:
    k: int = 4
    dim: int = 2
    steps: int = 1500
    seeds: int | tuple[int, ...] = 3


PRESETS = {"full": Config(), "quick": Config(seeds=5), "smoke": Config(steps=20, seeds=2)}


def config(preset: str, seeds=None) -> Config:
    cfg = PRESETS[check_preset(preset)]
    return replace(cfg, seeds=seeds) if seeds else cfg


def reach_run(p: dict) -> dict:
    """One seed (a module-level function: a worker process imports it by its path)."""
    import pmilab as pl
    from pmilab.experiments.tasks.t2_calibration import table_calibration
    from pmilab.theory.optimum import product_std

    run = pl.fit(p["dist"], similarity=p["similarity"], dim=p["dim"], points=p["points"],
                 population=True, steps=p["steps"], lr=0.1, seed=p["seed"], progress=False,
                 device="cpu")  # fmt: skip
    d = run.dist
    rel = run.metrics["pmi_rmse_product"] / product_std(d.pmi_table(), d.px, d.py)
    out = {"rel": rel, **table_calibration(run, p["seed"], TOL)}
    return {**out, "pid": os.getpid(), "parent": os.getppid()}


def sweeps(cfg: Config) -> list[Sweep]:
    runs = []
    for seed in seed_list(cfg.seeds):
        p = {"dist": f"latent:nx=24,ny=20,k={cfg.k},seed=0", "similarity": HEAD, "dim": cfg.dim,
             "points": cfg.k, "steps": cfg.steps, "seed": seed}  # fmt: skip
        runs.append(RunSpec.of(p, "mix", f"k{cfg.k}", f"s{cfg.steps}", f"seed{seed}"))
    metrics = ["rel", "rel_plus_half", "rel_plus_double", "pid", "parent"]
    return [Sweep("mix-reach", reach_run, runs, metrics, CLAIM)]


def evaluate(tables: dict, cfg: Config, claim: str = CLAIM, figure: str = FIGURE) -> list:
    df = tables["mix-reach"].sort_values("seed")
    rule = f"upper bound of rmse/sd < {TOL}"
    ev = V.judge_equivalence_upper(df.rel.to_numpy(), TOL)
    near = V.judge_equivalence_upper(df.rel_plus_double.to_numpy(), TOL)
    half = V.judge_equivalence_upper(df.rel_plus_half.to_numpy(), TOL)
    what = f"the mixture head, K = {cfg.k} components of D = {cfg.dim}"
    return [
        judged_row(claim, f"{what} reaches PMI + C", ev, rule, figure=figure,
                   detail=f"rmse/sd {fmt(ev.estimate)} ± {fmt(ev.se)} (n={ev.n})"),
        calibration(claim, "Near miss: the head perturbed to be 2x TOL worse", near, rule,
                    "FAIL", figure, f"{fmt(near.estimate)}"),
        calibration(claim, "Half-size case: the head perturbed to be 0.5x TOL worse", half,
                    rule, "PASS", figure, f"{fmt(half.estimate)}"),
    ]  # fmt: skip


def draw(tables: dict, results: list, fig_dir):
    """The claim's own figure: each seed's error against the tolerance."""
    import matplotlib.pyplot as plt

    from pmilab.figures.style import banner, save

    df = tables["mix-reach"].sort_values("seed")
    fig_, ax = plt.subplots(figsize=(5.0, 4.0))
    ax.plot(df.seed, df.rel, "o", label="rmse / sd(PMI)")
    ax.axhline(TOL, color="grey", ls="--", label=f"TOL = {TOL}")
    ax.set_xlabel("seed")
    ax.legend()
    banner(fig_, results, TITLE)
    return save(fig_, fig_dir, "mix_reach")


# The same claim without a figure (`pmilab figures` says so and draws nothing).
bare = SimpleNamespace(
    CLAIM="MIXB",
    TITLE=TITLE + " (no figure)",
    config=config,
    sweeps=sweeps,
    evaluate=partial(evaluate, claim="MIXB", figure=""),
)
