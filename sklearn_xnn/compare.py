"""Side-by-side comparison of explainers (SRAE, PCA, NMF, PLS, any transformer) on held-out rows.

Every explainer is fitted on the training rows and measured on the test rows with the
same metrics (:mod:`sklearn_xnn.metrics`). A transformer without a head gets the same
least-squares linear head on its training embedding (:func:`~sklearn_xnn.baselines.make_headed`),
so faithfulness is compared on equal footing.
"""

import re
import time
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import NMF, PCA
from sklearn.utils import get_tags

from sklearn_xnn import metrics
from sklearn_xnn._srae import SRAEExplainer
from sklearn_xnn.baselines import RandomNonnegativeProjection, make_headed
from sklearn_xnn.metrics._adapter import (
    components_of,
    contributions_of,
    embed,
    reconstruct,
    transformer_part,
)

#: Columns of :func:`compare_explainers`, in order.
COLUMNS = [
    "faithfulness_r2",
    "rmse",
    "top1_agreement",
    "kl",
    "reconstruction_r2",
    "explained_variance",
    "mean_active",
    "n_significant",
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

#: The short, main column set: what :func:`format_comparison` and the HTML report show
#: first (columns absent from a table are left out). The two ``reconstruction_*`` columns
#: come from :func:`sklearn_xnn.torch.reconstruction_faithfulness` when a caller adds them.
DEFAULT_COLUMNS = [
    "faithfulness_r2",
    "reconstruction_faithfulness_r2",
    "top1_agreement",
    "reconstruction_top1_agreement",
    "reconstruction_r2",
    "mean_active",
    "n_significant",
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


#: Every column of :data:`COLUMNS` (and the two ``reconstruction_*`` ones) described.
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
        "significant per decision",
        "lower",
        "Mean number of positive contributions needed to cover 90% of the positive score.",
        "more concise",
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
    "note": ColumnInfo("note", None, "Warnings raised during fit, or why a method was skipped."),
}


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
    """``fn(*args)``, or NaN when an input is missing or the metric is undefined (1 logit)."""
    if any(a is None for a in args):
        return np.nan
    try:
        return fn(*args)
    except ValueError:
        return np.nan


def evaluate_explainer(estimator, Z, y, *, Z_train=None, codes=None):
    """Every explanation metric of a fitted explainer on the rows ``(Z, y)``.

    Parameters
    ----------
    estimator : fitted estimator
        :class:`~sklearn_xnn.SRAEExplainer`, a headed pipeline, a predictor that transforms
        (PLS) or a bare transformer (faithfulness columns are then NaN).
    Z : array-like of shape (n_samples, n_features)
        Held-out activations.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Their logits.
    Z_train : array-like of shape (n_train, n_features), default=None
        Training rows, used to read a predictor's linear head off ``predict`` (PLS); ``Z``
        when None.
    codes : array-like of shape (n_samples, n_concepts), default=None
        Planted concept codes of ``Z``'s rows, for ``concept_recovery``.

    Returns
    -------
    row : dict
        The metric columns of :data:`COLUMNS` except ``fit_time_s`` and ``note``, and the
        rebuilt logits under ``"y_pred"`` (None without a head).

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
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    X = embed(estimator, Z)
    y_pred = np.asarray(estimator.predict(Z), np.float64) if hasattr(estimator, "predict") else None
    S = contributions_of(estimator, Z, X, Z_train) if y_pred is not None else None
    Z_hat = reconstruct(estimator, X)
    G = components_of(estimator)
    cos = metrics.component_cosines(G) if G is not None else (np.nan, np.nan)
    return {
        "faithfulness_r2": _or_nan(metrics.faithfulness_r2, y, y_pred),
        "rmse": _or_nan(metrics.faithfulness_rmse, y, y_pred),
        "top1_agreement": _or_nan(metrics.top1_agreement, y, y_pred),
        "kl": _or_nan(metrics.softmax_kl, y, y_pred),
        "reconstruction_r2": _or_nan(metrics.reconstruction_r2, Z, Z_hat),
        "explained_variance": _or_nan(metrics.reconstruction_explained_variance, Z, Z_hat),
        "mean_active": metrics.mean_active(X),
        "n_significant": _or_nan(metrics.n_significant, S),
        "pullaway_samples": _or_nan(lambda s: metrics.pullaway(s, over="samples"), S),
        "pullaway_components": _or_nan(lambda s: metrics.pullaway(s, over="components"), S),
        "contribution_corr": _or_nan(metrics.mean_abs_correlation, S),
        "component_max_cos": cos[0],
        "component_mean_cos": cos[1],
        "dead_fraction": metrics.dead_fraction(X),
        "concept_recovery": _or_nan(metrics.concept_recovery, X, codes),
        "n_components": X.shape[1],
        "y_pred": y_pred,
    }


def _skip_reason(estimator, Z_train):
    """Why ``estimator`` cannot be fitted on ``Z_train`` (e.g. NMF on signed data), or None."""
    part = transformer_part(estimator)
    steps = part.steps if hasattr(part, "steps") else [(None, part)]
    for _, step in steps:
        if get_tags(step).input_tags.positive_only and np.min(np.asarray(Z_train)) < 0:
            return (
                f"skipped: {type(step).__name__} needs non-negative activations and Z has "
                "negative values (shift or clip Z first if that is meaningful)"
            )
    return None


def _fit_measure(estimator, Z_train, y_train, Z_test, y_test, codes_test):
    """Fit a clone (headed when it has no predict) and measure it: ``(row, y_pred, fitted)``."""
    est = clone(estimator)
    est = est if hasattr(est, "predict") else make_headed(est)
    reason = _skip_reason(est, Z_train)
    if reason is not None:
        return {"note": reason}, None, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        est.fit(Z_train, y_train)
        fit_time = time.perf_counter() - start
        row = evaluate_explainer(est, Z_test, y_test, Z_train=Z_train, codes=codes_test)
    kinds = sorted({w.category.__name__ for w in caught if issubclass(w.category, UserWarning)})
    row.update(fit_time_s=fit_time, note="; ".join(kinds))
    return row, row.pop("y_pred"), est


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
    columns; one logit -> ``top1_agreement`` and ``kl``. A method that requires
    non-negative input (NMF, by its sklearn tags) is *skipped* on signed activations: its
    row is NaN and ``note`` says why (we do not shift silently, because a shift changes
    what the factors mean). ``note`` also lists warning classes raised during ``fit``
    (e.g. ``ConvergenceWarning`` for dead SRAE x-features).

    Parameters
    ----------
    explainers : dict of str to estimator
        Unfitted estimators (cloned before fitting), e.g. :func:`default_explainers`.
    Z_train, Z_test : array-like of shape (n_train, n_features), (n_test, n_features)
        Activations.
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
        A :class:`pandas.DataFrame` that prints readably (:func:`format_comparison`),
        indexed by name, with the columns of :data:`COLUMNS`: faithfulness (``faithfulness_r2``,
        ``rmse``, ``top1_agreement``, ``kl``), reconstruction (``reconstruction_r2``,
        ``explained_variance``), sparsity (``mean_active``, ``n_significant``),
        orthogonality (``pullaway_samples``, ``pullaway_components``,
        ``contribution_corr``, ``component_max_cos``, ``component_mean_cos``), health
        (``dead_fraction``), ``concept_recovery``, ``n_components``, ``fit_time_s``, ``note``.
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
    # One dtype for every method: float32 activations (what torch gives) would otherwise
    # meet float64 inside methods that refuse mixed dtypes (NMF).
    Z_train, Z_test = (np.asarray(a, dtype=np.float64) for a in (Z_train, Z_test))
    results = [
        _fit_measure(est, Z_train, y_train, Z_test, y_test, codes_test)
        for est in explainers.values()
    ]
    table = _frame([r[0] for r in results], list(explainers))
    if return_fitted:
        return table, dict(zip(explainers, (r[2] for r in results), strict=True))
    return table


def compare_per_output(
    explainers, Z_train, y_train, Z_test, y_test, *, outputs=None, codes_test=None
):
    """The paper's setting: one explainer per logit (``y`` 1-D), summarised per method.

    For each output ``c`` in ``outputs`` a clone of every explainer is fitted on
    ``y_train[:, c]`` and measured on ``y_test[:, c]`` as in :func:`compare_explainers`.
    Each method's row is the mean over outputs of the per-output metrics (so
    ``faithfulness_r2`` is the uniform average of per-logit R²), except ``top1_agreement``
    and ``kl``, computed on the stacked per-logit rebuilds when ``outputs`` covers every
    logit (else NaN), and ``fit_time_s``, the total over outputs.

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
        Same columns as :func:`compare_explainers`.

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
    outputs = list(range(y_train.shape[1])) if outputs is None else list(outputs)
    rows = []
    for est in explainers.values():
        per, preds = [], []
        for c in outputs:
            row, y_pred, _ = _fit_measure(
                est, Z_train, y_train[:, c], Z_test, y_test[:, c], codes_test
            )
            per.append(row)
            preds.append(y_pred)
        frame = pd.DataFrame(per).reindex(columns=COLUMNS)
        row = frame.drop(columns="note").mean(numeric_only=True).to_dict()
        row["fit_time_s"] = frame["fit_time_s"].sum()
        notes = sorted({n for n in frame["note"].dropna() if n})
        row["note"] = "; ".join(notes)
        full = sorted(outputs) == list(range(y_test.shape[1])) and all(p is not None for p in preds)
        stacked = np.column_stack(preds)[:, np.argsort(outputs)] if full else None
        row["top1_agreement"] = _or_nan(metrics.top1_agreement, y_test if full else None, stacked)
        row["kl"] = _or_nan(metrics.softmax_kl, y_test if full else None, stacked)
        rows.append(row)
    return _frame(rows, list(explainers))


