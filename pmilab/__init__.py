"""pmilab: check multimodal contrastive learning theory against exactly known PMI.

    import pmilab as pl
    d = pl.dists.random_latent_class(nx=24, ny=20, k=4, seed=0)
    run = pl.fit(d, similarity="kme", dim=4, points=4, steps=2000, seed=0)
    run.metrics["pmi_rmse_product"]
    card = pl.check_head("mypkg.heads:MyHead", preset="smoke", out="check-out")  # report card

Subpackages are imported lazily so `import pmilab` stays fast.
"""

from __future__ import annotations

import importlib

from pmilab.errors import InputError  # noqa: F401  (re-exported: pl.InputError)

__version__ = "0.1.0"

_SUBMODULES = {
    "dists",
    "similarity",
    "encoders",
    "losses",
    "metrics",
    "theory",
    "experiments",
    "training",
    "figures",
    "pretrain",
    "interfaces",
    "registry",
}
# Public names re-exported from a submodule: name -> module.
_REEXPORTS = {
    "fit": "pmilab.training",
    "Run": "pmilab.training",
    "check_head": "pmilab.cli.check",  # `pmilab check`: the report card of a head
}

__all__ = sorted(_SUBMODULES | set(_REEXPORTS) | {"InputError"})


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"pmilab.{name}")
    if name in _REEXPORTS:
        return getattr(importlib.import_module(_REEXPORTS[name]), name)
    raise AttributeError(f"module 'pmilab' has no attribute {name!r}")
