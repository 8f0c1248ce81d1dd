"""T7's task: a similarity head trained on real pixels and tokens of the hidden-class shapes
joint (`pretrain.shapes.LatentShapesJoint`), scored against its exact PMI (docs/theory.md T7).

One run (`pixel_head(params)`):
- data: `fresh` (a new batch every step, `pretrain.shapes_stream.ShapesStream`) or `fixed` (n_train
  pairs drawn once and served in epochs, `pretrain.shapes_stream.FixedShapes`);
- image side: pixels (image_size x image_size RGB, jitter and pixel noise) through the lab's
  small CNN (`pretrain.towers.ConvTower`) and a one-hidden-layer MLP;
- caption side: real tokens (the lab's word-level tokenizer over every caption wording)
  through a bag-of-words encoder (mean of token embeddings, then an MLP). Word order carries no
  information here (every wording names the shape, colour and size), so a bag of words loses
  nothing, at a fraction of a Transformer's cost on CPU;
- heads: `similarity.Linear` (unnormalised, with a bias: a rank <= d+1 logit table, the most a
  d-dimensional linear head can do) or `similarity.KME` with M points (L2-normalised points and
  log-softmax weights, as `pmilab pretrain` builds it);
- loss `losses.symmetric_infonce`, AdamW with the lab's decay rule (`runtime.optim.adamw`),
  linear warmup then cosine (`runtime.schedule.warmup_cosine`), fp32, seeded.

Scoring (docs/theory.md, "Measured quantities", Monte Carlo): the logit grid of `eval_n`
held-out images (z ~ p(z), fresh nuisance) against `eval_n` independent held-out captions
(y ~ p(y), uniform wording) is compared with the exact PMI(z_i, y_j): `pmi_rmse_product` with
its V-statistic SE, at `records` evenly spaced steps (columns `<metric>_s<step>`, as T4's
`gd_trace`), beside the mean training loss since the previous record and its SE across the
steps of that window. The held-out draws come
from their own random streams, so they never coincide with a training image.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pmilab import metrics, registry
from pmilab.encoders import prepare_weights
from pmilab.losses import symmetric_infonce
from pmilab.pretrain.shapes import LatentShapesJoint
from pmilab.pretrain.shapes_stream import FixedShapes, ShapesStream
from pmilab.pretrain.towers import ConvTower
from pmilab.runtime.optim import adamw
from pmilab.runtime.schedule import warmup_cosine
from pmilab.similarity import KME, Linear
from pmilab.stats import mean_se
from pmilab.theory import optimum as opt

EVAL_SEED_OFFSET = 7_919  # held-out images and captions use seed + this in their own streams
PERTURB_SEED_OFFSET = 104_729  # the calibration pairs' perturbation field (`perturbation_field`)
# The latent-table KME's bandwidth: its K points sit at the unit basis vectors (distance² 2),
# so a cross-class kernel value is exp(−2 / (2·0.05²)) = e^−400, 0 in float32.
TABLE_SIGMA = 0.05
TABLE_SCORES = ("pmi_rmse_product", "pmi_rmse_product_se")
TRACE_FIELDS = [
    "pmi_rmse_product",
    "pmi_rmse_product_se",
    "pmi_corr",
    "train_loss",
    "train_loss_se",
]
SCALARS = [
    "pmi_rmse_product",
    "pmi_rmse_product_se",
    "pmi_corr",
    "final_loss",
    "mutual_information",
    "product_std",
    "rank_floor",
    "rank_floor_k",
    "k",
    "epochs",
    "sigma",
]


def record_steps(steps: int, records: int) -> list[int]:
    """`records` evenly spaced steps ending at `steps` (e.g. 1000, 4 -> 250, 500, 750, 1000)."""
    records = max(1, min(int(records), int(steps)))
    return sorted({round(steps * (i + 1) / records) for i in range(records)})


def pixel_metrics(steps: int, records: int) -> list[str]:
    """The columns a run with this budget returns."""
    trace = [f"{f}_s{s}" for s in record_steps(steps, records) for f in TRACE_FIELDS]
    return SCALARS + trace


class BagOfWords(nn.Module):
    """Token ids (B, T) with padding 0 -> (B, width): mean token embedding, then an MLP."""

    def __init__(self, vocab: int, width: int) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab, width, mode="mean", padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, ids: Tensor) -> Tensor:
        return self.mlp(self.embed(ids))


class PixelTower(nn.Module):
    """Pixels (B, 3, S, S) -> (B, width): `ConvTower`'s pooled feature, then an MLP."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = ConvTower(width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, images: Tensor) -> Tensor:
        return self.mlp(self.conv(images)[2])


