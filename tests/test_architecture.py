"""The dependency rules of docs/architecture.md, read from the code's own imports (ast)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.archcheck import cycles, forbidden, import_graph, layer_violations

ROOT = Path(__file__).resolve().parents[1]

# docs/architecture.md, "Layers": a module imports only lower layers, or its own unit.
LAYERS = [
    ["pmilab.errors", "pmilab.stats", "pmilab.atomic", "pmilab.verdicts"],
    # import pmilab.errors: the memory limit (the dists use it), the outputs of every command,
    # the Protocols an outside object meets, and how one is named (import path, entry point)
    ["pmilab.limits", "pmilab.outputs", "pmilab.interfaces", "pmilab.plugins"],
    ["pmilab.dists", "pmilab.theory", "pmilab.losses"],
    ["pmilab.similarity", "pmilab.encoders", "pmilab.metrics"],
    ["pmilab.runtime", "pmilab.registry"],
    ["pmilab.training", "pmilab.pretrain"],
    ["pmilab.experiments.framework"],
    ["pmilab.experiments.tasks"],
    ["pmilab.experiments.claims"],
    ["pmilab.experiments.verify", "pmilab.experiments"],
    ["pmilab.figures"],
    ["pmilab.cli", "pmilab"],
    ["pmilab.__main__"],
]
FOUNDATION = {
    "pmilab.errors",
    "pmilab.stats",
    "pmilab.atomic",
    "pmilab.verdicts",
    "pmilab.outputs",
    "pmilab.limits",
    "pmilab.interfaces",
    "pmilab.plugins",
}


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT, "pmilab")


def test_the_layering_holds(graph):
    assert layer_violations(graph, LAYERS) == []


def test_dists_imports_only_the_foundation(graph):
    deps = {d for m, ds in graph.items() if m.startswith("pmilab.dists") for d in ds}
    assert {d for d in deps if not d.startswith("pmilab.dists")} <= FOUNDATION


@pytest.mark.parametrize("low", ["similarity", "losses", "metrics", "theory"])
def test_the_pure_layers_import_nothing_above_them(graph, low):
    allowed = {
        "similarity": FOUNDATION,
        "losses": FOUNDATION,
        "theory": FOUNDATION,
        "metrics": FOUNDATION | {"pmilab.losses", "pmilab.theory", "pmilab.dists"},
    }[low]
    unit = f"pmilab.{low}"
    deps = {d for m, ds in graph.items() if m == unit or m.startswith(unit + ".") for d in ds}
    outside = {d for d in deps if not (d == unit or d.startswith(unit + "."))}
    assert {
        d for d in outside if not any(d == a or d.startswith(a + ".") for a in allowed)
    } == set()


def test_figures_sit_above_experiments(graph):
    assert forbidden(graph, "pmilab.experiments", "pmilab.figures") == []
    assert forbidden(graph, "pmilab.figures", "pmilab.experiments")  # figures do read them


def test_no_import_cycles_in_the_package_or_the_benchmarks(graph):
    assert cycles(graph) == []
    bench = import_graph(ROOT, "benchmarks")
    # the benchmark scripts import their siblings by bare name (`from pairwise import ...`)
    bare = {m: {f"benchmarks.{d}" for d in _bare_imports(ROOT / "benchmarks", m)} for m in bench}
    assert cycles({m: bench[m] | bare[m] for m in bench}) == []


# No code branches on a head's name: builders read its declaration (`pmilab.interfaces.
# HeadInputs`), claims and figures about a named head ask `registry.is_builtin` /
# `registry.builtin_mask`. Only `pmilab/registry.py` compares names; the README's `git grep`
# over the rest of the package comes out empty, and so does this check.
NAME = r"""['"](kme|wpse|linear|tabular)['"]"""
HEAD_NAME_TEST = re.compile(
    rf"(==|!=) ?{NAME}|{NAME} ?(==|!=|in\b|not in\b)|\bin [([{{]{NAME}|isin\(\[?{NAME}"
    rf"|startswith\({NAME}|case {NAME}|\.similarity ?(==|!=)|\.similarity\.isin\("
)


def head_name_tests(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if HEAD_NAME_TEST.search(line)]


def test_no_code_outside_the_registry_branches_on_a_head_name():
    files = [p for p in (ROOT / "pmilab").rglob("*.py") if p != ROOT / "pmilab" / "registry.py"]
    assert len(files) > 50  # the whole package
    found = {str(p.relative_to(ROOT)): head_name_tests(p.read_text()) for p in files}
    assert {f: lines for f, lines in found.items() if lines} == {}
    # control: the check sees every form of the branching the package used to hold
    for line in [
        '    if cfg.similarity == "kme":',
        'point_set = cfg.similarity in ("kme", "wpse")',
        "    if sim == 'linear':",
        '    lin = df[df.similarity == "linear"]',
        "    ev = sym[sym.similarity.isin(EVIDENCE_HEADS)]",
        '    other = df[df.similarity.isin(["linear", "random_linear"])]',
        '    head = 2.0 if params.get("similarity") in ("kme", "wpse") else 1.0',
        "    kme = df[df.similarity == sim]",
        '    if spec != "tabular":',
        '    if "kme" == spec:',
        '    if spec.startswith("kme"):',
        '        case "wpse":',
    ]:
        assert head_name_tests(line) != [], line
    # ... and not the names as values: a claim's runs name the heads they train
    assert head_name_tests('    heads = [("tabular", 1, 1), ("kme", 2, 4)]') == []
    assert head_name_tests('    HEAD_COLORS = {"linear": "#0969da"}') == []


def _bare_imports(folder: Path, module: str) -> set[str]:
    import ast

    names = {p.stem for p in folder.glob("*.py")}
    path = folder / (module.split(".", 1)[1] + ".py") if "." in module else folder / "__init__.py"
    if not path.exists():
        return set()
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in names and not node.level:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in names}
    return out


