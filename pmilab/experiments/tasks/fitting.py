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


def _check_trainable(dist, p: dict) -> None:
    from pmilab.experiments.tasks.catalog import ShuffledPairs

    if isinstance(dist, ShuffledPairs) and int(p.get("population") or 0):
        raise ValueError("a |shuffled control trains on samples; population=1 reads the joint")


def fit_run(dist, p: dict, **extra):
    """Train with `pmilab.fit` on CPU, one thread, no progress bar (a sweep run)."""
    from pmilab.training import fit

    _check_trainable(dist, p)
    return fit(dist, progress=False, device="cpu", threads=1, **fit_kwargs(p), **extra)


def fit_runs(dist, ps: list[dict], **extra) -> list:
    """`fit_run` for each of a cell's runs (parameters equal but for "seed") as one batched
    computation, `pmilab.fit(seeds=[...])`: one Run per seed, in the order of `ps`, each
    identical to `fit_run(dist, p, **extra)`."""
    from pmilab.experiments.framework.sweep import cell_key
    from pmilab.training import fit

    if not ps or len({cell_key(p) for p in ps}) != 1:
        raise ValueError("a cell's runs must have equal parameters but for 'seed'")
    _check_trainable(dist, ps[0])
    kw = fit_kwargs(ps[0])
    kw.pop("seed", None)
    seeds = [int(p["seed"]) for p in ps]
    return fit(dist, seeds=seeds, progress=False, device="cpu", threads=1, **kw, **extra)
