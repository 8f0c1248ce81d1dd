"""The hidden-class shapes joint and its in-memory stream (docs/theory.md T7): exact PMI against
brute force, rank(exp PMI) <= K with PMI full rank, the linear floor against a direct SVD,
injective rendering, captions that determine y, and a deterministic, resumable stream."""

import itertools
import math

import numpy as np
import pytest
import torch

from pmilab.dists.discrete import Discrete
from pmilab.pretrain.shapes import (
    COLOURS,
    HIDDEN_CLASSES,
    SHAPES,
    SIZES,
    LatentShapesJoint,
    parse_caption,
    render,
)
from pmilab.pretrain.shapes_stream import (
    CONTEXT,
    NOISE_SD,
    CaptionBank,
    FixedShapes,
    ShapesStream,
    TemplateBank,
)
from pmilab.theory.optimum import product_std, rank_floor

K = HIDDEN_CLASSES


def brute_force(j: LatentShapesJoint) -> tuple[np.ndarray, np.ndarray]:
    """p(z, y) and PMI by explicit loops over attributes and classes, in python floats."""
    npos = j.grid**2

    def post(shape: int, colour: int) -> list[float]:
        # the i-th shape and the i-th colour vote for class i; eps of every class
        return [(1 - K * j.eps) * 0.5 * ((shape == c) + (colour == c)) + j.eps for c in range(K)]

    zs = list(itertools.product(range(len(SHAPES)), range(len(COLOURS)), range(len(SIZES))))
    joint = np.zeros((j.nz, j.ny))
    for zi, (s, c, _sz, _pos) in enumerate(
        itertools.product(range(len(SHAPES)), range(len(COLOURS)), range(len(SIZES)), range(npos))
    ):
        for yi, (s2, c2, _sz2) in enumerate(zs):
            a, b = post(s, c), post(s2, c2)
            # p(z) p(y) sum_c p(c|z) p(c|y) / p(c), p(c) = 1/K
            joint[zi, yi] = sum(a[k] * b[k] * K for k in range(K)) / (j.nz * j.ny)
    px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    return joint, np.log(joint) - np.log(px) - np.log(py)


@pytest.mark.parametrize("eps", [0.01, 0.003, 0.1])
def test_pmi_matches_brute_force_and_is_a_latent_class_joint(eps):
    j = LatentShapesJoint(eps=eps)
    joint, pmi = brute_force(j)
    assert np.allclose(j.table().numpy(), joint, atol=1e-15)
    assert np.allclose(j.pmi_table().numpy(), pmi, atol=1e-12)
    assert torch.allclose(j.pmi_table(), Discrete(j.table()).pmi_table(), atol=1e-12)
    lat = j.latent()
    assert torch.allclose(lat.prior, torch.full((K,), 1 / K, dtype=torch.float64), atol=1e-15)
    assert math.isclose(j.mutual_information(), float(lat.mutual_information()), rel_tol=1e-12)
    # size and position carry no class information: PMI depends on (shape, colour) only
    rows = j.pmi_table().reshape(len(SHAPES) * len(COLOURS), -1, j.ny)
    assert torch.allclose(rows, rows[:, :1].expand_as(rows), atol=1e-12)
    cols = j.pmi_table().reshape(j.nz, len(SHAPES) * len(COLOURS), len(SIZES))
    assert torch.allclose(cols, cols[..., :1].expand_as(cols), atol=1e-12)


def test_exp_pmi_has_rank_k_while_pmi_is_full_rank():
    """T2 on the shapes joint: exp(PMI) = K · P_z P_yᵀ has rank <= K; PMI has full rank on
    its distinct posterior types (10 > K + 1, beyond any linear head with d = K and a bias)."""
    j = LatentShapesJoint()
    pmi = j.pmi_table().numpy()
    assert np.linalg.matrix_rank(np.exp(pmi), tol=1e-10) == K
    types = np.unique(j.posterior_z().numpy().round(12), axis=0)
    assert len(types) == len(np.unique(j.posterior_y().numpy().round(12), axis=0)) == 10
    rows = np.unique(pmi.round(12), axis=0)
    distinct = np.unique(rows.round(12), axis=1)
    assert distinct.shape == (10, 10) and np.linalg.matrix_rank(distinct, tol=1e-10) == 10
    assert np.linalg.matrix_rank(pmi, tol=1e-10) == 10 >= K + 2


