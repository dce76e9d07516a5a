"""The rescaling of training data, owned by one object.

Training sees ``Z / scale`` (one scalar: the root mean square of ``Z``, which keeps
non-negative activations non-negative) and ``(y - y_mean) / y_scale`` (each output
standardised). :class:`Scaler` computes those statistics (in memory or by streaming
``Z``), moves the scaled data to the training device, and folds the scalings into the
fitted weights and out of them again, so that the fitted model answers in the caller's
units. Every magnitude is computed overflow-safe: activations and logits up to the
float64 limits rescale into float32's comfortable range.
"""

import dataclasses
import math

import numpy as np
import torch

from sklearn_xnn._nn import data
from sklearn_xnn._nn.collective import LOCAL

FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Beyond this magnitude float64 activations are divided before the float32 cast.
_SAFE_CAST = (1e-30, 1e30)


def check_float32_range(peak, name, rescale):
    """Training computes in float32: refuse values it cannot represent, and say the fix."""
    if peak > FLOAT32_MAX:
        fix = "use rescale=True (the default) or " if not rescale else ""
        raise ValueError(
            f"{name} has values up to {peak:.3g}, beyond the float32 range ({FLOAT32_MAX:.3g}) "
            f"that training computes in; {fix}divide {name} by a constant first."
        )


#: A later ``partial_fit`` chunk whose largest value is this many times the first
#: chunk's scale (its root mean square) is refused: a chunk in other units.
MAX_CHUNK_PEAK = 1e6

#: Training computes in float32 (about 7 significant digits): rows that vary about their
#: mean by less than this share of their magnitude lose that variation to rounding, and so
#: do units whose spread is this share of the largest unit's or less (as a product sums
#: them with it).
MIN_RELATIVE_SPREAD = 1e-4
#: Units whose spread is this share of the largest unit's or less are lost even to the
#: float64 moments of the bound (their eigenvalues fall below float64's resolution of the
#: largest), however few they are.
LOST_SPREAD = 1e-6


def activation_problem(moments):
    """What is wrong with the training activations ``Z`` (``moments``:
    :class:`~sklearn_xnn._nn.bound.Moments` of them), and what to do; None when nothing.

    Constant rows leave nothing to explain. Float32 training loses the rows' variation
    when they vary by less than :data:`MIN_RELATIVE_SPREAD` of their magnitude
    (activations with a large common offset), and the units' when their median spread
    is that share of the largest unit's or less (a few units on a scale of their own);
    the float64 bound loses any unit whose spread is :data:`LOST_SPREAD` of the
    largest's or less."""
    if moments is None or not moments.n:
        return None
    variance = float(torch.trace(moments.zz)) / moments.n
    magnitude = variance + float(moments.z_mean.square().sum())
    if variance <= 0:
        return (
            "X is the same on every training row: there is nothing to explain, and every "
            "x-feature is constant. Pass the activations of different inputs."
        )
    if variance < MIN_RELATIVE_SPREAD**2 * magnitude:
        return (
            f"X varies about its column means by {math.sqrt(variance / magnitude):.2g} of "
            "its magnitude: training computes in float32, whose 7 significant digits lose "
            "most of that variation. Subtract the column means (or any common offset) from "
            "X first, e.g. with sklearn.preprocessing.StandardScaler(with_std=False)."
        )
    spread = torch.diagonal(moments.zz).clamp_min(0.0).sqrt()
    varying = spread[spread > 0]
    typical, smallest, largest = float(varying.median()), float(varying.min()), float(spread.max())
    if typical < MIN_RELATIVE_SPREAD * largest:
        lost = f"{largest / typical:.2g} times the median unit's): training computes in float32"
    elif smallest < LOST_SPREAD * largest:
        lost = f"{largest / smallest:.2g} times the smallest's): even the float64 bound"
    else:
        return None
    return (
        f"X's units vary on very different scales (the largest spread is {lost}, whose "
        "significant digits lose most of the smaller units' variation beside the largest. "
        "Standardise X's columns first, e.g. with sklearn.preprocessing.StandardScaler()."
    )


