"""The columns of a comparison table: their order, the main set, and what each measures."""

from typing import NamedTuple

#: Columns of :func:`~sklearn_xnn.compare.compare_explainers`, in order.
COLUMNS = [
    "faithfulness_r2",
    "rmse",
    "top1_agreement",
    "kl",
    "reconstruction_r2",
    "explained_variance",
    "mean_active",
    "n_significant",
    "top_explained",
    "pullaway_samples",
    "pullaway_components",
    "contribution_corr",
    "component_max_cos",
    "component_mean_cos",
    "dead_fraction",
    "concept_recovery",
    "n_components",
    "fit_time_s",
    "note",
]

#: The short, main column set: what :func:`~sklearn_xnn.compare.format_comparison`
#: and the HTML report show first (columns absent from a table are left out). The two
#: ``reconstruction_*`` columns come from
#: :func:`sklearn_xnn.torch.reconstruction_faithfulness` when a caller adds them.
DEFAULT_COLUMNS = [
    "faithfulness_r2",
    "reconstruction_faithfulness_r2",
    "top1_agreement",
    "reconstruction_top1_agreement",
    "reconstruction_r2",
    "mean_active",
    "n_significant",
    "top_explained",
    "contribution_corr",
    "component_max_cos",
    "dead_fraction",
    "concept_recovery",
    "fit_time_s",
]


class ColumnInfo(NamedTuple):
    """What a comparison column measures.

    ``label`` is a short header, ``better`` is ``"higher"``, ``"lower"`` or None (not a
    score), ``meaning`` one sentence, and ``verdict`` (or None) completes "PLS is ... than
    SRAE" when a method beats the reference on this column.
    """

    label: str
    better: str | None
    meaning: str
    verdict: str | None = None


#: Every column of :data:`~sklearn_xnn.compare.COLUMNS` (and the two
#: ``reconstruction_*`` ones) described.
COLUMN_INFO = {
    "faithfulness_r2": ColumnInfo(
        "faithfulness R²",
        "higher",
        "R² of the logits rebuilt from the K x-features by the linear head; 1 is exact.",
        "more faithful",
    ),
    "reconstruction_faithfulness_r2": ColumnInfo(
        "faithfulness R² via network",
        "higher",
        "R² of the logits the rest of the network computes from the reconstructed "
        "activations inverse_transform(transform(Z)).",
        "more faithful through the rest of the network",
    ),
    "rmse": ColumnInfo(
        "logit RMSE",
        "lower",
        "Root mean squared error of the rebuilt logits.",
        "closer to the logits",
    ),
    "top1_agreement": ColumnInfo(
        "top-1 agreement",
        "higher",
        "Share of inputs whose rebuilt logits have the network's argmax (its decision).",
        "closer to the network's decisions",
    ),
    "reconstruction_top1_agreement": ColumnInfo(
        "top-1 agreement via network",
        "higher",
        "Top-1 agreement of the logits the rest of the network computes from the "
        "reconstructed activations.",
        "closer to the network's decisions through the rest of the network",
    ),
    "kl": ColumnInfo(
        "softmax KL",
        "lower",
        "KL divergence from the network's softmax to the rebuilt logits' softmax.",
        "closer to the network's probabilities",
    ),
    "reconstruction_r2": ColumnInfo(
        "reconstruction R²",
        "higher",
        "R² of the activations rebuilt by inverse_transform (PCA maximises it by "
        "construction; it says nothing about the decision).",
        "better at rebuilding the activations",
    ),
    "explained_variance": ColumnInfo(
        "explained variance",
        "higher",
        "Explained-variance score of the rebuilt activations.",
        "better at rebuilding the activations",
    ),
    "mean_active": ColumnInfo(
        "active per input",
        "lower",
        "Mean number of non-zero x-features per input (sparsity; a signed, dense embedding has K).",
        "sparser",
    ),
    "n_significant": ColumnInfo(
        "significant per input and output",
        "lower",
        "Mean number of positive contributions needed to cover 90% of the positive score, "
        "over every input and output (not only the decision).",
        "more concise",
    ),
    "top_explained": ColumnInfo(
        "decisions explained",
        "higher",
        "Share of inputs whose top logit (the network's decision) gets at least one positive "
        "contribution (none with one output: no decision); an input with none counts 0 in "
        "n_significant, so read the two together.",
        "explaining more decisions",
    ),
    "pullaway_samples": ColumnInfo(
        "pull-away over inputs",
        "lower",
        "Mean squared cosine between the contribution vectors of different inputs.",
    ),
    "pullaway_components": ColumnInfo(
        "pull-away over x-features",
        "lower",
        "Mean squared cosine between the contribution columns of different x-features.",
    ),
    "contribution_corr": ColumnInfo(
        "contribution correlation",
        "lower",
        "Mean absolute correlation between the x-features' contributions (0 is disentangled).",
        "more disentangled",
    ),
    "component_max_cos": ColumnInfo(
        "max component cosine",
        "lower",
        "Largest absolute cosine between two x-feature directions components_.",
    ),
    "component_mean_cos": ColumnInfo(
        "mean component cosine",
        "lower",
        "Mean absolute cosine between the x-feature directions components_.",
    ),
    "dead_fraction": ColumnInfo(
        "dead x-features",
        "lower",
        "Share of x-features that are zero on every held-out input.",
    ),
    "concept_recovery": ColumnInfo(
        "concept recovery",
        "higher",
        "Matched correlation of the x-features with the planted concepts; 1 is perfect.",
        "closer to the planted concepts",
    ),
    "n_components": ColumnInfo("K", None, "Number of x-features (components)."),
    "fit_time_s": ColumnInfo(
        "fit time (s)",
        "lower",
        "Wall-clock seconds to fit on the training rows.",
        "faster to fit",
    ),
    "note": ColumnInfo(
        "note", None, "Warnings raised during fit (and deprecations), or why a method was skipped."
    ),
}
