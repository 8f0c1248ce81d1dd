"""`fit`: train a similarity head on a known-PMI distribution and score it (docs/theory.md T1, T2).

One flat trainer, nanoGPT style: input (fresh samples each step, or the exact table), model
(encoders + head), update (AdamW, warmup + cosine, log-scale clamp after the step), stop on a
non-finite loss, gradient or update keeping the last good parameters, then evaluation.
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
from pmilab.losses import contrastive_loss, population_loss, table_infonce
from pmilab.runtime.device import resolve_device
from pmilab.runtime.optim import adamw
from pmilab.runtime.schedule import warmup_cosine
from pmilab.training.config import DEFAULT_LR_MLP, DEFAULT_LR_TABLE, FitConfig
from pmilab.training.evaluate import evaluate
from pmilab.training.model import PairModel, build_model
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
    if cfg.lr is None:
        cfg = cfg.replace(lr=DEFAULT_LR_TABLE if dist.discrete else DEFAULT_LR_MLP)
    return dist, cfg


class _Batches:
    """Fresh i.i.d. pairs each step, from seeds drawn by a generator seeded with `seed`."""

    def __init__(self, dist, cfg: FitConfig, device: torch.device, dtype: torch.dtype) -> None:
        self.dist, self.n, self.device, self.dtype = dist, cfg.batch_size, device, dtype
        self.g = torch.Generator().manual_seed(cfg.seed)

    def __call__(self) -> tuple[Tensor, Tensor]:
        seed = int(torch.randint(0, 2**62, (1,), generator=self.g))
        x, y = self.dist.sample(self.n, seed=seed)
        if not self.dist.discrete:
            x, y = x.to(self.dtype), y.to(self.dtype)
        return x.to(self.device), y.to(self.device)


def _loss_fn(dist, model: PairModel, cfg: FitConfig, device, dtype):
    if cfg.population:
        joint = dist.table.to(device=device, dtype=dtype)
        ix, iy = torch.arange(dist.nx, device=device), torch.arange(dist.ny, device=device)
        return lambda: population_loss(model.logit_matrix(ix, iy), joint, cfg.objective)
    batches = _Batches(dist, cfg, device, dtype)
    if dist.discrete and dist.nx * dist.ny <= cfg.batch_size**2:
        # same loss as on the N×N matrix, computed on the nx×ny table (losses.table_infonce)
        ix, iy = torch.arange(dist.nx, device=device), torch.arange(dist.ny, device=device)

        def table_loss() -> Tensor:
            x, y = batches()
            return table_infonce(model.logit_matrix(ix, iy), x, y, cfg.objective)

        return table_loss

    def minibatch_loss() -> Tensor:
        x, y = batches()
        return contrastive_loss(model.logit_matrix(x, y), cfg.objective)

    return minibatch_loss


def _stop(params, good, step: int, what: str, kept: str, lr: float) -> str:
    """Restore the last good parameters; the message naming the step."""
    with torch.no_grad():
        for p, g in zip(params, good, strict=True):
            p.copy_(g)
    return (
        f"training stopped at step {step}: {what}; kept {kept} (last finite loss). "
        f"Lower the learning rate (lr={lr:g})."
    )


def _all_finite(tensors) -> bool:
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _train(
    model: PairModel, loss_fn, cfg: FitConfig, progress: bool
) -> tuple[list, int | None, str]:
    opt = adamw(model, model.head.no_decay_parameters(), cfg.lr, cfg.weight_decay)
    params = list(model.parameters())
    good = [p.detach().clone() for p in params]  # parameters of the last finite loss
    rff_gen = torch.Generator().manual_seed(cfg.seed + 1)
    history: list[float] = []
    model.train()
    bar = tqdm(range(cfg.steps), desc=f"fit {cfg.similarity}", disable=not progress, leave=False)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, cfg.lr, cfg.warmup, cfg.steps)
        model.head.redraw(rff_gen)
        loss = loss_fn()
        grads_ok = torch.isfinite(loss).item()
        if grads_ok:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grads_ok = _all_finite([p.grad for p in params if p.grad is not None] or [loss])
        if not grads_ok:
            what = "loss" if not torch.isfinite(loss) else "gradient"
            kept = f"the parameters before step {step}" if step else "the initial parameters"
            msg = _stop(
                params, good, step, f"the {what} is {loss.item()} (not finite)", kept, cfg.lr
            )
            return history, step, msg
        with torch.no_grad():
            for p, g in zip(params, good, strict=True):
                g.copy_(p)
        # A step size beyond the parameters' dtype overflows inside Adam: torch raises
        # "value cannot be converted to type float without overflow", or the update leaves
        # inf/nan parameters. Both stop here, keeping the parameters of this step's finite loss.
        try:
            opt.step()
            model.head.clamp_()
            overflow = "" if _all_finite(params) else "the update made a parameter inf or nan"
        except RuntimeError as e:
            if "overflow" not in str(e):
                raise
            overflow = f"the optimizer update overflowed ({str(e).splitlines()[0]})"
        history.append(loss.item())
        if overflow:
            kept = "the parameters before that update"
            return history, step, _stop(params, good, step, overflow, kept, cfg.lr)
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    return history, None, ""


def fit(
    dist,
    config: FitConfig | None = None,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **overrides,
) -> Run:
    """Train a similarity head on `dist` under InfoNCE and score it against the exact PMI.

    dist:      a distribution (pmilab.dists), a spec string ("latent:nx=24,ny=20,k=4") or a
               2-D joint table (numpy array) that sums to 1.
    config:    a FitConfig; keyword overrides (similarity=..., dim=..., points=..., steps=...,
               lr=..., seed=..., objective=..., population=..., logit_cap=...) replace fields.
    out:       if given, write config.json, metrics.json, model.pt (and logits.npy for discrete).
               Checked and created before training: a file, an uncreatable folder, or a
               folder that holds an earlier run (unless `overwrite=True`) is an InputError.
    progress:  show a tqdm bar.

    Same seed on CPU -> identical parameters and metrics. A non-finite loss, gradient or
    parameter update (an overflow inside the optimizer) stops training with a RuntimeWarning
    naming the step; the run keeps the last good parameters and records `stopped_at` /
    `message` (also in metrics.json as `stopped_at_step`). Learned logits that are constant
    while the PMI is not (a degenerate run) also warn, with `constant_logits` in the metrics.
    """
    dist, cfg = _resolve(dist, config, overrides)
    device = resolve_device(cfg.device)
    if out is not None:
        out = check_out_dir(out, overwrite, create=True)
    threads = torch.get_num_threads()
    if cfg.threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    try:
        return _fit(dist, cfg, device, out, progress)
    finally:
        torch.set_num_threads(threads)


def _fit(dist, cfg: FitConfig, device: torch.device, out, progress: bool) -> Run:
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(dist, cfg).to(device=device, dtype=dtype)
    model.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    history, stopped_at, message = _train(
        model, _loss_fn(dist, model, cfg, device, dtype), cfg, progress
    )
    model.eval()
    run = Run(cfg, model, dist, {}, history, stopped_at, message)
    run.metrics = evaluate(run)
    run.metrics["final_loss"] = history[-1] if history else math.nan
    run.metrics["steps_run"] = len(history)
    if stopped_at is not None:
        run.metrics["stopped_at_step"] = stopped_at
    if run.metrics["constant_logits"]:
        constant = (
            "the learned logits are constant (zero variance) while the PMI is not, so the head "
            f"learned nothing and pmi_corr is undefined; lower the learning rate (lr={cfg.lr:g})"
        )
        run.message = f"{message}; {constant}" if message else constant
    if run.message:
        warnings.warn(run.message, RuntimeWarning, stacklevel=3)
    if out is not None:
        run.save(out)
    return run
