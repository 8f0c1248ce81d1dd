"""The Python `evaluate(out=)` refuses an earlier eval.json as `pmilab eval --out` does."""

from __future__ import annotations

import pytest

from pmilab.errors import InputError
from pmilab.pretrain.evaluate import evaluate


def test_evaluate_refuses_an_earlier_eval_json_before_loading_anything(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "eval.json").write_text("{}")
    # the checkpoint does not exist: the refusal must come first, and nothing is written
    with pytest.raises(InputError, match=r"earlier run \(eval.json\).*overwrite=True"):
        evaluate(tmp_path / "no-such-run", "digits", out, progress=False)
    assert (out / "eval.json").read_text() == "{}"
    # with overwrite=True the next check speaks: the missing checkpoint
    with pytest.raises((InputError, FileNotFoundError)) as e:
        evaluate(tmp_path / "no-such-run", "digits", out, progress=False, overwrite=True)
    assert "eval.json" not in str(e.value)
