"""T1: the optimal similarity is PMI + C, one-sided InfoNCE does not pin C, and the InfoNCE
estimate is capped by log N and approaches it when I > log N (docs/theory.md T1).

Every judged value is computed per seed (the seed is the replicate) and judged on the mean
over seeds with its one-sided interval (`pmilab.verdicts`, alpha 0.05); sub-cases ("every
head", "every N") are Holm-corrected as one family.

- T1a  tabular, KME (M = K) and WPSE heads trained on the exact symmetric population loss of a
       K=4 latent joint reach PMI + C: per head, mean relative error rmse/sd(PMI) < REACH_TOL;
- T1b  flexible heads with MLP encoders trained on minibatches of continuous joints (Gaussian,
       Gaussian mixture) reach PMI + C: per joint, mean Monte Carlo relative error
       < REACH_TOL_MC;
- T1c  one-sided InfoNCE reaches its own optimum (excess < OPT_TOL) but leaves row offsets
       c(x) (sd > REACH_TOL), while the symmetric loss pins the constant (sd < REACH_TOL);
- T1d  where I exceeds log N by SAT_MARGIN nats or more, the estimate log N − loss_N is within
       SAT_TOL of log N: the relative shortfall (log N − estimate) / log N < SAT_TOL at every
       such N, on a joint with I = 5.5 nats. The bracket log N − B_N − 2Δ <= estimate <=
       min(I, log N) and "never above log N on any batch" hold for any critic: implementation
       checks.

Calibration pairs (docs/theory.md T1): each evidence row's rule on a case wrong by 2x its
tolerance (must FAIL) and by 0.5x (must PASS), computed per seed by the same metric code
(`tasks.t1_heads`, `tasks.saturation`). Strawman controls beside them: T1a a linear head with
d = 2 < K; T1b the KME head on shuffled pairs; T1d the head's estimate on broken pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pmilab import registry
from pmilab import verdicts as V
from pmilab.experiments.claims.tolerances import REACH_TOL, REACH_TOL_MC
from pmilab.experiments.framework.claim import (
    ClaimResult,
    calibration,
    check_preset,
    fig,
    fmt,
    judged_row,
)
from pmilab.experiments.framework.sweep import RunSpec, Sweep, dist_id, seed_list
from pmilab.experiments.tasks.fitting import population_params, sample_params
from pmilab.experiments.tasks.saturation import mi_saturation, mi_saturations, saturation_metrics
from pmilab.experiments.tasks.t1_heads import (
    CAL_HALF,
    CAL_NEAR,
    T1_CONTINUOUS_METRICS,
    T1_DISCRETE_METRICS,
    t1_continuous_head,
    t1_continuous_heads,
    t1_discrete_head,
    t1_discrete_heads,
)
from pmilab.training.config import FitConfig
from pmilab.verdicts import Judged

CLAIM = "T1"
TITLE = "The optimal similarity is PMI + C; the InfoNCE estimate is capped by log N"

# "Reached its own optimum": one-sided excess population loss <= 1e-3 nats, 0.7% of this
# joint's I(X;Y) = 0.141 nats; the symmetric tabular head reaches < 1e-6 in the same budget.
OPT_TOL = 1e-3
# T1d (evidence): "the estimate approaches log N when I > log N", judged at every configured
# N with log N <= I - SAT_MARGIN. SAT_TOL: the relative shortfall (log N - estimate) / log N
# must be below 5% (REACH_TOL's 5%: "reaches log N" as "reaches PMI + C"). On the far joint
# (I = 5.53 nats) the theory's own bound on the exact PMI critic's shortfall, B_N / log N, is
# 1.6%, 1.4%, 1.7% at N = 2, 4, 8 (exact, computed from the joint before any run): a head at
# PMI + C sits at a third of the tolerance. SAT_MARGIN = 3 nats keeps N where that holds.
SAT_TOL = REACH_TOL
SAT_MARGIN = 3.0
# T1d's implementation checks: the bracket [log N - B_N - 2 Delta, min(I, log N)] holds for
# any critic (in expectation); each side's violation, in units of min(I, log N), must be below
# BAND_TOL (the estimates are Monte Carlo means over held-out batches).
BAND_TOL = REACH_TOL
# "never above log N on any batch" is exact: max over batches of (estimate - log N) <= 0, up to
# float64 rounding of the loss (1e-9 nats).
CAP_ROUNDING = 1e-9


@dataclass(frozen=True)
class T1Config:
    discrete: str = "latent:nx=24,ny=20,k=4,seed=0"
    steps: int = 3000
    lr: float = 0.1
    continuous: tuple[tuple[str, str, int], ...] = (
        ("gaussian:dx=2,dy=2,rho=0.8/0.5", "kme", 2),
        ("mixture:k=4,dx=2,dy=2,sep=2,std=1,seed=0", "kme", 4),
    )
    hidden: str = "64x64"
    c_steps: int = 4000
    c_lr: float = 1e-2
    c_batch: int = 128  # the point-set heads cost O(B^2 M^2) per step; T1b holds for every N
    eval_samples: int = 2048
    saturation: str = "diag:n=32,noise=0.1"  # I = 2.81 nats: the bracket across N
    saturation_far: str = "diag:n=256,noise=0.001"  # I = 5.53 nats: T1d's evidence
    sizes: str = "2/4/8/16/64/256/1024"
    pairs: int = 100_000
    seeds: int | tuple[int, ...] = 3


PRESETS = {
    "full": T1Config(),
    "quick": T1Config(steps=1000, c_steps=1500, eval_samples=1024, pairs=20_000, seeds=5),
    # seconds-long sizes for tests and notebooks (numbers are meaningless at this size); two
    # seeds, the fewest a judged row accepts
    "smoke": T1Config(
        steps=300, c_steps=10, hidden="8", eval_samples=64, pairs=500, sizes="2/8/64", seeds=2
    ),
}


def config(preset: str, seeds: int | tuple[int, ...] | None = None) -> T1Config:
    cfg = PRESETS[check_preset(preset)]
    return replace(cfg, seeds=seeds) if seeds else cfg


def _discrete(cfg: T1Config) -> Sweep:
    runs = []
    for sim, dim, m, obj in (
        ("tabular", 1, 1, "symmetric"),
        ("tabular", 1, 1, "one_sided"),
        ("kme", 2, 4, "symmetric"),
        ("wpse", 2, 8, "symmetric"),
        ("linear", 2, 1, "symmetric"),  # T1a's control: rank <= 3 < rank of PMI
    ):
        # the calibration pairs of T1a and T1c perturb the symmetric tabular head's table
        cal = REACH_TOL if (sim, obj) == ("tabular", "symmetric") else 0.0
        for seed in seed_list(cfg.seeds):
            p = {
                "dist": cfg.discrete,
                **population_params(sim, dim, m, cfg.steps, cfg.lr, seed, objective=obj),
                "probe_n": 0,
                "cal_tol": cal,
            }
            rid = ("t1", dist_id(cfg.discrete), sim, f"M{m}", obj, f"s{cfg.steps}", f"seed{seed}")
            runs.append(RunSpec.of(p, *rid))
    return Sweep(
        "t1-discrete", t1_discrete_head, runs, T1_DISCRETE_METRICS, "T1", t1_discrete_heads
    )


def _continuous(cfg: T1Config) -> Sweep:
    runs = []
    control = (f"{cfg.continuous[0][0]}|shuffled", *cfg.continuous[0][1:])  # T1b's control
    for spec, sim, m in (*cfg.continuous, control):
        for seed in seed_list(cfg.seeds):
            fit = sample_params(
                sim,
                dim=2,
                points=m,
                hidden=cfg.hidden,
                batch_size=cfg.c_batch,
                steps=cfg.c_steps,
                lr=cfg.c_lr,
                seed=seed,
                eval_samples=cfg.eval_samples,
            )
            cal = 0.0 if spec.endswith("|shuffled") else REACH_TOL_MC
            p = {"dist": spec, **fit, "cal_tol": cal}
            rid = (
                "t1c",
                dist_id(spec),
                sim,
                f"M{m}",
                f"N{cfg.c_batch}",
                f"s{cfg.c_steps}",
                f"seed{seed}",
            )
            runs.append(RunSpec.of(p, *rid))
    return Sweep(
        "t1-continuous",
        t1_continuous_head,
        runs,
        T1_CONTINUOUS_METRICS,
        "T1",
        cell_task=t1_continuous_heads,
    )


def _saturation(cfg: T1Config) -> Sweep:
    runs = []
    for spec, cal in ((cfg.saturation, 0.0), (cfg.saturation_far, SAT_TOL)):
        for seed in seed_list(cfg.seeds):
            fit = FitConfig.table_params(
                similarity="tabular", population=True, steps=cfg.steps, lr=cfg.lr, seed=seed
            )
            p = {"dist": spec, **fit, "sizes": cfg.sizes, "pairs": cfg.pairs, "cal_tol": cal}
            runs.append(
                RunSpec.of(
                    p, "t1sat", dist_id(spec), f"s{cfg.steps}", f"p{cfg.pairs}", f"seed{seed}"
                )
            )
    sizes = [int(s) for s in cfg.sizes.split("/")]
    return Sweep(
        "t1-saturation",
        mi_saturation,
        runs,
        saturation_metrics(sizes),
        "T1",
        cell_task=mi_saturations,
    )


def sweeps(cfg: T1Config) -> list[Sweep]:
    return [_discrete(cfg), _continuous(cfg), _saturation(cfg)]


EVIDENCE_HEADS = ("tabular", "kme", "wpse")


# --------------------------------------------------------------------------- the rule


def reach_judged(values, tol: float) -> Judged:
    """T1a/T1b's rule for one head (or joint): the per-seed relative errors rmse/sd(PMI),
    judged on their mean: PASS iff its one-sided 95% upper bound < tol, FAIL iff the lower
    bound >= tol (`verdicts.judge_equivalence_upper`)."""
    return V.judge_equivalence_upper(np.asarray(values, float), tol)


def per_group(df: pd.DataFrame, key: str, col: str, rule) -> dict[str, Judged]:
    """The rule on each group's per-seed values of `col` (seeds in order), by group name."""
    return {
        str(name): rule(g.sort_values("seed")[col].to_numpy())
        for name, g in df.groupby(key, sort=True)
    }


