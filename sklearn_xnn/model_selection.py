"""Many explainers on one device: parameter sweeps and cross-validated selection, batched.

:func:`~sklearn_xnn.sweep` fits one :class:`~sklearn_xnn.SRAEExplainer` per parameter setting on the
same data; :class:`~sklearn_xnn.SRAEExplainerCV` scores the settings by cross-validation and refits
the best. Both train every group of settings that share a network shape and a training
step (seeds, alphas, ``faithfulness_tol``, epochs and early-stopping rule may differ) as
one stacked network, each step one set of batched kernels instead of one set per
setting, and each explainer equals its own ``fit`` up to float rounding. Stacking saves
the cost of issuing kernels, not arithmetic: it is meant for devices whose steps are
bound by issuing kernels (GPUs) and for small networks; on the CPU the default network's
arithmetic already fills the cores. The User Guide's "Many explainers on one device"
tells what is batched, what trains on its own, and what was measured.
"""

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.base import (
    BaseEstimator,
    MetaEstimatorMixin,
    RegressorMixin,
    TransformerMixin,
    _fit_context,
    clone,
)
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.model_selection import ParameterGrid, ParameterSampler, check_cv
from sklearn.utils import _safe_indexing, get_tags, indexable
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from sklearn_xnn._batching import fit_explainers
from sklearn_xnn._fitting import forget_fit
from sklearn_xnn._srae import SRAEExplainer


def _parameter_settings(param_grid):
    """The list of settings (dicts) that ``param_grid`` describes (the rule is in :func:`sweep`)."""
    if param_grid is None:
        return [{}]
    if isinstance(param_grid, Mapping):
        settings = list(ParameterGrid(dict(param_grid)))
    elif isinstance(param_grid, (ParameterGrid, ParameterSampler)):
        settings = [dict(s) for s in param_grid]
    else:
        settings = _list_settings(list(param_grid))
    if not settings:
        raise ValueError(f"param_grid={param_grid!r} describes no parameter setting.")
    return settings


def _list_settings(entries):
    """The settings of a list of dicts: grids if every dict is one, else settings."""
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise TypeError(f"param_grid must hold dicts (grids or settings); got {entry!r}.")
    grids = [g for g in entries if g and _is_grid(g)]
    single = [s for s in entries if not _is_grid(s)]
    if grids and single:
        raise ValueError(
            f"param_grid mixes grids and single settings: {grids[0]!r} reads as a grid "
            f"(every value a sequence of candidates) and {single[0]!r} as one setting. "
            "Write every dict as a grid, each single value in a one-element list (e.g. "
            "{'n_components': [3]}, {'hidden_layer_sizes': [(16, 8)]})."
        )
    if single:
        return [dict(s) for s in entries]
    return list(ParameterGrid([dict(g) for g in entries]))


def _is_grid(entry):
    """Every value of ``entry`` is a sequence of candidates, as ``ParameterGrid`` reads one
    (a list, tuple, range or array, not a string)."""
    return all(
        isinstance(v, np.ndarray) or (isinstance(v, Sequence) and not isinstance(v, str))
        for v in entry.values()
    )


def _check_explainer(explainer, what):
    if not isinstance(explainer, SRAEExplainer):
        raise TypeError(
            f"{what} batches SRAEExplainer fits; got {type(explainer).__name__}. Put the "
            "preprocessing in a Pipeline before SRAEExplainerCV, or use GridSearchCV for "
            "other estimators."
        )


