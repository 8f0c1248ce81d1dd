"""`pmilab figures`: regenerate every figure from the results table (running what is missing)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pmilab.errors import InputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "figures",
        help="regenerate every figure from the results table",
        description=(
            "Redraw the figures of every claim (PNG and PDF, deterministic) from the run tables "
            "of a verify output directory. Runs that are missing from the tables are run first "
            "(same preset as the directory's meta.json, or --quick)."
        ),
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("reports/full"),
        help="a `pmilab verify --out` directory (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("figures"),
        help="where to write the figures (default: %(default)s)",
    )
    p.add_argument("--claims", default="", help="comma-separated claim IDs (default: all)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="use the quick preset when the results directory has no meta.json",
    )
    p.add_argument("--jobs", type=int, default=None, help="worker processes for missing runs")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def read_meta(results: Path, quick: bool) -> tuple[bool, int | None]:
    meta = results / "meta.json"
    if not meta.exists():
        return quick, None
    try:
        m = json.loads(meta.read_text())
        return m["preset"] == "quick", m.get("seeds")
    except (ValueError, KeyError) as e:
        raise InputError(
            f"{meta} is not a pmilab verify meta.json ({e}); delete it or rerun verify"
        ) from None


def run(args: argparse.Namespace) -> int:
    from pmilab.cli.verify import parse_claims
    from pmilab.experiments import registry

    if args.results.exists() and not args.results.is_dir():
        raise InputError(
            f"--results {args.results} is not a directory; give a verify --out directory"
        )
    quick, seeds = read_meta(args.results, args.quick)
    jobs = args.jobs if args.jobs is not None else max(1, min(4, os.cpu_count() or 1))
    progress = not args.no_progress and sys.stderr.isatty()
    written = []
    for claim in parse_claims(args.claims):
        mod, why = registry.load(claim)
        if mod is None or not registry.is_sweep_module(mod):
            print(
                f"{claim}: skipped ({why or 'draws its own figures in pmilab verify'})",
                file=sys.stderr,
            )
            continue
        cr = registry.run_module(mod, claim, quick, args.results, seeds, progress, jobs, draw=False)
        written += mod.figures(cr.tables, cr.results, args.out)
        print(f"{claim}: {cr.ran} missing runs run, figures redrawn", file=sys.stderr)
    for p in written:
        print(p)
    return 0