def _cells_text(cells: dict[str, Judged]) -> str:
    """Each sub-case's mean ± SE (n) and its Holm-corrected verdict."""
    names = list(cells)
    holm = V.holm_verdicts(list(cells.values()))
    return "; ".join(
        f"{n}: {fmt(j.estimate)} ± {fmt(j.se, 2)} (n={j.n}, {h.verdict})"
        for n, j, h in zip(names, cells.values(), holm, strict=True)
    )


def _reach_discrete(df: pd.DataFrame) -> list[ClaimResult]:
    sym = df[df.objective == "symmetric"]
    ev = sym[registry.builtin_mask(sym.similarity, *EVIDENCE_HEADS)]
    ctl = sym[registry.builtin_mask(sym.similarity, "linear")]
    tab = sym[registry.builtin_mask(sym.similarity, "tabular")].sort_values("seed")
    rule = lambda v: reach_judged(v, REACH_TOL)  # noqa: E731
    cells = per_group(ev, "similarity", "t1_rel", rule)
    threshold = f"mean rmse/sd < {REACH_TOL} (95% upper bound), every head (Holm)"
    cal_threshold = f"mean rmse/sd < {REACH_TOL} (95% upper bound)"
    rows = [
        judged_row(
            "T1a",
            "Tabular, KME (M=K) and WPSE heads trained on the symmetric population loss of a "
            "latent joint reach PMI + C",
            list(cells.values()),
            threshold,
            figure=fig("t1_convergence"),
            detail=_cells_text(cells)
            + f"; max excess loss {fmt(ev.excess_loss.max())} nats (rmse/sd per seed).",
        )
    ]
    for case, k, expect in (("near", CAL_NEAR, "FAIL"), ("half", CAL_HALF, "PASS")):
        j = rule(tab[f"cal_rel_{case}"])
        rows.append(
            calibration(
                "T1a",
                f"The tabular head's table plus white noise of sd {k:g} x {REACH_TOL} sd(PMI) "
                f"(drawn per seed), through the same rule",
                j,
                cal_threshold,
                expect,
                fig("t1_convergence"),
                f"rmse/sd {fmt(j.estimate)} ± {fmt(j.se, 2)} over {j.n} seeds (the head alone: "
                f"{fmt(tab.t1_rel.mean())}).",
            )
        )
    j = rule(ctl.sort_values("seed").t1_rel)
    rows.append(
        judged_row(
            "T1a",
            "A linear head with d = 2 < K (rank <= 3; PMI is full rank) through the same rule",
            j,
            cal_threshold,
            kind="control",
            figure=fig("t1_convergence"),
            detail=f"linear d=2: rmse/sd {fmt(j.estimate)} ± {fmt(j.se, 2)} (n={j.n}); its "
            f"exact rank-2 Eckart-Young floor is {fmt((ctl.rank_floor / ctl.product_std).min())} "
            "sd.",
        )
    )
    return rows