# ----------------------------------------------------------------- reading the table
def _fmt(value):
    """A metric at the precision shown everywhere (3 significant digits); '' for NaN.

    Magnitudes below 1e-12 (round-off, e.g. PCA's component cosines) are shown as 0.
    """
    if not np.isfinite(value):
        return ""
    return "0" if abs(value) < 1e-12 else f"{value:.3g}"


def _scores(table, column):
    """The column as floats (NaN where missing or not numeric)."""
    return pd.to_numeric(table[column], errors="coerce").astype(np.float64)


def best_rows(table, column):
    """The explainers with the best value of a scored column (ties at the shown precision).

    Parameters
    ----------
    table : pandas.DataFrame
        A comparison, one row per explainer.
    column : str
        A column of :data:`COLUMN_INFO` whose ``better`` is ``"higher"`` or ``"lower"``.

    Returns
    -------
    names : list of str
        Row labels, in table order; empty when the column is unscored or all NaN.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_xnn.compare import best_rows
    >>> t = pd.DataFrame({"rmse": [0.5, 0.2, 0.2001]}, index=["SRAE", "PCA", "PLS"])
    >>> best_rows(t, "rmse")
    ['PCA', 'PLS']
    """
    info = COLUMN_INFO.get(column)
    if info is None or info.better is None or column not in table.columns:
        return []
    values = _scores(table, column)
    if values.isna().all():
        return []
    best = values.max() if info.better == "higher" else values.min()
    return [name for name, v in values.items() if _fmt(v) == _fmt(best)]


