"""What the report reads of an explainer: its x-features, its linear head, their names.

The report draws SRAE's decomposition ``score_c = sum_k x_k W_ck + b_c`` for any
explainer with a linear head: :class:`~sklearn_xnn.SRAEExplainer` (its own ``coef_`` and
``intercept_``), a headed pipeline (:func:`~sklearn_xnn.baselines.make_headed`, what
:func:`~sklearn_xnn.compare.compare_explainers` returns for PCA or NMF with
``return_fitted=True``) and a predictor that transforms (``PLSRegression``); a fitted
search (:class:`~sklearn_xnn.SRAEExplainerCV`, ``GridSearchCV``) is read through its
refitted ``best_estimator_``, as the metrics read it.
"""

from typing import NamedTuple

import numpy as np

from sklearn_xnn.metrics._adapter import (
    embed,
    head_coef,
    rebuild_logits,
    refitted,
    transformer_part,
)

#: What :func:`linear_view` reads, for the error message.
ACCEPTED = (
    "an SRAEExplainer, a headed pipeline (sklearn_xnn.baselines.make_headed, as "
    "compare_explainers(return_fitted=True) returns for PCA or NMF), a predictor that "
    "transforms (PLSRegression), a bare transformer (no head) or a search over one fitted "
    "with refit=True (SRAEExplainerCV, GridSearchCV: its best_estimator_)"
)

#: Seed of the fixed offsets of the rows at which a predictor's head is read.
_PROBE_SEED = 0


class LinearView(NamedTuple):
    """x-features ``X`` ``(n, K)``, the head ``coef`` ``(C, K)`` and ``intercept``
    ``(C,)`` (both None without a head), and the x-feature ``names``.

    ``X @ coef.T + intercept`` is the explainer's rebuild of the logits (its
    ``predict``).
    """

    X: np.ndarray
    coef: np.ndarray | None
    intercept: np.ndarray | None
    names: list


def feature_names(explainer, n_components):
    """The explainer's ``get_feature_names_out()``, or ``x0, x1, ...`` without it."""
    try:
        names = [str(n) for n in explainer.get_feature_names_out()]
    except (AttributeError, TypeError, ValueError):
        names = []
    return names if len(names) == n_components else [f"x{k}" for k in range(n_components)]


def _first_row(Z):
    return Z.iloc[:1] if hasattr(Z, "iloc") else np.asarray(Z)[:1]


def _probe(Z, K):
    """``2K + 2`` rows: the first row of ``Z`` plus fixed non-negative offsets (so that a
    method that needs non-negative input still accepts them), as ``Z``'s type."""
    row = _first_row(Z)
    offsets = np.random.default_rng(_PROBE_SEED).random((2 * K + 2, np.shape(row)[1]))
    rows = np.asarray(row, dtype=np.float64) + offsets
    if hasattr(row, "columns"):  # keep the feature names the explainer was fitted with
        return row.__class__(rows, columns=row.columns)
    return rows


def _read_head(explainer, Z, K, caller):
    """``(W, b)`` with ``predict = embed @ W.T + b``, read at probe rows; a TypeError when
    ``predict`` is not affine in the x-features there."""
    probe = _probe(Z, K)
    W = np.atleast_2d(head_coef(explainer, probe))
    X = embed(explainer, probe)
    y = rebuild_logits(explainer, probe).reshape(len(X), -1)
    b = (y - X @ W.T).mean(0)
    scale = max(float(np.abs(y).max()), 1.0)
    if W.shape != (y.shape[1], K) or not np.allclose(X @ W.T + b, y, rtol=0, atol=1e-6 * scale):
        raise TypeError(
            f"{caller} needs an explainer whose predict is linear in its x-features; "
            f"{type(explainer).__name__}'s is not."
        )
    return W, b


def linear_view(explainer, Z, caller):
    """The :class:`LinearView` of ``explainer`` on the rows ``Z``.

    Parameters
    ----------
    explainer : fitted estimator
        See :data:`ACCEPTED`; a fitted search is read through its refitted
        ``best_estimator_``. SRAE's head is its ``coef_`` and ``intercept_``; a headed
        pipeline's or a predictor's (PLS) head is read off ``predict`` at ``2K + 2``
        fixed rows, exact because ``predict`` is affine in the x-features there (checked).
    Z : array-like of shape (n_samples, n_features)
        Activations (a data frame keeps its feature names).
    caller : str
        The public function's name, for the messages.

    Returns
    -------
    view : LinearView
    """
    explainer = refitted(explainer)  # a search: what it refitted (its coef_, its names)
    if hasattr(explainer, "contributions"):  # SRAE
        X = np.asarray(explainer.transform(Z), dtype=np.float64)
        names = feature_names(explainer, X.shape[1])
        coef = getattr(explainer, "coef_", None)
        if coef is None:  # fitted without logits
            return LinearView(X, None, None, names)
        W = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        b = np.atleast_1d(np.asarray(explainer.intercept_, dtype=np.float64))
        return LinearView(X, W, b, names)
    if not hasattr(transformer_part(explainer), "transform"):
        raise TypeError(f"{caller} explains {ACCEPTED}; got {type(explainer).__name__}.")
    X = embed(explainer, Z)
    names = feature_names(transformer_part(explainer), X.shape[1])
    if not hasattr(explainer, "predict"):
        return LinearView(X, None, None, names)
    return LinearView(X, *_read_head(explainer, Z, X.shape[1], caller), names)
