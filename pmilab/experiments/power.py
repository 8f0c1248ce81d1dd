"""The power analysis: pilot runs, then each claim's seed count, recorded before its verdict.

`run_pilots` runs each claim on `design.pilot_seeds(k)` (seeds no verdict uses) through the
same schedule as verify, evaluates it, and keeps each judged row's pilot spread and the seeds it
needs (`design.pilot_design`). A claim's count is the largest its rows need, at least the
pilot's own size. `write_record` writes the record verify reads
(`pmilab/experiments/claims/design/<preset>.json`) and a readable copy (power.md, power.json).
"""

from __future__ import annotations

import datetime
import json
import platform
from collections.abc import Callable
from pathlib import Path

from pmilab import atomic
from pmilab.experiments.framework import design
from pmilab.experiments.framework.claim import check_preset
from pmilab.experiments.verify import claim_modules, run_modules


def claim_seeds(
    rows: list[dict], pilot: int, max_seeds: int | None, min_seeds: int = 2
) -> tuple[int, str]:
    """(seed count, why) from one claim's row records: the most any row needs, at least
    `min_seeds` (the design's floor, `design.MIN_SEEDS`), at most `max_seeds` (a time budget,
    said in `why` when it binds)."""
    needed = [r["chosen_n"] for r in rows if r["chosen_n"] is not None]
    if not needed:
        return max(pilot, min_seeds, 2), "no row with a spread to power against: the pilot's size"
    n = max(needed)
    worst = max((r for r in rows if r["chosen_n"] is not None), key=lambda r: r["chosen_n"])
    why = f"{worst['row']} needs {n}"
    if n < min_seeds:
        n, why = min_seeds, why + f"; raised to the floor of {min_seeds} seeds"
    if max_seeds is not None and n > max_seeds:
        return max_seeds, why + f"; capped at --max-seeds {max_seeds} (below the design power)"
    return max(n, 2), why


def run_pilots(
    claims: list[str],
    preset: str,
    out_dir: Path,
    pilot: int,
    *,
    jobs: int = 1,
    progress: bool = False,
    log: Callable[[str], None] = lambda line: None,
    executor: str = "local",
    address: str | None = None,
    max_seeds: int | None = None,
) -> dict:
    """Run the pilots of `claims` at `preset` into out_dir/runs and return the record."""
    check_preset(preset)
    seeds = design.pilot_seeds(pilot)
    mods = claim_modules(claims)
    runs = run_modules(
        mods, preset, out_dir, seeds, progress, jobs, log=log, executor=executor, address=address
    )
    record = {
        "preset": preset,
        "pilot_seeds": list(seeds),
        "power": design.POWER,
        "rule_version": design.RULE_VERSION,
        "rule": design.RULE,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.system()}",
        "claims": {},
    }
    for cr in runs:
        rows = design.pilot_design(cr.results)
        n, why = claim_seeds(rows, pilot, max_seeds, design.MIN_SEEDS)
        record["claims"][cr.claim] = {"seeds": n, "why": why, "rows": rows}
    share_counts(record["claims"], {cr.claim: {sw.name for sw in cr.sweeps} for cr in runs})
    return record


def share_counts(claims: dict[str, dict], sweeps: dict[str, set[str]]) -> None:
    """Claims that read one sweep (T3 reads T2's heads runs) run it on the same seeds: each
    gets the largest count among the claims it shares a sweep with (transitively)."""
    names = list(claims)
    changed = True
    while changed:
        changed = False
        for a in names:
            for b in names:
                if sweeps[a] & sweeps[b] and claims[a]["seeds"] < claims[b]["seeds"]:
                    claims[a]["seeds"] = claims[b]["seeds"]
                    claims[a]["why"] += f"; raised to {b}'s count (they share a sweep)"
                    changed = True


def _md(record: dict) -> str:
    lines = [
        f"# Power analysis: preset {record['preset']}",
        "",
        f"Pilot seeds {record['pilot_seeds'][0]}..{record['pilot_seeds'][-1]} (never used by a "
        f"verdict), {record['date']}, {record['machine']}. Rule: {record['rule']}.",
        "",
        "| claim | seeds | why |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {v['seeds']} | {v['why']} |" for c, v in record["claims"].items()]
    lines += ["", "## Rows", "", "| row | pilot sd | tolerance | rule | n | reasoning |"]
    lines += ["|---|---|---|---|---|---|"]
    for v in record["claims"].values():
        for r in v["rows"]:
            lines.append(
                f"| {r['row']} | {r['pilot_sd']:.3g} | {r['tolerance']:.3g} | {r['kind']} | "
                f"{r['chosen_n']} | {r['reasoning']} |"
            )
    return "\n".join(lines) + "\n"


def write_record(record: dict, out_dir: Path, design_too: bool = True) -> Path:
    """out_dir/power.json and power.md; and, unless design_too is False, the design record
    that `pmilab verify` runs with. Returns the path of the record verify reads (or power.md)."""
    out_dir = Path(out_dir)
    atomic.write_text(out_dir / "power.json", json.dumps(record, indent=1) + "\n")
    md = atomic.write_text(out_dir / "power.md", _md(record))
    if not design_too:
        return md
    path = design.DESIGN_DIR / f"{record['preset']}.json"
    old = design.read_design(record["preset"])
    merged = {**record, "claims": {**old.get("claims", {}), **record["claims"]}}
    design.DESIGN_DIR.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(merged, indent=1) + "\n")
    design.read_design.cache_clear()
    return path
