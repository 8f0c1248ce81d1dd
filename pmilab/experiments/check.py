"""The report card of one head: `pmilab check HEAD` and `pmilab.check_head` (issue 24).

The head-level claims of docs/theory.md, run on the user's head with the verdict machinery and
presets of `pmilab verify`, the built-in heads beside it at the same settings. `HeadCard` is a
claim object (`pmilab.interfaces.ClaimModule`, CLAIM "HC") that `verify.run_modules` runs like
any claim: its sweeps train every head as the heads sweep of T2/T3 trains its heads
(`claims.heads.run_params`: the exact population loss of K-class latent joints), through the
card's tasks (`tasks.card`), with the parameter `similarity` holding each head's spec, so
worker processes resolve it. Its rows:

- HC0  implementation: the head's two forms agree and its logits are finite on every run
       (`tasks.card.contract_metrics`): max relative |paired − diagonal| < PAIRED_TOL;
- HC1  reach PMI + C (T2b's rule): at its largest configured size the head's relative error is
       below REACH_TOL, every K (Holm);
- HC2  the error against capacity (T2c's rule): along the head's own size parameter (`points`
       for a point-set head, `dim` for a vector head, read from its `HeadInputs`), at each
       curve K, the error at the largest size is below REACH_TOL and no doubling raises it by
       REACH_TOL or more; a head on raw indices has no size parameter (a finding);
- HC3  the excess-risk bound (T3): implementation, |constructed − ε| <= 2Δ on every run (T3b's
       inequality, exact); evidence, the excess risk the head adds shrinks with Δ on the pairs of
       heads that include it (T3f's rule: discordance < ORDER_TOL), with T3's planted
       calibration pair; a finding for the probe against ε + 2Δ;
- HC4  the finite-batch optimum (T5c's rule): the head's held-out expected loss_N is within
       LOSSN_TOL of PMI's, at every N and K (TOST, Holm), at its largest size;
- HC5  the same reach on a continuous joint (a Gaussian, MLP encoders, minibatches: T1b's
       setting, REACH_TOL_MC), where the head takes continuous inputs.

Calibration pairs test each rule at this preset's seeds, on heads that meet it: HC1 the free
table (the built-in head on raw indices) perturbed by 2x / 0.5x REACH_TOL (T2's columns), HC2
the built-in "signed"-weight point-set head's curve (T2c's calibration), HC3 T3's planted Δ,
HC4 PMI at a temperature off by a known amount (T5c's), HC5 the built-in "log_softmax" point-set
head perturbed (T2d's columns). They do not depend on the user's head, so a head that misses a
claim leaves them as they must be. The reference heads are picked by their declarations, never
by name.

`beside` applies the same rules (without the family correction) to every head, user's and
built-in, for the side-by-side tables of report.md and heads.csv. `run_check` writes a check
directory like a verify directory (meta.json, runs/, report.md, claims.csv, results.csv) plus
heads.csv; the figures are drawn above this layer (`pmilab.figures.check`). The built-in
heads' runs do not depend on which head is checked, so checks of several heads into one --out
train them once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from pmilab import atomic, registry
from pmilab import verdicts as V
from pmilab.errors import InputError
from pmilab.experiments import verify
from pmilab.experiments.claims import t2, t3, t5
from pmilab.experiments.claims.heads import HeadsConfig, heads_config, run_params
from pmilab.experiments.claims.tolerances import REACH_TOL, REACH_TOL_MC, rel_error
from pmilab.experiments.framework.claim import (
    ClaimResult,
    calibration,
    check_preset,
    fig,
    finding,
    fmt,
    judged_row,
)
from pmilab.experiments.framework.design import claim_config, design_seeds
from pmilab.experiments.framework.sweep import RunSpec, Sweep, dist_id, load_table, seed_list
from pmilab.experiments.tasks.card import (
    CARD_GAUSS_METRICS,
    CONTRACT_PAIRS,
    card_cell,
    card_gauss_cell,
    card_gauss_run,
    card_metrics,
    card_run,
)
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.fitting import fit_kwargs, sample_params
from pmilab.outputs import check_out
from pmilab.verdicts import Judged

CLAIM = "HC"
# HC0: the two forms of a head on float32 parameters agree to roundoff (~1e-7 relative); 1e-4 is
# far above roundoff and far below a disagreement that changes what the head learns.
PAIRED_TOL = 1e-4
# A rule fed a non-finite value (a head whose training diverged) judges this in its place: the
# row FAILs, and its detail names the seeds.
NONFINITE = 1e300
# T2's calibration columns: the head perturbed so that its relative error rises by 0.5x / 2x
# the tolerance (`tasks.t2_calibration`).
HALF, DOUBLE = t2.HALF, t2.DOUBLE
DISCRETE, CONTINUOUS = "card-discrete", "card-continuous"
CAPACITY_FIGURE, BOUND_FIGURE, BATCH_FIGURE = fig("hc_capacity"), fig("hc_bound"), fig("hc_batch")
GAUSS = "gaussian:dx=2,dy=2,rho=0.8/0.5"  # T1b's and T2d's Gaussian: PMI and sd(PMI) closed form


@dataclass(frozen=True)
class CardConfig:
    """heads: the heads sweep's settings (`claims.heads`: joints, sizes, budgets, seeds).
    batches, eval_pairs: HC4's batch sizes N and held-out pairs per N (T5's).
    gauss, hidden, c_steps, c_lr, c_batch, eval_samples: HC5's joint and training (T1b's)."""

    heads: HeadsConfig
    batches: tuple[int, ...] = (4, 16, 64, 256)
    eval_pairs: int = 200_000
    gauss: str = GAUSS
    hidden: str = "64x64"
    c_steps: int = 4000
    c_lr: float = 1e-2
    c_batch: int = 128
    eval_samples: int = 2048


PRESETS = {
    "full": {},
    "quick": {"c_steps": 1500, "eval_samples": 1024},
    # seconds-long sizes (numbers meaningless): one check of one head well under a minute
    "smoke": {"batches": (4, 16), "eval_pairs": 50_000, "hidden": "8", "c_steps": 10,
              "eval_samples": 64},
}  # fmt: skip
# The heads sweep's budgets at smoke, a third: a smoke check trains five heads.
SMOKE_BUDGET = {"steps": 200, "point_steps": 100}


@dataclass(frozen=True)
class HeadPlan:
    """One head's runs: its spec, what it declares (`HeadInputs` kind and weights), the size
    parameter the card sweeps ("dim", "points", or "none") and its (dim, points) sizes."""

    spec: str
    kind: str
    weights: str
    size: str
    sizes: tuple[tuple[int, int], ...]

    @property
    def top(self) -> tuple[int, int]:
        return self.sizes[-1]


def plan_head(spec: str, h: HeadsConfig, dim: int | None = None, points: int | None = None):
    """The sizes a head runs at, from its declaration: a point-set head's M over the heads
    sweep's `points` (points of size `dim`, default `point_dim`), a vector head's D over
    `linear_dims` (`points` fixed, default 1), a head on raw indices at one size."""
    from pmilab.training.config import FitConfig
    from pmilab.training.model import head_settings

    cfg = FitConfig(similarity=spec, dim=dim or h.point_dim, points=points or 1)
    inputs = registry.head_inputs(spec, head_settings(cfg, make_dist(h.spec(h.ks[0]))))
    if inputs.kind == "points":
        if points is not None:
            raise InputError(
                f"head {spec} is a point-set head: the check sweeps its points M over "
                f"{list(h.points)}; set --dim (the size of a point), not --points"
            )
        sizes = tuple((dim or h.point_dim, m) for m in h.points)
        return HeadPlan(spec, inputs.kind, inputs.weights, "points", sizes)
    if inputs.kind == "vector":
        if dim is not None:
            raise InputError(
                f"head {spec} is a vector head: the check sweeps its dim D over "
                f"{list(h.linear_dims)}; set --points (its other setting), not --dim"
            )
        sizes = tuple((d, points or 1) for d in h.linear_dims)
        return HeadPlan(spec, inputs.kind, "", "dim", sizes)
    return HeadPlan(spec, inputs.kind, "", "none", ((dim or 1, points or 1),))


def card_cost(p: dict) -> float:
    """Per-run cost for the longest-first schedule (`sweep.run_cost`'s unit): steps, twice for
    a point-set head, five times on MLP encoders."""
    factor = 2.0 if p.get("size") == "points" else 1.0
    return float(p["steps"]) * factor * (5.0 if p.get("hidden") else 1.0)


class HeadCard:
    """The report card of one head as a claim (`pmilab.interfaces.ClaimModule`).

    head: a head spec (or a head class / factory with an import path: worker processes
    resolve what the runs record). dim, points: the head's setting that the card does not
    sweep (`plan_head`); None: the built-in heads' choice."""

    CLAIM = CLAIM

    def __init__(self, head, dim: int | None = None, points: int | None = None) -> None:
        spec = registry.head_spec(head)
        if spec.startswith("<"):
            raise InputError(
                f"pmilab check needs a head that worker processes can import: {spec} has no "
                "import path (define it in a module, or pass its spec package.module:Name)"
            )
        registry.resolve_head(spec)  # one line naming what a head that breaks the contract lacks
        for name, v in (("dim", dim), ("points", points)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        self.head, self.dim, self.points = spec, dim, points
        self.TITLE = (
            f"Report card of the head {spec}: reach, capacity, the excess-risk bound, the "
            "finite-batch optimum and a continuous joint, beside the built-in heads"
        )

    @property
    def meta(self) -> dict:
        """What meta.json records of this card (`HeadCard(**meta)` builds it again)."""
        return {"head": self.head, "dim": self.dim, "points": self.points}

    def config(self, preset: str, seeds=None) -> CardConfig:
        """The preset's card; seeds: given, else T2's recorded design count (T2 and T3 share
        the heads sweep), else the heads sweep's preset default."""
        seeds = seeds or design_seeds(preset, "T2")
        heads = heads_config(check_preset(preset), seeds)
        if preset == "smoke":
            heads = replace(heads, **SMOKE_BUDGET)
        return CardConfig(heads, **PRESETS[preset])

    def plans(self, cfg: CardConfig) -> list[HeadPlan]:
        """The user's head first, then every built-in head that is not it."""
        mine = plan_head(self.head, cfg.heads, self.dim, self.points)
        rest = [plan_head(h, cfg.heads) for h in registry.HEAD_NAMES if h != self.head]
        return [mine, *rest]

    def sweeps(self, cfg: CardConfig) -> list[Sweep]:
        h = cfg.heads
        disc, cont = [], []
        for plan in self.plans(cfg):
            for k in h.ks:
                for dim, m in plan.sizes if k in h.curve_ks else (plan.top,):
                    for seed in seed_list(h.seeds):
                        p = discrete_params(cfg, plan, k, dim, m, seed)
                        rid = ("card", dist_id(p["dist"]), plan.spec, f"d{dim}", f"M{m}",
                               f"s{p['steps']}", f"seed{seed}")  # fmt: skip
                        disc.append(RunSpec.of(p, *rid))
            if plan.kind != "indices":
                dim, m = plan.top
                for seed in seed_list(h.seeds):
                    p = continuous_params(cfg, plan, seed)
                    rid = ("cardc", dist_id(cfg.gauss), plan.spec, f"d{dim}", f"M{m}",
                           f"s{cfg.c_steps}", f"seed{seed}")  # fmt: skip
                    cont.append(RunSpec.of(p, *rid))
        return [
            Sweep(DISCRETE, partial(card_run, tol=REACH_TOL), disc, card_metrics(list(cfg.batches)),
                  CLAIM, cell_task=partial(card_cell, tol=REACH_TOL), cost=card_cost),
            Sweep(CONTINUOUS, partial(card_gauss_run, tol=REACH_TOL_MC), cont, CARD_GAUSS_METRICS,
                  CLAIM, cell_task=partial(card_gauss_cell, tol=REACH_TOL_MC), cost=card_cost),
        ]  # fmt: skip

    def evaluate(self, tables: dict[str, pd.DataFrame], cfg: CardConfig) -> list[ClaimResult]:
        plans = {p.spec: p for p in self.plans(cfg)}
        disc, cont = prepared(tables, plans)
        mine = plans[self.head]
        return [
            *contract_rows(self.head, disc, cont),
            *reach_rows(self.head, disc, reference(plans, "indices")),
            *capacity_rows(mine, disc, cfg.heads, reference(plans, "points", "signed")),
            *bound_rows(self.head, disc),
            *batch_rows(self.head, disc, cfg),
            *continuous_rows(mine, cont, reference(plans, "points", "log_softmax")),
        ]


def discrete_params(cfg: CardConfig, plan: HeadPlan, k: int, dim: int, m: int, seed: int) -> dict:
    """A run of the heads sweep (`heads.run_params`) with the budget of the head's kind, and
    the card's columns: the size parameter it sweeps, and HC4's batch sizes at its top size."""
    h = cfg.heads
    p = run_params(h, k, plan.spec, dim, m, seed)
    p["steps"] = h.point_steps if plan.kind == "points" else h.steps
    top = (dim, m) == plan.top
    p.update(
        size=plan.size,
        lossn_sizes="/".join(str(n) for n in cfg.batches) if top else "",
        eval_pairs=cfg.eval_pairs,
        lossn_near=t5.LOSSN_NEAR,
        lossn_half=t5.LOSSN_HALF,
    )
    return p


def continuous_params(cfg: CardConfig, plan: HeadPlan, seed: int) -> dict:
    """HC5's run: the head at its top size on MLP encoders, minibatches of the Gaussian (T1b's
    settings, `fitting.sample_params`), and the size parameter the card sweeps."""
    dim, m = plan.top
    fit = sample_params(plan.spec, dim, m, cfg.hidden, cfg.c_batch, cfg.c_steps, cfg.c_lr, seed,
                        cfg.eval_samples)  # fmt: skip
    return {"dist": cfg.gauss, **fit, "size": plan.size}


def reference(plans: dict[str, HeadPlan], kind: str, weights: str = "") -> str:
    """The built-in head of this declaration that a calibration pair perturbs."""
    for spec in registry.HEAD_NAMES:
        p = plans.get(spec)
        if p is not None and p.kind == kind and (not weights or p.weights == weights):
            return spec
    raise ValueError(f"no built-in head declares {kind} {weights}".strip())


# --------------------------------------------------------------------------- tables


def prepared(
    tables: dict[str, pd.DataFrame], plans: dict[str, HeadPlan]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The card's two tables with `rel` (rmse / sd(PMI)), `cap` (the value of each head's size
    parameter) and `top` (the run is at its head's largest size)."""
    out = []
    for name in (DISCRETE, CONTINUOUS):
        df = tables[name].copy()
        df["rel"] = rel_error(df)
        size = df["size"].astype(str)
        df["cap"] = np.where(size == "dim", df["dim"], np.where(size == "points", df["points"], 1))
        tops = {s: p.top for s, p in plans.items()}
        df["top"] = [
            (int(d), int(m)) == tops.get(s)
            for s, d, m in zip(df.similarity, df["dim"], df.points, strict=True)
        ]
        out.append(df)
    return out[0], out[1]


def of_head(df: pd.DataFrame, spec: str) -> pd.DataFrame:
    """The runs of one head, by the spec its runs record (the checked head's or a built-in's,
    as `HeadCard.plans` lists them): a group of the table, never a test of a head's name."""
    groups = df.groupby("similarity", sort=False).groups
    return df.loc[groups[spec]] if spec in groups else df.iloc[:0]


def per_seed(df: pd.DataFrame, col: str) -> np.ndarray:
    """`col` per seed, in seed order (one run per seed: one head, size and K); NaN kept."""
    if df.seed.duplicated().any():
        raise ValueError(f"more than one run per seed in the rows of {col!r}")
    return df.sort_values("seed")[col].to_numpy(dtype=float)


def _bad_seeds(df: pd.DataFrame, col: str) -> list[int]:
    v = df.sort_values("seed")
    return [int(s) for s, x in zip(v.seed, v[col], strict=True) if not np.isfinite(x)]


def guarded(rule: Callable, values, tol: float, test: str) -> Judged:
    """rule(values), or, when a value is not finite (a head that diverged), NONFINITE judged
    exactly by the same threshold: a FAIL."""
    v = np.asarray(values, dtype=float)
    if v.size >= 2 and np.isfinite(v).all():
        return rule(v)
    return V.exact(NONFINITE, tol, test, n=v.size)


def upper(values, tol: float) -> Judged:
    """A nonnegative error below `tol` (`verdicts.judge_equivalence_upper`)."""
    return guarded(lambda v: V.judge_equivalence_upper(v, tol), values, tol, "below")


def tost(values, tol: float) -> Judged:
    """A gap within +-`tol` (`verdicts.judge_equivalence`)."""
    return guarded(lambda v: V.judge_equivalence(v, tol), values, tol, "equivalence")


def summary(j: Judged) -> str:
    return f"{fmt(j.estimate)} ± {fmt(j.se)} (n={j.n})"


def short(spec: str) -> str:
    """A head's label in tables and figures: the name after the last ':' or '.'."""
    return spec.rsplit(":", 1)[-1].rsplit(".", 1)[-1] if ":" in spec else spec


# --------------------------------------------------------------------------- HC0


def contract_judged(rows: pd.DataFrame) -> tuple[list[Judged], float, int]:
    """HC0's rule on a head's runs: the largest paired gap below PAIRED_TOL and no non-finite
    logit (both exact, over every run)."""
    gaps = rows.paired_gap.to_numpy(float)
    gap = float(gaps.max()) if gaps.size and np.isfinite(gaps).all() else NONFINITE
    bad = int(np.nansum(rows.nonfinite.to_numpy(float))) + int((~np.isfinite(gaps)).sum())
    n = len(rows)
    return [V.exact(gap, PAIRED_TOL, "below", n), V.exact(bad, 1, "below", n)], gap, bad


def contract_rows(head: str, disc: pd.DataFrame, cont: pd.DataFrame) -> list[ClaimResult]:
    rows = pd.concat([of_head(disc, head), of_head(cont, head)])
    judged, gap, bad = contract_judged(rows)
    return [
        judged_row(
            "HC0",
            "The head keeps the contract on every trained run: paired_logits equals the "
            "diagonal of logit_matrix and every logit is finite",
            judged,
            f"max |paired - diagonal| / (1 + |diagonal|) < {PAIRED_TOL:g}; non-finite logits "
            "= 0 (exact, every run)",
            kind="implementation",
            measured=gap,
            detail=f"{len(rows)} runs ({len(of_head(disc, head))} on latent joints, "
            f"{len(of_head(cont, head))} on the Gaussian), {CONTRACT_PAIRS} held-out pairs each: "
            f"largest relative gap {fmt(gap)}, {bad} non-finite logits.",
        )
    ]


# --------------------------------------------------------------------------- HC1


def reach_by_k(rows: pd.DataFrame, col: str = "rel", tol: float = REACH_TOL) -> dict[int, Judged]:
    """Per K: the per-seed `col` of these runs (one head at one size) judged below `tol`."""
    return {int(k): upper(per_seed(g, col), tol) for k, g in rows.groupby("k", sort=True)}


def by_k_text(judged: dict[int, Judged]) -> str:
    return "; ".join(f"K={k}: {summary(j)}" for k, j in judged.items())


def reach_rows(head: str, disc: pd.DataFrame, ref: str) -> list[ClaimResult]:
    top = disc[disc.top]
    mine, table = of_head(top, head), of_head(top, ref)
    ev = reach_by_k(mine)
    near, half = reach_by_k(table, DOUBLE), reach_by_k(table, HALF)
    rule = f"upper bound of rmse/sd < {REACH_TOL}, every K (Holm)"
    size = _size_text(mine)
    bad = _bad_seeds(mine, "rel")
    return [
        judged_row(
            "HC1",
            f"The head reaches PMI + C on K-class latent joints at its largest configured size "
            f"({size}), trained on the exact population loss",
            list(ev.values()),
            rule,
            figure=CAPACITY_FIGURE,
            detail=f"rmse/sd at {size}: {by_k_text(ev)}"
            + (f"; non-finite on seeds {bad}" if bad else "")
            + ". The built-in heads at the same settings: report.md, 'Beside the built-in heads'.",
        ),
        calibration(
            "HC1",
            f"Near miss: the free table ({ref}, which reaches PMI) perturbed to be 2x REACH_TOL "
            "worse, through the same rule",
            list(near.values()),
            rule,
            "FAIL",
            CAPACITY_FIGURE,
            by_k_text(near),
        ),
        calibration(
            "HC1",
            f"Half-size case: the free table ({ref}) perturbed to be 0.5x REACH_TOL worse, "
            "through the same rule",
            list(half.values()),
            rule,
            "PASS",
            CAPACITY_FIGURE,
            by_k_text(half),
        ),
    ]


def _size_text(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "no runs"
    r = rows.iloc[0]
    return {"dim": f"D = {int(r['dim'])}", "points": f"M = {int(r.points)}"}.get(
        str(r["size"]), "its one size"
    )


# --------------------------------------------------------------------------- HC2


def capacity_judged(curve: pd.DataFrame, top_col: str = "rel") -> tuple[list[Judged], list[str]]:
    """T2c's rule (`t2.falls_to_pmi`) along `cap`, the head's size parameter, at each K of
    these runs; a curve with a non-finite error FAILs."""
    bad = [c for c in ("rel", top_col) if not np.isfinite(curve[c].to_numpy(float)).all()]
    if bad:
        n = int(curve.seed.nunique())
        return [V.exact(NONFINITE, REACH_TOL, "below", n)], [f"non-finite {', '.join(bad)}"]
    return t2.falls_to_pmi(curve.assign(points=curve.cap), top_col)


def capacity_rows(
    plan: HeadPlan, disc: pd.DataFrame, h: HeadsConfig, ref: str
) -> list[ClaimResult]:
    if plan.size == "none":
        return [
            finding(
                "HC2",
                "The head takes raw state indices: it has no size parameter, so no capacity curve",
                "n/a",
                f"{plan.spec} declares HeadInputs.indices(); its error at each K is HC1's.",
            )
        ]
    at = disc[disc.k.isin(h.curve_ks)]
    ev, parts = capacity_judged(of_head(at, plan.spec))
    wpse = of_head(at, ref)
    near, near_parts = capacity_judged(wpse, DOUBLE)
    half, half_parts = capacity_judged(wpse, HALF)
    name = {"dim": "D", "points": "M"}[plan.size]
    rule = (
        f"error at the largest {name} < {REACH_TOL} and every doubling's change < {REACH_TOL} "
        "(upper bounds), every curve K"
    )
    return [
        judged_row(
            "HC2",
            f"The head's error falls with its size parameter {plan.size} ({name} = "
            f"{', '.join(str(c) for c in sorted({s[plan.size == 'points'] for s in plan.sizes}))})"
            " until it reaches PMI: within the reach tolerance at the largest size, and no "
            "doubling raises it by the tolerance or more",
            ev,
            rule,
            figure=CAPACITY_FIGURE,
            detail="; ".join(parts).replace("M=", f"{name}=").replace("at M", f"at {name}"),
        ),
        calibration(
            "HC2",
            f"Near miss: the {ref} curve (T2c's) with its largest-M head perturbed to be 2x "
            "REACH_TOL worse, through the same rule",
            near,
            rule,
            "FAIL",
            CAPACITY_FIGURE,
            "; ".join(near_parts),
        ),
        calibration(
            "HC2",
            f"Half-size case: the {ref} curve with its largest-M head perturbed to be 0.5x "
            "REACH_TOL worse, through the same rule",
            half,
            rule,
            "PASS",
            CAPACITY_FIGURE,
            "; ".join(half_parts),
        ),
    ]


# --------------------------------------------------------------------------- HC3


def bounds(disc: pd.DataFrame) -> pd.DataFrame:
    """The runs with T3's quantities (`t3.with_bounds`), finite ones only."""
    b = t3.with_bounds(disc)
    return b[np.isfinite(b.pmi_delta) & np.isfinite(b.constructed_gap)]


def bound_judged(rows: pd.DataFrame) -> tuple[Judged, float]:
    """T3b's inequality on these runs: max |constructed − ε| − 2Δ below ROUNDOFF (exact)."""
    margin = (rows.constructed_gap - 2 * rows.pmi_delta).to_numpy(float)
    worst = float(margin.max()) if margin.size and np.isfinite(margin).all() else NONFINITE
    return V.exact(worst, t3.ROUNDOFF, "below", n=max(len(rows), 1)), worst


def order_judged(b: pd.DataFrame, head: str, target: float | None = None) -> Judged | None:
    """T3f's rule with the focus on `head` (None: fewer than 2 seeds with a comparable pair);
    target: T3's planted calibration (`t3.planted_delta`) at that expected discordance."""
    focus = pd.Series(b.index.isin(of_head(b, head).index), index=b.index)
    if target is not None:
        b, _ = t3.planted_delta(b, "constructed_gap", target, focus)
    counts = t3.pair_counts(b, "constructed_gap", focus=focus)
    if counts.discordance.notna().sum() < 2:
        return None
    return t3.judge_order(counts)


def bound_rows(head: str, disc: pd.DataFrame) -> list[ClaimResult]:
    b = bounds(disc)
    mine = of_head(b, head)
    j, worst = bound_judged(mine)
    rows = [
        judged_row(
            "HC3",
            "The constructed classifier's excess risk stays within 2*Delta of eps on every run "
            "of the head (T3b's inequality, which holds for every logit table)",
            j,
            f"max over runs of |constructed - eps| - 2 Delta < {t3.ROUNDOFF:g} (exact)",
            kind="implementation",
            figure=BOUND_FIGURE,
            detail=f"{len(mine)} runs; largest margin {fmt(worst)} nats.",
        )
    ]
    ev = order_judged(b, head)
    near = order_judged(b, head, t3.NEAR_MISS)
    half = order_judged(b, head, t3.HALF_MISS)
    if ev is None or near is None or half is None:
        rows.append(
            finding(
                "HC3",
                "The Delta order (T3f's rule) needs >= 2 seeds with a comparable pair of heads "
                "including this one",
                "n/a",
                "too few pairs of heads whose Delta and excess risk both differ by > 1e-9.",
                BOUND_FIGURE,
            )
        )
    else:
        rule = t3.ORDER_RULE
        rows += [
            judged_row(
                "HC3",
                "The excess risk the head adds to the prompts' own, |constructed - eps|, shrinks "
                "with Delta on the pairs of heads (same K and seed) that include it",
                ev,
                rule,
                figure=BOUND_FIGURE,
                detail=f"per-seed discordance {summary(ev)} over the card's heads.",
            ),
            calibration(
                "HC3",
                f"The same heads with Delta' = Delta + s planted (every classifier unchanged) at "
                f"an expected discordance {t3.NEAR_MISS:g} = 2x the tolerance (T3's near miss)",
                near,
                rule + "; must FAIL",
                "FAIL",
                BOUND_FIGURE,
                summary(near),
            ),
            calibration(
                "HC3",
                f"The same with an expected discordance {t3.HALF_MISS:g} = 0.5x the tolerance",
                half,
                rule + "; must PASS",
                "PASS",
                BOUND_FIGURE,
                summary(half),
            ),
        ]
    top = mine[mine.top]
    if len(top):
        per_k = top.groupby("k")[["probe_excess", "risk_bound"]].mean()
        rows.append(
            finding(
                "HC3",
                "The linear probe on the head's similarity profile against eps + 2*Delta, at its "
                "largest size (T3a judges linear heads only: a profile lets a probe fit any head)",
                "; ".join(f"K={int(k)}: {fmt(r.probe_excess)}" for k, r in per_k.iterrows()),
                "probe excess vs eps + 2 Delta (mean over seeds): "
                + "; ".join(
                    f"K={int(k)}: {fmt(r.probe_excess)} vs {fmt(r.risk_bound)}"
                    for k, r in per_k.iterrows()
                ),
                BOUND_FIGURE,
            )
        )
    return rows


# --------------------------------------------------------------------------- HC4


def batch_judged(rows: pd.DataFrame, batches, key: str = "lossn") -> dict[tuple[int, int], Judged]:
    """Per (K, N): T5c's rule (`tost` within LOSSN_TOL) on the per-seed `<key>_diff_N<N>` of
    these runs (one head at its top size per K)."""
    return {
        (int(k), int(n)): tost(per_seed(g, f"{key}_diff_N{n}"), t5.LOSSN_TOL)
        for k, g in rows.groupby("k", sort=True)
        for n in batches
    }


def _kn_text(judged: dict[tuple[int, int], Judged]) -> str:
    return "; ".join(f"K={k} N={n}: {summary(j)}" for (k, n), j in judged.items())


def batch_rows(head: str, disc: pd.DataFrame, cfg: CardConfig) -> list[ClaimResult]:
    mine = of_head(disc[disc.top], head)
    cells = {key: batch_judged(mine, cfg.batches, key)
             for key in ("lossn", "lossn_near", "lossn_half", "lossn_noise")}  # fmt: skip
    rule = f"|E loss_N(candidate) - E loss_N(PMI)| < {t5.LOSSN_TOL:g} nats (TOST), every K and N"
    return [
        judged_row(
            "HC4",
            "The head at its largest size reaches the finite-batch optimum: its held-out "
            "expected loss_N equals PMI's (PMI + C minimises E[loss_N] at every N)",
            list(cells["lossn"].values()),
            rule,
            figure=BATCH_FIGURE,
            detail=_kn_text(cells["lossn"]) + f" nats; {cfg.eval_pairs:,} held-out pairs per N.",
        ),
        calibration(
            "HC4",
            f"Near miss: PMI at a temperature off by {t5.LOSSN_NEAR:.3f} (a loss_N gap of about "
            "2x the tolerance, T5c's), through the same rule",
            list(cells["lossn_near"].values()),
            rule,
            "FAIL",
            BATCH_FIGURE,
            _kn_text(cells["lossn_near"]),
        ),
        calibration(
            "HC4",
            f"Half-size case: PMI at a temperature off by {t5.LOSSN_HALF:.4f} (about 0.5x the "
            "tolerance), through the same rule",
            list(cells["lossn_half"].values()),
            rule,
            "PASS",
            BATCH_FIGURE,
            _kn_text(cells["lossn_half"]),
        ),
        judged_row(
            "HC4",
            "PMI plus independent N(0, 0.5^2) noise on every cell (T5c's control) through the "
            "same rule",
            list(cells["lossn_noise"].values()),
            rule,
            kind="control",
            figure=BATCH_FIGURE,
            detail=_kn_text(cells["lossn_noise"]),
        ),
    ]


# --------------------------------------------------------------------------- HC5


def continuous_rows(plan: HeadPlan, cont: pd.DataFrame, ref: str) -> list[ClaimResult]:
    if plan.kind == "indices":
        return [
            finding(
                "HC5",
                "The head takes raw state indices: it has no continuous inputs, so no "
                "continuous joint",
                "n/a",
                f"{plan.spec} declares HeadInputs.indices().",
            )
        ]
    mine, kme = of_head(cont, plan.spec), of_head(cont, ref)
    ev = upper(per_seed(mine, "rel"), REACH_TOL_MC)
    near = upper(per_seed(kme, DOUBLE), REACH_TOL_MC)
    half = upper(per_seed(kme, HALF), REACH_TOL_MC)
    rule = f"upper bound of rmse/sd < {REACH_TOL_MC} (Monte Carlo)"
    spec = str(mine.dist.iloc[0]) if len(mine) else GAUSS
    return [
        judged_row(
            "HC5",
            f"On a continuous joint ({spec}), MLP encoders trained on minibatches, the head at "
            f"its largest size ({_size_text(mine)}) reaches PMI + C",
            ev,
            rule,
            figure=CAPACITY_FIGURE,
            detail=f"rmse/sd {summary(ev)}"
            + (
                f"; non-finite on seeds {_bad_seeds(mine, 'rel')}"
                if _bad_seeds(mine, "rel")
                else ""
            ),
        ),
        calibration(
            "HC5",
            f"Near miss: the {ref} head on the same joint perturbed to be 2x REACH_TOL_MC worse, "
            "through the same rule",
            near,
            rule,
            "FAIL",
            CAPACITY_FIGURE,
            summary(near),
        ),
        calibration(
            "HC5",
            f"Half-size case: the {ref} head perturbed to be 0.5x REACH_TOL_MC worse, through "
            "the same rule",
            half,
            rule,
            "PASS",
            CAPACITY_FIGURE,
            summary(half),
        ),
    ]


# --------------------------------------------------------------------------- beside


BESIDE_COLUMNS = ["part", "head", "k", "size", "n", "estimate", "se", "verdict"]


def beside(tables: dict[str, pd.DataFrame], card: HeadCard, cfg: CardConfig) -> pd.DataFrame:
    """Every head's numbers under the card's rules, one row per (part, head, K, size or N):
    contract (largest paired gap), reach (rel at the top size), capacity (rel per size at the
    curve K's, with T2c's verdict on the row of size "all"), bound (largest margin), order
    (discordance with the focus on the head), batch (loss_N gap per N), continuous (rel).
    Verdicts are each cell's own, without the family correction of the report's rows."""
    plans = {p.spec: p for p in card.plans(cfg)}
    disc, cont = prepared(tables, plans)
    b = bounds(disc)
    out: list[dict] = []

    def add(part, head, k, size, j: Judged | None, est=math.nan, se=math.nan, n=0):
        if j is not None:
            est, se, n = j.estimate, j.se, j.n
        out.append(dict(zip(BESIDE_COLUMNS, (part, head, k, size, n, est, se,
                                              "" if j is None else j.verdict), strict=True)))  # fmt: skip

    for spec, plan in plans.items():
        d, c = of_head(disc, spec), of_head(cont, spec)
        judged, _, _ = contract_judged(pd.concat([d, c]))
        add("contract", spec, "", "", replace(judged[0], verdict=V.claim_verdict(judged)))
        top = d[d.top]
        for k, j in reach_by_k(top).items():
            add("reach", spec, k, "", j)
        if plan.size != "none":
            at = d[d.k.isin(cfg.heads.curve_ks)]
            for (k, cap), g in at.groupby(["k", "cap"], sort=True):
                v = per_seed(g, "rel")
                add("capacity", spec, int(k), int(cap), None, float(np.mean(v)),
                    float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan, v.size)  # fmt: skip
            for k, g in at.groupby("k", sort=True):
                judged, _ = capacity_judged(g)
                add("capacity", spec, int(k), "all", V.decisive(V.holm_verdicts(judged)))
        add("bound", spec, "", "", bound_judged(of_head(b, spec))[0])
        add("order", spec, "", "", order_judged(b, spec))
        for (k, n), j in batch_judged(top, cfg.batches).items():
            add("batch", spec, k, n, j)
        if len(c):
            add("continuous", spec, "", "", upper(per_seed(c, "rel"), REACH_TOL_MC))
    return pd.DataFrame(out, columns=BESIDE_COLUMNS)


BESIDE_PARTS = {
    "contract": ("HC0 contract: largest relative |paired - diagonal| (exact)", "size"),
    "reach": (f"HC1 reach: rmse/sd at the largest size, judged < {REACH_TOL}", "k"),
    "capacity": ("HC2 capacity: rmse/sd per size at the curve K's (mean ± SE), and T2c's rule", "size"),
    "bound": ("HC3 bound: largest |constructed - eps| - 2 Delta (exact, nats)", "size"),
    "order": (f"HC3 order: discordance of the pairs that include the head, judged < {t3.ORDER_TOL}", "size"),
    "batch": (f"HC4 finite batch: E loss_N(head) - E loss_N(PMI), nats, judged within ±{t5.LOSSN_TOL:g}", "size"),
    "continuous": (f"HC5 continuous: rmse/sd on the Gaussian, judged < {REACH_TOL_MC}", "size"),
}  # fmt: skip


def beside_markdown(df: pd.DataFrame, head: str) -> list[str]:
    """report.md's section "Beside the built-in heads": one table per part, heads as rows (the
    checked head first, in bold), a column per K / size / N."""
    lines = [
        "## Beside the built-in heads",
        "",
        "The same rules on every head at the same settings (the built-in heads' runs are the "
        "card's own; each cell judged alone, without the family correction of the rows above). "
        "The numbers are in heads.csv.",
        "",
    ]
    for part, (title, _) in BESIDE_PARTS.items():
        sub = df[df.part == part]
        if sub.empty:
            continue
        keys = list(dict.fromkeys(zip(sub.k, sub["size"], strict=True)))
        lines += [f"### {title}", ""]
        lines.append("| head | " + " | ".join(_key_label(part, k, s) for k, s in keys) + " |")
        lines.append("|---" * (len(keys) + 1) + "|")
        for spec in dict.fromkeys(sub["head"]):
            cells = []
            for k, s in keys:
                r = sub[(sub["head"] == spec) & (sub.k == k) & (sub["size"] == s)]
                cells.append(_cell(r.iloc[0]) if len(r) else "")
            name = f"**{spec}**" if spec == head else spec
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _key_label(part: str, k, size) -> str:
    if part == "batch":
        return f"K={k}, N={size}"
    if part == "capacity":
        return f"K={k}, {'rule' if size == 'all' else f'size {size}'}"
    if part == "reach":
        return f"K={k}"
    return "value"


def _cell(r) -> str:
    if r.estimate != r.estimate:
        return "—"
    if r.verdict == "" and r.se == r.se:
        return f"{fmt(r.estimate)} ± {fmt(r.se)}"
    value = f"{fmt(r.estimate)}" + (f" ± {fmt(r.se)}" if r.se == r.se and r.se > 0 else "")
    return f"{value} {r.verdict}".strip()


# --------------------------------------------------------------------------- running


def preflight(card: HeadCard, cfg: CardConfig) -> None:
    """Build the head as its first run on a latent joint (and its run on the Gaussian) builds
    it, and run both forms on a small batch: one InputError naming what breaks the contract
    (an error raised inside the head, a wrong shape, logits that no gradient reaches)."""
    import torch

    from pmilab.training.config import FitConfig
    from pmilab.training.model import build_model

    plan = plan_head(card.head, cfg.heads, card.dim, card.points)
    dim, m = plan.sizes[0]
    runs = [discrete_params(cfg, plan, cfg.heads.ks[0], dim, m, 0)]
    if plan.kind != "indices":
        runs.append(continuous_params(cfg, plan, 0))
    for p in runs:
        fc = FitConfig(**fit_kwargs(p)).validated()
        d = make_dist(p["dist"])
        x, y = d.sample(5, seed=0)
        where = f"head {card.head} on {p['dist']}"
        try:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                model = build_model(d, fc)
            if not d.discrete:
                dtype = next(model.parameters()).dtype
                x, y = x.to(dtype), y.to(dtype)
            matrix = model.logit_matrix(x, y[:4])
            paired = model.paired_logits(x[:4], y[:4])
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
        except Exception as e:  # noqa: BLE001 - the head's own error, as one line
            first = str(e).splitlines()[0] if str(e) else ""
            raise InputError(
                f"{where}: its forward failed on a batch of 5 x's and 4 y's: "
                f"{type(e).__name__}: {first}"
            ) from None
        if not isinstance(matrix, torch.Tensor) or tuple(matrix.shape) != (5, 4):
            raise InputError(
                f"{where}: logit_matrix returned {_shape(matrix)} for 5 x's and 4 y's, not (5, 4)"
            )
        if not isinstance(paired, torch.Tensor) or tuple(paired.shape) != (4,):
            raise InputError(
                f"{where}: paired_logits returned {_shape(paired)} for 4 pairs, not (4,)"
            )
        if not matrix.requires_grad:
            raise InputError(
                f"{where}: logit_matrix does not reach the encoders or the head's parameters "
                "(no gradient to train them)"
            )


def _shape(v) -> str:
    shape = getattr(v, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else f"a {type(v).__name__}"


@dataclass
class CheckRun:
    """What `run_check` produced: the report's rows, where it lies, and the runs it trained."""

    head: str
    preset: str
    out: Path
    report: Path
    results: list[ClaimResult] = field(default_factory=list)
    ran: int = 0
    reused: int = 0

    @property
    def broken(self) -> list[ClaimResult]:
        """Rows not as they must be that are not the head's grades: a contract row that FAILs,
        a calibration or control with the wrong verdict (the machinery, not the head)."""
        return [r for r in self.results if not r.ok and r.kind != "evidence"]

    def verdicts(self) -> dict[str, str]:
        """Evidence row ID -> verdict (each HC row once)."""
        return {r.claim: r.verdict for r in self.results if r.kind == "evidence"}


def run_check(
    head,
    preset: str = "quick",
    out: str | Path = "check-out",
    *,
    dim: int | None = None,
    points: int | None = None,
    seeds: int | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] = lambda line: None,
    executor: str = "local",
    address: str | None = None,
    command: str = "",
) -> CheckRun:
    """Check `head` at `preset` into `out`: meta.json, runs/, report.md, claims.csv,
    results.csv and heads.csv (figures: `pmilab.figures.check`, drawn by the callers above).

    An --out of an earlier check of this preset is continued (its runs are reused, the report
    is rewritten for this head); anything else there is refused unless overwrite."""
    check_preset(preset)
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2):
        raise InputError(f"seeds must be an integer >= 2 (a verdict needs two), got {seeds!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory; pick another path")
    card = head if isinstance(head, HeadCard) else HeadCard(head, dim, points)
    cfg = claim_config(card, preset, seeds)
    preflight(card, cfg)
    check_out(out, overwrite, own="verify")  # a check directory holds verify's files
    verify.write_meta(out, preset, seeds, check=card.meta)
    t0 = time.perf_counter()
    runs = verify.run_modules(
        [card], preset, out, seeds, progress, jobs, log=log, executor=executor, address=address
    )
    cr = runs[0]
    total = sum(len(sw.runs) for sw in cr.sweeps)
    header = {
        "command": command or f"pmilab check {card.head} --preset {preset}",
        "head": card.head,
        "preset": preset,
        "this invocation": f"{time.perf_counter() - t0:.0f} s wall; {cr.ran} runs trained, "
        f"{total - cr.ran} reused from earlier checks",
    }
    report = verify.write(out, runs, header)
    tables = {sw.name: load_table(sw, out / "runs") for sw in cr.sweeps}
    side = beside(tables, card, cfg)
    atomic.write_text(out / "heads.csv", side.to_csv(index=False))
    text = report.read_text().replace("# pmilab verify report", "# pmilab check report", 1)
    atomic.write_text(report, text + "\n".join(beside_markdown(side, card.head)) + "\n")
    return CheckRun(card.head, preset, out, report, cr.results, cr.ran, total - cr.ran)


def card_of(meta: dict) -> HeadCard:
    """The card a check directory's meta.json records (`verify.read_meta(...)["check"]`)."""
    c = meta["check"]
    return HeadCard(c["head"], c.get("dim"), c.get("points"))
