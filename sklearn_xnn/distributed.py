"""One fit over several workers: data-parallel training with ``torch.distributed``.

:func:`fit_sharded` trains one :class:`~sklearn_xnn.SRAEExplainer` on activations spread
over the ranks of a process group (started with ``torchrun``): each rank reads only its
own rows, and every rank ends with the same fitted explainer. See the User Guide's
*Scaling out* page.
"""

import hashlib
import numbers
import os

import numpy as np
import torch
from sklearn.utils.validation import _get_feature_names

from sklearn_xnn import _fitting as fitting
from sklearn_xnn._nn import data
from sklearn_xnn._nn.collective import Distributed
from sklearn_xnn._nn.data import resolve_device
from sklearn_xnn._threads import torch_threads
from sklearn_xnn._validation import (
    announce_constant_y,
    check_input_kind,
    host_array,
    n_init_of,
    numeric_conversion,
    warn_user,
)

__all__ = ["fit_sharded", "shard_rows"]

_HOW = (
    "call it in every process of a job started with torchrun, after "
    'torch.distributed.init_process_group("gloo") (CPU) or ("nccl") (one GPU per rank)'
)


def shard_rows(n_samples, rank, world_size):
    """The contiguous rows of ``rank``'s shard: ``slice(rank * n // W, (rank + 1) * n // W)``.

    Parameters
    ----------
    n_samples : int
        Number of rows of the whole data.
    rank : int
        The rank, ``0 <= rank < world_size``.
    world_size : int
        Number of ranks.

    Returns
    -------
    rows : slice
        The shard's rows; the shards of ranks ``0 .. W - 1`` cover ``range(n_samples)`` in
        order.

    Examples
    --------
    >>> from sklearn_xnn.distributed import shard_rows
    >>> [shard_rows(10, r, 3) for r in range(3)]
    [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
    """
    return slice(rank * n_samples // world_size, (rank + 1) * n_samples // world_size)


def fit_sharded(estimator, X, y=None, *, sharded=False, group=None):
    """Fit ``estimator`` on the rows of every rank of a ``torch.distributed`` group.

    Data-parallel training of one explainer: call it in every process of the group with
    the same estimator parameters. Each rank reads only its contiguous shard of ``X``
    (:func:`shard_rows`; a ``numpy.memmap`` is sliced, not copied, and is streamed when
    its shard exceeds ``stream_threshold``). The rescaling, the rank-K linear bound and
    the faithful start are computed from statistics reduced over all ranks (equal to the
    one-process ones up to float rounding); each training step averages the gradients
    over the ranks, as ``DistributedDataParallel`` does, each rank drawing
    ``ceil(batch_size / world_size)`` rows of its shard from its own stream; every
    decision between epochs (the epoch's head, multiplier, feasibility, kept epoch,
    stopping, final head) is taken from reduced
    statistics, so all ranks hold bitwise-identical weights at every step (checked at
    the end). The faithfulness guarantee holds on the union of the shards.

    The result is not bitwise equal to a one-process fit on the same rows (the
    minibatches differ) but as good: same bound, same start, the same kind of training.

    Parameters
    ----------
    estimator : SRAEExplainer
        The explainer to fit, with an integer ``random_state`` (every rank must draw the
        same initialisation), ``n_init=1`` and
        ``early_stopping=False``. With
        ``device="auto"`` (or ``"cuda"``) on a machine with GPUs each rank trains on
        ``cuda:LOCAL_RANK`` (``torch.cuda.set_device`` is called for it).
    X : array-like of shape (n_samples, n_features)
        The activations of all ranks (a ``numpy.memmap`` or any array that slices; a
        torch tensor or a data frame is read as a numpy array), the same on every rank
        (checked on a sample of rows); with ``sharded=True`` this rank's shard only.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        The logits to explain, sharded like ``X``; None fits the unsupervised SRAE.
    sharded : bool, default=False
        Whether ``X`` and ``y`` already hold only this rank's rows (rank ``r``'s shard
        must be the rows that come after those of ranks ``0 .. r - 1``).
    group : ProcessGroup or None, default=None
        The process group; None is the default group.

    Returns
    -------
    estimator : SRAEExplainer
        The fitted explainer, identical on every rank.

    Raises
    ------
    RuntimeError
        If ``torch.distributed`` is not initialised, or the ranks end with different
        weights.
    ValueError
        If a rank's input is refused (a parameter that is invalid or not supported, a
        shard with NaN, infinity, a complex dtype or fewer than 2 rows), or the ranks'
        inputs differ (parameters, number of features or outputs, ``X`` with
        ``sharded=False``). The ranks agree on it in one exchange before any other
        collective, so every rank raises the same error, naming the refused rank(s) and
        why (a rank that raised alone would leave the others waiting in a collective).

    See Also
    --------
    sklearn_xnn.SRAEExplainer.fit : The one-process fit.
    sklearn_xnn.SRAEExplainer.partial_fit : Streaming training in one process.

    Notes
    -----
    ``partial_fit`` has no sharded counterpart; after ``fit_sharded`` the explainer is an
    ordinary fitted explainer (transform, save, ``partial_fit`` in one process). The
    faithful start comes from reduced moments and statistics of every rank's rows; the
    multiplier's starting value is measured on rank 0's first rows. Each rank keeps the
    x-features of all rows (``n_samples * n_components`` numbers) for the fitted state.

    Examples
    --------
    In a script started with ``torchrun --nproc_per_node 2 script.py``::

        import numpy as np, torch.distributed as dist
        from sklearn_xnn import SRAEExplainer
        from sklearn_xnn.distributed import fit_sharded

        dist.init_process_group("gloo")
        X = np.load("activations.npy", mmap_mode="r")  # each rank reads its rows
        y = np.load("logits.npy", mmap_mode="r")
        xnn = fit_sharded(SRAEExplainer(random_state=0), X, y)
        dist.destroy_process_group()

    Outside such a job it says what to do:

    >>> import numpy as np
    >>> from sklearn_xnn import SRAEExplainer
    >>> from sklearn_xnn.distributed import fit_sharded
    >>> fit_sharded(SRAEExplainer(random_state=0), np.ones((4, 2)))
    Traceback (most recent call last):
    ...
    RuntimeError: fit_sharded needs an initialised torch.distributed process group; ...
    """
    dist = _initialised(estimator)
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    X, y, names, mine, refused = _prepare(estimator, X, y, sharded, rank, world)
    shards = _exchange(dist, group, mine)  # the first collective: every rank reaches it
    _check_shards(shards, refused)
    sizes = [s["rows"] for s in shards]
    if max(sizes) > 1.5 * min(sizes):
        warn_user(
            f"fit_sharded: the shards hold {sizes} rows. Every step draws as many rows from "
            "each rank, so a smaller shard's rows are read more often and the fit leans "
            "toward them; give every rank the same number of rows (sharded=False does)."
        )
    comm = Distributed(sizes, estimator.random_state, group)
    with torch_threads():
        run = fitting.start_fit(estimator, X, y, False, collective=comm)
        if y is not None:
            top = np.max([s["y_max"] for s in shards], axis=0)
            low = np.min([s["y_min"] for s in shards], axis=0)
            estimator._constant_outputs = np.where(top == low, top, np.nan)
            announce_constant_y(estimator._constant_outputs, sum(sizes))
        result = fitting.train(estimator, run)
    fitting.finish(estimator, run, result)
    if names is not None:
        estimator.feature_names_in_ = names
    prints = _exchange(dist, group, _fingerprint(estimator))
    if len(set(prints)) != 1:
        raise RuntimeError(
            "fit_sharded: the ranks ended with different weights (fingerprints "
            f"{prints}); run every rank with the same library versions, thread count and "
            "kind of device."
        )
    return estimator


def _initialised(est):
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        _check_estimator(est)  # no rank to tell: an unsupported parameter is raised as is
        raise RuntimeError(
            "fit_sharded needs an initialised torch.distributed process group; " + _HOW + "."
            " To fit in one process, use estimator.fit(X, y)."
        )
    return dist


def _prepare(est, X, y, sharded, rank, world):
    """This rank's ``(X, y)``, feature names, what the ranks must agree on, and the error
    that refused this rank's input (None when usable).

    Every refusal is caught here, before the first collective, and told to the other
    ranks by :func:`_exchange`: a rank that raised alone would leave them waiting in a
    collective until gloo closes the connection, hiding the cause.
    """
    mine = {"params": None, "problem": None, "given": None, "rows": 0, "cols": None}
    names = None
    try:
        _check_estimator(est)
        mine["params"] = _params_of(est)
        _pick_gpu(est)
        names = _get_feature_names(X)  # a data frame's columns, kept as a fit on it keeps them
        X, y = _as_rows(X), None if y is None else _as_rows(y)
        if y is not None and len(y) != _n_rows(X):  # before slicing: the shapes given
            raise ValueError(
                f"y has {len(y)} rows and X {_n_rows(X)}; y needs one row per row of X "
                "(are X and y from the same files, in the same order?)"
            )
        if not sharded:
            mine["given"] = _sample_digest(X)
            rows = shard_rows(_n_rows(X), rank, world)
            X, y = X[rows], None if y is None else y[rows]
        mine.update(_describe(X, y))
    except (ValueError, TypeError, IndexError, RuntimeError) as exc:  # device: RuntimeError
        mine["problem"] = str(exc)
        return X, y, names, mine, exc
    return X, y, names, mine, None


def _check_estimator(est):
    """Refuse an unsupported (:func:`_refuse`) or an invalid parameter."""
    _refuse(est)
    est._validate_params()


def _refuse(est):
    """Parameters a sharded fit does not support, with what to do instead."""
    from sklearn_xnn._srae import SRAEExplainer

    name = type(est).__name__
    if not isinstance(est, SRAEExplainer):
        raise TypeError(f"fit_sharded fits an SRAEExplainer, got {name}.")
    if not isinstance(est.random_state, numbers.Integral) or isinstance(est.random_state, bool):
        raise ValueError(
            f"fit_sharded needs an integer random_state (got {est.random_state!r}): every "
            "rank must draw the same initialisation. Pass e.g. random_state=0."
        )
    if n_init_of(est) != 1:
        raise ValueError(
            f"fit_sharded trains one initialisation; got n_init={est.n_init}. Set n_init=1 "
            "(run fit_sharded once per seed and keep the best)."
        )
    if est.early_stopping:
        raise ValueError(
            "fit_sharded does not hold out validation rows; set early_stopping=False "
            "(n_iter_no_change still stops training on the training objective)."
        )


def _pick_gpu(est):
    """``device="auto"``/``"cuda"`` on a GPU machine: this rank's ``cuda:LOCAL_RANK``; a
    device this rank cannot use is refused here, before the ranks' first exchange."""
    device = resolve_device(est.device)
    if est.device not in ("auto", "cuda") or device.type != "cuda":
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local % torch.cuda.device_count())