# ---- the checker itself must be able to fail: a small fake package -----------------------


def _fake(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


FAKE_LAYERS = [["fake.low"], ["fake.mid"], ["fake.top", "fake"]]
CLEAN = {
    "fake/__init__.py": "",
    "fake/low.py": "import os\n",
    "fake/mid/__init__.py": "from fake import low\n",
    "fake/mid/a.py": "from fake.mid import b\nfrom . import b as again\n",
    "fake/mid/b.py": "from fake.low import x\n",
    "fake/top.py": "import fake.mid.a\nfrom fake.mid.a import thing\n",
}


def test_checker_passes_a_clean_fake_package(tmp_path):
    g = import_graph(_fake(tmp_path, CLEAN), "fake")
    assert g["fake.mid.a"] == {"fake.mid.b"} and g["fake.top"] == {"fake.mid.a"}
    assert layer_violations(g, FAKE_LAYERS) == [] and cycles(g) == []


@pytest.mark.parametrize(
    ("file", "line", "what"),
    [
        ("fake/low.py", "from fake.mid import b\n", "fake.low -> fake.mid.b"),  # upward
        ("fake/low.py", "import fake.top\n", "fake.low -> fake.top"),
        ("fake/mid/b.py", "from ..top import x\n", "fake.mid.b -> fake.top"),  # relative
        ("fake/extra.py", "import os\n", "fake.extra: not in any layer"),
    ],
)
def test_checker_catches_a_forbidden_import(tmp_path, file, line, what):
    files = dict(CLEAN)
    files[file] = files.get(file, "") + line
    g = import_graph(_fake(tmp_path, files), "fake")
    assert any(what in v for v in layer_violations(g, FAKE_LAYERS)), layer_violations(
        g, FAKE_LAYERS
    )


def test_checker_catches_a_cycle_and_a_reverse_dependency(tmp_path):
    files = dict(CLEAN)
    files["fake/mid/b.py"] += "from fake.mid import a\n"
    g = import_graph(_fake(tmp_path, files), "fake")
    assert cycles(g) == [["fake.mid.a", "fake.mid.b"]]
    assert forbidden(g, "fake.mid.b", "fake.mid.a") == ["fake.mid.b -> fake.mid.a"]
