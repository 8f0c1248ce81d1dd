"""Contrastive losses on logit matrices, and the exact population loss (docs/theory.md T1, T5).

Stateless functions in the open_clip spirit: logits go in, a scalar comes out. Everything is
computed with logsumexp (log domain). Rows of a logit matrix are x's, columns y's, and the
positive pairs sit on the diagonal.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_square(logits: Tensor) -> int:
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1] or logits.shape[0] < 1:
        raise ValueError(f"expected a square (N, N) logit matrix, got {tuple(logits.shape)}")
    return logits.shape[0]


def one_sided_infonce(logits: Tensor) -> Tensor:
    """(1/N) Σ_i [−L_ii + logsumexp_j L_ij]: the x→y InfoNCE loss of an (N, N) matrix (T1c)."""
    n = _check_square(logits)
    target = torch.arange(n, device=logits.device)
    return F.cross_entropy(logits, target)


def infonce_two_way(rows: Tensor, cols: Tensor | None = None, offset: int = 0) -> Tensor:
    """The symmetric InfoNCE rule, from its two directions (the one owner of the rule).

    rows (B, C): x_i against every y; cols (B, C): y_i against every x (None: rows.T, for a
    square matrix). The positive of row i sits in column `offset + i` of both. The loss is the
    mean of the two cross-entropies, ½ CE(rows) + ½ CE(cols). `symmetric_infonce(L)` is
    `infonce_two_way(L)`; under DDP each rank passes its local slab (its B images against all
    texts, its B texts against all images) with offset rank·B (`runtime.distributed`).

    rows.T is taken after the first cross-entropy: the order in which autograd accumulates the
    two gradients fixes the memory layout of dL/dL, and so the last bits of every later GEMM.
    """
    target = torch.arange(rows.shape[0], device=rows.device) + offset
    first = F.cross_entropy(rows, target)
    return 0.5 * (first + F.cross_entropy(rows.T if cols is None else cols, target))


def symmetric_infonce(logits: Tensor) -> Tensor:
    """The CLIP loss: the mean of the x→y and y→x InfoNCE losses of an (N, N) matrix (T1).

    A stack (..., N, N) of K independent batches gives the (...,) loss of each batch: the same
    two cross-entropies, vectorised over the batches (T5c's expected loss_N).
    """
    if logits.dim() > 2:
        n = logits.shape[-1]
        flat = logits.reshape(-1, *logits.shape[-2:])  # (K, N, N)
        _check_square(flat[0])
        target = torch.arange(n, device=logits.device).expand(flat.shape[0], n)  # (K, N)
        # cross_entropy takes classes on dim 1: (K, j, i) for x_i -> y_j, (K, i, j) for y_j -> x_i
        rows = F.cross_entropy(flat.transpose(1, 2), target, reduction="none").mean(1)
        cols = F.cross_entropy(flat, target, reduction="none").mean(1)
        return (0.5 * (rows + cols)).reshape(logits.shape[:-2])
    _check_square(logits)
    return infonce_two_way(logits)


def infonce_mi_estimate(logits: Tensor) -> Tensor:
    """log N − one-sided InfoNCE: a lower-bound estimate of I(X;Y), capped at log N (T1c, T5)."""
    n = _check_square(logits)
    return math.log(n) - one_sided_infonce(logits)


def _log_marginals(joint: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    px, py = joint.sum(1), joint.sum(0)
    return px, py, px.log(), py.log()


def population_loss(
    logit_table: Tensor, joint_table: Tensor, objective: str = "symmetric"
) -> Tensor:
    """The N → ∞ limit L∞(ℓ) of InfoNCE (log N removed), exact for a discrete joint (T1a).

        L∞ = −E_p ℓ + ½ E_{p(x)} log E_{p(y)} e^ℓ + ½ E_{p(y)} log E_{p(x)} e^ℓ

    logit_table, joint_table: (nx, ny); the joint sums to 1. With objective="one_sided" only the
    x→y term is kept, with weight 1: its minimisers are PMI + c(x), not PMI + C (T1a).
    Its minimum over ℓ is −I(X;Y) for both objectives.
    """
    if logit_table.shape != joint_table.shape or logit_table.dim() != 2:
        raise ValueError(
            f"logit table {tuple(logit_table.shape)} and joint {tuple(joint_table.shape)} must be "
            "the same (nx, ny) shape"
        )
    joint = joint_table.to(logit_table)
    px, py, log_px, log_py = _log_marginals(joint)
    # cells outside the support contribute 0·ℓ; masking keeps -inf logits from making 0·inf.
    pos = torch.where(joint > 0, joint * logit_table, torch.zeros_like(logit_table)).sum()
    row = torch.logsumexp(logit_table + log_py[None, :], dim=1)  # (nx,) log E_{p(y)} e^ℓ
    row_term = torch.where(px > 0, px * row, torch.zeros_like(px)).sum()
    if objective == "one_sided":
        return -pos + row_term
    if objective != "symmetric":
        raise ValueError(f"objective must be 'symmetric' or 'one_sided', got {objective!r}")
    col = torch.logsumexp(logit_table + log_px[:, None], dim=0)  # (ny,) log E_{p(x)} e^ℓ
    col_term = torch.where(py > 0, py * col, torch.zeros_like(py)).sum()
    return -pos + 0.5 * row_term + 0.5 * col_term


def batch_log_counts(x: Tensor, y: Tensor, nx: int, ny: int, dtype) -> tuple[Tensor, Tensor]:
    """(nx,), (ny,) log counts of each state in a batch of discrete pairs (-inf when absent)."""
    log_cx = torch.bincount(x, minlength=nx).to(dtype).log()
    log_cy = torch.bincount(y, minlength=ny).to(dtype).log()
    return log_cx, log_cy


def table_infonce(
    logit_table: Tensor,
    x: Tensor,
    y: Tensor,
    objective: str = "symmetric",
    log_counts: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """InfoNCE of the batch of N pairs (x_i, y_i) of discrete states whose logit matrix is
    L = logit_table[x][:, y], without forming the N×N matrix.

    Duplicate states are grouped: logsumexp_j L_ij = logsumexp_y (ℓ(x_i, y) + log c_y) with c_y
    the count of y in the batch, and the same for columns. Equal to
    `symmetric_infonce(logit_table[x][:, y])` (or one-sided) at cost O(N + nx·ny) instead of N².
    logit_table (nx, ny); x, y (N,) int64. `log_counts` = `batch_log_counts(x, y, ...)`, when
    the caller has them (the replicate trainer counts outside vmap: bincount has no vmap rule).
    """
    nx, ny = logit_table.shape
    if log_counts is None:
        log_counts = batch_log_counts(x, y, nx, ny, logit_table.dtype)
    log_cx, log_cy = log_counts  # (nx,), (ny,)
    pos = logit_table[x, y]  # (N,)
    row = torch.logsumexp(logit_table + log_cy[None, :], dim=1)[x]  # (N,)
    x_to_y = (row - pos).mean()
    if objective == "one_sided":
        return x_to_y
    if objective != "symmetric":
        raise ValueError(f"objective must be 'symmetric' or 'one_sided', got {objective!r}")
    col = torch.logsumexp(logit_table + log_cx[:, None], dim=0)[y]  # (N,)
    return 0.5 * x_to_y + 0.5 * (col - pos).mean()


def contrastive_loss(logits: Tensor, objective: str = "symmetric") -> Tensor:
    """`symmetric_infonce` or `one_sided_infonce` by name."""
    if objective == "symmetric":
        return symmetric_infonce(logits)
    if objective == "one_sided":
        return one_sided_infonce(logits)
    raise ValueError(f"objective must be 'symmetric' or 'one_sided', got {objective!r}")
