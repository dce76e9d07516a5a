"""How two sets of x-features agree: matched, by subspace, across seeds, with planted codes."""

import warnings
from itertools import combinations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.base import clone
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils import Bunch
from sklearn.utils.validation import _num_samples

from sklearn_xnn.metrics._adapter import embed, fit_explainer
from sklearn_xnn.metrics._faithfulness import _check_finite
from sklearn_xnn.metrics._geometry import unit_columns


def _paired_columns(A, B):
    """``A`` and ``B`` as finite float64 2-D arrays of the same rows (at least one), or a
    ValueError."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[0]:
        raise ValueError(
            f"A and B must be 2-D with the same number of rows, got shapes {A.shape} and {B.shape}."
        )
    if A.shape[0] == 0:
        raise ValueError("A and B need at least one row, got 0.")
    _check_finite(A, "A")
    _check_finite(B, "B")
    return A, B


def _undefined_correlation(name, n_rows):
    """True, with an ``UndefinedMetricWarning``, when there are fewer than two rows: a
    correlation divides by the spread about the mean, and one row has none (NaN, as
    :func:`numpy.corrcoef`; not the 0 of a constant column, which would read as
    disagreement)."""
    if n_rows >= 2:
        return False
    warnings.warn(
        f"{name} is not well-defined with less than two samples (a correlation needs a "
        "spread about the mean, and one row has none); returning NaN.",
        UndefinedMetricWarning,
        stacklevel=3,
    )
    return True


def _correlations(A, B):
    """:func:`cross_correlation` of validated arrays with at least two rows; a constant
    column (equal values, or a spread within rounding of its magnitude) is all zeros in
    :func:`~sklearn_xnn.metrics._geometry.unit_columns`, so it correlates 0."""
    return np.clip(unit_columns(A)[0].T @ unit_columns(B)[0], -1.0, 1.0)


def cross_correlation(A, B):
    """Pearson correlations between every column of ``A`` and every column of ``B``.

    ``R[k, l] = corr_i(A_ik, B_il)``; a constant column (a dead x-feature) correlates 0
    with everything.

    Parameters
    ----------
    A : array-like of shape (n_samples, n_a)
    B : array-like of shape (n_samples, n_b)

    Returns
    -------
    R : ndarray of shape (n_a, n_b)
        In ``[-1, 1]``. On a single row no correlation is defined (every column is its
        own mean): all NaN, with an :class:`~sklearn.exceptions.UndefinedMetricWarning`.

    Examples
    --------
    >>> from sklearn_xnn.metrics import cross_correlation
    >>> cross_correlation([[0.0, 1.0], [1.0, 0.0]], [[2.0], [5.0]])
    array([[ 1.],
           [-1.]])
    """
    A, B = _paired_columns(A, B)
    if _undefined_correlation("cross_correlation", A.shape[0]):
        return np.full((A.shape[1], B.shape[1]), np.nan)
    return _correlations(A, B)


def matched_correlation(A, B, *, absolute=True, return_pairs=False):
    """Mean correlation of x-features after the best one-to-one matching.

    With ``R = cross_correlation(A, B)`` the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`) picks the pairing ``pi`` of columns
    that maximises ``sum_k |R[k, pi(k)]|``; the score is the mean of the matched values
    over the ``min(n_a, n_b)`` pairs::

        match(A, B) = (1 / min(n_a, n_b)) max_pi sum_k |R[k, pi(k)]|

    ``absolute=False`` matches and averages signed correlations (a sign flip then
    counts as disagreement; PCA's arbitrary signs argue for the default).

    Parameters
    ----------
    A : array-like of shape (n_samples, n_a)
        x-features of one fit.
    B : array-like of shape (n_samples, n_b)
        x-features of another fit (or planted codes), on the same rows.
    absolute : bool, default=True
        Match on absolute correlations.
    return_pairs : bool, default=False
        Also return the matched column indices and their correlations.

    Returns
    -------
    score : float
        In ``[0, 1]`` when ``absolute``; a constant column (a dead x-feature) correlates
        0, as in :func:`cross_correlation`. NaN, with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning`, on a single row (no
        correlation is defined there); NaN when either side has no columns.
    pairs : tuple of (rows, cols, values)
        Only when ``return_pairs``; empty arrays on a single row (nothing to match).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_xnn.metrics import matched_correlation
    >>> A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    >>> float(matched_correlation(A, A[:, ::-1]))
    1.0
    """
    A, B = _paired_columns(A, B)
    if _undefined_correlation("matched_correlation", A.shape[0]):
        none = np.empty(0, dtype=np.intp)
        return (np.nan, (none, none, np.empty(0))) if return_pairs else np.nan
    R = _correlations(A, B)
    R = np.abs(R) if absolute else R
    rows, cols = linear_sum_assignment(R, maximize=True)
    score = float(R[rows, cols].mean()) if rows.size else float("nan")
    return (score, (rows, cols, R[rows, cols])) if return_pairs else score


def subspace_similarity(A, B):
    """Mean canonical correlation of two sets of x-features: do they span the same space?

    :func:`matched_correlation` compares single x-features; two fits can span the same
    subspace of the inputs and still score low there, when each took a different
    rotation within it. The canonical correlations ``rho_1 >= ... >= rho_m`` of ``A`` and
    ``B`` (the cosines of the principal angles between their centred column spaces) do
    not see rotations; the score averages them over ``m = min(n_a, n_b)`` directions,
    a direction missing from either span (a constant or linearly dependent column)
    counting 0::

        similarity(A, B) = (1 / min(n_a, n_b)) sum_j rho_j

    1 means one set is a linear mix of the other (the same concepts up to a rotation);
    a low :func:`matched_correlation` with a similarity near 1 means the fits agree on the
    subspace and differ only in how they divided it into x-features.

    Parameters
    ----------
    A : array-like of shape (n_samples, n_a)
        x-features of one fit.
    B : array-like of shape (n_samples, n_b)
        x-features of another fit, on the same rows; ``n_samples`` must exceed
        ``n_a + n_b`` (fewer rows would make any two spans overlap).

    Returns
    -------
    similarity : float
        In ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_xnn.metrics import matched_correlation, subspace_similarity
    >>> A = np.random.default_rng(0).standard_normal((100, 2))
    >>> B = A @ np.array([[1.0, 1.0], [-1.0, 1.0]])  # a rotation of A (and a scaling)
    >>> round(float(matched_correlation(A, B)), 2), round(subspace_similarity(A, B), 6)
    (0.71, 1.0)
    """
    A, B = _paired_columns(A, B)
    if A.shape[0] <= A.shape[1] + B.shape[1]:
        raise ValueError(
            f"subspace_similarity needs more rows than the columns of A and B together "
            f"({A.shape[1]} + {B.shape[1]}), got {A.shape[0]}: with fewer, any two spans "
            "overlap. Compare the x-features on more rows."
        )
    m = min(A.shape[1], B.shape[1])
    if m == 0:
        return float("nan")

    def basis(M):
        # unit columns: constant ones are zero (no direction), and scale cannot tip the rank
        u, s, _ = np.linalg.svd(unit_columns(M)[0], full_matrices=False)
        return u[:, s > max(M.shape) * np.finfo(float).eps * max(s.max(initial=0.0), 1.0)]

    rho = np.linalg.svd(basis(A).T @ basis(B), compute_uv=False)
    return float(np.clip(rho, 0.0, 1.0).sum() / m)


def concept_recovery(X, codes):
    """How well the x-features recover planted concepts (Hungarian-matched correlation).

    Matches each planted concept to a distinct x-feature as in
    :func:`matched_correlation` (absolute correlations) and averages over the
    *concepts*; a concept left unmatched (fewer x-features than concepts) counts 0::

        recovery = (1 / n_concepts) max_pi sum_{matched j} |corr(codes_:j, X_:pi(j))|

    Parameters
    ----------
    X : array-like of shape (n_samples, n_components)
        x-features.
    codes : array-like of shape (n_samples, n_concepts)
        Planted concept codes (e.g. from :func:`sklearn_xnn.datasets.make_concept_activations`).

    Returns
    -------
    recovery : float
        In ``[0, 1]``; a constant column of ``X`` or ``codes`` correlates 0 (a concept
        that never varies is not recovered). NaN, with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning`, on a single row, where no
        correlation is defined.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_xnn.metrics import concept_recovery
    >>> codes = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [0.0, 0.0]])
    >>> concept_recovery(np.c_[codes[:, 1], 5 * codes[:, 0]], codes)
    1.0
    >>> concept_recovery(codes[:, :1], codes)
    0.5
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise ValueError(
            f"codes must be 2-D (n_samples, n_concepts) with at least one concept, got shape "
            f"{codes.shape}."
        )
    codes, X = _paired_columns(codes, X)
    if _undefined_correlation("concept_recovery", codes.shape[0]):
        return float("nan")
    _, (_, _, values) = matched_correlation(codes, X, return_pairs=True)
    return float(values.sum() / codes.shape[1])


def _seeded(estimator, seed):
    params = estimator.get_params()
    names = [k for k in params if k == "random_state" or k.endswith("__random_state")]
    return clone(estimator).set_params(**dict.fromkeys(names, seed))


def seed_stability(estimator, Z, y=None, *, seeds=(0, 1, 2), Z_eval=None):
    """Fit under several seeds; Hungarian-matched correlation of x-features across seeds.

    Every ``random_state`` parameter of ``estimator`` (nested ones too, e.g. in a
    :class:`~sklearn.pipeline.Pipeline`) is set to each seed in turn; each fit embeds
    ``Z_eval`` (default ``Z``) and every pair of seeds ``(s, t)`` is scored with
    :func:`matched_correlation`. Estimators without ``predict`` are fitted unsupervised
    (``fit(Z)``); a pipeline ending in a regressor is embedded by its steps before the
    last. A deterministic method scores 1.

    Parameters
    ----------
    estimator : estimator
        Unfitted explainer (SRAEExplainer, PCA, NMF, a headed pipeline, ...).
    Z : array-like of shape (n_samples, n_features)
        Activations to fit on.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        Logits, passed to ``fit`` when the estimator predicts.
    seeds : sequence of int, default=(0, 1, 2)
        At least two seeds.
    Z_eval : array-like of shape (n_eval, n_features), default=None
        Rows the x-features are compared on (held-out rows are the honest choice); at
        least two, since a correlation needs them (checked before any fit).

    Returns
    -------
    result : Bunch
        ``mean`` (mean over pairs), ``min`` (worst pair), ``pairwise`` (``(S, S)`` matrix
        with 1 on the diagonal), ``seeds`` and the fitted ``estimators``.

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> from sklearn_xnn.metrics import seed_stability
    >>> Z, y, _ = make_concept_activations(200, 16, random_state=0)
    >>> round(seed_stability(PCA(3), Z, seeds=[0, 1]).mean, 6)
    1.0
    """
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ValueError(
            f"seeds must be a sequence of at least 2 seeds, e.g. [0, 1, 2]; got {seeds!r}."
        )
    seeds = list(seeds)
    if len(seeds) < 2:
        raise ValueError(f"seed_stability needs at least 2 seeds, got {len(seeds)}.")
    Z_eval = Z if Z_eval is None else Z_eval
    if _num_samples(Z_eval) < 2:
        raise ValueError(
            f"seed_stability compares x-features by their correlation on the rows of Z_eval "
            f"(Z when None) and needs at least two of them, got {_num_samples(Z_eval)}."
        )
    fitted = [fit_explainer(_seeded(estimator, s), Z, y) for s in seeds]
    embeddings = [embed(est, Z_eval) for est in fitted]
    pairwise = np.eye(len(seeds))
    for a, b in combinations(range(len(seeds)), 2):
        pairwise[a, b] = pairwise[b, a] = matched_correlation(embeddings[a], embeddings[b])
    upper = pairwise[np.triu_indices(len(seeds), k=1)]
    return Bunch(
        mean=float(upper.mean()),
        min=float(upper.min()),
        pairwise=pairwise,
        seeds=seeds,
        estimators=fitted,
    )
