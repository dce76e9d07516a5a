"""Fitting explainers and measuring them on held-out rows: one table row per explainer."""

import numbers
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import NMF, PCA
from sklearn.utils import get_tags
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_xnn import metrics
from sklearn_xnn._nn.data import working_dtype
from sklearn_xnn._srae import SRAEExplainer
from sklearn_xnn.baselines import RandomNonnegativeProjection, make_headed
from sklearn_xnn.compare._columns import COLUMNS
from sklearn_xnn.compare._curve import k_curve
from sklearn_xnn.compare._format import ComparisonTable
from sklearn_xnn.metrics._adapter import (
    components_of,
    contribution_rows,
    embed,
    reconstruct,
    transformer_part,
)
from sklearn_xnn.metrics._blocks import contribution_metrics

#: The columns measured on the contributions, read by blocks of rows.
_CONTRIBUTION_COLUMNS = (
    "n_significant",
    "top_explained",
    "pullaway_samples",
    "pullaway_components",
    "contribution_corr",
)


def default_explainers(n_components=5, random_state=0, *, srae_params=None):
    """The standard line-up: SRAE, PCA, NMF, PLS and the random non-negative projection.

    Parameters
    ----------
    n_components : int, default=5
        ``K`` for every method.
    random_state : int, default=0
        Seed for every method that draws.
    srae_params : dict, default=None
        Extra :class:`~sklearn_xnn.SRAEExplainer` parameters (e.g. a smaller network for a
        quick run).

    Returns
    -------
    explainers : dict of str to estimator
        Unfitted; keys ``"SRAE", "PCA", "NMF", "PLS", "random"``.

    Examples
    --------
    >>> from sklearn_xnn.compare import default_explainers
    >>> list(default_explainers(3))
    ['SRAE', 'PCA', 'NMF', 'PLS', 'random']
    """
    K, seed = n_components, random_state
    return {
        "SRAE": SRAEExplainer(K, random_state=seed, **(srae_params or {})),
        "PCA": PCA(K, random_state=seed),
        "NMF": NMF(K, init="nndsvda", max_iter=1000, random_state=seed),
        "PLS": PLSRegression(K),
        "random": RandomNonnegativeProjection(K, random_state=seed),
    }


def _or_nan(fn, *args):
    """``fn(*args)``, or NaN when an input is missing (None)."""
    return np.nan if any(a is None for a in args) else fn(*args)


def _contribution_columns(rows_of, y, n_samples):
    """The contribution columns, by blocks of rows (never the ``(n, C, K)`` array); NaN
    without a head."""
    if rows_of is None:
        return dict.fromkeys(_CONTRIBUTION_COLUMNS, np.nan)
    return contribution_metrics(rows_of, n_samples, y=y)


def _logits(y, n_rows, name):
    """``y`` as a 2-D float64 array of ``n_rows`` finite rows, or a clear error."""
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(len(y), -1) if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[0] != n_rows:
        raise ValueError(f"{name} must have one row per activation row ({n_rows}), got {y.shape}.")
    if not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    return y


def _is_frame(Z):
    return hasattr(Z, "columns") and hasattr(Z, "iloc")


def _float_rows(Z, dtype=None):
    """``Z`` in one float dtype (``dtype``; else float32 kept, others float64).

    A data frame stays one, so that the explainers are fitted and measured with its
    column names (``feature_names_in_``) as scikit-learn's are, with the row index
    ``0 .. n-1`` (rows are read by position); anything else becomes an array.
    """
    array = np.asarray(Z)
    dtype = working_dtype(array.dtype) if dtype is None else np.dtype(dtype)
    if not _is_frame(Z):
        return array.astype(dtype, copy=False)
    Z = Z if (Z.dtypes == dtype).all() else Z.astype(dtype)
    return Z if Z.index.equals(pd.RangeIndex(len(Z))) else Z.set_axis(pd.RangeIndex(len(Z)))


