"""A self-contained HTML report: the comparison table and the figures, embedded as base64."""

import base64
import html
import logging
from numbers import Integral
from pathlib import Path

import numpy as np

from sklearn_xnn.compare import DEFAULT_COLUMNS
from sklearn_xnn.compare._format import check_unique_names, curve_frame
from sklearn_xnn.report._explainer import linear_view
from sklearn_xnn.report._figures import (
    NONFINITE_Y,
    bias_note,
    checked_output_names,
    decomposition_figure,
    head_weights_figure,
    k_curve_figure,
    to_png,
    top_activating_figure,
)
from sklearn_xnn.report._table import TABLE_CSS, comparison_html

logger = logging.getLogger("sklearn_xnn")

_CSS = (
    """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; color: #222;
       max-width: 1200px; margin: 1.5em auto; padding: 0 1.5em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
h3 { font-size: 1em; margin: 1em 0 0.3em; }
figure { margin: 0.6em 0; } figcaption { font-size: 0.85em; color: #444; }
figcaption b { color: #8a4b00; }
img { max-width: 100%; } p.note { font-size: 0.85em; color: #444; }
summary { font-size: 0.9em; margin: 0.7em 0; cursor: pointer; }
"""
    + TABLE_CSS
)


class _Report:
    """Collects sections; writes each figure as a PNG and embeds it in the HTML."""

    def __init__(self, out_dir, title):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.parts = [f"<h1>{html.escape(title)}</h1>"]
        self.pngs = []

    def heading(self, text):
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text):
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def raw(self, markup):
        self.parts.append(markup)

    def figure(self, fig, name, caption, note=None):
        data = to_png(fig)
        path = self.out_dir / f"{name}.png"
        path.write_bytes(data)
        self.pngs.append(path)
        encoded = base64.b64encode(data).decode("ascii")
        self.parts.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}"
            + (f" <b>{html.escape(note)}</b>" if note else "")
            + "</figcaption></figure>"
        )

    def write(self, filename="report.html"):
        body = "\n".join(self.parts)
        text = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>sklearn_xnn report</title><style>{_CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n"
        )
        path = self.out_dir / filename
        path.write_text(text, encoding="utf-8")
        return path


#: Kept for callers that imported it from here; the definition is
#: :data:`sklearn_xnn.compare.DEFAULT_COLUMNS`.
MAIN_COLUMNS = DEFAULT_COLUMNS
#: The most outputs the head-weights figure and the per-output summary show.
MAX_OUTPUTS_SHOWN = 30


def _example_rows(decided, n_examples):
    """One row per decided output first (first occurrence), then the next rows in order."""
    chosen = []
    for c in np.unique(decided):
        chosen.append(int(np.flatnonzero(decided == c)[0]))
    taken = set(chosen)
    rest = [i for i in range(len(decided)) if i not in taken]
    return sorted(chosen[:n_examples]) + rest[: max(0, n_examples - len(chosen))]


def _shown_outputs(counts, limit=MAX_OUTPUTS_SHOWN):
    """Every output when there are at most ``limit``, else of the outputs decided on some
    row the ``limit`` decided most often (ties to the lower index), in index order."""
    if len(counts) <= limit:
        return np.arange(len(counts))
    top = np.argsort(-counts, kind="stable")[:limit]
    return np.sort(top[counts[top] > 0])