def is_control(dist: pd.Series) -> pd.Series:
    return dist.str.endswith("|shuffled")


def _reach_continuous(df: pd.DataFrame) -> list[ClaimResult]:
    df = df.assign(rel=df.pmi_rmse_product / df.product_std, joint=df.dist.str.split(":").str[0])
    ev, ctl = df[~is_control(df.dist)], df[is_control(df.dist)]
    rule = lambda v: reach_judged(v, REACH_TOL_MC)  # noqa: E731
    cells = per_group(ev, "joint", "rel", rule)
    threshold = f"mean rmse/sd < {REACH_TOL_MC} (95% upper bound), every joint (Holm)"
    rows = [
        judged_row(
            "T1b",
            "Flexible heads (KME on MLP encoders) trained on minibatches of continuous joints "
            "(Gaussian, Gaussian mixture) reach PMI + C",
            list(cells.values()),
            threshold,
            figure=fig("t1_convergence"),
            detail=_cells_text(cells) + f"; Monte Carlo rmse/sd, per seed; max within-seed MC se "
            f"{fmt((ev.pmi_rmse_product_se / ev.product_std).max())}.",
        )
    ]
    for case, k, expect in (("near", CAL_NEAR, "FAIL"), ("half", CAL_HALF, "PASS")):
        cal = per_group(ev, "joint", f"cal_rel_{case}", rule)
        rows.append(
            calibration(
                "T1b",
                f"The exact PMI plus white noise of sd {k:g} x {REACH_TOL_MC} sd(PMI) on each "
                "joint's held-out grid (drawn per seed), through the same rule",
                list(cal.values()),
                threshold,
                expect,
                fig("t1_convergence"),
                _cells_text(cal) + ".",
            )
        )
    j = rule(ctl.sort_values("seed").rel)
    rows.append(
        judged_row(
            "T1b",
            "The same KME head trained on shuffled pairs (x, y independent), scored against "
            "the Gaussian's PMI, through the same rule",
            j,
            f"mean rmse/sd < {REACH_TOL_MC} (95% upper bound)",
            kind="control",
            figure=fig("t1_convergence"),
            detail=f"{ctl.dist.iloc[0]}: rmse/sd {fmt(j.estimate)} ± {fmt(j.se, 2)} (n={j.n}), "
            f"pmi_corr {fmt(ctl.pmi_corr.mean())}.",
        )
    )
    return rows