def direct_floor(pmi: np.ndarray, px: np.ndarray, py: np.ndarray, d: int) -> float:
    """The best rank-d table plus a constant C, by brute force over C: for each C, the SVD
    truncation of the weighted residual (Eckart–Young) gives an explicit table, whose weighted
    error is computed directly. C runs over a fine grid of the PMI range and out to |C| = 1e5:
    for d >= 2 the infimum can lie at |C| -> inf, where one rank-1 term absorbs the constant
    plus additive row and column effects, (C + a)(1 + b/C) ~ C + a + b."""
    u, v = np.sqrt(px), np.sqrt(py)

    def err(c: float) -> float:
        a = u[:, None] * (pmi - c) * v[None, :]
        uu, s, vt = np.linalg.svd(a, full_matrices=False)
        best = (uu[:, :d] * s[:d]) @ vt[:d] / u[:, None] / v[None, :]  # the explicit table
        return float(np.sqrt((np.outer(px, py) * (pmi - c - best) ** 2).sum()))

    far = np.geomspace(10, 1e5, 30)
    grid = np.concatenate([np.linspace(pmi.min() - 1, pmi.max() + 1, 1001), far, -far])
    vals = np.array([err(c) for c in grid])
    c = grid[vals.argmin()]
    fine = np.linspace(c - 0.01, c + 0.01, 201)  # refine a finite minimum
    return float(min(vals.min(), *(err(x) for x in fine)))


def test_linear_floor_matches_a_direct_svd_and_the_design_numbers():
    j = LatentShapesJoint()
    lat, pmi = j.latent(), j.pmi_table()
    sd = product_std(pmi, lat.px, lat.py)
    for d in (1, 2, 3, 4, 5):
        ref = direct_floor(pmi.numpy(), lat.px.numpy(), lat.py.numpy(), d)
        assert rank_floor(pmi, lat.px, lat.py, d) == pytest.approx(ref, rel=1e-5)
    # the numbers the docstring and docs/theory.md quote
    assert j.mutual_information() == pytest.approx(0.3655, abs=1e-4)
    assert sd == pytest.approx(1.3697, abs=1e-4)
    assert float(pmi.min()) == pytest.approx(-2.546, abs=1e-3)
    floors = [rank_floor(pmi, lat.px, lat.py, d) / sd for d in (3, 4, 5)]
    assert floors == pytest.approx([0.3890, 0.2677, 0.2046], abs=1e-4)


def decode(images: np.ndarray, bank: TemplateBank) -> np.ndarray:
    """Nearest noise-free template over every (z, jitter)."""
    flat = bank.bank.reshape(-1, bank.size * bank.size * 3).astype(np.float32)
    zs = np.repeat(np.arange(bank.bank.shape[0]), bank.bank.shape[1])
    x = images.reshape(len(images), -1).astype(np.float32)
    d = (x**2).sum(1)[:, None] - 2 * x @ flat.T + (flat**2).sum(1)[None]
    return zs[d.argmin(1)]


def test_rendering_is_injective_in_the_latent_at_16_pixels():
    """Distinct z never share a noise-free render (any jitters), and nearest-template decoding
    recovers z from noisy, jittered renders: PMI(image, caption) = PMI(z, y) exactly."""
    j = LatentShapesJoint()
    bank = TemplateBank(j, image_size=16)
    flat = bank.bank.reshape(j.nz * len(bank.jitters), -1).astype(np.float64)
    zs = np.repeat(np.arange(j.nz), len(bank.jitters))
    sq = (flat**2).sum(1)
    dist = sq[:, None] - 2 * flat @ flat.T + sq[None]  # exact: integer pixels in float64
    assert dist[zs[:, None] != zs[None]].min() > 0
    rng = np.random.default_rng(0)
    z = rng.integers(j.nz, size=600)
    jitter = rng.integers(len(bank.jitters), size=600)
    images = bank.images(z, jitter, rng, NOISE_SD)
    assert (decode(images, bank) == z).all()