class _Decisions:
    """Which output each row's decomposition explains, and the words for it.

    With one output there is no decision to pick: every row explains that output. With
    more, given the network's logits ``y``: its decision, the argmax of ``y``. Without:
    the explainer's top rebuilt output, which can differ from the network's decision.
    """

    def __init__(self, rebuilt, y):
        self.top = rebuilt.argmax(1)
        self.by_network = y is not None
        self.single = rebuilt.shape[1] == 1
        self.logits = y
        self.output = y.argmax(1) if self.by_network else self.top
        self.counts = np.bincount(self.output, minlength=rebuilt.shape[1])
        self.caveat = ""
        self.heading = "Decisions decomposed into x-feature contributions"
        if self.single:
            self.rows = "rows"
            self.summary = "What carries the output's score (one output: every row)."
            self.what = (
                "The explainer has one output (one logit), so there is no decision to "
                "pick: each input's bars split that output's rebuilt score."
            )
            self.which = self.never = ""  # one output, on every row: never said
            self.heading = "The output decomposed into x-feature contributions"
        elif self.by_network:
            self.rows = "rows the network predicts it on"
            self.what = (
                "Each input's explained output is the network's decision (the argmax of "
                "its logits y)."
            )
            self.which = "by the network: the argmax of y"
            self.never = "never the network's decision"
        else:
            self.rows = "rows where it is the explainer's top rebuilt output"
            self.what = (
                "Each input's explained output is the explainer's top rebuilt output (the "
                "largest logit rebuilt from the x-features)."
            )
            self.caveat = (
                " The explainer's top rebuilt output can differ from the network's decision; "
                "pass y, the network's logits, to write_report to use its decisions."
            )
            self.which = "predicted here: the explainer's top rebuilt output"
            self.never = "never the explainer's top rebuilt output"
        if not self.single:
            self.summary = f"What carries each output's score on the {self.rows}."

    def caption(self, i, names, score):
        c, top = self.output[i], self.top[i]
        if self.single:
            logit = "" if self.logits is None else f"; the network's logit {self.logits[i, 0]:.2f}"
            return f"Held-out input {i}: output {names[0]} (rebuilt score {score:.2f}{logit})."
        if not self.by_network:
            return (
                f"Held-out input {i}: the explainer's top rebuilt output is {names[c]} "
                f"(rebuilt score {score:.2f})."
            )
        other = "" if c == top else f"; the explainer's top rebuilt output is {names[top]}"
        return (
            f"Held-out input {i}: the network predicts {names[c]} (its rebuilt score "
            f"{score:.2f}{other})."
        )

    def image_title(self, i, names):
        if self.single:
            return f"input\noutput {names[0]}"
        who = "network predicts" if self.by_network else "top rebuilt output"
        return f"input\n{who} {names[self.output[i]]}"


def _first_names(indices, output_names, n=10):
    names = ", ".join(str(output_names[c]) for c in indices[:n])
    return names + (", ..." if len(indices) > n else "")


def _omitted_html(decisions, shown, output_names):
    """A line naming the outputs the summary leaves out (a count and the first few)."""
    counts = decisions.counts
    never = np.flatnonzero(counts == 0)
    rest = np.setdiff1d(np.flatnonzero(counts), shown)
    parts = []
    if len(never):
        one = len(never) == 1
        parts.append(
            f"{len(never)} of the {len(counts)} outputs {'is' if one else 'are'} "
            f"{decisions.never} on these rows and {'has' if one else 'have'} no line "
            f"above: {_first_names(never, output_names)}."
        )
    if len(rest):
        least = int(counts[shown].min())  # the fewest rows of an output shown
        rows = (
            f"{least} row{'' if least == 1 else 's'} or fewer (the least frequent output "
            f"shown has {least}; ties go to the lower index)"
            if counts[rest].max() == least
            else "fewer rows than those shown"
        )
        one = len(rest) == 1
        parts.append(
            f"{len(rest)} more output{'' if one else 's'}, {'' if one else 'each '}on "
            f"{rows}, {'is' if one else 'are'} left out: {_first_names(rest, output_names)}."
        )
    return f'<p class="key">{html.escape(" ".join(parts))}</p>' if parts else ""


