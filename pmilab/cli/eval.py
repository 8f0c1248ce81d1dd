"""`pmilab eval`: zero-shot, retrieval, linear probe (and PMI errors on shapes) of a checkpoint."""

from __future__ import annotations

import argparse
import json

from pmilab.errors import InputError
from pmilab.outputs import check_out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a pretrain checkpoint: zero-shot, retrieval, probe, PMI errors",
        description="Writes OUT/eval.json: zeroshot_top1 (classes from the data or from "
        "--zeroshot-labels / --zeroshot-templates), retrieval R@1/5/10 with mean and median rank "
        "(i2t, t2i), probe_top1, every skipped sample (per split), and, on --data shapes, the "
        "docs/theory.md PMI errors against the exact PMI of the held-out images and captions.",
    )
    p.add_argument("--checkpoint", required=True, help="the --out directory of `pmilab pretrain`")
    p.add_argument(
        "--data",
        default="shapes",
        help="shapes, digits, mnist5k or sklearn-digits (their held-out split), a CSV/TSV "
        "table, or tar shards (the first 2 x --n samples are streamed) (default: shapes)",
    )
    p.add_argument("--out", required=True, help="directory for eval.json")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier eval.json (or write beside another command's output) in --out "
        "(default: refuse a folder that holds one)",
    )
    p.add_argument(
        "--n",
        type=int,
        default=1000,
        help="held-out pairs to evaluate at most, >= 2 (default: 1000)",
    )
    p.add_argument(
        "--zeroshot-labels",
        default=None,
        help="JSON list of class names (like the WPSE code's labels.json); the data's labels "
        "(a 'label' column of names or indices, or .cls indices) index it",
    )
    p.add_argument(
        "--zeroshot-templates",
        default=None,
        help="JSON list of prompt templates with {} or {c} for the class name (like "
        "templates.json); default: 'a photo of a {}', 'a picture of a {}'",
    )
    p.add_argument(
        "--csv-separator", default=None, help="separator of a CSV/TSV --data (default: the run's)"
    )
    p.add_argument("--csv-img-key", default=None, help="image path column (default: the run's)")
    p.add_argument("--csv-caption-key", default=None, help="caption column (default: the run's)")
    p.add_argument(
        "--similarity",
        default=None,
        help="fail unless the checkpoint was trained with this similarity spec (linear, wpse, "
        "kme or package.module:Name; default: any)",
    )
    p.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default 0: torch's own)"
    )
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide the progress bars"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, args.overwrite)  # before torch, the checkpoint and the data are loaded
    import torch

    from pmilab.pretrain.evaluate import evaluate
    from pmilab.pretrain.readers import CsvKeys

    if args.threads < 0:
        raise InputError(f"--threads must be >= 0, got {args.threads}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    keys = None
    if any(v is not None for v in (args.csv_separator, args.csv_img_key, args.csv_caption_key)):
        base = CsvKeys()
        sep = args.csv_separator or base.separator
        keys = CsvKeys(
            "\t" if sep == "\\t" else sep,
            args.csv_img_key or base.img_key,
            args.csv_caption_key or base.caption_key,
        )
    res = evaluate(
        args.checkpoint,
        args.data,
        args.out,
        args.n,
        args.similarity,
        args.progress,
        args.zeroshot_labels,
        args.zeroshot_templates,
        keys,
        overwrite=args.overwrite,
    )
    keys_shown = (
        "zeroshot_top1",
        "zeroshot_chance",
        "retrieval_r1_i2t",
        "retrieval_r10_i2t",
        "probe_top1",
        "pmi_rmse_product",
        "pmi_corr",
    )
    print(json.dumps({k: round(res[k], 4) for k in keys_shown if res.get(k) is not None}))
    return 0
