"""`pmilab fit`: train one similarity head on a joint and score it against the exact PMI.

    pmilab fit --dist mytable.npy --similarity kme --points 4 --dim 4 --out runs/kme
    pmilab fit --dist latent:nx=32,ny=32,k=4,seed=0 --similarity linear --dim 8 --out runs/lin
    pmilab fit --dist latent:nx=32,ny=32,k=4,seed=0 --similarity kme --seeds 0:32 --out runs/k32

Writes OUT/metrics.json (docs/theory.md names), OUT/config.json, OUT/model.pt and, for discrete
joints, OUT/logits.npy (the learned nx×ny logit table). Numbers are parsed here, not by
argparse, so every bad value ends in one line (pmilab.cli turns InputError into exit 2).
OUT is checked before training: a file, or a folder holding an earlier run (without
--overwrite), is refused. Exit 1 when training stopped early or its logits are degenerate (the
run is still written, with `stopped_at_step` / `constant_logits` in metrics.json).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

from pmilab.errors import InputError

SUMMARY = ("pmi_rmse_product", "pmi_rmse_joint", "pmi_corr", "excess_loss", "mi_infonce")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit",
        help="train a similarity head on a joint and score it against the exact PMI",
        description=(
            "Train tabular / linear (CLIP) / WPSE / KME logits under symmetric InfoNCE on a "
            "joint with known PMI, then write OUT/metrics.json and, for discrete joints, "
            "OUT/logits.npy (the learned nx x ny logit table)."
        ),
    )
    p.add_argument(
        "--dist",
        required=True,
        metavar="SPEC",
        help="a .npy/.csv joint table (options: --normalize, --drop-empty, or ?normalize, "
        "?drop_empty after the path) or a named spec such as latent:nx=32,ny=32,k=4,seed=0 or "
        "gaussian:dx=4,dy=4,rho=0.9",
    )
    p.add_argument(
        "--normalize",
        action="store_true",
        help="table files: divide the table by its sum (same as ?normalize)",
    )
    p.add_argument(
        "--drop-empty",
        action="store_true",
        help="table files: remove all-zero rows and columns (same as ?drop_empty)",
    )
    p.add_argument(
        "--similarity",
        default="linear",
        help="tabular | linear | wpse | kme (default linear), or package.module:Name or an "
        "installed pmilab.similarities entry point (docs/extending.md)",
    )
    p.add_argument("--dim", default="8", help="embedding / point dimension d (default 8)")
    p.add_argument("--points", default="4", help="points per input M for wpse/kme (default 4)")
    p.add_argument("--steps", default="2000", help="optimizer steps (default 2000)")
    p.add_argument("--batch-size", default="256", help="pairs per step (default 256)")
    p.add_argument(
        "--lr", default=None, help="AdamW step size (default 1e-2 for tables, 1e-3 for MLPs)"
    )
    p.add_argument("--seed", default="0", help="seed of initialisation and sampling (default 0)")
    p.add_argument(
        "--seeds",
        default=None,
        metavar="LIST",
        help="train many seeds as one batched computation: '0,1,2' or a range 'A:B' (seeds A "
        "to B-1); writes OUT/seed<s>/ per seed and prints each seed's summary and the mean "
        "± SE over seeds (replaces --seed)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    p.add_argument(
        "--objective", default="symmetric", help="symmetric (CLIP) | one_sided (default symmetric)"
    )
    p.add_argument(
        "--population",
        action="store_true",
        help="discrete joints: train on the exact population loss (full batch) instead of samples",
    )
    p.add_argument(
        "--temperature", default="0.07", help="initial 1/logit-scale of linear/wpse (default 0.07)"
    )
    p.add_argument(
        "--logit-cap", default="100", help="max logit scale of linear/wpse, or 'none' (default 100)"
    )
    p.add_argument("--sigma", default="0.5", help="initial kernel bandwidth (default 0.5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in --out (default: refuse a folder that holds one)",
    )
    p.set_defaults(func=run)


def _number(value, flag: str, kind=float):
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise InputError(
            f"{flag} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None
    if kind is float and not math.isfinite(v):
        raise InputError(f"{flag} must be a finite number, got {value!r}")
    return v


def _config(args: argparse.Namespace):
    from pmilab.training import FitConfig

    cap = None if str(args.logit_cap).lower() == "none" else _number(args.logit_cap, "--logit-cap")
    return FitConfig(
        similarity=args.similarity,
        dim=_number(args.dim, "--dim", int),
        points=_number(args.points, "--points", int),
        steps=_number(args.steps, "--steps", int),
        batch_size=_number(args.batch_size, "--batch-size", int),
        lr=None if args.lr is None else _number(args.lr, "--lr"),
        seed=_number(args.seed, "--seed", int),
        device=args.device,
        objective=args.objective,
        population=args.population,
        temperature=_number(args.temperature, "--temperature"),
        logit_cap=cap,
        sigma=_number(args.sigma, "--sigma"),
    ).validated()


MAX_SEEDS = 100_000  # a bigger list is a typo (every seed is a model held in memory)


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; 'A:B' -> [A, ..., B-1]. Non-negative, distinct, at most MAX_SEEDS."""
    text = str(text).strip()
    try:
        if ":" in text:
            a, b = (int(v) for v in text.split(":"))
        else:
            seeds = [int(v) for v in text.split(",")]
    except ValueError:
        raise InputError(
            f"--seeds must be a comma-separated list such as 0,1,2 or a range A:B, got {text!r}"
        ) from None
    if ":" in text:
        if b - a > MAX_SEEDS:
            raise InputError(f"--seeds {text!r} names {b - a} seeds; at most {MAX_SEEDS}")
        seeds = list(range(a, b))
    if not seeds:
        raise InputError(f"--seeds {text!r} names no seed (a range A:B needs B > A)")
    if len(seeds) > MAX_SEEDS:
        raise InputError(f"--seeds names {len(seeds)} seeds; at most {MAX_SEEDS}")
    return seeds


