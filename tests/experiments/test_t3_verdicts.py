"""T3's verdicts (docs/theory.md T3): the Δ-order rule of T3d-T3g on hand-built tables against
hand counts and an independent t interval; the calibration's construction (the row offset that
makes Δ' = Δ + s on a real logit table with every classifier unchanged; the expected
discordance against a Monte Carlo); the calibration pair coming out FAIL / PASS at the quick
preset's size; and, at smoke size, a planted logit error of 2x the tolerance FAILing T3d and one
of 0.5x PASSing, on the smoke ladder's real runs."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import permutations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from pmilab import metrics as M
from pmilab.experiments.claims import t3
from pmilab.experiments.framework.sweep import load_table, run_sweep
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.theory import excess_risk as er

TOL = t3.ORDER_TOL


def _table(groups: dict[tuple[int, int], list[tuple[float, float]]], sims=None) -> pd.DataFrame:
    """{(seed, K): [(Δ, risk), ...]} -> a run table with seed, k, pmi_delta, risk (and
    similarity, when `sims` gives one per head of every group)."""
    rows = []
    for (seed, k), heads in groups.items():
        for i, (d, e) in enumerate(heads):
            row = {"seed": seed, "k": k, "pmi_delta": d, "risk": e}
            if sims is not None:
                row["similarity"] = sims[i]
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the rule


def test_pair_counts_by_hand():
    """Seed 0: K=2 heads (Δ, risk) (1, .1), (2, .3), (3, .2): pairs (1,2) concordant, (1,3)
    concordant, (2,3) discordant; K=4: (1, .5), (2, .4): discordant -> 2/4. Seed 1: a tie in
    risk within 1e-9 is not counted, nor is a tie in Δ: (1, .1), (2, .1 + 1e-12), (2, .3),
    (5, .05) -> counted (1,3) conc, (1,4) disc, (2,4) disc, (3,4) disc -> 3/4."""
    df = _table(
        {
            (0, 2): [(1, 0.1), (2, 0.3), (3, 0.2)],
            (0, 4): [(1, 0.5), (2, 0.4)],
            (1, 2): [(1, 0.1), (2, 0.1 + 1e-12), (2, 0.3), (5, 0.05)],
        }
    )
    c = t3.pair_counts(df, "risk").set_index("seed")
    assert c.loc[0, "pairs"] == 4 and c.loc[0, "discordant"] == 2
    assert c.loc[1, "pairs"] == 4 and c.loc[1, "discordant"] == 3
    assert c.discordance.tolist() == [0.5, 0.75]


def test_pair_counts_with_a_focus_count_only_pairs_that_include_it():
    """Heads a (1, .1), b (2, .3), c (3, .2), focus on c: pairs (a, c) conc, (b, c) disc."""
    df = _table({(0, 2): [(1, 0.1), (2, 0.3), (3, 0.2)]}, sims=["linear", "linear", "wpse"])
    c = t3.pair_counts(df, "risk", focus=df.similarity == "wpse")
    assert (c.pairs.iloc[0], c.discordant.iloc[0]) == (2, 1)
    # a seed whose pairs are all ties carries no value
    tie = _table({(0, 2): [(1, 0.1), (1, 0.2)], (1, 2): [(1, 0.1), (2, 0.2)]})
    c = t3.pair_counts(tie, "risk")
    assert math.isnan(c.discordance.iloc[0]) and c.discordance.iloc[1] == 0.0
    assert t3.judge_order(pd.concat([c, c.assign(seed=[2, 3])])).n == 2


def _independent_verdict(values, tol: float, alpha: float = 0.05) -> str:
    """The one-sided t rule computed here from scipy.stats.t: PASS iff m + t se < tol, FAIL iff
    m - t se >= tol."""
    v = np.asarray(values, float)
    m, se = v.mean(), v.std(ddof=1) / math.sqrt(v.size)
    t = stats.t.ppf(1 - alpha, v.size - 1)
    return "PASS" if m + t * se < tol else "FAIL" if m - t * se >= tol else "INCONCLUSIVE"


@pytest.mark.parametrize(
    "values, verdict",
    [
        ([0.0, 0.1, 0.05, 0.1, 0.0], "PASS"),  # mean .05, U = .05 + 2.132 * .0224 = .098
        ([0.5, 0.55, 0.45, 0.6, 0.4], "FAIL"),  # mean .5, L = .5 - 2.132 * .0354 = .425
        ([0.0, 0.5], "INCONCLUSIVE"),  # mean .25, se .25, t(1) = 6.31: [-1.33, 1.83]
        ([0.2, 0.3, 0.1, 0.4], "INCONCLUSIVE"),  # mean .25, straddles
    ],
)
def test_judge_order_against_an_independent_t_interval(values, verdict):
    counts = pd.DataFrame(
        {"seed": range(len(values)), "pairs": 20, "discordant": 0, "discordance": values}
    )
    j = t3.judge_order(counts)
    assert j.verdict == verdict == _independent_verdict(values, TOL)
    assert j.threshold == TOL and j.estimate == pytest.approx(np.mean(values))


def test_identical_discordances_are_judged_exactly():
    counts = pd.DataFrame({"seed": [0, 1], "pairs": 3, "discordant": 0, "discordance": [0.0, 0.0]})
    j = t3.judge_order(counts)
    assert j.deterministic and j.verdict == "PASS"


# --------------------------------------------------------------------------- the calibration


def test_expected_discordance_against_a_monte_carlo_over_orderings():
    """E[D] of the construction L_h = w r_h + Z_h against an independent reference: the
    frequency of each of the 6 orderings of 3 heads in a large Monte Carlo sample, times its
    inversion count."""
    r = [np.array([0.0, 1.0, 2.0])]
    f = [np.ones(3, bool)]
    assert t3.expected_discordance(r, f, 0.0) == 0.5
    w = 0.7
    z = np.random.default_rng(5).standard_normal((400_000, 3))
    level = w * r[0] + z
    perms = {p: 0 for p in permutations(range(3))}
    order = np.argsort(level, axis=1)
    for p in perms:
        perms[p] = np.mean((order == np.array(p)).all(1))
    inv = {
        p: sum(p.index(i) > p.index(j) for i in range(3) for j in range(i + 1, 3)) for p in perms
    }
    mc = sum(perms[p] * inv[p] / 3 for p in perms)
    assert t3.expected_discordance(r, f, w) == pytest.approx(mc, abs=3e-3)
    w_half = t3.order_weight(r, f, t3.HALF_MISS)
    assert t3.expected_discordance(r, f, w_half) == pytest.approx(t3.HALF_MISS, abs=1e-9)
    assert t3.order_weight(r, f, t3.NEAR_MISS) == 0.0


def test_the_row_offset_moves_delta_by_s_and_no_classifier():
    """On a real logit table (PMI + a random field): +2s on the row holding the largest logit
    error gives pmi_delta = Δ + s exactly, and the constructed and ensemble excess risks do not
    move (to 1e-12)."""
    dist = make_dist("latent:nx=24,ny=20,k=4,seed=0")
    pmi = dist.pmi_table()
    w = dist.px[:, None] * dist.py[None, :]
    post, px, q = dist.posterior_x(), dist.px, dist.py_given_z
    gen = torch.Generator().manual_seed(3)
    ell = pmi + 0.7 * torch.randn(pmi.shape, generator=gen, dtype=torch.float64)
    err = torch.where(w > 0, ell - pmi, torch.tensor(-math.inf, dtype=torch.float64))
    row = int(torch.nonzero(err == err.max())[0, 0])
    for s in (0.3, 5.0, 123.0):
        moved = ell.clone()
        moved[row] += 2 * s
        d0, d1 = float(M.pmi_delta(ell, pmi, w)), float(M.pmi_delta(moved, pmi, w))
        assert d1 == pytest.approx(d0 + s, abs=1e-9)
        for ens in (False, True):
            a = er.constructed_excess_risk(ell, q, post, px, ensemble=ens)
            b = er.constructed_excess_risk(moved, q, post, px, ensemble=ens)
            assert b == pytest.approx(a, abs=1e-12)


def _ordered_heads(n_seeds: int, groups: int, m: int) -> pd.DataFrame:
    """Heads whose Δ orders their risk perfectly (D = 0), `groups` K's of m heads per seed."""
    rows = []
    for seed in range(n_seeds):
        for g in range(groups):
            for h in range(m):
                rows.append(
                    {"seed": seed, "k": 2**g, "pmi_delta": 0.1 * (h + 1), "risk": 0.01 * (h + 1)}
                )
    return pd.DataFrame(rows)


