"""A markdown table of several `pmilab eval` results side by side (used for results/pretrain).

python -m pmilab.pretrain.report E_linear/eval.json E_wpse/eval.json E_kme/eval.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = [
    ("zeroshot_top1", "zero-shot top-1"),
    ("probe_top1", "probe top-1"),
    ("retrieval_r1_i2t", "R@1 i2t"),
    ("retrieval_r5_i2t", "R@5 i2t"),
    ("retrieval_r10_i2t", "R@10 i2t"),
    ("retrieval_median_rank_i2t", "median rank i2t"),
    ("retrieval_r1_t2i", "R@1 t2i"),
    ("retrieval_r5_t2i", "R@5 t2i"),
    ("retrieval_r10_t2i", "R@10 t2i"),
    ("retrieval_median_rank_t2i", "median rank t2i"),
    ("pmi_rmse_product", "pmi_rmse_product"),
    ("pmi_rmse_joint", "pmi_rmse_joint"),
    ("pmi_delta", "pmi_delta"),
    ("pmi_corr", "pmi_corr"),
    ("mi_infonce", "mi_infonce"),
]


def table(paths: list[Path]) -> str:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    head = "| metric | " + " | ".join(r["similarity"] for r in runs) + " |"
    lines = [head, "|---" * (len(runs) + 1) + "|"]
    for key, label in COLUMNS:
        if not any(key in r for r in runs):
            continue
        cells = []
        for r in runs:
            v, se = r.get(key), r.get(key + "_se")
            cells.append("—" if v is None else f"{v:.3f}" + (f" ± {se:.3f}" if se else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    extra = runs[0]
    notes = [f"chance (zero-shot): {extra.get('zeroshot_chance', float('nan')):.4f}"]
    if "pmi_rmse_constant" in extra:
        notes.append(f"pmi_rmse of a constant logit: {extra['pmi_rmse_constant']:.3f}")
    if "mutual_information" in extra:
        notes.append(f"true I(image; caption) = {extra['mutual_information']:.3f} nats")
    notes.append(f"held-out pairs: {extra['n_eval']}")
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + ".\n"


if __name__ == "__main__":  # pragma: no cover
    print(table([Path(p) for p in sys.argv[1:]]))
