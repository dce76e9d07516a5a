"""Baseline explainers to compare SRAE with: a headed transformer, a PLS embedding, a random row.

Every method is compared on equal footing (:ref:`comparing` in the user guide): a
transformer without a head gets the same least-squares linear head on its embedding,
fitted on the training rows.
"""

from numbers import Integral

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
    is_classifier,
)
from sklearn.cross_decomposition import CCA, PLSSVD, PLSCanonical, PLSRegression
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


class PLSEmbedding(PLSRegression):
    """:class:`~sklearn.cross_decomposition.PLSRegression` usable as a pipeline step.

    Same parameters, fit and ``predict`` as ``PLSRegression``; only ``fit_transform(X, y)``
    differs: it returns the ``x`` scores alone (``PLSRegression`` returns the pair
    ``(x_scores, y_scores)`` when given ``y``, which breaks a
    :class:`~sklearn.pipeline.Pipeline`). :func:`make_headed` uses it for PLS.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_xnn.baselines import PLSEmbedding
    >>> rng = np.random.RandomState(0)
    >>> X, Y = rng.normal(size=(20, 5)), rng.normal(size=(20, 2))
    >>> PLSEmbedding(n_components=2).fit_transform(X, Y).shape
    (20, 2)
    """

    def fit_transform(self, X, y=None):
        """Fit, then return the ``x`` scores of ``X`` only.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets (required by PLS).

        Returns
        -------
        x_scores : ndarray of shape (n_samples, n_components)
        """
        if y is None:
            raise ValueError("PLSEmbedding needs y: PLS finds the directions of X that predict it.")
        return self.fit(X, y).transform(X)


#: Cross-decomposition methods whose ``fit_transform(X, y)`` returns ``(x_scores, y_scores)``.
_TUPLE_TRANSFORMS = (PLSRegression, PLSCanonical, CCA, PLSSVD)


def make_headed(transformer, head=None):
    """Give a transformer SRAE's linear head: ``Pipeline([(name, transformer), ("head", LR)])``.

    The head is an ordinary least-squares :class:`~sklearn.linear_model.LinearRegression`
    fitted on the training rows' embedding, so ``predict`` rebuilds the logits linearly
    from the transformer's features, ``score`` is faithfulness R² and ``GridSearchCV``
    tunes e.g. ``pca__n_components``. A ``PLSRegression`` is swapped for the equivalent
    :class:`PLSEmbedding` (same parameters) so that it works as a step.

    Parameters
    ----------
    transformer : estimator
        Any transformer (PCA, NMF, FastICA, RandomNonnegativeProjection, ...).
    head : regressor, default=None
        The head; ``LinearRegression()`` when None. A classifier is refused.

    Returns
    -------
    pipeline : Pipeline
        Unfitted. The step is named after the class in lower case, like ``make_pipeline``.

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_xnn.baselines import make_headed
    >>> make_headed(PCA(5))
    Pipeline(steps=[('pca', PCA(n_components=5)), ('head', LinearRegression())])
    """
    if type(transformer) is PLSRegression:
        transformer = PLSEmbedding(**transformer.get_params())
    elif isinstance(transformer, _TUPLE_TRANSFORMS) and not isinstance(transformer, PLSEmbedding):
        raise TypeError(
            f"make_headed needs a transformer whose fit_transform returns the embedding; "
            f"{type(transformer).__name__}.fit_transform(X, y) returns (x_scores, y_scores). "
            "Use PLSRegression (swapped for PLSEmbedding) or a transformer of X alone."
        )
    if head is not None and is_classifier(head):
        raise TypeError(
            f"make_headed's head rebuilds the logits, so it must be a regressor; got the "
            f"classifier {type(head).__name__}. Use e.g. LinearRegression or Ridge."
        )
    name = type(transformer).__name__.lower()
    return Pipeline([(name, transformer), ("head", LinearRegression() if head is None else head)])


class RandomNonnegativeProjection(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A random non-negative linear projection to ``K`` features: the sanity row.

    ``transform(Z) = Z @ P.T`` with ``P`` a ``K x D`` matrix of uniform ``[0, 1)`` draws,
    each row scaled to unit norm; nothing is learnt about ``Z`` except the least-squares
    way back: ``inverse_transform(X) = X @ components_ + intercept_`` with
    ``(components_, intercept_)`` minimising ``sum_ij (z_ij - z_hat_ij)^2`` on the training
    rows. On non-negative activations its features are non-negative. An explanation metric
    that cannot tell this row from SRAE is not measuring anything.

    Parameters
    ----------
    n_components : int, default=5
        Number ``K`` of features.
    random_state : int, RandomState instance or None, default=None
        Seed of the projection.

    Attributes
    ----------
    projection_ : ndarray of shape (n_components, n_features_in_)
        The non-negative projection ``P``.
    components_ : ndarray of shape (n_components, n_features_in_)
        Least-squares reconstruction directions (the rows ``inverse_transform`` mixes).
    intercept_ : ndarray of shape (n_features_in_,)
        Reconstruction offset.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` had string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_xnn.baselines import RandomNonnegativeProjection
    >>> Z = np.random.RandomState(0).uniform(size=(50, 8))
    >>> rnp = RandomNonnegativeProjection(3, random_state=0).fit(Z)
    >>> X = rnp.transform(Z)
    >>> X.shape, bool((X >= 0).all()), rnp.inverse_transform(X).shape
    ((50, 3), True, (50, 8))
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_components=5, *, random_state=None):
        self.n_components = n_components
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Draw the projection and fit the least-squares way back.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        y : None
            Ignored.

        Returns
        -------
        self : RandomNonnegativeProjection
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        rng = check_random_state(self.random_state)
        P = rng.random_sample((self.n_components, X.shape[1]))
        self.projection_ = P / np.linalg.norm(P, axis=1, keepdims=True)
        codes = np.c_[X @ self.projection_.T, np.ones(X.shape[0])]
        coef = np.linalg.lstsq(codes, np.asarray(X, dtype=np.float64), rcond=None)[0]
        self.components_, self.intercept_ = coef[:-1], coef[-1]
        self._n_features_out = self.n_components
        return self

    def transform(self, X):
        """Project activations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            In the dtype of ``X``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return (X @ self.projection_.T).astype(X.dtype, copy=False)

    def inverse_transform(self, X):
        """Least-squares rebuild of activations from projected features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)

        Returns
        -------
        Z_hat : ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self)
        X = check_array(X, dtype=[np.float64, np.float32])
        if X.shape[1] != self.n_components:
            raise ValueError(
                f"inverse_transform expects {self.n_components} features per row, got "
                f"{X.shape[1]}; pass the output of transform."
            )
        return (X @ self.components_ + self.intercept_).astype(X.dtype, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
