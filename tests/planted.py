"""A planted fault for the trainer's tests: an optimizer whose n-th step poisons a parameter."""

from __future__ import annotations


def poison_optimizer(monkeypatch, at_call: int, replica: int = 0) -> None:
    """After its `at_call`-th step, the optimizer `fit` builds leaves replica `replica`'s slice of
    its first parameter (over all groups) at inf (a one-seed run has the one replica 0)."""
    import pmilab.training.loop as loop

    real = loop.adamw_groups

    def poisoned(*args, **kwargs):
        opt = real(*args, **kwargs)
        step, calls = opt.step, []

        def poisoned_step():
            step()
            calls.append(1)
            if len(calls) == at_call:
                first = next(p for g in opt.param_groups for p in g["params"])
                first.data[replica].fill_(float("inf"))

        opt.step = poisoned_step
        return opt

    monkeypatch.setattr(loop, "adamw_groups", poisoned)
