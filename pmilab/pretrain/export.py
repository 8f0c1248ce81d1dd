"""`pmilab export`: a trained run's model in a form other programs read (docs/pretraining.md).

Two formats; `auto` picks the first that holds the model exactly:
- `clip`: a transformers `CLIPModel` folder (`save_pretrained`: config.json, model.safetensors),
  plus the run's tokenizer.json, and preprocessor_config.json for a `--preprocess clip` run.
  Possible when the towers are CLIP's (`--tower clip --text-tower clip`), the head takes one
  vector per input, and `CLIPModel` reproduces the head's logits: the export checks this on
  probe inputs, so a head is judged by what it computes, not by its name. The output heads'
  biases, which `CLIPModel`'s projections lack, are folded into the towers' last layer norms
  (bias beta -> beta + P^+ b, exact when the projection P has full row rank, d <= width).
  `CLIPModel`'s text tower pools at the first end token (`eos_token_id`), pmilab's at the last
  real token: they agree when the run's tokenizer ends every caption with a special token (as
  CLIP's own tokenizer.json does), so a run whose tokenizer appends none (pmilab's `word` and
  `bpe`) cannot be a `CLIPModel` and gets the pmilab format.
- `pmilab`: `pmilab_model.safetensors` (the model's state dict under pmilab's parameter names,
  float32), `pmilab_model.json` (the ModelConfig, towers' transformers configs included, the
  head's declared inputs, the preprocessing) and tokenizer.json. Any head and any towers;
  `load_export(DIR)` rebuilds the model offline.
Both write `pmilab_export.json`: the format, the run, its step and why `auto` chose as it did.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from pmilab import atomic
from pmilab.errors import InputError
from pmilab.pretrain.evaluate import load_run
from pmilab.pretrain.model import ImageTextModel, build_model
from pmilab.pretrain.tokenizer import encode, load_tokenizer, pad_id

FORMATS = ("auto", "clip", "pmilab")
PMILAB_FORMAT = "pmilab-export/1"
WEIGHTS = "pmilab_model.safetensors"
CONFIG = "pmilab_model.json"
INFO = "pmilab_export.json"
TOKENIZER = "tokenizer.json"
CLIP_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
FILES = (WEIGHTS, CONFIG, INFO, TOKENIZER, *CLIP_FILES)
PROBE_TOL = 1e-4  # the CLIPModel's logits against pmilab's on the probe inputs (fp32)


def check_export_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(
            f"--out {out} is not empty; pass --overwrite to replace an earlier export there, or "
            "choose another folder"
        )


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "auto", overwrite=False) -> dict:
    """Export the checkpoint of a `pmilab pretrain` run to `out`; returns pmilab_export.json."""
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    check_export_out(out, overwrite)
    model, tok, ckpt = load_run(Path(run_dir))
    reason = clip_problem(model, tok)
    if fmt == "clip" and reason:
        raise InputError(f"--format clip: {reason}; --format pmilab holds any model")
    chosen = "pmilab" if fmt == "pmilab" or reason else "clip"
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:  # an earlier export's files (with --overwrite)
        (out / name).unlink(missing_ok=True)
    pretrain = ckpt["config"]
    preprocess = {
        "preprocess": pretrain.get("preprocess") or "simple",
        "image_size": model.cfg.image_size,
    }
    if chosen == "clip":
        clip = to_clip_model(model, tok)
        clip.save_pretrained(out)
        if preprocess["preprocess"] == "clip":
            from pmilab.pretrain.preprocess import clip_processor

            clip_processor(model.cfg.image_size).save_pretrained(out)
    else:
        save_pmilab(model, out, preprocess)
    atomic.write_text(out / TOKENIZER, tok.to_str())
    info = {
        "format": chosen,
        "run": str(run_dir),
        "step": int(ckpt["step"]),
        "similarity": model.cfg.similarity,
        **preprocess,
        "why": "asked for" if fmt != "auto" else (reason or "CLIPModel reproduces the logits"),
    }
    atomic.write_json(out / INFO, info)
    return info


# ---------------------------------------------------------------------------------------------
# the pmilab format


def save_pmilab(model: ImageTextModel, out: Path, preprocess: dict) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().float().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": PMILAB_FORMAT})
    atomic.write_json(
        out / CONFIG,
        {
            "format": PMILAB_FORMAT,
            "model_config": asdict(model.cfg),
            "head_inputs": asdict(model.inputs),
            **preprocess,
        },
    )


def load_export(directory: str | Path):
    """(model in eval mode, tokenizer) of a pmilab-format export folder."""
    from safetensors.torch import load_file

    directory = Path(directory)
    path = directory / CONFIG
    if not path.is_file():
        raise InputError(f"{directory} holds no {CONFIG}: not a pmilab-format export")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != PMILAB_FORMAT:
        raise InputError(f"{path} is not a {PMILAB_FORMAT} file")
    model = build_model(config["model_config"])
    try:
        model.load_state_dict(load_file(str(directory / WEIGHTS)))
    except (OSError, RuntimeError) as e:  # a missing file, or tensors that do not fit
        raise InputError(f"{directory / WEIGHTS}: {str(e).splitlines()[0]}") from None
    return model.eval(), load_tokenizer(directory / TOKENIZER)


# ---------------------------------------------------------------------------------------------
# the CLIPModel format


def end_token(tok) -> int | None:
    """The special token the tokenizer appends to every caption, or None."""
    ids = tok.encode("a").ids
    specials = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    return ids[-1] if ids and ids[-1] in specials else None


def clip_problem(model: ImageTextModel, tok) -> str | None:
    """Why `model` cannot be a transformers CLIPModel with equal logits (None: it can)."""
    if getattr(model.image, "kind", None) != "clip" or not hasattr(model.text, "hf_config"):
        return "its towers are not transformers CLIP towers (--tower clip --text-tower clip)"
    if model.inputs.kind != "vector":
        return f"its similarity head takes {model.inputs.kind} per input, and CLIPModel one vector"
    eos = end_token(tok)
    if eos is None:
        return (
            "its tokenizer appends no end token to a caption, and CLIPModel's text tower pools at "
            "one (pmilab pools at the last real token)"
        )
    if eos == 2:  # transformers reads eos_token_id 2 as its legacy argmax pooling
        return "its tokenizer's end token has id 2, which CLIPModel reads as argmax pooling"
    try:
        clip = to_clip_model(model, tok)
    except InputError as e:
        return str(e)
    err = probe_error(model, clip, tok)
    if not err <= PROBE_TOL:
        return f"CLIPModel does not reproduce the head's logits (max difference {err:.2g})"
    return None


def fold_bias(proj: torch.nn.Linear, norm_bias: Tensor, what: str) -> Tensor:
    """A layer-norm bias beta' with P (beta' - beta) = b: the head's bias b moved before P."""
    if proj.bias is None:
        return norm_bias.detach().clone()
    w, b = proj.weight.detach().double(), proj.bias.detach().double()
    shift = torch.linalg.lstsq(w, b[:, None]).solution[:, 0]
    if (w @ shift - b).abs().max() > 1e-6 * (1 + b.abs().max()):
        raise InputError(f"the {what} head's bias cannot be folded into the tower (d > width)")
    return (norm_bias.detach().double() + shift).to(norm_bias.dtype)