def run(args: argparse.Namespace) -> int:
    from pmilab.dists import parse_spec
    from pmilab.training import fit
    from pmilab.training.run import check_out_dir

    cfg = _config(args)  # validate the numbers and --out before loading or training anything
    seeds = None if args.seeds is None else parse_seeds(args.seeds)
    check_out_dir(args.out, args.overwrite)
    if seeds is not None:
        for s in seeds:
            check_out_dir(Path(args.out) / f"seed{s}", args.overwrite)
    dist = parse_spec(args.dist, normalize=args.normalize, drop_empty=args.drop_empty)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # reported below as one line
        if seeds is not None:
            runs = fit(
                dist,
                cfg,
                seeds=seeds,
                out=args.out,
                overwrite=args.overwrite,
                progress=not args.quiet,
            )
            return _report_seeds(runs, Path(args.out))
        result = fit(dist, cfg, out=args.out, overwrite=args.overwrite, progress=not args.quiet)
    m = result.metrics
    print(" ".join(f"{k}={m[k]:.4g}" for k in SUMMARY if k in m))
    written = ["metrics.json", "config.json", "model.pt"] + (
        ["logits.npy"] if dist.discrete else []
    )
    print(f"wrote {', '.join(str(Path(args.out) / f) for f in written)}")
    if result.message:
        print(f"pmilab fit: {result.message}", file=sys.stderr)
        return 1
    return 0


def _report_seeds(runs, out: Path) -> int:
    """One summary line per seed, then mean ± SE over the seeds; exit 1 if any seed stopped."""
    import torch

    from pmilab.stats import mean_se

    for r in runs:
        m = r.metrics
        line = " ".join(f"{k}={m[k]:.4g}" for k in SUMMARY if k in m)
        print(f"seed {r.config.seed}: {line}")
    if len(runs) > 1:
        parts = []
        for k in SUMMARY:
            vals = [float(r.metrics[k]) for r in runs if k in r.metrics]
            if len(vals) == len(runs):
                e = mean_se(torch.tensor(vals, dtype=torch.float64))
                parts.append(f"{k}={float(e):.4g}±{e.se:.2g}")
        print(f"mean ± SE over {len(runs)} seeds: " + " ".join(parts))
    print(f"wrote {out}/seed<s>/ for {len(runs)} seeds")
    bad = [r for r in runs if r.message]
    for r in bad:
        print(f"pmilab fit: seed {r.config.seed}: {r.message}", file=sys.stderr)
    return 1 if bad else 0
