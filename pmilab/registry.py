"""The one resolver of head, joint and claim specs: the only module that knows the built-in
heads by name (docs/extending.md; `git grep` for a head's name elsewhere comes out empty: README).

A spec is a string, and the string is what a run records (config.json, checkpoints, run
tables), so `pmilab eval` and worker processes resolve the same spec:
- a built-in name: "tabular", "linear", "wpse", "kme" (heads); "latent:nx=...", "gaussian:...",
  a table file ... (joints, parsed by `pmilab.dists.parse_spec`);
- `package.module:Name`: an import path (`pmilab.plugins`);
- the name of an installed entry point (groups `pmilab.similarities`, `pmilab.distributions`,
  `pmilab.claims`).
The Python API also takes the objects themselves: a head class, a factory, an instance, a joint,
a claim module.

A claim (`resolve_claim`) is a built-in ID ("T1" ... "T7": `pmilab.experiments.claims.CLAIMS`,
reached by its import path, since the claims sit layers above this module), a module named
`package.module` or an object named `package.module:name` meeting
`pmilab.interfaces.ClaimModule`, or a `pmilab.claims` entry point naming either.

How a head is built from a run's settings (the contract a plugin head meets):
- a head is a class or a factory function: it is called with the keyword arguments its
  signature names out of the run's settings, matched by name. `pmilab fit` offers every
  `FitConfig` field (dim, points, sigma, temperature, normalize, bias, ...), `nx` and `ny` of a
  discrete joint, and `rff_seed` (the run's seed, for a head's own random features);
  `pmilab pretrain` offers `ModelConfig`'s fields (dim, points, sigma, ...) and
  alpha_linear = alpha_kernel = 1; the T7 pixel task dim, points, normalize=False, bias=True.
  A parameter without a default that the run does not offer is an InputError naming it;
- an instance is used as it is (deep-copied per seed, so every seed starts from it);
- what it builds is an `nn.Module` with every method of `pmilab.interfaces.Head`
  (subclass `pmilab.similarity.SimilarityHead` for the defaults of all but `logit_matrix`,
  `paired_logits` and `head_inputs`);
- `head_inputs(dim, points)` says what it needs from the encoders (`HeadInputs`). On a class
  it should be a classmethod: the builders read it before building anything (otherwise one
  head is built to ask it).

Every failure is one InputError line naming the spec and what is missing.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import re
from collections.abc import Mapping
from typing import Any

from pmilab import plugins
from pmilab.errors import InputError
from pmilab.interfaces import HEAD_METHODS, HeadInputs, joint_missing

# The built-in heads by name; their classes are imported when first asked for, so naming or
# checking one (`pmilab fit --help`, a config's validation) does not import torch.
HEAD_NAMES = ("tabular", "linear", "wpse", "kme")
HEAD_HINT = (
    "tabular, linear, wpse, kme, package.module:Name or an installed pmilab.similarities "
    "entry point"
)


def builtin_heads() -> dict[str, type]:
    from pmilab.similarity import KME, WPSE, Linear, Tabular

    return {"tabular": Tabular, "linear": Linear, "wpse": WPSE, "kme": KME}


# ---- heads ----------------------------------------------------------------------------------


def head_spec(spec: Any) -> str:
    """The string a run records for `spec`: the spec itself, or the import path of a head
    class or factory (of an instance: of its class). An object with no import path (a class
    defined in __main__ or in a function) is recorded by its name in angle brackets, which
    no later process can resolve."""
    if isinstance(spec, str):
        return spec.strip()
    path = plugins.path_of(spec if callable(spec) and not _is_module(spec) else type(spec))
    return path or f"<{getattr(spec, '__qualname__', type(spec).__qualname__)}>"


def check_head(spec: Any) -> None:
    """InputError unless `spec` resolves to a head that meets the contract (a built-in name
    is accepted without importing anything)."""
    if isinstance(spec, str) and spec.strip() in HEAD_NAMES:
        return
    resolve_head(spec)


def resolve_head(spec: Any) -> Any:
    """The class, factory or instance a head spec names, checked where it can be (a factory's
    head is checked when built)."""
    name = head_spec(spec)
    if isinstance(spec, str):
        s = spec.strip()
        if s in HEAD_NAMES:
            return builtin_heads()[s]
        if not (plugins.is_import_path(s) or s in plugins.entry_point_names("head")):
            raise InputError(f"unknown similarity {s!r}; use one of {HEAD_HINT}")
        spec = plugins.load(s, "head")
    if isinstance(spec, type) or _is_module(spec):
        _check_contract(spec, name)
    elif not callable(spec):
        raise InputError(
            f"head {name} is a {type(spec).__name__}, not a head class, factory or nn.Module"
        )
    return spec


def build_head(spec: Any, settings: Mapping[str, Any]) -> Any:
    """The head `spec` names, built from the run's `settings` (module docstring)."""
    name = head_spec(spec)
    obj = resolve_head(spec)
    if _is_module(obj):
        return copy.deepcopy(obj)
    head = _call(obj, settings, name)
    if not _is_module(head):
        raise InputError(f"head {name} built a {type(head).__name__}, not a torch nn.Module")
    _check_contract(head, name)
    return head


