"""`fit`: train a similarity head on a known-PMI distribution and score it (docs/theory.md T1, T2).

One flat trainer, nanoGPT style, over R >= 1 seeds at once: input (fresh samples each step per
seed, or the exact table: `training.inputs`), model (encoders + head per seed, stacked into one
computation: `training.replicas`), update (AdamW, warmup + cosine, log-scale clamp after the
step), per-seed safety checks every `check_every` steps (`training.guard`), then evaluation of
each seed. `fit(seed=s)` is the same engine with one replica.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from pmilab.errors import InputError
from pmilab.runtime.device import resolve_device
from pmilab.runtime.lbfgs import BatchedLBFGS
from pmilab.runtime.optim import adamw_groups
from pmilab.runtime.schedule import warmup_cosine
from pmilab.similarity.base import SimilarityHead
from pmilab.training.config import DEFAULT_LR_MLP, DEFAULT_LR_TABLE, FitConfig
from pmilab.training.evaluate import evaluate
from pmilab.training.guard import Guard, Outcome
from pmilab.training.inputs import StepInputs, step_inputs
from pmilab.training.memory import check_fit
from pmilab.training.model import build_model
from pmilab.training.replicas import Replicas
from pmilab.training.run import Run, check_out_dir

# What `fit` needs of a distribution (pmilab.dists.JointDistribution).
DIST_METHODS = ("sample", "pmi", "pmi_matrix", "mutual_information")


def as_distribution(dist):
    """`dist` as a pmilab distribution: a spec string is parsed, a 2-D joint table (numpy
    array, torch tensor or nested list) becomes `pmilab.dists.Discrete`; anything else that is
    not a distribution is an InputError."""
    from pmilab.dists import Discrete, parse_spec

    if isinstance(dist, str):
        return parse_spec(dist)
    if isinstance(dist, np.ndarray | Tensor | list | tuple):
        return Discrete(dist)
    if not hasattr(dist, "discrete") or not all(hasattr(dist, m) for m in DIST_METHODS):
        raise InputError(
            f"dist must be a pmilab distribution (pmilab.dists), a spec string such as "
            f"'latent:nx=24,ny=20,k=4' or a 2-D joint table (numpy array); got {type(dist).__name__}"
        )
    return dist


def _resolve(dist, config: FitConfig | None, overrides: dict) -> tuple[object, FitConfig]:
    dist = as_distribution(dist)
    cfg = (config or FitConfig()).replace(**overrides).validated()
    if cfg.population and not dist.discrete:
        raise InputError("population=True needs a discrete joint table; train on samples instead")
    if cfg.lr is None and cfg.optimizer == "lbfgs":
        cfg = cfg.replace(lr=1.0)  # the quasi-Newton step itself
    elif cfg.lr is None:
        cfg = cfg.replace(lr=DEFAULT_LR_TABLE if dist.discrete else DEFAULT_LR_MLP)
    return dist, cfg


def _train(
    rep: Replicas, inputs: StepInputs, cfg: FitConfig, seeds: list[int], progress: bool
) -> tuple[list[list[float]], list[Outcome]]:
    """Train every replica for `cfg.steps` steps (fewer once all have stopped or converged);
    returns each replica's loss history (up to its kept parameters) and its outcome."""
    model = rep.models[0]
    guard = Guard(rep, cfg.check_every, cfg.lr, cfg.converge_window, cfg.converge_tol)
    if cfg.floor_gap is not None:  # population=True (validated): the floor is -I(X;Y)
        guard.floor, guard.floor_gap = inputs.floor, cfg.floor_gap
    redraws = [
        (m.head.redraw, torch.Generator().manual_seed(s + 1))
        for m, s in zip(rep.models, seeds, strict=True)
        if _overrides(m.head, "redraw")
    ]
    clamps = [m.head.clamp_ for m in rep.models if _overrides(m.head, "clamp_")]
    if cfg.optimizer == "lbfgs":
        return _train_lbfgs(rep, inputs, cfg, guard, redraws, clamps, progress)
    groups = rep.optimizer_groups(model, model.head.no_decay_parameters(), cfg.weight_decay)
    opt = adamw_groups(groups, cfg.lr)
    for m in rep.models:
        m.train()
    hist: Tensor | None = None
    last = cfg.steps - 1
    bar = tqdm(range(cfg.steps), desc=_desc(cfg, rep), disable=not progress, leave=False)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, cfg.lr, cfg.warmup, cfg.steps)
        for redraw, generator in redraws:
            redraw(generator)
        shared, per_replicate = inputs.draw()
        losses = rep.losses(shared, per_replicate)
        if hist is None:
            hist = torch.empty(cfg.steps, rep.size, dtype=losses.dtype, device=losses.device)
        hist[step] = losses.detach()
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        check = guard.is_check(step, last)
        if check:
            guard.before_update(step, hist)
        try:
            opt.step()
        except RuntimeError as e:  # a step size beyond the dtype: torch raises inside Adam
            if "overflow" not in str(e):
                raise
            guard.update_raised(step, hist, str(e).splitlines()[0])
        for clamp in clamps:
            clamp()
        if check:
            guard.after_update(step)
        guard.hold_frozen()
        if not bool(guard.active.any()):
            break
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{float(hist[step].mean()):.4f}")
    bar.close()
    return _histories(cfg, guard, hist, step, len(seeds))


