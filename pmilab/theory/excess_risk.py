"""The excess-risk bound of a downstream linear probe, exact on a labelled discrete model (T3).

Setting (docs/theory.md T3): discrete x with p(x), classes c with p(c|x), prompt distributions q_c
over the texts y. A similarity table ℓ (nx, ny) gives the constructed classifier

    h_c(x) = E_{y~q_c} ℓ(x, y) + b_c                       (linear in the feature ℓ(x, ·))

and, for KME, the log-linear prompt ensemble  g_c(x) = log E_{y~q_c} e^{ℓ(x, y)} + b_c.
Risk R(h) = E_{x,c}[−log softmax(h(x))_c]; the Bayes risk is H(C|X).

    ε  = min_b R(h^PMI) − H(C|X)              (prompt mismatch)
    Δ  = half the range of ℓ − PMI            (`pmilab.metrics.pmi_delta`)
    min_{W,b} R(W·F(x) + b) − H(C|X) <= ε + 2Δ

because every class score of h moves by at most Δ from h^PMI (+ a constant), so every
log-softmax entry moves by at most 2Δ. The same argument bounds the ensemble by ε_ens + 2Δ.
Everything here is exact (float64), no sampling. Pure functions.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import log_softmax, logsumexp, softmax

# numpy, not torch: these are tiny arrays, and torch's intra-op threads cost milliseconds per
# call on a loaded machine.


def _t(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def conditional_entropy(posterior, px) -> float:
    """H(C|X) = −Σ_x p(x) Σ_c p(c|x) log p(c|x), posterior (nx, K)."""
    q, w = _t(posterior), _t(px)
    ent = -np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).sum(1)
    return float((w * ent).sum())


def risk(scores, posterior, px) -> float:
    """R(h) = Σ_x p(x) Σ_c p(c|x) (−log softmax(h(x))_c), scores (nx, K)."""
    s, q, w = _t(scores), _t(posterior), _t(px)
    return float(-(w[:, None] * q * log_softmax(s, axis=1)).sum())


def fit_bias(
    scores, posterior, px, tol: float = 1e-12, max_iter: int = 100
) -> tuple[float, np.ndarray]:
    """(min_b R(scores + b), argmin b): convex in b; damped Newton with the pseudo-inverse
    Hessian (b is defined up to a constant shift)."""
    s, q, w = _t(scores), _t(posterior), _t(px)
    target = (w[:, None] * q).sum(0)  # (K,) class marginals

    def objective(b: np.ndarray) -> float:
        return float(-(w[:, None] * q * log_softmax(s + b, axis=1)).sum())

    b = np.zeros(s.shape[1])
    f = objective(b)
    for _ in range(max_iter):
        soft = softmax(s + b, axis=1)  # (nx, K)
        g = (w[:, None] * soft).sum(0) - target
        if np.abs(g).max() < tol:
            break
        hess = np.diag((w[:, None] * soft).sum(0)) - np.einsum("x,xa,xb->ab", w, soft, soft)
        step = np.linalg.pinv(hess) @ g
        t = 1.0
        while t > 1e-10:
            f_new = objective(b - t * step)
            if f_new <= f - 1e-4 * t * float(g @ step):
                break
            t *= 0.5
        else:
            break
        b, f = b - t * step, f_new
    return f, b


def prompt_scores(logit_table, prompts) -> np.ndarray:
    """(nx, K) h_c(x) = Σ_y q_c(y) ℓ(x, y); logit_table (nx, ny), prompts (K, ny) rows sum to 1."""
    return _t(logit_table) @ _t(prompts).T


def ensemble_scores(logit_table, prompts) -> np.ndarray:
    """(nx, K) g_c(x) = log Σ_y q_c(y) e^{ℓ(x, y)} (KME's log-linear prompt ensemble)."""
    ell, q = _t(logit_table), _t(prompts)
    return logsumexp(ell[:, None, :], axis=2, b=q[None, :, :])


def epsilon(pmi_table, prompts, posterior, px, ensemble: bool = False) -> float:
    """ε = min_b R(h^PMI) − H(C|X) (or the ensemble's ε_ens with `ensemble=True`)."""
    sc = ensemble_scores(pmi_table, prompts) if ensemble else prompt_scores(pmi_table, prompts)
    return fit_bias(sc, posterior, px)[0] - conditional_entropy(posterior, px)


def constructed_excess_risk(logit_table, prompts, posterior, px, ensemble: bool = False) -> float:
    """min_b R(h^ℓ) − H(C|X) of the constructed classifier of a head's logit table."""
    sc = ensemble_scores(logit_table, prompts) if ensemble else prompt_scores(logit_table, prompts)
    return fit_bias(sc, posterior, px)[0] - conditional_entropy(posterior, px)


def risk_bound(eps: float, delta: float) -> float:
    """The T3 bound ε + 2Δ on the best linear probe's excess risk."""
    return float(eps) + 2.0 * float(delta)
