"""`pmilab eval`: zero-shot, retrieval, linear probe (and PMI errors on shapes) of a checkpoint."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a pretrain checkpoint: zero-shot, retrieval, probe, PMI errors",
        description="Writes OUT/eval.json with zeroshot_top1, zeroshot_classes, retrieval_r1/r5 "
        "(i2t, t2i), probe_top1 and, on --data shapes, the docs/theory.md PMI errors against the "
        "exact PMI of the held-out images and captions.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="the --out directory of `pmilab pretrain`")
    p.add_argument(
        "--data",
        default="shapes",
        help="shapes or digits (their held-out split), a CSV or tar shards",
    )
    p.add_argument("--out", required=True, help="directory for eval.json")
    p.add_argument("--n", type=int, default=1000, help="held-out pairs to evaluate at most")
    p.add_argument(
        "--similarity",
        default=None,
        choices=["linear", "wpse", "kme"],
        help="fail unless the checkpoint uses this similarity",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from pmilab.pretrain.evaluate import evaluate

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    res = evaluate(args.checkpoint, args.data, args.out, args.n, args.similarity, args.progress)
    keys = [
        k
        for k in (
            "zeroshot_top1",
            "zeroshot_chance",
            "retrieval_r1_i2t",
            "probe_top1",
            "pmi_rmse_product",
            "pmi_corr",
        )
        if res.get(k) is not None
    ]
    print(json.dumps({k: round(res[k], 4) for k in keys}))
    return 0