def sweep(explainer, param_grid, X, y=None):
    """Fit one explainer per parameter setting on ``(X, y)``, many at once.

    Each setting gives a clone of ``explainer`` with those parameters, fitted on the
    same rows. The settings are grouped by the network's shape and training step (all
    parameters but ``random_state``, ``alpha_faithfulness``, ``alpha_reconstruction``,
    ``alpha_pullaway``, ``faithfulness_tol`` (a number; None trains apart), ``max_iter``,
    ``tol``,
    ``n_iter_no_change``, ``pretrain``, ``n_init`` and
    ``verbose``, which may differ within a group), and each group is fine-tuned as one
    stacked network; the scaled data and the linear faithfulness bound are computed once
    per group. Each fitted explainer equals
    ``clone(explainer).set_params(**setting).fit(X, y)`` up to float rounding: after a
    few epochs transform outputs and ``coef_`` agree to about 1e-6; the differences
    grow during training as between CPU fits on different thread counts (the User
    Guide's "Many explainers on one device" gives measurements). Settings with
    ``dropout > 0``, ``compile=True`` or streamed ``X`` train one after another, exactly
    as their own ``fit``; settings with ``early_stopping=True`` hold out the same rows and
    are grouped by ``validation_fraction``.

    Parameters
    ----------
    explainer : SRAEExplainer
        The explainer whose clones are fitted (it is left unfitted).
    param_grid : dict, list of dicts or iterable of dicts
        The settings. A dict is a grid, read as
        :class:`~sklearn.model_selection.ParameterGrid` reads it: each value is a
        sequence of candidates (a list, tuple, range or 1-D array; a string is not one),
        and every combination is a setting. A list (or other iterable) of dicts is a
        list of such grids when every dict is one, exactly as in ``ParameterGrid``; it
        is the settings themselves when no non-empty dict is a grid, that is when each
        holds at least one single value (``[{"n_components": 2, "hidden_layer_sizes":
        (16, 8)}, ...]``); a list that mixes both raises a ValueError. So a setting
        whose every value is a sequence reads as a grid: write its values in
        one-element lists (``{"hidden_layer_sizes": [(16, 8)]}``). A
        :class:`~sklearn.model_selection.ParameterGrid` or
        :class:`~sklearn.model_selection.ParameterSampler` gives the settings it
        yields. None fits ``explainer``'s own parameters once.
    X : array-like of shape (n_samples, n_features)
        Activations.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        Logits to explain (None: unsupervised).

    Returns
    -------
    explainers : list of SRAEExplainer
        One fitted explainer per setting, in the order of the settings.

    See Also
    --------
    SRAEExplainerCV : Cross-validated choice among the settings, batched per fold.
    sklearn_xnn.SRAEExplainer : ``n_init`` fits several seeds batched and keeps the best.

    Examples
    --------
    >>> from sklearn_xnn import SRAEExplainer, sweep
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> Z, y, _ = make_concept_activations(200, 16, random_state=0)
    >>> xnn = SRAEExplainer(3, hidden_layer_sizes=(16, 8), max_iter=3, device="cpu")
    >>> fits = sweep(xnn, {"random_state": [0, 1], "alpha_pullaway": [0.1, 1.0]}, Z, y)
    >>> len(fits), fits[0].alpha_pullaway, fits[0].transform(Z).shape
    (4, 0.1, (200, 3))
    """
    _check_explainer(explainer, "sweep")
    return _fit_settings(explainer, _parameter_settings(param_grid), X, y)


def _configured(explainer, setting):
    """A clone of ``explainer`` with ``setting``, whose values are copied as
    ``GridSearchCV`` copies them (a ``RandomState`` in a grid is not shared by fits)."""
    return clone(explainer).set_params(**clone(setting, safe=False))


def _fit_settings(explainer, settings, X, y):
    """One clone of ``explainer`` per setting (a list of dicts, read as is), fitted batched."""
    return fit_explainers([_configured(explainer, s) for s in settings], X, y)


def _best_has(method):
    """``available_if`` check: with ``refit=True``, the refitted explainer (or, before fit,
    the search) has ``method``; with ``refit=False``, or fitted without a refit, none."""

    def check(cv):
        if not cv.refit:
            raise AttributeError(
                f"SRAEExplainerCV with refit=False has no {method}; its best setting is "
                "best_params_."
            )
        if hasattr(cv, "best_estimator_"):
            return hasattr(cv.best_estimator_, method)
        if hasattr(cv, "cv_results_"):
            raise AttributeError(
                f"This SRAEExplainerCV has no refitted explainer for {method}; fit it "
                "again with refit=True."
            )
        return True

    return check


