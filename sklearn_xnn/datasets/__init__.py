"""Data for explanation experiments: planted-concept activations and a small digits CNN.

Nothing here downloads anything.
"""

from sklearn_xnn.datasets._digits import DigitsCNN, load_digits_activations, train_digits_cnn
from sklearn_xnn.datasets._patches import PatchCNN, make_patch_images, train_patch_cnn
from sklearn_xnn.datasets._synthetic import make_concept_activations

__all__ = [
    "DigitsCNN",
    "PatchCNN",
    "load_digits_activations",
    "make_concept_activations",
    "make_patch_images",
    "train_digits_cnn",
    "train_patch_cnn",
]
