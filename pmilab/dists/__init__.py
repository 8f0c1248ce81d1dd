"""Joint distributions with exactly known PMI (docs/theory.md T1, T2, T6).

Every distribution follows `JointDistribution` (`pmilab.interfaces`): `sample(n, seed)`,
`pmi(x, y)`, `pmi_matrix(x, y)`, `mutual_information()`, a `discrete` flag, and `dim_x`, `dim_y`
(`ContinuousJoint`) or `nx`, `ny`, `table` (`DiscreteJoint`).
`parse_spec` names one: a built-in spec, a table file, `package.module:Name` or an installed
`pmilab.distributions` entry point.
"""

from pmilab.dists.base import ContinuousJoint, DiscreteJoint, Estimate, JointDistribution
from pmilab.dists.bijections import (
    Affine,
    Asinh,
    Bijection,
    HalfCube,
    Identity,
    Permutation,
    Spiral,
)
from pmilab.dists.discrete import Discrete, validate_table
from pmilab.dists.gaussian import Gaussian
from pmilab.dists.latent import LatentClass, random_latent_class
from pmilab.dists.mixture import LatentMixture, random_latent_mixture
from pmilab.dists.ring import RingLatent
from pmilab.dists.spec import load_table, parse_spec
from pmilab.dists.studentt import StudentT
from pmilab.dists.transformed import Transformed

# The built-in distributions `pmilab verify` reports on, by bmi-style id (parameters in the id).
BUILTIN_SPECS = {
    "latent-24-20-k4": "latent:nx=24,ny=20,k=4,seed=0",
    "latent-32-32-k8": "latent:nx=32,ny=32,k=8,seed=0",
    "gaussian-1-1-0.75": "gaussian:dx=1,dy=1,rho=0.75",
    "gaussian-4-4-0.9-0.5": "gaussian:dx=4,dy=4,rho=0.9/0.5",
    "dense-5-5-0.5": "dense:dx=5,dy=5,corr=0.5",
    "mixture-k4-2-2": "mixture:k=4,dx=2,dy=2,sep=3,std=1,seed=0",
    "studentt-2-2-df5": "studentt:dx=2,dy=2,df=5",
    "gaussian-2-2-0.8-spiral": "gaussian:dx=2,dy=2,rho=0.8,transform=spiral",
}


def builtin() -> dict:
    """{id: distribution} for every built-in distribution."""
    return {name: parse_spec(spec) for name, spec in BUILTIN_SPECS.items()}


__all__ = [
    "Affine",
    "Asinh",
    "BUILTIN_SPECS",
    "Bijection",
    "ContinuousJoint",
    "Discrete",
    "DiscreteJoint",
    "Estimate",
    "Gaussian",
    "HalfCube",
    "Identity",
    "JointDistribution",
    "LatentClass",
    "LatentMixture",
    "Permutation",
    "RingLatent",
    "Spiral",
    "StudentT",
    "Transformed",
    "builtin",
    "load_table",
    "parse_spec",
    "random_latent_class",
    "random_latent_mixture",
    "validate_table",
]
