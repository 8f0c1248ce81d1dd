"""The downstream side of T3 on a discrete head: features, the scikit-learn linear probe and the
exact risks of the constructed classifiers (docs/theory.md T3).

Features F(x) a probe sees, per head (`feature_kind`):
- linear:          the head's own embedding, the encoder output f(x) (L2-normalised when the
                   head normalises), with d dimensions. Its scalar bias is a constant feature,
                   which the probe's intercept already holds. The constructed classifier
                   t⟨f(x), E_{q_c} g⟩ is linear in f(x), so the T3 bound covers the probe; T3a
                   judges the heads with d <= n_x/4, where a probe cannot fit an arbitrary head;
- KME (a head on point sets with log-softmax weights: its `HeadInputs`):
                   exp ℓ(x, ·) = ⟨μ_x, ν_·⟩, the span of the mean embedding μ_x that a linear
                   probe on μ_x can use. The T3 bound does not cover it (ℓ is log-linear in μ_x);
                   the log-linear prompt ensemble is the KME classifier the bound does cover;
- any other head (tabular, WPSE, a plugin head):
                   the similarity profile ℓ(x, ·) (nx, ny); the constructed classifier
                   Σ_y q_c(y) ℓ(x, y) is linear in it. Its n_y dimensions are close to n_x,
                   so T3a does not judge these heads (a profile lets the probe fit any head).

`t3_quantities` takes the logit table, the features and the reference weights explicitly, so a
trained head (`head_t3_quantities`) and an untrained random head (`random_linear_head`, T3a's
negative control) go through the same code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pmilab import metrics as M
from pmilab import registry
from pmilab.experiments.tasks.catalog import make_dist
from pmilab.theory import excess_risk as er
from pmilab.training.model import head_inputs


def feature_kind(run) -> str:
    """What a probe sees of a trained discrete run (module docstring): "embedding" for the
    built-in linear head (its bilinear form is what T3's constructed classifier needs),
    "mean_embedding" for a head on point sets with log-softmax weights (KME), "profile"
    otherwise."""
    if registry.is_builtin(run.config.similarity, "linear"):
        return "embedding"
    inputs = head_inputs(run.config, run.dist)
    if inputs.kind == "points" and inputs.weights == "log_softmax":
        return "mean_embedding"
    return "profile"


def probe_features(run) -> np.ndarray:
    """(nx, p) float64 features of every x state of a trained discrete run."""
    kind = feature_kind(run)
    if kind == "embedding":
        with torch.no_grad():
            f = run.model.enc_x(torch.arange(run.dist.nx)).to(torch.float64)
            if run.config.normalize:
                f = F.normalize(f, dim=-1)
        return f.numpy()
    table = run.logit_table().numpy()
    if kind == "mean_embedding":
        return np.exp(table - table.max())  # a positive rescaling: same linear span
    return table


def reference_weights(run) -> np.ndarray | None:
    """(K, p) weights W_c = E_{q_c} G(y) of the constructed classifier in `probe_features`
    coordinates (T3); None for KME, whose constructed classifier is not linear in its features."""
    kind, d = feature_kind(run), run.dist
    q = d.py_given_z.numpy()  # (K, ny) prompts q_c = p(y | c)
    if kind == "profile":
        return q  # h_c(x) = Σ_y q_c(y) ℓ(x, y): weights q_c on the similarity profile
    if kind == "embedding":
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


T3_METRICS = [
    "cond_entropy",
    "epsilon",
    "epsilon_ens",
    "constructed_excess",
    "ensemble_excess",
    "probe_excess",
    "probe_slack",
    "probe_dim",
    "risk_bound",
    "probe_tightness",
]


def t3_quantities(
    dist, table, features: np.ndarray, w_ref: np.ndarray | None, n_probe: int, seed: int
) -> dict:
    """Exact ε, ε_ens, H(C|X), Δ, the constructed/ensemble excess risks, and the probe's excess
    risk on `features` (nx, p) with its slack, for a logit table (nx, ny) of the labelled
    latent model `dist`. risk_bound = ε + 2Δ; probe_tightness = probe excess / (ε + 2Δ)."""
    pmi = dist.pmi_table()
    table = torch.as_tensor(table, dtype=torch.float64)
    post, px, prompts = dist.posterior_x(), dist.px, dist.py_given_z  # prompts q_c = p(y | c)
    delta = float(M.pmi_delta(table, pmi, dist.px[:, None] * dist.py[None, :]))
    eps = er.epsilon(pmi, prompts, post, px)
    probe, slack = probe_excess_risk(features, dist, n_probe, seed, w_ref)
    bound = er.risk_bound(eps, delta)
    return {
        "cond_entropy": er.conditional_entropy(post, px),
        "epsilon": eps,
        "epsilon_ens": er.epsilon(pmi, prompts, post, px, ensemble=True),
        "constructed_excess": er.constructed_excess_risk(table, prompts, post, px),
        "ensemble_excess": er.constructed_excess_risk(table, prompts, post, px, ensemble=True),
        "pmi_delta": delta,
        "probe_excess": probe,
        "probe_slack": slack,
        "probe_dim": float(features.shape[1]),
        "risk_bound": bound,
        "probe_tightness": probe / bound,
    }


def head_t3_quantities(run, n_probe: int, seed: int) -> dict:
    """`t3_quantities` of a trained discrete run, on its own features (`probe_features`)."""
    return t3_quantities(
        run.dist, run.logit_table(), probe_features(run), reference_weights(run), n_probe, seed
    )


RANDOM_HEAD_METRICS = ["pmi_delta", *T3_METRICS]


def random_linear_table(
    nx: int, ny: int, dim: int, scale: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An untrained linear head unrelated to PMI: f (nx, dim), g (ny, dim) with N(0, 1) entries
    from a generator seeded with `seed`, and its logit table scale · f gᵀ (float64)."""
    gen = torch.Generator().manual_seed(int(seed))
    f = torch.randn(nx, dim, generator=gen, dtype=torch.float64)
    g = torch.randn(ny, dim, generator=gen, dtype=torch.float64)
    return (scale * f @ g.T).numpy(), f.numpy(), g.numpy()


def random_linear_head(p: dict) -> dict:
    """T3a's negative control: a random linear head (no training) on the latent joint
    `p["dist"]`, with d = `dim` and logit scale `logit_scale`; its features are its own
    embedding f(x), its reference weights t·q_c g. Parameters: dist, dim, logit_scale, seed
    (the head's), probe_seed, probe_n."""
    d = make_dist(p["dist"])
    t = float(p["logit_scale"])
    table, f, g = random_linear_table(d.nx, d.ny, int(p["dim"]), t, int(p["seed"]))
    w_ref = t * d.py_given_z.numpy() @ g
    out = t3_quantities(d, table, f, w_ref, int(p["probe_n"]), int(p["probe_seed"]))
    return {k: out[k] for k in RANDOM_HEAD_METRICS}
