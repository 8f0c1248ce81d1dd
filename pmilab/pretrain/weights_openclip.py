"""open_clip / OpenAI CLIP state dicts in and out of pmilab's CLIP towers (`--pretrained FILE`).

- Read: a `.safetensors` file, a `torch.save` file (a state dict, or a dict holding one under
  "state_dict"; DDP's "module." prefixes are dropped), or OpenAI's TorchScript archive (`torch.jit
  .load(...).state_dict()` when a plain `torch.load` cannot read it). Plain loads are
  `weights_only`: a foreign pickle runs no code.
- Shapes: the towers' widths, layers, patch, image size, context, vocabulary and the embedding
  dimension are read from the tensors' shapes, as open_clip's `build_model_from_openai_state_dict`
  does; attention heads are width / 64 (OpenAI's and open_clip's head width).
- Map: open_clip's names to transformers' CLIP names, as transformers'
  `convert_clip_original_pytorch_to_hf.py` does (a fused `in_proj` split into q, k, v;
  `ln_pre` -> `pre_layrnorm`, `c_fc`/`c_proj` -> `fc1`/`fc2`, ...). `visual.proj` and
  `text_projection` ((width, d), applied as x @ P) become the output heads' linear maps (weight
  P^T, bias 0) when the head takes vectors; `logit_scale` becomes the head's log logit scale
  when it has one. A point-set head gets the towers only (its heads stay as initialised).
- Activation: OpenAI's CLIP uses QuickGELU, open_clip's own model configs GELU, and the state
  dict does not say which. A TorchScript archive (OpenAI) gets QuickGELU; any other file GELU
  unless `quick_gelu=True` (open_clip's `--force-quick-gelu`, and its `-quickgelu` models).
- Inverse: `to_openclip(model)` writes a model's CLIP towers and vector heads in open_clip's
  layout (used by the round-trip test, and to hand weights back to open_clip).
A file that is not such a state dict, or whose tensors do not fit the towers, is an InputError
naming the file and the first problem.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch import Tensor

from pmilab.errors import InputError
from pmilab.pretrain import hf_towers

HEAD_WIDTH = 64  # OpenAI's and open_clip's attention head width
# keys OpenAI's archive and open_clip's models carry that hold no weights
IGNORED = ("input_resolution", "context_length", "vocab_size", "attn_mask")

# per residual block: open_clip name -> transformers name (in_proj is split below)
BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
VISION = {
    "class_embedding": "embeddings.class_embedding",
    "positional_embedding": "embeddings.position_embedding.weight",
    "conv1.weight": "embeddings.patch_embedding.weight",
    "ln_pre.weight": "pre_layrnorm.weight",
    "ln_pre.bias": "pre_layrnorm.bias",
    "ln_post.weight": "post_layernorm.weight",
    "ln_post.bias": "post_layernorm.bias",
}
TEXT = {
    "token_embedding.weight": "embeddings.token_embedding.weight",
    "positional_embedding": "embeddings.position_embedding.weight",
    "ln_final.weight": "final_layer_norm.weight",
    "ln_final.bias": "final_layer_norm.bias",
}
BLOCK_KEY = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)$")


# ---------------------------------------------------------------------------------------------
# reading a file


def read_state_dict(path: str | Path, lazy: bool = False) -> tuple[dict[str, Tensor], bool]:
    """(state dict, is OpenAI's TorchScript archive) of an open_clip / OpenAI checkpoint file.
    lazy: only the shapes are needed (a safetensors file's tensors are then on the meta device,
    a torch.save file is memory-mapped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--pretrained {path}: no such file")
    jit = False
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path)) if not lazy else _meta_tensors(path)
        except Exception as e:  # safetensors raises its own error types on bad bytes
            raise InputError(f"--pretrained {path}: not a safetensors file ({e})") from None
    else:
        try:
            state = _torch_load(path, lazy)
            if isinstance(state, torch.nn.Module):  # torch.load handed it to torch.jit.load
                state, jit = state.state_dict(), True
        except Exception:  # an OpenAI TorchScript archive (or not a checkpoint at all)
            try:
                with warnings.catch_warnings():  # torch.jit is deprecated, its archives are not
                    warnings.simplefilter("ignore")
                    state = torch.jit.load(str(path), map_location="cpu").state_dict()
                jit = True
            except Exception as e:
                raise InputError(
                    f"--pretrained {path}: neither a torch.save state dict nor a TorchScript "
                    f"archive ({type(e).__name__})"
                ) from None
    return unwrap(state, path), jit


