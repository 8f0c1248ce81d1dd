"""`pmilab fit`: train one similarity head on a joint and score it against the exact PMI.

    pmilab fit --dist mytable.npy --similarity kme --points 4 --dim 4 --out runs/kme
    pmilab fit --dist latent:nx=32,ny=32,k=4,seed=0 --similarity linear --dim 8 --out runs/lin
    pmilab fit --dist latent:nx=32,ny=32,k=4,seed=0 --similarity kme --seeds 0:32 --out runs/k32

Writes OUT/metrics.json (docs/theory.md names), OUT/config.json, OUT/model.pt and, for discrete
joints, OUT/logits.npy (the learned nx×ny logit table).
The training options are FitConfig's fields, built from its schema (`add_settings`: a new field
is a new flag with no edit here). Their values are read by `FitConfig.from_text`, not by
argparse, so every bad value ends in one line (pmilab.cli turns InputError into exit 2).
OUT is checked before training: a file, or a folder holding an earlier run (without
--overwrite), is refused. Exit 1 when training stopped early or its logits are degenerate (the
run is still written, with `stopped_at_step` / `constant_logits` in metrics.json).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from types import ModuleType

from pmilab.cli._light import light_module
from pmilab.errors import InputError

SUMMARY = ("pmi_rmse_product", "pmi_rmse_joint", "pmi_corr", "excess_loss", "mi_infonce")
METAVARS = {"int": "N", "float": "X", "widths": "WIDTHS"}
CONFIG_PY = Path(__file__).resolve().parents[1] / "training" / "config.py"


def config_module() -> ModuleType:
    """pmilab/training/config.py (FitConfig, the schema the options are built from) without
    importing its package, which imports torch (seconds of CPU that `pmilab fit --help` does
    not need; config.py itself imports nothing heavy). Once the package is imported, its own
    module is used; before, the file is loaded once under a private name (as `cli.pretrain`
    loads PretrainConfig)."""
    return light_module("pmilab.training.config", "pmilab.cli._fit_config", CONFIG_PY)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit",
        help="train a similarity head on a joint and score it against the exact PMI",
        description=(
            "Train a tabular / linear (CLIP) / WPSE / KME or plugin head under InfoNCE on a "
            "joint with known PMI, then write OUT/metrics.json and, for discrete joints, "
            "OUT/logits.npy (the learned nx x ny logit table). Every setting below is a field "
            "of pmilab.training.FitConfig."
        ),
    )
    joint = p.add_argument_group("joint")
    joint.add_argument(
        "--dist",
        required=True,
        metavar="SPEC",
        help="a .npy/.csv joint table (options: --normalize, --drop-empty, or ?normalize, "
        "?drop_empty after the path) or a named spec such as latent:nx=32,ny=32,k=4,seed=0 or "
        "gaussian:dx=4,dy=4,rho=0.9, package.module:Name or an installed "
        "pmilab.distributions entry point",
    )
    joint.add_argument(
        "--normalize",
        dest="normalize_table",
        action="store_true",
        help="table files: divide the table by its sum (same as ?normalize)",
    )
    joint.add_argument(
        "--drop-empty",
        action="store_true",
        help="table files: remove all-zero rows and columns (same as ?drop_empty)",
    )
    groups = add_settings(p, config_module().FitConfig)
    groups["training"].add_argument(
        "--seeds",
        default=None,
        metavar="LIST",
        help="train many seeds as one batched computation: '0,1,2' or a range 'A:B' (seeds A "
        "to B-1); writes OUT/seed<s>/ per seed and prints each seed's summary and the mean "
        "± SE over seeds (replaces --seed)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="DIR", help="output directory")
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in --out (default: refuse a folder that holds one)",
    )
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_settings(p: argparse.ArgumentParser, schema) -> dict:
    """One option per setting of `schema` (FitConfig: `FitConfig.settings()`), in sections
    (`schema.GROUPS`), each with its help, choices and default. Values stay text
    here (None: not given) and are read by `schema.from_text`, so a bad one is one line.
    Returns the sections by group name."""
    groups = {g: p.add_argument_group(title) for g, title in schema.GROUPS.items()}  # empty: hidden
    for s in schema.settings():
        if not s.cli:
            continue
        if s.group not in groups:
            groups[s.group] = p.add_argument_group(s.group)
        text = f"{s.help} (default: {s.shown_default()})".lstrip()
        kw = {"dest": s.name, "default": None, "help": text}
        if s.kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif s.choices:
            kw["metavar"] = "{" + ",".join(s.choices) + "}"
        else:
            kw["metavar"] = s.metavar or METAVARS.get(s.kind, s.name.upper())
        groups[s.group].add_argument(s.flag, **kw)
    return groups


def _config(args: argparse.Namespace):
    """The FitConfig of the given options (the others at FitConfig's defaults), validated."""
    from pmilab.training import FitConfig

    given = {
        s.name: getattr(args, s.name)
        for s in FitConfig.settings()
        if s.cli and getattr(args, s.name, None) is not None
    }
    return FitConfig.from_text(given).validated()


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
    dist = parse_spec(args.dist, normalize=args.normalize_table, drop_empty=args.drop_empty)
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