def _n_rows(X):
    if not hasattr(X, "shape") or not hasattr(X, "__getitem__"):
        raise TypeError(
            "fit_sharded slices X by rows: pass an array (a numpy.memmap, an ndarray, any "
            f"array with shape and slicing), got {type(X).__name__}."
        )
    return X.shape[0]


def _sample_digest(X):
    """``(n_rows, digest of 16 evenly spaced rows)``: equal on ranks given the same X."""
    n = _n_rows(X)
    picks = np.unique(np.linspace(0, max(n - 1, 0), 16).astype(np.int64)) if n else []
    rows = np.ascontiguousarray(X[picks] if n else np.zeros(0))
    return n, hashlib.sha256(rows.tobytes()).hexdigest()[:16]


def _as_rows(X):
    """A torch tensor (detached: :func:`~sklearn_xnn._validation.host_array`) or a data
    frame as a numpy array; any other array as it is (a memmap stays a memmap)."""
    if isinstance(X, torch.Tensor):
        return host_array(X.detach(), "X")
    return X.to_numpy() if hasattr(X, "columns") or hasattr(X, "to_numpy") else X


def _params_of(est):
    """The parameters every rank must share, as their reprs (the network head is a module)."""
    return {k: repr(v) for k, v in est.get_params().items() if k != "network_head"}


