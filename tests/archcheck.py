"""The import-graph checker behind tests/test_architecture.py (docs/architecture.md).

`import_graph(root, package)` parses every .py file under `root/package` with `ast` (nothing is
imported or run) and returns module -> the set of in-package modules it imports, resolving
`from pkg import name` to `pkg.name` when that is a module, and relative imports.
`layer_violations` checks a layering: a module may import modules of lower layers, or of its own
unit (the prefix that names its layer entry). `cycles` lists the import cycles.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    root = Path(root)
    files = sorted((root / package).rglob("*.py"))
    modules = {module_name(p, root): p for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import sub` imports the module pkg.sub; `from pkg import name`, pkg
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for t in targets:
                if t == package or t.startswith(package + "."):
                    hit = resolve(t)
                    if hit and hit != mod:
                        graph[mod].add(hit)
    return graph


def unit_of(module: str, units: Iterable[str]) -> str | None:
    """The longest unit prefix that `module` belongs to."""
    best = None
    for u in units:
        # a top-level name (the package itself) is its own unit only: it does not swallow
        # the modules under it, so a module missing from the layering is reported
        inside = module == u or ("." in u and module.startswith(u + "."))
        if inside and (best is None or len(u) > len(best)):
            best = u
    return best


def layer_violations(graph: dict[str, set[str]], layers: list[list[str]]) -> list[str]:
    """'a -> b' for every import from a unit to a unit of the same or a higher layer."""
    rank = {u: i for i, layer in enumerate(layers) for u in layer}
    out = []
    for mod, deps in sorted(graph.items()):
        mu = unit_of(mod, rank)
        if mu is None:
            out.append(f"{mod}: not in any layer")
            continue
        for dep in sorted(deps):
            du = unit_of(dep, rank)
            if du is None or du == mu or mu.startswith(du + ".") or du.startswith(mu + "."):
                if du is None:
                    out.append(f"{mod} -> {dep}: not in any layer")
                continue
            if rank[du] >= rank[mu]:
                out.append(f"{mod} -> {dep} ({mu} may not import {du})")
    return out


def forbidden(graph: dict[str, set[str]], source: str, target: str) -> list[str]:
    """'a -> b' for every import from a module under `source` to one under `target`."""
    under = lambda m, p: m == p or m.startswith(p + ".")  # noqa: E731
    return [
        f"{m} -> {d}"
        for m, deps in sorted(graph.items())
        if under(m, source)
        for d in sorted(deps)
        if under(d, target)
    ]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)
