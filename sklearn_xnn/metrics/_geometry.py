"""Sparsity, orthogonality and health of an explanation space: pure array functions.

Notation: ``n`` rows, ``K`` x-features, ``C`` outputs. ``X`` holds the x-features
(``transform``'s output, ``(n, K)``); ``S`` the contributions ``S_ick = x_ik W_ck`` in the
layout of :meth:`SRAEExplainer.contributions`: ``(n, K)`` for one output or ``(n, C, K)``.
"""

from numbers import Real

import numpy as np

from sklearn_xnn.metrics._faithfulness import _check_finite, _row_weights

#: The epsilon added to contributions, here and in the training loss (one definition).
PULLAWAY_EPS = 1e-6


def _contributions_3d(S):
    """``S`` as ``(C, n, K)``: one ``(n, K)`` matrix per output."""
    S = np.asarray(S, dtype=np.float64)
    if S.ndim not in (2, 3):
        raise ValueError(
            f"contributions must have shape (n_samples, n_components) or (n_samples, "
            f"n_outputs, n_components); got an array with shape {S.shape}."
        )
    _check_rows(S, "contributions")
    _check_features(S, "contributions")
    if S.ndim == 3 and S.shape[1] == 0:
        raise ValueError(f"contributions needs at least one output (axis 1), got shape {S.shape}.")
    return S[None] if S.ndim == 2 else np.transpose(S, (1, 0, 2))


def _check_features(a, name):
    """At least one x-feature (column): with none every metric is an empty reduction."""
    if a.shape[-1] == 0:
        raise ValueError(f"{name} needs at least one x-feature (column), got shape {a.shape}.")


def constant_columns(ptp, norms, count):
    """Which columns are constant: no spread at all (``ptp == 0``, exact and scale-free) or,
    for columns scaled to a largest magnitude of 1, a centred norm within rounding of it
    (``norms <= 8 eps sqrt(count)``, the residue that centring a constant leaves)."""
    return (ptp == 0) | (norms <= 8.0 * np.finfo(np.float64).eps * np.sqrt(count))


def unit_columns(M):
    """The columns of ``M`` (rows along axis -2) centred and scaled to unit norm, with a
    bool mask (axis -2 dropped) of the constant ones (:func:`constant_columns`), which are
    left all zero. Each column is divided by its largest magnitude first, so the norms
    neither overflow nor underflow and the test is relative to the column's own scale."""
    ptp = np.ptp(M, axis=-2, keepdims=True)
    peak = np.max(np.abs(M), axis=-2, keepdims=True)
    M = M / np.where(peak > 0, peak, 1.0)
    centred = M - M.mean(axis=-2, keepdims=True)
    norms = np.linalg.norm(centred, axis=-2, keepdims=True)
    constant = constant_columns(ptp, norms, M.shape[-2])
    return centred / np.where(constant, np.inf, norms), constant[..., 0, :]


def _as_matrix(X, name):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_components), got shape {X.shape}.")
    _check_rows(X, name)
    return X


def _check_rows(a, name):
    """At least one row, every value finite."""
    if a.shape[0] == 0:
        raise ValueError(f"{name} needs at least one row, got 0.")
    _check_finite(a, name)


def mean_active(X, *, threshold=0.0):
    """Mean number of active x-features per input.

    ``active = (1 / n) sum_i #{k : |x_ik| > threshold}``. For ReLU x-features (SRAE, NMF)
    this counts the non-zero ones; signed embeddings (PCA, PLS) are almost always fully
    active.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_components)
        x-features.
    threshold : float, default=0.0
        Magnitudes at or below it count as inactive.

    Returns
    -------
    active : float
        In ``[0, n_components]``.

    Examples
    --------
    >>> from sklearn_xnn.metrics import mean_active
    >>> mean_active([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])
    1.5
    """
    X = _as_matrix(X, "X")
    _check_features(X, "X")
    return float(np.mean((np.abs(X) > threshold).sum(axis=1)))


