"""T6's pieces against independent references: the latent mixture's I(X;Y) by quadrature (scipy's
adaptive 2-D integral, the H(Z) limit, a large Monte Carlo), the T6a task's MI sources and its
shuffled-pairs control, and sd(PMI) under p(x, y). T6's verdict rules are tested in
test_t6_verdicts.py.

(The mixture's quadrature lives in pmilab/dists/mixture.py; its tests are here because another
change is under way in tests/dists/.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import trapezoid
from scipy.stats import norm

from pmilab.dists import BUILTIN_SPECS, LatentMixture, builtin, parse_spec
from pmilab.dists.base import Estimate
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.experiments.tasks.continuous import _mc_joint_std, canonical_gaussian
from pmilab.experiments.tasks.montecarlo import independent_mi, mc_check


def test_quadrature_matches_a_fine_grid_integral_in_one_plus_one_dims():
    """Against an independent rule: the trapezoid rule on a uniform 2001 × 2001 grid over
    [-9, 9]² (spectrally accurate for this smooth, Gaussian-tailed integrand)."""
    prior = np.array([0.3, 0.5, 0.2])
    mx, my, s = np.array([-1.5, 0.5, 2.0]), np.array([1.0, -1.0, 0.3]), 0.8
    mix = LatentMixture(prior, mx[:, None], my[:, None], s, s)
    t = np.linspace(-9, 9, 2001)
    ax = norm.pdf(t[:, None], mx, s) * prior  # (n, K): p(z) p(x | z)
    by = norm.pdf(t[:, None], my, s)  # (n, K): p(y | z)
    p = ax @ by.T  # p(x, y) on the grid
    px, py = ax.sum(1), by @ prior
    integrand = np.where(p > 0, p * np.log(p / np.outer(px, py)), 0.0)
    ref = trapezoid(trapezoid(integrand, t, axis=1), t)
    assert mix.mutual_information_quadrature(120) == pytest.approx(ref, abs=1e-10)
    assert mix.mutual_information_quadrature(40) == pytest.approx(ref, abs=1e-7)


def test_quadrature_of_well_separated_components_is_the_latent_entropy():
    """Components 60 sd apart: x and y each reveal z, so I(X;Y) = H(Z) (to far below 1e-8)."""
    prior = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    means = 60.0 * torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    mix = LatentMixture(prior, means, -means, 1.0, 1.0)
    h = float(-(prior * prior.log()).sum())
    assert mix.mutual_information_quadrature(16) == pytest.approx(h, abs=1e-9)


def test_builtin_mixture_quadrature_converges_and_agrees_with_a_large_monte_carlo():
    mix = parse_spec(BUILTIN_SPECS["mixture-k4-2-2"])
    q24, q32, q40 = (mix.mutual_information_quadrature(m) for m in (24, 32, 40))
    assert abs(q32 - q40) < 1e-6 and abs(q24 - q40) < 1e-5
    x, y = mix.sample(200_000, seed=2024)
    v = mix.pmi(x, y)
    se = float(v.std()) / math.sqrt(len(v))
    assert abs(float(v.mean()) - q32) < 4 * se


def test_independent_mi_sources_and_refusal():
    d = builtin()
    assert independent_mi(d["mixture-k4-2-2"])[1] == "quadrature"
    for name in ("latent-24-20-k4", "gaussian-1-1-0.75", "studentt-2-2-df5"):
        assert independent_mi(d[name])[1] == "exact"

    class MonteCarloMI:
        def mutual_information(self):
            return Estimate(0.5, 0.01)

    with pytest.raises(ValueError, match="Monte Carlo"):
        independent_mi(MonteCarloMI())


@pytest.mark.parametrize("name", ["gaussian-1-1-0.75", "mixture-k4-2-2", "latent-24-20-k4"])
def test_mc_check_and_its_shuffled_control(name):
    out = mc_check({"dist": name, "n": 20_000, "seed": 3})
    d = builtin()[name]
    mi, _ = independent_mi(d)
    assert out["mi_exact"] == mi and out["mi_exact_se"] == 0.0
    assert abs(out["z"]) < 5
    # shuffled pairs: E_{p(x)p(y)}[PMI] = -KL(p(x)p(y) || p(x, y)) < 0 < I, far beyond the SE
    assert out["pmi_shuffled_mean"] < 0 and out["z_shuffled"] < -10
    if name.startswith("latent"):  # exact: Σ p(x)p(y) PMI
        pmi, w = d.pmi_table(), d.px[:, None] * d.py[None, :]
        kl = float((w * pmi).sum())
        assert abs(out["pmi_shuffled_mean"] - kl) < 5 * out["pmi_shuffled_se"]


def test_joint_sd_of_the_gaussian_is_its_closed_form_through_every_wrapper():
    base = "gaussian:dx=2,dy=2,rho=0.8/0.5"
    exact = math.sqrt(0.8**2 + 0.5**2)  # Var_p[PMI] = Σ ρ² (docs/theory.md T6)
    for spec in (base, f"{base},transform=asinh", f"{base}|shuffled"):
        g = canonical_gaussian(make_dist(spec))
        assert g is not None and math.sqrt(g.pmi_variance()) == pytest.approx(exact, rel=1e-12)
        sd, se = _mc_joint_std(make_dist(spec), seed=1)
        assert abs(sd - exact) < 4 * se  # the Monte Carlo fallback agrees
    assert canonical_gaussian(make_dist("mixture:k=4,dx=2,dy=2,sep=2,std=1,seed=0")) is None
