"""T6: invariances (docs/theory.md T6).

Every judged value is computed per seed (the replicate) and judged from its mean, SE and
one-sided interval (`pmilab.verdicts`); sub-cases ("every distribution", "every transform and
measure") are one Holm family.

- T6a  (implementation check) E_p[PMI] = I(X;Y) for every built-in distribution. Per seed,
       z = (Monte Carlo mean of the exact PMI on fresh draws − I) / its SE, with I computed
       without sampling (an exact sum or closed form; Gauss–Hermite quadrature for the latent
       Gaussian mixture). Per distribution the mean of z over seeds must lie within ±Z_TOL
       (equivalence, TOST), Holm over the distributions. Both sides are the lab's own PMI and
       MI code, so only a bug can break it: an implementation check, not evidence.
- T6b  (evidence) PMI is invariant under bijections, so a head trained on Transformed(base)
       estimates the base's PMI as well as the head trained on the base: the same KME head
       (MLP encoders) on a Gaussian and on its affine- and asinh-transformed versions, the arms
       on the same seeds (common random numbers: the same initialisation, training draws and
       held-out draws, mapped). Relative error rel = rmse / sd(PMI) under p(x)p(y) and under
       p(x, y), each in its own measure's sd. One Holm family of sub-cases: the base head
       reaches PMI (rel(base) < REACH_TOL_MC under each measure, `judge` below: otherwise the
       comparison is between two unconverged heads), and for each smooth transform and
       measure the paired per-seed gap rel(transformed) − rel(base) is within ±INV_TOL
       (`judge_equivalence`).
- T6c  a finding, with no verdict: the same head under a strongly nonlinear warp (spiral),
       its paired gap under both measures with its SE, and the error on the more likely half
       of the product pairs (`pmi_rmse_product_above`).

Calibration pair of T6b, through the same rule on the same seeds: the theory's near miss, a map
that is not a bijection (x's first coordinate rounded to a grid of step h, `tasks.t6_invariance`;
the head sees only the rounded value and is scored against the base's PMI at the unrounded
draw), with h set from the closed-form floor of the rounded Gaussian so that the paired gap is
about 2x INV_TOL (must FAIL) and about 0.5x INV_TOL (must PASS). Controls (must FAIL): T6a on
shuffled pairs (x_i, y_{i+1}), whose mean PMI is −KL(p(x)p(y) ‖ p(x, y)), not I; T6b the same
head trained on shuffled pairs of the base (`<base>|shuffled`), through the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from pmilab import verdicts as V
from pmilab.experiments.claims.tolerances import REACH_TOL_MC, Z_TOL
from pmilab.experiments.framework.claim import (
    ClaimResult,
    calibration,
    check_preset,
    fig,
    finding,
    fmt,
    judged_row,
)
from pmilab.experiments.framework.sweep import RunSpec, Sweep, dist_id, seed_list
from pmilab.experiments.tasks.continuous import INVARIANCE_METRICS
from pmilab.experiments.tasks.fitting import sample_params
from pmilab.experiments.tasks.montecarlo import MC_METRICS, mc_check
from pmilab.experiments.tasks.t6_invariance import QUANTIZE, t6_head, t6_heads

CLAIM = "T6"
TITLE = "Invariances: PMI identities, and learning under bijections"

ALPHA = 0.05
# T6b's tolerance on the paired gap rel(transformed) − rel(base): a third of the reach
# tolerance of the continuous checks (REACH_TOL_MC = 0.15), so "reaches the base's error" is
# three times stricter than "reaches PMI". Unchanged since before issue 23.
INV_TOL = REACH_TOL_MC / 3
# The pseudo-transform of T6b's control: the base's pairs broken (`<base>|shuffled`).
SHUFFLED = "shuffled"
# T6b's calibration pair: x1 rounded to a grid of step h (not a bijection). Fixed before any
# run of these arms from the rounded Gaussian's closed-form floor e(h), the relative error of
# the best head (`tasks.t6_invariance.quantized_gaussian_floor`: e_joint = 0.1645 and
# e_product = 0.1036 at h = 0.5; 0.0677 and 0.0409 at h = 0.2), and the base errors of a pilot
# on seeds 10000-10005 at the quick size (b_joint = 0.086, b_product = 0.035), with the head's
# own error adding in quadrature, gap ≈ sqrt(b² + e²) − b: h = 0.5 gives a joint gap of 0.100
# (2.0 INV_TOL; product 0.074) and h = 0.2 a joint gap of 0.024 (0.47 INV_TOL; product
# 0.019). docs/theory.md T6.
NEAR_MISS_STEP = 0.5
HALF_STEP = 0.2


@dataclass(frozen=True)
class T6Config:
    mc_n: int = 400_000
    base: str = "gaussian:dx=2,dy=2,rho=0.8"
    transforms: tuple[str, ...] = ("none", "affine", "asinh", "spiral")
    # quantisation steps of T6b's calibration pair: (near miss, half-size case)
    calibration_steps: tuple[float, float] = (NEAR_MISS_STEP, HALF_STEP)
    similarity: str = "kme"
    # one point of dimension 4 per input: the KME head reaches this Gaussian's PMI (a pilot:
    # rel ~0.03 under p(x)p(y), ~0.08 under p(x, y)); M = 2 points of dimension 2 (the earlier
    # configuration) stalled at ~0.6 under p(x, y)
    dim: int = 4
    points: int = 1
    hidden: str = "64x64"
    steps: int = 4000
    lr: float = 1e-2
    batch_size: int = 128
    eval_samples: int = 2048
    seeds: int | tuple[int, ...] = 6


PRESETS = {
    "full": T6Config(),
    "quick": T6Config(mc_n=50_000, steps=1500, eval_samples=1024, seeds=5),
    # seconds-long sizes for tests and notebooks (numbers are meaningless at this size: the
    # base head does not reach PMI in 100 steps, so T6b and its half-size case do not PASS);
    # 3 seeds, the fewest at which the controls' huge gaps FAIL under Holm (t_{1-a/8, 2} = 8.9;
    # with 2 seeds it is 51)
    "smoke": T6Config(
        mc_n=2000,
        transforms=("none", "asinh", "spiral"),
        hidden="8",
        steps=100,
        eval_samples=256,
        seeds=3,
    ),
}


def config(preset: str, seeds: int | None = None) -> T6Config:
    cfg = PRESETS[check_preset(preset)]
    return replace(cfg, seeds=seeds) if seeds else cfg


def _mc(cfg: T6Config) -> Sweep:
    from pmilab.dists import BUILTIN_SPECS

    runs = [
        RunSpec.of(
            {"dist": name, "n": cfg.mc_n, "seed": 1000 + seed},
            "t6mc",
            name,
            f"n{cfg.mc_n}",
            f"seed{seed}",
        )
        for name in BUILTIN_SPECS
        for seed in seed_list(cfg.seeds)
    ]
    return Sweep("t6-mc", mc_check, runs, MC_METRICS, "T6")


def quantize_arm(step: float) -> str:
    """The transform label of a calibration arm: 'quantize=0.5'."""
    return f"{QUANTIZE}={step:g}"


def arms(cfg: T6Config) -> list[str]:
    """Every arm of the invariance sweep: the transforms, the control, the calibration pair."""
    return [*cfg.transforms, SHUFFLED, *(quantize_arm(h) for h in cfg.calibration_steps)]


def _spec(cfg: T6Config, transform: str) -> str:
    if transform == "none":
        return cfg.base
    if transform == SHUFFLED:
        return f"{cfg.base}|shuffled"
    if transform.startswith(f"{QUANTIZE}="):
        return f"{cfg.base}|{transform}"
    return f"{cfg.base},transform={transform}"


def _invariance(cfg: T6Config) -> Sweep:
    runs = []
    for tr in arms(cfg):
        for seed in seed_list(cfg.seeds):
            fit = sample_params(
                cfg.similarity,
                dim=cfg.dim,
                points=cfg.points,
                hidden=cfg.hidden,
                batch_size=cfg.batch_size,
                steps=cfg.steps,
                lr=cfg.lr,
                seed=seed,
                eval_samples=cfg.eval_samples,
            )
            p = {"dist": _spec(cfg, tr), "transform": tr, **fit}
            rid = (
                "t6inv",
                dist_id(cfg.base),
                tr,
                cfg.similarity,
                f"M{cfg.points}",
                f"d{cfg.dim}",
                f"N{cfg.batch_size}",
                f"s{cfg.steps}",
                f"seed{seed}",
            )
            runs.append(RunSpec.of(p, *rid))
    return Sweep("t6-invariance", t6_head, runs, INVARIANCE_METRICS, "T6", cell_task=t6_heads)


def sweeps(cfg: T6Config) -> list[Sweep]:
    return [_mc(cfg), _invariance(cfg)]


# --------------------------------------------------------------------------- T6a


def mc_cases(df: pd.DataFrame, col: str = "z", alpha: float = ALPHA) -> list[tuple[str, V.Judged]]:
    """T6a's sub-cases: per distribution, the per-seed z (or `col`) judged by equivalence
    within ±Z_TOL (mean over seeds, TOST)."""
    return [
        (str(name), V.judge_equivalence(g[col].to_numpy(float), Z_TOL, alpha))
        for name, g in df.groupby("dist", sort=False)
    ]


def _cases_text(cases: list[tuple[str, V.Judged]], digits: int = 3) -> str:
    """Each Holm-judged sub-case: label, mean [interval] (n), verdict."""
    judged = V.holm_verdicts([j for _, j in cases])
    return "; ".join(
        f"{label} {fmt(j.estimate, digits)} [{fmt(j.ci_low, digits)}, {fmt(j.ci_high, digits)}] "
        f"{j.verdict}"
        for (label, _), j in zip(cases, judged, strict=True)
    )


def _mc_claim(df: pd.DataFrame) -> list[ClaimResult]:
    cases = mc_cases(df)
    c_cases = mc_cases(df, "z_shuffled")
    per = df.groupby("dist", sort=False)
    quad = sorted(df.loc[df.mi_source == "quadrature", "dist"].unique())
    threshold = f"mean z over seeds within +-{Z_TOL:g} (TOST, Holm over distributions)"
    n_seeds = len(df) // df.dist.nunique()
    return [
        judged_row(
            "T6a",
            "E_p[PMI] = I(X;Y) for every built-in distribution (Monte Carlo mean of the exact "
            "PMI against an I(X;Y) computed without sampling: exact sum, closed form, or "
            "quadrature); an identity of the lab's own PMI and MI code",
            [j for _, j in cases],
            threshold,
            kind="implementation",
            figure=fig("t6_invariance"),
            detail=f"{df.dist.nunique()} distributions x {n_seeds} seeds, n = "
            f"{int(df.n.iloc[0])} draws each; z per seed = (MC mean - I) / SE, mean over "
            f"seeds [interval, Holm] and verdict per distribution: {_cases_text(cases)}. "
            "I(X;Y) vs MC mean (nats): "
            + ", ".join(
                f"{name} {fmt(g.mi_exact.iloc[0], 5)} vs {fmt(g.pmi_mean.mean(), 5)}"
                for name, g in per
            )
            + f". I by Gauss-Hermite quadrature (32 nodes per coordinate): {', '.join(quad)}; "
            "every other I is an exact sum or a closed form. (Restated in issue 23 from "
            "'max |z| over seeds <= 4', which PASSed: quick 2.29, full 1.94.)",
        ),
        judged_row(
            "T6a",
            "The same z check on shuffled pairs (x_i, y_{i+1}): independent draws, whose "
            "mean PMI is -KL(p(x)p(y) || p(x, y)), not I",
            [j for _, j in c_cases],
            threshold,
            kind="control",
            figure=fig("t6_invariance"),
            detail=f"{_cases_text(c_cases)}. Mean PMI on shuffled pairs vs I (nats): "
            + ", ".join(
                f"{name} {fmt(g.pmi_shuffled_mean.mean(), 4)} vs {fmt(g.mi_exact.iloc[0], 4)}"
                for name, g in per
            )
            + ".",
        ),
    ]


# --------------------------------------------------------------------------- T6b, T6c

SMOOTH = ("affine", "asinh", "halfcube")
MEASURES = {"product": "p(x)p(y)", "joint": "p(x, y)"}
# the sd of PMI under each measure: the unit of that measure's relative error
UNITS = {"product": "product_std", "joint": "joint_std"}


def rel_table(df: pd.DataFrame) -> pd.DataFrame:
    """The relative errors per seed (rows) and (measure, transform) (columns): rmse / sd(PMI),
    both under the measure."""
    parts = {}
    for m in MEASURES:
        rel = df[f"pmi_rmse_{m}"] / df[UNITS[m]]
        parts[m] = rel.groupby([df["seed"], df["transform"]]).first().unstack("transform")
    return pd.concat(parts, axis=1)


def paired_gaps(df: pd.DataFrame, transform: str, measure: str) -> pd.Series:
    """The per-seed gap rel(transform) − rel(base) under `measure`, on the seeds both arms
    finished (common random numbers: seed s of both arms shares every draw)."""
    rel = rel_table(df)
    both = rel[[(measure, transform), (measure, "none")]].dropna()
    return both[(measure, transform)] - both[(measure, "none")]


def invariance_cases(
    df: pd.DataFrame, transforms: list[str], alpha: float = ALPHA
) -> list[tuple[str, V.Judged]]:
    """T6b's rule, one Holm family of sub-cases (the evidence, the calibration pair and the
    control all go through it):

    - the base head reaches PMI under each measure: rel(base) per seed, judged below
      REACH_TOL_MC (`judge`);
    - for each transform and measure, the paired per-seed gap rel(transform) − rel(base),
      judged within ±INV_TOL (`judge_equivalence`, TOST).
    """
    rel = rel_table(df)
    cases = [
        (
            f"base reaches PMI under {MEASURES[m]}",
            V.judge(rel[(m, "none")].dropna().to_numpy(float), REACH_TOL_MC, "below", alpha),
        )
        for m in MEASURES
    ]
    for t in transforms:
        for m in MEASURES:
            gaps = paired_gaps(df, t, m).to_numpy(float)
            cases.append(
                (f"{t} gap under {MEASURES[m]}", V.judge_equivalence(gaps, INV_TOL, alpha))
            )
    return cases


def invariance_verdict(df: pd.DataFrame, transforms: list[str]) -> str:
    """T6b's verdict for these transforms (PASS / FAIL / INCONCLUSIVE)."""
    return V.claim_verdict(V.holm_verdicts([j for _, j in invariance_cases(df, transforms)]))


