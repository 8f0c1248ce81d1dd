"""Experiments: claim configs, sweeps, the results table and the verify report."""

from pmilab.experiments.claims import ClaimResult

__all__ = ["ClaimResult"]
