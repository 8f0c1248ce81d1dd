"""`pmilab export` (issue 26 must-show): transformers' CLIPModel loaded from the exported folder
gives the logits `pmilab eval` computes, and the pmilab format reloads a point-set head's model
with equal logits.

The reference is the checkpoint itself, evaluated by pmilab's own evaluation code (load_run,
embed_images, embed_texts, logit_matrix: what `pmilab eval` computes its metrics from), against
the logits transformers' CLIPModel computes by its own code from the exported folder."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import processors

from pmilab.cli import main
from pmilab.pretrain import export
from pmilab.pretrain.data import SkipLog
from pmilab.pretrain.evaluate import (
    embed_images,
    embed_texts,
    load_run,
    logit_matrix,
    retrieval_metrics,
    run_preprocess,
)
from pmilab.pretrain.readers import load_data
from pmilab.pretrain.tokenizer import encode, save_tokenizer, train_tokenizer

TOL = 1e-5
TINY_CLIP = ["--tower", "clip", "--text-tower", "clip", "--width", "32", "--image-layers", "1"]
TINY_CLIP += ["--image-heads", "2", "--text-layers", "1", "--text-heads", "2", "--patch-size", "4"]
TINY_CLIP += ["--image-size", "16", "--dim", "16", "--context", "12"]
LOOP = ["--data", "digits", "--steps", "3", "--warmup", "1", "--batch-size", "8", "--lr", "1e-3"]
LOOP += ["--threads", "1", "--no-progress"]


def close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> bool:
    return a.shape == b.shape and float((a - b).abs().max()) <= tol


def test_the_check_fails_at_twice_its_tolerance_and_passes_at_half():
    a = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    assert not close(a + 2 * TOL, a)
    assert close(a + 0.5 * TOL, a)


def eos_tokenizer(path):
    """A word tokenizer of the digits captions that ends each caption with [EOS] (as CLIP's
    tokenizer.json ends each with <|endoftext|>)."""
    train = load_data("digits", "train", (5000, 1000), progress=False)
    tok = train_tokenizer(train.captions, 64, "word")
    tok.add_special_tokens(["[EOS]"])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [EOS]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[EOS]", tok.token_to_id("[EOS]"))],
    )
    save_tokenizer(tok, path)
    return path


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip_run")
    tok = eos_tokenizer(root / "tok.json")
    out = root / "run"
    assert main(["pretrain", *TINY_CLIP, *LOOP, "--tokenizer", str(tok), "--out", str(out)]) == 0
    return out


def eval_logits(run):
    """The held-out digits logits and inputs as `pmilab eval --data digits --n 64` makes them."""
    model, tok, ckpt = load_run(run)
    test = load_data("digits", "test", (5000, 1000), progress=False).subset(range(64))
    prep = run_preprocess(model, ckpt["config"])
    img, kept = embed_images(model, test, SkipLog(), prep=prep)
    captions = [test.captions[i] for i in kept]
    lm = logit_matrix(model, img, embed_texts(model, tok, captions))
    from pmilab.pretrain.data import ImageTextDataset, collate

    images = collate([ImageTextDataset(test, model.cfg.image_size, prep)[i] for i in kept])[0]
    ids, mask = encode(tok, captions, model.cfg.context)
    return lm, images, ids, mask


def test_clip_export_loads_in_transformers_with_the_logits_of_pmilab_eval(clip_run, tmp_path):
    from transformers import CLIPModel

    out = tmp_path / "hf"
    assert main(["export", str(clip_run), "--out", str(out)]) == 0
    info = json.loads((out / "pmilab_export.json").read_text())
    assert info["format"] == "clip" and info["step"] == 3
    clip = CLIPModel.from_pretrained(out, local_files_only=True).eval()
    lm, images, ids, mask = eval_logits(clip_run)
    with torch.no_grad():
        got = clip(input_ids=ids, attention_mask=mask.long(), pixel_values=images)
    assert close(got.logits_per_image, lm)
    assert close(got.logits_per_text, lm.T)
    # and so every retrieval metric of pmilab eval (ranks of exactly the same logits' order)
    ours, theirs = retrieval_metrics(lm), retrieval_metrics(got.logits_per_image)
    assert ours == pytest.approx(theirs, abs=1e-9)
    # the output heads' biases were trained (not zero): the fold into the layer norms is tested
    model, _, _ = load_run(clip_run)
    assert float(model.image_head.proj.bias.detach().abs().max()) > 1e-4
    # control: a CLIPModel whose logit scale is off by 2x the tolerance (relative to the largest
    # logit) fails the same check, one off by half of it passes
    big = float(lm.abs().max())
    for factor, ok in ((2.0, False), (0.5, True)):
        with torch.no_grad():
            shifted = got.logits_per_image * (1 + factor * TOL / big)
        assert close(shifted, lm) is ok


@pytest.fixture(scope="module")
def kme_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kme_run") / "run"
    args = ["pretrain", *TINY_CLIP, "--similarity", "kme", "--points", "3"]
    assert main([*args, *LOOP, "--out", str(out)]) == 0
    return out


def test_pmilab_export_of_a_point_set_head_reloads_with_equal_logits(kme_run, tmp_path):
    out = tmp_path / "pm"
    assert main(["export", str(kme_run), "--out", str(out)]) == 0
    info = json.loads((out / "pmilab_export.json").read_text())
    assert info["format"] == "pmilab" and "points" in info["why"]
    config = json.loads((out / "pmilab_model.json").read_text())
    assert config["head_inputs"]["kind"] == "points" and config["head_inputs"]["points"] == 3
    assert config["model_config"]["similarity"] == "kme"
    model, tok = export.load_export(out)
    lm, images, ids, mask = eval_logits(kme_run)
    with torch.no_grad():
        got = model.logit_matrix(*model.encode_image(images), *model.encode_text(ids, mask))
    assert close(got, lm)
    assert tok.to_str() == load_run(kme_run)[1].to_str()


def test_clip_towers_with_a_tokenizer_without_an_end_token_get_the_pmilab_format(tmp_path):
    out = tmp_path / "run"
    assert main(["pretrain", *TINY_CLIP, *LOOP[:3], "2", *LOOP[4:], "--out", str(out)]) == 0
    assert main(["export", str(out), "--out", str(tmp_path / "x")]) == 0
    info = json.loads((tmp_path / "x" / "pmilab_export.json").read_text())
    assert info["format"] == "pmilab" and "end token" in info["why"]


def one_error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


def test_bad_exports_are_one_line_with_exit_2(kme_run, tmp_path, capsys):
    line = one_error_line(capsys, ["export", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "no checkpoint ckpt.pt" in line
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    line = one_error_line(capsys, ["export", str(kme_run), "--out", str(tmp_path / "full")])
    assert "is not empty" in line and "--overwrite" in line
    line = one_error_line(
        capsys, ["export", str(kme_run), "--out", str(tmp_path / "c"), "--format", "clip"]
    )
    assert line.startswith("pmilab export: error: --format clip: its similarity head takes points")
    assert main(["export", str(kme_run), "--out", str(tmp_path / "full"), "--overwrite"]) == 0
    assert (tmp_path / "full" / "pmilab_model.safetensors").is_file()


def test_export_help_says_what_is_written(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for word in ("CLIPModel", "pmilab_model.safetensors", "pmilab_model.json", "--overwrite"):
        assert word in text


def test_export_help_imports_nothing_heavy():
    from tests.cli.test_first_touch import heavy_imports

    assert heavy_imports(["export", "--help"]) == []