def test_planted_delta_keeps_the_risks_and_hits_its_expected_discordance():
    """Over 200 seeds of 2 groups of 6 heads: the near miss's mean D is 0.5 and the half
    miss's 0.125 (within 4 Monte Carlo SE); the risks are untouched and Δ' >= Δ."""
    df = _ordered_heads(200, 2, 6)
    for target in (t3.NEAR_MISS, t3.HALF_MISS):
        planted, w = t3.planted_delta(df, "risk", target)
        assert (planted.risk == df.risk).all() and (planted.pmi_delta >= df.pmi_delta).all()
        d = t3.pair_counts(planted, "risk").discordance
        assert abs(d.mean() - target) < 4 * d.std() / math.sqrt(len(d))
        assert len(set(w.values())) == 1


def test_calibration_pair_comes_out_as_it_must_at_the_quick_size():
    """The quick preset's ladder: 5 seeds, K = 2, 4, 8, d = 1..6 (perfectly ordered heads):
    the near miss FAILs and the half miss PASSes, and the evidence itself PASSes."""
    df = _ordered_heads(5, 3, 6).assign(probe_excess=lambda d: d.risk)
    rows = t3.order_rows({"ladder": df}, ids=("T3d",))
    assert [(r.kind, r.expect, r.verdict) for r in rows] == [
        ("evidence", "", "PASS"),
        ("calibration", "FAIL", "FAIL"),
        ("calibration", "PASS", "PASS"),
    ]
    assert all(r.ok for r in rows)