def _deciding(cases: list[tuple[str, V.Judged]]) -> str:
    """The label of the sub-case that decides the row (`verdicts.decisive`)."""
    holm = V.holm_verdicts([j for _, j in cases])
    pick = V.decisive(holm)
    for (label, _), j in zip(cases, holm, strict=True):
        if (j.estimate, j.p_value, j.p_fail) == (pick.estimate, pick.p_value, pick.p_fail):
            return label
    return ""


def _head(df: pd.DataFrame) -> str:
    return (
        f"{df.similarity.iloc[0]} M={int(df.points.iloc[0])} d={int(df.dim.iloc[0])} on "
        f"{df.dist.iloc[0].split(',transform')[0].split('|')[0]}, {df.seed.nunique()} seeds "
        f"(the same for every arm), {int(df.steps.iloc[0])} steps, "
        f"{int(df.eval_samples.iloc[0])} held-out draws"
    )


def _row(df: pd.DataFrame, transforms: list[str], **kw) -> tuple[list[V.Judged], str]:
    cases = invariance_cases(df, transforms)
    units = (
        f"rel = rmse/sd under each measure: sd_p(x)p(y)(PMI) = {fmt(df.product_std.iloc[0], 4)}, "
        f"sd_p(x,y)(PMI) = {fmt(df.joint_std.iloc[0], 4)}"
    )
    detail = (
        f"deciding sub-case: {_deciding(cases)}. Sub-cases, mean over seeds [interval, Holm] "
        f"and verdict: {_cases_text(cases)} ({units}; {_head(df)})."
    )
    return [j for _, j in cases], detail