def n_significant(S, *, coverage=0.9):
    """Number of significant x-features per input: fewest positive contributions covering the score.

    For each input ``i`` (and output ``c``) sort the positive contributions
    ``s_(1) >= s_(2) >= ...`` of ``S_ic = max(S_ic:, 0)`` and count the fewest whose sum
    reaches ``coverage`` times the positive total::

        sig_ic = min { m : sum_{l <= m} s_(l) >= coverage * sum_k max(S_ick, 0) }

    (0 when no contribution is positive). Returns the mean over inputs and outputs.

    Parameters
    ----------
    S : array-like of shape (n_samples, n_components) or (n_samples, n_outputs, n_components)
        Contributions.
    coverage : float, default=0.9
        Fraction of the positive score to cover, in ``(0, 1]``.

    Returns
    -------
    n_sig : float
        Mean count, in ``[0, n_components]``.

    Examples
    --------
    >>> from sklearn_xnn.metrics import n_significant
    >>> n_significant([[5.0, 4.0, 1.0, -3.0], [10.0, 0.0, 0.0, 0.0]])
    1.5
    """
    return float(_significant_counts(_contributions_3d(S), coverage).mean())


def top_explained(S, y):
    """Share of inputs whose top output gets at least one positive contribution.

    The decision for input ``i`` is its top output ``c_i = argmax_c y_ic``; the input is
    explained when some x-feature adds to it, ``S_{i c_i k} > 0`` for some ``k``. An input
    with none is "explained" by the head's intercept alone: its count in
    :func:`n_significant` is 0, the sparsest possible, so read the two together.

    Parameters
    ----------
    S : array-like of shape (n_samples, n_components) or (n_samples, n_outputs, n_components)
        Contributions.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The logits whose top output is the decision (with one output, that output).

    Returns
    -------
    share : float
        In ``[0, 1]``.

    Examples
    --------
    >>> from sklearn_xnn.metrics import top_explained
    >>> S = [[[2.0, -1.0], [0.0, 0.0]], [[1.0, 0.0], [-0.5, 0.0]]]
    >>> top_explained(S, [[3.0, 1.0], [0.0, 2.0]])
    0.5
    """
    return float(_explained_rows(_contributions_3d(S), y).mean())


def _explained_rows(S3, y):
    """Per row of ``S3`` (``(C, n, K)``), whether its top output under the logits ``y``
    gets a positive contribution (:func:`top_explained`): bools ``(n,)``."""
    y = np.asarray(y, dtype=np.float64)
    _check_finite(y, "y")
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if y.ndim != 2 or y.shape != S3.shape[1::-1]:
        raise ValueError(
            f"y must have shape (n_samples, n_outputs) = {S3.shape[1::-1]} to match the "
            f"contributions; got {y.shape}."
        )
    top = y.argmax(axis=1)
    return (S3[top, np.arange(S3.shape[1])] > 0).any(axis=1)


def _significant_counts(S3, coverage):
    """``sig_ic`` of :func:`n_significant` for ``S3`` of shape ``(C, n, K)``: ints ``(C, n)``."""
    _check_coverage(coverage)
    P = np.maximum(S3, 0.0)
    # in place, descending: two copies of the contributions fewer than -np.sort(-P)
    np.negative(P, out=P)
    P.sort(axis=-1)
    np.negative(P, out=P)
    csum = np.cumsum(P, axis=-1)
    total = csum[..., -1:]
    reached = csum >= coverage * total * (1.0 - 1e-12)
    return np.where(total[..., 0] > 0, reached.argmax(axis=-1) + 1, 0)


def _check_coverage(coverage):
    number = isinstance(coverage, Real) and not isinstance(coverage, bool)
    if not number or not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be a number in (0, 1], got {coverage!r}.")


