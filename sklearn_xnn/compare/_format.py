"""Reading a comparison table: the best rows, the losses in words, the table as text."""

import re

import numpy as np
import pandas as pd

from sklearn_xnn.compare._columns import COLUMN_INFO, DEFAULT_COLUMNS


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


def check_unique_names(table):
    """Refuse a table whose explainer names (its index) repeat: rows are read by name.

    Raises
    ------
    ValueError
        Naming the repeated labels, e.g. after ``pd.concat`` of two comparisons that
        both have a ``"PCA"`` row.
    """
    repeated = table.index[table.index.duplicated()].unique()
    if len(repeated):
        raise ValueError(
            f"the comparison table repeats the explainer names {list(repeated)}; every row "
            "needs its own name (e.g. 'PCA-3' and 'PCA-6': rename the rows, or name the "
            "explainers so in compare_explainers)."
        )


#: How far below the best ``top_explained`` a row may be and still be starred for its
#: ``n_significant`` (an input with no positive contribution counts 0 there).
TOP_EXPLAINED_MARGIN = 0.05


def _eligible(table, column, values):
    """``values`` restricted to the rows that may be best on ``column``.

    For ``n_significant``, rows whose ``top_explained`` is at least the best
    ``top_explained`` minus :data:`TOP_EXPLAINED_MARGIN` (all rows when the table has no
    ``top_explained`` values).
    """
    if column != "n_significant" or "top_explained" not in table.columns:
        return values
    explained = _scores(table, "top_explained")
    if explained.isna().all():
        return values
    return values[explained >= explained.max() - TOP_EXPLAINED_MARGIN]


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

    Raises
    ------
    ValueError
        When the table's explainer names (its index) repeat.

    Notes
    -----
    ``n_significant`` is lower when fewer inputs have any positive contribution (such an
    input counts 0), so only the rows whose ``top_explained`` is at least the best
    ``top_explained`` minus 0.05 (:data:`TOP_EXPLAINED_MARGIN`) can be best on it.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_xnn.compare import best_rows
    >>> t = pd.DataFrame({"rmse": [0.5, 0.2, 0.2001]}, index=["SRAE", "PCA", "PLS"])
    >>> best_rows(t, "rmse")
    ['PCA', 'PLS']
    """
    check_unique_names(table)
    info = COLUMN_INFO.get(column)
    if info is None or info.better is None or column not in table.columns:
        return []
    values = _eligible(table, column, _scores(table, column))
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
    every such method, best first, with both values. A method that is more concise
    (lower ``n_significant``) but explains fewer decisions (lower ``top_explained``, at
    3 digits) than the reference is named with that second number too: an input with no
    positive contribution counts 0 in ``n_significant``.

    Parameters
    ----------
    table : pandas.DataFrame
        A comparison, one row per explainer (e.g. from
        :func:`~sklearn_xnn.compare.compare_explainers`).
    reference : str, default="SRAE"
        The row the others are measured against.
    columns : list of str, default=None
        Columns to read; every scored column of ``table`` when None.

    Returns
    -------
    sentences : list of str
        In column order; empty when ``reference`` wins or ties everywhere or is absent.

    Raises
    ------
    ValueError
        When the table's explainer names (its index) repeat.

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
    check_unique_names(table)
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
        if column == "n_significant":
            detail += _fewer_decisions(table, reference, winners)
        if info.verdict:
            verb = "is" if len(winners) == 1 else "are"
            sentences.append(
                f"{_join(winners)} {verb} {info.verdict} than {reference} on these data: {detail}."
            )
        else:
            sentences.append(detail[0].upper() + detail[1:] + ".")
    return sentences


def _fewer_decisions(table, reference, winners):
    """The clause saying which of ``winners`` explain fewer decisions than ``reference``."""
    if "top_explained" not in table.columns:
        return ""
    explained = _scores(table, "top_explained")
    fewer = [n for n in winners if _beats(explained[n], explained[reference], "higher")]
    if not fewer:
        return ""
    numbers = _join([f"{n}'s {_fmt(explained[n])}" for n in fewer])
    return (
        f", but {_join(fewer)} explain{'s' if len(fewer) == 1 else ''} fewer decisions "
        f"(decisions explained: {numbers}, {reference}'s {_fmt(explained[reference])}; an "
        "input with no positive contribution counts 0 here)"
    )


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
    metric (:func:`best_rows`), ``better`` says which direction is better, and the
    ``note`` column (skipped methods, warnings) is written below. Metrics that are empty
    for every explainer are left out; with the default ``columns``, the last line counts
    the other, non-empty metrics that ``columns="all"`` adds.

    Parameters
    ----------
    table : pandas.DataFrame
        A comparison, one row per explainer (e.g. from
        :func:`~sklearn_xnn.compare.compare_explainers`).
    columns : list of str or "all", default=None
        Metrics to show; None shows :data:`~sklearn_xnn.compare.DEFAULT_COLUMNS`,
        ``"all"`` every column.

    Returns
    -------
    text : str
        No trailing newline.

    Raises
    ------
    ValueError
        When the table's explainer names (its index) repeat.

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
    check_unique_names(table)
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
    text += _curve_lines(table)
    hidden = [c for c in _shown_columns(table, "all") if c not in shown]
    if columns is None and hidden:
        text.append(f"({len(hidden)} more columns: format_comparison(table, columns='all'))")
    return "\n".join(text)


def curve_frame(table):
    """``table``'s :func:`k_curve` as a DataFrame indexed by K (None when it has none)."""
    curve = getattr(table, "attrs", {}).get("k_curve")
    return None if curve is None else pd.DataFrame(curve).set_index("K")


def _curve_lines(table, n=10):
    """The first ``n`` values of ``table.attrs["k_curve"]`` (:func:`k_curve`), if any."""
    curve = curve_frame(table)
    if curve is None or len(curve) == 0:
        return []
    head = curve.iloc[:n]
    names = {
        "linear_bound_r2": "rank-K linear bound R²",
        "pca_explained_variance": "PCA explained variance",
    }
    rows = [["K curve (training rows)", *(str(k) for k in head.index)]]
    rows += [[names.get(c, c), *(f"{v:.2f}" for v in head[c])] for c in head.columns]
    width = max(len(r[0]) for r in rows)
    return [r[0].ljust(width) + "".join(cell.rjust(6) for cell in r[1:]) for r in rows]


class ComparisonTable(pd.DataFrame):
    """A :class:`pandas.DataFrame` of explainer metrics that prints readably.

    ``print(table)`` and ``repr(table)`` give
    :func:`~sklearn_xnn.compare.format_comparison` (the main columns); everything else is
    the DataFrame (indexing, ``to_csv``, ``round``; derived frames are plain DataFrames).
    """

    @property
    def _constructor(self):
        return pd.DataFrame

    @property
    def k_curve(self):
        """The :func:`~sklearn_xnn.compare.k_curve` of the training rows (None for a
        table built by hand)."""
        return curve_frame(self)

    def to_text(self, columns=None):
        """:func:`~sklearn_xnn.compare.format_comparison` of this table;
        ``columns="all"`` for every metric."""
        return format_comparison(self, columns)

    def __repr__(self):
        if self.empty or not self.index.is_unique:  # repeated names: pandas' own text
            return super().__repr__()
        return format_comparison(self)
