"""What `fit` feeds its replicas each step, and the loss each replica computes from it.

Three inputs (docs/theory.md T1):
- population: the exact population loss L∞ on the whole joint table, shared by every replica;
- table: a fresh batch of discrete pairs per replica, scored on the nx×ny table
  (`losses.table_infonce`; the batch's state counts are taken here, outside vmap);
- minibatch: a fresh batch of pairs per replica, InfoNCE on its N×N logit matrix.

Each replica draws its own batches from a generator seeded with its own seed, so replica r of a
batched run sees exactly the batches of `fit(seed=seeds[r])`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pmilab.losses import batch_log_counts, contrastive_loss, population_loss, table_infonce
from pmilab.training.config import FitConfig


class Batches:
    """Fresh i.i.d. pairs each step, from seeds drawn by a generator seeded with `seed`."""

    def __init__(self, dist, cfg: FitConfig, seed: int, device, dtype) -> None:
        self.dist, self.n, self.device, self.dtype = dist, cfg.batch_size, device, dtype
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self) -> tuple[Tensor, Tensor]:
        seed = int(torch.randint(0, 2**62, (1,), generator=self.g))
        x, y = self.dist.sample(self.n, seed=seed)
        if not self.dist.discrete:
            x, y = x.to(self.dtype), y.to(self.dtype)
        return x.to(self.device), y.to(self.device)


@dataclass
class StepInputs:
    """`draw()` -> (shared, per_replicate) tensors of one step; `loss_of(model, *inputs)`;
    `floor`: the loss's exact minimum where it is known (the population loss: −I(X;Y), T1a)."""

    draw: Callable[[], tuple[tuple, tuple]]
    loss_of: Callable
    floor: float | None = None


def step_inputs(dist, cfg: FitConfig, seeds: list[int], device, dtype) -> StepInputs:
    objective = cfg.objective
    if cfg.population:
        joint = dist.table.to(device=device, dtype=dtype)
        ix, iy = torch.arange(dist.nx, device=device), torch.arange(dist.ny, device=device)
        shared = (ix, iy, joint)

        def population(model, ix, iy, joint):
            return population_loss(model.logit_matrix(ix, iy), joint, objective)

        floor = -float(dist.mutual_information())  # both objectives' minimum (T1a)
        return StepInputs(lambda: (shared, ()), population, floor)
    streams = [Batches(dist, cfg, s, device, dtype) for s in seeds]
    if dist.discrete and dist.nx * dist.ny <= cfg.batch_size**2:
        # same loss as on the N×N matrix, computed on the nx×ny table (losses.table_infonce)
        ix, iy = torch.arange(dist.nx, device=device), torch.arange(dist.ny, device=device)

        def draw_table():
            xs, ys, cxs, cys = [], [], [], []
            for batches in streams:
                x, y = batches()
                cx, cy = batch_log_counts(x, y, dist.nx, dist.ny, dtype)
                xs.append(x), ys.append(y), cxs.append(cx), cys.append(cy)
            return (ix, iy), tuple(torch.stack(v) for v in (xs, ys, cxs, cys))

        def table(model, ix, iy, x, y, log_cx, log_cy):
            logits = model.logit_matrix(ix, iy)
            return table_infonce(logits, x, y, objective, log_counts=(log_cx, log_cy))

        return StepInputs(draw_table, table)

    def draw_minibatch():
        pairs = [batches() for batches in streams]
        return (), (torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs]))

    def minibatch(model, x, y):
        return contrastive_loss(model.logit_matrix(x, y), objective)

    return StepInputs(draw_minibatch, minibatch)
