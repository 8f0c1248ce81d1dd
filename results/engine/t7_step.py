"""T7's step and held-out evaluation, before and after the bit-identical changes, and the two
rounding-level candidates that were measured and not kept (results/engine/t7_step.md).

    .venv/bin/python results/engine/t7_step.py [--blocks 30] [--head kme|linear]

One process, one torch thread, CPU time (time.process_time). The variants train identical copies
of one model on the same batches and alternate in blocks of 10 steps, so the machine's load
drifts over all of them alike; the paired ratio to `before` is taken block by block.
- before:   `TemplateBank.images` as it was (clip(rint(base + rng.normal(...))) with its
            temporaries), the held-out grid re-drawn at every record;
- after:    the current code (in-place rendering, the held-out grid drawn once per run);
- cl:       after + the pixel tower in channels_last, its input built from the NHWC pixels
            without the NCHW copy (changes the numbers at float32 rounding; not kept);
- small:    after + the KME head's fused small-set path at T7's shape (`base.use_reference`
            forced; changes the numbers at float32 rounding; not kept).
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch

from pmilab.experiments.tasks import pixels as P
from pmilab.losses import symmetric_infonce
from pmilab.pretrain.shapes import LatentShapesJoint
from pmilab.pretrain.shapes_stream import TemplateBank
from pmilab.runtime.optim import adamw
from pmilab.similarity import base as B

AFTER_IMAGES, USE_REFERENCE = TemplateBank.images, B.use_reference


def before_images(self, z, jitter, rng, noise_sd):
    """`TemplateBank.images` before this change (the same pixels)."""
    base = self.bank[np.asarray(z), np.asarray(jitter)].astype(np.float64)
    noise = rng.normal(0.0, noise_sd, base.shape) if noise_sd > 0 else 0.0
    return np.clip(np.rint(base + noise), 0, 255).astype(np.uint8)


def fresh_draws(data, n, seed):
    images, z = data.heldout_images(n, seed + P.EVAL_SEED_OFFSET)
    ids, _, y = data.heldout_captions(n, seed + P.EVAL_SEED_OFFSET)
    return images, z, ids, y


def nhwc(images: np.ndarray) -> torch.Tensor:
    x = np.asarray(images, dtype=np.float32)
    return torch.from_numpy((x - np.float32(127.5)) / np.float32(64.0)).permute(0, 3, 1, 2)


def setup(kind: str) -> None:
    TemplateBank.images = before_images if kind == "before" else AFTER_IMAGES
    P.heldout_draws = fresh_draws if kind == "before" else CACHED
    B.use_reference = small_at_training_shape if kind == "small" else USE_REFERENCE


def small_at_training_shape(px, py) -> bool:
    """The fused path for the training step's (128, 128) logits only; the evaluation's as now."""
    return (len(px) == len(py) == 128) or USE_REFERENCE(px, py)


CACHED = P.heldout_draws


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=30)
    ap.add_argument("--head", default="kme", choices=("kme", "linear"))
    ap.add_argument("--kinds", default="before,after,cl,small")
    args = ap.parse_args()
    torch.set_num_threads(1)
    joint = LatentShapesJoint(eps=0.01)
    data = P.make_data({"data": "fresh", "image_size": 16, "batch_size": 128, "seed": 0}, joint)
    pmi = joint.pmi_table()
    torch.manual_seed(0)
    points = 4 if args.head == "kme" else 1
    m0 = P.PixelTextModel(args.head, data.captions.vocab, 32, 4, points)
    kinds = args.kinds.split(",")

    def make(kind):
        m = copy.deepcopy(m0)
        if kind == "cl":
            m.image.conv.to(memory_format=torch.channels_last)
        opt = adamw(m, m.similarity.no_decay_parameters(), 2e-3, 0.05)

        def step(s):
            b = data.batch(s)
            x = nhwc(b.images) if kind == "cl" else b.pixels()
            loss = symmetric_infonce(m.logits(m.encode_image(x), m.encode_text(b.ids)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            m.similarity.clamp_()

        def evaluate():
            P.heldout_pmi(m, data, pmi, 1024, 0)

        return step, evaluate

    fns = {k: make(k) for k in kinds}
    for k, (step, ev) in fns.items():
        setup(k)
        step(0)
        step(1)
        ev()
    steps = {k: [] for k in kinds}
    evals = {k: [] for k in kinds}
    load0 = os.getloadavg()
    for blk in range(args.blocks):
        for k, (step, ev) in fns.items():
            setup(k)
            t = time.process_time()
            for s in range(10):
                step(100 + 10 * blk + s)
            steps[k].append((time.process_time() - t) / 10 * 1e3)
            if blk % 3 == 0:
                t = time.process_time()
                ev()
                evals[k].append((time.process_time() - t) * 1e3)
    setup("after")
    load1 = os.getloadavg()
    print(
        f"head {args.head}, {args.blocks} blocks of 10 steps, load {load0[0]:.2f} -> {load1[0]:.2f}"
    )
    ref = np.array(steps["before"]) if "before" in kinds else None
    for k in kinds:
        v, e = np.array(steps[k]), np.array(evals[k])
        ratio = f"{np.median(v / ref):.3f}" if ref is not None else "-"
        print(
            f"{k:7s} step median {np.median(v):6.2f} ms (min {v.min():6.2f}), paired ratio to "
            f"before {ratio}; evaluation median {np.median(e):6.1f} ms"
        )


if __name__ == "__main__":
    main()