def one_sided_judged(off_one, excess_one, off_sym) -> dict[str, Judged]:
    """T1c's rule, three sub-cases (Holm): the one-sided head's row-offset sd/sd(PMI) is above
    REACH_TOL, its own one-sided excess loss below OPT_TOL, the symmetric head's offsets below
    REACH_TOL; each on its mean over seeds with its one-sided 95% bound."""
    return {
        "one-sided c(x) sd": V.judge(np.asarray(off_one, float), REACH_TOL, "above"),
        "one-sided own excess": V.judge(np.asarray(excess_one, float), OPT_TOL, "below"),
        "symmetric c(x) sd": V.judge(np.asarray(off_sym, float), REACH_TOL, "below"),
    }


def _one_sided(df: pd.DataFrame) -> list[ClaimResult]:
    tab = df[registry.builtin_mask(df.similarity, "tabular")]
    one = tab[tab.objective == "one_sided"].sort_values("seed")
    sym = tab[tab.objective == "symmetric"].sort_values("seed")
    if list(one.seed) != list(sym.seed):
        raise ValueError(f"T1c pairs the two heads by seed: {list(one.seed)} != {list(sym.seed)}")
    threshold = (
        f"mean one-sided c(x) sd/sd(PMI) > {REACH_TOL}; symmetric < {REACH_TOL}; one-sided "
        f"excess < {OPT_TOL} nats (95% bounds, Holm)"
    )
    cells = one_sided_judged(one.t1_off, one.excess_loss_one_sided, sym.t1_off)
    rows = [
        judged_row(
            "T1c",
            "One-sided InfoNCE reaches its own optimum yet leaves row offsets c(x) (logit = "
            "PMI + c(x)); the symmetric loss pins a single constant",
            list(cells.values()),
            threshold,
            figure=fig("t1_convergence"),
            detail=_cells_text(cells)
            + f"; the one-sided head's symmetric excess loss {fmt(one.excess_loss.mean())} nats.",
        )
    ]
    for case, k, expect in (("near", CAL_NEAR, "FAIL"), ("half", CAL_HALF, "PASS")):
        cal = one_sided_judged(one.t1_off, one.excess_loss_one_sided, sym[f"cal_off_{case}"])
        rows.append(
            calibration(
                "T1c",
                f"The symmetric head's table plus row offsets c(x) of sd {k:g} x {REACH_TOL} "
                "sd(PMI) (drawn per seed) in its place, through the same rule",
                list(cal.values()),
                threshold,
                expect,
                fig("t1_convergence"),
                _cells_text(cal) + ".",
            )
        )
    return rows