def _desc(cfg: FitConfig, rep: Replicas) -> str:
    return f"fit {cfg.similarity}" + (f" x{rep.size} seeds" if rep.size > 1 else "")


def _histories(cfg: FitConfig, guard: Guard, hist: Tensor | None, step: int, n: int):
    for r, out in enumerate(guard.outcomes):
        if bool(guard.active[r]):
            out.kept = min(cfg.steps, step + 1)
    cols = hist.T.tolist() if hist is not None else [[] for _ in range(n)]
    return [c[: o.kept] for c, o in zip(cols, guard.outcomes, strict=True)], guard.outcomes


def _train_lbfgs(
    rep: Replicas, inputs: StepInputs, cfg: FitConfig, guard: Guard, redraws, clamps, progress
):
    """`_train` with per-seed L-BFGS (`runtime.lbfgs`) on an exact population loss: a step is
    one iteration (its line search may evaluate the loss several times); the history holds the
    loss at the start of each iteration. A seed whose search finds no decrease has converged
    (`converged_at_step`); the run ends when every active seed has."""
    if redraws:
        raise InputError(
            "optimizer='lbfgs' needs a deterministic loss: this head redraws its features"
        )
    leaves = rep.leaves()
    opt = BatchedLBFGS(leaves, lr=cfg.lr)
    shared, per_replicate = inputs.draw()  # the population loss: the same inputs every step

    def closure() -> Tensor:
        for p in leaves:
            p.grad = None
        losses = rep.losses(shared, per_replicate)
        losses.sum().backward()
        return losses.detach()

    for m in rep.models:
        m.train()
    hist = None
    last = cfg.steps - 1
    bar = tqdm(range(cfg.steps), desc=_desc(cfg, rep), disable=not progress, leave=False)
    for step in bar:
        opt.evaluate(closure)
        if hist is None:
            hist = torch.empty(cfg.steps, rep.size, dtype=opt.loss.dtype, device=opt.loss.device)
        hist[step] = opt.loss
        check = guard.is_check(step, last)
        if check:
            guard.before_update(step, hist)
        opt.step(closure)
        if clamps:
            before = [p.detach().clone() for p in leaves]
            for clamp in clamps:
                clamp()
            if any(not torch.equal(b, p) for b, p in zip(before, leaves, strict=True)):
                opt.moved_outside()  # a clamp moved a parameter: re-evaluate there
        if check:
            guard.after_update(step)
        guard.hold_frozen()
        for r in (opt.stalled & guard.active).nonzero().flatten().tolist():
            guard.outcomes[r].converged_at = step
        if not bool((guard.active & ~opt.stalled).any()):
            break
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{float(hist[step].mean()):.6f}")
    bar.close()
    return _histories(cfg, guard, hist, step, rep.size)


def _overrides(head, method: str) -> bool:
    """The head defines `method` itself (the base class's is a no-op, skipped every step)."""
    base = getattr(SimilarityHead, method, None)
    return getattr(type(head), method, None) is not base


