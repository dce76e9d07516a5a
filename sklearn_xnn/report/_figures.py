"""Figures of the report, drawn with matplotlib's Agg canvas (no pyplot, no global state).

Every figure function takes ``figure=None``: a new :class:`matplotlib.figure.Figure` is
drawn (what the HTML report embeds); pass ``figure=plt.figure()`` to draw into a pyplot
figure instead, e.g. to show it in a notebook or a sphinx-gallery page.
"""

import io
import textwrap
from collections import Counter
from numbers import Integral

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sklearn_xnn.metrics import n_significant
from sklearn_xnn.report._explainer import linear_view

POSITIVE, NEGATIVE, BIAS = "#d62728", "#1f77b4", "#8c8c8c"  # red / blue as in the paper
HEATMAP_CMAP = "jet"
FONT = 9
#: Height, in inches, kept above a figure's axes for its title.
TITLE_IN = 0.4
#: The most rows :func:`head_weights_figure` labels (and gives their own height).
MAX_LABELLED_ROWS = 60


def significant(contributions):
    """The significant x-features of one decision, largest contribution first.

    Their number is :func:`sklearn_xnn.metrics.n_significant` of this one row: the fewest
    positive contributions covering 90% of the positive score.
    """
    s = np.asarray(contributions, dtype=np.float64)
    n = int(n_significant(s[None, :]))
    return np.argsort(-s, kind="stable")[:n]


def bias_note(contributions, intercept):
    """A sentence when the bias carries most of the score, else None.

    "Most" means ``|b| > sum_k |s_k|``: the bias outweighs all contributions together.
    """
    s = np.asarray(contributions, dtype=np.float64)
    total = float(np.abs(s).sum())
    if abs(intercept) <= total:
        return None
    text = (
        f"Most of this score comes from the bias ({intercept:.2f}): the x-features' "
        f"contributions add up to {s.sum():.2f} ({total:.2f} in absolute value)"
    )
    if s.size and (s <= 0).all() and intercept > 0:
        text += " and every one of them is negative or zero"
    return text + "."


def to_png(fig):
    """PNG bytes of a matplotlib figure."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _figure(figure, size):
    if figure is None:
        return Figure(figsize=size)
    figure.set_size_inches(*size)
    return figure


def display_image(image):
    """(C, H, W) or (H, W) array -> what ``imshow`` takes, scaled to [0, 1]."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1)
    lo, hi = img.min(), img.max()
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def _show(ax, image, title=None):
    img = display_image(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=FONT)


def top_activating_figure(images, X, n_top=8, names=None, *, figure=None):
    """A row per x-feature with the inputs that activate it most, its value above each.

    Parameters
    ----------
    images : array-like of shape (n_samples, channels, height, width)
        The inputs behind the rows of ``X``.
    X : array-like of shape (n_samples, n_components)
        Their x-features.
    n_top : int, default=8
        Inputs per x-feature.
    names : list of str, default=None
        x-feature names; ``x0, x1, ...`` when None.
    figure : matplotlib Figure, default=None
        Drawn into (and resized) when given.

    Returns
    -------
    fig : matplotlib Figure
    """
    X = np.asarray(X)
    K = X.shape[1]
    names = names or [f"x{k}" for k in range(K)]
    fig = _figure(figure, (1.15 * n_top + 0.15 * max(map(len, names)) + 0.8, 1.3 * K + 0.7))
    axes = fig.subplots(K, n_top, squeeze=False)
    for k in range(K):
        order = np.argsort(-X[:, k], kind="stable")[:n_top]
        for j, ax in enumerate(axes[k]):
            if j < len(order) and X[order[j], k] > 0:
                _show(ax, images[order[j]], f"{X[order[j], k]:.3g}")
            else:
                ax.axis("off")
        axes[k, 0].set_ylabel(names[k], rotation=0, ha="right", va="center", fontsize=FONT + 1)
        axes[k, 0].axis("on")
        axes[k, 0].set_xticks([])
        axes[k, 0].set_yticks([])
    fig.suptitle(
        "Top-activating inputs of each x-feature (number above an image: the x-feature's "
        "value on it)",
        fontsize=FONT + 1,
        y=1 - 0.08 / fig.get_figheight(),  # in a fixed band at the top, whatever the height
        va="top",
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - TITLE_IN / fig.get_figheight()))
    return fig


