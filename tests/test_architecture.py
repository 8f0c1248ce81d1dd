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


# The builders read a head's declaration (`pmilab.interfaces.HeadInputs`), never its name: the
# README's `git grep` over these files comes out empty (only `pmilab/registry.py` knows names).
DECLARATION_READERS = [
    "pmilab/encoders.py",
    "pmilab/training/model.py",
    "pmilab/training/memory.py",
    "pmilab/pretrain/model.py",
    "pmilab/pretrain/evaluate.py",
    "pmilab/experiments/tasks/pixels.py",
]
HEAD_NAME_TEST = re.compile(r'== "(kme|wpse|linear|tabular)"|in \("(kme|wpse|linear|tabular)"')


def head_name_tests(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if HEAD_NAME_TEST.search(line)]


def test_the_builders_never_branch_on_a_head_name():
    found = {f: head_name_tests((ROOT / f).read_text()) for f in DECLARATION_READERS}
    assert {f: lines for f, lines in found.items() if lines} == {}
    # control: the check sees the branching these files used to hold
    assert head_name_tests('    if cfg.similarity == "kme":\n        pass') != []
    assert head_name_tests('point_set = cfg.similarity in ("kme", "wpse")') != []


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
