"""One view of any fitted explainer: embedding, rebuilt logits, contributions, reconstruction.

Handles :class:`~sklearn_xnn.SRAEExplainer` (its own head and ``contributions``), a headed
pipeline ``Pipeline([..., ("head", regressor)])`` (see :func:`sklearn_xnn.baselines.make_headed`),
a predictor that also transforms (``PLSRegression``) and a bare transformer.
"""

import numpy as np
from sklearn.pipeline import Pipeline


def fit_explainer(estimator, Z, y=None):
    """``estimator.fit(Z, y)``; transformers ignore ``y``. Returns the estimator."""
    return estimator.fit(Z) if y is None else estimator.fit(Z, y)


def refitted(estimator):
    """A fitted search's refitted ``best_estimator_``; any other estimator itself."""
    return getattr(estimator, "best_estimator_", estimator)


def last_step(estimator):
    """The final estimator of a pipeline, or ``estimator`` itself when it is not one."""
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def _is_headed(estimator):
    return isinstance(estimator, Pipeline) and not hasattr(last_step(estimator), "transform")


def transformer_part(estimator):
    """The part that maps activations to x-features (a headed pipeline minus its head)."""
    return estimator[:-1] if _is_headed(estimator) else estimator


def embed(estimator, Z):
    """x-features of ``Z``: ``transform`` of the transformer part, as float64 ``(n, K)``."""
    estimator = refitted(estimator)
    X = transformer_part(estimator).transform(Z)
    X = X[0] if isinstance(X, tuple) else X
    return np.asarray(X, dtype=np.float64)


def rebuild_logits(estimator, Z):
    """``predict(Z)`` as float64, or None when the estimator has no head."""
    if not hasattr(estimator, "predict"):
        return None
    return np.asarray(estimator.predict(Z), dtype=np.float64)


def reconstruct(estimator, X):
    """``inverse_transform`` of x-features by the transformer part, or None if it has none."""
    estimator = refitted(estimator)
    part = transformer_part(estimator)
    if not hasattr(part, "inverse_transform"):
        return None
    try:
        return np.asarray(part.inverse_transform(X), dtype=np.float64)
    except (AttributeError, NotImplementedError):
        return None


def components_of(estimator):
    """Directions of the x-features in activation space ``(K, D)``, or None.

    ``components_`` of the last transformer (SRAE, PCA, NMF, the random projection) or,
    for PLS, its ``x_loadings_.T`` (the directions its ``inverse_transform`` mixes).
    """
    last = last_step(transformer_part(refitted(estimator)))
    if hasattr(last, "components_"):
        return np.asarray(last.components_, dtype=np.float64)
    if hasattr(last, "x_loadings_"):
        return np.asarray(last.x_loadings_, dtype=np.float64).T
    return None


def head_coef(estimator, Z_ref):
    """The linear head ``W`` (``(C, K)``) that maps x-features to rebuilt logits.

    ``coef_`` of SRAE or of a headed pipeline's linear head; otherwise (e.g. PLS) the
    least-squares fit of ``predict(Z_ref)`` on ``[embed(Z_ref), 1]``, exact when
    ``predict`` is linear in the embedding. None without a head.
    """
    estimator = refitted(estimator)
    if hasattr(estimator, "contributions") and hasattr(estimator, "coef_"):
        return np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    if _is_headed(estimator) and hasattr(estimator[-1], "coef_"):
        return np.atleast_2d(np.asarray(estimator[-1].coef_, dtype=np.float64))
    y_hat = rebuild_logits(estimator, Z_ref)
    if y_hat is None:
        return None
    X = embed(estimator, Z_ref)
    coef = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y_hat.reshape(len(X), -1), rcond=None)[0]
    return coef[:-1].T


def contributions_of(estimator, Z, X=None, Z_ref=None):
    """Contributions ``S_ick = x_ik W_ck``: ``(n, K)`` for 1-D logits, else ``(n, C, K)``.

    Uses SRAE's own ``contributions``; for other explainers the head from
    :func:`head_coef` (``Z_ref``: the training rows). None without a head.
    """
    rows_of = contribution_rows(estimator, Z, X, Z_ref)
    return None if rows_of is None else rows_of(slice(None))


def contribution_rows(estimator, Z, X=None, Z_ref=None):
    """:func:`contributions_of` one slice of rows at a time, without the whole array.

    Returns a function ``rows_of(rows)`` giving ``contributions_of(estimator, Z)[rows]``
    for a slice ``rows``, with the head resolved once (for PLS a least-squares fit on
    ``Z_ref``); None without a head.
    """
    estimator = refitted(estimator)
    if hasattr(estimator, "contributions"):
        return lambda rows: np.asarray(estimator.contributions(Z[rows]), dtype=np.float64)
    W = head_coef(estimator, Z if Z_ref is None else Z_ref)
    if W is None:
        return None
    X = embed(estimator, Z) if X is None else X
    one_output = rebuild_logits(estimator, Z[:1]).ndim == 1

    def rows_of(rows):
        S = X[rows, None, :] * W[None, :, :]
        return S[:, 0, :] if one_output else S

    return rows_of