THRESHOLD = (
    f"rel(base) < {REACH_TOL_MC:g} and paired gap rel(transformed) - rel(base) within "
    f"+-{INV_TOL:g}, under both measures (Holm)"
)


def _smooth_claim(df: pd.DataFrame, smooth: list[str]) -> ClaimResult:
    judged, detail = _row(df, smooth)
    return judged_row(
        "T6b",
        "PMI is invariant under bijections: a head trained on Transformed(base) with a "
        f"smooth bijection ({', '.join(smooth)}) reaches the base head's relative PMI error "
        "under p(x)p(y) and under p(x, y), the base head reaching PMI (arms paired by seed)",
        judged,
        THRESHOLD,
        figure=fig("t6_invariance"),
        detail=detail + " (Restated in issue 23 from '|gap of the means| <= 0.05', which "
        "FAILed: quick 0.089, full 0.055, both within one SE of the tolerance.)",
    )


def _calibration_rows(df: pd.DataFrame, steps: tuple[float, float]) -> list[ClaimResult]:
    rows = []
    for step, expect, size in zip(steps, ("FAIL", "PASS"), ("2x", "0.5x"), strict=True):
        arm = quantize_arm(step)
        if arm not in set(df["transform"]):
            continue
        judged, detail = _row(df, [arm])
        rows.append(
            calibration(
                "T6b",
                f"Calibration, wrong by ~{size} the tolerance, through T6b's rule: a map that "
                f"is not a bijection (x's first coordinate rounded to a grid of step {step:g}), "
                "the head scored against the base's PMI at the unrounded draw",
                judged,
                THRESHOLD,
                expect,
                figure=fig("t6_invariance"),
                detail=detail,
            )
        )
    return rows


