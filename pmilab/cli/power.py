"""`pmilab power`: the power analysis that fixes each claim's seed count before its verdict."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pmilab.errors import InputError


def add_parser(subparsers) -> None:
    from pmilab.cli.verify import add_executor_options, add_preset_options, add_run_options

    p = subparsers.add_parser(
        "power",
        help="run pilot seeds and fix each claim's seed count (the recorded power analysis)",
        description=(
            "Run each claim on pilot seeds that no verdict uses (10000, 10001, ...), estimate "
            "every judged row's per-seed spread, and choose the smallest seed count with >= 80%% "
            "power to PASS at gap 0 and to FAIL at twice the tolerance. Writes the record "
            "pmilab/experiments/claims/design/<preset>.json (which `pmilab verify` then runs "
            "with) and a readable copy, power.md and power.json, in --out. Resumable: finished "
            "pilot runs in --out are reused."
        ),
    )
    add_preset_options(p)
    p.add_argument("--claims", default="", help="comma-separated claim IDs (default: all)")
    p.add_argument(
        "--pilot", type=int, default=4, help="pilot seeds per claim (default: %(default)s)"
    )
    p.add_argument(
        "--max-seeds",
        type=int,
        default=None,
        help="record at most this many seeds per claim (the record says which claims it caps, "
        "and their verdicts may then be INCONCLUSIVE for want of seeds) (default: no cap)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="pilot runs and the readable record (default: results/power/<preset>)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="write power.md/power.json in --out but not the design record verify reads",
    )
    add_run_options(p)
    add_executor_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pmilab.cli.verify import jobs_of, log, preset_of
    from pmilab.experiments import power, verify
    from pmilab.experiments.framework.executors import shutdown_pools

    if args.pilot < 2:
        raise InputError(f"--pilot must be >= 2 (one seed has no spread), got {args.pilot}")
    if args.max_seeds is not None and args.max_seeds < 2:
        raise InputError(f"--max-seeds must be >= 2, got {args.max_seeds}")
    preset, jobs = preset_of(args), jobs_of(args)
    claims = verify.parse_claims(args.claims)
    out = args.out or Path("results") / "power" / preset
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory; pick another path")
    t0 = time.perf_counter()
    try:
        record = power.run_pilots(
            claims,
            preset,
            out,
            args.pilot,
            jobs=jobs,
            progress=not args.no_progress and sys.stderr.isatty(),
            log=log,
            executor=args.executor,
            address=args.address,
            max_seeds=args.max_seeds,
        )
    finally:
        shutdown_pools()
    path = power.write_record(record, out, design_too=not args.dry_run)
    for claim, c in record["claims"].items():
        print(f"{claim}: {c['seeds']} seeds ({c['why']})")
    print(f"record: {path}; {time.perf_counter() - t0:.0f} s")
    return 0
