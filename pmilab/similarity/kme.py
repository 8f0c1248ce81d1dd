"""The KME-CLIP head: ℓ(x, y) = log ⟨μ_x, ν_y⟩_H with Gaussian-kernel mean embeddings (docs/theory.md T2).

    ℓ(x, y) = logsumexp_{a,b}( wx_a + wy_b − ‖u_a − v_b‖² / (2σ²) )

with log-weights wx (B, M), wy (C, N) used as given (the encoder normalises them, e.g. with a
log-softmax) and a learnable bandwidth σ (parametrised as log σ).

Why there is no logit scale: the log of an RKHS inner product already *is* the logit. Under a
K-class latent model exp(PMI) = Σ_z p(z|x) p(z|y)/p(z) is an inner product of nonnegative
vectors (T2), which a kernel mean embedding matches directly; a scale t would turn ⟨μ, ν⟩ into
⟨μ, ν⟩^t, breaking that match. The bandwidth plays the temperature's role: with one unit-norm
point per input, ℓ = (⟨u, v⟩ − 1)/σ², i.e. CLIP with logit scale 1/σ² up to a constant
(Prop. 2 of the KME-CLIP paper).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pmilab.similarity import _pairwise, _pairwise_small, base
from pmilab.similarity.base import SimilarityHead, check_point_sets, check_positive


class KME(SimilarityHead):
    """Log kernel-mean-embedding similarity; see the module docstring.

    sigma:       initial Gaussian bandwidth σ > 0.
    learn_sigma: False keeps σ fixed.
    `logit_matrix(px, wx, py, wy)`: px (B, M, d), wx (B, M), py (C, N, d), wy (C, N) -> (B, C).
    `paired_logits(...)`: the same with C == B -> (B,).
    """

    def __init__(self, sigma: float = 0.5, learn_sigma: bool = True) -> None:
        super().__init__()
        init = torch.tensor(math.log(check_positive(sigma, "sigma")))
        if learn_sigma:
            self.log_sigma = nn.Parameter(init)
        else:
            self.register_buffer("log_sigma", init)

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    def logit_matrix(self, px: Tensor, wx: Tensor, py: Tensor, wy: Tensor) -> Tensor:
        check_point_sets(px, wx, py, wy, paired=False)
        small = base.use_reference(px, py)  # the fused path of the replicate trainer
        fn = _pairwise_small.kme_logits_small if small else _pairwise.kme_logits
        return fn(px, wx, py, wy, self.sigma)  # (B, C)

    def paired_logits(self, px: Tensor, wx: Tensor, py: Tensor, wy: Tensor) -> Tensor:
        check_point_sets(px, wx, py, wy, paired=True)
        d2 = _pairwise.pair_sq_dists(px[:, :, None, :], py[:, None, :, :])  # (B, M, N)
        z = wx[:, :, None] + wy[:, None, :] - d2 / (2 * self.sigma**2)
        return torch.logsumexp(z.flatten(1), dim=-1)  # (B,)

    def no_decay_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    @classmethod
    def head_inputs(cls, dim: int, points: int):
        """M points of size d, normalised log-weights (`pmilab.interfaces.HeadInputs`)."""
        from pmilab.interfaces import HeadInputs  # here: this file stays importable on its own

        return HeadInputs.point_set(points, dim, "log_softmax")
