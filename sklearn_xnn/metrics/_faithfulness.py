"""Faithfulness of rebuilt logits and quality of rebuilt activations: pure array functions.

Notation: ``n`` rows, ``C`` outputs (logits), ``D`` activation units; ``y`` the network's
logits, ``y_hat`` the explainer's linear rebuild; ``z`` activations, ``z_hat`` their rebuild.
"""

import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils.validation import _check_sample_weight

_MULTIOUTPUT = ("uniform_average", "variance_weighted", "raw_values")


def _as_2d_pair(y_true, y_pred, name, labels=("y_true", "y_pred")):
    """Both arrays as finite float64 ``(n, C)`` of the same shape, ``n >= 1``, or a
    ValueError naming the metric ``name`` and the arguments (``labels``)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    first, second = labels
    if y_true.ndim not in (1, 2) or y_pred.ndim not in (1, 2):
        raise ValueError(
            f"{name} expects 1-D or 2-D arrays, got ndim {y_true.ndim} and {y_pred.ndim}."
        )
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            f"{name}: {first} and {second} must have the same number of rows, got shapes "
            f"{y_true.shape} and {y_pred.shape}."
        )
    if y_true.shape[0] == 0:
        raise ValueError(f"{name} needs at least one row, got 0.")
    y_true = y_true.reshape(y_true.shape[0], -1)
    y_pred = y_pred.reshape(y_pred.shape[0], -1)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{name}: {first} and {second} must have the same shape, got {y_true.shape} "
            f"and {y_pred.shape}."
        )
    for what, a in ((first, y_true), (second, y_pred)):
        _check_finite(a, f"{name}: {what}")
    return y_true, y_pred


def _check_finite(a, what):
    """Refuse NaN and infinity: a metric of them would be a plausible-looking number."""
    if not np.isfinite(a).all():
        bad = "NaN" if np.isnan(a).any() else "infinity"
        raise ValueError(f"{what} contains {bad}; metrics need finite values.")


def _row_weights(sample_weight, n_samples):
    """``sample_weight`` for ``n_samples`` rows as float64 ``(n_samples,)`` after sklearn's
    checks (finite, non-negative, not all zero); ones when None, so that one formula
    serves weighted and unweighted rows alike."""
    rows = np.empty((n_samples, 0))  # all that _check_sample_weight reads: the row count
    return _check_sample_weight(sample_weight, rows, dtype=np.float64, ensure_non_negative=True)


def _check_multioutput(multioutput):
    if multioutput not in _MULTIOUTPUT:
        raise ValueError(f"multioutput must be one of {_MULTIOUTPUT}, got {multioutput!r}.")


def _undefined_on_one_row(name, n_rows, n_outputs, multioutput):
    """NaN (per output for ``"raw_values"``) with an ``UndefinedMetricWarning`` when
    there are fewer than two rows, as :func:`sklearn.metrics.r2_score`: one row has no
    variance about its mean, so ``ss_tot`` is 0 and the ratio has no value. None
    otherwise."""
    if n_rows >= 2:
        return None
    warnings.warn(
        f"{name} is not well-defined with less than two samples (one row has no variance "
        "about its mean); returning NaN.",
        UndefinedMetricWarning,
        stacklevel=3,
    )
    return np.full(n_outputs, np.nan) if multioutput == "raw_values" else float("nan")


def _r2_from_sums(ss_res, ss_tot, multioutput):
    """Per-output ``1 - ss_res / ss_tot`` with sklearn's conventions for constant outputs;
    ``"variance_weighted"`` pools the sums (``1 - sum res / sum tot``)."""
    _check_multioutput(multioutput)
    if multioutput == "variance_weighted":
        res, tot = ss_res.sum(), ss_tot.sum()
        if tot == 0:
            return 1.0 if res == 0 else 0.0
        return float(1.0 - res / tot)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)
    scores = np.where((ss_tot == 0) & (ss_res == 0), 1.0, scores)
    return scores if multioutput == "raw_values" else float(scores.mean())


def overflow_safe_scale(y):
    """1, or for logits whose sums of squares could leave float64's range (beyond
    ``1e150`` or within ``1e-150``) their largest magnitude: R² is the same for ``y /
    scale``."""
    peak = float(np.abs(y).max()) if y.size and np.isfinite(y).all() else 0.0
    return peak if peak > 1e150 or 0 < peak < 1e-150 else 1.0


def _sums_of_squares(y, y_hat, w):
    """Per column ``ss_res = sum_i w_i (y_ic - y_hat_ic)^2`` and ``ss_tot = sum_i w_i
    (y_ic - ybar_c)^2``, ``ybar_c = sum_i w_i y_ic / sum_i w_i``, on a common scale that
    keeps them finite (:func:`overflow_safe_scale`; the same R²)."""
    scale = overflow_safe_scale(y)
    if scale != 1.0:
        y, y_hat = y / scale, y_hat / scale
    w = w[:, None]
    mean = (w * y).sum(axis=0) / w.sum()
    return (w * (y - y_hat) ** 2).sum(axis=0), (w * (y - mean) ** 2).sum(axis=0)


def faithfulness_r2(y_true, y_pred, *, sample_weight=None, multioutput="uniform_average"):
    """Coefficient of determination of the rebuilt logits.

    For each output ``c``, with row weights ``w_i`` (1 without ``sample_weight``)::

        R2_c = 1 - sum_i w_i (y_ic - y_hat_ic)^2 / sum_i w_i (y_ic - ybar_c)^2,
        ybar_c = sum_i w_i y_ic / sum_i w_i

    averaged over outputs (``"uniform_average"``, what :meth:`SRAEExplainer.score` and
    :func:`sklearn.metrics.r2_score` report), weighted by each output's variance
    (``"variance_weighted"``, ``sum_c tot_c R2_c / sum_c tot_c``: ``1 - sum_ic res /
    sum_ic tot`` when no output is constant) or returned per output (``"raw_values"``).
    A constant output scores 1 when rebuilt exactly and 0 otherwise (sklearn's
    ``force_finite`` convention); it weighs 0 in ``"variance_weighted"``, unless every
    output is constant (then the outputs weigh alike). Predicting each output's mean
    gives 0; a perfect rebuild gives 1; worse than the mean is negative. With fewer than
    two rows there is no variance to explain (``tot_c = 0``): NaN (one per output for
    ``"raw_values"``) and an :class:`~sklearn.exceptions.UndefinedMetricWarning`, as
    :func:`~sklearn.metrics.r2_score`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The network's logits.
    y_pred : array-like of the same shape
        The explainer's rebuilt logits.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative row weights, not all zero; an integer weight counts as that many
        copies of the row, as in :func:`~sklearn.metrics.r2_score`. None weighs the rows
        alike.
    multioutput : {"uniform_average", "variance_weighted", "raw_values"}, \
            default="uniform_average"
        How to combine outputs.

    Returns
    -------
    score : float or ndarray of shape (n_outputs,)
        R²; NaN on fewer than two rows.

    See Also
    --------
    sklearn.metrics.r2_score : The same quantity (this function agrees with it, including
        constant outputs, single rows and weights).

    Examples
    --------
    >>> from sklearn_xnn.metrics import faithfulness_r2
    >>> faithfulness_r2([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    0.5
    """
    y, y_hat = _as_2d_pair(y_true, y_pred, "faithfulness_r2")
    w = _row_weights(sample_weight, len(y))
    _check_multioutput(multioutput)
    undefined = _undefined_on_one_row("faithfulness_r2", *y.shape, multioutput)
    if undefined is not None:
        return undefined
    ss_res, ss_tot = _sums_of_squares(y, y_hat, w)
    scores = _r2_from_sums(ss_res, ss_tot, "raw_values")
    if multioutput == "raw_values":
        return scores
    # r2_score's weights: the outputs' variances, alike when every output is constant
    weights = ss_tot if multioutput == "variance_weighted" and ss_tot.any() else None
    return float(np.average(scores, weights=weights))


def faithfulness_rmse(y_true, y_pred):
    """Root mean squared error of the rebuilt logits, pooled over rows and outputs.

    ``RMSE = sqrt( (1 / (n C)) sum_i sum_c (y_ic - y_hat_ic)^2 )``, in the logits' units.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The network's logits.
    y_pred : array-like of the same shape
        The rebuilt logits.

    Returns
    -------
    rmse : float
        Non-negative; 0 for a perfect rebuild.

    Examples
    --------
    >>> from sklearn_xnn.metrics import faithfulness_rmse
    >>> faithfulness_rmse([[0.0, 0.0], [0.0, 0.0]], [[1.0, -1.0], [1.0, -1.0]])
    1.0
    """
    y, y_hat = _as_2d_pair(y_true, y_pred, "faithfulness_rmse")
    return float(np.sqrt(np.mean((y - y_hat) ** 2)))


def _need_classes(y, name):
    if y.shape[1] < 2:
        raise ValueError(
            f"{name} needs at least 2 outputs (a row of logits per input); got "
            f"{y.shape[1]}. With one logit there is no class to agree on."
        )


def top1_agreement(y_true, y_pred, *, sample_weight=None):
    """Fraction of inputs whose rebuilt logits rank the same class first.

    ``top1 = sum_i w_i [argmax_c y_hat_ic == argmax_c y_ic] / sum_i w_i`` with row
    weights ``w_i`` (1 without ``sample_weight``: the plain fraction); ties go to the
    first maximal index (numpy's ``argmax``).

    Parameters
    ----------
    y_true : array-like of shape (n_samples, n_outputs)
        The network's logits, ``n_outputs >= 2``.
    y_pred : array-like of shape (n_samples, n_outputs)
        The rebuilt logits.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative row weights, not all zero; an integer weight counts as that many
        copies of the row. None weighs the rows alike.

    Returns
    -------
    agreement : float
        In ``[0, 1]``.

    Examples
    --------
    >>> from sklearn_xnn.metrics import top1_agreement
    >>> top1_agreement([[3.0, 1.0], [0.0, 2.0]], [[2.0, 1.5], [1.0, 0.5]])
    0.5
    """
    y, y_hat = _as_2d_pair(y_true, y_pred, "top1_agreement")
    w = _row_weights(sample_weight, len(y))
    _need_classes(y, "top1_agreement")
    return float(np.average(y.argmax(axis=1) == y_hat.argmax(axis=1), weights=w))


def _log_softmax(a):
    a = a - a.max(axis=1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=1, keepdims=True))


def softmax_kl(y_true, y_pred, *, sample_weight=None, temperature=1.0):
    """Mean Kullback-Leibler divergence from the network's softmax to the rebuilt one.

    With ``p_i = softmax(y_i / T)``, ``q_i = softmax(y_hat_i / T)`` and row weights
    ``w_i`` (1 without ``sample_weight``: the plain mean)::

        KL = sum_i w_i sum_c p_ic (log p_ic - log q_ic) / sum_i w_i

    in nats, computed from log-softmaxes (stable for large logits).

    Parameters
    ----------
    y_true : array-like of shape (n_samples, n_outputs)
        The network's logits, ``n_outputs >= 2``.
    y_pred : array-like of shape (n_samples, n_outputs)
        The rebuilt logits.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative row weights, not all zero; an integer weight counts as that many
        copies of the row. None weighs the rows alike.
    temperature : float, default=1.0
        The softmax temperature ``T > 0`` (larger values weigh the non-top classes more).

    Returns
    -------
    kl : float
        Non-negative; 0 when the softmaxes agree (e.g. logits equal up to a per-row shift).

    Examples
    --------
    >>> from sklearn_xnn.metrics import softmax_kl
    >>> softmax_kl([[1.0, 2.0]], [[11.0, 12.0]])
    0.0
    """
    y, y_hat = _as_2d_pair(y_true, y_pred, "softmax_kl")
    w = _row_weights(sample_weight, len(y))
    _need_classes(y, "softmax_kl")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    log_p, log_q = _log_softmax(y / temperature), _log_softmax(y_hat / temperature)
    kl = np.average((np.exp(log_p) * (log_p - log_q)).sum(axis=1), weights=w)
    return float(max(kl, 0.0))


def reconstruction_r2(Z, Z_hat, *, sample_weight=None):
    """Pooled R² of rebuilt activations, against each unit's own mean.

    With row weights ``w_i`` (1 without ``sample_weight``)::

        R2 = 1 - sum_ij w_i (z_ij - z_hat_ij)^2 / sum_ij w_i (z_ij - zbar_j)^2,
        zbar_j = sum_i w_i z_ij / sum_i w_i

    the fraction of the activations' total variance (about per-dimension means) that the
    rebuild captures. Units with more variance weigh more, as in
    ``sklearn.metrics.r2_score(Z, Z_hat, sample_weight=sample_weight,
    multioutput="variance_weighted")``, which it agrees with, except for a constant unit
    rebuilt wrongly: sklearn gives that unit weight 0, the pooled formula counts its
    error in the residual. All of ``Z`` constant: 1 when rebuilt exactly, else 0. On
    fewer than two rows there is no variance about the mean (a zero denominator): NaN
    with an :class:`~sklearn.exceptions.UndefinedMetricWarning`, as sklearn's.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Activations.
    Z_hat : array-like of shape (n_samples, n_features)
        Their rebuild (e.g. ``inverse_transform(transform(Z))``).
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative row weights, not all zero; an integer weight counts as that many
        copies of the row, as in :func:`~sklearn.metrics.r2_score`. None weighs the rows
        alike.

    Returns
    -------
    score : float
        At most 1; NaN on fewer than two rows.

    Examples
    --------
    >>> from sklearn_xnn.metrics import reconstruction_r2
    >>> reconstruction_r2([[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [1.0, 2.0]])
    0.0
    """
    Z, Z_hat = _as_2d_pair(Z, Z_hat, "reconstruction_r2", ("Z", "Z_hat"))
    w = _row_weights(sample_weight, len(Z))
    undefined = _undefined_on_one_row("reconstruction_r2", *Z.shape, "variance_weighted")
    if undefined is not None:
        return undefined
    return _r2_from_sums(*_sums_of_squares(Z, Z_hat, w), "variance_weighted")


def reconstruction_explained_variance(Z, Z_hat):
    """Pooled explained variance of rebuilt activations.

    ``EV = 1 - sum_j Var_i(z_ij - z_hat_ij) / sum_j Var_i(z_ij)``. Unlike
    :func:`reconstruction_r2` it ignores a constant offset of the rebuild (a biased
    decoder is not penalised). Agrees with
    ``sklearn.metrics.explained_variance_score(Z, Z_hat, multioutput="variance_weighted")``
    except where a unit of ``Z`` is constant: sklearn gives such a unit weight 0, the
    pooled formula counts the variance of its error in the residual. All of ``Z``
    constant: 1 when the error is constant too, else 0. On fewer than two rows both
    variances are 0 (``0 / 0``): NaN with an
    :class:`~sklearn.exceptions.UndefinedMetricWarning` (sklearn returns 1 there, the
    constant-unit convention, which would read as a perfect rebuild of any single row).

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Activations.
    Z_hat : array-like of shape (n_samples, n_features)
        Their rebuild.

    Returns
    -------
    score : float
        At most 1; NaN on fewer than two rows.

    Examples
    --------
    >>> from sklearn_xnn.metrics import reconstruction_explained_variance
    >>> reconstruction_explained_variance([[0.0], [2.0]], [[1.0], [3.0]])
    1.0
    """
    Z, Z_hat = _as_2d_pair(Z, Z_hat, "reconstruction_explained_variance", ("Z", "Z_hat"))
    undefined = _undefined_on_one_row(
        "reconstruction_explained_variance", *Z.shape, "variance_weighted"
    )
    if undefined is not None:
        return undefined
    scale = overflow_safe_scale(Z)  # the same ratio, with variances in float64's range
    Z, Z_hat = Z / scale, Z_hat / scale
    ss_res = np.var(Z - Z_hat, axis=0)
    ss_tot = np.var(Z, axis=0)
    return _r2_from_sums(ss_res, ss_tot, "variance_weighted")