def _bars(ax, contributions, intercept, marked, names, title):
    """x-feature contributions, a gap, then the bias as its own grey bar."""
    K = len(contributions)
    colors = [POSITIVE if c > 0 else NEGATIVE for c in contributions]
    pos = np.arange(K)
    bars = ax.bar(pos, contributions, color=colors)
    for k in marked:
        bars[k].set_edgecolor("black")
        bars[k].set_linewidth(1.5)
    ax.bar([K + 0.5], [intercept], color=BIAS, hatch="//", edgecolor="white")
    ax.axvline(K - 0.25, color="#bbbbbb", linewidth=0.8, linestyle=":")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([*pos, K + 0.5])
    long = len(names) > 6 or max(map(len, names)) > 4
    ax.set_xticklabels(
        [*names, "bias"],
        fontsize=FONT - 1,
        rotation=45 if long else 0,
        ha="right" if long else "center",
    )
    ax.tick_params(axis="y", labelsize=FONT - 1)
    ax.set_ylabel("contribution to the score", fontsize=FONT - 1)
    ax.set_title(title, fontsize=FONT)


def decomposition_figure(
    contributions,
    *,
    intercept,
    output_name,
    image=None,
    heatmaps=None,
    names=None,
    image_title=None,
    figure=None,
):
    """The score of one output split into x-feature contributions and the bias.

    Bars: contributions ``x_k W_ck`` (red positive, blue negative; significant
    x-features outlined: fewest positive ones covering 90% of the positive score) and
    the bias ``b_c`` as its own grey bar; they sum to the score. When the bias outweighs
    all contributions together the figure says so. With ``heatmaps``, one heatmap per
    significant x-feature overlaid on the image, with a colour bar, titled with the
    x-feature's name and its contribution (not its value ``x_k``).

    Parameters
    ----------
    contributions : array-like of shape (n_components,)
        One input's contributions to one output.
    intercept : float
        That output's bias.
    output_name : str
        Shown in the title.
    image : array-like of shape (channels, height, width), default=None
        The input, shown on the left.
    heatmaps : array-like of shape (n_components, height, width), default=None
        Its heatmap per x-feature (needs ``image``).
    names : list of str, default=None
        x-feature names; ``x0, x1, ...`` when None.
    image_title : str, default=None
        Title above the image, e.g. whose decision ``output_name`` is; ``"input"`` when
        None.
    figure : matplotlib Figure, default=None
        Drawn into (and resized) when given.

    Returns
    -------
    fig : matplotlib Figure
        At most 12 inches wide: the bars narrow to fit and the heatmaps wrap onto rows
        below them.
    """
    contributions = np.asarray(contributions, dtype=np.float64)
    K = contributions.size
    names = names or [f"x{k}" for k in range(K)]
    marked = significant(contributions)
    maps = list(marked) if heatmaps is not None and image is not None else []
    note = bias_note(contributions, intercept)
    score = contributions.sum() + intercept
    title = (
        f"{output_name}: score {score:.2f} = {contributions.sum():.2f} (x-features) "
        f"{'-' if intercept < 0 else '+'} {abs(intercept):.2f} (bias)"
    )
    # wide enough for the bars and for the title (about 0.07 inch a character, plus the
    # y-axis label)
    bars_width = max(3.2, 0.4 * (K + 2), 0.07 * len(title) + 0.6)
    fig, axes = _decomposition_axes(figure, image is not None, bars_width, len(maps))
    if image is not None:
        _show(axes[0], image, "input" if image_title is None else image_title)
    _bars(axes[int(image is not None)], contributions, intercept, marked, names, title)
    for ax, k in zip(axes[1 + (image is not None) :], maps, strict=False):
        _show(ax, image, f"{names[k]}\ncontribution {contributions[k]:.2f}")
        hm = np.asarray(heatmaps[k], dtype=np.float64)
        top = hm.max()
        ax.imshow(
            hm / top if top > 0 else np.zeros_like(hm),
            cmap=HEATMAP_CMAP,
            alpha=0.5,
            vmin=0,
            vmax=1,
            interpolation="bilinear",
        )
    if maps:
        bar = fig.colorbar(
            ScalarMappable(Normalize(0, 1), cmap=HEATMAP_CMAP), cax=axes[-1], alpha=0.5
        )
        bar.set_label("evidence (share of\nthe map's max)", fontsize=FONT - 1)
        bar.ax.tick_params(labelsize=FONT - 1)
    if note:
        lines = textwrap.wrap(note, width=int(fig.get_figwidth() * 14))
        fig.set_figheight(fig.get_figheight() + 0.18 * len(lines))
        fig.supxlabel("\n".join(lines), x=0.01, ha="left", fontsize=FONT, color="#8a4b00")
    return fig