def head_inputs(spec: Any, settings: Mapping[str, Any]) -> HeadInputs:
    """What the head `spec` needs from each encoder, for the run's `dim` and `points`."""
    name = head_spec(spec)
    obj = resolve_head(spec)
    ask = obj
    if not _is_module(obj) and not _class_level(obj, "head_inputs"):
        ask = build_head(obj, settings)
    out = ask.head_inputs(settings["dim"], settings["points"])
    if not isinstance(out, HeadInputs):
        raise InputError(
            f"head {name}: head_inputs returned a {type(out).__name__}, not a "
            "pmilab.interfaces.HeadInputs"
        )
    return out


def _is_module(obj: Any) -> bool:
    from torch import nn

    return isinstance(obj, nn.Module)


def _class_level(cls: Any, attr: str) -> bool:
    return isinstance(cls, type) and isinstance(
        inspect.getattr_static(cls, attr, None), classmethod | staticmethod
    )


def _check_contract(obj: Any, name: str) -> None:
    """A head class or instance: an nn.Module with every method of the Head Protocol (an
    `abstractmethod` placeholder of the base class counts as missing)."""
    from torch import nn

    if isinstance(obj, type) and not issubclass(obj, nn.Module):
        raise InputError(f"head {name} is not a torch nn.Module subclass")
    missing = [
        m
        for m in HEAD_METHODS
        if getattr(obj, m, None) is None or getattr(getattr(obj, m), "__isabstractmethod__", 0)
    ]
    if missing:
        raise InputError(
            f"head {name} has no {', '.join(missing)} (a head needs {', '.join(HEAD_METHODS)}: "
            "pmilab.interfaces.Head; pmilab.similarity.SimilarityHead gives the last four)"
        )


