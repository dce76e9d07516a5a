"""Data for explanation experiments: planted-concept activations and a small digits CNN.

Nothing here downloads anything.
"""

from sklearn_xnn.datasets._digits import DigitsCNN, load_digits_activations, train_digits_cnn
from sklearn_xnn.datasets._synthetic import make_concept_activations

__all__ = ["DigitsCNN", "load_digits_activations", "make_concept_activations", "train_digits_cnn"]