def _check_data(Z_train, y_train, Z_test, y_test, codes_test=None):
    """The activations in one float dtype (float32 when both are, else float64), once
    their rows, outputs and columns agree: a mismatch would otherwise be measured silently
    (or turn into NaN columns). Two data frames stay frames (:func:`_float_rows`), so the
    fitted explainers know their feature names; any other pair becomes arrays."""
    frames = _is_frame(Z_train) and _is_frame(Z_test)
    if frames and list(Z_train.columns) != list(Z_test.columns):
        raise ValueError(
            "Z_test's columns are not Z_train's in the same order; select them by name "
            "first, e.g. Z_test[Z_train.columns]."
        )
    if not frames:
        Z_train, Z_test = np.asarray(Z_train), np.asarray(Z_test)
    # One dtype for every method (NMF refuses mixed ones); float32 activations, what torch
    # gives, stay float32 as scikit-learn's estimators keep them: no float64 copy of Z
    common = np.result_type(*(working_dtype(np.asarray(a).dtype) for a in (Z_train, Z_test)))
    Z_train, Z_test = (_float_rows(a, common) for a in (Z_train, Z_test))
    if Z_train.ndim != 2 or Z_test.ndim != 2 or Z_train.shape[1] != Z_test.shape[1]:
        raise ValueError(
            "Z_train and Z_test must be 2-D with the same number of columns, got shapes "
            f"{Z_train.shape} and {Z_test.shape}."
        )
    if len(Z_train) < 2:
        raise ValueError(
            f"Z_train has {len(Z_train)} row(s); every explainer needs at least 2 training "
            "rows (and many more to explain anything): pass more activations."
        )
    if len(Z_test) < 2:
        raise ValueError(
            f"Z_test has {len(Z_test)} row(s); the metrics need at least 2 held-out rows "
            "(R² is undefined on one row, and every x-feature looks dead): pass a Z_test "
            "and y_test of 2 or more rows, e.g. hold out more of your activations."
        )
    ys = _logits(y_train, len(Z_train), "y_train"), _logits(y_test, len(Z_test), "y_test")
    if ys[0].shape[1] != ys[1].shape[1]:
        raise ValueError(
            f"y_train and y_test must have the same number of outputs, got {ys[0].shape[1]} "
            f"and {ys[1].shape[1]}."
        )
    if codes_test is not None:
        _check_codes(codes_test, len(Z_test))
    return Z_train, Z_test


def _check_codes(codes_test, n_test):
    """Refuse planted codes that concept recovery cannot read, before any explainer fits."""
    codes = np.asarray(codes_test)
    if codes.ndim != 2 or len(codes) != n_test:
        raise ValueError(
            f"codes_test must be 2-D, one row per row of Z_test ({n_test}) and one column per "
            f"planted concept, got shape {codes.shape}; one concept is codes.reshape(-1, 1)."
        )
    if codes.dtype.kind not in "biuf" or not np.isfinite(codes).all():
        raise ValueError(
            "codes_test must hold finite numbers (the planted concepts' values), got "
            f"{'NaN or infinity' if codes.dtype.kind in 'biuf' else codes.dtype}."
        )


