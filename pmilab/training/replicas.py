"""Replicas: R models of one architecture trained as one computation (a leading replicate dim).

Every parameter and buffer of the R models is stacked into one (R, ...) leaf
(`torch.func.stack_module_state`), and each model's own parameters are re-pointed at its slice
of the stack (`p.data = stacked[r]`), so a model's methods (`head.clamp_()`, evaluation) see and
change its replicate in place. The forward pass is `torch.func.functional_call` of one template
model, vmapped over the replicate dim (`torch.func.vmap`), for every R including 1: a vmapped
matmul is a batched GEMM whose last bits can differ from a plain one (MLP encoders), so one
path for every R is what makes a replica's numbers independent of how many others share its
batch. AdamW is elementwise, so one optimizer over the stacked leaves updates each replicate
exactly as it would update that model alone: on CPU, R seeds batched equal R one-seed runs
bit for bit (tests/test_replicas.py), whatever R and whichever seeds share the batch.

A head that cannot be batched says so: `SimilarityHead.batch_refusal()` returns the reason (a
WPSE head with random features redraws them per replicate), and an operation without a vmap
rule is reported as one line naming the head, not as a functorch traceback.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from pmilab.errors import InputError
from pmilab.runtime.optim import decay_names


class _LossModule(nn.Module):
    """`loss_of(model, *inputs)` as a module, so `functional_call` can swap the model's state."""

    def __init__(self, model: nn.Module, loss_of: Callable) -> None:
        super().__init__()
        self.model = model
        self.loss_of = loss_of

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.loss_of(self.model, *inputs)


class Replicas:
    """R models (built from R seeds) as stacked leaves; `losses(...)` is the (R,) loss vector."""

    def __init__(self, models: list[nn.Module], loss_of: Callable) -> None:
        self.models = models
        self.size = len(models)
        if self.size > 1:
            reasons = {m.head.batch_refusal() for m in models if hasattr(m, "head")} - {None}
            if reasons:
                raise InputError(
                    f"these seeds cannot be trained as one batch: {sorted(reasons)[0]}; "
                    "train them one at a time (seed=s)"
                )
        self.params, self.buffers = stack_module_state(models)
        for r, m in enumerate(models):  # each model now views its slice of the stack
            for name, p in m.named_parameters():
                p.data = self.params[name].data[r]
            for name in self.buffers:
                _set_buffer(m, name, self.buffers[name][r])
        self._module = _LossModule(models[0], loss_of)
        self._state = ({f"model.{k}": v for k, v in self.params.items()},)
        self._state += ({f"model.{k}": v for k, v in self.buffers.items()},)
        self._head_name = type(getattr(models[0], "head", models[0])).__name__

    def leaves(self) -> list[Tensor]:
        return list(self.params.values())

    def optimizer_groups(self, model: nn.Module, no_decay, weight_decay: float) -> list[dict]:
        """AdamW groups of the stacked leaves under the one decay rule (`runtime.optim`),
        decided on one replicate's parameters (the stack adds a dim to every tensor)."""
        decayed = decay_names(model, no_decay)
        groups = [
            {
                "params": [p for n, p in self.params.items() if n in decayed],
                "weight_decay": weight_decay,
            }
        ]
        rest = [p for n, p in self.params.items() if n not in decayed]
        if rest:
            groups.append({"params": rest, "weight_decay": 0.0})
        return groups

    def losses(self, shared: tuple, per_replicate: tuple) -> Tensor:
        """(R,) losses: `shared` inputs go to every replicate, `per_replicate` ones are (R, ...)."""

        def one(params, buffers, *rep):
            return functional_call(self._module, (params, buffers), shared + rep)

        in_dims = (0, 0) + (0,) * len(per_replicate)
        try:
            return vmap(one, in_dims=in_dims)(*self._state, *per_replicate)
        except RuntimeError as e:
            if "vmap" not in str(e) and "Batching" not in str(e) and "batched" not in str(e):
                raise
            line = str(e).strip().splitlines()[0]
            raise InputError(
                f"the {self._head_name} head cannot be trained as a batch of seeds "
                f"(torch.func.vmap: {line}); train seeds one at a time (seed=s)"
            ) from None

    @torch.no_grad()
    def finite(self) -> Tensor:
        """(R,) bool: every parameter of the replicate is finite."""
        ok = torch.ones(self.size, dtype=torch.bool, device=self.leaves()[0].device)
        for p in self.leaves():
            ok &= torch.isfinite(p.reshape(self.size, -1)).all(dim=1)
        return ok

    @torch.no_grad()
    def snapshot(self) -> list[Tensor]:
        return [p.detach().clone() for p in self.leaves()]

    @torch.no_grad()
    def restore(self, saved: list[Tensor], which: Tensor) -> None:
        """Copy the replicates `which` (int64 indices) back from a snapshot."""
        for p, s in zip(self.leaves(), saved, strict=True):
            idx = which.to(p.device)
            p.index_copy_(0, idx, s.index_select(0, idx))

    def detach_models(self) -> list[nn.Module]:
        """The R models, each with its own storage again (no view of the stack)."""
        with torch.no_grad():
            for m in self.models:
                for p in m.parameters():
                    p.data = p.data.clone()
                for name, b in list(m.named_buffers()):
                    _set_buffer(m, name, b.clone())
        return self.models


def _set_buffer(model: nn.Module, name: str, value: Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    module._buffers[leaf] = value