# What the T7 task offers a head (`pmilab.registry`'s contract) beyond dim and points: a linear
# head is unnormalised with a bias (a rank <= d+1 logit table, the most a d-dimensional linear
# head can do); KME keeps its defaults.
HEAD_SETTINGS = {"normalize": False, "bias": True}


class PixelTextModel(nn.Module):
    """Two towers, an output head per side, and one similarity head (any `pmilab.registry`
    spec on vectors or point sets: linear and KME in T7). The output heads give what the head
    declares (`HeadInputs`): a vector of size D, or M unit-norm points of size d with their
    weights prepared as declared (`encoders.prepare_weights`), as `pmilab pretrain` does."""

    def __init__(self, similarity: str, vocab: int, width: int, dim: int, points: int) -> None:
        super().__init__()
        settings = {**HEAD_SETTINGS, "dim": int(dim), "points": int(points)}
        inputs = registry.head_inputs(similarity, settings)
        if inputs.kind == "indices":
            raise ValueError(f"similarity {similarity!r} takes raw state indices, not pixels")
        self.inputs, self.dim, self.points = inputs, inputs.dim, inputs.points
        self.image, self.text = PixelTower(width), BagOfWords(vocab, width)
        self.image_out = nn.Linear(width, inputs.width)
        self.text_out = nn.Linear(width, inputs.width)
        self.similarity = registry.build_head(similarity, settings)

    def _finish(self, h: Tensor) -> tuple[Tensor, ...]:
        if self.inputs.kind == "vector":
            return (F.normalize(h, dim=-1),) if self.inputs.normalize else (h,)
        pts = h[:, : self.points * self.dim].reshape(len(h), self.points, self.dim)
        w = prepare_weights(h[:, self.points * self.dim :], self.inputs.weights)
        return F.normalize(pts, dim=-1), w

    def encode_image(self, images: Tensor) -> tuple[Tensor, ...]:
        return self._finish(self.image_out(self.image(images)))

    def encode_text(self, ids: Tensor) -> tuple[Tensor, ...]:
        return self._finish(self.text_out(self.text(ids)))

    def logits(self, img: tuple[Tensor, ...], txt: tuple[Tensor, ...]) -> Tensor:
        return self.similarity.logit_matrix(*img, *txt)


def make_data(p: dict, joint: LatentShapesJoint):
    size, batch, seed = int(p["image_size"]), int(p["batch_size"]), int(p["seed"])
    if p["data"] == "fresh":
        return ShapesStream(joint, batch, seed, image_size=size)
    if p["data"] == "fixed":
        return FixedShapes(joint, int(p["n_train"]), batch, seed, image_size=size)
    raise ValueError(f"data must be 'fresh' or 'fixed', got {p['data']!r}")


@lru_cache(maxsize=2)
def heldout_draws(data, n: int, seed: int) -> tuple[Tensor, np.ndarray, Tensor, np.ndarray]:
    """The held-out images (pixels, z) and captions (token ids, y) of a run's evaluations.

    A pure function of (data's joint and image size, n, seed), drawn once per data object: every
    record of a run scores on the same grid, so re-rendering its n images at each record (about
    a tenth of an evaluation) bought nothing. Read-only: callers must not write into them."""
    images, z = data.heldout_images(n, seed + EVAL_SEED_OFFSET)
    ids, _, y = data.heldout_captions(n, seed + EVAL_SEED_OFFSET)
    return images, z, ids, y


