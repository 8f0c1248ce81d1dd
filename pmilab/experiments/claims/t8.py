"""T8: point-set heads against the linear head downstream, the seed papers' real-data direction
(docs/theory.md T8).

The WPSE and KME-CLIP papers report small (1-3 %) consistent gains of their heads over CLIP's
linear head in zero-shot classification and retrieval, and none in linear probing. T8 checks
that direction on the same towers, data, batch order and budget: every head is trained by
`pmilab pretrain`'s own loop on the same seed (`tasks.downstream`), on two data sets, `shapes`
(the known-PMI shapes of T7) and `mnist5k` (5000 real MNIST digits, zero-shot with held-out
templates; `pretrain.real_images`). The seed is the replicate; every judged value is the paired
difference head − linear on one seed, judged on its mean over seeds (`pmilab.verdicts`,
one-sided ALPHA, Holm over the 4 sub-cases kme/wpse x shapes/mnist5k).

- T8a (evidence) zero-shot top-1: non-inferiority, head − linear > −DIRECTION_TOL ("above":
      PASS iff the lower bound > −tol, FAIL iff the upper bound <= −tol).
- T8b (evidence) retrieval R@1 among BLOCK = 32 candidates: the same rule.
- T8c (evidence) linear-probe top-1: equivalence, |head − linear| < DIRECTION_TOL (TOST).
- T8d (finding) the differences themselves, with two-sided 90 % intervals, beside the papers'
      1-3 %: a strict sign has no scale to judge on (docs/theory.md T4, restated rules).

DIRECTION_TOL = 0.03, fixed before any T8 run (docs/theory.md T8): the largest gain the papers
report; a head worse by more reverses their direction by their own effect size, and a probe
difference that large would be a gain as large as the zero-shot gains they report.

Calibration pairs (each row's rule, same seeds): the linear head's own held-out results with
every item it gets right made wrong with probability q = s·tol/accuracy, drawn per seed
(`tasks.downstream.planted`): s = 2 (expected difference −0.06) must FAIL, s = 0.5 (−0.015)
must PASS; Holm over the two data sets. Controls (T8a, T8b): the untrained model (step 0, the
same seed's towers and linear head) against the trained linear head must FAIL.

Budgets were chosen from timings and the training loss alone (no downstream score seen):
`full` is the recorded benchmark (benchmarks/real_images.py, results/pretrain/real_images.md:
~15-20 s of one core per run at 600 steps of 64 pairs on 28 px digits); `quick` runs in about a
minute and a half of CPU inside `pmilab verify --quick` (both data sets, tiny towers, 120 steps
of 32 pairs, 5 seeds: the design fixed before its first run; docs/theory.md T8 reports it and a
cheaper variant tried afterwards and not used); `smoke` is seconds (meaningless numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pmilab import registry
from pmilab import verdicts as V
from pmilab.experiments.framework.claim import (
    ClaimResult,
    calibration,
    fig,
    finding,
    fmt,
    judged_row,
    seeded_preset,
)
from pmilab.experiments.framework.sweep import RunSpec, Sweep, seed_list
from pmilab.experiments.tasks.downstream import BLOCK, METRICS, SCALES, downstream_run

CLAIM = "T8"
TITLE = (
    "KME and WPSE heads against the linear head downstream (zero-shot, retrieval, probe), "
    "on shapes and real MNIST digits"
)
FIGURE = fig("t8_downstream")
ALPHA = 0.05
DIRECTION_TOL = 0.03  # fixed before the first T8 run (docs/theory.md T8)
BASE = "linear"
HEADS = ("kme", "wpse")  # built-in head names (the registry's), each paired with BASE
DATA = ("shapes", "mnist5k")
SHAPES_SIZE = 16  # the shapes are rendered at 16 px (T7)
MEASURE_NAMES = {
    "zs": "zero-shot top-1",
    "r1": f"retrieval R@1 (of {BLOCK})",
    "probe": "probe top-1",
}


@dataclass(frozen=True)
class T8Config:
    """The towers and budget shared by every head (the seed draws initialisation and batch
    order alike for all three). image_size: the real digits' (shapes keep their 16 px).
    n_eval: held-out pairs scored (None: the whole test split); probe_n: training images the
    probe is fit on; cross: also score zero-shot and R@1 on the other real set (the benchmark;
    T8 judges only the within-set numbers); seeds: a count (0 .. n-1) or the seeds."""

    data: tuple[str, ...] = DATA
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 60
    width: int = 32
    image_layers: int = 2
    text_layers: int = 1
    dim: int = 16
    points: int = 4
    context: int = 8
    vocab_size: int = 64
    image_size: int = 28
    shapes_train: int = 5000
    shapes_test: int = 1000
    n_eval: int | None = 1000
    probe_n: int = 2000
    n_cross: int | None = None
    cross: bool = False
    seeds: int | tuple[int, ...] = 5


PRESETS = {
    "full": T8Config(),
    # the design fixed before T8's first quick run (both data sets, 120 steps of 32 pairs):
    # it costs ~80 s of CPU; a cheaper variant (mnist5k alone, 160 steps) was tried after this
    # one's T8c FAIL and is NOT used, since data are not changed after a FAIL (docs/theory.md T8)
    "quick": T8Config(
        steps=120,
        batch_size=32,
        warmup=12,
        width=16,
        image_size=16,
        shapes_train=2000,
        shapes_test=500,
        n_eval=320,
        probe_n=500,
    ),
    "smoke": T8Config(
        steps=6,
        batch_size=16,
        warmup=1,
        width=16,
        image_size=16,
        shapes_train=200,
        shapes_test=100,
        n_eval=64,
        probe_n=100,
        seeds=2,
    ),
}


def config(preset: str, seeds: int | tuple[int, ...] | None = None) -> T8Config:
    return seeded_preset(CLAIM, PRESETS, preset, seeds)


def run_params(cfg: T8Config, data: str, similarity: str, seed: int) -> dict:
    """One run's parameters (`tasks.downstream.downstream_run`)."""
    p = {
        "data": data,
        "similarity": similarity,
        "seed": int(seed),
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "warmup": cfg.warmup,
        "width": cfg.width,
        "image_layers": cfg.image_layers,
        "text_layers": cfg.text_layers,
        "dim": cfg.dim,
        "points": cfg.points,
        "context": cfg.context,
        "vocab_size": cfg.vocab_size,
        "image_size": SHAPES_SIZE if data == "shapes" else cfg.image_size,
        "n_eval": cfg.n_eval,
        "probe_n": cfg.probe_n,
        "cross": bool(cfg.cross),
        "calibrate": similarity == BASE,
        "tol": DIRECTION_TOL,
    }
    if data == "shapes":
        p.update(shapes_train=cfg.shapes_train, shapes_test=cfg.shapes_test)
    if cfg.cross and cfg.n_cross is not None:
        p["n_cross"] = cfg.n_cross
    return p