def saturation_long(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (joint, seed, N) with the estimates, their SEs and the two bounds."""
    rows = []
    for r in df.itertuples():
        for n in [int(s) for s in str(r.sizes).split("/")]:
            g = lambda name, n=n, r=r: getattr(r, f"{name}_N{n}")  # noqa: E731
            rows.append(
                {
                    "dist": r.dist,
                    "seed": r.seed,
                    "N": n,
                    "log_n": math.log(n),
                    "est": g("mi_head"),
                    "est_se": g("mi_head_se"),
                    "pmi": g("mi_pmi"),
                    "pmi_se": g("mi_pmi_se"),
                    "lower": g("bound") - 2 * r.pmi_delta,
                    "lower_pmi": g("bound"),
                    "upper": min(r.mutual_information, math.log(n)),
                    "max_batch": g("max_head"),
                    "shuf": g("mi_shuf"),
                    "shuf_se": g("mi_shuf_se"),
                    "cal_near": g("mi_cal_near"),
                    "cal_half": g("mi_cal_half"),
                    "mi": r.mutual_information,
                }
            )
    return pd.DataFrame(rows)


def saturated_sizes(t: pd.DataFrame) -> list[int]:
    """The N at which T1d's evidence is judged: log N <= I - SAT_MARGIN."""
    ns = sorted(int(n) for n in t[t.log_n <= t.mi - SAT_MARGIN].N.unique())
    if not ns:
        raise ValueError(
            f"T1d needs a batch size with log N <= I - {SAT_MARGIN}; I = {t.mi.iloc[0]:.3g}"
        )
    return ns


def shortfall_judged(t: pd.DataFrame, col: str = "est") -> dict[str, Judged]:
    """T1d's rule at each N of `saturated_sizes`: the per-seed relative shortfall
    (log N - estimate) / log N, judged on its mean: PASS iff the 95% upper bound < SAT_TOL."""
    t = t.assign(short=(t.log_n - t[col]) / t.log_n)
    t = t[t.N.isin(saturated_sizes(t))]
    return {
        f"N={n}": V.judge_equivalence_upper(g.sort_values("seed").short.to_numpy(), SAT_TOL)
        for n, g in t.groupby("N", sort=True)
    }


def band_judged(t: pd.DataFrame, side: str) -> dict[str, Judged]:
    """T1d's implementation checks, per (joint, N): the per-seed violation of one side of the
    bracket in units of min(I, log N) (upper: estimate - min(I, log N); lower: log N - B_N -
    2 Delta - estimate), judged below BAND_TOL."""
    v = (t.est - t.upper) if side == "upper" else (t.lower - t.est)
    t = t.assign(v=v / t.upper, joint=t.dist.map(dist_id))
    return {
        f"{j} N={n}": V.judge_equivalence_upper(g.sort_values("seed").v.to_numpy(), BAND_TOL)
        for (j, n), g in t.groupby(["joint", "N"], sort=True)
    }


def _saturates(df: pd.DataFrame, cfg: T1Config) -> list[ClaimResult]:
    t = saturation_long(df)
    far, near = t[t.dist == cfg.saturation_far], t[t.dist == cfg.saturation]
    ns = saturated_sizes(far)
    cells = shortfall_judged(far)
    threshold = (
        f"mean (log N - estimate)/log N < {SAT_TOL} (95% upper bound) at every N with "
        f"log N <= I - {SAT_MARGIN:g} (Holm)"
    )
    detail = (
        f"{cfg.saturation_far}, I = {fmt(far.mi.iloc[0])} nats, N = {'/'.join(map(str, ns))}: "
        f"relative shortfall {_cells_text(cells)}"
    )
    if len(near):  # the same shortfall where I is not far above log N (not judged)
        short = near.assign(s=(near.log_n - near.est) / near.log_n).groupby("N").s.mean()
        detail += f"; on {cfg.saturation} (I = {fmt(near.mi.iloc[0])}) it is " + ", ".join(
            f"N={n}: {fmt(short[n])}" for n in ns if n in short.index
        )
    rows = [
        judged_row(
            "T1d",
            f"When I(X;Y) exceeds log N (by {SAT_MARGIN:g} nats or more) the InfoNCE estimate "
            f"log N - loss_N approaches log N: its shortfall is below {SAT_TOL:.0%} of log N",
            list(cells.values()),
            threshold,
            figure=fig("t1_saturation"),
            detail=detail + ".",
        )
    ]
    for case, k, expect in (("near", CAL_NEAR, "FAIL"), ("half", CAL_HALF, "PASS")):
        cal = shortfall_judged(far, f"cal_{case}")
        mass = df[df.dist == cfg.saturation_far][f"cal_mass_{case}"].mean()
        rows.append(
            calibration(
                "T1d",
                f"The head's table with the rows of random x states of p(x) mass ~ {k:g} x "
                f"{SAT_TOL} set to a constant (drawn per seed; each such row's estimate is 0), "
                "through the same rule",
                list(cal.values()),
                threshold,
                expect,
                fig("t1_saturation"),
                f"blanked mass {fmt(mass)}: " + _cells_text(cal) + ".",
            )
        )
    shuf = shortfall_judged(far, "shuf")
    rows.append(
        judged_row(
            "T1d",
            "The trained head's estimate on broken pairs (each batch's y's rolled by one) "
            "through the same rule",
            list(shuf.values()),
            threshold,
            kind="control",
            figure=fig("t1_saturation"),
            detail=_cells_text(shuf) + ".",
        )
    )
    for side, statement in (
        ("upper", "The estimate's mean over batches stays below min(I, log N)"),
        ("lower", "The estimate's mean over batches stays above log N - B_N - 2 Delta"),
    ):
        cells = band_judged(t, side)
        worst = max(cells, key=lambda c: cells[c].estimate)
        rows.append(
            judged_row(
                "T1d",
                f"{statement} (a theorem for any critic)",
                list(cells.values()),
                f"mean violation / min(I, log N) < {BAND_TOL} (95% upper bound), every joint "
                "and N (Holm)",
                kind="implementation",
                figure=fig("t1_saturation"),
                detail=f"{len(cells)} (joint, N) cells; the largest mean violation is at "
                f"{worst}: {fmt(cells[worst].estimate)} ± {fmt(cells[worst].se, 2)} "
                f"(n={cells[worst].n}).",
            )
        )
    over = float((t.max_batch - t.log_n).max())
    rows.append(
        judged_row(
            "T1d",
            "log N - loss_N never exceeds log N on any held-out batch (true for any logits)",
            V.exact(over, CAP_ROUNDING, "below", n=int(t.seed.nunique())),
            f"max over batches, seeds, N and joints of (estimate - log N) < {CAP_ROUNDING:g} "
            "(exact)",
            kind="implementation",
            figure=fig("t1_saturation"),
            detail=f"{int(t.N.nunique())} batch sizes, {int(t.seed.nunique())} seeds, "
            f"{int(t.dist.nunique())} joints.",
        )
    )
    return rows


def evaluate(tables: dict[str, pd.DataFrame], cfg: T1Config) -> list[ClaimResult]:
    d = tables["t1-discrete"]
    return [
        *_reach_discrete(d),
        *_reach_continuous(tables["t1-continuous"]),
        *_one_sided(d),
        *_saturates(tables["t1-saturation"], cfg),
    ]
