"""Input checks shared by the estimators.

scikit-learn's ``validate_data`` does the standard work (2-D, finite, enough samples,
feature count and names); the helpers here add what it does not say clearly for this
library: complex, string and sparse inputs, float16, overflowing outputs.
"""

import contextlib
import os
import sys
import warnings
from collections.abc import Iterable
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import sklearn
import torch
from sklearn.utils._param_validation import HasMethods, Hidden, Interval, StrOptions
from sklearn.utils.validation import check_array, check_consistent_length, validate_data

from sklearn_xnn._nn.data import should_stream

#: Frames of these folders are the library's (and scikit-learn's, which calls it), not
#: the user's: :func:`warn_user` attributes a warning to the first frame outside them.
_LIBRARY_DIRS = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(os.path.abspath(sklearn.__file__)) + os.sep,
)


def warn_user(message, category=UserWarning):
    """``warnings.warn`` pointing at the user's line: the first calling frame outside
    sklearn_xnn and scikit-learn (whose ``fit`` wrappers sit in between)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _dtypes_of(data):
    """The numpy dtype(s) of an array, a series or a data frame, without copying it: a
    pandas extension dtype as the numpy dtype it holds (strings as ``str``); unknown
    dtypes are left out."""
    dtypes = getattr(data, "dtypes", None)  # a data frame's: one per column
    if dtypes is None or not isinstance(dtypes, Iterable) or isinstance(dtypes, str):
        dtypes = [getattr(data, "dtype", None)]
    out = []
    for d in dtypes:
        if getattr(d, "type", None) is str:  # pandas' string dtypes
            d = np.dtype(str)
        d = d if isinstance(d, np.dtype) else getattr(d, "numpy_dtype", None)
        if isinstance(d, np.dtype):
            out.append(d)
    return out


def host_array(data, name):
    """``data``, a torch tensor as the numpy array it holds (no copy on the CPU, so a
    float32 tensor stays float32; bfloat16, which numpy lacks, as float32); a tensor that
    requires grad is refused. Anything else as it is."""
    if not isinstance(data, torch.Tensor):
        return data
    if data.requires_grad:
        raise TypeError(
            f"{name} is a torch tensor that requires grad; SRAEExplainer reads values, "
            f"not the graph: pass {name}.detach() (or extract it under torch.no_grad())."
        )
    data = data.cpu()
    return (data.float() if data.dtype == torch.bfloat16 else data).numpy()


def check_input_kind(data, name):
    """Refuse complex, string and (for ``y``) sparse data with a message that names the fix;
    returns ``data``, a torch tensor as the numpy array it holds (:func:`host_array`).

    ``name`` is "X" or "y". scikit-learn refuses a sparse ``X`` itself with a message
    telling to call ``.toarray()``.
    """
    if name == "y" and sp.issparse(data):
        raise TypeError(
            "y is a scipy sparse matrix, but SRAEExplainer needs dense logits; pass y.toarray()."
        )
    data = host_array(data, name)
    kinds = {d.kind for d in _dtypes_of(data)}
    if "c" in kinds:
        raise ValueError(
            f"Complex data not supported: {name} has a complex dtype; SRAEExplainer needs "
            f"real values. Pass {name}.real (or np.abs({name})) explicitly."
        )
    if kinds & {"U", "S"}:
        what = "activations" if name == "X" else "network outputs (logits), not class labels"
        raise ValueError(
            f"{name} has a string dtype; SRAEExplainer needs numeric {what}. Convert it "
            f"with np.asarray({name}, dtype=float) if it holds numbers."
        )
    shape = getattr(data, "shape", None)
    if name == "y" and shape is not None and len(shape) > 2:
        raise ValueError(
            f"y must have shape (n_samples,) or (n_samples, n_outputs); got shape {shape}."
        )
    if name == "y" and shape is not None and len(shape) == 1 and kinds and kinds <= {"i", "u", "b"}:
        warn_user(f"y is one column of integers: {_LABELS}; y is fitted as one numeric output.")
    return data


_LABELS = (
    "it looks like class labels. SRAEExplainer explains the network's outputs (its logits, "
    "one column per class, e.g. from sklearn_xnn.torch.extract_activations)"
)


def float_dtypes(data):
    """``dtype`` argument for ``validate_data``: float16 is computed as float32.

    float32 and float64 are kept; float16 becomes float32; anything else (integers,
    booleans, objects, longdouble) becomes float64.
    """
    dtypes = _dtypes_of(data)
    if dtypes and all(d == np.float16 for d in dtypes):
        return [np.float32, np.float64]
    return [np.float64, np.float32]


@contextlib.contextmanager
def numeric_conversion(name="X"):
    """Re-raise numpy's "could not convert string to float" with the cause and the fix."""
    try:
        yield
    except ValueError as exc:
        if "could not convert" not in str(exc):
            raise
        raise ValueError(
            f"Non-numeric values in {name}: {exc}. SRAEExplainer needs numbers; encode or "
            "drop the non-numeric columns first."
        ) from exc


