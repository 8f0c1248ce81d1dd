"""transformers towers (must-show): the real-size preset, local from_pretrained folders, BPE."""

import json
import math

import numpy as np
import pytest
import torch

from pmilab.errors import InputError
from pmilab.pretrain.accum import accumulate
from pmilab.pretrain.config import PretrainConfig
from pmilab.pretrain.model import ModelConfig, build_model
from pmilab.pretrain.tokenizer import encode, load_tokenizer, save_tokenizer, train_tokenizer
from pmilab.pretrain.train import optimizer_for

CAPTIONS = ["a red circle", "a big blue square", "the number seven", "a tiny green cross"]


@pytest.mark.slow
def test_real_size_preset_builds_and_takes_two_steps_per_head():
    """ViT-B/16 at 224 px + 12-layer width-512 text tower, d = 512: 2 AdamW steps at batch 2."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 224, 224, generator=g)
    ids = torch.randint(3, 64, (2, 77), generator=g)
    mask = torch.ones(2, 77, dtype=torch.bool)
    mask[1, 12:] = False
    for sim in ("linear", "wpse", "kme"):
        cfg = PretrainConfig.from_flags({"model": "ViT-B-16", "similarity": sim, "batch_size": 2})
        torch.manual_seed(0)
        model = build_model(cfg.model_config(vocab=64))
        c = model.cfg
        assert (c.tower, c.width, c.image_size, c.patch_size, c.image_layers) == (
            "clip",
            768,
            224,
            16,
            12,
        )
        assert (c.text_tower, c.text_width, c.text_layers, c.context, c.dim) == (
            "clip",
            512,
            12,
            77,
            512,
        )
        opt = optimizer_for(model, cfg)
        before = {k: v.clone() for k, v in model.image_head.state_dict().items()}
        losses = []
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            losses.append(accumulate(model, model, [(images, ids, mask)]).item())
            opt.step()
        assert all(math.isfinite(v) for v in losses)
        assert any(not torch.equal(v, model.image_head.state_dict()[k]) for k, v in before.items())


def vit_folder(tmp_path, kind: str):
    """A tiny tower saved with save_pretrained (no download anywhere)."""
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModel,
        ViTConfig,
        ViTModel,
    )

    torch.manual_seed(7)
    common = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    if kind == "vit":
        m = ViTModel(ViTConfig(**common, image_size=16, patch_size=4), add_pooling_layer=False)
    elif kind == "clip":
        m = CLIPVisionModel(CLIPVisionConfig(**common, image_size=16, patch_size=4))
    else:
        conf = CLIPTextConfig(**common, vocab_size=40, max_position_embeddings=8)
        conf.bos_token_id = conf.eos_token_id = 2
        m = CLIPTextModel(conf)
    m.save_pretrained(tmp_path / kind)
    return tmp_path / kind, m.eval()


@pytest.mark.parametrize("kind", ["vit", "clip"])
def test_pretrained_image_tower_gives_identical_outputs(tmp_path, kind, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, ref = vit_folder(tmp_path, kind)
    cfg = PretrainConfig(pretrained_image=str(folder), image_size=16).model_config(vocab=20)
    model = build_model(cfg).eval()
    assert model.cfg.tower == ("hf-vit" if kind == "vit" else "clip")
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens, _, pooled = model.image(x)
        out = ref(pixel_values=x)
    assert torch.equal(tokens, out.last_hidden_state)
    # and a checkpoint rebuilds the same tower from its stored config, without the folder
    rebuilt = build_model(json.loads(json.dumps(vars(model.cfg)))).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.image(x)[0], tokens)


def test_pretrained_text_tower_gives_identical_outputs(tmp_path):
    folder, ref = vit_folder(tmp_path, "text")
    cfg = ModelConfig(vocab=30, context=8, pretrained_text=str(folder), width=16)
    model = build_model(cfg).eval()
    ids = torch.randint(3, 30, (2, 8), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        tokens, _, pooled = model.text(ids, mask)
        out = ref(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert torch.equal(tokens, out)
    assert torch.equal(pooled, out[torch.arange(2), torch.tensor([7, 4])])  # last real token


def test_cli_trains_from_a_pretrained_folder_and_eval_rebuilds_it(tmp_path):
    from pmilab.cli import main
    from pmilab.pretrain.evaluate import load_run

    folder, ref = vit_folder(tmp_path, "vit")
    out = tmp_path / "run"
    args = ["pretrain", "--data", "digits", "--pretrained-image", str(folder), "--image-size", "16"]
    args += ["--width", "16", "--dim", "4", "--steps", "1", "--warmup", "0", "--lr", "1e-9"]
    assert main([*args, "--batch-size", "8", "--no-progress", "--out", str(out)]) == 0
    model, _, _ = load_run(out)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # one step at LR 1e-9 moves the weights by ~1e-9
        assert torch.allclose(model.image(x)[0], ref(pixel_values=x).last_hidden_state, atol=1e-5)
    import shutil

    shutil.rmtree(folder)  # the checkpoint holds the tower's config: resume needs no folder
    more = [*args, "--batch-size", "8", "--no-progress", "--out", str(out), "--resume"]
    assert main([x if x != "1" else "2" for x in more]) == 0  # --steps 1 -> 2
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] == 2


def test_pretrained_folder_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        build_model(ModelConfig(pretrained_image=str(tmp_path)))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError, match="model_type 'bert'"):
        build_model(ModelConfig(pretrained_image=str(tmp_path)))


def test_grad_checkpointing_needs_a_transformers_tower():
    with pytest.raises(InputError, match="needs a transformers tower"):
        build_model(ModelConfig(vocab=10, width=16)).enable_grad_checkpointing()


def test_bpe_tokenizer_encodes_any_text_and_round_trips(tmp_path):
    tok = train_tokenizer(CAPTIONS * 5, vocab_size=300, kind="bpe")
    save_tokenizer(tok, tmp_path / "tok.json")
    again = load_tokenizer(tmp_path / "tok.json")
    texts = ["a red circle", "zebra-striped Quokka!"]  # unseen words: bytes, never [UNK]
    ids, mask = encode(tok, texts, 24)
    assert torch.equal(ids, encode(again, texts, 24)[0])
    assert (ids[:, 0] == tok.token_to_id("[CLS]")).all()
    assert tok.token_to_id("[UNK]") not in ids[mask].tolist()
    assert tok.decode(ids[1][mask[1]].tolist()).strip() == "zebra-striped quokka!"  # lower-cased
    assert mask.sum(1).tolist() == [len(tok.encode(t).ids) for t in texts]
    assert tok.get_vocab_size() <= 300


def test_cli_tsv_with_title_and_a_given_tokenizer_json(tmp_path):
    """open_clip's default TSV layout (filepath, title), read with open_clip's flags."""
    from PIL import Image

    from pmilab.cli import main

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    rows = ["filepath\ttitle"]
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
            tmp_path / f"img/{i}.png"
        )
        rows.append(f"img/{i}.png\ta photo, number {i}")  # a comma inside: not a separator here
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    save_tokenizer(train_tokenizer(["a photo number"] * 3, 64, "bpe"), tmp_path / "tokenizer.json")
    out = tmp_path / "run"
    args = ["pretrain", "--data", str(tmp_path / "train.csv"), "--csv-separator", "\\t"]
    args += ["--csv-img-key", "filepath", "--csv-caption-key", "title", "--tokenizer"]
    args += [str(tmp_path / "tokenizer.json"), "--image-size", "8", "--width", "16", "--dim", "4"]
    args += [
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--warmup",
        "0",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    assert ckpt["tokenizer"] == (tmp_path / "tokenizer.json").read_text()
    assert ckpt["config"]["csv_caption_key"] == "title"
