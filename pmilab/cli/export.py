"""`pmilab export RUN_DIR --out DIR`: a pretrain run's model as a transformers CLIPModel folder,
or as pmilab's safetensors + config (pmilab/pretrain/export.py, docs/pretraining.md)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a pretrain run's model as a transformers CLIPModel folder or as safetensors",
        description="Writes the model of RUN_DIR's checkpoint into --out. Format clip: a "
        "transformers CLIPModel folder (config.json, model.safetensors; "
        "CLIPModel.from_pretrained(DIR) gives the logits of `pmilab eval`), the run's "
        "tokenizer.json and, for a --preprocess clip run, preprocessor_config.json. It needs CLIP "
        "towers, a head on one vector per input whose logits CLIPModel reproduces (checked on "
        "probe inputs), and a tokenizer that ends each caption with a special token. Format "
        "pmilab, for any head and towers: pmilab_model.safetensors (the state dict under "
        "pmilab's names) and pmilab_model.json (the model config and the head's inputs: "
        "docs/pretraining.md), with tokenizer.json. Both write pmilab_export.json (format, run, "
        "step, why). Exit 2 on bad input (no checkpoint, a non-empty --out without --overwrite).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out directory of `pmilab pretrain`")
    p.add_argument("--out", required=True, help="folder to write (must be empty or new)")
    p.add_argument(
        "--format",
        choices=("auto", "clip", "pmilab"),
        default="auto",
        help="auto: clip when the model can be a CLIPModel with equal logits, else pmilab "
        "(default: auto)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty --out, replacing an earlier export there",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pmilab.pretrain.export import export_run  # checks --out before the checkpoint loads

    info = export_run(args.run_dir, args.out, args.format, args.overwrite)
    print(json.dumps({k: info[k] for k in ("format", "step", "why")}))
    return 0