def standardize_columns(Y, enabled=True, collective=LOCAL):
    """``(mean, scale)`` of each column of every rank's rows, overflow-safe; constant
    columns get scale 1.

    Three passes over row chunks (peak, mean, spread of ``Y / peak`` in float64): no
    copy of ``Y`` is made. A constant column divided by its peak is exactly +-1 (or 0),
    so its spread is exactly 0, whatever the rounding."""
    n_outputs = Y.shape[1]
    if not enabled:
        return np.zeros(n_outputs), np.ones(n_outputs)
    peak = np.zeros(n_outputs)
    for c in data.iter_chunks(Y):
        peak = np.maximum(peak, np.abs(c).max(axis=0, initial=0.0))
    peak = collective.max(peak)
    peak = np.where(peak > 0, peak, 1.0)
    n = max(collective.total_rows(Y.shape[0]), 1)
    mu = collective.sum(sum((c / peak).sum(axis=0) for c in data.iter_chunks(Y))) / n
    squares = sum(np.square(c / peak - mu).sum(axis=0) for c in data.iter_chunks(Y))
    sd = np.sqrt(collective.sum(squares) / n)
    return peak * mu, np.where(sd > 0, peak * sd, 1.0)


def _shared_scale(y_scale):
    """One scale for every output, the root mean square of ``y_scale`` (any common
    scale weighs the outputs alike; this one keeps the values near unit spread)."""
    return np.full_like(y_scale, float(np.sqrt(np.mean(np.square(y_scale)))))