@torch.no_grad()
def heldout_logits(model: PixelTextModel, data, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """The model's (n, n) logit grid of held-out images against independent held-out captions
    (float64), with the images' latents z and the captions' latents y."""
    model.eval()
    images, z, ids, y = heldout_draws(data, n, seed)
    txt = model.encode_text(ids)
    rows = []
    for i in range(0, n, 256):
        rows.append(model.logits(model.encode_image(images[i : i + 256]), txt))
    model.train()
    return torch.cat(rows).double(), torch.as_tensor(z), torch.as_tensor(y)


def score_grid(lm: Tensor, pmi_table: Tensor, z: Tensor, y: Tensor, corr: bool = True) -> dict:
    """`pmi_rmse_product` (with its V-statistic SE) and, with `corr`, `pmi_corr` of a held-out
    logit grid against the exact PMI(z_i, y_j): the one scoring path of every T7 head and
    table."""
    pmi = pmi_table[torch.as_tensor(z)][:, torch.as_tensor(y)]
    rmse = metrics.pmi_rmse_product(lm, pmi)
    out = {"pmi_rmse_product": float(rmse), "pmi_rmse_product_se": rmse.se}
    if corr:
        out["pmi_corr"] = float(metrics.pmi_corr(lm, pmi))
    return out


def heldout_pmi(model: PixelTextModel, data, pmi_table: Tensor, n: int, seed: int) -> dict:
    """`pmi_rmse_product` (with SE) and `pmi_corr` on the held-out n x n product grid."""
    lm, z, y = heldout_logits(model, data, n, seed)
    return score_grid(lm, pmi_table, z, y)


def perturbation_field(px, py, seed: int) -> Tensor:
    """A random field F on the (z, y) table, drawn from `seed`: i.i.d. normal cells, then
    centred and scaled so that E_{p(z)p(y)}[F] = 0 and E_{p(z)p(y)}[F²] = 1 exactly.

    A table ℓ = PMI + C + a·F has population `pmi_rmse_product` exactly a (its residual
    ℓ − PMI − C' is a·F with C' = C), so a·sd(PMI)·F plants an error of known size, a in
    units of sd(PMI), into a logit table (T7's calibration pairs, docs/theory.md T7). On a
    held-out grid the estimate scatters around a by the grid's sampling of the cells."""
    px = torch.as_tensor(px, dtype=torch.float64)
    py = torch.as_tensor(py, dtype=torch.float64)
    g = torch.Generator().manual_seed(int(seed) + PERTURB_SEED_OFFSET)
    f = torch.randn(len(px), len(py), generator=g, dtype=torch.float64)
    w = torch.outer(px, py)
    w = w / w.sum()
    f = f - (w * f).sum()
    return f / (w * f * f).sum().sqrt()


def calibration_sizes(reach_tol: float, floor_tol: float, floor_rel: float) -> dict[str, float]:
    """The planted errors (units of sd(PMI)) of T7's calibration pairs, by case:
    reach_*: an error 2x / 0.5x T7b's tolerance (its optimum is 0, so the gap to it is the
    error); floor_*: an error that beats the linear floor at d = K by 2x / 0.5x T7a's
    tolerance (floor_rel − 2 tol, floor_rel − tol/2)."""
    return {
        "reach_near": 2.0 * reach_tol,
        "reach_half": 0.5 * reach_tol,
        "floor_near": floor_rel - 2.0 * floor_tol,
        "floor_half": floor_rel - 0.5 * floor_tol,
    }


CALIBRATION_CASES = ("reach_near", "reach_half", "floor_near", "floor_half")

TABLE_METRICS = [
    "pmi_rmse_product",
    "pmi_rmse_product_se",
    "product_std",
    "rank_floor_k",
    "k",
    *(f"{m}_{c}" for c in CALIBRATION_CASES for m in ("planted", *TABLE_SCORES)),
]


@torch.no_grad()
def latent_table_kme(p: dict) -> dict:
    """The latent-table optimum of a KME head with M = K points, on the held-out grid, and the
    calibration pairs of T7's rules built from it.

    Built, not trained: every input gets the K points e_1 ... e_K (the unit basis vectors) and
    its exact class posterior as weights (log p(c | z) for an image, log p(c | y) for a
    caption), with σ = TABLE_SIGMA. Then ℓ = log Σ_c p(c|z) p(c|y) = PMI − log K: the KME
    head represents PMI + C exactly (docs/theory.md T2), so its optimum is 0. Scored on the
    same held-out grid, with the same code (`score_grid`), as the pixel-trained heads of this
    seed; it reads the latents, not the pixels.

    Calibration (params reach_tol, floor_tol): the same logit grid plus a·sd(PMI)·F[z, y],
    F = `perturbation_field(seed)`, for each planted size a of `calibration_sizes`, scored by
    `score_grid` (columns `planted_<case>`, `pmi_rmse_product_<case>`, `..._se_<case>`).
    """
    seed = int(p["seed"])
    joint = LatentShapesJoint(eps=float(p["eps"]))
    data = ShapesStream(joint, 2, seed, image_size=int(p["image_size"]))
    _, z = data.heldout_images(int(p["eval_n"]), seed + EVAL_SEED_OFFSET)
    _, _, y = data.heldout_captions(int(p["eval_n"]), seed + EVAL_SEED_OFFSET)
    z, y = torch.as_tensor(z), torch.as_tensor(y)
    k = joint.k
    head = KME(sigma=TABLE_SIGMA, learn_sigma=False)

    def side(post: Tensor) -> tuple[Tensor, Tensor]:
        pts = torch.eye(k).expand(len(post), k, k)
        return pts, post.float().log()

    lm = head.logit_matrix(
        *side(joint.posterior_z()[z]),
        *side(joint.posterior_y()[y]),
    ).double()
    pmi_table = joint.pmi_table()
    lat = joint.latent()
    sd = opt.product_std(pmi_table, lat.px, lat.py)
    floor_k = opt.rank_floor(pmi_table, lat.px, lat.py, k)
    score = score_grid(lm, pmi_table, z, y, corr=False)
    out = {
        "pmi_rmse_product": score["pmi_rmse_product"],
        "pmi_rmse_product_se": score["pmi_rmse_product_se"],
        "product_std": sd,
        "rank_floor_k": floor_k,
        "k": k,
    }
    field = perturbation_field(lat.px, lat.py, seed)[z][:, y]
    sizes = calibration_sizes(float(p["reach_tol"]), float(p["floor_tol"]), floor_k / sd)
    for case, a in sizes.items():
        planted = score_grid(lm + a * sd * field, pmi_table, z, y, corr=False)
        out[f"planted_{case}"] = a
        for m in TABLE_SCORES:
            out[f"{m}_{case}"] = planted[m]
    return {m: out[m] for m in TABLE_METRICS}


def pixel_head(p: dict) -> dict:
    """Train one head on pixels and tokens; held-out PMI errors at `records` steps."""
    seed, steps = int(p["seed"]), int(p["steps"])
    joint = LatentShapesJoint(eps=float(p["eps"]))
    data = make_data(p, joint)
    torch.manual_seed(seed)
    model = PixelTextModel(
        p["similarity"], data.captions.vocab, int(p["width"]), int(p["dim"]), int(p["points"])
    )
    optim = adamw(
        model, model.similarity.no_decay_parameters(), float(p["lr"]), float(p["weight_decay"])
    )
    pmi_table = joint.pmi_table()
    marks = set(record_steps(steps, int(p["records"])))
    out: dict = {}
    window: list[float] = []
    for step in range(steps):
        for group in optim.param_groups:
            group["lr"] = warmup_cosine(step, float(p["lr"]), int(p["warmup"]), steps)
        b = data.batch(step)
        loss = symmetric_infonce(
            model.logits(model.encode_image(b.pixels()), model.encode_text(b.ids))
        )
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        model.similarity.clamp_()
        window.append(float(loss.detach()))
        if step + 1 in marks:
            ev = heldout_pmi(model, data, pmi_table, int(p["eval_n"]), seed)
            for k, v in ev.items():
                out[f"{k}_s{step + 1}"] = v
            w = torch.tensor(window, dtype=torch.float64)
            out[f"train_loss_s{step + 1}"] = float(w.mean())
            out[f"train_loss_se_s{step + 1}"] = mean_se(w).se if len(w) > 1 else math.nan
            window = []
    lat = joint.latent()
    out.update({k: out[f"{k}_s{steps}"] for k in ("pmi_rmse_product", "pmi_rmse_product_se")})
    out["pmi_corr"] = out[f"pmi_corr_s{steps}"]
    out["final_loss"] = out[f"train_loss_s{steps}"]
    out["mutual_information"] = float(lat.mutual_information())
    out["product_std"] = opt.product_std(pmi_table, lat.px, lat.py)
    # the exact Eckart–Young floor of a linear head (rank d plus a constant) at its d (NaN for
    # KME, whose `dim` is the dimension of its points), and at d = K (T7's reference line)
    if isinstance(model.similarity, Linear):
        out["rank_floor"] = opt.rank_floor(pmi_table, lat.px, lat.py, int(p["dim"]))
    out["rank_floor_k"] = opt.rank_floor(pmi_table, lat.px, lat.py, joint.k)
    out["k"] = joint.k
    out["epochs"] = data.epoch(steps) if p["data"] == "fixed" else math.nan
    sim = model.similarity
    out["sigma"] = float(sim.sigma.detach()) if isinstance(sim, KME) else math.nan
    return {k: out.get(k, math.nan) for k in pixel_metrics(steps, int(p["records"]))}
