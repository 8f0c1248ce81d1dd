"""Objects named from outside pmilab: an import path `package.module:Name`, or the name of an
installed entry point (open_clip's registry, big_vision's configs naming components by path).

The entry-point groups (a plugin package declares them in its pyproject.toml):
- `pmilab.similarities`: similarity heads (`pmilab fit --similarity NAME`);
- `pmilab.distributions`: joints (`pmilab fit --dist NAME`);
- `pmilab.claims`: claim modules.

`pmilab.registry` is the one resolver of head and joint specs; it, and `dists.parse_spec` for
joints, call `load` for every name that is not built in. Nothing is registered at run time, so
a worker process (spawn, Ray) resolves a spec exactly as its parent did: by importing the same
path, or reading the same installed metadata.
"""

from __future__ import annotations

import importlib
import re
from importlib import metadata

from pmilab.errors import InputError

GROUPS = {
    "head": "pmilab.similarities",
    "distribution": "pmilab.distributions",
    "claim": "pmilab.claims",
}
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
IMPORT_PATH = re.compile(rf"({_DOTTED}):({_DOTTED})")


def is_import_path(spec: str) -> bool:
    """True for `package.module:Name` (a dotted module, a colon, a dotted attribute)."""
    return isinstance(spec, str) and IMPORT_PATH.fullmatch(spec.strip()) is not None


def entry_point_names(kind: str) -> list[str]:
    """The names installed under the entry-point group of `kind` ("head", ...), sorted."""
    return sorted({ep.name for ep in metadata.entry_points(group=GROUPS[kind])})


def load(spec: str, kind: str) -> object:
    """The object a spec names: an import path, else an entry point of `kind`'s group.

    InputError (one line) when the module cannot be imported, has no such attribute, or no
    installed entry point has that name; an error raised while importing the plugin's own
    module is named with its type and first line."""
    spec = spec.strip()
    if is_import_path(spec):
        return _import(spec, kind)
    found = [ep for ep in metadata.entry_points(group=GROUPS[kind]) if ep.name == spec]
    if not found:
        raise InputError(
            f"no {kind} named {spec!r}: not built in, not package.module:Name, and no installed "
            f"{GROUPS[kind]} entry point has that name"
        )
    return _import(found[0].value, kind, via=f"entry point {spec!r} ({GROUPS[kind]})")


def _import(path: str, kind: str, via: str = "") -> object:
    module, _, attr = path.strip().partition(":")
    where = f"{kind} {path}" + (f" from {via}" if via else "")
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise InputError(
            f"cannot import {where}: no module named {e.name!r} (is its package on sys.path "
            "or installed?)"
        ) from None
    except Exception as e:  # noqa: BLE001 - a plugin's own import error, shown as one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise InputError(f"importing {where} failed: {type(e).__name__}: {first}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"cannot load {where}: module {module!r} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def path_of(obj: object) -> str | None:
    """`module:QualName` of a class or function that this path imports back to, else None (a
    lambda, a nested function, an instance): what a run records for an object it was given."""
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or module == "__main__" or not name or "<" in name:
        return None  # a worker process has another __main__
    try:
        back = _import(f"{module}:{name}", "object")
    except InputError:
        return None
    return f"{module}:{name}" if back is obj else None