# --------------------------------------------------------------------------- smoke size


@pytest.fixture(scope="module")
def smoke_ladder(tmp_path_factory):
    """The smoke preset's ladder runs (sweep "t3-linear": 6 linear heads x 2 seeds, 600 steps)
    and random heads, trained for real."""
    cfg = t3.config("smoke")
    assert len(t3.seed_list(cfg.seeds)) >= 2
    runs = tmp_path_factory.mktemp("t3") / "runs"
    out = {}
    for sweep in (t3.ladder_sweep(cfg), t3.random_sweep(cfg)):
        run_sweep(sweep, runs, jobs=1, progress=False)
        out[sweep.name] = t3.with_bounds(load_table(sweep, runs))
    return cfg, out


def _plant(lad: pd.DataFrame, inversions: int) -> pd.DataFrame:
    """Each head's logits +2 s_h on its largest-error row (Δ' = Δ + s_h, the probe unchanged),
    s_h setting Δ' in an order with exactly `inversions` discordant pairs against the probe's
    excess risk: the heads sorted by risk get levels 0..m-1, then the first `inversions`
    adjacent transpositions of a bubble-sort reversal are applied (independent of
    t3.planted_delta)."""
    out = lad.copy()
    for _, g in lad.groupby(["seed", "k"]):
        idx = g.sort_values("probe_excess").index.to_list()
        level = list(range(len(idx)))
        done = 0
        for i in range(len(level)):
            for j in range(len(level) - 1 - i):
                if done < inversions:
                    level[j], level[j + 1] = level[j + 1], level[j]
                    done += 1
        big = 1e3 * (1 + g.pmi_delta.max())
        for h, lv in zip(idx, level, strict=True):
            out.loc[h, "pmi_delta"] = lad.loc[h, "pmi_delta"] + big * lv
    return out


def test_a_planted_logit_error_of_twice_the_tolerance_fails_t3d_at_smoke_size(smoke_ladder):
    """6 heads, 15 pairs per seed: 8 planted inversions (D = 8/15 = 0.53, 2.1x the tolerance)
    FAIL T3d in every seed (exact: the seeds agree); 2 (D = 0.13, 0.53x) PASS."""
    _, tables = smoke_ladder
    lad = tables["t3-linear"]
    assert lad.groupby("seed").size().min() == 6
    for inv, verdict in ((8, "FAIL"), (2, "PASS")):
        planted = _plant(lad, inv)
        assert (planted.probe_excess == lad.probe_excess).all()
        row = t3.order_rows({"ladder": planted}, ids=("T3d",))[0]
        assert row.kind == "evidence" and row.verdict == verdict, row.detail
        assert row.judged.estimate == pytest.approx(inv / 15)


def test_t3a_rows_at_smoke_size(smoke_ladder):
    """T3a's implementation checks PASS and its strawman control FAILs on the smoke runs;
    planting +2x a head's bound in its probe's excess (a wrong risk) FAILs the check."""
    cfg, tables = smoke_ladder
    lad, rand = tables["t3-linear"], tables["t3-random"]
    rows = t3._probe(lad, rand, lad.assign(similarity="tabular", probe_dim=20.0), cfg)
    assert [(r.kind, r.verdict) for r in rows] == [
        ("implementation", "PASS"),
        ("implementation", "PASS"),
        ("control", "FAIL"),
    ]
    broken = lad.assign(probe_excess=lad.probe_excess + 2 * lad.risk_bound)
    assert t3._probe(broken, rand, lad, cfg)[0].verdict == "FAIL"


def test_smoke_preset_has_two_seeds():
    assert len(t3.seed_list(t3.config("smoke").seeds)) >= 2
    cfg = replace(t3.config("smoke"), seeds=(10_000, 10_001))
    assert {r.params["seed"] for r in t3.ladder_sweep(cfg).runs} == {10_000, 10_001}
