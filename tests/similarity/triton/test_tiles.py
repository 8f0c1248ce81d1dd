"""Launch parameters of the fused kernels (`_triton_common`): the defaults, the override the
benchmarks' tile sweep uses, and num_stages reaching the launch only when set."""

from __future__ import annotations

import pytest
import torch

from tests.similarity.triton.conftest import SKIP_REASON

pytest.importorskip("triton", reason=SKIP_REASON)

from pmilab.similarity import _triton_common as common  # noqa: E402


def test_default_gpu_tiles_are_tile_shapes():
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for bd in (16, 64, 128, 256):
            t = common.gpu_tiles(dtype, bd, sms=132)
            assert (t.block_b, t.block_c, t.num_warps) == common.tile_shape(dtype, bd)
            assert t.block_d == bd and t.programs == 264 and t.num_stages is None
            assert t.launch == {"num_warps": t.num_warps}  # Triton's own num_stages


def test_override_takes_tiles_and_stages_and_is_restored():
    default = common.gpu_tiles(torch.bfloat16, 256, sms=132)
    with common.override_tiles((64, 32, 8, 2)):
        t = common.gpu_tiles(torch.bfloat16, 256, sms=132)
        assert (t.block_b, t.block_c, t.num_warps, t.num_stages) == (64, 32, 8, 2)
        assert t.launch == {"num_warps": 8, "num_stages": 2}
        with common.override_tiles((128, 32, 8)):
            inner = common.gpu_tiles(torch.float32, 64, sms=1)
            assert (inner.block_b, inner.block_c, inner.num_stages) == (128, 32, None)
        assert common.gpu_tiles(torch.bfloat16, 256, sms=132) == t
        with common.override_tiles(None):  # "default" in a sweep
            assert common.gpu_tiles(torch.bfloat16, 256, sms=132) == default
    assert common.gpu_tiles(torch.bfloat16, 256, sms=132) == default


def test_override_is_restored_after_an_error():
    default = common.gpu_tiles(torch.bfloat16, 64, sms=8)
    with pytest.raises(RuntimeError), common.override_tiles((16, 16, 1)):
        raise RuntimeError("a launch failed")
    assert common.gpu_tiles(torch.bfloat16, 64, sms=8) == default


@pytest.mark.parametrize("bad", [(64, 32), (64, 32, 8, 2, 1), (64, 0, 8)])
def test_override_rejects_malformed_shapes(bad):
    with pytest.raises(ValueError, match="tiles"), common.override_tiles(bad):
        pass


def test_cpu_tensors_keep_the_interpreters_tiles():
    with common.override_tiles((64, 32, 8, 3)):
        t = common.tiles(torch.device("cpu"), 20, torch.float32)
    assert (t.block_b, t.block_c, t.block_d, t.num_warps, t.num_stages) == (16, 16, 32, 1, None)


def test_parse_tiles_owns_the_benchmarks_format():
    assert common.parse_tiles("64,32,8") == (64, 32, 8)
    assert common.parse_tiles("64,32,8,2") == (64, 32, 8, 2)
    assert common.parse_tiles("default") is None
    for bad in ("64,32", "64,32,8,2,1", "64,x,8", "64,0,8", "", "default,1"):
        with pytest.raises(ValueError, match="expected BB,BC,WARPS") as err:
            common.parse_tiles(bad)
        assert repr(bad) in str(err.value)
