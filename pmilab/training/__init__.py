"""Training: `fit(dist, ...) -> Run`, configured by `FitConfig` (docs/theory.md T1, T2, T5).

run = fit(dist, similarity="kme", dim=4, points=4, steps=2000, seed=0)
run.metrics["pmi_rmse_product"]; run.logit_table()
"""

from pmilab.training.config import FitConfig
from pmilab.training.evaluate import evaluate
from pmilab.training.loop import fit
from pmilab.training.model import PairModel, build_model
from pmilab.training.run import Run

__all__ = ["FitConfig", "PairModel", "Run", "build_model", "evaluate", "fit"]
