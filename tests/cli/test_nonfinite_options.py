"""NaN and inf are refused for every float option, at the boundary, with one sentence naming
the field: FitConfig.validated(), PretrainConfig, and the CLI flags that feed them.

The float fields are found here from the dataclasses' annotations (not from the code under
test), so a float field added later is covered without touching this file."""

from __future__ import annotations

import math
import typing
from dataclasses import fields

import pytest

from pmilab.cli import main
from pmilab.errors import InputError
from pmilab.pretrain.config import PretrainConfig
from pmilab.training.config import FitConfig

BAD = [math.nan, math.inf, -math.inf]


def float_fields(cls) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [
        f.name
        for f in fields(cls)
        if hints[f.name] is float or float in typing.get_args(hints[f.name])
    ]


def test_the_float_fields_are_found():
    """The introspection finds the fields this test was written against."""
    assert {"weight_decay", "lr", "sigma", "converge_tol", "logit_cap"} <= set(
        float_fields(FitConfig)
    )
    assert {"weight_decay", "lr", "sigma"} <= set(float_fields(PretrainConfig))


@pytest.mark.parametrize("name", float_fields(FitConfig))
@pytest.mark.parametrize("value", BAD, ids=str)
def test_fit_config_refuses_a_non_finite_float(name, value):
    with pytest.raises(InputError) as e:
        FitConfig(**{name: value}).validated()
    msg = str(e.value)
    assert msg.startswith(f"{name} must be ") and "\n" not in msg


# settings a float field needs beside it (floor_gap judges an exact population loss)
NEEDS = {"floor_gap": {"population": True}}


@pytest.mark.parametrize("name", float_fields(FitConfig))
def test_control_fit_config_accepts_the_default_and_a_finite_value(name):
    """Control: the field itself is accepted with a finite value (the refusal is NaN's)."""
    default = getattr(FitConfig(), name)
    value = 0.5 if default is None else default
    needs = NEEDS.get(name, {})
    FitConfig(**{name: value}, **needs).validated()
    FitConfig(**{name: value * 2 if value else 0.25}, **needs).validated()


def test_fit_config_refuses_a_nan_warmup():
    with pytest.raises(InputError, match="^warmup must be an integer >= 0"):
        FitConfig(warmup=math.nan).validated()
    FitConfig(warmup=3).validated()  # control


@pytest.mark.parametrize("name", float_fields(PretrainConfig))
@pytest.mark.parametrize("value", BAD, ids=str)
def test_pretrain_config_refuses_a_non_finite_float(name, value):
    flag = "--" + name.replace("_", "-")
    with pytest.raises(InputError) as e:
        PretrainConfig(**{name: value})
    assert str(e.value) == f"{flag} must be a finite number, got {value!r}"


@pytest.mark.parametrize("name", float_fields(PretrainConfig))
def test_control_pretrain_config_accepts_a_finite_float(name):
    PretrainConfig(**{name: getattr(PretrainConfig(), name) * 2})


@pytest.mark.parametrize(
    "argv, line",
    [
        (
            ["pretrain", "--weight-decay", "nan"],
            "pmilab pretrain: error: --weight-decay must be a finite number, got nan",
        ),
        (["pretrain", "--wd", "inf"], "pmilab pretrain: error: --weight-decay must be a finite"),
        (["pretrain", "--sigma=-inf"], "pmilab pretrain: error: --sigma must be a finite"),
        (["pretrain", "--lr", "nan"], "pmilab pretrain: error: --lr must be a finite number"),
        (["fit", "--sigma", "nan"], "pmilab fit: error: --sigma must be a finite number"),
        (["fit", "--temperature", "inf"], "pmilab fit: error: --temperature must be a finite"),
        (["fit", "--logit-cap", "nan"], "pmilab fit: error: --logit-cap must be a finite"),
    ],
)
def test_the_cli_refuses_non_finite_numbers_in_one_line(argv, line, tmp_path, capsys):
    out = tmp_path / "out"
    if argv[0] == "fit":
        argv = [*argv, "--dist", "latent:nx=4,ny=4,k=2,seed=0", "--steps", "100000000"]
    rc = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(line), err
    assert not out.exists()
