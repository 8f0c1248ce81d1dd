"""T8's rules (docs/theory.md T8) on planted paired differences, its calibration draw, its
verdict rows from a planted run table, and the claim end to end at smoke size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pmilab.experiments import verify
from pmilab.experiments.claims import t8
from pmilab.experiments.tasks.downstream import METRICS, planted, planted_count, r1_credits

TOL = t8.DIRECTION_TOL
SEEDS = range(5)


def arms(diff: float, sd: float = 0.004, base: float = 0.8, seed: int = 0):
    """Two arms on 5 seeds whose paired difference is `diff` plus noise of sd `sd` (the seed's
    own level, shared by both arms, spreads far more: pairing must remove it)."""
    rng = np.random.default_rng(seed)
    level = base + rng.normal(0, 0.05, len(SEEDS))
    head = level + diff + rng.normal(0, sd, len(SEEDS))
    return dict(zip(SEEDS, head, strict=True)), dict(zip(SEEDS, level, strict=True))


@pytest.mark.parametrize("seed", range(3))
def test_noninferiority_fails_at_2x_and_passes_at_half_the_tolerance(seed):
    assert t8.noninferior(*arms(-2 * TOL, seed=seed)).verdict == "FAIL"
    assert t8.noninferior(*arms(-0.5 * TOL, seed=seed)).verdict == "PASS"
    assert t8.noninferior(*arms(+0.02, seed=seed)).verdict == "PASS"  # a gain passes too


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("sign", [1, -1])
def test_probe_equivalence_fails_at_2x_and_passes_at_half_the_tolerance(seed, sign):
    assert t8.equivalent(*arms(sign * 2 * TOL, seed=seed)).verdict == "FAIL"
    assert t8.equivalent(*arms(sign * 0.5 * TOL, seed=seed)).verdict == "PASS"


def test_the_rules_are_paired_by_seed():
    head, base = arms(-0.5 * TOL)
    # unpaired, the seeds' shared spread (sd 0.05) would leave this INCONCLUSIVE
    assert t8.noninferior(head, base).verdict == "PASS"
    shuffled = dict(zip(SEEDS, np.roll(list(head.values()), 1), strict=True))
    assert t8.noninferior(shuffled, base).verdict != "PASS"


def test_planted_drops_by_scale_times_tol_in_expectation():
    rng = np.random.default_rng(0)
    correct = (rng.random(400_000) < 0.8).astype(float)
    for s in (2.0, 0.5):
        drop = correct.mean() - planted(correct, s, TOL, np.random.default_rng(1))
        assert drop == pytest.approx(s * TOL, abs=0.002)
        drop = 0.8 - planted_count(0.8, 400_000, s, TOL, np.random.default_rng(2))
        assert drop == pytest.approx(s * TOL, abs=0.002)
    # fractional credits (ties) lose their credit in proportion
    credits = np.full(200_000, 0.5)
    assert credits.mean() - planted(credits, 2.0, TOL, rng) == pytest.approx(2 * TOL, abs=0.002)


def test_r1_credits_share_ties_and_count_both_directions():
    lm = np.array([[3.0, 1.0, 3.0], [0.0, 2.0, 1.0], [5.0, 0.0, 3.0]])
    import torch

    c = r1_credits(torch.tensor(lm))
    # rows: tie with one other -> 1/2; best -> 1; beaten -> 0. columns: col0 beaten by 5 -> 0,
    # col1 best -> 1, col2 ties with row 0's 3 -> 1/2
    assert c.tolist() == [0.5, 1.0, 0.0, 0.0, 1.0, 0.5]


def table(diffs: dict[str, float], calib: bool = True) -> pd.DataFrame:
    """A run table as the sweep writes it: 2 data sets x 3 heads x 5 seeds, with the point-set
    heads `diffs[measure]` away from the linear head (plus noise), and the linear head's
    calibration and control columns."""
    rng = np.random.default_rng(3)
    rows = []
    for d in t8.DATA:
        for s in SEEDS:
            base = {m: 0.7 + rng.normal(0, 0.05) for m in ("zs", "r1", "probe")}
            for sim in ("linear", *t8.HEADS):
                r = dict.fromkeys(METRICS, np.nan)
                r.update(data=d, similarity=sim, seed=s)
                for m, v in base.items():
                    r[m] = v + (0 if sim == "linear" else diffs[m] + rng.normal(0, 0.004))
                if sim == "linear" and calib:
                    for m, v in base.items():
                        r[f"{m}_near"] = v - 2 * TOL + rng.normal(0, 0.004)
                        r[f"{m}_half"] = v - 0.5 * TOL + rng.normal(0, 0.004)
                    r["zs_init"], r["r1_init"] = 0.1, 1 / 32
                rows.append(r)
    return pd.DataFrame(rows)


def verdicts(rows) -> dict[tuple[str, str, str], str]:
    return {(r.claim, r.kind, r.expect): r.verdict for r in rows}


def test_evaluate_passes_the_papers_direction_and_fails_a_head_2x_worse():
    cfg = t8.config("smoke")
    good = verdicts(t8.evaluate({"t8": table({"zs": 0.02, "r1": 0.01, "probe": 0.0})}, cfg))
    assert good[("T8a", "evidence", "")] == "PASS"
    assert good[("T8b", "evidence", "")] == "PASS"
    assert good[("T8c", "evidence", "")] == "PASS"
    for cid in ("T8a", "T8b", "T8c"):
        assert good[(cid, "calibration", "FAIL")] == "FAIL"
        assert good[(cid, "calibration", "PASS")] == "PASS"
    assert good[("T8a", "control", "")] == good[("T8b", "control", "")] == "FAIL"
    bad = verdicts(t8.evaluate({"t8": table({"zs": -2 * TOL, "r1": 0.0, "probe": 2 * TOL})}, cfg))
    assert bad[("T8a", "evidence", "")] == "FAIL"
    assert bad[("T8b", "evidence", "")] == "PASS"
    assert bad[("T8c", "evidence", "")] == "FAIL"


def test_gains_finding_reports_each_difference_with_its_interval():
    cfg = t8.config("smoke")
    rows = t8.evaluate({"t8": table({"zs": 0.02, "r1": 0.02, "probe": 0.0})}, cfg)
    gains = [r for r in rows if r.claim == "T8d"]
    assert len(gains) == 1 and gains[0].kind == "finding"
    assert gains[0].measured.startswith("8 of 8")
    d = t8.differences(table({"zs": 0.02, "r1": 0.02, "probe": 0.0}), t8.DATA)
    assert len(d) == 12 and (d.lo < d["diff"]).all() and (d["diff"] < d.hi).all()
    assert d[d.measure == "zs"]["diff"].to_numpy() == pytest.approx(0.02, abs=0.01)


def test_presets_keep_five_seeds_where_it_is_judged():
    assert len(list(t8.runs(t8.config("quick")))) == 3 * 5 * len(t8.config("quick").data)
    assert t8.config("full").seeds == 5 and t8.config("quick").seeds == 5
    with pytest.raises(Exception, match=">= 2 seeds"):
        t8.config("smoke", seeds=(0,))


def test_smoke_run_of_the_claim(tmp_path):
    run = verify.run_claim(t8, "smoke", tmp_path, progress=False)
    rows = run.results
    assert [r.claim for r in rows if r.kind == "evidence"] == ["T8a", "T8b", "T8c"]
    df = pd.read_csv(tmp_path / "runs" / "t8.csv")
    assert len(df) == 2 * 3 * 2 and df["zs"].between(0, 1).all() and df["probe"].notna().all()
    assert df[df.similarity == "linear"]["zs_near"].notna().all()
    # at smoke size (2 seeds, 6 steps) nothing means much, but no near miss PASSes
    assert all(r.verdict != "PASS" for r in rows if r.expect == "FAIL")
