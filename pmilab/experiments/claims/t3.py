"""T3: the downstream linear probe sits under ε + 2Δ (docs/theory.md T3), on the heads of T2.

Labelled model: the K-class latent joint of T2, labels = the latent class, prompts
q_c = p(y | c). Per trained head (sweep "heads"): exact H(C|X), ε, Δ = pmi_delta, the exact
excess risk of the constructed classifier, and a scikit-learn logistic-regression probe fitted on
held-out labelled draws and scored exactly (`pmilab.experiments.probe`).

- T3a  probe excess risk <= ε + 2Δ (+ the probe's own finite-sample slack) for every head the
       theorem covers (tabular, linear, WPSE: ℓ linear in the probe's features);
- T3b  |constructed excess − ε| <= 2Δ for every head: the two-sided form of the same argument,
       so as Δ → 0 the bound closes onto ε (it tightens);
- T3c  KME: its log-linear prompt ensemble sits under ε_ens + 2Δ; its linear probe on μ_x is
       reported beside it (the theorem does not cover it).
"""

from __future__ import annotations

import pandas as pd

from pmilab.experiments.claims.heads import HeadsConfig, heads_config, heads_sweep
from pmilab.experiments.framework.claim import ClaimResult, fig, fmt
from pmilab.experiments.framework.sweep import Sweep

CLAIM = "T3"
TITLE = "The downstream linear probe sits under eps + 2 Delta"

# Float64 roundoff of the exact risks (sums of ~500 terms of size ~1): 1e-9 nats.
ROUNDOFF = 1e-9


def config(preset: str, seeds: int | None = None) -> HeadsConfig:
    """T3 reads T2's runs (sweep "heads"): the same config, so nothing is trained twice."""
    return heads_config(preset, seeds)


def sweeps(cfg: HeadsConfig) -> list[Sweep]:
    return [heads_sweep(cfg)]


def with_bounds(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df.probe_n > 0].copy()
    df["risk_bound"] = df.epsilon + 2 * df.pmi_delta
    df["ens_bound"] = df.epsilon_ens + 2 * df.pmi_delta
    return df


def _probe(df: pd.DataFrame) -> ClaimResult:
    cov = df[df.similarity != "kme"]
    margin = cov.probe_excess - cov.risk_bound - cov.probe_slack
    worst = cov.loc[margin.idxmax()]
    return ClaimResult(
        "T3a",
        "The best linear probe (scikit-learn, held-out draws) has excess risk <= eps + 2*Delta "
        "for every tabular, linear and WPSE head",
        float(margin.max()),
        "probe - (eps + 2 Delta) - slack <= 0 for every run",
        bool((margin <= ROUNDOFF).all()),
        fig("t3_excess_risk"),
        f"{len(cov)} runs; eps = {fmt(cov.epsilon.iloc[0])}, H(C|X) = {fmt(cov.cond_entropy.iloc[0])} "
        f"nats (K={int(cov.k.iloc[0])} first); tightest run: {worst.run_id} probe "
        f"{fmt(worst.probe_excess)} vs bound {fmt(worst.risk_bound)}; probe draws "
        f"n = {int(cov.probe_n.iloc[0])}, max slack {fmt(cov.probe_slack.max())} nats.",
    )


def _tight(df: pd.DataFrame) -> ClaimResult:
    ratio = (df.constructed_excess - df.epsilon).abs() / (2 * df.pmi_delta)
    best = df.loc[df.pmi_delta.idxmin()]
    ok = ((df.constructed_excess - df.epsilon).abs() <= 2 * df.pmi_delta + ROUNDOFF).all()
    return ClaimResult(
        "T3b",
        "The bound tightens as Delta -> 0: the constructed classifier's excess risk stays "
        "within 2*Delta of eps for every head",
        float(ratio.max()),
        "|constructed - eps| / (2 Delta) <= 1",
        bool(ok),
        fig("t3_excess_risk"),
        f"{len(df)} runs; smallest Delta = {fmt(best.pmi_delta)} ({best.similarity}, "
        f"{best.run_id}) where bound - eps = {fmt(2 * best.pmi_delta)} nats.",
    )


def _kme(df: pd.DataFrame) -> ClaimResult:
    kme = df[df.similarity == "kme"]
    margin = kme.ensemble_excess - kme.ens_bound
    pairs = "; ".join(
        f"K={int(r.k)} M={int(r.points)}: ensemble {fmt(r.ensemble_excess)} vs probe on mu_x "
        f"{fmt(r.probe_excess)} (bound {fmt(r.ens_bound)})"
        for r in kme.groupby(["k", "points"], as_index=False).mean(numeric_only=True).itertuples()
    )
    return ClaimResult(
        "T3c",
        "KME: the log-linear prompt ensemble has excess risk <= eps_ens + 2*Delta; its "
        "linear probe on mu_x is reported beside it",
        float(margin.max()),
        "ensemble - (eps_ens + 2 Delta) <= 0",
        bool((margin <= ROUNDOFF).all()),
        fig("t3_excess_risk"),
        pairs,
    )


def evaluate(tables: dict[str, pd.DataFrame], cfg: HeadsConfig) -> list[ClaimResult]:
    df = with_bounds(tables["heads"])
    return [_probe(df), _tight(df), _kme(df)]
