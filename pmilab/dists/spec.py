"""Distribution specs for the CLI and configs: `name:key=value,...` or a table file.

    latent:nx=32,ny=32,k=4,seed=0[,concentration=0.5]
    gaussian:dx=4,dy=4,rho=0.9            (one rho for every canonical pair, or rho=0.9/0.5/0.1)
    dense:dx=5,dy=5,corr=0.5              (Gaussian with all correlations equal)
    mixture:k=4,dx=2,dy=2,sep=3,std=1,seed=0
    studentt:dx=2,dy=2,df=5
    ring:r=2,s=1                          (two noisy views of a point on a ring: T10)
    path/to/table.npy | path/to/table.csv (a user joint table)
    path/to/table.npy?normalize&drop_empty  (table options after '?', joined by '&')
    package.module:Name                   (a joint written outside pmilab: docs/extending.md)
    NAME                                  (an installed `pmilab.distributions` entry point)

Continuous specs accept `transform=asinh|halfcube|spiral|affine` (applied to both modalities).
Every key and table option may appear once; an unknown or repeated one is an InputError that
lists the valid ones. An import path or entry point names a joint instance, or a class or
factory called with no arguments; what it returns must meet `pmilab.interfaces`'s joint
contract (`joint_missing` names what it lacks).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from pmilab import plugins
from pmilab.dists.bijections import ELEMENTWISE, Affine
from pmilab.dists.discrete import Discrete
from pmilab.dists.gaussian import Gaussian
from pmilab.dists.latent import random_latent_class
from pmilab.dists.mixture import random_latent_mixture
from pmilab.dists.ring import RingLatent
from pmilab.dists.studentt import StudentT
from pmilab.dists.transformed import Transformed
from pmilab.errors import InputError
from pmilab.interfaces import joint_missing

# name -> (factory, {key: (type, default or REQUIRED)})
REQUIRED = object()
_INT, _FLOAT = int, float


def _gaussian(dx, dy, rho):
    try:
        vals = [float(v) for v in str(rho).split("/")]
    except ValueError:
        raise InputError(
            f"rho={rho!r} must be a number, or numbers joined by '/' (rho=0.9/0.5)"
        ) from None
    if len(vals) == 1:
        vals = vals * min(dx, dy)
    return Gaussian(dx, dy, rho=vals)


SPECS = {
    "latent": (
        lambda nx, ny, k, seed, concentration: random_latent_class(nx, ny, k, concentration, seed),
        {
            "nx": (_INT, 32),
            "ny": (_INT, 32),
            "k": (_INT, 4),
            "seed": (_INT, 0),
            "concentration": (_FLOAT, 0.5),
        },
    ),
    "gaussian": (
        _gaussian,
        {"dx": (_INT, REQUIRED), "dy": (_INT, REQUIRED), "rho": (str, REQUIRED)},
    ),
    "dense": (
        lambda dx, dy, corr: Gaussian.dense(dx, dy, corr),
        {"dx": (_INT, 5), "dy": (_INT, 5), "corr": (_FLOAT, 0.5)},
    ),
    "mixture": (
        lambda k, dx, dy, sep, std, seed: random_latent_mixture(k, dx, dy, sep, std, seed),
        {
            "k": (_INT, 4),
            "dx": (_INT, 2),
            "dy": (_INT, 2),
            "sep": (_FLOAT, 3.0),
            "std": (_FLOAT, 1.0),
            "seed": (_INT, 0),
        },
    ),
    "studentt": (
        lambda dx, dy, df: StudentT(dx, dy, df),
        {"dx": (_INT, 2), "dy": (_INT, 2), "df": (_FLOAT, 5.0)},
    ),
    "ring": (lambda r, s: RingLatent(r, s), {"r": (_FLOAT, 2.0), "s": (_FLOAT, 1.0)}),
}


# Options of a table file, after '?' in its spec (`t.npy?normalize&drop_empty`); the CLI's
# `pmilab fit --normalize / --drop-empty` set the same two.
TABLE_OPTIONS = ("normalize", "drop_empty")


def parse_spec(spec: str, normalize: bool = False, drop_empty: bool = False):
    """A distribution from a spec string or a `.npy`/`.csv` table path (see module docstring).

    normalize, drop_empty: options of a table file (as `?normalize`, `?drop_empty`); given for a
    named spec they are an InputError.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(
            "a distribution spec must be a non-empty string such as 'latent:nx=32,ny=32,k=4,seed=0'"
        )
    spec = spec.strip()
    path, question, query = spec.partition("?")
    if path.lower().endswith((".npy", ".csv")):
        opts = _table_options(spec, query) if question else set()
        return load_table(
            path,
            normalize=normalize or "normalize" in opts,
            drop_empty=drop_empty or "drop_empty" in opts,
        )
    if question:
        raise InputError(
            f"?{query} in {spec!r}: ?options ({', '.join(TABLE_OPTIONS)}) apply to .npy/.csv "
            "table files only"
        )
    if normalize or drop_empty:
        flags = [f for f, on in (("normalize", normalize), ("drop_empty", drop_empty)) if on]
        raise InputError(
            f"{' and '.join(flags)} apply to .npy/.csv table files only, not to the spec {spec!r}"
        )
    name, sep, rest = spec.partition(":")
    if name not in SPECS and Path(spec).exists():
        raise InputError(f"table file {spec!r} must end in .npy or .csv")
    if name not in SPECS and (
        plugins.is_import_path(spec)
        or (not sep and spec in plugins.entry_point_names("distribution"))
    ):
        return plugin_joint(spec)
    if name not in SPECS:
        raise InputError(
            f"unknown distribution {name!r}; use one of {sorted(SPECS)}, a .npy/.csv table path, "
            "package.module:Name or an installed pmilab.distributions entry point"
        )
    factory, keys = SPECS[name]
    kwargs, transform = _parse_params(name, rest if sep else "", keys)
    try:
        dist = factory(**kwargs)
    except InputError as e:
        raise InputError(f"bad spec {spec!r}: {e}") from None
    return _apply_transform(dist, transform) if transform else dist


