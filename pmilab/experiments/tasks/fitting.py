"""What every training task shares: run parameters -> `pmilab.fit` keyword arguments."""

from __future__ import annotations

NAN = float("nan")
PROBE_SEED_OFFSET = 1_000_003  # held-out probe draws never reuse a training seed

FIT_KEYS = (
    "similarity",
    "dim",
    "points",
    "normalize",
    "bias",
    "logit_cap",
    "objective",
    "population",
    "batch_size",
    "steps",
    "lr",
    "seed",
)


def fit_kwargs(p: dict) -> dict:
    kw = {k: p[k] for k in FIT_KEYS if k in p and p[k] != ""}
    for k in ("normalize", "bias", "population"):
        if k in kw:
            kw[k] = bool(int(kw[k]))
    if "logit_cap" in kw and (kw["logit_cap"] is None or float(kw["logit_cap"]) <= 0):
        kw["logit_cap"] = None  # 0 in the table means "no cap"
    return kw


def fit_run(dist, p: dict, **extra):
    """Train with `pmilab.fit` on CPU, one thread, no progress bar (a sweep run)."""
    from pmilab.experiments.tasks.catalog import ShuffledPairs
    from pmilab.training import fit

    if isinstance(dist, ShuffledPairs) and int(p.get("population") or 0):
        raise ValueError("a |shuffled control trains on samples; population=1 reads the joint")
    return fit(dist, progress=False, device="cpu", threads=1, **fit_kwargs(p), **extra)
