"""What one `fit` needs in memory, estimated from its config before anything is built.

The limit and the refusal belong to `pmilab.limits` (the one owner of the rule); this module
only estimates a fit's bytes, per replica and for R replicas trained as one batch.
"""

from __future__ import annotations

from pmilab import registry
from pmilab.interfaces import HeadInputs
from pmilab.limits import check_bytes
from pmilab.training.model import head_inputs

# ---- the estimate of a `fit` ----------------------------------------------------------------
# Copies of every parameter: the weights, their gradients, AdamW's two moments and the guard's
# rollback copy (`training.guard`).
PARAM_COPIES = 5
# Copies of an (N, N) or (nx, ny) logit matrix a step holds: the logits, the loss's softmax /
# logsumexp temporaries over both axes, and their gradients.
LOGIT_COPIES = 6
# Bytes one draw of a distribution's `sample` holds, for distributions that do not say
# (`draw_bytes`), and of one pair of a continuous joint's `pmi_matrix` (`pair_bytes`).
DEFAULT_DRAW_BYTES = 64
DEFAULT_PAIR_BYTES = 48
F64 = 8


def _widths(inputs: HeadInputs) -> int:
    """Numbers an encoder emits per input: D (a vector), M·(d+1) (a point set), none (raw
    indices), as the head declares (`HeadInputs.width`)."""
    return inputs.width


def _mlp_layers(in_dim: int, out: int, cfg) -> list[int]:
    """The widths an MLP encoder goes through: (quadratic) features, hidden layers, output."""
    first = in_dim + (in_dim * (in_dim + 1) // 2 if cfg.features == "quadratic" else 0)
    return [first, *cfg.hidden, out]


def _mlp_params(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))


def _param_count(dist, cfg, inputs: HeadInputs) -> int:
    """Parameters of both encoders and the head (the head's scalars are negligible; a head on
    raw indices counts a value per pair of states, as the tabular head holds)."""
    out = _widths(inputs)
    if dist.discrete:
        head = dist.nx * dist.ny if inputs.kind == "indices" else 0
        return (dist.nx + dist.ny) * out + head
    return sum(_mlp_params(_mlp_layers(d, out, cfg)) for d in (dist.dim_x, dist.dim_y))


def _activations_per_input(dist, cfg, inputs: HeadInputs) -> int:
    """Numbers one continuous input keeps for the backward pass (each layer before and after
    its GELU); a discrete input keeps its row of the table."""
    if dist.discrete:
        return _widths(inputs)
    widths = [_mlp_layers(d, _widths(inputs), cfg) for d in (dist.dim_x, dist.dim_y)]
    return max(w[0] + 2 * sum(w[1:-1]) + w[-1] for w in widths)


def _train_step_bytes(dist, cfg, inputs: HeadInputs, item: int) -> float:
    """One training step: the batch drawn, the encodings and the logits with their copies.

    The point-set heads never hold their (B, C, M, N) scores (`similarity._pairwise`: tiles of
    at most 2**24 scores), so their scores count as the (B, C) logits plus a tile.
    """
    b = cfg.batch_size
    if dist.discrete:
        table = (dist.nx + dist.ny) * _widths(inputs) * item * 2 + dist.nx * dist.ny * (
            LOGIT_COPIES * item
        )
        if cfg.population:  # the exact loss on the table: no batch
            return table
        if dist.nx * dist.ny <= b * b:  # the batch scored on the nx×ny table (training.inputs)
            return b * (getattr(dist, "draw_bytes", DEFAULT_DRAW_BYTES) + 4 * F64) + table
    draws = b * getattr(dist, "draw_bytes", DEFAULT_DRAW_BYTES)
    encodings = 2 * b * _activations_per_input(dist, cfg, inputs) * item * 2
    tile = (1 << 24) * item if inputs.kind == "points" else 0
    return draws + encodings + b * b * LOGIT_COPIES * item + tile


def _eval_bytes(dist, cfg, item: int) -> float:
    """The evaluation: `eval_batches` held-out batches of `batch_size` (mi_infonce; (N, N)
    matrices for continuous joints, stacked and copied to float64) and, for continuous joints,
    the eval_samples × eval_samples grid of logits and exact PMI."""
    n, k = cfg.batch_size, cfg.eval_batches
    draws = n * k * getattr(dist, "draw_bytes", DEFAULT_DRAW_BYTES)
    if dist.discrete:  # scored on the table: a few (K, N) gathers, no (N, N) matrix
        return draws + n * k * 4 * F64 + dist.nx * dist.ny * F64 * 8
    grid = cfg.eval_samples**2 * (getattr(dist, "pair_bytes", DEFAULT_PAIR_BYTES) + 4 * F64)
    return draws + k * n * n * (item + 2 * F64) + grid


def fit_bytes(dist, cfg, replicas: int = 1) -> float:
    """A rough upper estimate of the bytes `fit(dist, cfg)` needs at its peak for `replicas`
    seeds trained as one batch: PARAM_COPIES copies of the parameters (encoder tables are
    (nx + ny)·M·(d+1) numbers for the point-set heads) and a training step, both per replica,
    or the evaluation (one replica at a time), whichever is larger."""
    item = F64 if cfg.dtype == "float64" else 4
    inputs = head_inputs(cfg, dist)
    params = PARAM_COPIES * _param_count(dist, cfg, inputs) * item
    step = _train_step_bytes(dist, cfg, inputs, item)
    return max(replicas * (params + step), params + _eval_bytes(dist, cfg, item))


def check_fit(dist, cfg, replicas: int = 1) -> None:
    """Refuse a `fit` whose estimate (`fit_bytes`) is above the limit, before building it.
    This is the first look `fit` takes at the joint's sizes, so the joint contract is checked
    here first (one line naming what a joint object lacks)."""
    registry.check_joint(dist)
    point_set = head_inputs(cfg, dist).kind == "points"
    sizes = f"dim={cfg.dim}, " + (f"points={cfg.points}, " if point_set else "")
    check_bytes(
        fit_bytes(dist, cfg, replicas),
        f"fit with similarity={registry.head_spec(cfg.similarity)}, {sizes}"
        f"batch_size={cfg.batch_size}" + (f", {replicas} seeds" if replicas > 1 else ""),
        hint=f"lower dim, {'points, ' if point_set else ''}batch_size or eval_samples",
    )