def _describe(X, y):
    """This shard's rows, features and outputs' ranges; raises if ``fit`` would refuse it."""
    n = _n_rows(X)
    if hasattr(X, "tocsr"):
        raise ValueError("X is a scipy sparse matrix; fit_sharded needs dense rows: X.toarray()")
    if not data.should_stream(X):  # without a threshold: whether it can be streamed
        raise ValueError(f"X of type {type(X).__name__} is not a 2-D array")
    out = {"rows": int(n), "cols": int(X.shape[1])}
    if n < 2:
        raise ValueError(f"its shard holds {n} rows; each rank needs at least 2")
    check_input_kind(X, "X")  # what fit's validation refuses by dtype, refused here
    with numeric_conversion("X"):
        for chunk in data.iter_chunks(X):
            if not np.isfinite(chunk).all():
                raise ValueError("X contains NaN or infinity")
    if y is not None:
        y = check_input_kind(y, "y")
        if np.ndim(y) not in (1, 2):  # its row count was checked against X's in _prepare
            raise ValueError(
                f"y has shape {np.shape(y)}; it needs (n_samples,) or (n_samples, n_outputs)"
            )
        Y = np.asarray(y, dtype=np.float64).reshape(n, -1)
        if not np.isfinite(Y).all():
            raise ValueError("y contains NaN or infinity")
        out["y_max"], out["y_min"] = Y.max(axis=0), Y.min(axis=0)
        out["y_ndim"] = np.ndim(y)  # 1-D y gives 1-D predictions: the same on every rank
    return out


