"""The contribution metrics of a many-output explainer, read by blocks of rows.

The contributions ``S`` (``(n, C, K)``) outgrow memory long before the x-features do:
10,000 rows, 1,000 outputs and K = 20 make 1.6 GB. :func:`contribution_metrics` reads them
as blocks of consecutive rows of at most :data:`BLOCK_BYTES` and keeps only sums per
output: in a first pass each column's sum and peak, in a second the significant counts
and three ``K x K`` Gram matrices per output. It gives :func:`~sklearn_xnn.metrics.n_significant`
exactly and :func:`~sklearn_xnn.metrics.pullaway` (both variants) and
:func:`~sklearn_xnn.metrics.mean_abs_correlation` to rounding. Over the samples the
pull-away uses ``sum_{a != b} (u_a . u_b)^2 = |U^T U|_F^2 - sum_a (u_a . u_a)^2`` for the
unit rows ``u_a``, so it needs neither ``S`` nor the ``n x n`` cosines.
"""

import numpy as np

from sklearn_xnn.metrics._faithfulness import _row_weights
from sklearn_xnn.metrics._geometry import (
    PULLAWAY_EPS,
    _check_coverage,
    _contributions_3d,
    _explained_rows,
    _mean_abs_off_diagonal,
    _significant_counts,
    constant_columns,
)

#: Largest block of contributions (bytes of float64) read at once; a block needs about
#: four times as much while it is measured.
BLOCK_BYTES = 32 * 2**20


