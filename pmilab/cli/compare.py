"""`pmilab compare A B`: flag the rows whose verdict differs between two verify reports."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="flag claims whose verdict differs between two verify reports (e.g. quick, full)",
        description=(
            "Read the claims.csv of two `pmilab verify` directories (e.g. reports/quick and "
            "reports/full), print every row whose verdict differs, and write a 'Preset agreement' "
            "section at the end of both report.md files (an earlier one is replaced). Exit 0 "
            "either way: a disagreement is a finding to explain, not an error."
        ),
    )
    p.add_argument("a", type=Path, help="a verify output directory")
    p.add_argument("b", type=Path, help="another verify output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pmilab.experiments.framework.agreement import flag_reports

    diff = flag_reports(args.a, args.b)
    for k, x, y in diff:
        print(f"{k}: {x} in {args.a}, {y} in {args.b}")
    print(f"{len(diff)} rows differ; both report.md files now say so")
    return 0
