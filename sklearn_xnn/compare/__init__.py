"""Side-by-side comparison of explainers (SRAE, PCA, NMF, PLS, any transformer) on held-out rows.

Every explainer is fitted on the training rows and measured on the test rows with the
same metrics (:mod:`sklearn_xnn.metrics`). A transformer without a head gets the same
least-squares linear head on its training embedding (:func:`~sklearn_xnn.baselines.make_headed`),
so faithfulness is compared on equal footing.
"""

from sklearn_xnn.compare._columns import COLUMN_INFO, COLUMNS, DEFAULT_COLUMNS, ColumnInfo
from sklearn_xnn.compare._curve import k_curve
from sklearn_xnn.compare._format import (
    ComparisonTable,
    best_rows,
    describe_losses,
    format_comparison,
)
from sklearn_xnn.compare._run import (
    compare_explainers,
    compare_per_output,
    default_explainers,
    evaluate_explainer,
)

__all__ = [
    "COLUMNS",
    "COLUMN_INFO",
    "DEFAULT_COLUMNS",
    "ColumnInfo",
    "ComparisonTable",
    "best_rows",
    "compare_explainers",
    "compare_per_output",
    "default_explainers",
    "describe_losses",
    "evaluate_explainer",
    "format_comparison",
    "k_curve",
]
