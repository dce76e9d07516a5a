"""Where the data live and how they reach the training device: devices, tensors, seeds,
minibatch indices, and batch sources for data that stay on the host (a memmap, or any
array that slices, read one minibatch at a time and moved to the training device).

The training functions index their data as ``Z[idx]`` (an index tensor) and ``Z[a:b]``
(a slice), and read ``Z.shape`` and ``Z.device``. A float32 tensor on the device does all
of that; :class:`HostRows` does it too without ever holding more than the requested rows,
and :class:`Mapped` applies a frozen layer to another source (the codes of layer-wise
pre-training, recomputed per batch instead of stored).

Pages of a ``numpy.memmap`` that a read touched count toward the process's resident memory
until they are unmapped; :class:`PageReleaser` unmaps them (``madvise(MADV_DONTNEED)``,
the data stay in the operating system's page cache) after every few tens of megabytes
read, so that peak memory is bounded by the batch and the model, not by the file.
"""

import dataclasses
import mmap
import warnings

import numpy as np
import torch
from torch.nn import functional as F

#: Numbers per chunk of the streaming passes (8 MB of float32, 16 MB as float64).
CHUNK_VALUES = 2**21
#: Rows of one scattered read from a memmap between two releases of its pages.
SCATTER_ROWS = 256
#: Bytes read contiguously from a memmap between two releases of its pages.
RELEASE_BYTES = 16 * 2**20


def should_stream(X, threshold=None):
    """Stream ``X`` from the host when it can be streamed (a 2-D numpy array, or an
    array-like with ``shape``, ``dtype`` and row slicing that is not a data frame or a
    sparse matrix) and its float32 copy would exceed ``threshold`` bytes; without a
    ``threshold``, whether it can be streamed."""
    if isinstance(X, np.ndarray):
        streamable = X.ndim == 2
    else:
        shape, dtype = getattr(X, "shape", None), getattr(X, "dtype", None)
        streamable = (
            isinstance(dtype, np.dtype)
            and shape is not None
            and len(shape) == 2
            and hasattr(X, "__getitem__")
            and not hasattr(X, "columns")
            and not hasattr(X, "tocsr")
        )
    if not streamable or threshold is None:
        return streamable
    n_rows, n_cols = X.shape
    return n_rows * n_cols * 4 > threshold


@dataclasses.dataclass(eq=False)
class PageReleaser:
    """Unmaps the pages of ``array`` after every :data:`RELEASE_BYTES` read, or when
    forced, if it is a ``numpy.memmap`` that shares its file's pages (a no-op else)."""

    array: object = dataclasses.field(repr=False)
    #: Bytes read since the last release.
    read: int = 0
    #: Whether unmapping failed (a closed map, or unsupported): it is not tried again.
    failed: bool = False

    def __call__(self, nbytes, force=False):
        pages = getattr(self.array, "_mmap", None)
        # never a copy-on-write map (mode "c"): its pages hold the caller's edits
        shared = getattr(self.array, "mode", None) in ("r", "r+", "w+")
        if self.failed or not shared or not hasattr(pages, "madvise"):
            return
        self.read += nbytes
        if force or self.read >= RELEASE_BYTES:
            try:
                pages.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # closed or unsupported: keep going without it
                self.failed = True
            self.read = 0