def _beats(value, other, better):
    """``other`` is better than ``value`` and the difference shows at 3 digits."""
    if not (np.isfinite(value) and np.isfinite(other)) or _fmt(value) == _fmt(other):
        return False
    return other > value if better == "higher" else other < value


def _join(words):
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def describe_losses(table, reference="SRAE", columns=None):
    """One plain sentence per metric on which another explainer beats ``reference``.

    A method beats the reference on a column when its value is better (in the direction
    of :data:`COLUMN_INFO`) and differs at 3 significant digits. The sentence names
    every such method, best first, with both values.

    Parameters
    ----------
    table : pandas.DataFrame
        A comparison, one row per explainer (e.g. from :func:`compare_explainers`).
    reference : str, default="SRAE"
        The row the others are measured against.
    columns : list of str, default=None
        Columns to read; every scored column of ``table`` when None.

    Returns
    -------
    sentences : list of str
        In column order; empty when ``reference`` wins or ties everywhere or is absent.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_xnn.compare import describe_losses
    >>> t = pd.DataFrame({"faithfulness_r2": [0.93, 0.95, 0.61],
    ...                   "top1_agreement": [0.904, 0.919, 0.95]},
    ...                  index=["SRAE", "PLS", "PCA"])
    >>> print("\\n".join(describe_losses(t)))  # doctest: +NORMALIZE_WHITESPACE
    PLS is more faithful than SRAE on these data: SRAE's faithfulness R² 0.93 is below
    PLS's 0.95.
    PCA and PLS are closer to the network's decisions than SRAE on these data: SRAE's
    top-1 agreement 0.904 is below PCA's 0.95 and PLS's 0.919.
    """
    if reference not in table.index:
        return []
    columns = list(table.columns) if columns is None else list(columns)
    sentences = []
    for column in columns:
        info = COLUMN_INFO.get(column)
        if info is None or info.better is None or column not in table.columns:
            continue
        values = _scores(table, column)
        ours = values[reference]
        winners = [n for n, v in values.items() if n != reference and _beats(ours, v, info.better)]
        if not winners:
            continue
        winners.sort(key=lambda n: -values[n] if info.better == "higher" else values[n])
        side = "below" if info.better == "higher" else "above"
        # a unit in the label ("fit time (s)") goes after the numbers: "fit time 1.3 s"
        label, unit = re.fullmatch(r"(.*?)(?: \((\w+)\))?", info.label).groups()
        unit = f" {unit}" if unit else ""
        numbers = _join([f"{n}'s {_fmt(values[n])}{unit}" for n in winners])
        detail = f"{reference}'s {label} {_fmt(ours)}{unit} is {side} {numbers}"
        if info.better == "lower":
            detail += " (lower is better)"
        if info.verdict:
            verb = "is" if len(winners) == 1 else "are"
            sentences.append(
                f"{_join(winners)} {verb} {info.verdict} than {reference} on these data: {detail}."
            )
        else:
            sentences.append(detail[0].upper() + detail[1:] + ".")
    return sentences


