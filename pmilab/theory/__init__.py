"""Closed forms and bounds of docs/theory.md (pure functions; nothing here imports experiments/cli).

T4 (linear multimodal contrastive learning, Nakada et al. 2023) lives in `linear_mmcl` (losses,
S, gradient identity, Eckart–Young), `spiked` (the data model), `clip_gd` (GD training) and
`unpaired` (Algorithm 1); the most used names are re-exported here.
"""

from pmilab.theory.clip_gd import ClipGDConfig, fit_clip_gd
from pmilab.theory.linear_mmcl import (
    centred_cross_covariance,
    clip_gradients,
    clip_loss,
    contrastive_cross_covariance,
    eckart_young_optimum,
    linear_loss,
    row_space,
    sin_theta,
)
from pmilab.theory.spiked import SpikedModel
from pmilab.theory.unpaired import fit_with_unpaired, mutual_argmax_pairs

__all__ = [
    "ClipGDConfig",
    "SpikedModel",
    "centred_cross_covariance",
    "clip_gradients",
    "clip_loss",
    "contrastive_cross_covariance",
    "eckart_young_optimum",
    "fit_clip_gd",
    "fit_with_unpaired",
    "linear_loss",
    "mutual_argmax_pairs",
    "row_space",
    "sin_theta",
]
