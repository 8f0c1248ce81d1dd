"""How T7's budget was sized: pilot runs of the T7 task on a seed no preset uses.

Trains the pixel KME head (M = K = 4, batch 128, the `full` settings of claims/t7.py) on fresh
samples for 3000 steps at lr 2e-3 (the setting T7 uses, `pmilab pretrain`'s default) and at
lr 5e-3, and the linear head at d = K, all with seed 100 (the presets use seeds 0, 1, 2). The
tolerance (REACH_TOL_MC = 0.15) was fixed before any of these runs. Writes pilot.csv and
pilot.md here.

Regenerate: `.venv/bin/python results/t7/pilot.py` (about 110 CPU-seconds, in 2 processes).
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import pandas as pd

from pmilab.experiments.claims import t7
from pmilab.experiments.framework.sweep import execute
from pmilab.experiments.tasks.pixels import pixel_head, record_steps

HERE = Path(__file__).parent
SEED = 100
STEPS = 3000
RECORDS = 10


def runs() -> list[dict]:
    cfg = replace(t7.config("full"), kme_steps=STEPS, linear_steps=STEPS, records=RECORDS)
    out = []
    for lr in (2e-3, 5e-3):
        p = t7._params(replace(cfg, lr=lr), "kme", "fresh", cfg.point_dim, cfg.points, SEED)
        out.append(p)
    out.append(t7._params(cfg, "linear", "fresh", t7.HIDDEN_CLASSES, 1, SEED))
    return out


def one(p: dict) -> dict:
    metrics, wall, cpu = execute(pixel_head, p)  # one thread, as in a sweep
    return {**p, **metrics, "seconds": wall, "cpu_seconds": cpu}


def cell(v: float) -> str:
    return "—" if v != v else f"{v:.3f}"  # NaN: not recorded at this step


def write_md(df: pd.DataFrame) -> str:
    steps = record_steps(STEPS, RECORDS)
    lines = [
        "# T7 pilots: how the budget was sized",
        "",
        f"Seed {SEED} (no preset uses it), fresh samples, batch 128, 16x16 pixels, the `full`",
        "settings of `claims/t7.py` otherwise. Held-out rmse/sd(PMI) on the 1024 x 1024 grid",
        "(linear heads record every other step). The linear floor at d = K = 4 is "
        f"{(df.rank_floor_k / df.product_std).iloc[0]:.3f} sd, the reach tolerance 0.15 (fixed",
        "before any pixel run).",
        "",
        "Regenerate: `.venv/bin/python results/t7/pilot.py` (trains; writes pilot.csv and this",
        "file); `--md` rewrites this file from pilot.csv.",
        "",
        "| head | lr | " + " | ".join(f"step {s}" for s in steps) + " | CPU s |",
        "|---|---|" + "---|" * (len(steps) + 1),
    ]
    for r in df.itertuples():
        sd = r.product_std
        cells = [cell(getattr(r, f"pmi_rmse_product_s{s}") / sd) for s in steps]
        name = "KME M=4" if r.similarity == "kme" else f"linear d={r.dim}"
        lines.append(f"| {name} | {r.lr:g} | " + " | ".join(cells) + f" | {r.cpu_seconds:.0f} |")
    lines += [
        "",
        "Reading:",
        "- At lr 2e-3 the KME head is below the tolerance from step 2100 on and ends at 0.082.",
        "  `quick` trains 3000 steps and `full` 4000, the first budgets past that point with some",
        "  margin; a KME step costs about 14 ms of CPU.",
        "- At lr 5e-3 this seed converges as well (0.079). Exploratory runs before this script",
        "  (a development harness that is not kept) stalled near 0.6 sd after 2000 steps at",
        "  lr 5e-3 on one seed, and converged at 2e-3. T7 uses 2e-3, `pmilab pretrain`'s default;",
        "  that choice rests on one stalled run, not on a measured failure rate.",
        "- The linear head at d = K stays well above its floor (0.268 sd) in 3000 steps.",
        "- The verify seeds (0, 1, 2) were run only through `pmilab verify`, after these choices.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    if "--md" in sys.argv:
        df = pd.read_csv(HERE / "pilot.csv")
    else:
        with ProcessPoolExecutor(2) as pool:
            df = pd.DataFrame(list(pool.map(one, runs())))
        df.to_csv(HERE / "pilot.csv", index=False)
    text = write_md(df)
    (HERE / "pilot.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