def evaluate_explainer(estimator, Z, y, *, Z_train=None, codes=None):
    """Every explanation metric of a fitted explainer on the rows ``(Z, y)``.

    Parameters
    ----------
    estimator : fitted estimator
        :class:`~sklearn_xnn.SRAEExplainer`, a headed pipeline, a predictor that transforms
        (PLS) or a bare transformer (faithfulness columns are then NaN).
    Z : array-like of shape (n_samples, n_features)
        Held-out activations (a data frame is passed as it is, for an explainer fitted on
        one).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Their logits; with one output ``top1_agreement``, ``kl`` and ``top_explained``
        are NaN (no decision).
    Z_train : array-like of shape (n_train, n_features), default=None
        Training rows, used to read a predictor's linear head off ``predict`` (PLS); ``Z``
        when None.
    codes : array-like of shape (n_samples, n_concepts), default=None
        Planted concept codes of ``Z``'s rows, for ``concept_recovery``.

    Returns
    -------
    row : dict
        The metric columns of :data:`~sklearn_xnn.compare.COLUMNS` except
        ``fit_time_s`` and ``note``, and the rebuilt logits under ``"y_pred"`` (None
        without a head).

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_xnn.baselines import make_headed
    >>> from sklearn_xnn.compare import evaluate_explainer
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> Z, y, codes = make_concept_activations(300, 16, random_state=0)
    >>> model = make_headed(PCA(5)).fit(Z[:200], y[:200])
    >>> row = evaluate_explainer(model, Z[200:], y[200:], codes=codes[200:])
    >>> row["mean_active"], row["dead_fraction"]
    (5.0, 0.0)
    """
    Z = _float_rows(Z)  # float32 kept, as the explainer was fitted on (NMF refuses others)
    y = np.asarray(y, dtype=np.float64)
    _logits(y, len(Z), "y")
    if codes is not None and len(codes) != len(Z):
        raise ValueError(f"codes must have one row per row of Z ({len(Z)}), got {len(codes)}.")
    decision = y if y.ndim == 2 and y.shape[1] > 1 else None  # one logit: no class to pick
    X = embed(estimator, Z)
    y_pred = np.asarray(estimator.predict(Z), np.float64) if hasattr(estimator, "predict") else None
    rows_of = contribution_rows(estimator, Z, X, Z_train) if y_pred is not None else None
    # one logit: no decision, so no share of decisions explained (as compare_per_output)
    contribution = _contribution_columns(rows_of, decision, len(Z))
    contribution.setdefault("top_explained", np.nan)
    Z_hat = reconstruct(estimator, X)
    G = components_of(estimator)
    cos = metrics.component_cosines(G) if G is not None else (np.nan, np.nan)
    return {
        "faithfulness_r2": _or_nan(metrics.faithfulness_r2, y, y_pred),
        "rmse": _or_nan(metrics.faithfulness_rmse, y, y_pred),
        "top1_agreement": _or_nan(metrics.top1_agreement, decision, y_pred),
        "kl": _or_nan(metrics.softmax_kl, decision, y_pred),
        "reconstruction_r2": _or_nan(metrics.reconstruction_r2, np.asarray(Z), Z_hat),
        "explained_variance": _or_nan(
            metrics.reconstruction_explained_variance, np.asarray(Z), Z_hat
        ),
        "mean_active": metrics.mean_active(X),
        **contribution,
        "component_max_cos": cos[0],
        "component_mean_cos": cos[1],
        "dead_fraction": metrics.dead_fraction(X),
        "concept_recovery": _or_nan(metrics.concept_recovery, X, codes),
        "n_components": X.shape[1],
        "y_pred": y_pred,
    }


def _steps(estimator):
    """The estimators of ``estimator``'s transformer part, pipeline steps one by one."""
    part = transformer_part(estimator)
    steps = part.steps if hasattr(part, "steps") else [(None, part)]
    return [step for _, step in steps if hasattr(step, "get_params")]


def _skip_reason(estimator, Z_train):
    """Why ``estimator`` cannot be fitted on ``Z_train`` (e.g. NMF on signed data), or None."""
    for step in _steps(estimator):
        if get_tags(step).input_tags.positive_only and np.min(np.asarray(Z_train)) < 0:
            return (
                f"skipped: {type(step).__name__} needs non-negative activations and Z has "
                "negative values (shift or clip Z first if that is meaningful)"
            )
    return None


def _too_many_components(estimator, Z_train, error):
    """Why ``estimator``'s fit raised ``error``, when it is a method that cannot give more
    components than ``min(n_samples, n_features)`` (PCA, NMF, PLS) asked for more; None
    for any other failure (a parameter error, or a K within that limit)."""
    if not isinstance(error, ValueError) or isinstance(error, InvalidParameterError):
        return None
    n, p = Z_train.shape
    for step in _steps(estimator):
        K = step.get_params(deep=False).get("n_components")
        if isinstance(K, numbers.Integral) and not isinstance(K, bool) and K > min(n, p):
            return (
                f"skipped: {type(step).__name__} cannot fit K={K} components on {n} "
                f"training rows of {p} activation units (at most min(n_samples, "
                f"n_features) = {min(n, p)}); lower K to compare it"
            )
    return None


