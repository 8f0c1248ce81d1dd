"""What every training task shares: a run's parameters <-> `pmilab.fit` keyword arguments.

Both directions are `FitConfig`'s schema (`pmilab.training.config`): a claim writes a run's fit
settings with `FitConfig.table_params` (here: `population_params`, `sample_params`, the two
kinds of fit run the claims make) and a task reads them back with `fit_kwargs`
(`FitConfig.from_table`). A new FitConfig field is a run parameter with no edit here.
"""

from __future__ import annotations

from pmilab.training.config import FitConfig

NAN = float("nan")
PROBE_SEED_OFFSET = 1_000_003  # held-out probe draws never reuse a training seed
SWEEP_RUN = {"device": "cpu", "threads": 1}  # every sweep run, whatever its parameters say


def population_params(
    similarity, dim: int, points: int, steps: int, lr: float, seed: int, **changes
) -> dict:
    """The run parameters of a head trained on the exact population loss of a discrete joint
    (T1, T2, T3, T5): unnormalised, with a bias, no logit cap, symmetric InfoNCE, batches of
    256 for the held-out metrics; `changes` replace those settings."""
    shared = {
        "normalize": False,
        "bias": True,
        "logit_cap": None,
        "objective": "symmetric",
        "population": True,
        "batch_size": 256,
        **changes,
    }
    return FitConfig.table_params(
        similarity=similarity, dim=dim, points=points, **shared, steps=steps, lr=lr, seed=seed
    )


def sample_params(
    similarity,
    dim: int,
    points: int,
    hidden,
    batch_size: int,
    steps: int,
    lr: float,
    seed: int,
    eval_samples: int,
    features: str = "raw",
) -> dict:
    """The run parameters of a head trained on minibatches of a continuous joint (T1b, T2d,
    T6): MLP encoders of widths `hidden`, an unnormalised head with a bias, no logit cap,
    symmetric InfoNCE, Monte Carlo metrics on `eval_samples` held-out draws."""
    return FitConfig.table_params(
        similarity=similarity,
        dim=dim,
        points=points,
        hidden=hidden,
        features=features,
        normalize=False,
        bias=True,
        logit_cap=None,
        objective="symmetric",
        population=False,
        batch_size=batch_size,
        steps=steps,
        lr=lr,
        seed=seed,
        eval_samples=eval_samples,
    )


def fit_kwargs(p: dict) -> dict:
    """The `fit` keyword arguments of a run's parameters: every FitConfig setting it holds."""
    return FitConfig.from_table(p)


def _check_trainable(dist, p: dict) -> None:
    from pmilab.experiments.tasks.catalog import ShuffledPairs

    if isinstance(dist, ShuffledPairs) and int(p.get("population") or 0):
        raise ValueError("a |shuffled control trains on samples; population=1 reads the joint")


def fit_run(dist, p: dict, **extra):
    """Train with `pmilab.fit` on CPU, one thread, no progress bar (a sweep run)."""
    from pmilab.training import fit

    _check_trainable(dist, p)
    return fit(dist, progress=False, **{**fit_kwargs(p), **SWEEP_RUN, **extra})


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
    return fit(dist, seeds=seeds, progress=False, **{**kw, **SWEEP_RUN, **extra})