def _output_summary_html(view, decisions, shown, output_names, n_features=3):
    """A table: for each shown output decided on some row, on how many rows and the
    x-features that carry its score there (largest mean contributions, positive ones)."""
    rows = []
    for c in shown:
        mine = decisions.output == c
        if not mine.any():
            continue
        mean = view.X[mine].mean(0) * view.coef[c]
        top = [k for k in np.argsort(-mean, kind="stable")[:n_features] if mean[k] > 0]
        carried = ", ".join(f"{html.escape(view.names[k])} ({mean[k]:.2f})" for k in top)
        rows.append(
            f"<tr><th>{html.escape(str(output_names[c]))}</th><td>{int(mine.sum())}</td>"
            f'<td class="text">{carried or "none"}</td></tr>'
        )
    return (
        '<table class="comparison"><thead><tr><th scope="col">output</th>'
        f'<th scope="col">{html.escape(decisions.rows)}</th>'
        '<th scope="col">x-features carrying its score (mean contribution)</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>" + _omitted_html(decisions, shown, output_names)
    )


def write_report(
    out_dir,
    table,
    *,
    explainer=None,
    Z=None,
    y=None,
    images=None,
    network=None,
    heatmap_method="excitation_backprop",
    output_names=None,
    n_examples=6,
    n_top=8,
    title="sklearn_xnn: explanation report",
    notes=(),
    reference=None,
):
    """Write ``report.html`` (figures embedded) and the figures as PNGs into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed.
    table : pandas.DataFrame
        The comparison of explainers (one row per explainer, each with its own name), e.g.
        from :func:`sklearn_xnn.compare.compare_explainers`. The main columns
        (:data:`sklearn_xnn.compare.DEFAULT_COLUMNS`) come first, each defined in a legend
        and a header tooltip, the best value of each marked; every column is in a
        second, folded table. Columns empty for every explainer are left out. Its K
        curve, when it has one, is drawn with every distinct ``n_components`` marked.
    explainer : fitted estimator, optional
        Whose x-features are shown: an :class:`~sklearn_xnn.SRAEExplainer`, a headed
        pipeline (:func:`~sklearn_xnn.baselines.make_headed`, as
        :func:`~sklearn_xnn.compare.compare_explainers` returns for PCA or NMF with
        ``return_fitted=True``), a predictor that transforms (``PLSRegression``), a
        bare transformer (x-features only: no head, no decompositions), or a search over
        one of these fitted with ``refit=True`` (:class:`~sklearn_xnn.SRAEExplainerCV`,
        ``GridSearchCV``), whose refitted ``best_estimator_`` is shown. Others raise a
        TypeError.
    Z : array-like of shape (n_samples, n_features), optional
        Activations (held-out rows) to illustrate; needed with ``explainer``. A data
        frame is passed to the explainer as it is (as it was fitted, e.g. by
        :func:`~sklearn_xnn.compare.compare_explainers` on data frames).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), optional
        The network's logits for the rows of ``Z``. With them, each decomposition
        explains the network's decision (the argmax of ``y``) and the per-output summary
        counts the rows the network predicts each output on; without them, both use the
        explainer's top rebuilt output, which can differ from the network's decision
        (see the ``top1_agreement`` column), and the report says so. With one output
        there is no decision: every row explains that output. A data frame's columns (a
        series' name, for one output) name the outputs when ``output_names`` is None.
    images : array-like of shape (n_samples, channels, height, width), optional
        The inputs behind ``Z`` (one per row, in the same order): enables the
        top-activating inputs and the images next to the decompositions.
    network : ExplainedNetwork, optional
        Enables one heatmap per significant x-feature.
    heatmap_method : str, default="excitation_backprop"
        See :func:`sklearn_xnn.torch.xfeature_heatmaps`.
    output_names : list of str, optional
        Names of the outputs (classes), one per output. With more than 30 outputs (a
        1,000-class network) the head weights and the per-output summary show the
        outputs predicted most often on ``Z``; the summary names the outputs it leaves
        out.
    n_examples : int, default=6
        Inputs whose decision is decomposed; 0 leaves the decompositions out.
    n_top : int, default=8
        Top-activating inputs per x-feature, at least 1.
    title : str
        Page title.
    notes : sequence of str
        Paragraphs shown under the table (data, settings, timings).
    reference : str, default=None
        The row of ``table`` that the others are measured against: it is highlighted and
        every metric on which another explainer beats it is said in a sentence
        (:func:`sklearn_xnn.compare.describe_losses`). None: the ``"SRAE"`` row when the
        table has one, else no row.

    Returns
    -------
    path : Path
        The HTML file.

    Raises
    ------
    ValueError
        Before anything is written, when the table's explainer names repeat,
        ``reference`` is not one of them, ``n_examples`` or ``n_top`` is out of range,
        ``Z`` is missing, or ``y``, ``images`` or ``output_names`` do not match ``Z`` and
        the explainer's outputs.
    TypeError
        When ``explainer`` is none of the kinds above.
    """
    check_unique_names(table)
    reference = _checked_reference(table, reference)
    _checked_count(n_examples, "n_examples", 0, "inputs to decompose; 0 for none")
    _checked_count(n_top, "n_top", 1, "top-activating inputs per x-feature")
    explained = None
    if explainer is not None:
        explained = _checked_explainer_inputs(explainer, Z, y, images, output_names)
    report = _Report(out_dir, title)
    report.heading("Comparison of explainers (held-out rows)")
    report.raw(comparison_html(table, reference))
    for note in notes:
        report.paragraph(note)
    _curve_section(report, table)
    if explained is not None:
        _explainer_sections(report, *explained, network, heatmap_method, n_examples, n_top)
    path = report.write()
    logger.info("report written to %s (%d figures)", path, len(report.pngs))
    return path


