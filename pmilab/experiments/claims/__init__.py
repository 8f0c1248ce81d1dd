"""The claims `pmilab verify` checks, one module per claim of docs/theory.md.

`CLAIMS` is the registry: a dict of imported modules, each satisfying
`pmilab.experiments.framework.claim.ClaimModule`. A reader (or an IDE) follows it directly.
It is the one list of the built-in claims: `pmilab.registry.resolve_claim` reads it for a
built-in ID, next to the claims named from outside (`package.module`, entry points).
"""

from __future__ import annotations

from pmilab.experiments.claims import t1, t2, t3, t4, t5, t6, t7, t8, t9, t10
from pmilab.experiments.framework.claim import ClaimModule

CLAIMS: dict[str, ClaimModule] = {
    "T1": t1,
    "T2": t2,
    "T3": t3,
    "T4": t4,
    "T5": t5,
    "T6": t6,
    "T7": t7,
    "T8": t8,
    "T9": t9,
    "T10": t10,
}

__all__ = ["CLAIMS"]
