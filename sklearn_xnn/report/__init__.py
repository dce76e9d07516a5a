"""The HTML report: comparison table, top-activating inputs, decompositions with heatmaps."""

from sklearn_xnn.report._figures import (
    decomposition_figure,
    head_weights_figure,
    k_curve_figure,
    plot_decision,
    top_activating_figure,
)
from sklearn_xnn.report._html import write_report

__all__ = [
    "decomposition_figure",
    "head_weights_figure",
    "k_curve_figure",
    "plot_decision",
    "top_activating_figure",
    "write_report",
]