def _timed_fit(estimator, Z_train, y_train):
    """Fit ``estimator``: ``(seconds, None)``, or ``(None, note)`` when it cannot give its
    K components on these rows (:func:`_too_many_components`)."""
    start = time.perf_counter()
    try:
        estimator.fit(Z_train, y_train)
    except ValueError as exc:
        note = _too_many_components(estimator, Z_train, exc)
        if note is None:
            raise
        return None, note
    return time.perf_counter() - start, None


def _raise_named(error, name):
    """Raise ``error`` again with the explainer's name in front of its message (same class;
    a class that cannot be built from a message alone gets the name as a note, 3.11+)."""
    message = f"explainer {name!r} failed: {error}"
    try:
        named = type(error)(message)
    except Exception:
        named = None
    if named is None:
        if hasattr(error, "add_note"):
            error.add_note(message)
        raise error
    raise named from error


#: The warnings of a fit that ``note`` and ``attrs["warnings"]`` record: the user's to
#: read (ConvergenceWarning and other UserWarnings) or to act on (deprecations).
_RECORDED_WARNINGS = (UserWarning, FutureWarning, DeprecationWarning)


def _fit_measure(name, estimator, Z_train, y_train, Z_test, y_test, codes_test):
    """Fit a clone (headed when it has no predict) and measure it: ``(row, y_pred, fitted,
    messages)``, the last the distinct messages of the warnings (:data:`_RECORDED_WARNINGS`)
    its fit and measurement raised. A skipped method's row holds only its ``note``; any
    other failure raises, naming ``name``."""
    est = clone(estimator)
    est = est if hasattr(est, "predict") else make_headed(est)
    reason = _skip_reason(est, Z_train)
    if reason is not None:
        return {"note": reason}, None, None, []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit_time, reason = _timed_fit(est, Z_train, y_train)
            if reason is not None:
                return {"note": reason}, None, None, []
            row = evaluate_explainer(est, Z_test, y_test, Z_train=Z_train, codes=codes_test)
        except Exception as exc:
            _raise_named(exc, name)
    caught = [w for w in caught if issubclass(w.category, _RECORDED_WARNINGS)]
    kinds = sorted({w.category.__name__ for w in caught})
    row.update(fit_time_s=fit_time, note="; ".join(kinds))
    messages = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    return row, row.pop("y_pred"), est, messages


def _frame(rows, names):
    frame = pd.DataFrame(rows, index=pd.Index(names, name="explainer"))
    return ComparisonTable(frame.reindex(columns=COLUMNS))


