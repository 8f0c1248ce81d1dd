"""The bad-input table (README "Bad input"): every class of bad input the CLI can get, with its
exit code and its one message line; no traceback, no warning, and no earlier output modified.

Exit 2: the input is refused before anything is trained or written. Exit 1: training ran but
went wrong (stopped on a non-finite step, or learned constant logits); the run is still written,
flagged in metrics.json. Each row runs `pmilab.cli.main` in-process with every warning recorded
(a warning would reach the user's terminal); `test_entry_point_*` repeats some rows through the
installed `pmilab` command to see its real stderr.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

import pmilab
from pmilab.cli import build_parser, main
from pmilab.dists import random_latent_class

ROOT = Path(__file__).resolve().parents[2]
NEVER = "100000000"  # --steps for rows refused before training: training this long would hang


@dataclass
class Case:
    id: str
    argv: list[str]  # {d} is the case's folder of input files
    rc: int
    says: tuple[str, ...]  # substrings of the one stderr line


def _write_inputs(d: Path) -> None:
    """Every input file the table uses, plus an earlier fit run and an earlier verify folder."""
    table = random_latent_class(6, 5, 2, seed=0).table.numpy()
    np.save(d / "t.npy", table)
    np.save(d / "unnorm.npy", table * 3)
    np.save(d / "complex.npy", table.astype(np.complex128))
    zero_row = table.copy()
    zero_row[2] = 0
    np.save(d / "zero_row.npy", zero_row / zero_row.sum())
    neg = table.copy()
    neg[0, 0] = -0.1
    np.save(d / "neg.npy", neg)
    nan = table.copy()
    nan[1, 1] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "cube.npy", np.ones((2, 2, 2)) / 8)
    (d / "empty.csv").write_text("")
    (d / "text.npy").write_text("0.5,0.5\n")
    (d / "words.csv").write_text("a,b\nc,d\n")
    (d / "file").write_text("an existing file, not a folder\n")
    # an earlier run of `pmilab fit` (the real thing, so its files are what fit writes)
    assert (
        main(
            ["fit", "--dist", str(d / "t.npy"), "--steps", "5", "--quiet", "--out", str(d / "run")]
        )
        == 0
    )
    # an earlier `pmilab verify` folder with a corrupt meta.json
    v = d / "verify"
    (v / "runs").mkdir(parents=True)
    (v / "figures").mkdir()
    (v / "report.md").write_text("# report\n| T5a | PASS |\n")
    (v / "results.csv").write_text("run_id,sweep,x\nr0,t5-cap,1.0\n")
    (v / "runs" / "t5-cap.csv").write_text("run_id,sweep,x\nr0,t5-cap,1.0\n")
    (v / "figures" / "t5.png").write_bytes(b"\x89PNG fake")
    (v / "meta.json").write_text('{"preset": "smoke", "seeds": nul')  # truncated JSON


FIT = ["fit", "--quiet", "--steps", NEVER]


def fit_case(id, dist, rc, *says, extra=(), out="{d}/new"):
    return Case(id, [*FIT, "--dist", dist, *extra, "--out", out], rc, says)


CASES = [
    # --- corrupt files in an output folder --------------------------------------------------
    Case(
        "verify-corrupt-meta-json",
        ["verify", "--preset", "smoke", "--jobs", "1", "--claims", "T5", "--out", "{d}/verify"],
        2,
        ("meta.json", "is not a pmilab verify meta.json", "use another --out"),
    ),
    Case(
        "figures-corrupt-meta-json",
        ["figures", "--results", "{d}/verify", "--run-missing", "--jobs", "1", "--claims", "T5"],
        2,
        ("meta.json", "is not a pmilab verify meta.json"),
    ),
    # --- --out ------------------------------------------------------------------------------
    fit_case("out-is-a-file", "{d}/t.npy", 2, "is an existing file", out="{d}/file"),
    fit_case("out-below-a-file", "{d}/t.npy", 2, "is a file", out="{d}/file/run"),
    fit_case("out-empty", "{d}/t.npy", 2, "must be a path, got an empty string", out=""),
    fit_case("out-holds-an-earlier-run", "{d}/t.npy", 2, "holds an earlier run", "--overwrite", out="{d}/run"),
    # --- table options and spec keys ---------------------------------------------------------
    fit_case("option-typo-normalise", "{d}/t.npy?normalise", 2, "unknown table option 'normalise'", "?normalize, ?drop_empty"),
    fit_case("option-unknown", "{d}/t.npy?normalize&sort", 2, "unknown table option 'sort'", "?normalize, ?drop_empty"),
    fit_case("option-empty", "{d}/t.npy?", 2, "an empty option", "?normalize"),
    fit_case("option-twice", "{d}/t.npy?normalize&normalize", 2, "given twice"),
    fit_case("option-on-a-named-spec", "latent:nx=4?normalize", 2, "apply to .npy/.csv table files only"),
    fit_case("flag-on-a-named-spec", "latent:nx=4", 2, "apply to .npy/.csv table files only", extra=["--normalize"]),
    fit_case("spec-key-twice", "latent:nx=4,nx=5", 2, "'nx' is given twice", "concentration", "transform"),
    fit_case("spec-key-unknown", "latent:nx=4,foo=1", 2, "unknown parameter(s) ['foo']", "allowed"),
    fit_case("spec-malformed", "latent:nx", 2, "malformed parameter 'nx'"),
    fit_case("spec-unknown-distribution", "banana:x=1", 2, "unknown distribution 'banana'"),
    fit_case("spec-rho-out-of-range", "gaussian:dx=2,dy=2,rho=1", 2, "|rho| < 1"),
    fit_case("spec-rho-not-a-number", "gaussian:dx=2,dy=2,rho=0.5/a", 2, "rho='0.5/a' must be a number"),
    # --- table contents ----------------------------------------------------------------------
    fit_case("table-not-normalised", "{d}/unnorm.npy", 2, "sums to 3", "--normalize", "?normalize"),
    fit_case("table-all-zero-row", "{d}/zero_row.npy", 2, "all-zero rows [2]", "--drop-empty", "?drop_empty"),
    fit_case("table-negative", "{d}/neg.npy", 2, "negative entries"),
    fit_case("table-nan", "{d}/nan.npy", 2, "NaN or inf"),
    fit_case("table-complex", "{d}/complex.npy", 2, "complex numbers", "must be real"),
    fit_case("table-3d", "{d}/cube.npy", 2, "must be 2-D"),
    # --- unreadable files --------------------------------------------------------------------
    fit_case("file-missing", "{d}/missing.npy", 2, "does not exist"),
    fit_case("file-empty-csv", "{d}/empty.csv", 2, "holds no numbers"),
    fit_case("file-text-named-npy", "{d}/text.npy", 2, "not a NumPy .npy file", "numpy.save"),
    fit_case("file-words-csv", "{d}/words.csv", 2, "cannot read table file"),
    fit_case("file-wrong-suffix", "{d}/file", 2, "must end in .npy or .csv"),
    # --- numbers and names -------------------------------------------------------------------
    fit_case("number-not-a-number", "{d}/t.npy", 2, "--lr must be a finite number", extra=["--lr", "nan"]),
    fit_case("name-unknown-similarity", "{d}/t.npy", 2, "unknown similarity 'cosine'", extra=["--similarity", "cosine"]),
    # --- training that goes wrong: exit 1, the run is written and flagged --------------------
    Case(
        "lr-overflow-inside-adam",
        ["fit", "--quiet", "--dist", "{d}/t.npy", "--similarity", "tabular", "--population", "--lr", "1e38", "--steps", "30", "--out", "{d}/new"],
        1,
        ("training stopped at step 0", "optimizer update overflowed", "lr=1e+38"),
    ),
    Case(
        "lr-constant-logits",
        ["fit", "--quiet", "--dist", "{d}/t.npy", "--similarity", "linear", "--lr", "1e30", "--steps", "30", "--out", "{d}/new"],
        1,
        ("learned logits are constant", "pmi_corr is undefined", "lr=1e+30"),
    ),
]  # fmt: skip
if Path("/proc/self").is_dir():  # Linux: a folder nobody can create, root included
    CASES.append(fit_case("out-uncreatable", "{d}/t.npy", 2, "cannot create the output folder", out="/proc/pmilab/run"))  # fmt: skip


def _snapshot(d: Path) -> dict[str, str]:
    """sha256 of every file below d (the inputs and the earlier outputs)."""
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file() and "new" not in p.relative_to(d).parts
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    _write_inputs(d)
    return d


@pytest.fixture
def case_dir(inputs, tmp_path):
    """A fresh copy of the inputs per case, so a case can only change its own copy."""
    import shutil

    d = tmp_path / "in"
    shutil.copytree(inputs, d)
    return d


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_line_and_its_exit_code(case, case_dir, capsys):
    argv = [a.replace("{d}", str(case_dir)) for a in case.argv]
    before = _snapshot(case_dir)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(argv)
    seconds = time.perf_counter() - t0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == case.rc, (rc, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and not [str(w.message) for w in caught]
    for s in case.says:
        assert s in lines[0], (s, lines[0])
    assert _snapshot(case_dir) == before  # no input and no earlier output was touched
    new = case_dir / "new"
    if case.rc == 2:
        assert lines[0].startswith(f"pmilab {argv[0]}: error: ")
        assert out == "" and not new.exists()
        assert seconds < 60  # refused before training (--steps 1e8 would take hours)
    else:
        assert lines[0].startswith("pmilab fit: ") and "error" not in lines[0]
        metrics = json.loads((new / "metrics.json").read_text())
        logits = np.load(new / "logits.npy")
        assert np.isfinite(logits).all()  # the last good parameters were saved
        if "overflow" in case.id:
            assert metrics["stopped_at_step"] == 0 and metrics["steps_run"] == 1
        else:
            assert metrics["constant_logits"] is True and metrics["pmi_corr"] is None
            assert np.ptp(logits) == 0  # independently: the saved table is constant


def test_overwrite_replaces_an_earlier_run(case_dir, capsys):
    run = case_dir / "run"
    old = (run / "model.pt").read_bytes()
    argv = ["fit", "--dist", str(case_dir / "t.npy"), "--steps", "5", "--seed", "1", "--quiet"]
    assert main([*argv, "--out", str(run), "--overwrite"]) == 0
    assert (run / "model.pt").read_bytes() != old
    assert json.loads((run / "config.json").read_text())["seed"] == 1
    # a continuous run over a discrete one leaves no stale logits.npy behind
    assert (run / "logits.npy").exists()
    gauss = ["fit", "--dist", "gaussian:dx=1,dy=1,rho=0.5", "--steps", "3", "--batch-size", "8"]
    assert main([*gauss, "--quiet", "--out", str(run), "--overwrite"]) == 0
    assert not (run / "logits.npy").exists()
    capsys.readouterr()


@pytest.mark.parametrize(
    "table, fix, shape",
    [
        ("unnorm.npy", ["--normalize"], (6, 5)),
        ("unnorm.npy?normalize", [], (6, 5)),
        ("zero_row.npy", ["--drop-empty"], (5, 5)),
        ("zero_row.npy?drop_empty", [], (5, 5)),
        ("unnorm.npy?normalize&drop_empty", [], (6, 5)),
    ],
)
def test_the_options_the_messages_suggest_exist_and_work(table, fix, shape, case_dir, capsys):
    out = case_dir / "new"
    argv = ["fit", "--dist", str(case_dir / table), *fix, "--steps", "3", "--quiet"]
    assert main([*argv, "--similarity", "tabular", "--out", str(out)]) == 0
    assert np.load(out / "logits.npy").shape == shape
    capsys.readouterr()


def _cli_options() -> set[str]:
    parser = build_parser()
    opts = {o for a in parser._actions for o in a.option_strings}
    for action in parser._actions:
        for sub in getattr(action, "choices", None) or {}:
            opts |= {o for a in action.choices[sub]._actions for o in a.option_strings}
    return opts


# Options of other programs that pmilab's help texts name on purpose.
OTHER_PROGRAMS = {"--nproc_per_node": "torchrun", "--head": "ray start"}


def _strings(tree: ast.AST):
    """Every string constant of a module except docstrings (messages, help texts, f-strings)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node.value


