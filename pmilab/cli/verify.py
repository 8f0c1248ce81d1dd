"""`pmilab verify`: run every claim of THEORY.md and write report.md, results.csv and figures."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pmilab.errors import InputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="run the theory-verification suite (the main job)",
        description=(
            "Train similarity heads on joints with exactly known PMI and check every claim of "
            "THEORY.md (T1-T6). Writes DIR/report.md (one row per claim: measured value, "
            "threshold, PASS/FAIL, figure), DIR/results.csv (one row per run), DIR/claims.csv "
            "and DIR/figures/. Finished runs are never redone: rerunning after a kill completes "
            "only the missing runs. Exits 1 when a claim fails (unless --allow-fail)."
        ),
    )
    p.add_argument("--quick", action="store_true", help="small preset (minutes on 2 CPU cores)")
    p.add_argument(
        "--claims", default="", help="comma-separated claim IDs, e.g. T1,T3 (default: all)"
    )
    p.add_argument(
        "--out", default="verify-out", type=Path, help="output directory (default: %(default)s)"
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds per point (default: the preset's)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="parallel worker processes (default: number of CPU cores, at most 4)",
    )
    p.add_argument(
        "--shard",
        default=None,
        help="i/n: run only every n-th run starting at i (split a sweep across machines); "
        "rerun without --shard on the same --out to write the report",
    )
    p.add_argument("--allow-fail", action="store_true", help="exit 0 even when a claim fails")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def parse_claims(text: str) -> list[str]:
    from pmilab.experiments.registry import CLAIMS

    if not text.strip():
        return list(CLAIMS)
    ids = [c.strip().upper() for c in text.split(",") if c.strip()]
    bad = [c for c in ids if c not in CLAIMS]
    if bad:
        raise InputError(f"unknown claim(s) {bad}; choose from {','.join(CLAIMS)}")
    return [c for c in CLAIMS if c in ids]


def write_meta(out: Path, quick: bool, seeds: int | None) -> None:
    """Record the preset so `pmilab figures` reruns missing runs with the same one."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    meta = out / "meta.json"
    new = {"preset": "quick" if quick else "full", "seeds": seeds}
    if meta.exists():
        old = json.loads(meta.read_text())
        if old != new:
            raise InputError(
                f"{out} holds a {old['preset']} run with seeds={old['seeds']}; use another --out "
                "or the same preset and --seeds"
            )
    meta.write_text(json.dumps(new) + "\n")


def run(args: argparse.Namespace) -> int:
    from pmilab.experiments import registry
    from pmilab.experiments.report import summary_table, write_report
    from pmilab.experiments.sweep import parse_shard

    claims = parse_claims(args.claims)
    shard = parse_shard(args.shard)
    if args.seeds is not None and args.seeds < 1:
        raise InputError(f"--seeds must be >= 1, got {args.seeds}")
    jobs = args.jobs if args.jobs is not None else max(1, min(4, os.cpu_count() or 1))
    if jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory; pick another path")
    progress = not args.no_progress and sys.stderr.isatty()
    write_meta(out, args.quick, args.seeds)
    t0 = time.perf_counter()
    results, tables, unavailable, missing, ran, reused = [], {}, {}, 0, 0, 0
    for claim in claims:
        mod, why = registry.load(claim)
        if mod is None:
            unavailable[claim] = f"not available: {why}"
            print(f"{claim}: not available ({why})", file=sys.stderr)
            continue
        t_claim = time.perf_counter()
        if registry.is_sweep_module(mod):
            cr = registry.run_module(mod, claim, args.quick, out, args.seeds, progress, jobs, shard)
            missing += cr.missing
            ran, reused = ran + cr.ran, reused + cr.reused
            results += cr.results
            tables.update(cr.tables)
            note = f"{cr.ran} runs, {cr.reused} reused" + (f"; {cr.note}" if cr.note else "")
        elif shard != (0, 1):
            unavailable[claim] = "runs only without --shard"
            continue
        else:
            rows = mod.run_claims(args.quick, out, args.seeds, progress)
            results += rows
            note = f"{len(rows)} rows"
        print(f"{claim}: {note} ({time.perf_counter() - t_claim:.0f} s)", file=sys.stderr)
    if missing:
        print(
            f"shard {shard[0]}/{shard[1]} done; {missing} runs of other shards are still missing. "
            f"Rerun `pmilab verify` without --shard on --out {out} once every shard has finished "
            "to write the report.",
            file=sys.stderr,
        )
        return 0
    reused = sum(len(df) for df in tables.values()) - ran  # T3 reads T2's runs: count once
    header = {
        "command": "pmilab " + " ".join(sys.argv[1:])
        if sys.argv[0].endswith("pmilab")
        else "pmilab verify" + (" --quick" if args.quick else ""),
        "preset": "quick" if args.quick else "full",
        "claims": ",".join(claims),
        "this invocation": f"{time.perf_counter() - t0:.0f} s wall with {jobs} worker "
        f"process(es); {ran} runs trained, {reused} reused from earlier invocations",
    }
    path = write_report(out, results, tables, header, unavailable)
    print(summary_table(results))
    n_fail = sum(not r.passed for r in results)
    print(f"\n{len(results) - n_fail}/{len(results)} claims PASS; report: {path}")
    for c, why in unavailable.items():
        print(f"{c}: {why}")
    if n_fail and not args.allow_fail:
        return 1
    return 0