def to_clip_model(model: ImageTextModel, tok):
    """A transformers CLIPModel holding the model's towers, projections and logit scale."""
    from transformers import CLIPConfig, CLIPModel

    eos = end_token(tok)
    text_cfg = dict(model.cfg.text_hf, eos_token_id=eos, pad_token_id=pad_id(tok))
    image_cfg = dict(model.cfg.image_hf)
    for c in (text_cfg, image_cfg):  # the tower's own config, not a nested one's leftovers
        for key in ("architectures", "transformers_version", "_name_or_path"):
            c.pop(key, None)
    log_scale = getattr(getattr(model.similarity, "scale", None), "log_scale", None)
    if not isinstance(log_scale, Tensor):
        raise InputError("its similarity head has no logit scale (CLIPModel's logit_scale)")
    config = CLIPConfig(
        text_config=text_cfg,
        vision_config=image_cfg,
        projection_dim=model.inputs.dim,
        logit_scale_init_value=float(log_scale.detach()),
    )
    clip = CLIPModel(config).eval()
    image_state = dict(model.image.model.state_dict())
    text_state = dict(model.text.model.state_dict())
    image_state["post_layernorm.bias"] = fold_bias(
        model.image_head.proj, image_state["post_layernorm.bias"], "image"
    )
    text_state["final_layer_norm.bias"] = fold_bias(
        model.text_head.proj, text_state["final_layer_norm.bias"], "text"
    )
    with torch.no_grad():
        _load_tower(clip.vision_model, image_state)
        _load_tower(clip.text_model, text_state)
        clip.visual_projection.weight.copy_(model.image_head.proj.weight)
        clip.text_projection.weight.copy_(model.text_head.proj.weight)
        clip.logit_scale.copy_(log_scale.reshape(clip.logit_scale.shape))
    return clip


def _load_tower(dst: torch.nn.Module, state: dict) -> None:
    """Load a tower's state into CLIPModel's (its names may carry one more prefix)."""
    own = dst.state_dict()
    mapped = {}
    for key in own:
        src = next((s for s in (key, key.split(".", 1)[-1]) if s in state), None)
        mapped[key] = state[src] if src is not None else own[key]
    dst.load_state_dict(mapped)


@torch.no_grad()
def probe_error(model: ImageTextModel, clip, tok) -> float:
    """Max |CLIPModel logits - pmilab logits| on random images and short captions."""
    gen = torch.Generator().manual_seed(0)
    size = model.cfg.image_size
    images = torch.randn(3, 3, size, size, generator=gen)
    ids, mask = encode(tok, ["a", "a b c", "a photo of a b c"], model.cfg.context)
    ref = model.logit_matrix(*model.encode_image(images), *model.encode_text(ids, mask))
    got = clip_logits(clip, images, ids, mask)
    return float((got - ref).abs().max())


@torch.no_grad()
def clip_logits(clip, images: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
    """CLIPModel's logits_per_image."""
    out = clip(input_ids=ids, attention_mask=mask.long(), pixel_values=images)
    return out.logits_per_image