def _torch_load(path: Path, lazy: bool):
    with warnings.catch_warnings():  # "looks like a TorchScript archive": the caller handles it
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=lazy)
        except Exception:
            if not lazy:
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # an old format


def _meta_tensors(path: Path) -> dict[str, Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}


def unwrap(state, path) -> dict[str, Tensor]:
    """The flat name -> tensor dict of a loaded checkpoint (open_clip's `load_state_dict` rules)."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(f"--pretrained {path}: not a state dict (a dict of tensors by name)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in IGNORED}


def _need(state: dict, key: str, where) -> Tensor:
    if key not in state:
        raise InputError(
            f"--pretrained {where}: not an open_clip / OpenAI CLIP state dict (no {key!r}; "
            "a ViT image tower and a text transformer are needed)"
        )
    return state[key]


def _layers(state: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pat.match(k))}
    return max(found) + 1 if found else 0


def shapes(state: dict, where="the state dict") -> dict:
    """The pretrain fields of the towers and head the state dict holds (flag names)."""
    conv = _need(state, "visual.conv1.weight", where)
    pos = _need(state, "visual.positional_embedding", where)
    text_w = _need(state, "ln_final.weight", where).shape[0]
    width, patch = conv.shape[0], conv.shape[-1]
    grid = round((pos.shape[0] - 1) ** 0.5)
    if grid * grid + 1 != pos.shape[0]:
        raise InputError(
            f"--pretrained {where}: visual.positional_embedding is not 1 + a square grid"
        )
    return {
        "tower": "clip",
        "text_tower": "clip",
        "width": width,
        "image_layers": _layers(state, "visual."),
        "image_heads": max(1, width // HEAD_WIDTH),
        "patch_size": patch,
        "image_size": patch * grid,
        "text_width": text_w,
        "text_layers": _layers(state, ""),
        "text_heads": max(1, text_w // HEAD_WIDTH),
        "context": _need(state, "positional_embedding", where).shape[0],
        "dim": _need(state, "text_projection", where).shape[-1],
        "vocab": _need(state, "token_embedding.weight", where).shape[0],
    }


def file_fields(path: str | Path) -> dict:
    """The pretrain fields of a checkpoint file's towers and head (`shapes`, without the
    vocabulary: the tokenizer's), read without loading the weights."""
    fields = shapes(read_state_dict(path, lazy=True)[0], path)
    fields.pop("vocab")
    return fields


def hf_configs(state: dict, quick_gelu: bool, where="the state dict") -> tuple[dict, dict]:
    """transformers CLIPVisionConfig and CLIPTextConfig dicts of the towers in `state`."""
    s = shapes(state, where)
    act = "quick_gelu" if quick_gelu else "gelu"
    vision = hf_towers.image_config(
        "clip", s["width"], s["image_layers"], s["image_heads"], s["patch_size"], s["image_size"]
    ).to_dict()
    text = hf_towers.text_config(
        s["vocab"], s["context"], s["text_width"], s["text_layers"], s["text_heads"]
    ).to_dict()
    vision["hidden_act"] = text["hidden_act"] = act
    return vision, text


# ---------------------------------------------------------------------------------------------
# the name mapping


def split_towers(state: dict) -> tuple[dict, dict, dict]:
    """open_clip state -> (vision tower, text tower (transformers names), rest).

    The rest keeps `visual.proj`, `text_projection`, `logit_scale` and every key not mapped."""
    vision, text, rest = {}, {}, {}
    for key, value in state.items():
        if key.startswith("visual."):
            name = _tower_name(key[len("visual.") :], VISION, vision, value)
            if name is None:
                rest[key] = value
        elif _tower_name(key, TEXT, text, value) is None:
            rest[key] = value
    return vision, text, rest


