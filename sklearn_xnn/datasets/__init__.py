"""Synthetic activation sets with planted ground truth (nothing is downloaded)."""

from sklearn_xnn.datasets._synthetic import make_concept_activations

__all__ = ["make_concept_activations"]
