"""`pmilab check HEAD`: the report card of one head, and `pmilab.check_head`, its Python form.

The card (`pmilab.experiments.check`) runs the head-level claims on the head with the verdict
machinery and presets of `pmilab verify`, the built-in heads beside it; this module adds the
figures (`pmilab.figures.check`), which sit above the experiments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pmilab.cli.verify import add_executor_options, add_run_options, jobs_of, log


def check_head(
    head,
    preset: str = "quick",
    out: str | Path = "check-out",
    *,
    dim: int | None = None,
    points: int | None = None,
    seeds: int | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    figures: bool = True,
    log=lambda line: None,
    executor: str = "local",
    address: str | None = None,
    command: str = "",
):
    """The report card of `head` (a spec: a built-in name, `package.module:Name`, an entry point;
    or a head class or factory with an import path), written into `out`: report.md (the
    verdict rows, then the heads side by side), claims.csv, results.csv, heads.csv and
    figures/. Returns the `pmilab.experiments.check.CheckRun` (`.results`, `.verdicts()`,
    `.broken`, `.report`).

    preset: smoke (seconds, numbers meaningless), quick or full (as `pmilab verify`).
    dim / points: the setting the card does not sweep (points of a vector head, the point size
    of a point-set head). A head that breaks the contract is one InputError naming what it
    lacks, before anything is written.
    """
    from pmilab.experiments.check import run_check
    from pmilab.experiments.framework.executors import shutdown_pools
    from pmilab.figures.redraw import redraw

    try:
        done = run_check(
            head, preset, out, dim=dim, points=points, seeds=seeds, jobs=jobs,
            overwrite=overwrite, progress=progress, log=log, executor=executor,
            address=address, command=command,
        )  # fmt: skip
    finally:  # end the workers now, not at exit (their own exit takes seconds each)
        shutdown_pools()
    if figures:
        redraw(done.out, log=log)
    return done


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="the report card of one head: the head-level claims, beside the built-in heads",
        description=(
            "Run the head-level claims of docs/theory.md on HEAD with the verdict machinery "
            "and presets of `pmilab verify`: HC0 the contract on every trained run, HC1 reach "
            "PMI + C on latent joints, HC2 the error against K and the head's size parameter "
            "(points of a point-set head, dim of a vector head), HC3 the excess-risk bound, HC4 "
            "the finite-batch optimum, HC5 reach on a continuous joint (where the head takes "
            "continuous inputs). The built-in heads run beside it at the same settings. Writes "
            "DIR/report.md, claims.csv, results.csv, heads.csv and figures/. An --out of an "
            "earlier check of the same preset is continued: finished runs (the built-in heads' "
            "among them) are reused. A head that breaks the contract is one line and exit 2. "
            "Exits 1 when a trained head breaks the contract (HC0 FAIL) or a calibration or "
            "control row is not as it must be, unless --allow-fail; a head that misses a claim "
            "is a grade, reported with exit 0."
        ),
    )
    p.add_argument(
        "head",
        metavar="HEAD_SPEC",
        help="a built-in head (tabular, linear, wpse, kme), package.module:Name, or an "
        "installed pmilab.similarities entry point",
    )
    p.add_argument(
        "--preset",
        choices=["smoke", "quick", "full"],
        default="quick",
        help="smoke (seconds; numbers meaningless), quick or full (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("check-out"),
        help="output directory (default: %(default)s)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an --out that holds another command's output (an earlier check of "
        "the same preset there is always continued)",
    )
    p.add_argument(
        "--dim",
        type=int,
        default=None,
        help="a point-set head's point size d (default: the heads sweep's, 2); the check sweeps "
        "its M",
    )
    p.add_argument(
        "--points",
        type=int,
        default=None,
        help="a vector head's `points` setting (default: 1); the check sweeps its dim D",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds per point (default: the preset's)"
    )
    add_run_options(p)  # --jobs: default 1 at --preset smoke, else as verify
    add_executor_options(p)
    p.add_argument(
        "--allow-fail", action="store_true", help="exit 0 even when a row is not as it must be"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pmilab.experiments.framework.report import counts, summary_table

    # smoke: one process (starting a worker imports torch, seconds each: more than the runs)
    jobs = 1 if args.jobs is None and args.preset == "smoke" else jobs_of(args)
    done = check_head(
        args.head, args.preset, args.out, dim=args.dim, points=args.points, seeds=args.seeds,
        jobs=jobs, overwrite=args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(), log=log,
        executor=args.executor, address=args.address,
        command="pmilab " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("pmilab") else "",
    )  # fmt: skip
    print(summary_table(done.results))
    print(f"\n{counts(done.results)}; report: {done.report}")
    if done.broken:
        print("not as it must be: " + ", ".join(f"{r.claim} ({r.kind})" for r in done.broken))
        return 0 if args.allow_fail else 1
    return 0
