"""Scorers for ``GridSearchCV`` / ``cross_validate``:
``scorer(estimator, Z, y, sample_weight=None) -> float``.

They accept a fitted :class:`~sklearn_xnn.SRAEExplainer`, a headed pipeline from
:func:`sklearn_xnn.baselines.make_headed`, or any predictor that also transforms (PLS).
Greater is better for all of them. ``sample_weight`` weighs the rows (an integer weight
counts as that many copies of the row); with metadata routing enabled every scorer
requests it, so routed weights reach it.
"""

import numpy as np
from sklearn.utils.metadata_routing import MetadataRequest
from sklearn.utils.validation import _num_samples

from sklearn_xnn.metrics._adapter import (
    contribution_rows,
    embed,
    last_step,
    reconstruct,
    refitted,
    transformer_part,
)
from sklearn_xnn.metrics._blocks import correlation_by_blocks
from sklearn_xnn.metrics._faithfulness import (
    _row_weights,
    faithfulness_r2,
    reconstruction_r2,
    softmax_kl,
    top1_agreement,
)
from sklearn_xnn.metrics._geometry import dead_fraction

#: What every scorer takes and returns, and the set-up of its example.
_SCORER_SECTIONS = """Parameters
    ----------
    estimator : fitted estimator
        SRAE, a headed pipeline or a predictor that transforms.
    Z : array-like of shape (n_samples, n_features)
        Activations.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Logits to explain.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative row weights, not all zero; an integer weight counts as that many
        copies of the row. None weighs the rows alike.

    Returns
    -------
    score : float
        Greater is better.

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_xnn.baselines import make_headed
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> from sklearn_xnn.metrics import {name}
    >>> Z, y, _ = make_concept_activations(200, 16, random_state=0)"""


def _score_request(owner):
    """The scorers' metadata request: ``sample_weight`` for ``score``, so that with
    metadata routing enabled ``cross_validate(..., params={"sample_weight": w})`` and
    the searches pass each scorer the weights of the rows it scores."""
    request = MetadataRequest(owner=owner)
    request.score.add_request(param="sample_weight", alias=True)
    return request


def _library_scorer(scorer):
    """Fill the ``{scorer_sections}`` of a scorer's docstring (the sections they share)
    and say that it takes weights: its metadata request (:func:`_score_request`) and
    ``_accept_sample_weight``, which sklearn's multi-metric scorer asks of every scorer
    it is given weights for without routing (``permutation_importance`` with a
    ``scoring=`` dict; a plain function lacks it, scikit-learn issue #31599)."""
    sections = _SCORER_SECTIONS.format(name=scorer.__name__)
    scorer.__doc__ = scorer.__doc__.replace("{scorer_sections}", sections)
    scorer.get_metadata_routing = lambda: _score_request(scorer.__name__)
    scorer._accept_sample_weight = lambda: True
    return scorer


def _checked_weights(sample_weight, Z):
    """``sample_weight`` checked against the rows of ``Z`` before anything is predicted
    (ones when None); the metrics take it from there."""
    return _row_weights(sample_weight, _num_samples(Z))


@_library_scorer
def faithfulness_r2_scorer(estimator, Z, y, sample_weight=None):
    """Faithfulness R² of ``estimator.predict(Z)`` against the logits ``y``.

    Averaged over the outputs as the estimator's ``multioutput`` parameter says (uniformly
    when it has none), so the same value as ``estimator.score(Z, y)`` for SRAE and headed
    pipelines; see :func:`~sklearn_xnn.metrics.faithfulness_r2` (with its ``sample_weight``
    for the weighted sums).

    {scorer_sections}
    >>> model = make_headed(PCA(3)).fit(Z, y)
    >>> bool(abs(faithfulness_r2_scorer(model, Z, y) - model.score(Z, y)) < 1e-12)
    True
    """
    w = _checked_weights(sample_weight, Z)
    step = refitted(last_step(refitted(estimator)))  # a search: what it refitted
    multioutput = getattr(step, "multioutput", "uniform_average")
    return faithfulness_r2(y, estimator.predict(Z), sample_weight=w, multioutput=multioutput)


@_library_scorer
def top1_agreement_scorer(estimator, Z, y, sample_weight=None):
    """Top-1 agreement of ``estimator.predict(Z)`` with the logits ``y`` (needs >= 2 outputs).

    See :func:`~sklearn_xnn.metrics.top1_agreement` (a weighted fraction with weights).

    {scorer_sections}
    >>> 0.0 <= top1_agreement_scorer(make_headed(PCA(3)).fit(Z, y), Z, y) <= 1.0
    True
    """
    w = _checked_weights(sample_weight, Z)
    return top1_agreement(y, estimator.predict(Z), sample_weight=w)


@_library_scorer
def softmax_kl_scorer(estimator, Z, y, sample_weight=None):
    """Minus the softmax KL divergence of ``estimator.predict(Z)`` from the logits ``y``.

    ``-softmax_kl(y, estimator.predict(Z))`` (temperature 1; needs >= 2 outputs), so that
    greater is better: the scorer for explainers fitted with ``faithfulness="kl"``. See
    :func:`~sklearn_xnn.metrics.softmax_kl` (a weighted mean with weights).

    {scorer_sections}
    >>> softmax_kl_scorer(make_headed(PCA(3)).fit(Z, y), Z, y) <= 0.0
    True
    """
    w = _checked_weights(sample_weight, Z)
    return -softmax_kl(y, estimator.predict(Z), sample_weight=w)