def test_every_option_a_message_names_exists():
    """Every `--flag` written in pmilab's messages and help texts is a real option of some
    `pmilab` command; the scan finds the ones this test was written against."""
    options = _cli_options()
    named: dict[str, str] = {}
    for path in (ROOT / "pmilab").rglob("*.py"):
        for text in _strings(ast.parse(path.read_text())):
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z_-]*[a-z]", text):
                named.setdefault(flag, str(path.relative_to(ROOT)))
    assert {"--normalize", "--drop-empty", "--overwrite", "--out", "--run-missing"} <= set(named)
    missing = {f: p for f, p in named.items() if f not in options and f not in OTHER_PROGRAMS}
    assert not missing, missing


def test_version():
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert pmilab.__version__ == version("pmilab")  # the installed metadata (pyproject.toml)


def test_entry_point_prints_one_line_and_no_warning(tmp_path):
    """The real `pmilab` command, whose stderr shows any warning numpy or torch would print."""
    _write_inputs(tmp_path)
    exe = Path(sys.executable).parent / "pmilab"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"pmilab {version('pmilab')}"
    for case in [
        c for c in CASES if c.id in ("table-complex", "file-empty-csv", "lr-overflow-inside-adam")
    ]:
        argv = [a.replace("{d}", str(tmp_path)) for a in case.argv]
        proc = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=300)
        assert proc.returncode == case.rc, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr
