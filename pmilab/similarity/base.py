"""What every similarity head shares: shape checks and the logit-scale parameter (docs/theory.md T2, T5).

A head maps encoder outputs to logits ℓ(x, y), the quantity compared with PMI. Two entry points:
`logit_matrix(...) -> (B, C)` (every x against every y) and `paired_logits(...) -> (B,)`
(the same arguments with C == B, row i against row i). Heads know nothing of where their
tensors came from (docs/architecture.md dependency rules).
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor, nn

from pmilab.errors import InputError

# CLIP initialises the logit scale at 1/0.07 and caps it at 100 (open_clip); we keep both defaults.
DEFAULT_TEMPERATURE = 0.07
DEFAULT_LOGIT_CAP = 100.0
# Below this many (B·C·M·N·d) elements the point-set heads call the materialising reference in
# `_pairwise` (measured ~10x faster than the chunked kernel on a 24x20 table with M = 4, d = 4:
# the recompute machinery costs more than it saves); above it, the memory-bounded kernel.
SMALL_PAIRWISE_ELEMENTS = 2**18


def use_reference(px: Tensor, py: Tensor) -> bool:
    """True when the (B, C, M, N, d) difference tensor is small enough to materialise."""
    b, m, d = px.shape
    c, n, _ = py.shape
    return b * c * m * n * d <= SMALL_PAIRWISE_ELEMENTS


def under_vmap(t: Tensor) -> bool:
    """True for a tensor seen inside `torch.func.vmap` (the replicate trainer): its values are
    per replica, so a check that reads them (`.item()`, `int(t.min())`) cannot run there. The
    trainer's own inputs are valid by construction; the checks still run on every direct call."""
    return bool(torch._C._functorch.is_batchedtensor(t))


def check_positive(value: float, name: str) -> float:
    """`value` as a float, rejecting non-positive or non-finite numbers at the boundary."""
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _check_tensors(named: dict[str, Tensor]) -> None:
    """Every input is a floating tensor, and all share one dtype (naming the odd one out)."""
    for name, t in named.items():
        if not torch.is_tensor(t):
            raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise InputError(f"{name} must be a floating tensor, got dtype {_name(t.dtype)}")
    (first, t0), *rest = named.items()
    for name, t in rest:
        if t.dtype != t0.dtype:
            raise InputError(
                f"{name} has dtype {_name(t.dtype)} but {first} has {_name(t0.dtype)}; pass every input of a "
                "similarity head in one dtype (e.g. .double() or .float() on all of them)"
            )


def check_vectors(zx: Tensor, zy: Tensor, paired: bool) -> None:
    """zx (B, d) and zy (C, d) of one floating dtype; C == B when paired."""
    _check_tensors({"zx": zx, "zy": zy})
    if zx.dim() != 2 or zy.dim() != 2:
        raise InputError(
            f"expected zx (B, d) and zy (C, d), got shapes {tuple(zx.shape)} and {tuple(zy.shape)}"
        )
    if zx.shape[1] != zy.shape[1]:
        raise InputError(f"feature dims differ: zx has d={zx.shape[1]}, zy has d={zy.shape[1]}")
    if paired and zx.shape[0] != zy.shape[0]:
        raise InputError(
            f"paired logits need equal batch sizes, got {zx.shape[0]} and {zy.shape[0]}"
        )


def check_point_sets(px: Tensor, wx: Tensor, py: Tensor, wy: Tensor, paired: bool) -> None:
    """px (B, M, d), wx (B, M), py (C, N, d), wy (C, N) of one floating dtype; C == B when paired."""
    _check_tensors({"px": px, "wx": wx, "py": py, "wy": wy})
    if px.dim() != 3 or py.dim() != 3:
        raise InputError(
            f"points must be (B, M, d) and (C, N, d), got {tuple(px.shape)} and {tuple(py.shape)}"
        )
    if wx.shape != px.shape[:2] or wy.shape != py.shape[:2]:
        raise InputError(
            f"weights must be (B, M) and (C, N) matching the points; got wx {tuple(wx.shape)} for "
            f"px {tuple(px.shape)} and wy {tuple(wy.shape)} for py {tuple(py.shape)}"
        )
    if px.shape[2] != py.shape[2]:
        raise InputError(f"point dims differ: px has d={px.shape[2]}, py has d={py.shape[2]}")
    if paired and px.shape[0] != py.shape[0]:
        raise InputError(
            f"paired logits need equal batch sizes, got {px.shape[0]} and {py.shape[0]}"
        )


class LogitScale(nn.Module):
    """The learnable logit scale t = exp(log_t) of CLIP-style heads (docs/theory.md T5).

    Initialised at 1/temperature and clamped to t <= cap after each optimizer step (open_clip
    style: `clamp_()` is called by the trainer, the forward pass never clips). The cap matters:
    a cosine logit satisfies |ℓ| <= t, so a PMI range wider than 2·cap cannot be reached (T5).
    With `learnable=False` the scale is a fixed buffer.
    """

    def __init__(
        self,
        temperature: float = DEFAULT_TEMPERATURE,
        cap: float | None = DEFAULT_LOGIT_CAP,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        temperature = check_positive(temperature, "temperature")
        self.cap = None if cap is None else check_positive(cap, "logit_cap")
        init = torch.tensor(math.log(1.0 / temperature))
        if self.cap is not None:
            init = init.clamp(max=math.log(self.cap))
        if learnable:
            self.log_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_scale", init)

    def forward(self) -> Tensor:
        return self.log_scale.exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        if self.cap is not None:
            self.log_scale.clamp_(max=math.log(self.cap))


class SimilarityHead(nn.Module):
    """Base class: subclasses implement `logit_matrix`, `paired_logits` and the classmethod
    `head_inputs(dim, points)` (what they need from the encoders: `pmilab.interfaces`).

    The other methods of the `pmilab.interfaces.Head` contract have their defaults here.
    `abstractmethod` marks the two a subclass must write (the registry reports a head that
    leaves them as "has no logit_matrix"); nn.Module is no ABC, so nothing else changes."""

    @abstractmethod
    def logit_matrix(self, *args: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @abstractmethod
    def paired_logits(self, *args: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, *args: Tensor) -> Tensor:
        return self.logit_matrix(*args)

    def clamp_(self) -> None:
        """Project constrained parameters back after an optimizer step (default: nothing)."""

    def redraw(self, generator: torch.Generator | None = None) -> None:
        """Draw fresh random features for the next training step (default: nothing)."""

    def batch_refusal(self) -> str | None:
        """Why this head cannot train several seeds as one vmapped batch, or None if it can
        (`training.replicas`). A head whose forward reads per-replicate state that is not a
        parameter or buffer (e.g. random features redrawn each step) returns the reason."""
        return None

    def no_decay_parameters(self) -> list[nn.Parameter]:
        """Scale, bias and bandwidth parameters, which the trainer keeps out of weight decay."""
        return list(self.parameters())
