"""T9 (docs/theory.md T9): its rules against hand-worked cases, a planted error of 2x / 0.5x
each tolerance through each rule, the official WPSE form (unit-length points; random features
against the exact kernel), and the calibration columns of trained heads against a recomputation
from scratch."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import t as student

from pmilab.errors import InputError
from pmilab.experiments.claims import t9
from pmilab.experiments.claims.t9 import EXACT, SHUFFLED, T9B_TOL, gap, reach, rff_arm
from pmilab.experiments.claims.tolerances import REACH_TOL_MC
from pmilab.experiments.framework.sweep import seed_list
from pmilab.experiments.tasks.fitting import fit_runs, sample_params
from pmilab.experiments.tasks.t2_calibration import fourier_field, raise_scale
from pmilab.experiments.tasks.t9_wpse import UNIT_WPSE, UnitWPSE, t9_heads
from pmilab.training.config import FitConfig
from pmilab.training.evaluate import EVAL_SEED_OFFSET

BASE = "gaussian:dx=2,dy=2,rho=0.8"
RFF = rff_arm(1024)
EXACT_REL = [0.05, 0.09, 0.03, 0.07, 0.06]  # a seed-to-seed spread (sd 0.022) above the noise
NOISE = [0.002, -0.003, 0.0, 0.003, -0.002]


def _table(arms: dict[str, list[float]]) -> pd.DataFrame:
    """T9 runs with these per-seed relative errors under p(x)p(y) (sd(PMI) = 3 there, 1 under
    p(x, y)), every calibration column a copy of rel."""
    rows = []
    for arm, rels in arms.items():
        for seed, r in enumerate(rels):
            rows.append(
                {"arm": arm, "seed": seed, "product_std": 3.0, "joint_std": 1.0, "dist": BASE,
                 "sigma": 0.5, "points": 4, "dim": 4, "hidden": "8", "steps": 30,
                 "batch_size": 64, "eval_samples": 128,
                 "pmi_rmse_product": 3.0 * r, "pmi_rmse_joint": r / 2,
                 "pmi_rmse_product_above": r,
                 **dict.fromkeys(("rel_plus_half", "rel_plus_double", "gap_plus_half",
                                  "gap_plus_double"), r)}
            )  # fmt: skip
    return pd.DataFrame(rows)


def _plus(v: list[float], d: float) -> list[float]:
    return [x + d + e for x, e in zip(v, NOISE, strict=True)]


def _upper_by_hand(v, alpha=0.05) -> float:
    v = np.asarray(v, float)
    return v.mean() + student.ppf(1 - alpha, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)


def _tost_by_hand(d, tol: float, alpha: float = 0.05) -> str:
    d = np.asarray(d, float)
    m, se, n = d.mean(), d.std(ddof=1) / math.sqrt(d.size), d.size
    lo, hi = (m + s * student.ppf(1 - alpha, n - 1) * se for s in (-1, 1))
    lo_f, hi_f = (m + s * student.ppf(1 - alpha / 2, n - 1) * se for s in (-1, 1))
    if -tol < lo and hi < tol:
        return "PASS"
    return "FAIL" if lo_f >= tol or hi_f <= -tol else "INCONCLUSIVE"


# --------------------------------------------------------------------------- the rules by hand


def test_t9a_threshold_rule_by_hand():
    df = _table({EXACT: EXACT_REL})
    j = reach(df)
    u = _upper_by_hand(EXACT_REL)
    assert j.ci_high == pytest.approx(u) and j.estimate == pytest.approx(np.mean(EXACT_REL))
    assert j.verdict == "PASS" and u < REACH_TOL_MC
    # the lower bound at the tolerance: FAIL iff L >= 0.15; straddling: INCONCLUSIVE
    far = [0.2, 0.22, 0.19, 0.21, 0.2]
    assert reach(_table({EXACT: far})).verdict == "FAIL"
    wide = [0.02, 0.3, 0.05, 0.25, 0.1]
    lo = np.mean(wide) - (_upper_by_hand(wide) - np.mean(wide))
    assert lo < REACH_TOL_MC < _upper_by_hand(wide)
    assert reach(_table({EXACT: wide})).verdict == "INCONCLUSIVE"


@pytest.mark.parametrize(
    ("shift", "verdict"), [(0.5 * T9B_TOL, "PASS"), (2 * T9B_TOL, "FAIL"), (-2 * T9B_TOL, "FAIL")]
)
def test_t9b_equivalence_rule_is_paired_and_agrees_with_tost_by_hand(shift, verdict):
    df = _table({EXACT: EXACT_REL, RFF: _plus(EXACT_REL, shift)})
    j = gap(df, RFF)
    d = np.array(_plus(EXACT_REL, shift)) - np.array(EXACT_REL)
    assert j.estimate == pytest.approx(d.mean()) and j.n == 5
    assert j.verdict == _tost_by_hand(d, T9B_TOL) == verdict
    if verdict == "PASS":  # unpaired (seeds rolled), the arms' spread hides the same shift
        unpaired = np.array(_plus(EXACT_REL, shift)) - np.roll(EXACT_REL, 1)
        assert _tost_by_hand(unpaired, T9B_TOL) != "PASS"


def test_t9b_pairs_by_seed_and_refuses_arms_on_different_seeds():
    df = _table({EXACT: EXACT_REL, RFF: _plus(EXACT_REL, 0.01)})
    shuffled = df.sample(frac=1.0, random_state=0)  # row order must not matter
    assert gap(shuffled, RFF).estimate == pytest.approx(gap(df, RFF).estimate)
    with pytest.raises(ValueError, match="different seeds"):
        gap(df[~((df.arm == RFF) & (df.seed == 4))], RFF)


# --------------------------------------------------------------------------- planted errors


@pytest.mark.parametrize(("factor", "verdict"), [(2.0, "FAIL"), (0.5, "PASS")])
def test_planted_error_through_each_rule(factor, verdict):
    """A head wrong by factor x the tolerance, plus seed noise: T9a on an exact head whose
    error is factor x REACH_TOL_MC; T9b on an RFF arm behind the exact one by factor x
    T9B_TOL."""
    planted = _table({EXACT: _plus([0.0] * 5, factor * REACH_TOL_MC)})
    assert reach(planted).verdict == verdict
    behind = _table({EXACT: EXACT_REL, RFF: _plus(EXACT_REL, factor * T9B_TOL)})
    assert gap(behind, RFF).verdict == verdict


def test_calibration_is_the_rows_own_values_recentred_and_the_control_fails():
    """The calibration cases carry the row's own spread and n at a known mean (2x / 0.5x the
    tolerance), so they come out right whatever the head's own error: here a head far from PMI
    (rel ~0.31, T9a FAILs) with an RFF gap of ~0.1 (T9b FAILs), where the first construction
    (the head's logits plus a field, columns rel_plus_* / gap_plus_*) could not PASS its
    half-size cases."""
    cfg = t9.config("smoke")
    far = [0.30, 0.32, 0.31, 0.29, 0.33]
    df = _table({EXACT: far, rff_arm(cfg.rff_features): _plus(far, 0.1),
                 SHUFFLED: [1.0, 0.99, 1.01, 1.0, 0.98]})  # fmt: skip
    rows = t9.evaluate({"t9-wpse": df}, cfg)
    got = [(r.claim, r.kind, r.expect, r.verdict) for r in rows]
    assert got == [
        ("T9a", "evidence", "", "FAIL"),
        ("T9a", "calibration", "FAIL", "FAIL"),
        ("T9a", "calibration", "PASS", "PASS"),
        ("T9a", "control", "", "FAIL"),
        ("T9b", "evidence", "", "FAIL"),
        ("T9b", "calibration", "FAIL", "FAIL"),
        ("T9b", "calibration", "PASS", "PASS"),
    ]
    assert all(r.ok for r in rows if r.kind != "evidence")
    ev, near, half = rows[0].judged, rows[1].judged, rows[2].judged
    assert near.estimate == pytest.approx(2 * REACH_TOL_MC)
    assert half.estimate == pytest.approx(0.5 * REACH_TOL_MC)
    assert near.se == pytest.approx(ev.se) and half.n == ev.n == len(far)


# --------------------------------------------------------------------------- the head


def test_unit_wpse_random_features_approach_the_exact_kernel():
    """The official form's two arms are one function: with the same points and weights, D
    random features give the exact kernel sum up to ~1/sqrt(D) per kernel value."""
    g = torch.Generator().manual_seed(3)
    px = torch.nn.functional.normalize(torch.randn(6, 3, 4, generator=g), dim=-1)
    py = torch.nn.functional.normalize(torch.randn(5, 3, 4, generator=g), dim=-1)
    wx, wy = torch.randn(6, 3, generator=g), torch.randn(5, 3, generator=g)
    exact = UnitWPSE(logit_cap=None).eval()
    errs = []
    for d in (256, 16384):
        rff = UnitWPSE(logit_cap=None, rff_features=d, dim=4, rff_seed=1).eval()
        with torch.no_grad():
            diff = rff.logit_matrix(px, wx, py, wy) - exact.logit_matrix(px, wx, py, wy)
        # each kernel value errs by sd <= 1/sqrt(D); the logit is t/9 times a sum of 9 of
        # them with weights of size ~1: 5 sd of that sum bounds every entry here
        scale = (
            float(exact.scale().detach())
            * float((wx.abs().sum(1)).max() * wy.abs().sum(1).max())
            / 9
        )
        assert float(diff.abs().max()) < 5 * scale / math.sqrt(d)
        errs.append(float(diff.abs().max()))
    assert errs[1] < errs[0] / 3  # and it shrinks as D grows (64x the features: ~8x)


def _params(seed: int, rff: int | None, steps: int = 40) -> dict:
    p = sample_params(UNIT_WPSE, dim=4, points=2, hidden="8", batch_size=64, steps=steps,
                      lr=1e-2, seed=seed, eval_samples=96)  # fmt: skip
    p.update(FitConfig.table_params(sigma=0.5, rff_features=rff))
    return {"dist": BASE, **p}


def test_official_form_points_are_unit_length_and_arms_share_their_start():
    """UnitWPSE's encoders emit unit-length points; the exact and random-feature arms of one
    seed start from the same encoders (common random numbers)."""
    from pmilab.experiments.tasks.catalog import make_dist
    from pmilab.training.loop import prepare

    d = make_dist(BASE)
    exact = FitConfig(**FitConfig.from_table(_params(7, None))).validated()
    rff = exact.replace(rff_features=64)
    m_exact = prepare(d, exact, [7], torch.device("cpu"))[0].models[0]
    m_rff = prepare(d, rff, [7], torch.device("cpu"))[0].models[0]
    x, _ = d.sample(32, seed=1)
    with torch.no_grad():
        pts, w = m_exact.enc_x(x.float())
    assert pts.shape == (32, 2, 4) and w.shape == (32, 2)
    assert torch.allclose(pts.norm(dim=-1), torch.ones(32, 2), atol=1e-5)
    sx = {k: v for k, v in m_exact.state_dict().items() if not k.startswith("head.")}
    sr = {k: v for k, v in m_rff.state_dict().items() if not k.startswith("head.")}
    assert sx.keys() == sr.keys() and all(torch.equal(sx[k], sr[k]) for k in sx)


def test_calibration_columns_match_a_recomputation_from_scratch():
    """The task's perturbed errors against numpy: logits + s * field (field centred, unit RMS
    on the held-out grid), s = sd * sqrt((r + f tol)^2 - r^2), rmse after the best constant."""
    ps = [_params(s, None) for s in (0, 1)]
    out = t9_heads(ps, REACH_TOL_MC, T9B_TOL)
    from pmilab.experiments.tasks.catalog import make_dist

    d = make_dist(BASE)
    runs = fit_runs(d, ps)  # the same seeds train the same heads
    for run, o in zip(runs, out, strict=True):
        seed, n = run.config.seed, run.config.eval_samples
        x, _ = d.sample(n, seed=EVAL_SEED_OFFSET + seed)
        _, y = d.sample(n, seed=EVAL_SEED_OFFSET + seed + 1)
        logits = run.logit_matrix(x, y).numpy()
        pmi = d.pmi_matrix(x, y).to(torch.float64).numpy()
        f = fourier_field(x, y, seed).numpy()
        f = (f - f.mean()) / np.sqrt(((f - f.mean()) ** 2).mean())
        sd = o["product_std"]
        r = np.std(logits - pmi) / sd
        assert r == pytest.approx(o["pmi_rmse_product"] / sd, rel=1e-6)
        for col, tol, factor in (("rel_plus_double", REACH_TOL_MC, 2.0),
                                 ("rel_plus_half", REACH_TOL_MC, 0.5),
                                 ("gap_plus_double", T9B_TOL, 2.0),
                                 ("gap_plus_half", T9B_TOL, 0.5)):  # fmt: skip
            s = raise_scale(r, factor * tol) * sd
            assert o[col] == pytest.approx(np.std(logits + s * f - pmi) / sd, rel=1e-6), col


def test_config_and_sweep_shape():
    for preset in ("smoke", "quick", "full"):
        cfg = t9.config(preset)
        (sw,) = t9.sweeps(cfg)
        n_arms = 3 + bool(cfg.small_rff)
        assert len(sw.runs) == n_arms * len(seed_list(cfg.seeds))
        assert {r.params["arm"] for r in sw.runs} >= {EXACT, rff_arm(cfg.rff_features), SHUFFLED}
        assert len({r.run_id for r in sw.runs}) == len(sw.runs)
    assert t9.config("quick").rff_features == t9.config("full").rff_features == 1024
    assert t9.config("smoke").rff_features == 64
    with pytest.raises(InputError, match="needs >= 2 seeds"):
        t9.config("smoke", seeds=1)
