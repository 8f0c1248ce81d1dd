"""The known-PMI shapes dataset (docs/theory.md T7): real PNG images and captions, exact PMI.

Two joints over the same image latent z and caption latent y:
- `ShapesJoint`: every caption attribute is a noisy copy of the image's (the pretraining data);
- `LatentShapesJoint`: image and caption are linked only through a hidden class c with K = 3
  values (image ⟂ caption | c), so exp(PMI) has rank <= 3 while PMI is full rank: the design
  that separates the similarity families on pixels (T7, T2). Described below at its class.

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

from pmilab.dists.latent import LatentClass

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


class _ShapesLatents:
    """What both shapes joints share: the latent index layout and sampling from `table()`.

    z indexes (shape, colour, size, position) in row-major order over
    (len(SHAPES), len(COLOURS), len(SIZES), grid**2); y indexes (shape', colour', size').
    """

    grid: int

    @property
    def nz(self) -> int:
        return len(SHAPES) * len(COLOURS) * len(SIZES) * self.grid**2

    @property
    def ny(self) -> int:
        return len(SHAPES) * len(COLOURS) * len(SIZES)

    def table(self) -> Tensor:  # pragma: no cover - defined by each joint
        raise NotImplementedError

    def pmi_table(self) -> Tensor:  # pragma: no cover - defined by each joint
        raise NotImplementedError

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


@dataclass(frozen=True)
class ShapesJoint(_ShapesLatents):
    """The designed joint p(z, y) and its exact PMI (T7): caption attributes are noisy copies.

    z indexes (shape, colour, size, position) in row-major order over
    (len(SHAPES), len(COLOURS), len(SIZES), grid**2); y indexes (shape', colour', size').
    """

    noise: float = 0.15  # probability that a caption attribute is wrong
    favourite: float = 3.0  # prior weight of each shape's favourite colour (others weigh 1)
    grid: int = 2  # positions on a grid x grid lattice

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


# T7's hidden class (LatentShapesJoint): each shape and each colour is evidence for one of
# HIDDEN_CLASSES classes (the i-th shape and the i-th colour for class i).
HIDDEN_CLASSES = 4
SHAPE_VOTE = {"circle": 0, "square": 1, "triangle": 2, "cross": 3}
COLOUR_VOTE = {"red": 0, "green": 1, "blue": 2, "yellow": 3}


@dataclass(frozen=True)
class LatentShapesJoint(_ShapesLatents):
    """The hidden-class shapes joint of T7: image ⟂ caption | c, c in {0, 1, 2, 3}.

    - p(z) is uniform over the image latents z = (shape, colour, size, position), p(y) uniform
      over the caption latents y = (shape', colour', size').
    - An image's class posterior is the average of its shape's and its colour's votes, mixed
      with `eps` of every class (which keeps PMI finite and bounded below):
      p(c | z) = (1 − K·eps)·½(e_shape + e_colour) + eps, with e_a one-hot on a's class. A
      caption's p(c | y) is the same rule applied to the shape and colour it names. Size and
      position vote for nothing: they are rendered and named, and PMI does not depend on them.
    - The votes are symmetric in the classes, so p(c) = 1/K, and
      p(z, y) = p(z) p(y) Σ_c p(c|z) p(c|y) / p(c):  exp PMI = K · P_z P_yᵀ has rank <= K = 4,
      while PMI has full rank 10 on its 10 distinct posterior types (4 where shape and colour agree,
      6 where they name two classes): far above the d + 1 of a linear head with d = K
      (`latent()` is the `pmilab.dists.LatentClass` of this factorisation; T2).
    - The caption does not describe the image: given the class, its attributes are a draw of
      their own. That is the point of the design (docs/theory.md T7): PMI(z, y) is then far
      from every rank-K table, and the linear family's floor at d = K stays large.

    With eps = 0.01: I(X;Y) = 0.365 nats, PMI in [−2.55, 1.33], sd(PMI) = 1.37 nats under
    p(z)p(y), and the exact Eckart–Young floor of a linear head (rank d plus a constant) is
    0.39 sd(PMI) at d = 3, 0.27 at d = 4 = K and 0.21 at d = 5 (`tests/pretrain/test_shapes.py`
    pins these).
    """

    eps: float = 0.01  # weight of every class in every posterior
    grid: int = 2  # positions on a grid x grid lattice

    @property
    def k(self) -> int:
        return HIDDEN_CLASSES

    def _posterior(self, shapes: list[str], colours: list[str]) -> Tensor:
        k = HIDDEN_CLASSES
        votes = torch.zeros(len(shapes), k, dtype=torch.float64)
        for i, (s, c) in enumerate(zip(shapes, colours, strict=True)):
            votes[i, SHAPE_VOTE[s]] += 0.5
            votes[i, COLOUR_VOTE[c]] += 0.5
        return (1 - k * self.eps) * votes + self.eps

    def posterior_z(self) -> Tensor:
        """(nz, K) p(c | z)."""
        a = [self.z_attrs(z) for z in range(self.nz)]
        return self._posterior([t["shape"] for t in a], [t["colour"] for t in a])

    def posterior_y(self) -> Tensor:
        """(ny, K) p(c | y)."""
        a = [self.y_attrs(y) for y in range(self.ny)]
        return self._posterior([t["shape"] for t in a], [t["colour"] for t in a])

    def latent(self) -> LatentClass:
        """The joint as a `LatentClass`: class prior (K,), p(z | c) (K, nz), p(y | c) (K, ny)."""
        if not 0 < self.eps < 1 / HIDDEN_CLASSES:
            raise ValueError(f"eps must lie in (0, 1/{HIDDEN_CLASSES}), got {self.eps}")
        pz, py = self.posterior_z(), self.posterior_y()
        prior = pz.mean(0)  # uniform p(z): p(c) = E_z p(c | z) (= 1/K by symmetry)
        return LatentClass(prior, (pz / (self.nz * prior)).T, (py / (self.ny * prior)).T)

    def table(self) -> Tensor:
        """(nz, ny) p(z, y), float64, sums to 1."""
        return self.latent().table

    def pmi_table(self) -> Tensor:
        """(nz, ny) exact PMI(z, y) = log Σ_c p(c|z) p(c|y) / p(c)."""
        return self.latent().pmi_table()


def class_of_z(joint: _ShapesLatents, z: np.ndarray) -> np.ndarray:
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


def caption(joint: _ShapesLatents, y: int, rng: np.random.Generator) -> str:
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
    joint: _ShapesLatents,
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
