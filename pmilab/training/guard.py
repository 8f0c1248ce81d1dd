"""Per-seed care of a batched run: the safety checks every k steps, rollback, freezing, convergence.

Each seed (replica) is judged alone. At a check (every `check_every` steps, the last step, and a
step whose update raised), before the update: the losses since the last check, the gradients and
the parameters of every active replica must be finite. A replica that passes gets a rollback
copy of its parameters (those that produced this step's finite loss). A replica that fails is
stopped: it is restored to its last copy, frozen there (restored after every later update, so
it never moves again), and named with the first bad step. The others go on, untouched: the
losses are summed only to run one backward, and every later operation is per replica.
With `check_every=1` this is the rule of a one-seed trainer that checks every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from pmilab.training.replicas import Replicas


@dataclass
class Outcome:
    """What became of one replica: its kept history length and why it stopped, if it did."""

    kept: int = 0  # history entries that belong to the kept parameters
    stopped_at: int | None = None
    converged_at: int | None = None
    message: str = ""


@dataclass
class Guard:
    rep: Replicas
    check_every: int
    lr: float
    converge_window: int | None = None
    converge_tol: float = 0.0
    floor: float | None = None  # the loss's exact floor (-I(X;Y) on a population loss)
    floor_gap: float | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outcomes = [Outcome() for _ in range(self.rep.size)]
        self.saved = self.rep.snapshot()  # rollback copies (frozen replicas: their kept state)
        self.active = torch.ones(self.rep.size, dtype=torch.bool)
        self.since = 0  # first step not yet judged

    def is_check(self, step: int, last: int) -> bool:
        return (step + 1) % self.check_every == 0 or step == last

    def frozen(self) -> Tensor:
        return (~self.active).nonzero().flatten()

    @torch.no_grad()
    def before_update(self, step: int, hist: Tensor) -> None:
        """Judge steps since the last check; copy the parameters of every passing replica."""
        window = hist[self.since : step + 1].cpu()  # (w, R)
        loss_ok = torch.isfinite(window).all(0)
        grad_ok = self._grads_finite()
        param_ok = self.rep.finite().cpu()
        for r in self.active.nonzero().flatten().tolist():
            if not bool(loss_ok[r]):
                s = self.since + int((~torch.isfinite(window[:, r])).nonzero()[0])
                self._stop(r, s, f"the loss is {float(hist[s, r])} (not finite)", hist)
            elif not bool(grad_ok[r]) or not bool(param_ok[r]):
                what = "gradient" if bool(param_ok[r]) else "parameter"
                loss = float(hist[step, r])
                self._stop(r, step, f"a {what} is inf or nan (the loss is {loss})", hist)
        ok = self.active.nonzero().flatten()
        if len(ok):
            for p, s in zip(self.rep.leaves(), self.saved, strict=True):
                idx = ok.to(p.device)
                s.index_copy_(0, idx, p.detach().index_select(0, idx))
            for r in ok.tolist():
                self.outcomes[r].kept = step + 1
        self.since = step + 1
        self._converge(step, hist)

    @torch.no_grad()
    def after_update(self, step: int) -> None:
        """At a check: an update that left a replica's parameters non-finite stops it there."""
        finite = self.rep.finite().cpu()
        for r in self.active.nonzero().flatten().tolist():
            if not bool(finite[r]):
                self._stop(r, step, "the update made a parameter inf or nan")

    @torch.no_grad()
    def update_raised(self, step: int, hist: Tensor, error: str) -> None:
        """The update raised for every replica at once (a step size beyond the dtype)."""
        if step + 1 > self.since:
            window = hist[self.since : step + 1].cpu()
            for r in self.active.nonzero().flatten().tolist():
                bad = (~torch.isfinite(window[:, r])).nonzero()
                if len(bad):
                    s = self.since + int(bad[0])
                    self._stop(r, s, f"the loss is {float(hist[s, r])} (not finite)", hist)
        for r in self.active.nonzero().flatten().tolist():
            self._stop(r, step, f"the optimizer update overflowed ({error})", hist)

    @torch.no_grad()
    def hold_frozen(self) -> None:
        """Put every frozen replica back at its kept parameters (after each update)."""
        frozen = self.frozen()
        if len(frozen):
            self.rep.restore(self.saved, frozen)

    def _grads_finite(self) -> Tensor:
        ok = torch.ones(self.rep.size, dtype=torch.bool)
        for p in self.rep.leaves():
            if p.grad is not None:
                ok &= torch.isfinite(p.grad.reshape(self.rep.size, -1)).all(dim=1).cpu()
        return ok

    def _stop(self, r: int, step: int, what: str, hist: Tensor | None = None) -> None:
        out = self.outcomes[r]
        if out.kept == 0 and hist is not None and bool(torch.isfinite(hist[0, r])):
            out.kept = 1  # the initial parameters produced the finite loss of step 0
        kept = (
            "the initial parameters"
            if out.kept == 0
            else f"the parameters of step {out.kept - 1} (the last check with a finite loss; "
            f"checks run every {self.check_every} steps)"
        )
        out.stopped_at = step
        out.message = (
            f"training stopped at step {step}: {what}; kept {kept}. "
            f"Lower the learning rate (lr={self.lr:g})."
        )
        self.active[r] = False
        self.rep.restore(self.saved, torch.tensor([r]))

    def _converge(self, step: int, hist: Tensor) -> None:
        if self.floor_gap is not None:  # within floor_gap of the exact floor: done
            gap = hist[step].cpu().double() - self.floor
            for r in self.active.nonzero().flatten().tolist():
                if float(gap[r]) < self.floor_gap:
                    self.outcomes[r].converged_at = step
                    self.active[r] = False  # frozen at this step's copy
        w = self.converge_window
        if w is None or step + 1 < w:
            return
        recent = hist[step + 1 - w : step + 1].cpu()  # (w, R)
        moved = recent.max(0).values - recent.min(0).values
        for r in self.active.nonzero().flatten().tolist():
            if float(moved[r]) < self.converge_tol:
                self.outcomes[r].converged_at = step
                self.active[r] = False  # frozen at this step's copy
