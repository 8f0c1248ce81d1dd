"""T9's training task: WPSE in the official form on a continuous joint, with the exact kernel
or random Fourier features, scored by Monte Carlo (docs/theory.md T9).

The official code (`sony/wpse`, `losses.py`, released setting `first_normalize: true`) rescales
every point to unit length before the Gaussian kernel; the lab's built-in WPSE takes raw points
(docs/theory.md T2, "Which forms the lab uses"). `UnitWPSE` is the built-in head with its points
declared unit-length (`HeadInputs.point_set(..., normalize=True)`: the MLP point-set encoder
L2-normalises each point, `pmilab.encoders`), so both of T9's arms are the official function:
the exact kernel sum (`rff_features` unset) and its random-feature form (`rff_features=D`,
features redrawn every training step, fixed from the run's seed in evaluation).

Common random numbers: the arms share every draw of a seed. `fit` builds each seed's model
under `torch.manual_seed(seed)` and the head's random features come from their own generators,
so the encoders start equal; the training batches and the held-out grid are drawn from the
seed alone (`training.inputs`, `training.evaluate`).

A WPSE head with random features cannot be trained as one batch of seeds (it redraws its
features per seed, `WPSE.batch_refusal`), so `t9_heads` trains such a cell one seed at a time
(`fitting.fit_run`, identical to what the batch would give) and every other cell as one batch.

Each run records `continuous.INVARIANCE_METRICS` (the errors under p(x)p(y) and p(x, y) with
their units) and two calibration pairs (`t2_calibration.perturbed_errors` on the same grid):
`rel_plus_half` / `rel_plus_double` (the head perturbed by 0.5x / 2x `reach_tol`) and
`gap_plus_half` / `gap_plus_double` (by 0.5x / 2x `gap_tol`). The tolerances are the claim's,
bound with functools.partial (a task never imports a claim module).
"""

from __future__ import annotations

from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.continuous import INVARIANCE_METRICS, _continuous_metrics
from pmilab.experiments.tasks.fitting import fit_kwargs, fit_run, fit_runs
from pmilab.experiments.tasks.t2_calibration import grid_calibration
from pmilab.interfaces import HeadInputs
from pmilab.similarity import WPSE

# the import path a run records as its head (`registry.resolve_head` loads it)
UNIT_WPSE = "pmilab.experiments.tasks.t9_wpse:UnitWPSE"
REACH_CAL = {"rel_plus_half": "rel_plus_half", "rel_plus_double": "rel_plus_double"}
GAP_CAL = {"rel_plus_half": "gap_plus_half", "rel_plus_double": "gap_plus_double"}
T9_METRICS = INVARIANCE_METRICS + [*REACH_CAL.values(), *GAP_CAL.values()]


class UnitWPSE(WPSE):
    """The built-in WPSE head on unit-length points (the official `first_normalize` form):
    every point is L2-normalised by the encoder before the kernel."""

    @classmethod
    def head_inputs(cls, dim: int, points: int) -> HeadInputs:
        return HeadInputs.point_set(points, dim, "signed", normalize=True)


def t9_head(p: dict, reach_tol: float, gap_tol: float) -> dict:
    """One T9 run: `t9_heads([p], ...)[0]`."""
    return t9_heads([p], reach_tol, gap_tol)[0]


def t9_heads(ps: list[dict], reach_tol: float, gap_tol: float) -> list[dict]:
    """T9's runs of one cell (parameters equal but for "seed") on `make_dist(ps[0]["dist"])`:
    the metrics of `T9_METRICS` per seed, in the order of `ps`. A random-feature head trains
    seed by seed, any other as one batch (module docstring)."""
    d = make_dist(ps[0]["dist"])
    if fit_kwargs(ps[0]).get("rff_features") is not None:
        runs = [fit_run(d, p) for p in ps]
    else:
        runs = fit_runs(d, ps)
    out = []
    for run, p in zip(runs, ps, strict=True):
        m = _continuous_metrics(run, d, p, INVARIANCE_METRICS)
        # the calibration fields sit on the base's grid (a shuffled control is scored against
        # its base's PMI there, as every metric of the run is)
        for tol, names in ((reach_tol, REACH_CAL), (gap_tol, GAP_CAL)):
            cal = grid_calibration(run, m["product_std"], tol)
            m.update({names[k]: v for k, v in cal.items()})
        out.append({k: m[k] for k in T9_METRICS})
    return out
