"""Which folders hold a pmilab command's output: the one owner of that rule.

Every command that writes (`fit`, `verify`, `pretrain`, `eval`) checks its --out here before it
writes anything, so that no command silently writes into, or replaces, the output of an earlier
run of itself or of another command. A command may name itself as `own` where writing into its
own earlier output is its resume path (`verify` on its own --out, `pretrain --resume`).

The marker files are the names each command writes; a new file a command writes belongs here.
"""

from __future__ import annotations

from pathlib import Path

from pmilab.errors import InputError

# What each command writes into its --out folder (files, or folders such as verify's runs/).
MARKERS: dict[str, tuple[str, ...]] = {
    "fit": ("config.json", "metrics.json", "model.pt", "logits.npy"),
    "verify": ("meta.json", "report.md", "results.csv", "claims.csv", "runs"),
    "pretrain": ("ckpt.pt", "checkpoints", "config.json", "tokenizer.json", "log.csv")
    + ("summary.json", "tensorboard"),
    "eval": ("eval.json",),
    "export": ("pmilab_export.json", "pmilab_model.safetensors", "model.safetensors"),
}


def earlier_outputs(folder: str | Path, own: str | None = None) -> list[str]:
    """The marker names found in `folder`, in MARKERS order, without those of command `own`
    (whose earlier output the caller may continue)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    allowed = set(MARKERS.get(own, ())) if own else set()
    names = dict.fromkeys(n for names in MARKERS.values() for n in names if n not in allowed)
    return [n for n in names if (folder / n).exists()]


def check_out(
    folder: str | Path, overwrite: bool = False, own: str | None = None, flag: str = "--overwrite"
) -> None:
    """Refuse (InputError, one sentence) a folder holding some command's earlier output, unless
    `overwrite`; `flag` is how the caller's user says overwrite (--overwrite, overwrite=True)."""
    found = earlier_outputs(folder, own)
    if found and not overwrite:
        raise InputError(
            f"the output folder {folder} holds an earlier run ({', '.join(found)}); pass "
            f"{flag} to replace it, or choose another folder"
        )