def runs(cfg: T8Config, data: tuple[str, ...] | None = None) -> list[RunSpec]:
    return [
        RunSpec.of(run_params(cfg, d, sim, s), "t8", d, sim, f"s{cfg.steps}", f"seed{s}")
        for d in (data or cfg.data)
        for s in seed_list(cfg.seeds)
        for sim in (BASE, *HEADS)
    ]


def sweeps(cfg: T8Config) -> list[Sweep]:
    return [Sweep("t8", downstream_run, runs(cfg), METRICS, CLAIM)]


# --- the rules ----------------------------------------------------------------------------------
def per_seed(df: pd.DataFrame, col: str) -> dict[int, float]:
    """seed -> value of one (data, head)'s runs (one run per seed)."""
    seeds = df["seed"].astype(int).tolist()
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"expected one run per seed, got seeds {seeds}")
    return dict(zip(seeds, df[col].astype(float).tolist(), strict=True))


def arm(df: pd.DataFrame, data: str, head: str, col: str) -> dict[int, float]:
    rows = df[(df["data"] == data) & registry.builtin_mask(df["similarity"], head)]
    return per_seed(rows, col)


def noninferior(head: dict[int, float], base: dict[int, float]) -> V.Judged:
    """T8a/T8b: the mean paired difference head − base is above −DIRECTION_TOL."""
    return V.judge(V.paired(head, base), -DIRECTION_TOL, "above", ALPHA)


def equivalent(head: dict[int, float], base: dict[int, float]) -> V.Judged:
    """T8c: the mean paired difference head − base is within ±DIRECTION_TOL (TOST)."""
    return V.judge_equivalence(V.paired(head, base), DIRECTION_TOL, ALPHA)


RULES = {
    "zs": (
        "T8a",
        noninferior,
        f"mean over seeds of head - linear > -{DIRECTION_TOL} (one-sided {1 - ALPHA:.0%} lower "
        "bound; FAIL iff the upper bound <= -tol), every head and data set (Holm)",
    ),
    "r1": (
        "T8b",
        noninferior,
        f"mean over seeds of head - linear > -{DIRECTION_TOL} (one-sided {1 - ALPHA:.0%} lower "
        "bound; FAIL iff the upper bound <= -tol), every head and data set (Holm)",
    ),
    "probe": (
        "T8c",
        equivalent,
        f"|mean over seeds of head - linear| < {DIRECTION_TOL} (TOST at {ALPHA}), every head "
        "and data set (Holm)",
    ),
}