def _checked_reference(table, reference):
    """``reference`` once it names a row of ``table``; None: ``"SRAE"`` when a row."""
    if reference is None:
        return "SRAE" if "SRAE" in table.index else None
    if reference not in table.index:
        raise ValueError(
            f"reference {reference!r} is not a row of the comparison table; valid: "
            f"{[str(n) for n in table.index]} (or None)."
        )
    return reference


def _checked_count(value, name, least, what):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
        raise ValueError(f"{name} must be an integer >= {least} ({what}), got {value!r}.")


def _checked_input_rows(a, n_rows, name):
    if len(a) != n_rows:
        raise ValueError(
            f"{name} must have one row per row of Z ({n_rows}, in the same order), got {len(a)}."
        )


def _names_of(y):
    """The output names a pandas ``y`` carries (a frame's columns, a series' name), or None."""
    if hasattr(y, "columns"):
        return list(y.columns)
    name = getattr(y, "name", None) if getattr(y, "ndim", 0) == 1 else None
    return None if name is None else [name]


def _checked_explainer_inputs(explainer, Z, y, images, output_names):
    """``(view, decisions, images, output_names)`` once they agree (decisions and names
    None without a head), or a ValueError saying what does not."""
    if Z is None:
        raise ValueError("write_report needs Z, the activations to illustrate, with explainer.")
    view = linear_view(explainer, Z, "write_report")
    n = len(view.X)
    if images is not None:
        images = np.asarray(images)
        _checked_input_rows(images, n, "images")
    if view.coef is None:  # no head: the x-features only
        return view, None, images, None
    C = view.coef.shape[0]
    names = checked_output_names(_names_of(y) if output_names is None else output_names, C)
    if y is not None:
        y = np.asarray(y, dtype=np.float64)
        y = y.reshape(len(y), -1) if y.ndim == 1 else y
        _checked_input_rows(y, n, "y")
        if y.ndim != 2 or y.shape[1] != C:
            raise ValueError(
                f"y must hold the network's {C} logits per row (the explainer has {C} "
                f"outputs), got shape {y.shape}."
            )
        if not np.isfinite(y).all():
            raise ValueError(NONFINITE_Y)
    decisions = _Decisions(view.X @ view.coef.T + view.intercept, y)
    return view, decisions, images, names


