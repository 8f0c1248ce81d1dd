"""`pmilab eval`: zero-shot, retrieval, linear probe and, on shapes, PMI errors (T1, T3, T7).

- Zero-shot: each class's prompts form one text "mixture" (T3): for a point-set head (WPSE,
  KME) the prompt point sets are concatenated into a single point set (a WPSE score is then the
  mean of the prompt scores, E_q ℓ; a KME score, with log-softmax weights shifted by −log T,
  the log of the mean embedding's inner product, log E_q exp ℓ); for a vector head (linear)
  the class score is the mean prompt logit. The head's `HeadInputs` decides, not its name. Classes and prompts
  come from the dataset (shapes, digits, a CSV `label` column), or from a labels file and a
  templates file (JSON lists, like the WPSE code's labels.json / templates.json; a template holds
  `{}` or `{c}` where the class name goes); the data's labels (a `label` column of names or
  indices, or shards' `.cls` indices) then index the labels file.
- Retrieval: recall@1/5/10 and the mean and median rank of the true partner (1 = first; ties
  broken at random, in expectation), image->text and text->image, on held-out pairs.
- Probe: scikit-learn logistic regression on the image tower's head output (flattened). On a
  user's CSV or shards with labels, the first half (in a seeded order) fits the probe and the
  second half is held out; without labels every sample (up to --n) is held out.
- Every skipped sample of the evaluation is counted in eval.json (`skipped`, and per split in
  `skipped_by_split`), the probe split's included.
- Shapes only: the logit matrix of held-out images against held-out captions is compared with
  the exact PMI(z_i, y_j) (docs/theory.md measured quantities, Monte Carlo over the grid).
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from pmilab import metrics
from pmilab.errors import InputError
from pmilab.pretrain.checkpoint import load_checkpoint
from pmilab.pretrain.data import ImageText, ImageTextDataset, SkipLog, collate, skip_undecodable
from pmilab.pretrain.logs import one_line_warnings
from pmilab.pretrain.model import ImageTextModel, build_model
from pmilab.pretrain.preprocess import Preprocess, preprocess_for
from pmilab.pretrain.readers import LABEL_TEMPLATES, CsvKeys, load_data
from pmilab.pretrain.real_images import REAL_DATA
from pmilab.pretrain.tokenizer import encode, from_string, load_tokenizer

MI_BATCH = 100  # held-out batch size of mi_infonce (its estimate is capped at log 100 = 4.6)


RECALL_AT = (1, 5, 10)


def load_run(directory: Path, similarity: str | None = None):
    """(model in eval mode, tokenizer, checkpoint) of a `pmilab pretrain` --out directory."""
    ckpt = load_checkpoint(directory)
    sim = ckpt["model_config"]["similarity"]
    if similarity is not None and similarity != sim:
        raise InputError(
            f"the checkpoint in {directory} was trained with --similarity {sim}, not {similarity}"
        )
    model = build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    model.eval()  # float32: load_state_dict casts an fp64 checkpoint
    if "tokenizer" in ckpt:
        return model, from_string(ckpt["tokenizer"]), ckpt
    return model, load_tokenizer(Path(directory) / "tokenizer.json"), ckpt


def run_preprocess(model: ImageTextModel, config: dict) -> Preprocess:
    """The evaluation preprocessing of a run (its config.json's "pretrain" settings): the run's
    `preprocess` (a checkpoint from before the flag: simple) at the model's image size."""
    return preprocess_for(config.get("preprocess") or "simple", model.cfg.image_size, train=False)


@torch.no_grad()
def embed_images(
    model: ImageTextModel,
    data: ImageText,
    skips: SkipLog,
    batch: int = 256,
    progress: bool = False,
    prep: Preprocess | None = None,
) -> tuple[tuple[Tensor, ...], np.ndarray]:
    """Head outputs of every decodable image and their indices; the others go to `skips`.
    `prep`: the run's preprocessing (default: simple at the model's image size); the images go
    to the model's device and dtype."""
    loader = torch.utils.data.DataLoader(
        ImageTextDataset(data, model.cfg.image_size, prep), batch_size=batch, collate_fn=collate
    )
    p = next(model.parameters())
    parts, kept = [], []
    for images, idx, bad in tqdm(loader, desc="images", disable=not progress, leave=False):
        skip_undecodable(skips, data, bad)
        if len(idx):
            parts.append(model.encode_image(images.to(p.device, p.dtype)))
            kept += idx
    if not parts:
        raise InputError(f"no decodable image among the {len(data)} evaluated sample(s)")
    return tuple(torch.cat(p) for p in zip(*parts, strict=True)), np.array(kept)


@torch.no_grad()
def embed_texts(model: ImageTextModel, tok, texts: list[str], batch: int = 512):
    device = next(model.parameters()).device
    parts = []
    for i in range(0, len(texts), batch):
        ids, mask = encode(tok, texts[i : i + batch], model.cfg.context)
        parts.append(model.encode_text(ids.to(device), mask.to(device)))
    return tuple(torch.cat(p) for p in zip(*parts, strict=True))


@torch.no_grad()
def logit_matrix(model: ImageTextModel, img, txt, chunk: int = 256) -> Tensor:
    """(n, m) logits in row chunks (the point-set kernels are O(chunk·m·M·N) memory)."""
    rows = [
        model.logit_matrix(*(t[i : i + chunk] for t in img), *txt)
        for i in range(0, len(img[0]), chunk)
    ]
    return torch.cat(rows)


def class_text_outputs(model: ImageTextModel, tok, prompts: list[list[str]]):
    """Per class, its prompts merged into one mixture (T3): a point-set head's prompt sets
    become one set; a vector head (linear) keeps every prompt (its class score is their mean)."""
    per_class = [embed_texts(model, tok, p) for p in prompts]
    if model.inputs.kind == "vector":
        return per_class
    merged = []
    for points, weights in per_class:  # (T, N, d), (T, N)
        t = len(points)
        if model.inputs.weights == "log_softmax":  # mixture (1/T) sum_t nu_t: log w - log T
            weights = weights - math.log(t)
        merged.append((points.reshape(1, -1, points.shape[-1]), weights.reshape(1, -1)))
    return merged


@torch.no_grad()
def class_scores(model: ImageTextModel, img, class_txt) -> Tensor:
    """(n, classes) zero-shot scores."""
    cols = []
    for txt in class_txt:
        lm = logit_matrix(model, img, txt)  # (n, T) for linear, (n, 1) for mixtures
        cols.append(lm.mean(1))
    return torch.stack(cols, 1)


def recall_at(logits: Tensor, k: int) -> float:
    """Fraction of rows whose diagonal entry is among the top k of the row."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == torch.arange(len(logits))[:, None]).any(1).sum().item() / len(logits)


def greater_and_ties(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Per row: how many entries beat the diagonal one, and how many others tie with it."""
    diag = logits.diagonal()[:, None]
    greater = (logits > diag).sum(1)
    return greater, (logits == diag).sum(1) - 1


def retrieval_metrics(lm: Tensor) -> dict:
    """R@1/5/10, mean and median rank, image->text (rows) and text->image (columns).

    Ties are broken at random, in expectation: a partner with g entries above it and t others
    equal to it has rank 1 + g + u, u uniform on 0..t. So R@k = E[rank <= k] and the rank is
    its mean 1 + g + t/2: a collapsed model (all logits equal) scores chance, not 1.0, and a
    duplicate caption shares its place fairly with its copies.
    """
    res = {}
    for name, m in (("i2t", lm), ("t2i", lm.T)):
        g, t = (x.double() for x in greater_and_ties(m))
        for k in RECALL_AT:
            res[f"retrieval_r{k}_{name}"] = (
                ((k - g).clamp(0, None).minimum(t + 1) / (t + 1)).mean().item()
            )
        ranks = 1 + g + t / 2
        res[f"retrieval_mean_rank_{name}"] = ranks.mean().item()
        res[f"retrieval_median_rank_{name}"] = ranks.median().item()
    return res


def flat_features(img: tuple[Tensor, ...]) -> np.ndarray:
    return torch.cat([t.reshape(len(t), -1) for t in img], 1).double().numpy()


def probe_top1(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    scaler = StandardScaler().fit(train_x)
    # one BLAS thread: on a shared machine multi-threaded BLAS on these small matrices spins
    # (measured 77 s vs ~1 s for the same fit under load)
    with threadpool_limits(1):
        clf = LogisticRegression(max_iter=1000).fit(scaler.transform(train_x), train_y)
    return float((clf.predict(scaler.transform(test_x)) == test_y).mean())


def pmi_metrics(lm: Tensor, pmi: Tensor) -> dict:
    """docs/theory.md PMI errors of an (n, n) held-out logit grid against the exact PMI grid."""
    out = {
        "pmi_rmse_product": metrics.pmi_rmse_product(lm, pmi),
        "pmi_rmse_joint": metrics.pmi_rmse_joint(lm.diagonal(), pmi.diagonal()),
        "pmi_delta": metrics.pmi_delta(lm, pmi),
        "pmi_corr": metrics.pmi_corr(lm, pmi),
        # reference: the error of a constant logit (the spread of PMI itself on the grid)
        "pmi_rmse_constant": metrics.pmi_rmse_product(torch.zeros_like(pmi), pmi),
    }
    k = len(lm) // MI_BATCH
    if k >= 1:
        blocks = torch.stack(
            [
                lm[i * MI_BATCH : (i + 1) * MI_BATCH, i * MI_BATCH : (i + 1) * MI_BATCH]
                for i in range(k)
            ]
        )
        out["mi_infonce"] = metrics.mi_infonce(blocks)
    res = {}
    for name, est in out.items():
        res[name] = float(est)
        if getattr(est, "se", 0.0):
            res[name + "_se"] = est.se
    return res


def read_json_list(path: str, what: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        items = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not JSON ({e})") from None
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        raise InputError(f"{path} must hold a non-empty JSON list of strings ({what})")
    return items


def fill(template: str, name: str) -> str:
    return template.replace("{c}", name).replace("{}", name)


def zeroshot_from_files(data: ImageText, names: list[str] | None, templates: list[str] | None):
    """Give `data` the classes of a labels file and the prompts of a templates file."""
    if names is None and templates is None:
        return
    if data.labels is None:
        raise InputError(
            "zero-shot needs labels in the data: a 'label' column (class names or indices) or "
            ".cls members in the shards"
        )
    if names is not None:
        if data.class_names is None:  # .cls indices
            idx = np.asarray(data.labels)
        else:
            lookup = []
            for n in data.class_names:
                if n in names:
                    lookup.append(names.index(n))
                elif n.isdigit() and int(n) < len(names):
                    lookup.append(int(n))
                else:
                    raise InputError(
                        f"label {n!r} of the data is neither in the labels file nor an index into it"
                    )
            idx = np.asarray(lookup, dtype=np.int64)[data.labels]
        if len(idx) and (idx.min() < 0 or idx.max() >= len(names)):
            raise InputError(
                f"a label index of the data is outside the {len(names)} labels of the labels file"
            )
        data.labels, data.class_names = idx.astype(np.int64), list(names)
    if data.class_names is None:
        raise InputError("the data's labels are indices: pass --zeroshot-labels to name them")
    tmpl = templates or list(LABEL_TEMPLATES)
    data.prompts = [[fill(t, n) for t in tmpl] for n in data.class_names]


@one_line_warnings("pmilab eval")
def evaluate(
    checkpoint: Path,
    spec: str,
    out: Path | None = None,
    n_max: int = 1000,
    similarity: str | None = None,
    progress: bool = True,
    labels_file: str | None = None,
    templates_file: str | None = None,
    keys: CsvKeys | None = None,
    overwrite: bool = False,
) -> dict:
    """All metrics of one checkpoint on `spec`'s held-out split; writes OUT/eval.json.

    An `out` that holds an earlier eval.json (or another command's output) is refused before
    anything is loaded, unless overwrite=True (`pmilab.outputs.check_out`).
    Warnings (skipped samples, a skipped probe) print as one line each (logs.one_line_warnings).
    """
    if out is not None:
        from pmilab.outputs import check_out

        check_out(out, overwrite, flag="overwrite=True")
    if n_max < 2:
        raise InputError(f"--n must be at least 2 (held-out pairs to evaluate), got {n_max}")
    names = read_json_list(labels_file, "labels") if labels_file else None
    templates = read_json_list(templates_file, "templates") if templates_file else None
    model, tok, ckpt = load_run(Path(checkpoint), similarity)
    cfg = ckpt["config"]
    if keys is None:
        keys = CsvKeys(cfg["csv_separator"], cfg["csv_img_key"], cfg["csv_caption_key"])
    sizes = (cfg.get("shapes_train", 5000), cfg.get("shapes_test", 1000))
    # shards: stream the first 2n samples (n held out, n for the probe); never index them all
    test = load_data(spec, "test", sizes, progress=progress, keys=keys, limit=2 * n_max)
    probe_skips, test_skips = SkipLog(), SkipLog()
    if spec in ("shapes", "digits", *REAL_DATA):  # the probe fits the training split
        train = load_data(spec, "train", sizes, progress=progress)
        zeroshot_from_files(train, names, templates)
        zeroshot_from_files(test, names, templates)
    else:
        zeroshot_from_files(test, names, templates)
        train = None
        if test.labels is not None:  # the first half fits the probe, the second is held out
            perm = np.random.default_rng(0).permutation(len(test))
            train, test = test.subset(perm[: len(test) // 2]), test.subset(perm[len(test) // 2 :])
    test = test.subset(np.arange(min(n_max, len(test))))
    prep = run_preprocess(model, cfg)
    img, kept = embed_images(model, test, test_skips, progress=progress, prep=prep)
    txt = embed_texts(model, tok, [test.captions[i] for i in kept])
    lm = logit_matrix(model, img, txt)  # (n, n) held-out images x their captions
    res: dict = {
        "checkpoint": str(checkpoint),
        "data": spec,
        "similarity": model.cfg.similarity,
        "n_eval": len(kept),
        "steps": ckpt["step"],
    }
    res.update(retrieval_metrics(lm))
    if test.labels is not None and test.prompts is not None:
        scores = class_scores(model, img, class_text_outputs(model, tok, test.prompts))
        res["zeroshot_top1"] = float((scores.argmax(1).numpy() == test.labels[kept]).mean())
        res["zeroshot_classes"] = test.class_names
        res["zeroshot_chance"] = 1.0 / len(test.class_names)
    if test.labels is not None and train is not None:
        n_probe = min(len(train), 2000)
        probe = train.subset(np.arange(n_probe))
        tr_img, tr_kept = embed_images(model, probe, probe_skips, prep=prep)
        if len(np.unique(train.labels[tr_kept])) >= 2:
            res["probe_top1"] = probe_top1(
                flat_features(tr_img), train.labels[tr_kept], flat_features(img), test.labels[kept]
            )
        else:  # a classifier needs two classes; say so instead of crashing
            res["probe_top1"] = None
            warnings.warn("linear probe skipped: its training half has one class", stacklevel=2)
    by_split = {
        "data": dict(test.skipped),  # what the reader dropped (empty captions, bad members)
        "eval": test_skips.counts(),
        "probe": probe_skips.counts(),
    }
    res["skipped"] = dict(sum((Counter(v) for v in by_split.values()), Counter()))
    res["skipped_by_split"] = by_split
    if test.joint is not None and "z" in test.latents:
        z, y = test.latents["z"][kept], test.latents["y"][kept]
        pmi = test.joint.pmi_table()[torch.as_tensor(z)][:, torch.as_tensor(y)]  # (n, n)
        res.update(pmi_metrics(lm.double(), pmi))
        res["mutual_information"] = test.joint.mutual_information()
    if out is not None:
        from pmilab import atomic

        Path(out).mkdir(parents=True, exist_ok=True)
        atomic.write_json(Path(out) / "eval.json", res)
    return res
