"""Tower configurations that torch or transformers cannot build are refused in one line that
names the flags (pmilab.pretrain.towers.check_towers), before any data is read."""

import pytest
import torch

from pmilab.cli import main
from pmilab.errors import InputError
from pmilab.pretrain.model import ModelConfig, build_model
from pmilab.pretrain.towers import ConvTower, TextTower, ViTTower

# (flags, what the one line must name)
INVALID = [
    (["--tower", "vit", "--width", "30"], ["--width 30", "--image-heads 4"]),
    (
        ["--tower", "hf-vit", "--width", "48", "--image-heads", "5", "--text-width", "32"],
        ["--width 48", "--image-heads 5"],
    ),
    (["--text-width", "30"], ["--text-width (or --width) 30", "--text-heads 4"]),
    (
        ["--text-tower", "clip", "--text-heads", "5"],
        ["--text-width (or --width) 64", "--text-heads 5"],
    ),
    (["--tower", "vit", "--patch-size", "5"], ["--patch-size 5", "--image-size 32"]),
    (["--tower", "clip", "--patch-size", "64"], ["--patch-size 64", "--image-size 32"]),
    (["--tower", "cnn", "--width", "24"], ["--tower cnn", "--width divisible by 16, got 24"]),
]


@pytest.mark.parametrize(("flags", "named"), INVALID)
def test_an_unbuildable_tower_is_one_line_before_the_data(tmp_path, capsys, flags, named):
    # --data names a file that does not exist: the tower check must come first
    args = ["pretrain", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]
    assert main([*args, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the towers cannot be built" in err[0], err
    for name in named:
        assert name in err[0], err[0]
    assert not (tmp_path / "o").exists()


def test_zero_layers_are_refused_by_flag_and_by_library_call(tmp_path, capsys):
    args = ["pretrain", "--data", "digits", "--out", str(tmp_path / "o"), "--tower", "vit"]
    assert main([*args, "--image-layers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--image-layers must be >= 1, got 0" in err[0]
    with pytest.raises(InputError, match="--text-layers must be >= 1, got 0"):
        ModelConfig(text_layers=0)


def test_a_buildable_configuration_builds_and_runs():
    """The control: a configuration next to the refused ones passes the check and trains."""
    cfg = ModelConfig(tower="vit", width=32, image_heads=8, patch_size=8, text_heads=2)
    model = build_model(cfg)
    loss = model(
        torch.zeros(2, 3, 32, 32),
        torch.ones(2, 5, dtype=torch.long),
        torch.ones(2, 5, dtype=torch.bool),
    )
    assert torch.isfinite(loss)


def builds(make, *args, **kwargs) -> bool:
    try:
        make(*args, **kwargs)
    except (AssertionError, ValueError, RuntimeError):  # InputError is a ValueError
        return False
    return True


@pytest.mark.parametrize("width", range(8, 41, 2))
@pytest.mark.parametrize("heads", range(1, 9))
def test_the_heads_rule_is_exactly_what_torch_can_build(width, heads):
    """Reference: torch itself (nn.MultiheadAttention asserts width % heads == 0)."""
    image = dict(tower="vit", width=width, image_heads=heads, text_width=16, text_heads=1)
    assert builds(ModelConfig, **image) == builds(ViTTower, width, 1, heads, 4, 32)
    text = dict(width=16, text_width=width, text_heads=heads)
    assert builds(ModelConfig, **text) == builds(TextTower, 10, 4, width, 1, heads)


@pytest.mark.parametrize("width", range(8, 97, 8))
def test_the_cnn_width_rule_is_exactly_what_torch_can_build(width):
    """Reference: torch's GroupNorm (8 groups of the first block's width / 2 channels)."""
    assert builds(ModelConfig, width=width, text_width=16) == builds(ConvTower, width)


def test_a_patch_that_does_not_tile_the_image_would_drop_pixels():
    """Why it is refused although torch builds it: a 5-pixel patch over 32 pixels ignores the
    last 2 rows and columns (the strided conv stops at 30), so their content changes nothing."""
    torch.manual_seed(0)
    tower = ViTTower(16, 1, 4, 5, 32)
    x = torch.randn(1, 3, 32, 32)
    y = x.clone()
    y[..., 30:, :] = 100.0
    assert torch.equal(tower(x)[2], tower(y)[2])
    with pytest.raises(InputError, match="--patch-size 5 does not divide --image-size 32"):
        ModelConfig(tower="vit", patch_size=5, image_size=32)