def _control(df: pd.DataFrame) -> ClaimResult:
    judged, detail = _row(df, [SHUFFLED])
    return judged_row(
        "T6b",
        "The same KME head trained on shuffled pairs of the base (x, y independent), "
        "scored against the base's PMI, through the same rule",
        judged,
        THRESHOLD,
        kind="control",
        figure=fig("t6_invariance"),
        detail=detail,
    )


def _mean_se(v: pd.Series) -> tuple[float, float]:
    return float(v.mean()), float(v.std(ddof=1) / len(v) ** 0.5) if len(v) > 1 else float("nan")


def _warp_finding(df: pd.DataFrame, hard: list[str]) -> ClaimResult:
    above = (
        (df.pmi_rmse_product_above / df.product_std)
        .groupby([df["seed"], df["transform"]])
        .first()
        .unstack("transform")
    )
    rel = rel_table(df)
    sentences, measured = [], []
    for t in hard:
        parts, worse, better = [], [], []
        for m in MEASURES:
            g, se = _mean_se(paired_gaps(df, t, m))
            r, b = rel[(m, t)].mean(), rel[(m, "none")].mean()
            parts.append(
                f"under {MEASURES[m]} its error is {fmt(r)} against the base's {fmt(b)} "
                f"(paired gap {fmt(g)}, SE {fmt(se)}; T6b's tolerance {INV_TOL:g})"
            )
            measured.append(f"{t} gap {MEASURES[m]} {fmt(g)} (SE {fmt(se)})")
            if g - 2 * se > INV_TOL:
                worse.append(MEASURES[m])
            elif g + 2 * se < -INV_TOL:
                better.append(MEASURES[m])
        verdict = (
            f"the {t}'s error is larger under {' and '.join(worse)}"
            if worse
            else "no measure shows a gap beyond the tolerance by 2 SE"
        ) + (f", and smaller under {' and '.join(better)}" if better else "")
        a_gap, a_se = _mean_se((above[t] - above["none"]).dropna())
        sentences.append(
            f"{t}: {'; '.join(parts)}; {verdict}. On the more likely half of the p(x)p(y) "
            f"pairs (PMI above its median) the error is {fmt(above[t].mean())} against the "
            f"base's {fmt(above['none'].mean())} (paired gap {fmt(a_gap)}, SE {fmt(a_se)})"
        )
    return finding(
        "T6c",
        "A strongly nonlinear warp (" + ", ".join(hard) + "): the head's relative PMI error "
        "under both measures beside the base's, paired by seed (the theory makes no prediction)",
        "; ".join(measured),
        ". ".join(sentences) + f". ({_head(df)}.)",
        fig("t6_invariance"),
    )


def evaluate(tables: dict[str, pd.DataFrame], cfg: T6Config) -> list[ClaimResult]:
    inv = tables["t6-invariance"]
    present = list(dict.fromkeys(inv["transform"]))
    smooth = [t for t in present if t in SMOOTH]
    calib = {quantize_arm(h) for h in cfg.calibration_steps}
    hard = [t for t in present if t not in (*SMOOTH, "none", SHUFFLED, *calib)]
    rows = _mc_claim(tables["t6-mc"])
    if smooth:
        rows.append(_smooth_claim(inv, smooth))
    rows += _calibration_rows(inv, cfg.calibration_steps)
    if SHUFFLED in present:
        rows.append(_control(inv))
    if hard:
        rows.append(_warp_finding(inv, hard))
    return rows
