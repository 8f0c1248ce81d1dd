"""The downstream side of T3 on a trained discrete head: features, the scikit-learn linear probe
and the exact risks of the constructed classifiers (docs/theory.md T3).

Features F(x) a probe sees, per head:
- linear:          the encoder output f(x) (L2-normalised when the head normalises), as CLIP;
- tabular, WPSE:   the similarity profile ℓ(x, ·) (nx, ny); the constructed classifier
                   Σ_y q_c(y) ℓ(x, y) is linear in it, so the T3 bound covers the probe;
- KME:             exp ℓ(x, ·) = ⟨μ_x, ν_·⟩, the span of the mean embedding μ_x that a linear
                   probe on μ_x can use. The T3 bound does not cover it (ℓ is log-linear in μ_x);
                   the log-linear prompt ensemble is the KME classifier the bound does cover.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pmilab.theory import excess_risk as er


def probe_features(run) -> np.ndarray:
    """(nx, p) float64 features of every x state of a trained discrete run."""
    sim = run.config.similarity
    if sim == "linear":
        with torch.no_grad():
            f = run.model.enc_x(torch.arange(run.dist.nx)).to(torch.float64)
            if run.config.normalize:
                f = F.normalize(f, dim=-1)
        return f.numpy()
    table = run.logit_table().numpy()
    if sim == "kme":
        return np.exp(table - table.max())  # a positive rescaling: same linear span
    return table


def reference_weights(run) -> np.ndarray | None:
    """(K, p) weights W_c = E_{q_c} G(y) of the constructed classifier in `probe_features`
    coordinates (T3); None for KME, whose constructed classifier is not linear in its features."""
    sim, d = run.config.similarity, run.dist
    q = d.py_given_z.numpy()  # (K, ny) prompts q_c = p(y | c)
    if sim in ("tabular", "wpse"):
        return q  # h_c(x) = Σ_y q_c(y) ℓ(x, y): weights q_c on the similarity profile
    if sim == "linear":
        with torch.no_grad():
            g = run.model.enc_y(torch.arange(d.ny)).to(torch.float64)
            if run.config.normalize:
                g = F.normalize(g, dim=-1)
            t = float(run.model.head.scale())
        return t * q @ g.numpy()
    return None


def probe_excess_risk(
    features: np.ndarray, dist, n: int, seed: int, w_ref: np.ndarray | None = None
) -> tuple[float, float]:
    """(excess risk, slack) of multinomial logistic regression fitted on n held-out draws
    (x, c) of the labelled model, scored exactly: R(probe) − H(C|X).

    The T3 bound is about the population minimiser; the fitted probe exceeds it by
    - estimation: E[R(ŵ) − R(w*)] ≈ p/(2n) for p parameters (asymptotic MLE); we allow p/n,
      twice that (a χ²_p/(2n) fluctuation exceeds p/n with probability ~1e-4 for p ≈ 80);
    - the ridge term: sklearn minimises Σ_i w_i loss_i + ½‖W‖² (C=1) with Σ w_i = n, i.e. the
      mean loss + ‖W‖²/(2n), so its risk exceeds that of the constructed classifier W_ref
      (which T3 bounds by ε + 2Δ) by at most ‖W_ref‖²/(2n) in the standardised coordinates.
    slack = p/n + ‖W_ref‖²/(2n) is what the probe may sit above ε + 2Δ without contradicting T3.

    x is discrete, so the n draws are summarised without loss by their counts n(x, c): the fit
    on the nx·K distinct rows weighted by counts is the same optimisation as on the n rows.
    Standardising the features is an invertible affine map: it changes the conditioning, not
    the function class.
    """
    x, _, z = dist.sample_with_latent(n, seed=seed)
    nx, k = features.shape[0], dist.k
    counts = np.bincount(x.numpy() * k + z.numpy(), minlength=nx * k).reshape(nx, k)
    scaler = StandardScaler().fit(features)
    feats = scaler.transform(features)
    xs, cs = np.nonzero(counts)
    # A tiny ridge (C=1 against a total weight n) keeps the fit finite when a count n(x, c) is
    # 0; newton-cholesky converges in a few steps where lbfgs needs thousands.
    clf = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=500, tol=1e-10)
    clf.fit(feats[xs], cs, sample_weight=counts[xs, cs].astype(np.float64))
    logp = np.full((nx, k), -np.inf)
    logp[:, clf.classes_] = clf.predict_log_proba(feats)
    post, px = dist.posterior_x().numpy(), dist.px.numpy()
    with np.errstate(invalid="ignore"):
        terms = np.where(post > 0, post * logp, 0.0)
    risk = float(-(px[:, None] * terms).sum())
    n_params = (features.shape[1] + 1) * len(clf.classes_)
    ridge = 0.0 if w_ref is None else float(((w_ref * scaler.scale_[None, :]) ** 2).sum())
    slack = n_params / n + ridge / (2 * n)
    return risk - er.conditional_entropy(post, px), slack


def t3_quantities(run, n_probe: int, seed: int) -> dict:
    """Exact ε, ε_ens, H(C|X), constructed/ensemble excess risks and the probe's excess risk."""
    d = run.dist
    pmi, table = d.pmi_table(), run.logit_table()
    post, px, prompts = d.posterior_x(), d.px, d.py_given_z  # prompts q_c = p(y | c)
    probe, slack = probe_excess_risk(probe_features(run), d, n_probe, seed, reference_weights(run))
    return {
        "cond_entropy": er.conditional_entropy(post, px),
        "epsilon": er.epsilon(pmi, prompts, post, px),
        "epsilon_ens": er.epsilon(pmi, prompts, post, px, ensemble=True),
        "constructed_excess": er.constructed_excess_risk(table, prompts, post, px),
        "ensemble_excess": er.constructed_excess_risk(table, prompts, post, px, ensemble=True),
        "probe_excess": probe,
        "probe_slack": slack,
    }
