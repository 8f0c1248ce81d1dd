"""Similarity heads: logits ℓ(x, y) from encoder outputs (docs/theory.md T1, T2, T5).

- `Tabular`: a free logit per discrete cell (the T1 reference).
- `Linear`: CLIP, t·⟨f, h⟩ with optional normalisation and bias.
- `WPSE`: weighted point sets with a linear + universal kernel mix (exact or RFF).
- `KME`: log inner product of Gaussian kernel mean embeddings.

Every head has `logit_matrix(...) -> (B, C)`, `paired_logits(...) -> (B,)` and the classmethod
`head_inputs(dim, points)`: what it needs from the encoders (`pmilab.interfaces.HeadInputs`).
Heads are named by `pmilab.registry`, which also builds heads written outside pmilab.
"""

from pmilab.similarity.base import SimilarityHead
from pmilab.similarity.kme import KME
from pmilab.similarity.linear import Linear
from pmilab.similarity.tabular import Tabular
from pmilab.similarity.wpse import WPSE

__all__ = ["KME", "WPSE", "Linear", "SimilarityHead", "Tabular"]