def _call(factory: Any, settings: Mapping[str, Any], name: str) -> Any:
    """`factory(**the settings its signature names)`; a required one not offered is an error."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        raise InputError(f"head {name} has no signature to build it from") from None
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    need = [p.name for p in named if p.default is p.empty and p.name not in settings]
    if need:
        raise InputError(
            f"head {name} needs {', '.join(need)}, which this run does not set (it sets: "
            f"{', '.join(sorted(settings))})"
        )
    kwargs = {p.name: settings[p.name] for p in named if p.name in settings}
    try:
        return factory(**kwargs)
    except InputError as e:
        raise InputError(f"head {name}: {e}") from None
    except (TypeError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise InputError(f"building head {name} failed: {type(e).__name__}: {first}") from None


# ---- claims and figures about a named built-in head -----------------------------------------


def is_builtin(spec: Any, *names: str) -> bool:
    """Whether `spec` is one of the built-in heads `names` ("kme", ...): that name, its class,
    or an instance of it. Code outside this module compares no head name: a claim or figure
    about a named head selects its runs with this (or `builtin_mask`), and code that asks
    what a head needs reads its declaration (`head_inputs`) instead."""
    _check_names(names)
    if isinstance(spec, str):
        return spec.strip() in names
    cls = spec if isinstance(spec, type) else type(spec)
    if not cls.__module__.startswith("pmilab.similarity"):
        return False  # not a built-in head (and torch stays unimported)
    heads = builtin_heads()
    return any(cls is heads[n] for n in names)


def builtin_mask(specs: Any, *names: str) -> Any:
    """`is_builtin` of every spec in `specs`, a pandas Series (a run table's `similarity`
    column): the boolean mask of the rows of the built-in heads `names`."""
    _check_names(names)
    return specs.map(lambda s: is_builtin(s, *names)).astype(bool)


def _check_names(names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in HEAD_NAMES]
    if not names or unknown:
        raise ValueError(f"not built-in head names: {list(unknown)}; use some of {HEAD_NAMES}")


# ---- joints ---------------------------------------------------------------------------------


def resolve_joint(spec: Any, normalize: bool = False, drop_empty: bool = False) -> Any:
    """The joint a spec names (`pmilab.dists.parse_spec`: built-in specs, table files, import
    paths and entry points), or a joint object, checked against the joint contract."""
    if isinstance(spec, str):
        from pmilab.dists import parse_spec

        return parse_spec(spec, normalize=normalize, drop_empty=drop_empty)
    check_joint(spec)
    return spec


def check_joint(dist: Any) -> None:
    """InputError naming what `dist` lacks as a joint (`pmilab.interfaces.joint_missing`)."""
    missing = joint_missing(dist)
    if missing:
        raise InputError(
            f"distribution {type(dist).__name__} has no {', '.join(missing)} (a joint needs "
            "discrete, sample, pmi, pmi_matrix, mutual_information, and dim_x, dim_y or nx, "
            "ny, table: pmilab.interfaces.JointDistribution)"
        )


# ---- claims ---------------------------------------------------------------------------------

# The built-in claims live in `pmilab.experiments.claims` (CLAIMS: their one list), layers above
# this module: it is imported by name, when a claim is first asked for.
BUILTIN_CLAIMS = "pmilab.experiments.claims"
CLAIM_HINT = (
    "a built-in claim ID (T1 ... T7), package.module, package.module:name or an installed "
    "pmilab.claims entry point"
)
# What `pmilab verify` reads of a claim (`pmilab.interfaces.ClaimModule`).
CLAIM_MEMBERS = ("CLAIM", "TITLE", "config", "sweeps", "evaluate")
_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def builtin_claims() -> dict[str, Any]:
    """ID -> module of every built-in claim, in the order `pmilab verify` runs them."""
    return importlib.import_module(BUILTIN_CLAIMS).CLAIMS


def claim_spec(spec: Any) -> str:
    """The string a run records for a claim: a built-in ID in capitals ("t2" -> "T2"), the spec
    as given, or the import path of a claim object (a module: its name)."""
    if isinstance(spec, str):
        s = spec.strip()
        return s.upper() if s.upper() in builtin_claims() else s
    for cid, mod in builtin_claims().items():
        if spec is mod:
            return cid
    if inspect.ismodule(spec):
        return spec.__name__
    return plugins.path_of(spec) or f"<{getattr(spec, '__qualname__', type(spec).__qualname__)}>"


def resolve_claim(spec: Any) -> Any:
    """The claim module (or object) a claim spec names, checked against the claim contract."""
    if not isinstance(spec, str):
        check_claim(spec, claim_spec(spec))
        return spec
    s = spec.strip()
    builtin = builtin_claims()
    if s.upper() in builtin:
        return builtin[s.upper()]
    if plugins.is_import_path(s):
        obj = plugins.load(s, "claim")
    elif s in plugins.entry_point_names("claim"):
        from importlib import metadata

        ep = next(e for e in metadata.entry_points(group=plugins.GROUPS["claim"]) if e.name == s)
        via = f"entry point {s!r} ({plugins.GROUPS['claim']})"
        if ":" in ep.value:
            try:
                obj = plugins.load(ep.value, "claim")
            except InputError as e:
                raise InputError(f"{e} (from {via})") from None
        else:
            obj = _import_module(ep.value.strip(), via)
    elif _MODULE_PATH.fullmatch(s) and ("." in s or importlib.util.find_spec(s) is not None):
        obj = _import_module(s)  # a module on sys.path: the claim is its members
    else:
        raise InputError(f"unknown claim {s!r}; use {CLAIM_HINT}")
    check_claim(obj, s)
    return obj


def check_claim(obj: Any, name: str) -> None:
    """InputError naming the members `obj` lacks as a claim (`pmilab.interfaces.ClaimModule`),
    or a CLAIM that is not a non-empty string."""
    missing = [m for m in CLAIM_MEMBERS if not hasattr(obj, m)]
    missing += [
        m
        for m in ("config", "sweeps", "evaluate")
        if m not in missing and not callable(getattr(obj, m))
    ]
    if missing:
        raise InputError(
            f"claim {name} has no {', '.join(missing)} (a claim needs CLAIM, TITLE, "
            "config(preset, seeds), sweeps(cfg), evaluate(tables, cfg): "
            "pmilab.interfaces.ClaimModule)"
        )
    cid = obj.CLAIM
    if not isinstance(cid, str) or not re.fullmatch(r"[A-Za-z][\w.-]*", cid):
        raise InputError(
            f"claim {name}: CLAIM must be a short ID of letters, digits, '_', '.' or '-' "
            f"starting with a letter (its rows' IDs start with it), got {cid!r}"
        )


def _import_module(name: str, via: str = "") -> Any:
    where = f"claim {name}" + (f" from {via}" if via else "")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise InputError(
            f"cannot import {where}: no module named {e.name!r} (is its package on sys.path "
            "or installed?)"
        ) from None
    except Exception as e:  # noqa: BLE001 - a plugin's own import error, shown as one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise InputError(f"importing {where} failed: {type(e).__name__}: {first}") from None