#: Widest figure, in inches (about a laptop page): wider bars are narrowed to fit and the
#: heatmaps wrap onto rows below the bars.
MAX_WIDTH_IN = 12.0
IMAGE_IN, BAR_H_IN, MAP_H_IN, PAD_IN, COLOUR_BAR_IN = 1.9, 3.2, 2.5, 0.35, 0.12


def _row_width(row):
    return sum(row) + PAD_IN * len(row)


def _decomposition_axes(figure, with_image, bars_width, n_maps):
    """Axes: [image], bars, maps..., [colour bar]; at most :data:`MAX_WIDTH_IN` wide.

    The maps follow the bars on one row when it fits, else they fill rows of their own
    below it, the colour bar after the last map.
    """
    image = [IMAGE_IN] if with_image else []
    top = image + [min(bars_width, MAX_WIDTH_IN - _row_width(image) - PAD_IN)]
    maps = [IMAGE_IN] * n_maps
    colour = [COLOUR_BAR_IN] if n_maps else []
    if _row_width(top + maps + colour) <= MAX_WIDTH_IN:
        rows = [top + maps + colour]
    else:
        per_row = max(1, int((MAX_WIDTH_IN - _row_width(colour)) // (IMAGE_IN + PAD_IN)))
        rows = [top] + [maps[i : i + per_row] for i in range(0, n_maps, per_row)]
        rows[-1] = rows[-1] + colour
    width = max(_row_width(r) for r in rows)
    heights = [BAR_H_IN] + [MAP_H_IN] * (len(rows) - 1)
    fig = _figure(figure, (width, sum(heights)))
    fig.set_layout_engine("constrained")
    outer = fig.add_gridspec(len(rows), 1, height_ratios=heights)
    axes = []
    for i, row in enumerate(rows):
        spare = width - _row_width(row)
        ratios = row + ([spare] if spare > 0.05 else [])  # left-aligned, spare space right
        grid = outer[i].subgridspec(1, len(ratios), width_ratios=ratios)
        axes += [fig.add_subplot(grid[0, j]) for j in range(len(row))]
    return fig, axes


def _one_row(z):
    """``z`` as one row: a one-row data frame (a pandas row keeps its feature names) or a
    ``(1, n_features)`` array; a ValueError for more rows."""
    if hasattr(z, "to_frame"):  # a pandas row
        return z.to_frame().T
    n_rows = len(z) if hasattr(z, "columns") else None
    if n_rows is None:
        z = np.asarray(z)
        n_rows = 1 if z.ndim == 1 else z.shape[0] if z.ndim == 2 else None
        z = z.reshape(1, -1) if n_rows == 1 else z
    if n_rows != 1:
        raise ValueError(
            "plot_decision explains one input: z must be one row of activations, of shape "
            f"(n_features,) or (1, n_features), got shape {np.shape(z)}."
        )
    return z


def _checked_output(output, n_outputs):
    """``output`` as an index in ``[0, n_outputs)``; negative ones count from the end."""
    if isinstance(output, bool) or not isinstance(output, Integral):
        raise ValueError(f"output must be an integer output index, got {output!r}.")
    if not -n_outputs <= output < n_outputs:
        raise ValueError(
            f"output {output} is outside the explainer's {n_outputs} outputs (valid: "
            f"{-n_outputs} to {n_outputs - 1})."
        )
    return int(output) % n_outputs


def checked_output_names(output_names, n_outputs):
    """The names of the outputs (their indices when None); a ValueError for a wrong count."""
    if output_names is None:
        return [str(c) for c in range(n_outputs)]
    if isinstance(output_names, str):
        raise ValueError(
            f"output_names must be a list of str, one per output, got the single string "
            f"{output_names[:40]!r}; pass e.g. [{output_names[:20]!r}, ...]."
        )
    names = [str(n) for n in output_names]
    if len(names) != n_outputs:
        raise ValueError(
            f"output_names has {len(names)} names but the explainer has {n_outputs} outputs."
        )
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(
            f"output_names must name each output once; {repeated[:5]} name several outputs. "
            "Make the names unique (e.g. append the output's index)."
        )
    return names


def _decision_of(y, n_outputs):
    """The network's decision, the argmax of its logits ``y`` for one input."""
    y = np.asarray(y, dtype=np.float64)
    if y.size != n_outputs or y.ndim > 2 or (y.ndim == 2 and y.shape[0] != 1):
        raise ValueError(
            f"y must be the network's {n_outputs} logits for z, of shape ({n_outputs},) or "
            f"(1, {n_outputs}), got shape {y.shape}."
        )
    if not np.isfinite(y).all():
        raise ValueError(NONFINITE_Y)
    return int(y.ravel().argmax())


#: The error for logits that are not finite, whose argmax is no decision.
NONFINITE_Y = (
    "y contains NaN or infinity: the network's decision is read as the argmax of its "
    "logits, which NaN makes meaningless. Pass finite logits (check the export)."
)


def plot_decision(
    explainer,
    z,
    *,
    y=None,
    output=None,
    image=None,
    network=None,
    heatmap_method="excitation_backprop",
    output_names=None,
    figure=None,
):
    """One decision explained: contributions, the bias and the heatmaps, in one figure.

    Splits the explainer's rebuilt score of ``output`` for the activations ``z`` into
    x-feature contributions ``x_k W_ck`` and the bias, as the HTML report does
    (:func:`decomposition_figure`), with the input and, given ``network``, a heatmap per
    significant x-feature. The output is, in this order: ``output``; the network's
    decision (the argmax of ``y``); the explainer's top rebuilt output, which can differ
    from the network's decision. The title above the image says which. x-features are
    labelled with the explainer's ``get_feature_names_out()``.

    Parameters
    ----------
    explainer : fitted estimator
        An :class:`~sklearn_xnn.SRAEExplainer` fitted with logits, a headed pipeline
        (:func:`~sklearn_xnn.baselines.make_headed`, as
        :func:`~sklearn_xnn.compare.compare_explainers` returns for PCA or NMF with
        ``return_fitted=True``) or a predictor that transforms (``PLSRegression``): any
        explainer whose ``predict`` is linear in its x-features; or a search over one
        fitted with ``refit=True`` (:class:`~sklearn_xnn.SRAEExplainerCV`,
        ``GridSearchCV``), whose refitted ``best_estimator_`` is decomposed. Others raise
        a TypeError.
    z : array-like of shape (n_features,) or (1, n_features)
        One input's activations (a pandas row or one-row data frame keeps its feature
        names).
    y : array-like of shape (n_outputs,) or (1, n_outputs), default=None
        The network's logits for ``z``: its decision is explained (when ``output`` is
        None) and named.
    output : int, default=None
        The output to explain, an index in ``[-n_outputs, n_outputs)`` (negative ones
        count from the end, as in ``SRAEExplainer.contributions``).
    image : array-like of shape (channels, height, width), default=None
        The input behind ``z``.
    network : ExplainedNetwork, default=None
        With ``image``: one heatmap per significant x-feature
        (:func:`sklearn_xnn.torch.xfeature_heatmaps`).
    heatmap_method : str, default="excitation_backprop"
        See :func:`sklearn_xnn.torch.xfeature_heatmaps`.
    output_names : list of str, default=None
        One name per output; their indices when None.
    figure : matplotlib Figure, default=None
        Drawn into (and resized) when given, e.g. ``plt.figure()`` in a notebook.

    Returns
    -------
    fig : matplotlib Figure
        At most 12 inches wide (the heatmaps wrap onto rows below the bars), 1.9 inches
        per image panel.

    Raises
    ------
    ValueError
        When ``z`` has more than one row, ``y`` is not one logit per output, ``output``
        is out of range or ``output_names`` does not name every output.
    TypeError
        When the explainer has no linear head to decompose.

    Examples
    --------
    >>> from sklearn_xnn import SRAEExplainer
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> from sklearn_xnn.report import plot_decision
    >>> Z, y, _ = make_concept_activations(200, 16, n_outputs=3, random_state=0)
    >>> xnn = SRAEExplainer(3, hidden_layer_sizes=(16,), max_iter=5, random_state=0)
    >>> fig = plot_decision(xnn.fit(Z, y), Z[0], y=y[0])
    >>> [label.get_text() for label in fig.axes[0].get_xticklabels()][-1]
    'bias'
    """
    z = _one_row(z)
    view = linear_view(explainer, z, "plot_decision")
    if view.coef is None:
        raise TypeError(
            "plot_decision needs an explainer with a linear head (fitted with logits); "
            f"this {type(explainer).__name__} has none."
        )
    C = view.coef.shape[0]
    names = checked_output_names(output_names, C)
    decision = None if y is None else _decision_of(y, C)
    top = int((view.X[0] @ view.coef.T + view.intercept).argmax())
    c = _checked_output(output, C) if output is not None else top if y is None else decision
    if C == 1:  # one output: no decision to name
        title = f"input\noutput {names[0]}"
    elif decision is not None:
        title = f"input\nnetwork predicts {names[decision]}"
    else:
        title = f"input\n{'top rebuilt output' if c == top else 'output'} {names[c]}"
    heatmaps = None
    if network is not None and image is not None:
        from sklearn_xnn.torch import xfeature_heatmaps

        heatmaps = xfeature_heatmaps(network, np.asarray(image)[None], method=heatmap_method)[0]
    return decomposition_figure(
        view.X[0] * view.coef[c],
        intercept=float(view.intercept[c]),
        output_name=names[c],
        image=image,
        heatmaps=heatmaps,
        names=view.names,
        image_title=title,
        figure=figure,
    )


#: The most characters of an output's name a figure's axis shows (longer names end in "...").
LABEL_CHARS = 28


def _shortened(name):
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 3] + "..."


def head_weights_figure(coef, output_names=None, names=None, *, figure=None):
    """The head's weight matrix ``W`` (outputs x x-features), red positive, blue negative.

    Parameters
    ----------
    coef : array-like of shape (n_outputs, n_components)
        The head weights (``coef_``). With more than 60 outputs
        the rows are left unlabelled, in the height of 30; pass the rows of the outputs
        of interest (``coef_[outputs]``) to read them by name.
    output_names, names : list of str, default=None
        Row and column labels; indices and ``x0, x1, ...`` when None. Row labels longer
        than 28 characters are cut short (ending in ``...``); the figure widens for them.
    figure : matplotlib Figure, default=None
        Drawn into (and resized) when given.

    Returns
    -------
    fig : matplotlib Figure
    """
    coef = np.atleast_2d(coef)
    C, K = coef.shape
    names = names or [f"x{k}" for k in range(K)]
    long = max(map(len, names)) > 4
    rows = C if C <= MAX_LABELLED_ROWS else 30  # many outputs: unlabelled, 30 rows high
    labels = [_shortened(n) for n in (output_names or [str(c) for c in range(C)])]
    widest = max(map(len, labels)) if C <= MAX_LABELLED_ROWS else 0  # room for the labels
    size = (0.55 * K + 3.0 + 0.075 * max(widest - 4, 0), 0.32 * rows + (2.4 if long else 1.6))
    fig = _figure(figure, size)
    ax = fig.subplots()
    lim = float(np.abs(coef).max()) or 1.0
    im = ax.imshow(coef, cmap="bwr", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(K))
    ax.set_xticklabels(
        names, fontsize=FONT - 1, rotation=45 if long else 0, ha="right" if long else "center"
    )
    if C <= MAX_LABELLED_ROWS:
        ax.set_yticks(range(C))
        ax.set_yticklabels(labels, fontsize=FONT - 1)
    ax.set_xlabel("x-feature", fontsize=FONT - 1)
    ax.set_ylabel("output" if C <= MAX_LABELLED_ROWS else f"output (all {C})", fontsize=FONT - 1)
    ax.set_title("head weights W", fontsize=FONT)
    bar = fig.colorbar(im, ax=ax, fraction=0.05)
    bar.set_label("weight W_ck", fontsize=FONT - 1)
    bar.ax.tick_params(labelsize=FONT - 1)
    fig.tight_layout()
    return fig


def k_curve_figure(curve, k=None, *, figure=None):
    """How faithful K components can be: the rank-K linear bound's R² and PCA's variance.

    Parameters
    ----------
    curve : pandas.DataFrame
        :func:`sklearn_xnn.compare.k_curve` (indexed by K).
    k : int or sequence of int, default=None
        The explainers' K: each distinct one is marked with a vertical line.
    figure : matplotlib Figure, default=None
        Drawn into (and resized) when given.

    Returns
    -------
    fig : matplotlib Figure
    """
    fig = _figure(figure, (5.0, 3.9))  # the legend under the axes
    ax = fig.subplots()
    labels = {
        "linear_bound_r2": "best rank-K linear predictor: R² of the logits",
        "pca_explained_variance": "PCA: explained variance of the activations",
    }
    for column, style in zip(curve.columns, ("o-", "s--"), strict=False):
        ax.plot(curve.index, curve[column], style, ms=3, label=labels.get(column, column))
    ks = [] if k is None else sorted({int(v) for v in np.atleast_1d(k)})
    for i, value in enumerate(ks):
        label = f"K = {', '.join(map(str, ks))}" if i == 0 else None  # one legend entry
        ax.axvline(value, color="grey", lw=1, ls=":", label=label)
    ax.set_xlabel("K (number of components)", fontsize=FONT - 1)
    ax.set_ylabel("fraction (training rows)", fontsize=FONT - 1)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # K: a count
    ax.tick_params(labelsize=FONT - 1)
    # below the axes, clear of the curves (which rise to the right, where K is large)
    ax.legend(fontsize=FONT - 2, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.tight_layout()
    return fig
