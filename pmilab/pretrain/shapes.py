"""The known-PMI shapes dataset (docs/theory.md T7): real PNG images and captions, exact PMI.

The image latent is z = (shape, colour, size, position); the caption latent is
y = (shape', colour', size'), where each caption attribute copies the image's with probability
1 - `noise` and is otherwise one of the other values uniformly (annotation noise; it keeps
every PMI finite). The prior couples shape and colour (each shape has a favourite colour), so
p(y) is not a product and the PMI table is not a sum of per-attribute terms.

Images are drawn by PIL from z plus nuisance (a +-1 pixel jitter and Gaussian pixel noise) that
is independent of the caption given z; captions are written from y with templates and
synonyms, and every caption parses back to y. Rendering is injective in z (a test recovers z
from the pixels), so PMI(image, caption) = PMI(z, y) exactly: `ShapesJoint.pmi_table()`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow")
SIZES = ("small", "large")
RGB = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 80, 225),
    "yellow": (235, 205, 40),
}
RADIUS = {"small": 4.5, "large": 8.0}  # half-extent in pixels on the 32x32 canvas
SYNONYMS = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle", "wedge"),
    "cross": ("cross", "plus sign"),
    "red": ("red", "crimson"),
    "green": ("green", "emerald"),
    "blue": ("blue", "azure"),
    "yellow": ("yellow", "golden"),
    "small": ("small", "tiny"),
    "large": ("large", "big"),
}
TEMPLATES = (
    "a {size} {colour} {shape}",
    "a picture of a {size} {colour} {shape}",
    "a {colour} {shape} , {size}",
    "there is a {size} {shape} in {colour}",
)
# Zero-shot classes are (shape, colour); prompts ensemble over templates and sizes (T3).
ZEROSHOT_TEMPLATES = ("a {size} {colour} {shape}", "a picture of a {size} {colour} {shape}")
BACKGROUND = 128


@dataclass(frozen=True)
class ShapesJoint:
    """The designed joint p(z, y) and its exact PMI (T7).

    z indexes (shape, colour, size, position) in row-major order over
    (len(SHAPES), len(COLOURS), len(SIZES), grid**2); y indexes (shape', colour', size').
    """

    noise: float = 0.15  # probability that a caption attribute is wrong
    favourite: float = 3.0  # prior weight of each shape's favourite colour (others weigh 1)
    grid: int = 2  # positions on a grid x grid lattice

    @property
    def nz(self) -> int:
        return len(SHAPES) * len(COLOURS) * len(SIZES) * self.grid**2

    @property
    def ny(self) -> int:
        return len(SHAPES) * len(COLOURS) * len(SIZES)

    def prior(self) -> Tensor:
        """(nz,) p(z): shape-colour coupled, size and position uniform."""
        ns, nc = len(SHAPES), len(COLOURS)
        sc = torch.ones(ns, nc, dtype=torch.float64)
        sc[torch.arange(ns), torch.arange(ns) % nc] = self.favourite
        sc = sc / sc.sum()
        n_rest = len(SIZES) * self.grid**2
        rest = torch.full((n_rest,), 1.0 / n_rest, dtype=torch.float64)
        return (sc.reshape(-1, 1) * rest.reshape(1, -1)).reshape(-1)

    def channel(self, n: int) -> Tensor:
        """(n, n) p(a' | a) for one attribute with n values."""
        c = torch.full((n, n), self.noise / (n - 1), dtype=torch.float64)
        c.fill_diagonal_(1 - self.noise)
        return c

    def caption_given_z(self) -> Tensor:
        """(nz, ny) p(y | z): independent noisy copies of shape, colour and size."""
        cs, cc, cz = (self.channel(len(v)) for v in (SHAPES, COLOURS, SIZES))
        pyz = torch.einsum("as,bc,dz->abdscz", cs, cc, cz).reshape(self.ny, self.ny)
        npos = self.grid**2  # z = (shape, colour, size, pos): repeat each row over positions
        return pyz.repeat_interleave(npos, dim=0)

    def table(self) -> Tensor:
        """(nz, ny) p(z, y), float64, sums to 1."""
        return self.prior()[:, None] * self.caption_given_z()

    def pmi_table(self) -> Tensor:
        """(nz, ny) exact PMI(z, y) = log p(y|z) - log p(y), in the log domain."""
        log_cond = self.caption_given_z().log()
        log_py = torch.logsumexp(self.prior().log()[:, None] + log_cond, dim=0)
        return log_cond - log_py[None, :]

    def mutual_information(self) -> float:
        return float((self.table() * self.pmi_table()).sum())

    # --- index <-> attributes ---------------------------------------------------------------
    def z_attrs(self, z: int) -> dict:
        s, c, sz, pos = np.unravel_index(
            int(z), (len(SHAPES), len(COLOURS), len(SIZES), self.grid**2)
        )
        return {"shape": SHAPES[s], "colour": COLOURS[c], "size": SIZES[sz], "pos": int(pos)}

    def y_attrs(self, y: int) -> dict:
        s, c, sz = np.unravel_index(int(y), (len(SHAPES), len(COLOURS), len(SIZES)))
        return {"shape": SHAPES[s], "colour": COLOURS[c], "size": SIZES[sz]}

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """n paired latents (z, y) as int64 arrays; the same seed gives the same draws."""
        rng = np.random.default_rng(seed)
        flat = self.table().reshape(-1).numpy()
        idx = rng.choice(flat.size, size=n, p=flat / flat.sum())
        return idx // self.ny, idx % self.ny


def class_of_z(joint: ShapesJoint, z: np.ndarray) -> np.ndarray:
    """Zero-shot class (shape, colour) of each image latent: index shape * len(COLOURS) + colour."""
    per_class = len(SIZES) * joint.grid**2
    return np.asarray(z) // per_class


def zeroshot_prompts() -> tuple[list[str], list[list[str]]]:
    """Class names and, per class, its prompts (every zero-shot template x size)."""
    names, prompts = [], []
    for shape, colour in itertools.product(SHAPES, COLOURS):
        names.append(f"{colour} {shape}")
        prompts.append(
            [
                t.format(size=size, colour=colour, shape=shape)
                for t in ZEROSHOT_TEMPLATES
                for size in SIZES
            ]
        )
    return names, prompts


def caption(joint: ShapesJoint, y: int, rng: np.random.Generator) -> str:
    """A caption for caption latent y: a random template and random synonyms (text nuisance)."""
    a = joint.y_attrs(y)
    words = {k: SYNONYMS[v][rng.integers(len(SYNONYMS[v]))] for k, v in a.items()}
    return TEMPLATES[rng.integers(len(TEMPLATES))].format(**words)


def parse_caption(text: str) -> tuple[str, str, str]:
    """(shape, colour, size) named by a caption; inverse of `caption` up to nuisance."""
    found = {}
    for canon, syns in SYNONYMS.items():
        if any(f" {s} " in f" {text} " for s in syns):
            kind = "shape" if canon in SHAPES else "colour" if canon in COLOURS else "size"
            found[kind] = canon
    return found["shape"], found["colour"], found["size"]


def render(
    joint: ShapesJoint,
    z: int,
    jitter: tuple[int, int] = (0, 0),
    noise_sd: float = 0.0,
    rng: np.random.Generator | None = None,
    size: int = 32,
) -> np.ndarray:
    """(size, size, 3) uint8 image of image latent z, shifted by `jitter`, plus pixel noise."""
    a = joint.z_attrs(z)
    cell = size / joint.grid
    row, col = divmod(a["pos"], joint.grid)
    cx, cy = (col + 0.5) * cell + jitter[0], (row + 0.5) * cell + jitter[1]
    r = RADIUS[a["size"]] * size / 32
    img = Image.new("RGB", (size, size), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(img)
    fill = RGB[a["colour"]]
    if a["shape"] == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif a["shape"] == "square":
        q = r * 0.85  # equal-area-ish with the circle so size is not a shape cue
        draw.rectangle([cx - q, cy - q, cx + q, cy + q], fill=fill)
    elif a["shape"] == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    else:  # cross: two bars of width 2r/3
        w = r / 3
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    out = np.asarray(img, dtype=np.float64)
    if noise_sd > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        out = out + rng.normal(0.0, noise_sd, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def nuisance(rng: np.random.Generator, max_jitter: int = 1) -> tuple[int, int]:
    """Jitter drawn independently of everything (carries no caption information)."""
    j = rng.integers(-max_jitter, max_jitter + 1, size=2)
    return int(j[0]), int(j[1])