def _ms(j: V.Judged) -> str:
    return f"{fmt(j.estimate)} +- {fmt(j.se)} [{fmt(j.ci_low)}, {fmt(j.ci_high)}] (n={j.n})"


def _row(df: pd.DataFrame, measure: str, data: tuple[str, ...]) -> list[ClaimResult]:
    cid, rule, text = RULES[measure]
    name = MEASURE_NAMES[measure]
    cells, parts = [], []
    for d in data:
        base = arm(df, d, BASE, measure)
        for h in HEADS:
            j = rule(arm(df, d, h, measure), base)
            cells.append(j)
            parts.append(f"{h} on {d}: {_ms(j)}")
    held = V.holm_verdicts(cells)
    detail = "head - linear per sub-case: " + "; ".join(
        f"{p} {j.verdict}" for p, j in zip(parts, held, strict=True)
    )
    rows = [
        judged_row(
            cid,
            "KME and WPSE heads are "
            + ("not worse than" if measure != "probe" else "equal to")
            + f" the linear head in {name} (same towers, data and budget; paired over seeds)",
            cells,
            text,
            figure=FIGURE,
            detail=detail + ".",
        )
    ]
    for case, expect in (("near", "FAIL"), ("half", "PASS")):
        s = SCALES[case]
        cal = [rule(arm(df, d, BASE, f"{measure}_{case}"), arm(df, d, BASE, measure)) for d in data]
        rows.append(
            calibration(
                cid,
                f"The linear head's own {name} with each item it gets right made wrong with "
                f"probability {s:g} x tol / accuracy (expected difference -{s:g} x "
                f"{DIRECTION_TOL}), drawn per seed, through the same rule",
                cal,
                text.replace("every head and data set", "every data set"),
                expect,
                FIGURE,
                detail="; ".join(f"{d}: {_ms(j)}" for d, j in zip(data, cal, strict=True)) + ".",
            )
        )
    if measure != "probe":
        ctl = [rule(arm(df, d, BASE, f"{measure}_init"), arm(df, d, BASE, measure)) for d in data]
        rows.append(
            judged_row(
                cid,
                f"The untrained model (step 0, same seed) against the trained linear head in "
                f"{name}, through the same rule",
                ctl,
                text.replace("every head and data set", "every data set"),
                kind="control",
                figure=FIGURE,
                detail="; ".join(f"{d}: {_ms(j)}" for d, j in zip(data, ctl, strict=True)) + ".",
            )
        )
    return rows


def differences(df: pd.DataFrame, data: tuple[str, ...]) -> pd.DataFrame:
    """Per measure, data set and head: the mean paired difference head − linear over seeds,
    its SE and two-sided 90 % t interval (`verdicts.mean_ci`), and both arms' means."""
    out = []
    for measure in MEASURE_NAMES:
        for d in data:
            base = arm(df, d, BASE, measure)
            for h in HEADS:
                head = arm(df, d, h, measure)
                ci = V.mean_ci(V.paired(head, base), 2 * ALPHA, "two")
                out.append(
                    {
                        "measure": measure,
                        "data": d,
                        "head": h,
                        "head_mean": float(np.mean(list(head.values()))),
                        "linear_mean": float(np.mean(list(base.values()))),
                        "diff": ci.mean,
                        "se": ci.se,
                        "lo": ci.lo,
                        "hi": ci.hi,
                        "n": ci.n,
                    }
                )
    return pd.DataFrame(out)


def _gains(df: pd.DataFrame, data: tuple[str, ...]) -> ClaimResult:
    t = differences(df, data)
    text = "; ".join(
        f"{r.head} on {r.data}, {r.measure}: {fmt(r.diff)} [{fmt(r.lo)}, {fmt(r.hi)}]"
        for r in t.itertuples()
    )
    above = t[(t.measure != "probe") & (t.lo > 0)]
    return finding(
        "T8d",
        "The differences head - linear themselves (mean over seeds, two-sided 90% t interval), "
        "beside the papers' 1-3% gains in zero-shot and retrieval",
        f"{len(above)} of {int((t.measure != 'probe').sum())} zero-shot/retrieval intervals lie "
        "wholly above 0",
        text + ".",
        FIGURE,
    )


def evaluate(tables: dict[str, pd.DataFrame], cfg: T8Config) -> list[ClaimResult]:
    df = tables["t8"]
    data = tuple(d for d in cfg.data if (df["data"] == d).any())
    rows = []
    for measure in MEASURE_NAMES:
        rows += _row(df, measure, data)
    return [*rows, _gains(df, data)]