def test_bank_images_are_render_with_the_same_noise():
    j = LatentShapesJoint()
    bank = TemplateBank(j, image_size=16)
    z, jitter = np.array([0, 5, 77, 127]), np.array([0, 4, 8, 3])
    got = bank.images(z, jitter, np.random.default_rng(3), NOISE_SD)
    rng = np.random.default_rng(3)
    want = [
        render(j, int(a), bank.jitters[b], NOISE_SD, rng, size=16)
        for a, b in zip(z, jitter, strict=True)
    ]
    assert np.array_equal(got, np.stack(want))


def test_every_caption_wording_names_its_latent():
    j = LatentShapesJoint()
    cap = CaptionBank(j)
    assert cap.per_y == 32 and len(cap.texts) == j.ny * cap.per_y
    for i, text in enumerate(cap.texts):
        a = j.y_attrs(i // cap.per_y)
        assert parse_caption(text) == (a["shape"], a["colour"], a["size"])
    assert not cap.mask[:, -1].any() and cap.ids.shape == (len(cap.texts), CONTEXT)
    assert torch.equal(CaptionBank(j).ids, cap.ids)  # the tokenizer is deterministic
    # distinct latents never share a token sequence
    seqs = {tuple(r.tolist()): i // cap.per_y for i, r in enumerate(cap.ids)}
    assert len(seqs) == len(cap.texts)


def same(a, b) -> bool:
    return (
        np.array_equal(a.images, b.images)
        and torch.equal(a.ids, b.ids)
        and np.array_equal(a.z, b.z)
        and np.array_equal(a.y, b.y)
    )


def test_stream_is_deterministic_and_resumable():
    j = LatentShapesJoint()
    a, b = ShapesStream(j, 16, seed=3), ShapesStream(j, 16, seed=3)
    from_zero = list(itertools.islice(a.batches(0), 6))
    resumed = list(itertools.islice(b.batches(4), 2))  # a fresh object started at step 4
    assert same(from_zero[4], resumed[0]) and same(from_zero[5], resumed[1])
    assert same(a.batch(2), from_zero[2])
    assert not np.array_equal(from_zero[0].images, from_zero[1].images)  # fresh every step
    assert not same(ShapesStream(j, 16, seed=4).batch(0), from_zero[0])
    # the held-out draws never reuse the training stream
    x, z = a.heldout_images(16, 3)
    assert not np.array_equal(z, from_zero[0].z) and x.shape == (16, 3, 16, 16)


def test_stream_samples_follow_the_table():
    j = LatentShapesJoint()
    s = ShapesStream(j, 2048, seed=0)
    batches = [s.batch(i) for i in range(12)]
    z, y = np.concatenate([b.z for b in batches]), np.concatenate([b.y for b in batches])
    n = len(z)
    # on the (shape, colour) x (shape', colour') table, 16 x 16 cells
    cell = (z // 8) * 16 + y // 2
    freq = np.bincount(cell, minlength=256) / n
    p = j.table().reshape(16, 8, 16, 2).sum((1, 3)).reshape(-1).numpy()
    se = np.sqrt(p * (1 - p) / n)
    assert (np.abs(freq - p) < 5 * se).all()


def test_fixed_set_serves_epochs_and_resumes():
    j = LatentShapesJoint()
    f = FixedShapes(j, 50, 16, seed=1)
    seen = np.concatenate([f.indices(s) for s in range(25)])  # 8 epochs of 50
    for e in range(8):
        assert sorted(seen[50 * e : 50 * (e + 1)]) == list(range(50))
    g = FixedShapes(j, 50, 16, seed=1)
    assert same(f.batch(7), g.batch(7)) and f.epoch(25) == 8.0
    assert np.array_equal(f.images, g.images)