def _check_shards(shards, refused=None):
    """Raise the same error on every rank when a rank's input was refused (``refused``:
    this rank's own error, chained) or the ranks' inputs differ."""
    bad = [(r, s["problem"]) for r, s in enumerate(shards) if s["problem"]]
    if bad:
        told = "; ".join(f"rank {r}: {p}" for r, p in bad)
        who = f"rank {bad[0][0]}" if len(bad) == 1 else f"ranks {[r for r, _ in bad]}"
        raise ValueError(
            f"fit_sharded: the input of {who} is refused, and every rank stops ({told})."
        ) from refused
    given = [s["given"] for s in shards]
    if len(set(given)) != 1:
        raise ValueError(
            "fit_sharded(sharded=False) takes each rank's rows from one X that every rank "
            "passes, but the ranks were given different X (rows, digest of sampled rows: "
            f"{given}); pass the same X on every rank, or each rank's own rows with "
            "sharded=True."
        )
    first = shards[0]["params"]
    differ = [k for k in first if any(s["params"].get(k) != first[k] for s in shards)]
    if differ:
        told = "; ".join(
            f"rank {r}: " + ", ".join(f"{k}={s['params'].get(k)}" for k in differ)
            for r, s in enumerate(shards)
        )
        raise ValueError(
            f"fit_sharded: the ranks were given different estimator parameters ({told}); "
            "build the same SRAEExplainer in every rank."
        )
    shapes = [(s["cols"], np.shape(s.get("y_max")), s.get("y_ndim")) for s in shards]
    if len(set(shapes)) != 1:
        ndims = len({d for _, _, d in shapes}) > 1  # said only where they differ
        told = "; ".join(
            f"rank {r}: {c} features, {o[0] if o else 0} outputs"
            + (f" (y {d}-D)" if ndims and d else "")
            for r, (c, o, d) in enumerate(shapes)
        )
        raise ValueError(
            f"fit_sharded: the shards differ in their number of features or outputs ({told})."
        )


def _exchange(dist, group, value):
    """Every rank's ``value`` (a picklable object), in rank order."""
    out = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, value, group=group)
    return out


def _fingerprint(est):
    """A digest of the fitted weights, equal on two ranks exactly when the bits are."""
    h = hashlib.sha256()
    names = ["encoder_coefs_", "encoder_intercepts_", "decoder_coefs_", "decoder_intercepts_"]
    arrays = [a for name in names for a in getattr(est, name)]
    names = ("coef_", "intercept_", "components_")
    arrays += [getattr(est, name) for name in names if hasattr(est, name)]
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