def _tower_name(key: str, table: dict, out: dict, value: Tensor) -> str | None:
    if key in table:
        out[table[key]] = value
        return table[key]
    m = BLOCK_KEY.match(key)
    if not m:
        return None
    i, part, kind = m.groups()
    base = f"encoder.layers.{i}."
    if part not in BLOCK:  # the fused in_proj is split by _split_in_proj first
        return None
    out[f"{base}{BLOCK[part]}.{kind}"] = value
    return f"{base}{BLOCK[part]}.{kind}"


def _split_in_proj(state: dict, prefix: str, out: dict) -> None:
    """open_clip's fused attention in_proj (3w, w) -> transformers' q, k, v projections."""
    pat = re.compile(
        re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$"
    )
    for key in list(state):
        m = pat.match(key)
        if m:
            i, kind = m.groups()
            for name, part in zip("qkv", state.pop(key).chunk(3), strict=True):
                out[f"encoder.layers.{i}.self_attn.{name}_proj.{kind}"] = part


def to_hf(state: dict) -> tuple[dict, dict, dict]:
    """(vision tower state, text tower state, rest) in transformers' names."""
    state = dict(state)
    vision_qkv, text_qkv = {}, {}
    _split_in_proj(state, "visual.", vision_qkv)
    _split_in_proj(state, "", text_qkv)
    vision, text, rest = split_towers(state)
    return {**vision, **vision_qkv}, {**text, **text_qkv}, rest