@dataclasses.dataclass
class Scaler:
    """``Z / scale`` and ``(y - y_mean) / y_scale``: statistics, device transfer, weight folding.

    Build it with :meth:`fit` (statistics of the training data) or directly from fitted
    attributes (a later ``partial_fit``).
    """

    scale: float = 1.0
    y_mean: np.ndarray | None = None
    y_scale: np.ndarray | None = None
    rescale: bool = True
    nonnegative: bool = True
    peak: float = 0.0

    @classmethod
    def fit(cls, X, Y, rescale, collective=LOCAL, pooled=False):
        """The statistics of every rank's rows of ``X`` and ``Y`` (rank ``r`` holds its
        shard; with :data:`~sklearn_xnn._nn.collective.LOCAL`, this process's rows):
        ``peak`` is ``max |X|``, ``scale`` ``sqrt(mean(X ** 2))`` (1 without ``rescale``
        or for an all-zero ``X``), ``nonnegative`` whether ``X >= 0``, ``y_mean`` and
        ``y_scale`` :func:`standardize_columns` of ``Y`` (None without ``Y``). With
        ``pooled`` every output shares one scale (:func:`_shared_scale`), so that squared
        errors in training units weigh the outputs as their variances do
        (variance-weighted R²).

        Two streaming passes over ``X`` (never a full copy; a memmap is read in chunks),
        overflow-safe: the mean of squares is taken of ``X / peak`` in float64. Refuses
        NaN and infinity, and an ``X / scale`` beyond the float32 range.
        """
        peak, nonneg = 0.0, True
        for c in data.iter_chunks(X):
            if not c.size:
                continue
            top = float(np.max(np.abs(c)))  # NaN or infinity when c holds one
            if not math.isfinite(top):
                too_large = f"infinity or a value too large for {c.dtype!r}"
                raise ValueError(f"Input X contains {'NaN' if np.isnan(c).any() else too_large}.")
            peak = max(peak, top)
            nonneg = nonneg and bool((c >= 0).all())
        peak, nonneg = collective.max(peak), bool(collective.min(float(nonneg)))
        rms = 0.0
        if peak > 0:
            chunks = data.iter_chunks(X)
            sumsq = sum(float(np.sum(np.square(c / peak, dtype=np.float64))) for c in chunks)
            n_values = collective.total_rows(X.shape[0]) * X.shape[1]
            rms = peak * float(np.sqrt(collective.sum(sumsq) / n_values))
        y_mean, y_scale = (None, None) if Y is None else standardize_columns(Y, rescale, collective)
        scale = rms if rescale and rms > 0 else 1.0
        check_float32_range(peak / scale, "X", rescale)
        if pooled and rescale and y_scale is not None:
            y_scale = _shared_scale(y_scale)
        return cls(scale, y_mean, y_scale, rescale, nonneg, peak)

    # ------------------------------------------------------------------ data
    def to_device(self, X, Y, device, stream_x=False, stream_y=False):
        """``(X / scale, (Y - y_mean) / y_scale)`` as float32 on ``device`` (None for a
        None ``Y``): tensors, or with ``stream_x`` (``stream_y``) a source that reads and
        scales the rows of ``X`` (``Y``) asked for (:class:`~sklearn_xnn._nn.data.HostRows`,
        no copy: a streamed fit holds no ``N x C`` array of its own; ``Y`` must then be
        the rows these statistics are of)."""
        wide = data.working_dtype(X.dtype) == np.float64
        unsafe = wide and self.scale != 1.0 and not _SAFE_CAST[0] <= self.peak <= _SAFE_CAST[1]
        if stream_x and unsafe:
            Zt = data.HostRows(X, device, pre_divisor=self.scale)
        elif stream_x:
            Zt = data.HostRows(X, device, divisor=self.scale)
        elif unsafe:  # divide in float64 first: the cast would overflow or flush to zero
            Zt = data.to_tensor(X / self.scale, device)
        else:
            Zt = data.to_tensor(X, device)
            if Zt.device.type == "cpu" and np.may_share_memory(Zt.numpy(), X):
                Zt = Zt / self.scale  # the caller's array: never written
            else:
                Zt = Zt.div_(self.scale)  # a copy already: scaled in place
        if Y is None:
            return Zt, None
        out = None if stream_y else np.empty(Y.shape, np.float32)
        peak, start = 0.0, 0
        # a fit's rows standardised with their own statistics stay within sqrt(n) of zero
        # (Samuelson's inequality): a streamed fit reads y ahead only for unscaled values
        for c in data.iter_chunks(Y) if out is not None or not self.rescale else ():
            scaled = (c - self.y_mean) / self.y_scale  # no float64 copy of the whole of Y
            peak = max(peak, float(np.max(np.abs(scaled))) if scaled.size else 0.0)
            check_float32_range(peak, "y", self.rescale)
            if out is not None:
                out[start : start + len(c)] = scaled
            start += len(c)
        if stream_y:
            return Zt, data.HostRows(Y, device, standardize=(self.y_mean, self.y_scale))
        return Zt, data.to_tensor(out, device)

    def chunk(self, X, Y, device):
        """A later chunk scaled with this scaler's statistics (:meth:`to_device`; refused
        when its activations reach :data:`MAX_CHUNK_PEAK` times their scale: other units
        than the first chunk's, which training would not survive)."""
        peak = Scaler.fit(X, None, self.rescale).peak
        check_float32_range(peak / self.scale, "X", self.rescale)
        if self.rescale and peak > MAX_CHUNK_PEAK * self.scale:
            raise ValueError(
                f"This partial_fit chunk's values reach {peak / self.scale:.3g} times the "
                f"scale of the first chunk's (scale_ = {self.scale:.3g}), which partial_fit "
                "keeps: the chunk looks to be in other units, and training on it would "
                "diverge. Pass every chunk in the units of the first."
            )
        return dataclasses.replace(self, peak=peak).to_device(X, Y, device)

    # ------------------------------------------------------------------ weights
    def fold(self, w, inverse=False):
        """Training-unit weights -> caller-unit weights (see :class:`NetworkWeights`); with
        ``inverse``, caller-unit weights -> training-unit weights."""
        z_factor = self.scale if inverse else 1.0 / self.scale
        enc, dec = list(w.encoder), list(w.decoder)  # arithmetic below makes new arrays
        enc[0] = (enc[0][0] * z_factor, enc[0][1])
        dec[-1] = (dec[-1][0] / z_factor, dec[-1][1] / z_factor)
        head = None
        if w.head is not None:
            W, b = w.head
            if inverse:
                head = (W / self.y_scale[:, None], (b - self.y_mean) / self.y_scale)
            else:
                head = (W * self.y_scale[:, None], b * self.y_scale + self.y_mean)
        return dataclasses.replace(w, encoder=enc, decoder=dec, head=head)