def row_blocks(n_samples, row_bytes, block_bytes=None):
    """Slices of consecutive rows covering ``range(n_samples)``, each of at most
    ``block_bytes`` (:data:`BLOCK_BYTES` when None) and at least one row."""
    block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
    step = max(1, block_bytes // max(row_bytes, 1))
    return [slice(start, min(start + step, n_samples)) for start in range(0, n_samples, step)]


def contribution_metrics(
    rows_of, n_samples, *, y=None, coverage=0.9, eps=PULLAWAY_EPS, block_bytes=None
):
    """Significant count, both pull-aways and contribution correlation (and with ``y`` the
    share of decisions explained), by blocks of rows.

    Parameters
    ----------
    rows_of : callable
        ``rows_of(rows)`` returns the contributions of the rows in the slice ``rows``,
        ``(len, K)`` or ``(len, C, K)``; it is called twice for every block.
    n_samples : int
        Number of rows.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        The logits, for ``top_explained`` (:func:`~sklearn_xnn.metrics.top_explained`).
    coverage : float, default=0.9
        As in :func:`~sklearn_xnn.metrics.n_significant`.
    eps : float, default=1e-6
        As in :func:`~sklearn_xnn.metrics.pullaway`.
    block_bytes : int, default=None
        Largest block; :data:`BLOCK_BYTES` when None.

    Returns
    -------
    values : dict of str to float
        ``n_significant``, ``pullaway_samples``, ``pullaway_components`` and
        ``contribution_corr`` (:func:`~sklearn_xnn.metrics.mean_abs_correlation`), and
        with ``y`` ``top_explained``, as these functions give them for the whole array.
    """
    if n_samples < 1:
        raise ValueError(f"contribution metrics need at least one row, got n_samples={n_samples}.")
    _check_coverage(coverage)
    first = _contributions_3d(rows_of(slice(0, 1)))
    blocks = row_blocks(n_samples, first.nbytes, block_bytes)
    total, peak, spread = _column_moments(rows_of, blocks, eps, np.ones(n_samples))
    y = None if y is None else np.asarray(y, dtype=np.float64)
    mean = total / n_samples
    sums = _gram_sums(rows_of, blocks, mean, peak, spread["scale"], coverage, eps, y)
    values = {
        "n_significant": float(sums["significant"] / (n_samples * first.shape[0])),
        "pullaway_samples": _pullaway_mean(
            np.sum(sums["samples"] ** 2, axis=(1, 2)) - sums["samples_self"], sums["m"]
        ),
        "pullaway_components": _pullaway_of_columns(sums["columns"]),
        "contribution_corr": _correlation_of_moments(sums["centred"], spread, n_samples),
    }
    if y is not None:
        values["top_explained"] = float(sums["explained"] / n_samples)
    return values


def correlation_by_blocks(rows_of, n_samples, block_bytes=None, *, sample_weight=None):
    """:func:`~sklearn_xnn.metrics.mean_abs_correlation` of the contributions, by blocks
    of rows: two passes, the columns' weighted sums, then their centred cross-products.

    With row weights ``w_i`` (1 without ``sample_weight``) the correlation of x-features
    ``k`` and ``l`` for output ``c`` is ``sum_i w_i d_ick d_icl / sqrt(sum_i w_i d_ick^2
    sum_i w_i d_icl^2)``, ``d_ick = S_ick - sum_i w_i S_ick / sum_i w_i``; a column is
    constant when its values on the rows of positive weight are all equal or their spread
    is within rounding of the column's own largest magnitude (scale-free).

    Parameters
    ----------
    rows_of : callable
        As in :func:`contribution_metrics`; it is called twice for every block.
    n_samples : int
        Number of rows.
    block_bytes : int, default=None
        Largest block; :data:`BLOCK_BYTES` when None.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative row weights, not all zero; an integer weight counts as that many
        copies of the row. None weighs the rows alike.

    Returns
    -------
    rho : float
        As :func:`~sklearn_xnn.metrics.mean_abs_correlation` gives it for the whole array
        (the rows repeated as often as their integer weights); NaN when fewer than two
        columns vary.
    """
    weights = _row_weights(sample_weight, n_samples)
    first = _contributions_3d(rows_of(slice(0, 1)))
    blocks = row_blocks(n_samples, first.nbytes, block_bytes)
    total, _, spread = _column_moments(rows_of, blocks, PULLAWAY_EPS, weights)
    mean, root = total / weights.sum(), np.sqrt(weights)
    centred = sum(
        _centred_gram(_contributions_3d(rows_of(rows)), mean, spread["scale"], root[rows])
        for rows in blocks
    )
    return _correlation_of_moments(centred, spread, weights.sum())


def _column_moments(rows_of, blocks, eps, weights):
    """First pass: per output and x-feature ``sum_i w_i S_ick`` and ``max_i |S_ick +
    eps|``, and a dict of each column's spread ``max_i S_ick - min_i S_ick`` (``"ptp"``)
    and largest magnitude (``"scale"``, 1 for a column of zeros), for the row weights
    ``w_i`` (``weights``); the rows of weight 0 count nowhere."""
    total = peak = low = high = None
    for rows in blocks:
        kept = weights[rows] > 0
        S3, w = _contributions_3d(rows_of(rows))[:, kept], weights[rows][kept]
        shifted = np.abs(S3 + eps)
        block_total = (S3 * w[:, None]).sum(axis=1)
        block_peak = shifted.max(axis=1, initial=0.0)
        block_low = S3.min(axis=1, initial=np.inf)
        block_high = S3.max(axis=1, initial=-np.inf)
        total = block_total if total is None else total + block_total
        peak = block_peak if peak is None else np.maximum(peak, block_peak)
        low = block_low if low is None else np.minimum(low, block_low)
        high = block_high if high is None else np.maximum(high, block_high)
    scale = np.maximum(np.abs(low), np.abs(high))
    spread = {"ptp": high - low, "scale": np.where(scale > 0, scale, 1.0)}
    return total, peak, spread


def _centred_gram(S3, mean, scale, root=None):
    """``D_c^T D_c`` of the centred columns ``D = (S - mean) / scale``, each row times
    ``root`` (the square roots of the row weights) when given: the scale keeps the squares
    in range whatever the contributions' magnitude."""
    D = (S3 - mean[:, None, :]) / scale[:, None, :]
    return _gram(D if root is None else D * root[:, None])


def _gram(A):
    """``A_c^T A_c`` for every output: ``(C, n, K) -> (C, K, K)``."""
    return np.matmul(A.transpose(0, 2, 1), A)


def _sample_sums(S3, eps):
    """Over one block, per output: ``U^T U`` and ``sum_a (u_a . u_a)^2`` of the unit rows
    ``u_a`` of ``S + eps`` (scaled as :func:`pullaway` scales them), and their number."""
    S = S3 + eps
    peak = np.max(np.abs(S), axis=-1, keepdims=True)
    S /= np.where(peak > 0, peak, 1.0)
    norms = np.linalg.norm(S, axis=-1, keepdims=True)
    S /= np.where(norms > 0, norms, 1.0)  # rows of zeros stay zero and are not counted
    self_terms = (np.sum(S * S, axis=-1) ** 2).sum(axis=1)
    return _gram(S), self_terms, (norms[..., 0] > 0).sum(axis=1)


def _block_sums(S3, mean, col_scale, corr_scale, coverage, eps, y=None):
    """The second pass's sums over one block of rows ``S3`` (``(C, n_block, K)``), with
    the block's logits ``y`` (or None)."""
    samples, samples_self, m = _sample_sums(S3, eps)
    sums = {
        "significant": int(_significant_counts(S3, coverage).sum()),
        "samples": samples,
        "samples_self": samples_self,
        "m": m,
        "columns": _gram((S3 + eps) / col_scale),
        "centred": _centred_gram(S3, mean, corr_scale),
    }
    if y is not None:
        sums["explained"] = int(_explained_rows(S3, y).sum())
    return sums


def _gram_sums(rows_of, blocks, mean, peak, corr_scale, coverage, eps, y=None):
    """Second pass: the sums over all rows that the metrics need, per output."""
    col_scale = np.where(peak > 0, peak, 1.0)[:, None, :]
    sums = None
    for rows in blocks:
        S3 = _contributions_3d(rows_of(rows))
        block_y = None if y is None else y[rows]
        block = _block_sums(S3, mean, col_scale, corr_scale, coverage, eps, block_y)
        sums = block if sums is None else {key: sums[key] + block[key] for key in sums}
    return sums


def _pullaway_mean(pairs, m):
    """``mean_c PT(S^(c))`` from ``pairs_c = sum_{a != b} cos_ab^2`` over ``m_c`` vectors."""
    denominator = np.where(m >= 2, m * (m - 1), 1)
    return float(np.mean(np.where(m >= 2, pairs / denominator, np.nan)))


def _pullaway_of_columns(gram):
    """Pull-away over the x-features from their Gram matrices ``(C, K, K)`` (columns of
    ``S + eps`` scaled by their peaks, as :func:`pullaway` scales them)."""
    norms = np.sqrt(np.diagonal(gram, axis1=1, axis2=2))
    scale = np.where(norms > 0, norms, 1.0)
    cos2 = (gram / (scale[:, :, None] * scale[:, None, :])) ** 2
    K = gram.shape[-1]
    cos2[:, np.arange(K), np.arange(K)] = 0.0
    return _pullaway_mean(cos2.sum(axis=(1, 2)), (norms > 0).sum(axis=1))


def _correlation_of_moments(centred, spread, count):
    """:func:`mean_abs_correlation` from the centred cross-products ``(C, K, K)`` of the
    columns scaled by ``spread["scale"]``, over ``count`` rows (the sum of the weights)."""
    norms = np.sqrt(np.diagonal(centred, axis1=1, axis2=2))
    constant = constant_columns(spread["ptp"], norms, count)
    scale = np.where(constant, np.nan, norms)
    R = np.clip(centred / (scale[:, :, None] * scale[:, None, :]), -1.0, 1.0)
    return _mean_abs_off_diagonal(R)