def from_hf(vision: dict, text: dict) -> dict:
    """The inverse of `to_hf` for the towers: transformers' names -> open_clip's."""
    out = {}
    for tower, prefix, table in ((vision, "visual.", VISION), (text, "", TEXT)):
        inverse = {v: k for k, v in table.items()}
        blocks = {v: k for k, v in BLOCK.items()}
        qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
        for key, value in tower.items():
            if key in inverse:
                out[prefix + inverse[key]] = value
                continue
            m = re.match(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", key)
            if not m:
                continue  # buffers (position ids)
            i, part, kind = m.groups()
            qm = re.match(r"self_attn\.([qkv])_proj$", part)
            if qm:
                qkv.setdefault((i, kind), {})[qm.group(1)] = value
            else:
                out[f"{prefix}transformer.resblocks.{i}.{blocks[part]}.{kind}"] = value
        for (i, kind), parts in qkv.items():
            fused = torch.cat([parts["q"], parts["k"], parts["v"]])
            out[f"{prefix}transformer.resblocks.{i}.attn.in_proj_{kind}"] = fused
    return out


# ---------------------------------------------------------------------------------------------
# into and out of a model


def _tower_state(module, mapped: dict, what: str, where) -> dict:
    """`mapped` (transformers names) checked against a tower's own state dict; InputError on a
    missing key, a key the tower lacks, or a wrong shape."""
    own = module.state_dict()
    missing = [k for k in own if k not in mapped and not k.endswith("position_ids")]
    extra = [k for k in mapped if k not in own]
    wrong = [
        f"{k} {tuple(mapped[k].shape)} (the tower's: {tuple(own[k].shape)})"
        for k in mapped
        if k in own and mapped[k].shape != own[k].shape
    ]
    for problem, keys in (("lacks", missing), ("has unknown", extra), ("has wrong shapes:", wrong)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            raise InputError(
                f"--pretrained {where}: the {what} {problem} {', '.join(keys[:3])}{more}"
            )
    return {k: mapped.get(k, own[k]) for k in own}


def load_openclip(model, source, where=None) -> None:
    """Copy an open_clip / OpenAI state dict (a path, or the dict) into `model`
    (an ImageTextModel with CLIP towers, `--tower clip --text-tower clip`)."""
    if isinstance(source, (str, Path)):
        where = where or source
        state, _ = read_state_dict(source)
    else:
        state, where = source, where or "the state dict"
    if not (hasattr(model.image, "hf_config") and model.image.kind == "clip"):
        raise InputError(f"--pretrained {where}: needs --tower clip (transformers CLIP vision)")
    if not hasattr(model.text, "hf_config"):
        raise InputError(f"--pretrained {where}: needs --text-tower clip (transformers CLIP text)")
    vision, text, rest = to_hf(state)
    head = {}
    if model.inputs.kind == "vector":
        for name, key in (("image_head", "visual.proj"), ("text_head", "text_projection")):
            proj = _need(rest, key, where)
            want = getattr(model, name).proj.weight.shape
            if proj.ndim != 2 or proj.T.shape != want:
                raise InputError(
                    f"--pretrained {where}: {key} is {tuple(proj.shape)}, the head needs "
                    f"{tuple(want[::-1])} (tower width, --dim)"
                )
            head[name] = proj.T
    scale = getattr(model.similarity, "scale", None)
    log_scale = getattr(scale, "log_scale", None)
    unknown = sorted(set(rest) - {"visual.proj", "text_projection", "logit_scale"})
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise InputError(
            f"--pretrained {where}: keys that are not a ViT CLIP's: {', '.join(unknown[:3])}{more}"
        )
    image_state = _tower_state(model.image.model, vision, "image tower", where)
    text_state = _tower_state(model.text.model, text, "text tower", where)
    with torch.no_grad():
        model.image.model.load_state_dict(image_state)
        model.text.model.load_state_dict(text_state)
        for name, weight in head.items():
            proj = getattr(model, name).proj
            proj.weight.copy_(weight)
            if proj.bias is not None:
                proj.bias.zero_()
        if isinstance(log_scale, Tensor) and "logit_scale" in rest:
            log_scale.copy_(rest["logit_scale"].reshape(log_scale.shape))


def to_openclip(model) -> dict[str, Tensor]:
    """A model's CLIP towers (and vector heads, and logit scale) in open_clip's layout.

    The output heads' biases have no place there: they must be zero (as after
    `load_openclip`), else InputError."""
    out = from_hf(model.image.model.state_dict(), model.text.model.state_dict())
    if model.inputs.kind == "vector":
        for name, key in (("image_head", "visual.proj"), ("text_head", "text_projection")):
            proj = getattr(model, name).proj
            if proj.bias is not None and bool(proj.bias.detach().abs().max() > 0):
                raise InputError(
                    f"the {name}'s bias is not zero: open_clip's {key} has no bias; export with "
                    "`pmilab export`, which folds it into the tower's last layer norm"
                )
            out[key] = proj.weight.detach().T.contiguous()
    log_scale = getattr(getattr(model.similarity, "scale", None), "log_scale", None)
    if isinstance(log_scale, Tensor):
        out["logit_scale"] = log_scale.detach().clone()
    return {k: v.detach().clone() for k, v in out.items()}


def prepare(cfg) -> dict | None:
    """At a model's first build from `cfg.pretrained_weights` (a ModelConfig): read the file,
    check the tokenizer, context and image size against it, and set the CLIP towers' configs
    (`image_hf`, `text_hf`) from its shapes; returns the state dict for `load_openclip`. A
    rebuild from a checkpoint (its towers' configs set) reads nothing: None."""
    if cfg.image_hf or cfg.text_hf:
        return None
    path = cfg.pretrained_weights
    if cfg.pretrained_image or cfg.pretrained_text:
        raise InputError(
            f"--pretrained {path} (a state-dict file) and --pretrained-image / --pretrained-text "
            "(folders) both name the towers' weights; pass one of them"
        )
    if cfg.tower == "hf-vit":
        raise InputError(f"--pretrained {path}: holds a CLIP image tower, not --tower hf-vit")
    state, jit = read_state_dict(path)
    s = shapes(state, path)
    if cfg.image_size and cfg.image_size != s["image_size"]:
        raise InputError(
            f"--image-size {cfg.image_size}: the image tower in {path} takes {s['image_size']} px "
            f"images; drop --image-size or pass --image-size {s['image_size']}"
        )
    if cfg.vocab > s["vocab"] or cfg.context > s["context"]:
        raise InputError(
            f"--pretrained {path}: its vocabulary ({s['vocab']}) and context ({s['context']}) "
            f"must hold the tokenizer's {cfg.vocab} ids and --context {cfg.context}; pass CLIP's "
            "tokenizer.json with --tokenizer"
        )
    cfg.tower = cfg.text_tower = "clip"
    cfg.image_hf, cfg.text_hf = hf_configs(state, jit or cfg.force_quick_gelu, path)
    return state
