"""A self-contained HTML report: the comparison table and the figures, embedded as base64."""

import base64
import html
import logging
from pathlib import Path

import numpy as np

from sklearn_xnn.compare import DEFAULT_COLUMNS
from sklearn_xnn.compare._format import curve_frame
from sklearn_xnn.report._figures import (
    bias_note,
    decomposition_figure,
    feature_names,
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


def _example_rows(predicted, n_examples):
    """One row per predicted output first (first occurrence), then the next rows in order."""
    chosen = []
    for c in np.unique(predicted):
        chosen.append(int(np.flatnonzero(predicted == c)[0]))
    taken = set(chosen)
    rest = [i for i in range(len(predicted)) if i not in taken]
    return sorted(chosen[:n_examples]) + rest[: max(0, n_examples - len(chosen))]


def _shown_outputs(predicted, n_outputs, limit=MAX_OUTPUTS_SHOWN):
    """Every output when there are at most ``limit``, else of the outputs predicted on the
    rows the ``limit`` predicted most often (ties to the lower index), in index order."""
    if n_outputs <= limit:
        return np.arange(n_outputs)
    counts = np.bincount(predicted, minlength=n_outputs)
    top = np.argsort(-counts, kind="stable")[:limit]
    return np.sort(top[counts[top] > 0])


def _output_summary_html(S, predicted, shown, output_names, names, n_features=3):
    """A table: for each shown output, how many rows it is predicted on and the x-features
    that carry its score there (largest mean contributions, positive ones only)."""
    rows = []
    for c in shown:
        mine = predicted == c
        if not mine.any():
            continue
        mean = S[mine].mean(0)
        top = [k for k in np.argsort(-mean, kind="stable")[:n_features] if mean[k] > 0]
        carried = ", ".join(f"{html.escape(names[k])} ({mean[k]:.2f})" for k in top) or "none"
        rows.append(
            f"<tr><th>{html.escape(str(output_names[c]))}</th><td>{int(mine.sum())}</td>"
            f'<td class="text">{carried}</td></tr>'
        )
    return (
        '<table class="comparison"><thead><tr><th scope="col">output</th>'
        '<th scope="col">rows predicted</th>'
        '<th scope="col">x-features carrying its score (mean contribution)</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def write_report(
    out_dir,
    table,
    *,
    explainer=None,
    Z=None,
    images=None,
    network=None,
    heatmap_method="excitation_backprop",
    output_names=None,
    n_examples=6,
    n_top=8,
    title="sklearn_xnn: explanation report",
    notes=(),
    reference="SRAE",
):
    """Write ``report.html`` (figures embedded) and the figures as PNGs into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed.
    table : pandas.DataFrame
        The comparison of explainers (one row per explainer), e.g. from
        :func:`sklearn_xnn.compare.compare_explainers`. The main columns
        (:data:`sklearn_xnn.compare.DEFAULT_COLUMNS`) come first, each defined in a legend
        and a header tooltip, the best value of each marked; every column is in a
        second, folded table. Columns empty for every explainer are left out.
    explainer : SRAEExplainer, optional
        Fitted explainer whose x-features are shown.
    Z : array-like of shape (n_samples, n_features), optional
        Activations (held-out rows) to illustrate; needed with ``explainer``.
    images : array-like of shape (n_samples, channels, height, width), optional
        The inputs behind ``Z`` (same rows): enables the top-activating inputs and the
        images next to the decompositions.
    network : ExplainedNetwork, optional
        Enables one heatmap per significant x-feature.
    heatmap_method : str, default="excitation_backprop"
        See :func:`sklearn_xnn.torch.xfeature_heatmaps`.
    output_names : list of str, optional
        Names of the outputs (classes). With more than :data:`MAX_OUTPUTS_SHOWN` outputs
        (a 1,000-class network) the head weights and the per-output summary show the
        outputs predicted most often on ``Z``.
    n_examples : int, default=6
        Inputs whose prediction is decomposed.
    n_top : int, default=8
        Top-activating inputs per x-feature.
    title : str
        Page title.
    notes : sequence of str
        Paragraphs shown under the table (data, settings, timings).
    reference : str, default="SRAE"
        The row of ``table`` that the others are measured against: it is highlighted and
        every metric on which another explainer beats it is said in a sentence
        (:func:`sklearn_xnn.compare.describe_losses`).

    Returns
    -------
    path : Path
        The HTML file.
    """
    report = _Report(out_dir, title)
    report.heading("Comparison of explainers (held-out rows)")
    report.raw(comparison_html(table, reference))
    for note in notes:
        report.paragraph(note)
    _curve_section(report, table)
    if explainer is not None:
        if Z is None:
            raise ValueError("write_report needs Z, the activations to illustrate, with explainer.")
        _explainer_sections(
            report,
            explainer,
            Z,
            images,
            network,
            heatmap_method,
            output_names,
            n_examples,
            n_top,
        )
    path = report.write()
    logger.info("report written to %s (%d figures)", path, len(report.pngs))
    return path


def _curve_section(report, table):
    """The K curve of a table from :func:`~sklearn_xnn.compare.compare_explainers`."""
    curve = curve_frame(table)
    if curve is None or len(curve) == 0:
        return
    ks = table["n_components"].dropna() if "n_components" in table.columns else []
    k = int(ks.iloc[0]) if len(ks) else None
    report.figure(
        k_curve_figure(curve, k),
        "k_curve",
        "How faithful K components can be (training rows): the R² of the best rank-K "
        "linear predictor of the logits, which no linear K-dimensional explanation beats, "
        "next to the variance PCA's K components explain.",
    )


def _top_activating_section(report, images, X, n_top, names):
    """Each x-feature's top-activating inputs (when there are ``images``); the images as
    an array (None without them)."""
    if images is None:
        return None
    images = np.asarray(images)
    report.figure(
        top_activating_figure(images, X, n_top, names),
        "top_activating",
        "Each x-feature's top-activating inputs; the number above an image is the "
        "x-feature's value on it.",
    )
    return images


def _explainer_sections(
    report, explainer, Z, images, network, method, output_names, n_examples, n_top
):
    X = explainer.transform(Z)  # Z as given: a data frame keeps its feature names
    K = X.shape[1]
    names = feature_names(explainer, K)
    report.heading("The explanation space")
    if getattr(explainer, "coef_", None) is None:  # fitted without logits: no head to show
        report.paragraph("The explainer was fitted without logits: it has no head to show.")
        _top_activating_section(report, images, X, n_top, names)
        return
    coef = np.atleast_2d(explainer.coef_)
    intercept = np.atleast_1d(explainer.intercept_)
    C = coef.shape[0]
    output_names = list(output_names) if output_names is not None else [str(c) for c in range(C)]
    if len(output_names) != C:
        raise ValueError(
            f"output_names has {len(output_names)} names but the explainer has {C} outputs."
        )
    predicted = np.asarray(explainer.predict(Z)).reshape(len(X), -1).argmax(1)
    S = np.asarray(explainer.contributions(Z, outputs="predicted"))  # (n, K): predicted output
    shown = _shown_outputs(predicted, C)
    which = "" if len(shown) == C else f" The {len(shown)} outputs predicted most often, of {C}."
    report.figure(
        head_weights_figure(coef[shown], [output_names[c] for c in shown], names),
        "head_weights",
        "Head weights W: how each x-feature moves each output (red +, blue -)." + which,
    )
    report.paragraph("What carries each output's score on the rows it is predicted on." + which)
    report.raw(_output_summary_html(S, predicted, shown, output_names, names))
    images = _top_activating_section(report, images, X, n_top, names)
    rows = _example_rows(predicted, n_examples)
    heatmaps = None
    if network is not None and images is not None:
        from sklearn_xnn.torch import xfeature_heatmaps

        heatmaps = xfeature_heatmaps(network, images[rows], method=method)
    report.heading("Predictions decomposed into x-feature contributions")
    report.paragraph(
        "Bars: each x-feature's contribution x_k * W_ck to the predicted output's score (red "
        "positive, blue negative) and the bias b_c as its own grey bar; together they sum "
        "to the score. Outlined bars are the significant x-features (the fewest positive "
        "contributions covering 90% of the positive score)"
        + (
            f"; each has a {method.replace('_', ' ')} heatmap (colour bar: share of the "
            "map's maximum)."
            if heatmaps is not None
            else "."
        )
    )
    for j, i in enumerate(rows):
        c = int(predicted[i])
        fig = decomposition_figure(
            S[i],
            intercept=float(intercept[c]),
            output_name=output_names[c],
            image=None if images is None else images[i],
            heatmaps=None if heatmaps is None else heatmaps[j],
            names=names,
        )
        score = S[i].sum() + intercept[c]
        caption = f"Held-out input {i}: predicted output {output_names[c]} (score {score:.2f})."
        note = bias_note(S[i], float(intercept[c]))
        report.figure(fig, f"decomposition_{j}", caption, note)