def _curve_section(report, table):
    """The K curve of a table from :func:`~sklearn_xnn.compare.compare_explainers`, every
    distinct K of the table marked."""
    curve = curve_frame(table)
    if curve is None or len(curve) == 0:
        return
    ks = table["n_components"].dropna() if "n_components" in table.columns else []
    report.figure(
        k_curve_figure(curve, list(ks) or None),
        "k_curve",
        "How faithful K components can be (training rows): the R² of the best rank-K "
        "linear predictor of the logits, which no linear K-dimensional explanation beats, "
        "next to the variance PCA's K components explain; dotted lines: the K compared.",
    )


def _top_activating_section(report, images, X, n_top, names):
    """Each x-feature's top-activating inputs (when there are ``images``)."""
    if images is None:
        return
    report.figure(
        top_activating_figure(images, X, n_top, names),
        "top_activating",
        "Each x-feature's top-activating inputs; the number above an image is the "
        "x-feature's value on it.",
    )


def _explainer_sections(
    report, view, decisions, images, output_names, network, method, n_examples, n_top
):
    report.heading("The explanation space")
    if decisions is None:  # no head to show
        report.paragraph(
            "The explainer has no linear head (fitted without logits, or a transformer "
            "alone): no head to show."
        )
        _top_activating_section(report, images, view.X, n_top, view.names)
        return
    C = view.coef.shape[0]
    shown = _shown_outputs(decisions.counts)
    which = (
        ""
        if len(shown) == C
        else f" The {len(shown)} outputs predicted most often, of {C} ({decisions.which})."
    )
    report.figure(
        head_weights_figure(view.coef[shown], [output_names[c] for c in shown], view.names),
        "head_weights",
        "Head weights W: how each x-feature moves each output (red +, blue -)." + which,
    )
    report.paragraph(decisions.summary + decisions.caveat + which)
    report.raw(_output_summary_html(view, decisions, shown, output_names))
    _top_activating_section(report, images, view.X, n_top, view.names)
    _decomposition_section(
        report, view, decisions, images, output_names, network, method, n_examples
    )


def _method_words(method):
    """A heatmap method in words: a name's words, or a captum class's (or object's) name."""
    if isinstance(method, str):
        return method.replace("_", " ")
    return getattr(method, "__name__", type(method).__name__)


def _with_article(words):
    return f"{'an' if words[:1].lower() in tuple('aeiou') else 'a'} {words}"


def _decomposition_section(
    report, view, decisions, images, output_names, network, method, n_examples
):
    rows = _example_rows(decisions.output, n_examples)
    if not rows:  # n_examples=0: no section
        return
    heatmaps = None
    if network is not None and images is not None:
        from sklearn_xnn.torch import xfeature_heatmaps

        heatmaps = xfeature_heatmaps(network, images[rows], method=method)
    report.heading(decisions.heading)
    report.paragraph(
        f"{decisions.what}{decisions.caveat} Bars: each x-feature's contribution x_k * W_ck "
        "to that output's rebuilt score (red positive, blue negative) and the bias b_c as "
        "its own grey bar; together they sum to the score. Outlined bars are the "
        "significant x-features (the fewest positive contributions covering 90% of the "
        "positive score)"
        + (
            f"; each has {_with_article(_method_words(method))} heatmap, titled with its "
            "contribution (colour bar: share of the map's maximum)."
            if heatmaps is not None
            else "."
        )
    )
    for j, i in enumerate(rows):
        c = int(decisions.output[i])
        S, b = view.X[i] * view.coef[c], float(view.intercept[c])
        fig = decomposition_figure(
            S,
            intercept=b,
            output_name=output_names[c],
            image=None if images is None else images[i],
            heatmaps=None if heatmaps is None else heatmaps[j],
            names=view.names,
            image_title=decisions.image_title(i, output_names),
        )
        caption = decisions.caption(i, output_names, S.sum() + b)
        report.figure(fig, f"decomposition_{j}", caption, bias_note(S, b))
