"""T5's tasks (docs/theory.md T5): a cosine head under a logit-scale cap, and a tabular head
trained to convergence on the expected loss at batch size N.

- `cap_head` / `cap_heads`: `discrete_head`'s metrics for a cosine head (learnable scale t,
  clamped to t <= cap) plus what T5 judges on it: the exact rmse floor of its cap
  (`clip_rmse_floor`), the relative error of its table plus a known random field (T5b's
  calibration pair) and, for the free head (no cap), the loss_N-optimal rescaling of its
  logits at each batch size N (T5d: `best_scale`) with its calibration pair.
- `lossn_head` / `lossn_heads`: a tabular head trained by Adam on the expected symmetric
  loss_N (`expected_lossn_grad`), and its held-out loss_N against that of ℓ = PMI (T5c), with
  the calibration pair (PMI at a temperature off by a known amount) and PMI plus noise.

Held-out batches are plain batches of N pairs drawn from the joint; `batch_terms` scores a
table on them (the loss_N of every batch and its derivatives in a logit scale α).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.discrete import DISCRETE_METRICS, _discrete_metrics
from pmilab.experiments.tasks.fitting import NAN, PROBE_SEED_OFFSET, fit_runs
from pmilab.metrics import pmi_rmse_product
from pmilab.runtime.schedule import warmup_cosine
from pmilab.stats import mean_se
from pmilab.theory import optimum as opt

# Seed offsets of the draws each task makes, apart from each other and from training seeds.
FIELD_SEED = PROBE_SEED_OFFSET + 29  # T5b's calibration field
SCALE_SEED = PROBE_SEED_OFFSET + 31  # T5d's held-out batches
NOISE_SEED = PROBE_SEED_OFFSET + 17  # T5c's control: PMI plus noise
TRAIN_SEED = 7919  # T5c's training draws: seed * TRAIN_SEED + N (held-out: + PROBE_SEED_OFFSET)
# T5c's control: PMI plus independent N(0, NOISE_SD²) noise on every cell (a fifth of the
# K=4 table's PMI spread: a clearly wrong logit; the value of the former T5c control).
NOISE_SD = 0.5


def _sizes(p: dict, key: str) -> list[int]:
    return [int(s) for s in str(p[key]).split("/") if s]


# --------------------------------------------------------------------------- floors


def clip_rmse_floor(pmi_table, px, py, cap: float) -> float:
    """The smallest `pmi_rmse_product` of any logit table confined to [-cap, cap] (T5a).

    For a fixed constant C the closest table in [-cap, cap] to PMI + C is the clipped one,
    so the floor is min over C of sqrt(E_{p(x)p(y)}[(clip(PMI + C) - PMI - C)^2]). The
    objective is convex in C (a squared distance to an interval, summed), so a bounded 1-D
    search finds it; it is 0 once cap >= R (PMI's half-range). Like `cap_floor` (the Δ
    floor), a theorem for every head whose logits obey |ℓ| <= cap.
    """
    p = torch.as_tensor(pmi_table).to(torch.float64).numpy()
    w = np.outer(torch.as_tensor(px).to(torch.float64), torch.as_tensor(py).to(torch.float64))
    keep = (w > 0) & np.isfinite(p)
    p, w = p[keep], w[keep] / w[keep].sum()
    mid = 0.5 * float(p.max() + p.min())
    if cap >= 0.5 * float(p.max() - p.min()):
        return 0.0  # clip(PMI - mid) = PMI - mid: exact, without the rounding of p + c - c

    def f(c: float) -> float:
        return float((w * (np.clip(p + c, -cap, cap) - p - c) ** 2).sum())

    span = float(p.max() - p.min()) + cap
    res = minimize_scalar(f, bounds=(-mid - span, -mid + span), method="bounded",
                          options={"xatol": 1e-12})  # fmt: skip
    return math.sqrt(min(res.fun, f(-mid)))


def scaled_field(shape, weights: torch.Tensor, rms: float, seed: int) -> torch.Tensor:
    """A N(0, 1) field over the cells, centred and scaled so that its p(x)p(y)-weighted rms is
    exactly `rms`: added to a table it moves `pmi_rmse_product` by about `rms`."""
    g = torch.Generator().manual_seed(int(seed))
    e = torch.randn(shape, generator=g, dtype=torch.float64)
    e = e - (weights * e).sum()
    return e * (rms / float((weights * e**2).sum().sqrt()))


# --------------------------------------------------------------------------- loss_N on batches


def batch_terms(table: torch.Tensor, x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0,
                derivatives: bool = False):  # fmt: skip
    """Symmetric InfoNCE of each of k held-out batches of N pairs, for logits α·table.

    table (nx, ny); x, y (k, N) state indices; the logit of x_i against y_j is
    α·table[x_i, y_j]. Returns the (k,) losses, and with `derivatives` also their first and
    second derivatives in α: for one row i, loss_i = −αL_ii + logsumexp_j αL_ij, so
    d/dα = −L_ii + E_p[L_i·] and d²/dα² = Var_p(L_i·) with p = softmax_j(αL_ij).
    Small N: the (k, N, N) logit matrices. N² > nx·ny: each batch's states are grouped, as in
    `losses.table_infonce` (logsumexp_j αL_ij = logsumexp_y (αℓ(x_i, y) + log c_y)), at cost
    k·nx·ny instead of k·N². Both give `losses.symmetric_infonce` of the same matrices.
    """
    table = table.to(torch.float64)
    k, n = x.shape
    nx, ny = table.shape
    pos = table[x, y]  # (k, N)
    if n * n <= nx * ny:
        mats = table[x[:, :, None], y[:, None, :]]  # (k, N, N)
        parts = [_moments(alpha * mats, mats, derivatives),
                 _moments(alpha * mats.transpose(1, 2), mats.transpose(1, 2), derivatives)]  # fmt: skip
        lse = [q[0].mean(1) for q in parts]
        d1 = [q[1].mean(1) for q in parts] if derivatives else None
        d2 = [q[2].mean(1) for q in parts] if derivatives else None
    else:
        rows = torch.arange(k)[:, None]
        cx = torch.zeros(k, nx, dtype=torch.float64).index_put_((rows, x), torch.ones(k, n, dtype=torch.float64), accumulate=True)  # fmt: skip
        cy = torch.zeros(k, ny, dtype=torch.float64).index_put_((rows, y), torch.ones(k, n, dtype=torch.float64), accumulate=True)  # fmt: skip
        t = table[None]  # (1, nx, ny)
        r = _moments(alpha * t + cy.log()[:, None, :], t.expand(k, nx, ny), derivatives)
        c = _moments((alpha * t + cx.log()[:, :, None]).transpose(1, 2),
                     t.transpose(1, 2).expand(k, ny, nx), derivatives)  # fmt: skip
        # each state's row (column) enters once per pair that holds it
        lse = [(cx * r[0]).sum(1) / n, (cy * c[0]).sum(1) / n]
        d1 = [(cx * r[1]).sum(1) / n, (cy * c[1]).sum(1) / n] if derivatives else None
        d2 = [(cx * r[2]).sum(1) / n, (cy * c[2]).sum(1) / n] if derivatives else None
    mean_pos = pos.mean(1)
    loss = 0.5 * (lse[0] + lse[1]) - alpha * mean_pos
    if not derivatives:
        return loss
    return loss, 0.5 * (d1[0] + d1[1]) - mean_pos, 0.5 * (d2[0] + d2[1])


def _moments(z: torch.Tensor, v: torch.Tensor, derivatives: bool):
    """logsumexp over the last axis of z, and E_p[v], Var_p(v) with p = softmax(z)."""
    lse = torch.logsumexp(z, -1)
    if not derivatives:
        return lse, None, None
    p = torch.exp(z - lse[..., None])
    p = torch.where(torch.isfinite(z), p, torch.zeros_like(p))  # absent states: weight 0
    m1 = (p * v).sum(-1)
    m2 = (p * v * v).sum(-1)
    return lse, m1, (m2 - m1 * m1).clamp_min(0.0)


def best_scale(table: torch.Tensor, x: torch.Tensor, y: torch.Tensor, tol: float = 1e-9,
               max_iter: int = 12, bounds: tuple[float, float] = (1e-3, 1e3)) -> float:  # fmt: skip
    """argmin over α of the mean held-out loss_N of α·table (T5d), by Newton's method from α = 1.

    The mean loss is convex in α (a logsumexp of functions linear in α) and smooth, so Newton
    converges quadratically from α = 1 when the optimum lies within a few tens of percent (3-4
    steps); it stops once a step is below `tol`. When it does not converge (an untrained,
    nearly constant table has a flat loss in α), a bounded Brent search over `bounds` answers.
    """
    a = 1.0
    for _ in range(max_iter):
        _, d1, d2 = batch_terms(table, x, y, a, derivatives=True)
        step = float(d1.mean()) / float(d2.mean()) if float(d2.mean()) > 0 else math.inf
        a -= step
        if not (math.isfinite(a) and bounds[0] <= a <= bounds[1]):
            break
        if abs(step) < tol:
            return a
    res = minimize_scalar(lambda b: float(batch_terms(table, x, y, b).mean()), bounds=bounds,
                          method="bounded", options={"xatol": 1e-9})  # fmt: skip
    return float(res.x)


# --------------------------------------------------------------------------- T5a, T5b, T5d


def cap_metrics(sizes: list[int]) -> list[str]:
    cols = DISCRETE_METRICS + ["cap_rmse_floor", "rel_error", "rel_near", "rel_half"]
    for n in sizes:
        cols += [f"scale_N{n}", f"scale_near_N{n}", f"scale_half_N{n}"]
    return cols


def cap_head(p: dict) -> dict:
    """One cosine head under a cap (`cap_heads` with one seed)."""
    return cap_heads([p])[0]


def cap_heads(ps: list[dict]) -> list[dict]:
    """The seeds of one cap cell, trained as one batched computation (`fit_runs`)."""
    d = make_dist(ps[0]["dist"])
    return [_cap_metrics(run, d, p) for run, p in zip(fit_runs(d, ps), ps, strict=True)]


def _cap_metrics(run, d, p: dict) -> dict:
    out = _discrete_metrics(run, p)
    pmi, table = d.pmi_table().to(torch.float64), run.logit_table()
    w = d.px[:, None] * d.py[None, :]
    sd = out["product_std"]
    cap = float(p.get("logit_cap") or 0)
    out["cap_rmse_floor"] = clip_rmse_floor(pmi, d.px, d.py, cap) if cap > 0 else 0.0
    out["rel_error"] = out["pmi_rmse_product"] / sd
    # T5b's calibration pair: the head's own table plus one random field per seed, scaled to a
    # relative size near_rel (2x the tolerance) and half_rel (0.5x)
    seed = int(p["seed"])
    for key in ("near", "half"):
        field = scaled_field(table.shape, w, float(p[f"{key}_rel"]) * sd, FIELD_SEED + seed)
        out[f"rel_{key}"] = float(pmi_rmse_product(table + field, pmi, w)) / sd
    sizes = _sizes(p, "scale_sizes")
    if cap == 0:  # T5d: the free head's temperature at every N and its calibration pair
        for n in sizes:
            k = max(8, int(p["scale_pairs"]) // n)
            x, y = d.sample(n * k, seed=SCALE_SEED + seed * TRAIN_SEED + n)
            x, y = x.view(k, n), y.view(k, n)
            out[f"scale_N{n}"] = best_scale(table, x, y)
            for key in ("near", "half"):
                shift = 1.0 + float(p[f"scale_{key}"])
                out[f"scale_{key}_N{n}"] = best_scale(table / shift, x, y)
    return {k: out.get(k, NAN) for k in cap_metrics(sizes)}


# --------------------------------------------------------------------------- T5c


LOSSN_METRICS = [
    "rel_error",
    "pmi_delta",
    "product_std",
    "lossn_pmi",
    "lossn_diff",
    "lossn_diff_se",
    "lossn_near_diff",
    "lossn_near_diff_se",
    "lossn_half_diff",
    "lossn_half_diff_se",
    "lossn_noise_diff",
    "lossn_noise_diff_se",
    "train_sets",
]


def expected_lossn_grad(table: torch.Tensor, joint: torch.Tensor, cy: torch.Tensor,
                        cx: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """An unbiased estimate of ∇ E[symmetric loss_N] of S logit tables at once (T5c).

    table (S, nx, ny); joint (nx, ny); cy (S, K, ny), cx (S, K, nx): the counts of K sets of
    N − 1 negatives each, y's drawn from p(y) and x's from p(x).
    Row i of a batch of N pairs sees its own pair (x, y) ~ p and N − 1 other y's, i.i.d. p(y)
    and independent of it; so E[loss_N] = ½ (A + B) with
        A = E_{(x,y)~p} E_{y'} softplus(log Σ_j e^{ℓ(x, y'_j)} − ℓ(x, y))
    and B the same for the columns. The pair (x, y) is integrated exactly over the joint and
    the negatives are the K drawn sets: with Z_k(x) = Σ_y c_k(y) e^{ℓ(x,y)} and
    σ = Z / (Z + e^ℓ) = sigmoid(log Z − ℓ),
        ∂A/∂ℓ(x, y) = mean_k [ −p(x,y) σ_k(x,y) + e^{ℓ(x,y)} c_k(y) Σ_y' p(x,y') σ_k(x,y') / Z_k(x) ].
    Checked against autograd in the tests.
    """
    e = table.exp()
    k = cy.shape[1]
    zr = torch.bmm(cy, e.transpose(1, 2))  # (S, K, nx)
    wr = zr[..., None] / (zr[..., None] + e[:, None]) * joint  # (S, K, nx, ny)
    ga = -wr.mean(1) + e * torch.bmm((wr.sum(-1) / zr).transpose(1, 2), cy) / k
    zc = torch.bmm(cx, e)  # (S, K, ny)
    wc = zc[:, :, None, :] / (zc[:, :, None, :] + e[:, None]) * joint
    gb = -wc.mean(1) + e * torch.bmm(cx.transpose(1, 2), wc.sum(-2) / zc) / k
    return 0.5 * (ga + gb)


def expected_lossn(table: torch.Tensor, joint: torch.Tensor, cy: torch.Tensor,
                   cx: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The (S,) estimate of E[loss_N] whose gradient `expected_lossn_grad` is (for the tests)."""
    sp = torch.nn.functional.softplus
    a = sp(torch.bmm(cy, table.exp().transpose(1, 2)).log()[..., None] - table[:, None])
    b = sp(torch.bmm(cx, table.exp()).log()[:, :, None, :] - table[:, None])
    return 0.5 * ((a + b) * joint).sum((-1, -2)).mean(1)


def _counts(g: torch.Generator, p: torch.Tensor, k: int, m: int) -> torch.Tensor:
    idx = torch.multinomial(p, k * m, replacement=True, generator=g).view(k, m)
    return torch.zeros(k, p.numel(), dtype=p.dtype).scatter_add_(1, idx, torch.ones(k, m, dtype=p.dtype))  # fmt: skip


def train_expected_lossn(d, n: int, seeds: list[int], steps: int, sets: int,
                         lr: float) -> torch.Tensor:  # fmt: skip
    """(S, nx, ny) tabular heads, one per seed, trained by Adam (cosine decay to 0, from 0) on
    E[loss_N] with `sets` fresh sets of negatives per step (`expected_lossn_grad`). A seed
    draws its own sets (generator seed·TRAIN_SEED + N), so a seed's table does not depend on
    the other seeds of its cell."""
    joint = d.table.to(torch.float64)
    px, py = d.px.to(torch.float64), d.py.to(torch.float64)
    table = torch.zeros(len(seeds), *joint.shape, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([table], lr=lr)
    gens = [torch.Generator().manual_seed(s * TRAIN_SEED + n) for s in seeds]
    for step in range(steps):
        for group in adam.param_groups:
            group["lr"] = warmup_cosine(step, lr, 0, steps)
        cy = torch.stack([_counts(g, py, sets, n - 1) for g in gens])
        cx = torch.stack([_counts(g, px, sets, n - 1) for g in gens])
        with torch.no_grad():
            table.grad = expected_lossn_grad(table, joint, cy, cx)
        adam.step()
    return table.detach()


def sets_per_step(p: dict) -> int:
    """Sets of negatives per step: `sets` // N, at least 8 (each set covers every pair)."""
    return max(8, int(p["sets"]) // int(p["batch_size"]))


def lossn_head(p: dict) -> dict:
    """One tabular head trained on E[loss_N] (`lossn_heads` with one seed)."""
    return lossn_heads([p])[0]


def lossn_heads(ps: list[dict]) -> list[dict]:
    """T5c: per seed, a head trained on E[loss_N] and its held-out loss_N against PMI's."""
    d = make_dist(ps[0]["dist"])
    p0 = ps[0]
    n, k_sets = int(p0["batch_size"]), sets_per_step(p0)
    seeds = [int(p["seed"]) for p in ps]
    tables = train_expected_lossn(d, n, seeds, int(p0["steps"]), k_sets, float(p0["lr"]))
    return [_lossn_metrics(t, d, p, k_sets) for t, p in zip(tables, ps, strict=True)]


def _lossn_metrics(table: torch.Tensor, d, p: dict, k_sets: int) -> dict:
    n, seed = int(p["batch_size"]), int(p["seed"])
    pmi = d.pmi_table().to(torch.float64)
    w = d.px[:, None] * d.py[None, :]
    sd = opt.product_std(pmi, d.px, d.py)
    k = max(64, int(p["eval_pairs"]) // n)
    x, y = d.sample(n * k, seed=PROBE_SEED_OFFSET + seed * TRAIN_SEED + n)
    x, y = x.view(k, n), y.view(k, n)
    base = batch_terms(pmi, x, y)
    g = torch.Generator().manual_seed(NOISE_SEED + seed)
    noise = torch.randn(pmi.shape, generator=g, dtype=torch.float64) * NOISE_SD
    out = {
        "rel_error": float(pmi_rmse_product(table, pmi, w)) / sd,
        "pmi_delta": opt.pmi_half_range(table - pmi),
        "product_std": sd,
        "lossn_pmi": float(base.mean()),
        "train_sets": float(k_sets * int(p["steps"])),
    }
    cands = {
        "lossn": table,
        "lossn_near": (1.0 + float(p["scale_near"])) * pmi,
        "lossn_half": (1.0 + float(p["scale_half"])) * pmi,
        "lossn_noise": pmi + noise,
    }
    for key, cand in cands.items():
        gap = mean_se(batch_terms(cand, x, y) - base)
        out[f"{key}_diff"], out[f"{key}_diff_se"] = float(gap), gap.se
    return {c: out.get(c, NAN) for c in LOSSN_METRICS}
