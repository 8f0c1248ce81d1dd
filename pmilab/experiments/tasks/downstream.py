"""One head pretrained and scored downstream: zero-shot, retrieval R@1 and linear probe (T8).

`downstream_run(p)` trains one head with `pmilab pretrain`'s own loop (`pmilab.pretrain.train`,
into a temporary --out) on `p["data"]` (shapes, mnist5k, sklearn-digits), then scores the
trained model on the held-out split with `pmilab eval`'s pieces (`pretrain.evaluate`):
- `zs`: zero-shot top-1, each class's prompts merged as `pmilab eval` merges them (for the
  real digits: the held-out templates, never seen in a training caption);
- `r1`: retrieval R@1 among BLOCK candidates: the held-out pairs in a fixed shuffled order, cut
  into blocks of BLOCK; per query its R@1 credit (ties broken at random, in expectation, as
  `evaluate.retrieval_metrics`), image->text and text->image; the mean over every query;
- `probe`: logistic regression on the image tower's head output (`evaluate.probe_top1`), fit
  on up to `probe_n` training images (a fixed random subset), scored on the held-out images;
- `*_cross` (mnist5k and sklearn-digits): zero-shot and R@1 on all of the other set
  (`real_images.CROSS`), which the model never saw.

For the linear head (`calibrate`), the same scores of its own results worsened by a planted
amount (docs/theory.md T8, calibration pairs), drawn per seed: every held-out item it gets right
is made wrong with probability q = s·tol/(its accuracy), s = 2 (`*_near`) and 0.5 (`*_half`);
and the untrained model's scores (`*_init`: the same seed's towers and head at step 0, the
strawman control).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pmilab.pretrain.data import ImageText, SkipLog
from pmilab.pretrain.evaluate import (
    class_scores,
    class_text_outputs,
    embed_images,
    embed_texts,
    flat_features,
    greater_and_ties,
    load_run,
    probe_top1,
    run_preprocess,
)
from pmilab.pretrain.model import build_model
from pmilab.pretrain.readers import load_data
from pmilab.pretrain.real_images import CROSS
from pmilab.pretrain.train import PretrainConfig, train

BLOCK = 32  # retrieval candidates per query (docs/theory.md T8)
ORDER_SEED = 0  # the fixed shuffled order of the held-out pairs (the blocks) and probe subset
SCALES = {"near": 2.0, "half": 0.5}  # the calibration pair's planted differences, x tol
MEASURES = ("zs", "r1", "probe")
# the columns downstream_run returns (NaN where a run has none: no cross set, not calibrated)
METRICS = [
    *MEASURES,
    "zs_cross",
    "r1_cross",
    *[f"{m}_{case}" for m in MEASURES for case in SCALES],
    "zs_init",
    "r1_init",
    "n_eval",
    "n_cross",
    "final_loss",
    "train_s",
    "eval_s",
]
# PretrainConfig fields a run's parameters may set (the rest are the task's own)
TRAIN_FIELDS = (
    "similarity",
    "seed",
    "steps",
    "batch_size",
    "lr",
    "warmup",
    "width",
    "image_layers",
    "text_layers",
    "dim",
    "points",
    "image_size",
    "context",
    "vocab_size",
    "shapes_train",
    "shapes_test",
)


def r1_credits(lm: torch.Tensor) -> np.ndarray:
    """Per query (rows, then columns) its R@1 credit: 1/(1 + ties) when no candidate beats the
    true partner, else 0 (`evaluate.retrieval_metrics` at k = 1, one value per query)."""
    out = []
    for m in (lm, lm.T):
        g, t = (x.double() for x in greater_and_ties(m))
        out.append(torch.where(g == 0, 1.0 / (t + 1), torch.zeros_like(t)).numpy())
    return np.concatenate(out)


def block_r1(model, img: tuple, txt: tuple, block: int = BLOCK) -> np.ndarray:
    """R@1 credits of every query, among the `block` pairs of its block (a short last block is
    dropped)."""
    n = len(img[0]) // block * block
    parts = []
    for s in range(0, n, block):
        sl = slice(s, s + block)
        with torch.no_grad():
            lm = model.logit_matrix(*(t[sl] for t in img), *(t[sl] for t in txt))
        parts.append(r1_credits(lm.double()))
    return np.concatenate(parts) if parts else np.zeros(0)


def shuffled(data: ImageText, n: int | None = None) -> ImageText:
    """`data` in a fixed shuffled order (ORDER_SEED), its first n."""
    perm = np.random.default_rng(ORDER_SEED).permutation(len(data))
    return data.subset(perm if n is None else perm[:n])


def scores(model, tok, prep, test: ImageText) -> dict:
    """Per-item results on `test`: zero-shot correctness (n,), R@1 credits (2 n') and the
    image head outputs (for the probe)."""
    img, kept = embed_images(model, test, SkipLog(), prep=prep)
    txt = embed_texts(model, tok, [test.captions[i] for i in kept])
    cls = class_scores(model, img, class_text_outputs(model, tok, test.prompts))
    correct = cls.argmax(1).numpy() == test.labels[kept]
    return {"zs": correct, "r1": block_r1(model, img, txt), "img": img, "labels": test.labels[kept]}


def planted(values: np.ndarray, scale: float, tol: float, rng: np.random.Generator) -> float:
    """The mean of per-item results (1/0 correctness, or R@1 credits) after each credited item
    is zeroed with probability q = scale·tol/mean: the expected drop is scale·tol (q capped at
    1)."""
    mean = float(values.mean())
    q = min(1.0, scale * tol / mean) if mean > 0 else 0.0
    return float((values * (rng.random(values.shape) >= q)).mean())


def planted_count(acc: float, n: int, scale: float, tol: float, rng: np.random.Generator) -> float:
    """The same for an accuracy known as a count: round(acc·n) correct, each made wrong with
    probability q = scale·tol/acc."""
    correct = round(acc * n)
    q = min(1.0, scale * tol / acc) if acc > 0 else 0.0
    return float((correct - rng.binomial(correct, q)) / n)


def train_config(p: dict, out: str) -> PretrainConfig:
    kw = {k: p[k] for k in TRAIN_FIELDS if k in p}
    return PretrainConfig(
        data=p["data"],
        out=out,
        progress=False,
        ckpt_every=p["steps"],
        log_every=p["steps"],
        threads=p.get("threads", 1),
        **kw,
    )


def downstream_run(p: dict) -> dict:
    """Train one head on p["data"] and score it (module docstring); a dict of METRICS."""
    res = dict.fromkeys(METRICS, math.nan)
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pmilab-t8-") as out:
        summary = train(train_config(p, out))
        res["final_loss"], res["train_s"] = summary["final_loss"], time.perf_counter() - t0
        t1 = time.perf_counter()
        model, tok, ckpt = load_run(Path(out))
    torch.set_num_threads(p.get("threads", 1))
    try:
        prep = run_preprocess(model, ckpt["config"])
        sizes = (p.get("shapes_train", 5000), p.get("shapes_test", 1000))
        test = shuffled(load_data(p["data"], "test", sizes, progress=False), p.get("n_eval"))
        train_set = load_data(p["data"], "train", sizes, progress=False)
        probe_set = shuffled(train_set, min(len(train_set), p.get("probe_n", 2000)))
        own = scores(model, tok, prep, test)
        res.update(zs=float(own["zs"].mean()), r1=float(own["r1"].mean()), n_eval=len(own["zs"]))
        tr_img, tr_kept = embed_images(model, probe_set, SkipLog(), prep=prep)
        res["probe"] = probe_top1(
            flat_features(tr_img),
            probe_set.labels[tr_kept],
            flat_features(own["img"]),
            own["labels"],
        )
        if p.get("cross") and p["data"] in CROSS:
            other = shuffled(load_data(CROSS[p["data"]], "all"), p.get("n_cross"))
            cross = scores(model, tok, prep, other)
            res.update(
                zs_cross=float(cross["zs"].mean()),
                r1_cross=float(cross["r1"].mean()),
                n_cross=len(cross["zs"]),
            )
        if p.get("calibrate"):
            tol = float(p["tol"])
            for case, s in SCALES.items():
                rng = np.random.default_rng([int(p["seed"]), 8, int(s * 10)])
                res[f"zs_{case}"] = planted(own["zs"].astype(float), s, tol, rng)
                res[f"r1_{case}"] = planted(own["r1"], s, tol, rng)
                res[f"probe_{case}"] = planted_count(res["probe"], len(own["zs"]), s, tol, rng)
            torch.manual_seed(int(p["seed"]))  # as pretrain's setup_model: the step-0 model
            init = build_model(ckpt["model_config"]).eval()
            ini = scores(init, tok, prep, test)
            res.update(zs_init=float(ini["zs"].mean()), r1_init=float(ini["r1"].mean()))
    finally:
        torch.set_num_threads(threads)
    res["eval_s"] = time.perf_counter() - t1
    return res