@_library_scorer
def reconstruction_r2_scorer(estimator, Z, y=None, sample_weight=None):
    """Pooled reconstruction R² of ``inverse_transform(transform(Z))`` (``y`` is ignored).

    See :func:`~sklearn_xnn.metrics.reconstruction_r2` (with its ``sample_weight`` for the
    weighted sums). Raises ``ValueError`` for an explainer whose transformer has no
    ``inverse_transform``.

    {scorer_sections}
    >>> pca = PCA(16).fit(Z)
    >>> round(reconstruction_r2_scorer(pca, Z), 6)
    1.0
    """
    w = _checked_weights(sample_weight, Z)
    Z_hat = reconstruct(estimator, embed(estimator, Z))
    if Z_hat is None:
        last = last_step(transformer_part(refitted(estimator)))
        raise ValueError(
            f"{type(last).__name__} has no inverse_transform: reconstruction R² is undefined."
        )
    return reconstruction_r2(np.asarray(Z, dtype=np.float64), Z_hat, sample_weight=w)


class ExplanationScorer:
    """Combined score: faithfulness, minus penalties for entangled and dead x-features.

    ::

        score = R2_faith - corr_weight * rho - dead_weight * dead

    with ``R2_faith`` the faithfulness R² (:func:`~sklearn_xnn.metrics.faithfulness_r2`),
    ``rho`` the mean absolute correlation between the x-features' contributions
    (:func:`~sklearn_xnn.metrics.mean_abs_correlation`; taken as 1 when fewer than two
    x-features vary) and ``dead`` the fraction of x-features constant on the scored rows
    (:func:`~sklearn_xnn.metrics.dead_fraction`). ``sample_weight`` goes to all three,
    which weigh the rows as repeated rows: the weighted R², correlations with weighted
    means and sums, and ``dead`` over the rows of positive weight.

    **Why this combination.** Faithfulness is the precondition of an explanation and
    stays in R² units, so a model that rebuilds nothing cannot win on the penalties. Left
    alone, faithfulness rewards a dense, entangled space (a model that copies one
    predictive direction into every x-feature scores like a good one); ``rho`` is the
    property SRAE's pull-away term pays for, on a [0, 1] scale comparable with R²: a
    perfectly faithful space of identical features (``rho = 1``) scores 0.5, like a
    perfectly decorrelated one that explains half the variance. ``rho`` ignores dead
    features, so killing features would lower it for free; the ``dead`` term closes that
    loophole (dead x-features are reported, never hidden). Sparsity is left out on
    purpose: it trades directly against faithfulness for a fixed ``K`` and is better read
    from its own column than folded into a number that grid search maximises.

    Parameters
    ----------
    corr_weight : float, default=0.5
        Weight of the entanglement penalty.
    dead_weight : float, default=0.5
        Weight of the dead-feature penalty.

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_xnn.baselines import make_headed
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> from sklearn_xnn.metrics import ExplanationScorer
    >>> Z, y, _ = make_concept_activations(200, 16, random_state=0)
    >>> model = make_headed(PCA(3)).fit(Z, y)
    >>> bool(ExplanationScorer()(model, Z, y) <= model.score(Z, y))
    True
    """

    def __init__(self, corr_weight=0.5, dead_weight=0.5):
        self.corr_weight = corr_weight
        self.dead_weight = dead_weight

    def __call__(self, estimator, Z, y, sample_weight=None):
        """Score a fitted explainer on ``(Z, y)``, rows weighted by ``sample_weight``
        (see the class docstring)."""
        w = _checked_weights(sample_weight, Z)
        faith = faithfulness_r2_scorer(estimator, Z, y, sample_weight=w)
        X = embed(estimator, Z)
        # by blocks of rows: 1,000 outputs never hold the (n, C, K) contributions
        rows_of = contribution_rows(estimator, Z, X)
        rho = correlation_by_blocks(rows_of, len(X), sample_weight=w)
        rho = 1.0 if np.isnan(rho) else rho
        dead = dead_fraction(X, sample_weight=w)
        return float(faith - self.corr_weight * rho - self.dead_weight * dead)

    def get_metadata_routing(self):
        """The metadata request: ``sample_weight`` for ``score`` (routed weights reach
        the scorer when metadata routing is enabled)."""
        return _score_request(type(self).__name__)

    def _accept_sample_weight(self):
        # asked by sklearn's multi-metric scorer when given weights without routing
        return True

    def __repr__(self):
        return f"ExplanationScorer(corr_weight={self.corr_weight}, dead_weight={self.dead_weight})"


explanation_scorer = ExplanationScorer()


def get_explanation_scorers(*, reconstruction=True, top1=True, kl=False):
    """A ``scoring=`` dict for ``cross_validate`` / multi-metric ``GridSearchCV``.

    Parameters
    ----------
    reconstruction : bool, default=True
        Include ``"reconstruction_r2"`` (needs ``inverse_transform``).
    top1 : bool, default=True
        Include ``"top1_agreement"`` (needs at least two logits).
    kl : bool, default=False
        Include ``"softmax_kl"``, minus the softmax KL divergence (needs at least two
        logits; for explainers fitted with ``faithfulness="kl"``).

    Returns
    -------
    scoring : dict of str to callable
        ``faithfulness_r2``, ``explanation`` and the optional ones; each takes
        ``sample_weight`` and requests it under metadata routing.

    Examples
    --------
    >>> from sklearn_xnn.metrics import get_explanation_scorers
    >>> sorted(get_explanation_scorers())
    ['explanation', 'faithfulness_r2', 'reconstruction_r2', 'top1_agreement']
    """
    scoring = {"faithfulness_r2": faithfulness_r2_scorer, "explanation": explanation_scorer}
    if top1:
        scoring["top1_agreement"] = top1_agreement_scorer
    if kl:
        scoring["softmax_kl"] = softmax_kl_scorer
    if reconstruction:
        scoring["reconstruction_r2"] = reconstruction_r2_scorer
    return scoring