def working_dtype(dtype):
    """The dtype the in-memory path computes in: float32/float64 kept, float16 as float32,
    anything else as float64 (like ``sklearn_xnn._validation.float_dtypes``)."""
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return np.dtype(np.float32)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def iter_chunks(X, rows=None):
    """``X[i : i + rows]`` as in-memory arrays of the working dtype, releasing memmap pages."""
    rows = rows or max(1, CHUNK_VALUES // max(1, X.shape[1]))
    release = PageReleaser(X)
    dtype = working_dtype(X.dtype)
    for start in range(0, X.shape[0], rows):
        chunk = np.asarray(X[start : start + rows])
        release(chunk.nbytes)
        yield chunk.astype(dtype, copy=False)
    release(0, force=True)


class HostRows:
    """Rows ``rows`` of a host array, delivered as scaled float32 tensors on ``device``.

    ``source[key]`` with an index tensor, an integer array or a slice reads those rows
    (sorted, so that a memmap is read front to back; then put back in the requested
    order), converts them like the in-memory path does (``float32(X) / divisor``, or
    ``float32(X / pre_divisor)`` for float64 values beyond the float32 range, or with
    ``standardize=(mean, scale)`` per column ``float32((X - mean) / scale)`` in float64)
    and moves them to ``device`` (through pinned memory on CUDA, without synchronising).
    From an in-memory array to the CPU the rows are gathered straight from it, in one copy.
    """

    dtype = torch.float32

    def __init__(self, array, device, divisor=1.0, pre_divisor=1.0, rows=None, standardize=None):
        self.array, self.device = array, torch.device(device)
        self.divisor, self.pre_divisor = divisor, pre_divisor
        self.standardize = standardize
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        n = array.shape[0] if self.rows is None else self.rows.shape[0]
        self.shape = (n, array.shape[1])
        self.index_device = torch.device("cpu")
        self._release = PageReleaser(array)
        self._base = None  # an in-memory array on the CPU: rows are gathered straight from it
        in_memory = isinstance(array, np.ndarray) and not isinstance(array, np.memmap)
        in_memory = in_memory and min(array.strides, default=0) >= 0  # torch: no flipped views
        if in_memory and array.dtype in (np.float32, np.float64) and self.device.type == "cpu":
            with warnings.catch_warnings():  # read-only arrays are only ever read here
                warnings.simplefilter("ignore", UserWarning)
                plain = pre_divisor == 1.0 and standardize is None
                self._base = torch.from_numpy(array) if plain else None

    def take(self, idx):
        """The sub-source of rows ``idx`` (no data are read)."""
        rows = self._positions(idx)
        return HostRows(
            self.array, self.device, self.divisor, self.pre_divisor, rows, self.standardize
        )

    def _positions(self, key):
        """The rows of ``array`` that ``key`` (a slice, an index tensor or array) selects:
        a slice when they are one, else an int64 array."""
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if self.rows is None and step == 1:
                return slice(start, stop)
            pos = np.arange(start, stop, step)
        else:
            pos = np.asarray(key.cpu().numpy() if torch.is_tensor(key) else key, dtype=np.int64)
        return pos if self.rows is None else self.rows[pos]

    def _read(self, pos):
        """The rows at ``pos`` and whether they were one contiguous block."""
        if isinstance(pos, slice):  # a copy where torch cannot read it (a flipped view)
            block = np.asarray(self.array[pos])
            return (block if min(block.strides, default=0) >= 0 else block.copy()), True
        order = np.argsort(pos, kind="stable")
        first, last = (int(pos[order[0]]), int(pos[order[-1]])) if pos.size else (0, -1)
        contiguous = last - first + 1 == pos.size
        if contiguous:  # one slice read
            block = np.asarray(self.array[first : last + 1])
        else:  # in groups, each followed by a release (see __getitem__)
            wanted = pos[order]
            parts = []
            for i in range(0, wanted.size, SCATTER_ROWS):
                parts.append(np.asarray(self.array[wanted[i : i + SCATTER_ROWS]]))
                self._release(0, force=True)
            block = np.concatenate(parts)
        out = np.empty_like(block)
        out[order] = block
        return out, contiguous

    def __getitem__(self, key):
        if self._base is not None:  # one gather (a copy), converted and scaled in place
            pos = self._positions(key)
            if isinstance(pos, slice):
                t = self._base[pos].to(torch.float32, copy=True)
            else:
                t = self._base.index_select(0, torch.from_numpy(pos)).to(torch.float32)
            return t.div_(self.divisor) if self.divisor != 1.0 else t
        block, contiguous = self._read(self._positions(key))
        block = block.astype(working_dtype(block.dtype), copy=False)
        if self.pre_divisor != 1.0:
            block = block / self.pre_divisor
        if self.standardize is not None:
            block = (block - self.standardize[0]) / self.standardize[1]
        t = torch.tensor(block, dtype=torch.float32)  # a copy: the memmap's pages are free
        # scattered rows map far more than they read (the kernel maps whole page-cache
        # folios around each row, up to 2 MB): _read released after each group of them
        self._release(block.nbytes if contiguous else 0, force=block.nbytes >= RELEASE_BYTES)
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        else:
            t = t.to(self.device)
        return t.div_(self.divisor) if self.divisor != 1.0 else t


class Mapped:
    """``relu(layer(source[key]))`` computed per request (codes that are never stored)."""

    def __init__(self, source, layer):
        self.source, self.layer = source, layer
        self.shape = (source.shape[0], layer.out_features)
        self.device = source.device
        self.index_device = getattr(source, "index_device", source.device)

    def __getitem__(self, key):
        with torch.no_grad():
            return F.relu(self.layer(self.source[key]))


def take_rows(data, idx):
    """``data[idx]`` for a tensor, a lazy sub-source for a :class:`HostRows`."""
    if data is None:
        return None
    return data.take(idx) if isinstance(data, HostRows) else data[idx]


def batch(data, idx):
    """Rows ``idx`` (an index tensor) of ``data`` as a new tensor: ``index_select`` for a
    tensor (on a CPU several times faster than ``data[idx]``; the indices moved to its
    device first, as those of streamed rows live on the CPU while the outputs may be on
    a GPU), ``data[idx]`` for a source (:class:`HostRows`, :class:`Mapped`)."""
    if isinstance(data, torch.Tensor):
        return data.index_select(0, idx.to(data.device))
    return data[idx]


# --------------------------------------------------------- devices and tensors
_DEVICE_HELP = 'Use device="cpu", or device="auto" to take a GPU only when one is present.'


def resolve_device(device, *, strict=True):
    """Return the ``torch.device`` that ``device`` ("auto", "cpu", "cuda", "cuda:N", "mps") names.

    With ``strict=False`` an unavailable accelerator resolves to the CPU instead of
    raising (used at inference time, so that a model fitted on a GPU still
    transforms on a machine without one).
    """
    mps = getattr(torch.backends, "mps", None)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device name; expected 'auto', 'cpu', 'cuda', "
            f"'cuda:N' or 'mps'. {_DEVICE_HELP}"
        ) from exc
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r} is not supported. {_DEVICE_HELP}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        problem = "torch sees no CUDA GPU on this machine"
    elif dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        problem = f"only {torch.cuda.device_count()} CUDA device(s) are visible"
    elif dev.type == "mps" and (mps is None or not mps.is_available()):
        problem = "the MPS backend is not available on this machine"
    else:
        return dev
    if strict:
        raise RuntimeError(f"device={device!r} was requested but {problem}. {_DEVICE_HELP}")
    return torch.device("cpu")


def make_generator(random_state):
    """A CPU ``torch.Generator`` seeded from ``random_state`` (a ``np.random.RandomState``)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(random_state.randint(0, 2**31 - 1)))
    return gen


def device_generator(cpu_generator, device):
    """A generator on ``device`` seeded by a draw from ``cpu_generator`` (for dropout masks)."""
    if device.type == "cpu":
        return cpu_generator
    seed = int(torch.randint(0, 2**62, (1,), generator=cpu_generator))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def to_tensor(array, device, dtype=torch.float32):
    """Copy a numpy array (or array slice) to a contiguous tensor on ``device``."""
    return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)


def batches(data, batch_size, generator, shuffle=True):
    """Index tensors of the minibatches of one epoch over the rows of ``data`` (a
    permutation drawn on the CPU), where ``data`` wants them: its ``index_device`` (a
    source that reads host rows takes them on the CPU), else its device."""
    n = data.shape[0]
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(getattr(data, "index_device", data.device))
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