def finite_output(out, dtype, X, method):
    """Cast ``out`` to ``dtype``; refuse non-finite results of finite input (overflow)."""
    with np.errstate(over="ignore"):
        out = out.astype(dtype, copy=False)
    if not np.isfinite(out).all():
        peak = float(np.max(np.abs(X))) if X.size else 0.0
        raise ValueError(
            f"{method} overflowed to non-finite values in {np.dtype(dtype).name}: the input's "
            f"magnitude (max |X| = {peak:.3g}) is far outside what the fitted network can "
            "map. Rescale the input to the range seen at fit (or pass float64)."
        )
    return out


def validate_fit_data(est, X, y):
    """``(X, Y)`` for ``fit``: ``Y`` 2-D float32 or float64 (as given; other numbers as
    float64) or None; a streamed ``X`` is left in place. Sets ``_y_1d`` and
    ``_constant_outputs`` (each output's value where it is constant on these rows, NaN
    where it varies), warns when ``y`` looks like one-hot class labels, and refuses
    ``faithfulness="kl"`` without two or more outputs (it compares softmax distributions)."""
    X = check_input_kind(X, "X")
    if should_stream(X, est.stream_threshold):
        X, y = _validate_streamed(est, X, y)
    elif y is None:
        with numeric_conversion("X"):
            X = validate_data(est, X, dtype=float_dtypes(X), ensure_min_samples=2)
    else:
        y = check_input_kind(y, "y")
        with numeric_conversion("X or y"):
            X, y = validate_data(
                est,
                X,
                y,
                dtype=float_dtypes(X),
                multi_output=True,
                y_numeric=True,
                ensure_min_samples=2,
            )
    Y = None
    if y is not None:
        y = np.asarray(y)  # float32 stays float32: no float64 copy of many outputs
        y = y if y.dtype in (np.float32, np.float64) else y.astype(np.float64)
        est._y_1d = y.ndim == 1
        Y = y.reshape(X.shape[0], -1)
        est._constant_outputs = np.where(np.ptp(Y, axis=0) == 0, Y[0], np.nan)
        head = Y[:1000]  # enough rows to tell labels from logits
        if Y.shape[1] > 1 and ((head == 0) | (head == 1)).all() and (head.sum(axis=1) == 1).all():
            warn_user(
                f"y holds one-hot rows (a single 1 in each): {_LABELS}; y is fitted as given."
            )
    n_outputs = 0 if Y is None else Y.shape[1]
    if est.faithfulness == "kl" and n_outputs < 2:
        raise ValueError(
            'faithfulness="kl" compares the softmax of the logits, so it needs y with at '
            f"least 2 columns (one logit per class); got {n_outputs}. Pass the network's logits, "
            'or use faithfulness="mse".'
        )
    return X, Y


def announce_constant_y(constant_outputs, n_rows):
    """Warn when every output is constant on the fit's rows (of every rank's shard):
    ``constant_outputs`` holds each output's value where it is constant, NaN elsewhere."""
    if n_rows > 1 and not np.isnan(constant_outputs).any():
        warn_user(
            "y is the same on every row (every output is constant): there is nothing to "
            "explain, and any explainer rebuilds it exactly (score 1.0). Pass the logits "
            "of different inputs."
        )


