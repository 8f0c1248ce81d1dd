"""`pmilab verify`: run every claim of docs/theory.md and write report.md, results.csv, figures."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pmilab.errors import InputError
from pmilab.outputs import check_out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="run the theory-verification suite (the main job)",
        description=(
            "Train similarity heads on joints with exactly known PMI and check every claim of "
            "docs/theory.md (T1-T10). Writes DIR/report.md (one row per claim: measured value, "
            "threshold, estimate with its interval, n, planned power, PASS/FAIL/INCONCLUSIVE, figure), "
            "DIR/results.csv (one row per run), DIR/claims.csv and DIR/figures/. Seed counts come "
            "from the recorded power analysis (`pmilab power`). Finished runs are never redone: "
            "rerunning after a kill completes only the missing runs. Exits 1 when a claim or an "
            "implementation check FAILs, a calibration case comes out wrong, or a control does not "
            "FAIL, unless --allow-fail; exits 0 on INCONCLUSIVE, with their count printed."
        ),
    )
    add_preset_options(p)
    p.add_argument(
        "--claims",
        default="",
        help="comma-separated claims: built-in IDs (T1,T3), package.module, "
        "package.module:name or installed pmilab.claims entry points (docs/extending.md) "
        "(default: every built-in claim)",
    )
    p.add_argument(
        "--out",
        default="verify-out",
        type=Path,
        help="output directory (default: %(default)s)",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds per point (default: the preset's)"
    )
    add_run_options(p)
    add_executor_options(p)
    p.add_argument(
        "--shard",
        default=None,
        help="i/n: run only every n-th run starting at i (split a sweep across machines); "
        "rerun without --shard on the same --out to write the report",
    )
    p.add_argument("--allow-fail", action="store_true", help="exit 0 even when a claim fails")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an --out that holds another command's output (default: refuse it; an "
        "earlier verify run there is always continued)",
    )
    p.set_defaults(func=run)


def add_preset_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--quick", action="store_true", help="the quick preset (minutes on 2 CPU cores)"
    )
    group.add_argument(
        "--preset",
        choices=["smoke", "quick", "full"],
        default=None,
        help="smoke (seconds; numbers meaningless), quick, or full (default: full)",
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="parallel worker processes (default: number of CPU cores, at most 4)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars: a progress line every 10 s instead (also when stderr is not "
        "a terminal)",
    )


def add_executor_options(p: argparse.ArgumentParser) -> None:
    from pmilab.experiments.framework.executors import EXECUTORS

    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where runs execute: local worker processes (--jobs of them), or an existing Ray "
        "cluster (--address; start one with `ray start --head`; needs pip install 'pmilab[ray]') "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="the Ray cluster of --executor ray (default: the RAY_ADDRESS environment variable)",
    )


def preset_of(args: argparse.Namespace) -> str:
    return "quick" if args.quick else (args.preset or "full")


def jobs_of(args: argparse.Namespace) -> int:
    jobs = args.jobs if args.jobs is not None else max(1, min(4, os.cpu_count() or 1))
    if jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")
    return jobs


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from pmilab.experiments import verify
    from pmilab.experiments.framework.executors import open_executor, shutdown_pools
    from pmilab.experiments.framework.report import counts, summary_table
    from pmilab.experiments.framework.sweep import parse_shard
    from pmilab.figures.redraw import redraw

    claims = verify.parse_claims(args.claims)
    shard = parse_shard(args.shard)
    if args.seeds is not None and args.seeds < 1:
        raise InputError(f"--seeds must be >= 1, got {args.seeds}")
    jobs, preset = jobs_of(args), preset_of(args)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory; pick another path")
    check_out(out, args.overwrite, own="verify")  # its own earlier runs are continued
    progress = not args.no_progress and sys.stderr.isatty()
    # Opened before anything is written or run: an unreachable cluster fails in seconds, with
    # --out untouched. run_claims opens the same executor again (open_executor caches it).
    open_executor(args.executor, jobs, args.address)
    verify.write_meta(out, preset, args.seeds, plugins=verify.plugin_claims(claims))
    t0 = time.perf_counter()
    try:
        runs = verify.run_claims(
            claims,
            preset,
            out,
            args.seeds,
            progress,
            jobs,
            shard,
            log=log,
            executor=args.executor,
            address=args.address,
        )
    finally:  # the workers' work is over: end them now, not after the report (seconds each)
        shutdown_pools()
    missing = sum(cr.missing for cr in runs)
    if missing:
        log(
            f"shard {shard[0]}/{shard[1]} done; {missing} runs of other shards are still missing. "
            f"Rerun `pmilab verify` without --shard on --out {out} once every shard has finished "
            "to write the report."
        )
        return 0
    ran = sum(cr.ran for cr in runs)
    where = (
        f"{jobs} worker process(es)"
        if args.executor == "local"
        else f"the Ray cluster at {args.address or os.environ.get('RAY_ADDRESS')}"
    )
    total = len({r.run_id for cr in runs for sw in cr.sweeps for r in sw.runs})
    header = {
        "command": "pmilab " + " ".join(sys.argv[1:])
        if sys.argv[0].endswith("pmilab")
        else "pmilab verify" + (" --quick" if preset == "quick" else ""),
        "preset": preset,
        "claims": ",".join(claims),
        "this invocation": f"{time.perf_counter() - t0:.0f} s wall with {where}; "
        f"{ran} runs trained, {total - ran} reused from earlier invocations",
    }
    path = verify.write(out, runs, header)
    redraw(out, claims, log=log)
    results = [r for cr in runs for r in cr.results]
    print(summary_table(results))
    print(f"\n{counts(results)}; report: {path}")
    bad = [
        r.claim
        + {
            "control": " (control did not FAIL)",
            "calibration": f" (calibration must {r.expect})",
        }.get(r.kind, "")
        for r in results
        if not r.ok
    ]
    if bad:
        print(f"not as it must be: {', '.join(bad)}")
    open_rows = [r.claim for r in results if r.kind in ("evidence", "implementation")
                 and r.verdict == "INCONCLUSIVE"]  # fmt: skip
    if open_rows:
        print(
            f"{len(open_rows)} INCONCLUSIVE (the interval straddles the threshold; more seeds "
            f"are a new run): {', '.join(open_rows)}"
        )
    if bad and not args.allow_fail:
        return 1
    return 0
