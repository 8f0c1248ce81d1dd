"""L-BFGS for R independent problems at once: one batched evaluation, each replicate its own search.

The exact population losses (T1, T2, T3, T5 on discrete tables) are deterministic and smooth, and
those claims are about the optimum, not the path, so a quasi-Newton method is fair there
(issue 22). `torch.optim.LBFGS` treats every parameter as one vector: on the replicate trainer's
stacked leaves it would couple the seeds through one line search and one curvature history.
Here every quantity is per replicate:
- the leaves are (R, ...) tensors; a replicate's vector is its row of the flattened (R, P) view;
- the two-loop recursion (Nocedal and Wright, Algorithm 7.4) runs on (R, P) rows with (R,) dot
  products, over the last `history` curvature pairs of each replicate; a pair whose s·y is not
  positive is not kept (that replicate's slot is marked empty);
- the step length is a backtracking Armijo search per replicate: every trial point of every
  replicate is evaluated in one batched call, a replicate whose sufficient decrease holds keeps
  its step, the others halve theirs;
- a replicate whose direction is not a descent direction restarts from the gradient; one whose
  search fails (no decrease after `max_backtracks` halvings) stays where it is and is marked
  `stalled` (its loss cannot be lowered at this precision: converged, for the trainer).
No reduction mixes replicates, so a replicate's iterates do not depend on which others share the
batch (tests/runtime/test_lbfgs.py checks R seeds against one at a time, bit for bit on CPU).
The dot products run in float64 (the iterates stay in the leaves' dtype).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class BatchedLBFGS:
    """Per-replicate L-BFGS over stacked leaves (every leaf's dim 0 is the replicate).

    closure(): evaluates the (R,) losses at the leaves' current values, fills every leaf's
    .grad (e.g. `losses.sum().backward()` after zeroing), and returns the losses (detached).
    `step(closure)` performs one iteration and returns the (R,) losses at the new point.
    `lr` scales the first trial step of every search (1 is the quasi-Newton step).
    """

    def __init__(
        self,
        leaves: list[Tensor],
        history: int = 10,
        lr: float = 1.0,
        c1: float = 1e-4,
        max_backtracks: int = 30,
    ) -> None:
        self.leaves = leaves
        self.size = leaves[0].shape[0]
        self.history, self.lr, self.c1, self.max_backtracks = history, lr, c1, max_backtracks
        self.s: list[Tensor] = []  # (R, P) steps, newest last
        self.y: list[Tensor] = []  # (R, P) gradient changes
        self.rho: list[Tensor] = []  # (R,) float64: 1/(s·y), 0 where the pair is not kept
        self.loss: Tensor | None = None  # (R,) at the current point
        self.grad: Tensor | None = None  # (R, P) at the current point
        self.stalled = torch.zeros(self.size, dtype=torch.bool)
        self.iterations = 0

    def _flat_grad(self) -> Tensor:
        parts = []
        for p in self.leaves:
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            parts.append(g.detach().reshape(self.size, -1))
        return torch.cat(parts, 1)

    @torch.no_grad()
    def _move(self, step: Tensor) -> None:
        """Add the (R, P) `step` to the leaves."""
        at = 0
        for p in self.leaves:
            n = p[0].numel()
            p.add_(step[:, at : at + n].reshape(p.shape).to(p.dtype))
            at += n

    def _direction(self, g: Tensor) -> Tensor:
        """-H g by the two-loop recursion, per replicate (float64 dots)."""
        q = g.double()
        alphas = []
        for s, y, rho in zip(reversed(self.s), reversed(self.y), reversed(self.rho), strict=True):
            a = rho * (s.double() * q).sum(1)
            q = q - a[:, None] * y.double()
            alphas.append(a)
        gamma = torch.ones(self.size, dtype=torch.float64)  # H0 = gamma I, Nocedal-Wright 7.20
        found = torch.zeros(self.size, dtype=torch.bool)
        for y, rho in zip(reversed(self.y), reversed(self.rho), strict=True):
            yy = (y.double() * y.double()).sum(1)
            take = (rho > 0) & ~found & (yy > 0)  # each replicate's newest kept pair
            gamma = torch.where(take, 1.0 / (rho * torch.where(take, yy, 1.0)), gamma)
            found |= take
        r = gamma[:, None] * q
        pairs = zip(self.s, self.y, self.rho, strict=True)
        for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
            b = rho * (y.double() * r).sum(1)
            r = r + (a - b)[:, None] * s.double()
        return -r

    def evaluate(self, closure: Callable[[], Tensor]) -> Tensor:
        """The (R,) losses at the current point (evaluated once, then kept until a step)."""
        if self.loss is None:
            with torch.enable_grad():
                self.loss = closure().detach()
            self.grad = self._flat_grad()
        return self.loss

    def moved_outside(self) -> None:
        """The leaves were changed by someone else (a clamp): evaluate again before a step."""
        self.loss = self.grad = None

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        f = self.evaluate(closure)
        g = self.grad
        d = self._direction(g)
        gd = (g.double() * d).sum(1)
        restart = ~(gd < 0)  # not a descent direction (or NaN): steepest descent, history reset
        if bool(restart.any()):
            d = torch.where(restart[:, None], -g.double(), d)
            gd = torch.where(restart, -(g.double() ** 2).sum(1), gd)
            for rho in self.rho:
                rho.masked_fill_(restart, 0.0)
        t = torch.full((self.size,), self.lr, dtype=torch.float64)
        if not self.s:  # first iteration: the gradient's scale is unknown (torch.optim.LBFGS)
            t = t * torch.clamp(1.0 / g.double().abs().sum(1), max=1.0)
        t = torch.where(self.stalled, 0.0, t)
        done = self.stalled.clone()
        moved = torch.zeros_like(d)
        for _ in range(self.max_backtracks + 1):
            trial = t[:, None] * d
            self._move(trial - moved)
            moved = trial
            with torch.enable_grad():
                f_new = closure().detach()
            ok = torch.isfinite(f_new) & (f_new.double() <= f.double() + self.c1 * t * gd)
            done = done | ok
            if bool(done.all()):
                break
            t = torch.where(done, t, t / 2)
        failed = ~done
        if bool(failed.any()):  # no decrease found: stay at the current point
            self.stalled |= failed
            back = torch.where(failed[:, None], moved, torch.zeros_like(moved))
            self._move(-back)
            moved = moved - back
            with torch.enable_grad():
                f_new = closure().detach()
        g_new = self._flat_grad()
        s, y = moved.to(g.dtype), g_new - g
        sy = (s.double() * y.double()).sum(1)
        rho = torch.where(sy > 1e-300, 1.0 / sy, torch.zeros_like(sy))
        self.s.append(s)
        self.y.append(y)
        self.rho.append(rho)
        if len(self.s) > self.history:
            self.s.pop(0), self.y.pop(0), self.rho.pop(0)
        self.loss, self.grad = f_new, g_new
        self.iterations += 1
        return f_new