class SRAEExplainerCV(TransformerMixin, RegressorMixin, MetaEstimatorMixin, BaseEstimator):
    """An explainer whose settings are chosen by cross-validation, each fold's fits batched.

    For every cross-validation split, all parameter settings are fitted on the training
    part with :func:`sweep` (compatible settings trained as one stacked network) and
    scored on the held-out part; the setting with the best mean score is refitted on all
    rows and the fitted object then answers as that explainer (``transform``,
    ``predict``, ``inverse_transform``, ``contributions``, ``score``). The same choice as
    ``GridSearchCV(estimator, param_grid, cv=cv, scoring=scoring)``, with every fold's
    settings trained together instead of one by one; it clones, pickles, and sits in a
    :class:`~sklearn.pipeline.Pipeline` (put preprocessing before it) or inside
    ``cross_val_score`` like any regressor.

    Parameters
    ----------
    estimator : SRAEExplainer, default=None
        The explainer whose settings are searched; None is ``SRAEExplainer()``.
    param_grid : dict, list of dicts or iterable of dicts, default=None
        The settings, read as :func:`sweep` reads them: a grid or list of grids as in
        ``GridSearchCV``, a list of the settings themselves, or a ``ParameterSampler``.
        None cross-validates ``estimator`` alone.
    cv : int, cross-validation generator or iterable, default=None
        As in ``GridSearchCV``: None is 5-fold ``KFold``; an int is that many folds.
    scoring : str or callable, default=None
        Score of a fitted explainer on held-out rows (higher is better): None uses
        ``estimator.score``, the R² of the rebuilt logits (averaged as ``multioutput`` says),
        or for a search without ``y`` the R² of the rebuilt activations; a scorer name or
        callable ``scorer(explainer, X, y)``, e.g.
        :func:`sklearn_xnn.metrics.reconstruction_r2_scorer`.
    refit : bool, default=True
        Refit the best setting on all rows (needed for ``transform`` and the other
        methods; with ``refit=False`` the search has none of them, as ``GridSearchCV``).
        Every fit starts afresh: no fitted attribute of an earlier fit remains. Unlike
        ``GridSearchCV`` (``error_score``), a setting whose fit raises stops the search
        with its error, and one scorer is used (for several metrics, ``GridSearchCV``
        with a ``scoring`` dict and ``refit=name``).

    Attributes
    ----------
    best_estimator_ : SRAEExplainer
        The best setting refitted on all rows (when ``refit``).
    best_params_ : dict
        The best setting.
    best_score_ : float
        Its mean cross-validated score.
    best_index_ : int
        Its index in ``cv_results_["params"]``.
    cv_results_ : dict of ndarray
        As ``GridSearchCV``'s: ``params``, ``param_<name>``, ``split<k>_test_score``,
        ``mean_test_score``, ``std_test_score`` and ``rank_test_score``.
    scorer_ : callable
        The scorer used.
    n_splits_ : int
        Number of cross-validation splits.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` had string column names.

    See Also
    --------
    sweep : Fit every setting on the same rows, batched.
    sklearn.model_selection.GridSearchCV : The same search, one fit after another.

    Examples
    --------
    >>> from sklearn_xnn import SRAEExplainer, SRAEExplainerCV
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> Z, y, _ = make_concept_activations(300, 16, random_state=0)
    >>> xnn = SRAEExplainer(3, hidden_layer_sizes=(16, 8), max_iter=3, device="cpu",
    ...                     random_state=0)
    >>> search = SRAEExplainerCV(xnn, {"alpha_pullaway": [0.1, 1.0]}, cv=2).fit(Z, y)
    >>> sorted(search.best_params_), search.transform(Z).shape
    (['alpha_pullaway'], (300, 3))
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "transform"]), None],
        "param_grid": [dict, list, HasMethods(["__iter__"]), None],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, dict, None],
        "refit": ["boolean"],
    }

    def __init__(self, estimator=None, param_grid=None, *, cv=None, scoring=None, refit=True):
        self.estimator = estimator
        self.param_grid = param_grid
        self.cv = cv
        self.scoring = scoring
        self.refit = refit

    def _explainer(self):
        return SRAEExplainer() if self.estimator is None else self.estimator

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, groups=None):
        """Score every setting by cross-validation, then refit the best on all rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Logits to explain; None needs a ``scoring`` that works without them.
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group-aware ``cv`` splitter.

        Returns
        -------
        self : SRAEExplainerCV
            The fitted search.
        """
        forget_fit(self)  # nothing of an earlier fit may answer (best_estimator_ above all)
        if isinstance(self.scoring, Mapping):
            raise ValueError(
                f"SRAEExplainerCV takes one scorer, got a dict of {sorted(self.scoring)}: "
                "pass one of them, or use GridSearchCV with scoring=that dict and "
                "refit=the name to choose by."
            )
        explainer = self._explainer()
        _check_explainer(explainer, "SRAEExplainerCV")
        settings = _parameter_settings(self.param_grid)
        X, y, groups = indexable(X, y, groups)
        cv = check_cv(self.cv, y, classifier=False)
        splits = list(cv.split(X, y, groups))
        self.scorer_ = check_scoring(explainer, scoring=self.scoring)
        scores = np.empty((len(settings), len(splits)))
        for k, (train, test) in enumerate(splits):
            fitted = _fit_settings(explainer, settings, _safe_indexing(X, train), _rows(y, train))
            X_test, y_test = _safe_indexing(X, test), _rows(y, test)
            try:
                scores[:, k] = [self.scorer_(est, X_test, y_test) for est in fitted]
            except AttributeError as exc:  # e.g. scoring="r2" calls predict
                if y is not None:
                    raise
                raise ValueError(
                    f"scoring={self.scoring!r} needs what explainers fitted without y do "
                    f"not have ({exc}): pass the logits y, or a scorer of unsupervised "
                    "explainers (None, or sklearn_xnn.metrics.reconstruction_r2_scorer)."
                ) from exc
        self.cv_results_ = _cv_results(settings, scores)
        mean = self.cv_results_["mean_test_score"]
        self.best_index_ = int(np.argmax(np.where(np.isnan(mean), -np.inf, mean)))
        self.best_params_ = settings[self.best_index_]
        self.best_score_ = float(mean[self.best_index_])
        self.n_splits_ = len(splits)
        if self.refit:
            best = _configured(explainer, self.best_params_)
            self.best_estimator_ = best.fit(X, y)
        else:
            best = fitted[self.best_index_]
        self.n_features_in_ = best.n_features_in_
        if hasattr(best, "feature_names_in_"):
            self.feature_names_in_ = best.feature_names_in_
        return self

    @available_if(_best_has("transform"))
    def transform(self, X):
        """The best explainer's x-features of ``X`` (see ``SRAEExplainer.transform``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            Non-negative x-features.
        """
        check_is_fitted(self)
        return self.best_estimator_.transform(X)

    @available_if(_best_has("inverse_transform"))
    def inverse_transform(self, X):
        """The best explainer's reconstruction of activations from x-features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            x-features.

        Returns
        -------
        Z_hat : ndarray of shape (n_samples, n_features_in_)
            Reconstructed activations.
        """
        check_is_fitted(self)
        return self.best_estimator_.inverse_transform(X)

    @available_if(_best_has("predict"))
    def predict(self, X):
        """The best explainer's rebuilt logits (see ``SRAEExplainer.predict``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.

        Returns
        -------
        y_hat : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Rebuilt logits.
        """
        check_is_fitted(self)
        return self.best_estimator_.predict(X)

    @available_if(_best_has("contributions"))
    def contributions(self, X, outputs=None):
        """The best explainer's contributions ``x_ik W_ck`` (see ``SRAEExplainer``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        outputs : None, array-like of int or "predicted", default=None
            All outputs, the listed ones, or each row's top predicted output.

        Returns
        -------
        S : ndarray of shape (n_samples, n_outputs, n_components)
            Contributions (``(n_samples, len(outputs), n_components)`` for listed outputs,
            ``(n_samples, n_components)`` for ``"predicted"`` or a 1-D ``y``).
        """
        check_is_fitted(self)
        return self.best_estimator_.contributions(X, outputs)

    @available_if(_best_has("score"))
    def score(self, X, y=None, sample_weight=None):
        """The search's score (``scorer_``) of the best explainer on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Logits.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights, passed on to ``scorer_`` (by default to
            ``best_estimator_.score``); a ``scoring`` callable must then accept
            ``sample_weight``.

        Returns
        -------
        score : float
            Higher is better; the R² of the rebuilt logits by default.
        """
        check_is_fitted(self)
        if sample_weight is None:
            return self.scorer_(self.best_estimator_, X, y)
        return self.scorer_(self.best_estimator_, X, y, sample_weight=sample_weight)

    @available_if(_best_has("get_feature_names_out"))
    def get_feature_names_out(self, input_features=None):
        """The best explainer's output feature names.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Unused, as for ``SRAEExplainer``.

        Returns
        -------
        feature_names_out : ndarray of str objects
            ``sraeexplainer0`` ... ``sraeexplainer{K-1}``.
        """
        check_is_fitted(self)
        return self.best_estimator_.get_feature_names_out(input_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self._explainer())
        tags.target_tags.required = inner.target_tags.required
        tags.target_tags.multi_output = inner.target_tags.multi_output
        tags.transformer_tags.preserves_dtype = inner.transformer_tags.preserves_dtype
        tags.input_tags = inner.input_tags
        return tags


# set_output (TransformerMixin) replaces transform and fit_transform by plain wrappers,
# which hides available_if's check: a search with refit=False would claim to transform.
for _name in ("transform", "fit_transform"):
    setattr(
        SRAEExplainerCV,
        _name,
        available_if(_best_has("transform"))(getattr(SRAEExplainerCV, _name)),
    )


def _rows(y, rows):
    return None if y is None else _safe_indexing(y, rows)


def _cv_results(settings, scores):
    """``cv_results_`` in ``GridSearchCV``'s layout (test scores only)."""
    mean, std = scores.mean(axis=1), scores.std(axis=1)
    ranked = np.where(np.isnan(mean), -np.inf, mean)
    results = {"params": settings}
    for name in sorted({k for s in settings for k in s}):
        column = np.ma.MaskedArray(np.empty(len(settings), dtype=object), mask=True)
        for i, s in enumerate(settings):
            if name in s:
                column[i] = s[name]
        results[f"param_{name}"] = column
    for k in range(scores.shape[1]):
        results[f"split{k}_test_score"] = scores[:, k]
    results["mean_test_score"], results["std_test_score"] = mean, std
    results["rank_test_score"] = rankdata(-ranked, method="min").astype(np.int32)
    return results


__all__ = ["SRAEExplainerCV", "sweep"]
