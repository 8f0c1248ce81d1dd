"""--preprocess clip and --aug rrc (issue 26): a real photo through pmilab's preprocessing equals
transformers' CLIP image processor, built here on its own from arguments; RandomResizedCrop
boxes stay within open_clip's bounds and repeat per seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from pmilab.pretrain.data import ImageText, ImageTextDataset, StepBatches
from pmilab.pretrain.preprocess import Preprocess, rrc_box, to_tensor

TOL = 1e-6
MEAN = [0.48145466, 0.4578275, 0.40821073]  # OpenAI CLIP's, written out independently
STD = [0.26862954, 0.26130258, 0.27577711]


@pytest.fixture(scope="module")
def china() -> Image.Image:
    """A real RGB photo (427 x 640) that ships with scikit-learn."""
    return Image.fromarray(load_sample_image("china.jpg"))


def reference(img: Image.Image, size: int) -> torch.Tensor:
    """transformers' CLIPImageProcessor with OpenAI's settings, constructed from arguments."""
    import warnings

    from transformers import CLIPImageProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no torchvision: the PIL backend" is what we want
        proc = CLIPImageProcessor(
            size={"shortest_edge": size},
            crop_size={"height": size, "width": size},
            image_mean=MEAN,
            image_std=STD,
            resample=Image.BICUBIC,
        )
    return proc(img, return_tensors="pt")["pixel_values"][0]


def by_hand(img: Image.Image, size: int, resample=Image.BICUBIC) -> torch.Tensor:
    """The same transform written out: short side to `size` (the long side truncated, as
    transformers does), centre crop (offsets floored), /255, CLIP mean and std."""
    w, h = img.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    img = img.resize(new, resample)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    a = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    a = (a - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return torch.from_numpy(a).permute(2, 0, 1)


@pytest.mark.parametrize("size", [224, 64])
def test_clip_preprocessing_of_a_real_photo_equals_transformers_processor(china, size):
    ours = Preprocess("clip", size)(china)
    ref = reference(china, size)
    assert ours.shape == ref.shape == (3, size, size) and ours.dtype == torch.float32
    assert (ours - ref).abs().max().item() <= TOL
    # and the transform written out by hand (no transformers) agrees to float32 rounding
    assert (ours - by_hand(china, size)).abs().max().item() <= 1e-5


def test_control_the_check_tells_a_wrong_transform_and_its_tolerance(china):
    """The 1e-6 check fails on output off by 2x the tolerance and passes at 0.5x; a bilinear
    resize, the [-1, 1] scale and a grey photo are each told apart by far more."""
    ref = reference(china, 64)
    ours = Preprocess("clip", 64)(china)
    assert (ours + 2 * TOL - ref).abs().max().item() > TOL
    assert (ours + 0.5 * TOL - ref).abs().max().item() <= TOL
    assert (by_hand(china, 64, Image.BILINEAR) - ref).abs().max().item() > 1e-2
    assert (Preprocess("simple", 64)(china) - ref).abs().max().item() > 1e-1
    grey = Preprocess("clip", 64)(china.convert("L"))  # converted back to RGB: 3 equal channels
    assert grey.shape == (3, 64, 64) and (grey - ref).abs().max().item() > 1e-2


def test_simple_preprocessing_is_todays_nearest_resize(china):
    """--preprocess simple is the earlier behaviour, bit for bit (the shapes runs' numbers)."""
    small = china.resize((16, 16), Image.NEAREST)
    a = np.asarray(small, dtype=np.float32)
    want = torch.from_numpy(a.copy()).permute(2, 0, 1) / 127.5 - 1.0
    assert torch.equal(Preprocess("simple", 16)(china), want)
    assert torch.equal(to_tensor(china, 16), want)


def rrc_draws(width: int, height: int, n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([rrc_box(width, height, rng) for _ in range(n)])  # (n, 4): top, left, h, w


def test_rrc_boxes_stay_within_open_clips_bounds():
    """scale (0.9, 1.0) of the area, aspect ratio in (3/4, 4/3) up to the rounding of w and h
    to pixels, and inside the image; the crops vary."""
    size = 300
    boxes = rrc_draws(size, size)
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= size).all() and (left + w <= size).all()
    frac = h * w / size**2
    slack = 2 * size / size**2 + 1 / size**2  # one pixel of rounding on each side
    assert frac.min() >= 0.9 - slack and frac.max() <= 1.0 + slack
    ratio = w / h
    assert ratio.min() >= 3 / 4 * (1 - 2 / size) and ratio.max() <= 4 / 3 * (1 + 2 / size)
    assert len({tuple(b) for b in boxes}) > 100  # positions and shapes vary
    # control: torchvision's default scale (0.08, 1.0) would fall far below 0.9
    rng = np.random.default_rng(0)
    wide = np.array([rrc_box(size, size, rng, scale=(0.08, 1.0)) for _ in range(200)])
    assert (wide[:, 2] * wide[:, 3] / size**2).min() < 0.5


def test_rrc_falls_back_to_torchvisions_centre_crop():
    """On the 640 x 427 photo no box of >= 90 % area has a ratio <= 4/3: after ten tries the
    centre crop of ratio 4/3 (torchvision's fallback): h 427, w round(427 * 4/3) = 569."""
    boxes = rrc_draws(640, 427, n=20)
    assert {tuple(b) for b in boxes} == {(0, (640 - 569) // 2, 427, 569)}


@pytest.mark.parametrize("kind", ["clip", "simple"])
def test_rrc_is_deterministic_per_seed(china, kind):
    square = china.crop((0, 0, 427, 427))
    prep = Preprocess(kind, 32, "rrc")
    a = prep(square, np.random.default_rng([0, 5, 3]))
    b = prep(square, np.random.default_rng([0, 5, 3]))
    c = prep(square, np.random.default_rng([1, 5, 3]))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, 32, 32)
    with pytest.raises(RuntimeError, match="seeded Generator"):
        prep(square)  # never an unseeded crop (and never counted as a corrupt image)
    assert torch.equal(prep.for_eval()(square), Preprocess(kind, 32)(square))


def test_rrc_draw_of_a_sample_is_the_same_however_the_batch_is_split(china):
    """StepBatches keys each sample's crop by (seed, step, place in the global batch): one rank
    with one micro-batch of 8 sees the crops that 2 ranks x 2 micro-batches of 2 see."""
    one = [b for b in StepBatches(40, 8, 1, seed=3, start=0, stop=3, draws=True)]
    split = [
        b
        for rank in range(2)
        for b in StepBatches(40, 2, 2, seed=3, start=0, stop=3, rank=rank, world=2, draws=True)
    ]
    flat = sorted(x for b in one for x in b)
    assert flat == sorted(x for b in split for x in b)
    assert StepBatches(40, 8, 1, 3, 0, 3).__iter__().__next__() == [i for i, _ in one[0]]
    # the dataset decodes a keyed item through the seeded crop
    arr = np.asarray(china.crop((0, 0, 427, 427)))
    ds = ImageTextDataset(ImageText([arr] * 40, ["x"] * 40, "t"), 32, Preprocess("clip", 32, "rrc"))
    key = one[0][0]
    again, _ = ds[key]
    assert torch.equal(ds[key][0], again)
    assert not torch.equal(ds[(key[0], (3, 0, 1))][0], again)
