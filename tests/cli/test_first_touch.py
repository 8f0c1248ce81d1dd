"""A newcomer's first touch: `pmilab --help`, `--version` and `pmilab CMD --help` import none of
the heavy libraries (seconds of CPU each; measured 3.3-4.4 s of CPU for `pmilab --help` while
building the parser imported torch, 0.08 s without).

Each check runs in a fresh interpreter, since this test process has long imported them all."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "scipy", "sklearn", "pandas", "matplotlib")
ARGVS = [
    ["--help"],
    ["--version"],
    *(
        [cmd, "--help"]
        for cmd in ("verify", "power", "compare", "fit", "figures", "pretrain", "eval")
    ),
]


def heavy_imports(argv: list[str], first: str = "") -> list[str]:
    """The HEAVY modules a fresh interpreter holds after `first` (Python code) and then
    `pmilab.cli.main(argv)` (which exits through SystemExit for --help / --version)."""
    code = (
        "import json, sys\n"
        f"{first}\n"
        "from pmilab.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip(), "the help or version text was printed"
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_help_and_version_import_nothing_heavy(argv):
    assert heavy_imports(argv) == []


def test_the_check_sees_a_heavy_import():
    """Control: the same check, in a process that imported torch (and pandas) first, fails."""
    assert heavy_imports(["--help"], first="import torch, pandas") == ["torch", "pandas"]


def test_pretrain_help_shows_the_config_defaults_and_presets():
    """`pretrain --help` reads PretrainConfig without importing its package: the defaults and
    the preset names it shows are those of the real config module."""
    from pmilab.pretrain.config import PRESETS, PretrainConfig

    done = subprocess.run(
        [sys.executable, "-m", "pmilab", "pretrain", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text = " ".join(done.stdout.split())
    assert f"--model {{{','.join(PRESETS)}}}" in text
    cfg = PretrainConfig()
    assert "--steps STEPS optimizer steps" in text and f"(default: {cfg.steps})" in text
    assert f"(default: {cfg.lr!r})" in text and "--overwrite" in text
