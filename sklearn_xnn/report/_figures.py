"""Figures of the report, drawn with matplotlib's Agg canvas (no pyplot, no global state)."""

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

POSITIVE, NEGATIVE = "#d62728", "#1f77b4"  # red / blue, as in the paper


def significant_components(contributions, coverage=0.9):
    """The fewest positive contributions that cover ``coverage`` of the positive score.

    Parameters
    ----------
    contributions : array-like of shape (n_components,)
        One input's contributions to one output.
    coverage : float, default=0.9
        Share of the sum of positive contributions to reach.

    Returns
    -------
    indices : ndarray of int
        x-features, largest contribution first; empty when none is positive.

    Examples
    --------
    >>> from sklearn_xnn.report import significant_components
    >>> significant_components([5.0, -1.0, 4.0, 0.5]).tolist()
    [0, 2]
    """
    s = np.asarray(contributions, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    positive = order[s[order] > 0]
    if positive.size == 0:
        return positive
    cum = np.cumsum(s[positive])
    n = int(np.searchsorted(cum, coverage * cum[-1] * (1 - 1e-12))) + 1
    return positive[:n]


def to_png(fig):
    """PNG bytes of a matplotlib figure."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


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
        ax.set_title(title, fontsize=8)


def top_activating_figure(images, X, n_top=8, names=None):
    """A row per x-feature with the inputs that activate it most."""
    K = X.shape[1]
    names = names or [f"x{k}" for k in range(K)]
    fig = Figure(figsize=(1.1 * n_top + 1.2, 1.2 * K + 0.3))
    axes = fig.subplots(K, n_top, squeeze=False)
    for k in range(K):
        order = np.argsort(-X[:, k], kind="stable")[:n_top]
        for j, ax in enumerate(axes[k]):
            if j < len(order) and X[order[j], k] > 0:
                _show(ax, images[order[j]], f"{X[order[j], k]:.2g}")
            else:
                ax.axis("off")
        axes[k, 0].set_ylabel(names[k], rotation=0, ha="right", va="center", fontsize=9)
        axes[k, 0].axis("on")
        axes[k, 0].set_xticks([])
        axes[k, 0].set_yticks([])
    fig.tight_layout()
    return fig


def _bars(ax, contributions, significant, names, title):
    colors = [POSITIVE if c > 0 else NEGATIVE for c in contributions]
    pos = np.arange(len(contributions))
    bars = ax.bar(pos, contributions, color=colors)
    for k in significant:
        bars[k].set_edgecolor("black")
        bars[k].set_linewidth(1.5)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(pos)
    ax.set_xticklabels(names, fontsize=7, rotation=45 if len(names) > 8 else 0)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=8)


def decomposition_figure(
    contributions, *, intercept, output_name, image=None, heatmaps=None, names=None
):
    """The prediction of one output split into x-feature contributions, with heatmaps.

    Bars: positive contributions red, negative blue; significant x-features (fewest
    positive ones covering 90% of the positive score) outlined. One heatmap per
    significant x-feature, overlaid on the image, when ``heatmaps`` is given.
    """
    contributions = np.asarray(contributions, dtype=np.float64)
    K = contributions.size
    names = names or [f"x{k}" for k in range(K)]
    significant = significant_components(contributions)
    n_maps = len(significant) if heatmaps is not None else 0
    n_cols = (image is not None) + 1 + n_maps
    widths = ([1.0] if image is not None else []) + [max(1.6, 0.25 * K)] + [1.0] * n_maps
    fig = Figure(figsize=(sum(widths) * 1.6 + 0.3, 2.0))
    axes = fig.subplots(1, n_cols, squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    col = 0
    score = contributions.sum() + intercept
    if image is not None:
        _show(axes[0], image, f"{output_name}: {score:.2f}")
        col = 1
    _bars(axes[col], contributions, significant, names, f"contributions (bias {intercept:.2f})")
    for j, k in enumerate(significant[:n_maps]):
        ax = axes[col + 1 + j]
        _show(ax, image, f"{names[k]}: {contributions[k]:.2f}")
        hm = np.asarray(heatmaps[k], dtype=np.float64)
        if hm.max() > 0:
            ax.imshow(
                hm / hm.max(), cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear"
            )
    fig.tight_layout()
    return fig


def head_weights_figure(coef, output_names=None, names=None):
    """The head's weight matrix ``W`` (outputs x x-features), red positive, blue negative."""
    coef = np.atleast_2d(coef)
    C, K = coef.shape
    fig = Figure(figsize=(0.45 * K + 2.0, 0.3 * C + 1.2))
    ax = fig.subplots()
    lim = float(np.abs(coef).max()) or 1.0
    im = ax.imshow(coef, cmap="bwr", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(K))
    ax.set_xticklabels(names or [f"x{k}" for k in range(K)], fontsize=7)
    ax.set_yticks(range(C))
    ax.set_yticklabels(output_names or [str(c) for c in range(C)], fontsize=7)
    ax.set_title("head weights W", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return fig