def _shown_columns(table, columns):
    """Requested columns that hold a number somewhere (``note`` is shown apart)."""
    if columns is None:
        wanted = [c for c in DEFAULT_COLUMNS if c in table.columns]
    elif isinstance(columns, str) and columns == "all":
        wanted = list(table.columns)
    else:
        wanted = list(columns)
        missing = [c for c in wanted if c not in table.columns]
        if missing:
            raise ValueError(f"columns {missing} are not in the comparison table.")
    return [c for c in wanted if c != "note" and _scores(table, c).notna().any()]


def format_comparison(table, columns=None):
    """The comparison as readable text: one line per metric, one column per explainer.

    Values have 3 significant digits, ``*`` marks the best explainer of each scored
    metric, ``better`` says which direction is better, and the ``note`` column (skipped
    methods, warnings) is written below. Metrics that are empty for every explainer are
    left out.

    Parameters
    ----------
    table : pandas.DataFrame
        A comparison, one row per explainer (e.g. from :func:`compare_explainers`).
    columns : list of str or "all", default=None
        Metrics to show; None shows :data:`DEFAULT_COLUMNS`, ``"all"`` every column.

    Returns
    -------
    text : str
        No trailing newline.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_xnn.compare import format_comparison
    >>> t = pd.DataFrame({"faithfulness_r2": [0.931, 0.95], "rmse": [0.4, 0.3],
    ...                   "note": ["", "a warning"]}, index=["SRAE", "PLS"])
    >>> print(format_comparison(t, columns="all"))
    metric (* best)   SRAE    PLS   better
    faithfulness_r2  0.931   0.95*  higher
    rmse               0.4    0.3*  lower
    note: PLS: a warning
    """
    shown = _shown_columns(table, columns)
    lines = [["metric (* best)", *(f"{n} " for n in table.index), "better"]]
    for column in shown:
        best = set(best_rows(table, column))
        marks = [_fmt(v) + ("*" if n in best else " ") for n, v in _scores(table, column).items()]
        info = COLUMN_INFO.get(column)
        lines.append([column, *marks, (info.better if info else None) or ""])
    # every value carries one trailing character (a star or a space): digits align
    widths = [max(len(row[j]) for row in lines) for j in range(len(lines[0]))]
    text = [
        "  ".join(
            [row[0].ljust(widths[0])]
            + [cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:-1], strict=True)]
            + [row[-1]]
        ).rstrip()
        for row in lines
    ]
    if "note" in table.columns:
        notes = [f"{n}: {v}" for n, v in table["note"].items() if isinstance(v, str) and v]
        text += [f"note: {n}" for n in notes]
    hidden = [c for c in table.columns if c not in shown and c != "note"]
    if columns is None and hidden:
        text.append(f"({len(hidden)} more columns: format_comparison(table, columns='all'))")
    return "\n".join(text)


class ComparisonTable(pd.DataFrame):
    """A :class:`pandas.DataFrame` of explainer metrics that prints readably.

    ``print(table)`` and ``repr(table)`` give :func:`format_comparison` (the main
    columns); everything else is the DataFrame (indexing, ``to_csv``, ``round``; derived
    frames are plain DataFrames).
    """

    @property
    def _constructor(self):
        return pd.DataFrame

    def to_text(self, columns=None):
        """:func:`format_comparison` of this table; ``columns="all"`` for every metric."""
        return format_comparison(self, columns)

    def __repr__(self):
        if self.empty:
            return super().__repr__()
        return format_comparison(self)