def compare_explainers(
    explainers, Z_train, y_train, Z_test, y_test, *, codes_test=None, return_fitted=False
):
    """Fit each explainer on the training rows and measure every metric on the test rows.

    Explainers without ``predict`` (PCA, NMF, any transformer) are wrapped by
    :func:`~sklearn_xnn.baselines.make_headed`: the same least-squares head, fitted on the
    training embedding. SRAE uses its own head; PLS its own ``predict`` (its contributions
    come from the linear map ``predict`` applies to its scores). Missing pieces give NaN:
    no ``inverse_transform`` -> reconstruction columns; no ``components_`` -> cosine
    columns; one logit (no decision to pick) -> ``top1_agreement``, ``kl`` and
    ``top_explained``, as in :func:`compare_per_output`. A method that requires
    non-negative input (NMF, by its sklearn tags) is *skipped* on signed activations: its
    row is NaN and ``note`` says why (we do not shift silently, because a shift changes
    what the factors mean). A method that cannot give K components on the training rows
    (PCA, NMF, PLS: more than ``min(n_samples, n_features)``, e.g. ``K = 5`` on a layer of
    3 units, or on 4 training rows) is skipped the same way, its ``note`` naming it, K and
    the limit; SRAE has no such limit. Any other failure raises, with the explainer's name
    in the message. The warnings raised while an explainer is fitted and measured are
    recorded, not passed on: ``note`` lists their classes and ``table.attrs["warnings"]``
    their messages. They are the user warnings (e.g. ``ConvergenceWarning`` for dead
    SRAE x-features) and the deprecations (``FutureWarning``, ``DeprecationWarning``,
    e.g. a parameter value to change before it is removed).

    Parameters
    ----------
    explainers : dict of str to estimator
        Unfitted estimators (cloned before fitting), e.g. :func:`default_explainers`.
    Z_train, Z_test : array-like of shape (n_train, n_features), (n_test, n_features)
        Activations; ``n_test >= 2`` (R² is undefined on one row). Two data frames (same
        columns, same order) are passed to the explainers as frames, so the fitted ones
        have ``feature_names_in_`` and take frames without a warning, e.g. in
        :func:`~sklearn_xnn.report.write_report`.
    y_train, y_test : array-like of shape (n_train,) / (n_train, n_outputs) and test alike
        Logits to explain.
    codes_test : array-like of shape (n_test, n_concepts), default=None
        Planted concept codes of the test rows; fills ``concept_recovery``.
    return_fitted : bool, default=False
        Also return the fitted explainers (headed pipelines for transformers; None where
        a method was skipped), so that they need not be fitted again.

    Returns
    -------
    table : ComparisonTable
        A :class:`pandas.DataFrame` that prints readably
        (:func:`~sklearn_xnn.compare.format_comparison`), indexed by name, with the
        columns of :data:`~sklearn_xnn.compare.COLUMNS`: faithfulness
        (``faithfulness_r2``, ``rmse``, ``top1_agreement``, ``kl``), reconstruction
        (``reconstruction_r2``, ``explained_variance``), sparsity (``mean_active``,
        ``n_significant``, with ``top_explained``, the share of decisions with a positive
        contribution), orthogonality (``pullaway_samples``, ``pullaway_components``,
        ``contribution_corr``, ``component_max_cos``, ``component_mean_cos``), health
        (``dead_fraction``), ``concept_recovery``, ``n_components``, ``fit_time_s``,
        ``note``. ``table.k_curve`` holds :func:`~sklearn_xnn.compare.k_curve` of the
        training rows: the rank-K linear bound's R² and PCA's explained variance for every
        K up to the largest K compared (at least 20, at most the number of activation
        features); ``table.attrs["warnings"]`` the messages of the warnings recorded for
        each explainer (by name, each once).
    fitted : dict of str to estimator
        Only with ``return_fitted=True``: the fitted explainers, by name.

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_xnn.baselines import RandomNonnegativeProjection
    >>> from sklearn_xnn.compare import compare_explainers
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> Z, y, _ = make_concept_activations(400, 32, random_state=0)
    >>> table = compare_explainers(
    ...     {"PCA": PCA(5), "random": RandomNonnegativeProjection(5, random_state=0)},
    ...     Z[:300], y[:300], Z[300:], y[300:])
    >>> list(table.index), bool(table.loc["PCA", "reconstruction_r2"] > 0)
    (['PCA', 'random'], True)
    """
    Z_train, Z_test = _check_data(Z_train, y_train, Z_test, y_test, codes_test)
    results = [
        _fit_measure(name, est, Z_train, y_train, Z_test, y_test, codes_test)
        for name, est in explainers.items()
    ]
    table = _frame([r[0] for r in results], list(explainers))
    # up to the largest K compared (at least 20), so that every explainer's K is on it;
    # plain lists: pandas compares attrs when frames are combined (concat)
    max_k = max(20, int(np.nan_to_num(table["n_components"].max(), nan=0)))
    curve = k_curve(Z_train, y_train, max_k=max_k)
    table.attrs["k_curve"] = curve.reset_index().to_dict("list")
    table.attrs["warnings"] = {name: r[3] for name, r in zip(explainers, results, strict=True)}
    if return_fitted:
        return table, dict(zip(explainers, (r[2] for r in results), strict=True))
    return table