def pullaway(S, *, over="samples", eps=PULLAWAY_EPS):
    """EBGAN pull-away value of contributions, averaged over outputs.

    For one output's contribution matrix ``S`` (``n x K``), shifted by ``eps``::

        PT(S) = 1 / (m (m - 1)) sum_{a != b} ( s_a . s_b / (|s_a| |s_b|) )^2

    over its rows (``over="samples"``, ``m = n``: different inputs use different
    x-features) or its columns (``over="components"``, ``m = K``: the x-features
    decorrelate). With several outputs the value is ``(1 / C) sum_c PT(S^(c))``, the
    training loss's ``sum_c`` divided by ``C`` so that values compare across ``C``. The
    default ``eps`` is the training loss's, so this agrees with
    ``sklearn_xnn._nn.losses.pullaway_term``. Rows (or columns) of zeros with ``eps=0``
    have no direction and are left out of the pairs. Lower is more orthogonal; ``1`` means
    all parallel. The sum over pairs is taken from the smaller Gram matrix of the unit
    vectors (``K x K`` over the samples), so it costs ``O(n K^2)`` per output and no
    ``n x n`` matrix.

    Parameters
    ----------
    S : array-like of shape (n_samples, n_components) or (n_samples, n_outputs, n_components)
        Contributions (or any non-negative features).
    over : {"samples", "components"}, default="samples"
        Which vectors are pulled apart.
    eps : float, default=1e-6
        Added to every entry before normalising, as in training.

    Returns
    -------
    pt : float
        In ``[0, 1]``; NaN when fewer than two vectors have a direction.

    Examples
    --------
    >>> from sklearn_xnn.metrics import pullaway
    >>> pullaway([[1.0, 0.0], [0.0, 1.0]], eps=0.0)
    0.0
    >>> pullaway([[1.0, 0.0], [0.0, 1.0]], over="components", eps=0.0)
    0.0
    """
    if over not in ("samples", "components"):
        raise ValueError(f"over must be 'samples' or 'components', got {over!r}.")
    values = []
    for s in _contributions_3d(S) + eps:
        s = s.T if over == "components" else s
        # Cosines are scale-free: dividing each vector by its largest entry first keeps the
        # norms from underflowing (entries ~1e-160) or overflowing.
        peak = np.max(np.abs(s), axis=1, keepdims=True)
        s = s / np.where(peak > 0, peak, 1.0)
        norms = np.linalg.norm(s, axis=1)
        s = s[norms > 0] / norms[norms > 0, None]
        m = s.shape[0]
        if m < 2:
            values.append(np.nan)
            continue
        # sum_ab (u_a . u_b)^2 = ||U U^T||_F^2 = ||U^T U||_F^2: the smaller Gram matrix,
        # so many rows cost O(m K^2) time and K x K memory, not an m x m matrix
        gram = s.T @ s if m > s.shape[1] else s @ s.T
        self_terms = np.sum(np.einsum("ij,ij->i", s, s) ** 2)  # the a == b terms, ~1 each
        values.append((np.sum(gram * gram) - self_terms) / (m * (m - 1)))
    return float(np.mean(values))


def contribution_correlation(S):
    """Pearson correlation matrix between x-features' contributions.

    ``R_c[k, l] = corr_i(S_ick, S_icl)``; a constant column (a dead x-feature, or a zero
    head weight) has no correlation and gives NaN in its row and column (1 on the
    diagonal stays NaN too, so it can be spotted). A column is constant when its values
    are all equal or its spread is within rounding of its own magnitude (a few ulps), so
    the result does not depend on the contributions' scale.

    Parameters
    ----------
    S : array-like of shape (n_samples, n_components) or (n_samples, n_outputs, n_components)
        Contributions.

    Returns
    -------
    R : ndarray of shape (n_components, n_components) or (n_outputs, n_components, \
            n_components)
        One matrix per output when ``S`` is 3-D.

    Examples
    --------
    >>> from sklearn_xnn.metrics import contribution_correlation
    >>> contribution_correlation([[1.0, 2.0], [2.0, 4.0], [3.0, 7.0]]).round(3)
    array([[1.   , 0.993],
           [0.993, 1.   ]])
    """
    S3 = _contributions_3d(S)
    unit, constant = unit_columns(S3)  # constant: (C, K)
    R = np.clip(np.einsum("cik,cil->ckl", unit, unit), -1.0, 1.0)
    R[constant[:, :, None] | constant[:, None, :]] = np.nan
    return R[0] if np.asarray(S).ndim == 2 else R


def mean_abs_correlation(S):
    """Mean absolute off-diagonal correlation between x-features' contributions.

    ``rho = mean_c mean_{k != l} |R_c[k, l]|`` over pairs of non-constant columns (see
    :func:`contribution_correlation`), and over the outputs that have such a pair: each
    output counts alike. Dead x-features are left out, so read it next to
    :func:`dead_fraction`. 0: decorrelated contributions; 1: one feature repeated.

    Parameters
    ----------
    S : array-like of shape (n_samples, n_components) or (n_samples, n_outputs, n_components)
        Contributions.

    Returns
    -------
    rho : float
        In ``[0, 1]``; NaN when fewer than two columns vary.

    Examples
    --------
    >>> from sklearn_xnn.metrics import mean_abs_correlation
    >>> round(mean_abs_correlation([[1.0, -1.0], [2.0, -2.0], [3.0, -3.0]]), 6)
    1.0
    """
    R = contribution_correlation(S)
    return _mean_abs_off_diagonal(R[None] if R.ndim == 2 else R)