def fit(
    dist,
    config: FitConfig | None = None,
    *,
    seeds: list[int] | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **overrides,
) -> Run | list[Run]:
    """Train a similarity head on `dist` under InfoNCE and score it against the exact PMI.

    dist:      a distribution (pmilab.dists), a spec string ("latent:nx=24,ny=20,k=4") or a
               2-D joint table (numpy array) that sums to 1.
    config:    a FitConfig; keyword overrides (similarity=..., dim=..., points=..., steps=...,
               lr=..., seed=..., objective=..., population=..., logit_cap=...) replace fields.
    seeds:     a list of seeds: train them all as one batched computation (a leading replicate
               dimension, `training.replicas`) and return one Run per seed, in order; each
               equals `fit(seed=s)` bit for bit on CPU. Without it, one Run for `seed`.
    out:       if given, write config.json, metrics.json, model.pt (and logits.npy for discrete);
               with `seeds`, one folder `out/seed<s>` per seed. Checked and created before
               training: a file, an uncreatable folder, or a folder that holds an earlier run
               (unless `overwrite=True`) is an InputError.
    progress:  show a tqdm bar.

    Same seed on CPU -> identical parameters and metrics. A non-finite loss, gradient or
    parameter update (an overflow inside the optimizer) stops that seed with a RuntimeWarning
    naming the step; the others go on. A stopped run keeps the parameters of the last safety
    check with a finite loss (`check_every`) and records `stopped_at` / `message` (also in
    metrics.json as `stopped_at_step`). Learned logits that are constant while the PMI is not
    (a degenerate run) also warn, with `constant_logits` in the metrics.
    """
    if seeds is not None:
        seeds = _check_seeds(seeds, overrides)
    dist, cfg = _resolve(dist, config, overrides)
    seed_list = [cfg.seed] if seeds is None else seeds
    check_fit(dist, cfg, len(seed_list))  # sizes against their memory estimate, before building
    device = resolve_device(cfg.device)
    outs: list[Path | None] = [None] * len(seed_list)
    if out is not None:
        if seeds is None:
            outs = [check_out_dir(out, overwrite, create=True)]
        else:
            outs = [check_out_dir(Path(out) / f"seed{s}", overwrite) for s in seed_list]
            outs = [check_out_dir(o, overwrite, create=True) for o in outs]
    threads = torch.get_num_threads()
    if cfg.threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    try:
        runs = _fit(dist, cfg, seed_list, device, outs, progress)
    finally:
        torch.set_num_threads(threads)
    return runs if seeds is not None else runs[0]


def _check_seeds(seeds, overrides: dict) -> list[int]:
    if "seed" in overrides:
        raise InputError("pass either seed=s or seeds=[...], not both")
    if isinstance(seeds, int | str | bytes) or not hasattr(seeds, "__iter__"):
        raise InputError(f"seeds must be a list of integers, got {seeds!r}")
    out = list(seeds)
    if not out:
        raise InputError("seeds must name at least one seed, got an empty list")
    for s in out:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise InputError(f"every seed must be a non-negative integer, got {s!r}")
    out = [int(s) for s in out]
    if len(set(out)) != len(out):
        raise InputError(f"seeds must be distinct (a repeated seed trains the same run): {out}")
    return out


def prepare(dist, cfg: FitConfig, seeds: list[int], device) -> tuple[Replicas, StepInputs]:
    """One model per seed (each initialised from its seed, as `fit(seed=s)` does), stacked;
    and the inputs of every step. `benchmarks/batched_seeds.py` times `_train` on these."""
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    amp = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    models = []
    for s in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            models.append(build_model(dist, cfg.replace(seed=s)).to(device=device, dtype=dtype))
        models[-1].amp = amp
    inputs = step_inputs(dist, cfg, seeds, device, dtype)
    return Replicas(models, inputs.loss_of), inputs


def _fit(dist, cfg: FitConfig, seeds: list[int], device, outs: list, progress: bool) -> list[Run]:
    rep, inputs = prepare(dist, cfg, seeds, device)
    histories, outcomes = _train(rep, inputs, cfg, seeds, progress)
    runs = []
    for s, model, history, outcome, out in zip(
        seeds, rep.detach_models(), histories, outcomes, outs, strict=True
    ):
        runs.append(_finish(dist, cfg.replace(seed=s), model, history, outcome, out))
    return runs


def _finish(dist, cfg: FitConfig, model, history: list, outcome: Outcome, out) -> Run:
    """Evaluate one trained replica, warn about what went wrong, save it if asked."""
    model.eval()
    run = Run(cfg, model, dist, {}, history, outcome.stopped_at, outcome.message)
    run.metrics = evaluate(run)
    run.metrics["final_loss"] = history[-1] if history else math.nan
    run.metrics["steps_run"] = len(history)
    if outcome.stopped_at is not None:
        run.metrics["stopped_at_step"] = outcome.stopped_at
    if outcome.converged_at is not None:
        run.metrics["converged_at_step"] = outcome.converged_at
    if run.metrics["constant_logits"]:
        constant = (
            "the learned logits are constant (zero variance) while the PMI is not, so the head "
            f"learned nothing and pmi_corr is undefined; lower the learning rate (lr={cfg.lr:g})"
        )
        run.message = f"{run.message}; {constant}" if run.message else constant
    if run.message:
        warnings.warn(run.message, RuntimeWarning, stacklevel=4)
    if out is not None:
        run.save(out)
    return run
