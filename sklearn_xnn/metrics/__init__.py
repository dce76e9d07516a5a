"""Explanation metrics as pure array functions, plus scorers and seed stability.

Faithfulness (:func:`faithfulness_r2`, :func:`faithfulness_rmse`, :func:`top1_agreement`,
:func:`softmax_kl`), reconstruction (:func:`reconstruction_r2`,
:func:`reconstruction_explained_variance`), sparsity (:func:`mean_active`,
:func:`n_significant`, with :func:`top_explained`), orthogonality (:func:`pullaway`,
:func:`contribution_correlation`, :func:`mean_abs_correlation`, :func:`component_cosines`),
health (:func:`dead_fraction`, :func:`mean_contributions`), agreement
(:func:`seed_stability`, :func:`matched_correlation`, :func:`subspace_similarity`) and
ground truth (:func:`concept_recovery`). Each docstring states its formula;
:ref:`explanation_space` and :ref:`comparing` in the user guide say what they measure and
how to read them.
"""

from sklearn_xnn.metrics._faithfulness import (
    faithfulness_r2,
    faithfulness_rmse,
    reconstruction_explained_variance,
    reconstruction_r2,
    softmax_kl,
    top1_agreement,
)
from sklearn_xnn.metrics._geometry import (
    component_cosines,
    contribution_correlation,
    dead_fraction,
    mean_abs_correlation,
    mean_active,
    mean_contributions,
    n_significant,
    pullaway,
    top_explained,
)
from sklearn_xnn.metrics._scorers import (
    ExplanationScorer,
    explanation_scorer,
    faithfulness_r2_scorer,
    get_explanation_scorers,
    reconstruction_r2_scorer,
    softmax_kl_scorer,
    top1_agreement_scorer,
)
from sklearn_xnn.metrics._stability import (
    concept_recovery,
    cross_correlation,
    matched_correlation,
    seed_stability,
    subspace_similarity,
)

__all__ = [
    "ExplanationScorer",
    "component_cosines",
    "concept_recovery",
    "contribution_correlation",
    "cross_correlation",
    "dead_fraction",
    "explanation_scorer",
    "faithfulness_r2",
    "faithfulness_r2_scorer",
    "faithfulness_rmse",
    "get_explanation_scorers",
    "matched_correlation",
    "mean_abs_correlation",
    "mean_active",
    "mean_contributions",
    "n_significant",
    "pullaway",
    "reconstruction_explained_variance",
    "reconstruction_r2",
    "reconstruction_r2_scorer",
    "seed_stability",
    "softmax_kl",
    "softmax_kl_scorer",
    "subspace_similarity",
    "top1_agreement",
    "top1_agreement_scorer",
    "top_explained",
]
