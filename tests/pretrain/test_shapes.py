"""The shapes dataset (T7): exact PMI against brute force, injective rendering, cached files."""

import csv
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pmilab.dists.discrete import Discrete
from pmilab.pretrain.shapes import (
    COLOURS,
    SHAPES,
    SIZES,
    ShapesJoint,
    caption,
    class_of_z,
    parse_caption,
    render,
)
from pmilab.pretrain.shapes_cache import NOISE_SD, ensure_shapes


def brute_force_pmi(j: ShapesJoint) -> np.ndarray:
    """PMI by explicit loops over every attribute, in plain python floats (independent code)."""
    ns, nc, nz, npos = len(SHAPES), len(COLOURS), len(SIZES), j.grid**2
    w = {(s, c): j.favourite if c == s % nc else 1.0 for s in range(ns) for c in range(nc)}
    total = sum(w.values()) * nz * npos
    joint = np.zeros((j.nz, j.ny))
    for zi, (s, c, sz, _pos) in enumerate(
        itertools.product(range(ns), range(nc), range(nz), range(npos))
    ):
        pz = w[s, c] / total
        for yi, (s2, c2, sz2) in enumerate(itertools.product(range(ns), range(nc), range(nz))):
            p = 1.0
            for a, b, n in ((s, s2, ns), (c, c2, nc), (sz, sz2, nz)):
                p *= 1 - j.noise if a == b else j.noise / (n - 1)
            joint[zi, yi] = pz * p
    px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    return np.log(joint) - np.log(px) - np.log(py)


@settings(max_examples=8, deadline=None)
@given(noise=st.floats(0.01, 0.6), favourite=st.floats(1.0, 6.0), grid=st.integers(1, 3))
def test_pmi_table_matches_brute_force_and_identities(noise, favourite, grid):
    j = ShapesJoint(noise=noise, favourite=favourite, grid=grid)
    pmi = j.pmi_table()
    assert np.allclose(pmi.numpy(), brute_force_pmi(j), atol=1e-12)
    table = j.table()
    assert math.isclose(table.sum().item(), 1.0, abs_tol=1e-12)
    assert torch.allclose(pmi, Discrete(table).pmi_table(), atol=1e-12)
    px, py = table.sum(1), table.sum(0)
    # T6: E_{p(x)p(y)} exp PMI = 1 and E_p exp(-PMI) = 1
    assert math.isclose((px[:, None] * py[None] * pmi.exp()).sum().item(), 1.0, abs_tol=1e-12)
    assert math.isclose((table * (-pmi).exp()).sum().item(), 1.0, abs_tol=1e-12)
    # position carries no caption information: rows differing only in position are equal
    rows = pmi.reshape(-1, grid**2, j.ny)
    assert torch.allclose(rows, rows[:, :1].expand_as(rows), atol=1e-12)


def template_bank(j: ShapesJoint):
    """Noise-free renders of every latent at every jitter: (nz * 9, 3072) and their z."""
    bank, zs = [], []
    for z in range(j.nz):
        for dx, dy in itertools.product((-1, 0, 1), repeat=2):
            bank.append(render(j, z, (dx, dy)).reshape(-1).astype(np.float32))
            zs.append(z)
    return np.stack(bank), np.array(zs)


def decode(images: np.ndarray, bank: np.ndarray, zs: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), -1).astype(np.float32)
    d = (x**2).sum(1)[:, None] - 2 * x @ bank.T + (bank**2).sum(1)[None]
    return zs[d.argmin(1)]


def test_rendering_is_injective_in_the_latent():
    """Nearest-template decoding recovers z from every noisy, jittered render (T7)."""
    j = ShapesJoint()
    bank, zs = template_bank(j)
    rng = np.random.default_rng(0)
    z = rng.integers(j.nz, size=400)
    imgs = np.stack([render(j, int(v), tuple(rng.integers(-1, 2, 2)), NOISE_SD, rng) for v in z])
    assert (decode(imgs, bank, zs) == z).all()


def test_captions_parse_back_to_their_latent():
    j, rng = ShapesJoint(), np.random.default_rng(0)
    for y in range(j.ny):
        a = j.y_attrs(y)
        for _ in range(5):
            assert parse_caption(caption(j, y, rng)) == (a["shape"], a["colour"], a["size"])


def test_samples_follow_the_table():
    j = ShapesJoint()
    z, y = j.sample(200_000, seed=0)
    freq = np.bincount(z * j.ny + y, minlength=j.nz * j.ny) / len(z)
    p = j.table().reshape(-1).numpy()
    se = np.sqrt(p * (1 - p) / len(z))
    assert (np.abs(freq - p) < 5 * se + 1e-12).all()  # 5 standard errors per cell


def test_cache_is_generated_once_and_matches_its_latents(tmp_path):
    root = ensure_shapes(48, 16, seed=0, root=tmp_path, progress=False)
    stamp = (root / "meta.json").stat().st_mtime_ns
    assert ensure_shapes(48, 16, seed=0, root=tmp_path, progress=False) == root
    assert (root / "meta.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temporary left behind
    j = ShapesJoint()
    bank, zs = template_bank(j)
    with open(root / "test.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16
    imgs = np.stack([np.asarray(Image.open(root / r["filepath"])) for r in rows])
    z = np.array([int(r["z"]) for r in rows])
    assert (decode(imgs, bank, zs) == z).all()
    assert (class_of_z(j, z) == np.array([int(r["label"]) for r in rows])).all()
    for r in rows:
        a = j.y_attrs(int(r["y"]))
        assert parse_caption(r["caption"]) == (a["shape"], a["colour"], a["size"])


@pytest.mark.parametrize("seed", [0, 1])
def test_same_seed_same_dataset(tmp_path, seed):
    a = ensure_shapes(8, 4, seed=seed, root=tmp_path / "a", progress=False)
    b = ensure_shapes(8, 4, seed=seed, root=tmp_path / "b", progress=False)
    assert (a / "train.csv").read_text() == (b / "train.csv").read_text()
    for i in range(8):
        assert (a / f"train/{i:06d}.png").read_bytes() == (b / f"train/{i:06d}.png").read_bytes()