def plugin_joint(spec: str):
    """The joint an import path or entry point names: an instance as it is, a class or factory
    called with no arguments; checked against the joint contract (one line naming what lacks)."""
    obj = plugins.load(spec, "distribution")
    if callable(obj) and (isinstance(obj, type) or not hasattr(obj, "sample")):
        try:
            obj = obj()
        except InputError as e:
            raise InputError(f"distribution {spec}: {e}") from None
        except TypeError as e:
            raise InputError(
                f"distribution {spec} cannot be built with no arguments ({e}); name a joint "
                "instance, or a class or factory whose arguments have defaults"
            ) from None
    missing = joint_missing(obj)
    if missing:
        raise InputError(
            f"distribution {spec} has no {', '.join(missing)} (a joint needs discrete, sample, "
            "pmi, pmi_matrix, mutual_information, and dim_x, dim_y or nx, ny, table: "
            "pmilab.interfaces.JointDistribution)"
        )
    return obj


def _table_options(spec: str, query: str) -> set[str]:
    """'normalize&drop_empty' -> {'normalize', 'drop_empty'}; unknown or repeated: InputError."""
    valid = ", ".join(f"?{o}" for o in TABLE_OPTIONS)
    seen: set[str] = set()
    for opt in (o.strip() for o in query.split("&")):
        if opt not in TABLE_OPTIONS:
            what = "an empty option" if not opt else f"unknown table option {opt!r}"
            raise InputError(f"{what} in {spec!r}; valid options: {valid} (join them with '&')")
        if opt in seen:
            raise InputError(f"table option {opt!r} is given twice in {spec!r}; give it once")
        seen.add(opt)
    return seen


def _parse_params(name: str, rest: str, keys: dict) -> tuple[dict, str | None]:
    given: dict[str, str] = {}
    allowed = sorted(keys) + ["transform"]
    for item in filter(None, (s.strip() for s in rest.split(","))):
        k, eq, v = item.partition("=")
        if not eq or not k or not v:
            raise InputError(
                f"malformed parameter {item!r} in {name!r} spec; write key=value pairs separated by commas"
            )
        k = k.strip()
        if k in given:
            raise InputError(
                f"parameter {k!r} is given twice in the {name!r} spec; give each key once (keys: {allowed})"
            )
        given[k] = v.strip()
    transform = given.pop("transform", None)
    unknown = set(given) - set(keys)
    if unknown:
        raise InputError(f"unknown parameter(s) {sorted(unknown)} for {name!r}; allowed: {allowed}")
    kwargs = {}
    for k, (typ, default) in keys.items():
        if k not in given:
            if default is REQUIRED:
                raise InputError(f"the {name!r} spec needs {k}=...; allowed keys: {sorted(keys)}")
            kwargs[k] = default
            continue
        try:
            kwargs[k] = typ(given[k])
        except ValueError:
            raise InputError(
                f"parameter {k}={given[k]!r} of {name!r} must be {typ.__name__}"
            ) from None
    return kwargs, transform


def _apply_transform(dist, transform: str):
    if dist.discrete:
        raise InputError("transform= applies to continuous distributions only")
    if transform == "affine":
        return Transformed(
            dist, Affine.random(dist.dim_x, seed=1), Affine.random(dist.dim_y, seed=2)
        )
    if transform not in ELEMENTWISE:
        raise InputError(
            f"unknown transform {transform!r}; use one of {sorted(ELEMENTWISE) + ['affine']}"
        )
    return Transformed(dist, ELEMENTWISE[transform](), ELEMENTWISE[transform]())


NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file (numpy.lib.format)


def load_table(path: str | Path, normalize: bool = False, drop_empty: bool = False) -> Discrete:
    """A user joint table from `.npy` or `.csv` (comma-separated numbers, no header)."""
    p = Path(path)
    name = repr(str(p))
    if not p.exists():
        raise InputError(f"table file {name} does not exist")
    if p.is_dir():
        raise InputError(f"{name} is a directory; give a .npy or .csv table file")
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise InputError(f"table file {name} must end in .npy or .csv")
    try:
        if suffix == ".npy":
            with open(p, "rb") as f:
                if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
                    raise InputError(
                        f"cannot read table file {name}: it is not a NumPy .npy file (no .npy "
                        "header); save the table with numpy.save, or write it as a .csv"
                    )
            arr = np.load(p, allow_pickle=False)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": below
                arr = np.loadtxt(p, delimiter=",", ndmin=2)
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as e:
        raise InputError(
            f"cannot read table file {name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    if np.iscomplexobj(arr):
        raise InputError(
            f"table file {name} holds complex numbers (dtype {arr.dtype}); a joint table must be real"
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"table file {name} must hold numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"table file {name} holds no numbers; a joint table needs at least one")
    return Discrete(arr, normalize=normalize, drop_empty=drop_empty)
