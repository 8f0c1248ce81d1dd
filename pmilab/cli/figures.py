"""`pmilab figures`: redraw every figure of a verify directory from its results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pmilab.cli.verify import add_preset_options, add_run_options, jobs_of, log, preset_of
from pmilab.errors import InputError
from pmilab.outputs import check_out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "figures",
        help="redraw every figure from a verify directory's results",
        description=(
            "Redraw the figures of every claim (PNG and PDF, byte-identical for the same "
            "results) from DIR/results.csv and DIR/claims.csv of a `pmilab verify --out DIR` "
            "directory, into DIR/figures/. Nothing is trained: a claim whose runs are missing "
            "is skipped with one line saying so. Pass --run-missing to run them first (with "
            "the preset in DIR/meta.json)."
        ),
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("reports/quick"),
        help="a `pmilab verify --out` directory (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the figures (default: RESULTS/figures). A folder holding another "
        "command's output, or figures drawn from another --results, is refused unless --overwrite",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an --out that holds other output (figures of the same --results are "
        "always redrawn in place)",
    )
    p.add_argument("--claims", default="", help="comma-separated claim IDs (default: all)")
    p.add_argument(
        "--run-missing",
        action="store_true",
        help="run the missing runs first (as `pmilab verify` would), then write the report",
    )
    add_preset_options(p)
    add_run_options(p)
    p.set_defaults(func=run)


def check_figures_out(out: Path, results: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, holds another command's output, or holds figures drawn
    from another --results (unless overwrite): redrawing would silently replace them."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory; pick another path")
    check_out(out, overwrite)
    from pmilab.figures.redraw import FIGURES_MARKER

    marker = out / FIGURES_MARKER
    if marker.is_file() and not overwrite:
        drawn_from = marker.read_text().strip()
        if drawn_from != str(results.resolve()):
            raise InputError(
                f"--out {out} holds figures drawn from {drawn_from}; pass --overwrite to replace "
                "them, or choose another folder"
            )


def _claims_to_run(results: Path, asked: list[str] | None) -> list[str]:
    """The asked claims (default: all) plus every claim the directory's report already holds,
    so that rewriting the report keeps their verdicts."""
    from pmilab.experiments import verify
    from pmilab.experiments.framework.report import read_claims
    from pmilab.figures.redraw import claim_of

    plugins = (verify.read_meta(results) or {}).get("plugins", {})  # plugin claim ID -> spec
    ids = [*verify.parse_claims(""), *plugins]
    have = (
        {claim_of(r.claim, ids) for r in read_claims(results)}
        if (results / "claims.csv").exists()
        else set()
    )
    want = set(asked or verify.parse_claims("")) | have
    extra = [s for c, s in plugins.items() if c in want and s not in want]
    return (
        [c for c in verify.parse_claims("") if c in want]
        + extra
        + [c for c in asked or () if c not in verify.parse_claims("") and c not in extra]
    )


def run(args: argparse.Namespace) -> int:
    from pmilab.experiments import verify
    from pmilab.experiments.framework.executors import shutdown_pools
    from pmilab.figures.redraw import redraw

    results: Path = args.results
    if not results.exists():
        raise InputError(
            f"--results {results} does not exist; give a `pmilab verify --out` directory"
        )
    if not results.is_dir():
        raise InputError(f"--results {results} is not a directory; give a verify --out directory")
    claims = verify.parse_claims(args.claims) if args.claims else None
    if args.out is not None:
        check_figures_out(args.out, results, args.overwrite)
    if args.run_missing:
        meta = verify.read_meta(results)
        preset = meta["preset"] if meta else preset_of(args)
        seeds = meta["seeds"] if meta else None
        todo = _claims_to_run(results, claims)
        verify.write_meta(results, preset, seeds, plugins=verify.plugin_claims(todo))
        progress = not args.no_progress and sys.stderr.isatty()
        try:
            runs = verify.run_claims(todo, preset, results, seeds, progress, jobs_of(args), log=log)
        finally:  # end the workers now, not at exit (their own exit takes seconds each)
            shutdown_pools()
        verify.write(results, runs, {"command": "pmilab figures --run-missing", "preset": preset})
    written = redraw(results, claims, args.out, log=log)
    for p in written:
        print(p)
    return 0
