"""Device and precision resolution (runtime.device, runtime.precision)."""

import pytest
import torch

from pmilab.errors import InputError
from pmilab.runtime.device import resolve_device
from pmilab.runtime.precision import encoder_autocast, param_dtype, resolve_precision


def test_auto_is_cuda_when_present_else_cpu():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", ""])
def test_unknown_device_is_one_input_error(bad):
    with pytest.raises(InputError, match="unknown device"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_names_the_fix():
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_precision_auto_follows_the_device():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    assert resolve_precision("fp64", torch.device("cpu")) == "fp64"
    assert param_dtype("fp64") == torch.float64 and param_dtype("bf16") == torch.float32
    with pytest.raises(InputError, match="precision must be one of"):
        resolve_precision("fp16", torch.device("cpu"))


def test_encoder_autocast_runs_matmuls_in_bf16_only_when_enabled():
    a = torch.randn(4, 4)
    with encoder_autocast("cpu", True):
        assert (a @ a).dtype == torch.bfloat16
    with encoder_autocast("cpu", False):
        assert (a @ a).dtype == torch.float32