def _mean_abs_off_diagonal(R):
    """``rho`` of :func:`mean_abs_correlation` from the ``(C, K, K)`` correlation matrices."""
    K = R.shape[-1]
    off = np.abs(R[:, ~np.eye(K, dtype=bool)])  # (C, K (K - 1))
    varies = ~np.isnan(off).all(axis=1)  # outputs with a pair of non-constant columns
    if K < 2 or not varies.any():
        return float("nan")
    return float(np.mean(np.nanmean(off[varies], axis=1)))


def component_cosines(components):
    """Absolute cosines between the rows of ``components_`` (the x-features' directions).

    ``cos_kl = |g_k . g_l| / (|g_k| |g_l|)`` for ``k != l``; zero rows (dead x-features)
    are left out. PCA's orthonormal components give 0; NMF's non-negative ones cannot go
    below the overlap of their supports.

    Parameters
    ----------
    components : array-like of shape (n_components, n_features)
        One direction per x-feature, in activation space.

    Returns
    -------
    max_cos : float
        Largest absolute cosine between two components (NaN with fewer than two).
    mean_cos : float
        Mean absolute cosine over the ordered pairs.

    Examples
    --------
    >>> from sklearn_xnn.metrics import component_cosines
    >>> max_cos, mean_cos = component_cosines([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    >>> round(max_cos, 4), round(mean_cos, 4)
    (0.7071, 0.4714)
    """
    G = _as_matrix(components, "components")
    peak = np.max(np.abs(G), axis=1, keepdims=True, initial=0.0)
    G = G / np.where(peak > 0, peak, 1.0)  # scale-free norms: no overflow or underflow
    norms = np.linalg.norm(G, axis=1)
    G = G[norms > 0] / norms[norms > 0, None]
    if G.shape[0] < 2:
        return float("nan"), float("nan")
    cos = np.abs(G @ G.T)[~np.eye(G.shape[0], dtype=bool)]
    return float(min(cos.max(), 1.0)), float(min(cos.mean(), 1.0))


def dead_fraction(X, *, sample_weight=None, atol=0.0):
    """Fraction of dead x-features: constant over every row.

    ``dead = (1 / K) #{k : max_i x_ik - min_i x_ik <= atol}`` over the rows ``i`` of
    positive weight (every row without ``sample_weight``). For ReLU x-features
    this is a unit that is zero on every row (SRAE's ``dead_components_`` on training
    rows); a constant unit carries no information either way. A single row has no spread,
    so on one row every x-feature counts as dead and the fraction is 1 whatever the
    explainer: measure it on at least two rows (and on enough of them to see each
    x-feature fire).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_components)
        x-features.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative row weights, not all zero. Only which rows have a positive weight
        matters (a spread is the same over repeated rows): rows of weight 0 are left
        out. None keeps every row.
    atol : float, default=0.0
        Spread at or below which a feature counts as constant.

    Returns
    -------
    fraction : float
        In ``[0, 1]``; 1 on a single row.

    Examples
    --------
    >>> from sklearn_xnn.metrics import dead_fraction
    >>> dead_fraction([[0.0, 1.0, 2.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    0.5
    """
    X = _as_matrix(X, "X")
    _check_features(X, "X")
    X = X[_row_weights(sample_weight, len(X)) > 0]
    return float(np.mean(np.ptp(X, axis=0) <= atol))


def mean_contributions(S):
    """Each x-feature's mean contribution to each output.

    ``m_ck = (1 / n) sum_i S_ick``: a space that has collapsed onto one x-feature has one
    large mean contribution and the others near zero.

    Parameters
    ----------
    S : array-like of shape (n_samples, n_components) or (n_samples, n_outputs, n_components)
        Contributions.

    Returns
    -------
    means : ndarray of shape (n_components,) or (n_outputs, n_components)
        Mean contributions.

    Examples
    --------
    >>> from sklearn_xnn.metrics import mean_contributions
    >>> mean_contributions([[1.0, 0.0], [3.0, -2.0]])
    array([ 2., -1.])
    """
    means = _contributions_3d(S).mean(axis=1)  # (C, K)
    return means[0] if np.asarray(S).ndim == 2 else means
