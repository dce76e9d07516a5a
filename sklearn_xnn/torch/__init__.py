"""Torch integration: read a network's layer, run the explainer on top, and draw heatmaps.

This package is named ``sklearn_xnn.torch``; it always imports the real ``torch`` with
absolute imports.
"""

from sklearn_xnn.torch._extract import (
    Pool,
    TruncatedNetwork,
    check_split,
    extract_activations,
    get_layer,
    pool_activations,
    split_sequential,
)
from sklearn_xnn.torch._faithfulness import reconstruction_faithfulness
from sklearn_xnn.torch._heatmaps import HEATMAP_METHODS, excitation_rules, xfeature_heatmaps
from sklearn_xnn.torch._modules import ExplainedNetwork, ExplainerModule, explainer_module
from sklearn_xnn.torch._pointing import pointing_game

__all__ = [
    "HEATMAP_METHODS",
    "ExplainedNetwork",
    "ExplainerModule",
    "Pool",
    "TruncatedNetwork",
    "check_split",
    "excitation_rules",
    "explainer_module",
    "extract_activations",
    "get_layer",
    "pointing_game",
    "pool_activations",
    "reconstruction_faithfulness",
    "split_sequential",
    "xfeature_heatmaps",
]