def _validate_streamed(est, X, y):
    """``(X, y)`` checked for a streamed ``X``: ``X`` on its first rows (NaN/inf are
    checked while streaming), ``y`` whole."""
    with numeric_conversion("X"):
        validate_data(est, np.asarray(X[:2]), dtype=float_dtypes(X), ensure_min_samples=2)
    try:  # training reads minibatches of scattered rows, in increasing order
        np.asarray(X[np.array([0, X.shape[0] - 1])])
    except Exception as exc:
        raise ValueError(
            f"X is streamed (its float32 copy would exceed stream_threshold), and training "
            f"reads minibatches of scattered rows, X[rows] with an increasing integer array, "
            f"which this {type(X).__name__} refuses ({exc}). Pass a numpy.memmap, or an array "
            "that takes integer arrays of rows, or a larger stream_threshold to load X."
        ) from exc
    if y is None:
        return X, None
    y = check_input_kind(y, "y")
    with numeric_conversion("y"):
        y = check_array(y, ensure_2d=False, dtype=[np.float64, np.float32], input_name="y")
    check_consistent_length(X, y)
    return X, y


def validate_chunk(est, X, y):
    """``(X, Y)`` of a later ``partial_fit`` chunk, checked against the fitted explainer
    (and its parameters against those it was fitted with: ``_fixed_params_``)."""
    fixed, now = getattr(est, "_fixed_params_", {}), est.get_params(deep=False)
    changed = [f"{k}={v!r} -> {now[k]!r}" for k, v in fixed.items() if _same(v) != _same(now[k])]
    if changed:
        raise ValueError(
            f"partial_fit continues the explainer as it was first fitted, but {', '.join(changed)} "
            "changed since (the network's shape, scale and constraint stay those of the first "
            "fit). Set them back, or call fit to start over with the new values."
        )
    X = check_input_kind(X, "X")
    y = None if y is None else check_input_kind(y, "y")
    if (y is None) == est._has_head:
        given = "without" if y is None else "with"
        raise ValueError(
            f"partial_fit was called {given} y, but the explainer was first fitted "
            f"{'with' if est._has_head else 'without'} it; give y on every call or on none."
        )
    with numeric_conversion("X or y"):
        if y is None:
            return validate_data(est, X, reset=False, dtype=float_dtypes(X)), None
        X, y = validate_data(
            est, X, y, reset=False, dtype=float_dtypes(X), multi_output=True, y_numeric=True
        )
    Y = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
    if Y.shape[1] != est.coef_.shape[0]:
        raise ValueError(
            f"y has {Y.shape[1]} outputs, but the explainer was fitted on "
            f"{est.coef_.shape[0]}; every chunk must have the same outputs."
        )
    return X, Y