def compare_per_output(
    explainers, Z_train, y_train, Z_test, y_test, *, outputs=None, codes_test=None
):
    """The paper's setting: one explainer per logit (``y`` 1-D), summarised per method.

    For each output ``c`` in ``outputs`` a clone of every explainer is fitted on
    ``y_train[:, c]`` and measured on ``y_test[:, c]`` as in
    :func:`~sklearn_xnn.compare.compare_explainers`.
    Each method's row is the mean over outputs of the per-output metrics (so
    ``faithfulness_r2`` is the uniform average of per-logit R²), except ``top1_agreement``
    and ``kl``, computed on the stacked per-logit rebuilds when ``outputs`` covers every
    logit (else NaN), ``top_explained``, NaN (each explainer sees one logit, not the
    decision), and ``fit_time_s``, the total over outputs (NaN for a method skipped on
    every output).

    Parameters
    ----------
    explainers : dict of str to estimator
        Unfitted estimators.
    Z_train, Z_test : array-like of shape (n_train, n_features), (n_test, n_features)
        Activations.
    y_train, y_test : array-like of shape (n_train, n_outputs), (n_test, n_outputs)
        All logits.
    outputs : sequence of int, default=None
        Which logits to explain; all when None.
    codes_test : array-like of shape (n_test, n_concepts), default=None
        Planted concept codes of the test rows.

    Returns
    -------
    table : ComparisonTable
        Same columns as :func:`~sklearn_xnn.compare.compare_explainers`.

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_xnn.compare import compare_per_output
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> Z, y, _ = make_concept_activations(300, 16, n_outputs=3, random_state=0)
    >>> table = compare_per_output({"PCA": PCA(2)}, Z[:200], y[:200], Z[200:], y[200:])
    >>> bool(0.0 <= table.loc["PCA", "top1_agreement"] <= 1.0)
    True
    """
    y_train, y_test = np.asarray(y_train, np.float64), np.asarray(y_test, np.float64)
    if y_train.ndim != 2:
        raise ValueError(f"compare_per_output needs 2-D logits, got y_train.ndim={y_train.ndim}.")
    Z_train, Z_test = _check_data(Z_train, y_train, Z_test, y_test, codes_test)
    outputs = list(range(y_train.shape[1])) if outputs is None else list(outputs)
    if any(not 0 <= c < y_train.shape[1] for c in outputs):
        raise ValueError(
            f"outputs must be logit indices in [0, {y_train.shape[1]}), got {outputs}."
        )
    rows = []
    for name, est in explainers.items():
        per, preds = [], []
        for c in outputs:
            row, y_pred, _, _ = _fit_measure(
                name, est, Z_train, y_train[:, c], Z_test, y_test[:, c], codes_test
            )
            per.append(row)
            preds.append(y_pred)
        frame = pd.DataFrame(per).reindex(columns=COLUMNS)
        row = frame.drop(columns="note").mean(numeric_only=True).to_dict()
        row["fit_time_s"] = frame["fit_time_s"].sum(min_count=1)  # NaN: never fitted
        notes = sorted({n for n in frame["note"].dropna() if n})
        row["note"] = "; ".join(notes)
        full = sorted(outputs) == list(range(y_test.shape[1])) and all(p is not None for p in preds)
        stacked = np.column_stack(preds)[:, np.argsort(outputs)] if full else None
        row["top1_agreement"] = _or_nan(metrics.top1_agreement, y_test if full else None, stacked)
        row["kl"] = _or_nan(metrics.softmax_kl, y_test if full else None, stacked)
        row["top_explained"] = np.nan  # per-logit explainers share no decision
        rows.append(row)
    return _frame(rows, list(explainers))
