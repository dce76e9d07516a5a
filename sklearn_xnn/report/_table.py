"""The comparison table of the report: main columns, definitions, losses in words, all metrics.

The main table fits a laptop screen (short headers that wrap, no scroll box); every column
is defined twice, in a header tooltip and in a legend under the table; the best value of
each column is marked, and every metric on which another explainer beats the reference
(SRAE) is said in a sentence (:func:`sklearn_xnn.compare.describe_losses`).
"""

import html

from sklearn_xnn.compare import COLUMN_INFO, ColumnInfo, best_rows, describe_losses
from sklearn_xnn.compare._format import _fmt, _scores, _shown_columns, check_unique_names

ARROW = {"higher": "\u2191", "lower": "\u2193", None: ""}

TABLE_CSS = """
table.comparison { border-collapse: collapse; font-size: 0.85em;
       font-variant-numeric: tabular-nums; }
table.comparison th, table.comparison td { border: 1px solid #ccc; padding: 3px 7px;
       text-align: right; }
table.comparison thead th { background: #f0f0f0; vertical-align: bottom; font-weight: 600; }
table.comparison tbody th { text-align: left; background: #fafafa; }
table.comparison td.best { font-weight: 700; background: #dff0d8; }
table.comparison tr.reference th, table.comparison tr.reference td:not(.best) {
       background: #fff8e1; }
table.comparison td.text { text-align: left; font-size: 0.95em; color: #444; }
table.comparison td.na { color: #999; }
span.dir { color: #666; }
table.legend { border-collapse: collapse; font-size: 0.8em; margin-top: 0.6em; }
table.legend td { padding: 1px 8px 1px 0; vertical-align: top; }
ul.items { font-size: 0.9em; } ul.items li { margin: 0.2em 0; }
p.key { font-size: 0.8em; color: #444; margin: 0.4em 0; }
"""


def _info(column):
    return COLUMN_INFO.get(column, ColumnInfo(column, None, "Not described."))


def _tooltip(info):
    side = {"higher": " Higher is better.", "lower": " Lower is better.", None: ""}
    return html.escape(info.meaning + side[info.better], quote=True)


def _header(column):
    info = _info(column)
    arrow = f' <span class="dir">{ARROW[info.better]}</span>' if info.better else ""
    label = html.escape(info.label).replace("-", "\u2011")  # no break inside "x-features"
    return f'<th scope="col" title="{_tooltip(info)}">{label}{arrow}</th>'


def _cell(value, best):
    if not _fmt(value):
        return '<td class="na" title="not defined for this explainer">\u2013</td>'
    cls = ' class="best" title="best in this column"' if best else ""
    return f"<td{cls}>{_fmt(value)}</td>"


def _row_class(name, reference):
    return ' class="reference"' if name == reference else ""


def main_table(table, columns, reference):
    """Explainers as rows, the main metrics as columns (short headers with tooltips)."""
    best = {c: set(best_rows(table, c)) for c in columns}
    head = "".join(_header(c) for c in columns)
    rows = []
    for name in table.index:
        cells = "".join(_cell(_scores(table, c)[name], name in best[c]) for c in columns)
        rows.append(
            f'<tr{_row_class(name, reference)}><th scope="row">{html.escape(str(name))}</th>'
            f"{cells}</tr>"
        )
    return (
        '<table class="comparison main"><thead><tr><th scope="col">explainer</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def legend(columns):
    """One line per column: its header, its name in the table, the better direction, meaning."""
    rows = []
    for column in columns:
        info = _info(column)
        better = f"{ARROW[info.better]} {info.better} is better" if info.better else ""
        rows.append(
            f"<tr><td><b>{html.escape(info.label)}</b></td><td><code>{html.escape(column)}"
            f"</code></td><td>{better}</td><td>{html.escape(info.meaning)}</td></tr>"
        )
    return f'<table class="legend">{"".join(rows)}</table>'


def full_table(table, columns):
    """Every metric as a row, explainers as columns (fits any width), with definitions."""
    names = list(table.index)
    head = "".join(f'<th scope="col">{html.escape(str(n))}</th>' for n in names)
    rows = []
    for column in columns:
        info = _info(column)
        best = set(best_rows(table, column))
        values = _scores(table, column)
        cells = "".join(_cell(values[n], n in best) for n in names)
        rows.append(
            f'<tr><th scope="row" title="{_tooltip(info)}">{html.escape(info.label)} '
            f"<code>{html.escape(column)}</code></th>{cells}"
            f'<td class="text">{ARROW[info.better]} {info.better or ""}</td>'
            f'<td class="text">{html.escape(info.meaning)}</td></tr>'
        )
    return (
        '<table class="comparison full"><thead><tr><th scope="col">metric</th>'
        f'{head}<th scope="col">better</th><th scope="col">what it measures</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _notes(table):
    if "note" not in table.columns:
        return ""
    items = [
        f"<li><b>{html.escape(str(n))}</b>: {html.escape(v)}</li>"
        for n, v in table["note"].items()
        if isinstance(v, str) and v
    ]
    return f'<ul class="items">{"".join(items)}</ul>' if items else ""


def _losses(table, reference):
    if reference not in table.index:
        return ""
    sentences = describe_losses(table, reference)
    title = f"<h3>Where {html.escape(reference)} loses</h3>"
    if not sentences:
        return title + (
            f'<p class="key">{html.escape(reference)} is best or tied on every metric of '
            "this table.</p>"
        )
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sentences)
    return title + f'<ul class="items">{items}</ul>'


def comparison_html(table, reference="SRAE"):
    """The table section: main table, key, legend, notes, losses, all metrics folded.

    Raises a ValueError when the table's explainer names (its index) repeat.
    """
    check_unique_names(table)
    main = _shown_columns(table, None) or _shown_columns(table, "all")
    every = _shown_columns(table, "all")
    key = (
        '<p class="key">Bold on green: the best explainer in each column (ties at the '
        "shown precision). \u2191 higher is better, \u2193 lower is better; \u2013: not "
        "defined for that explainer; hover a header for its definition."
        + (f" The highlighted row is {html.escape(reference)}." if reference in table.index else "")
        + "</p>"
    )
    notes = _notes(table)
    return (
        main_table(table, main, reference)
        + key
        + legend(main)
        + (f"<h3>Notes</h3>{notes}" if notes else "")
        + _losses(table, reference)
        + f"<details><summary>All metrics ({len(every)})</summary>"
        + full_table(table, every)
        + "</details>"
    )