def _same(value):
    """A parameter's value in a comparable form (a list or array of widths as a tuple)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(np.asarray(value).tolist())
    return value


#: The fraction of the reachable faithfulness that ``n_components="auto"`` asks for.
AUTO_FRACTION = 0.98


def check_params_vs_input(est, n_samples, incremental=False):
    """Cross-parameter rules; returns ``(n_val, batch_size, k, fraction)`` and sets
    ``_hidden`` (None for ``"auto"``, whose widths follow the number of x-features: see
    :func:`check_widths`, applied once that number is chosen). ``(k, fraction)`` is
    ``n_components`` read: a fixed number of x-features, or the fraction of the
    reachable faithfulness that decides it (``"auto"``: :data:`AUTO_FRACTION`, or a
    float in ``(0, 1)``)."""
    sizes = est.hidden_layer_sizes
    est._hidden = None
    if not isinstance(sizes, str):  # "auto" is the only word the parameter validation lets in
        sizes = np.atleast_1d(np.asarray(sizes))
        if sizes.ndim != 1 or sizes.size == 0 or not np.issubdtype(sizes.dtype, np.integer):
            raise ValueError(
                "hidden_layer_sizes must be a non-empty tuple of positive ints, got "
                f"{est.hidden_layer_sizes!r}."
            )
        if (sizes < 1).any():
            raise ValueError(
                f"hidden_layer_sizes must be positive, got {est.hidden_layer_sizes!r}."
            )
        est._hidden = tuple(int(s) for s in sizes)
    if est.collapse_retries != "deprecated":
        warn_user(
            "collapse_retries is deprecated in 0.2 and has no effect (the collapse guard "
            "was removed); it will be removed in 0.4. Do not pass it.",
            FutureWarning,
        )
    early = est.early_stopping and not incremental
    n_val = int(np.ceil(est.validation_fraction * n_samples)) if early else 0
    if early and (n_val < 1 or n_samples - n_val < 2):
        raise ValueError(
            f"early_stopping with validation_fraction={est.validation_fraction} needs at "
            f"least 2 training rows and 1 validation row; got n_samples={n_samples}. "
            "Pass more samples or set early_stopping=False."
        )
    n = est.n_components
    if isinstance(n, str):  # "auto"
        k, fraction = None, AUTO_FRACTION
    elif isinstance(n, Real) and not isinstance(n, Integral):
        k, fraction = None, float(n)
    else:
        k, fraction = int(n), None
    return n_val, min(est.batch_size, n_samples - n_val), k, fraction


def n_init_of(est):
    """The number of initialisations ``est`` fits: ``n_init``, with the deprecated
    ``"auto"`` read as 1 (and a FutureWarning)."""
    if est.n_init != "auto":
        return int(est.n_init)
    warn_user(
        "n_init='auto' is deprecated in 0.2 and will be removed in 0.4; it now fits one "
        "initialisation, as n_init=1 (the default) does: the start is deterministic. Pass "
        "an integer.",
        FutureWarning,
    )
    return 1


def check_widths(est, n_features):
    """Set the widths of ``hidden_layer_sizes="auto"`` (``_hidden`` None) for ``K``
    x-features and ``D = n_features`` input units, and refuse a hidden layer narrower
    than ``K``.

    ``"auto"`` is ``(max(64, 4 K), max(32, 2 K))``, each width capped at the paper's
    ``(800, 100)`` and at ``2 D``, but never below ``2 K``. Every hidden layer carries the
    start's ``K`` directions as ``relu(p), relu(-p)`` pairs (``2 K`` units); its units
    beyond those are free capacity; ``2 D`` units already carry the whole input exactly.
    Wider layers only add cost to every step (``benchmarks/README.md`` has the
    measurements behind these widths). A layer narrower than ``K`` would silently make
    the start (and the guarantee) unreachable."""
    if est._hidden is None:
        k = int(est._n_components)
        est._hidden = (
            max(2 * k, min(800, 2 * n_features, max(64, 4 * k))),
            max(2 * k, min(100, 2 * n_features, max(32, 2 * k))),
        )
    narrow = [w for w in est._hidden if w < est._n_components]
    if narrow:
        raise ValueError(
            f"hidden_layer_sizes={tuple(est._hidden)} has a layer of {min(narrow)} units, "
            f"fewer than the {est._n_components} x-features: every hidden layer needs at "
            f"least n_components units (2 * n_components carry the faithful start exactly). "
            'Widen the layers, or use hidden_layer_sizes="auto".'
        )


#: ``SRAEExplainer``'s parameter constraints (scikit-learn's parameter validation).
PARAMETER_CONSTRAINTS = {
    "n_components": [
        Interval(Integral, 1, None, closed="left"),
        Interval(Real, 0, 1, closed="neither"),
        StrOptions({"auto"}),
    ],
    "hidden_layer_sizes": ["array-like", StrOptions({"auto"})],
    "faithfulness": [StrOptions({"mse", "kl"})],
    "multioutput": [StrOptions({"uniform_average", "variance_weighted"})],
    "temperature": [Interval(Real, 0, None, closed="neither")],
    "faithfulness_tol": [Interval(Real, 0, None, closed="left"), None],
    "network_head": [HasMethods(["forward"]), None],
    "alpha_faithfulness": [Interval(Real, 0, None, closed="left")],
    "alpha_reconstruction": [Interval(Real, 0, None, closed="left")],
    "alpha_pullaway": [Interval(Real, 0, None, closed="left")],
    "reconstruction": [StrOptions({"log", "mse"})],
    "log_penalty": [Interval(Real, 0, None, closed="neither")],
    "pullaway": [StrOptions({"samples", "components"})],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "pretrain": [Interval(Integral, 0, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
    "collapse_retries": [
        Interval(Integral, 0, None, closed="left"),
        Hidden(StrOptions({"deprecated"})),
    ],
    "rescale": ["boolean"],
    "device": [str],
    "precision": [StrOptions({"float32", "bf16"})],
    "compile": ["boolean"],
    "stream_threshold": [Interval(Integral, 0, None, closed="left")],
    "n_init": [
        Interval(Integral, 1, None, closed="left"),
        StrOptions({"auto"}, deprecated={"auto"}),
    ],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}
