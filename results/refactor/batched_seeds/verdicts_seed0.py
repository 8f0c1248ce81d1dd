"""Verdicts of a verify directory judged on its seed-0 runs only: what a 1-seed quick run of
the same code gives (each seed of a batched cell equals its one-seed run, tests/test_replicas.py).

    .venv/bin/python results/refactor/batched_seeds/verdicts_seed0.py DIR   # DIR from verify --quick

Prints claim, kind, verdict (True = PASS), measured, one row per line of DIR's claims.
"""

import sys
from pathlib import Path

from pmilab.experiments.claims import CLAIMS
from pmilab.experiments.framework.sweep import load_table

runs = Path(sys.argv[1]) / "runs"
for cid, mod in CLAIMS.items():
    cfg = mod.config("quick", None if cid in ("T4", "T7") else 1)  # T4, T7: unchanged presets
    tables = {sw.name: load_table(sw, runs) for sw in mod.sweeps(cfg)}
    for r in mod.evaluate(tables, cfg):
        print(r.claim, r.kind, r.passed, str(r.measured)[:40], sep=" | ")
