"""The in-place rendering of `shapes_stream.TemplateBank.images` gives the pixels of the
expression it replaced, bit for bit: clip(rint(base + rng.normal(0, sd, shape))) in float64, then
uint8 (results/engine/t7_step.md). Checked on the bank directly over many seeds, noise levels
(ties at .5 and clipping at 0 and 255 included), and through the stream, the fixed set and the
held-out draws that T7 trains and scores on."""

import numpy as np
import pytest

from pmilab.pretrain.shapes import LatentShapesJoint
from pmilab.pretrain.shapes_stream import (
    NOISE_SD,
    FixedShapes,
    ShapesStream,
    TemplateBank,
    template_bank,
)


def reference(self, z, jitter, rng, noise_sd):
    """The expression `TemplateBank.images` used before (the pixels it must reproduce)."""
    base = self.bank[np.asarray(z), np.asarray(jitter)].astype(np.float64)
    noise = rng.normal(0.0, noise_sd, base.shape) if noise_sd > 0 else 0.0
    return np.clip(np.rint(base + noise), 0, 255).astype(np.uint8)


def float32_noise(self, z, jitter, rng, noise_sd):
    """A near miss: the same normals, scaled and added in float32 (differs only where that
    rounding moves a value across a .5 boundary)."""
    base = self.bank[np.asarray(z), np.asarray(jitter)].astype(np.float32)
    noise = rng.normal(0.0, noise_sd, base.shape).astype(np.float32)
    return np.clip(np.rint(base + noise), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def bank() -> TemplateBank:
    return template_bank(LatentShapesJoint(eps=0.01), 16)


def draws(bank: TemplateBank, seed: int, n: int = 256):
    rng = np.random.default_rng([99, seed])
    return rng.integers(bank.joint.nz, size=n), rng.integers(len(bank.jitters), size=n)


@pytest.mark.parametrize("sd", [NOISE_SD, 0.5, 1.0, 60.0, 0.0, -1.0])
def test_bank_images_equal_the_reference_expression(bank, sd):
    """Same pixels and the same generator state afterwards (the next draw agrees too)."""
    for seed in range(20):
        z, jitter = draws(bank, seed)
        a, b = np.random.default_rng([3, seed]), np.random.default_rng([3, seed])
        got, want = bank.images(z, jitter, a, sd), reference(bank, z, jitter, b, sd)
        assert got.dtype == np.uint8 and got.shape == want.shape == (256, 16, 16, 3)
        assert np.array_equal(got, want), (sd, seed, int((got != want).sum()))
        assert a.random() == b.random()
    if sd == 60.0:  # the clipping and the noise-free pixels are exercised
        assert (got == 0).any() and (got == 255).any()


def test_the_comparison_sees_a_rounding_level_difference(bank):
    """The check above is exact: a float32 version of the same expression (the same normals)
    already differs in some pixels, and one pixel off by one is seen."""
    differ = 0
    for seed in range(20):
        z, jitter = draws(bank, seed)
        want = reference(bank, z, jitter, np.random.default_rng([3, seed]), NOISE_SD)
        near = float32_noise(bank, z, jitter, np.random.default_rng([3, seed]), NOISE_SD)
        differ += int((near != want).sum())
        assert np.abs(near.astype(int) - want.astype(int)).max() <= 1
    assert differ > 0
    one = want.copy()
    one[7, 3, 4, 1] ^= 1
    assert not np.array_equal(one, want)


def batches(joint):
    """What T7 trains and scores on: stream batches of several seeds and steps, a fixed set,
    its batches, and held-out images."""
    out = []
    for seed in range(8):
        s = ShapesStream(joint, 128, seed)
        out += [s.batch(step).images for step in (0, 1, 17, 2999)]
        out.append(s.heldout_images(300, seed + 7919)[0].numpy())
    f = FixedShapes(joint, 500, 64, seed=2)
    out += [f.images, f.batch(9).images]
    return out


def test_stream_fixed_set_and_heldout_pixels_are_unchanged(monkeypatch):
    joint = LatentShapesJoint(eps=0.01)
    got = batches(joint)
    monkeypatch.setattr(TemplateBank, "images", reference)
    want = batches(joint)
    assert len(got) == len(want) == 42
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
