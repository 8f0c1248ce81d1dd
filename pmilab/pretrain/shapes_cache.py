"""Write the shapes dataset (T7) to disk once: PNG files plus open_clip-style CSVs.

`ensure_shapes(...)` returns the cache directory, generating it on first use with a fixed seed.
Generation writes into a temporary sibling directory and renames it into place, so a killed
generation or two concurrent ones never leave a half-written dataset behind.

Layout: <root>/shapes-<params>/{train,test}.csv with columns filepath, caption, label, z, y
(filepath relative to the CSV), images under train/ and test/, and meta.json.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pmilab import atomic
from pmilab.pretrain.shapes import ShapesJoint, caption, class_of_z, nuisance, render

NOISE_SD = 6.0  # pixel noise (grey levels); far below the colour contrasts, so z stays recoverable
SPLIT_SEEDS = {"train": 0, "test": 1}


def cache_root() -> Path:
    """$PMILAB_CACHE, else ~/.cache/pmilab."""
    env = os.environ.get("PMILAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "pmilab"


def shapes_dir_name(n_train: int, n_test: int, seed: int, joint: ShapesJoint) -> str:
    return (
        f"shapes-n{n_train}-t{n_test}-s{seed}-e{joint.noise:g}-f{joint.favourite:g}-g{joint.grid}"
    )


def ensure_shapes(
    n_train: int = 5000,
    n_test: int = 1000,
    seed: int = 0,
    joint: ShapesJoint | None = None,
    root: Path | None = None,
    progress: bool = True,
) -> Path:
    """The cache directory of this shapes dataset, generated atomically on first use."""
    joint = joint or ShapesJoint()
    root = Path(root) if root is not None else cache_root()
    final = root / shapes_dir_name(n_train, n_test, seed, joint)
    if (final / "meta.json").exists():
        return final
    with atomic.directory(final) as tmp:
        for split, n in (("train", n_train), ("test", n_test)):
            write_split(tmp, split, n, 1000 * seed + SPLIT_SEEDS[split], joint, progress)
        meta = {
            "n_train": n_train,
            "n_test": n_test,
            "seed": seed,
            "noise": joint.noise,
            "favourite": joint.favourite,
            "grid": joint.grid,
            "pixel_noise_sd": NOISE_SD,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return final


def write_split(
    out: Path, split: str, n: int, seed: int, joint: ShapesJoint, progress: bool
) -> None:
    """n images + captions drawn from p(z, y) with `seed`; nuisance from a separate stream."""
    z, y = joint.sample(n, seed=seed)
    rng = np.random.default_rng(seed + 7919)  # nuisance and caption wording
    (out / split).mkdir()
    labels = class_of_z(joint, z)
    with open(out / f"{split}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "caption", "label", "z", "y"])
        for i in tqdm(range(n), desc=f"shapes {split}", disable=not progress, leave=False):
            img = render(joint, int(z[i]), nuisance(rng), NOISE_SD, rng)
            rel = f"{split}/{i:06d}.png"
            Image.fromarray(img).save(out / rel)
            w.writerow([rel, caption(joint, int(y[i]), rng), int(labels[i]), int(z[i]), int(y[i])])
