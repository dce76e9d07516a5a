"""Save and load fitted explainers without pickle: one safetensors file, nothing executable.

File layout (a standard safetensors file, readable by any safetensors tool):

- tensors: every numeric array of the fitted state (weights, curves, masks), named after
  the attribute (``encoder_coefs_.0`` for the first item of a list);
- ``__metadata__`` (strings): ``format`` (``"sklearn_xnn"``), ``format_version``,
  ``class``, ``library_version``, ``params`` (JSON of ``get_params``), ``attributes`` (JSON
  describing every other attribute: plain values inline, arrays by tensor name) and
  ``checksum``, the SHA-256 of everything else (metadata and tensor bytes).

Loading builds only numpy arrays, lists, tuples and JSON scalars, for a fixed list of
sklearn_xnn classes; it never imports or calls anything named in the file. A file that is
truncated, corrupted, foreign, or whose fitted state is inconsistent or non-finite is
refused with :class:`~sklearn_xnn.exceptions.InvalidModelFileError`.
"""

import errno
import hashlib
import importlib
import json
import os
import stat
import tempfile

import numpy as np
from sklearn.utils.validation import check_is_fitted

from sklearn_xnn._validation import warn_user
from sklearn_xnn.exceptions import InvalidModelFileError

FORMAT = "sklearn_xnn"
FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 100 * 2**20
_CLASSES = {"SRAEExplainer": ("sklearn_xnn._srae", "SRAEExplainer")}
_VALUE_TYPES = (type(None), bool, int, float, str)


class _Unencodable(TypeError):
    pass


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "save and load need the safetensors package: pip install safetensors "
            "(pickle and joblib work without it)."
        ) from exc
    return safetensors.numpy


# ---------------------------------------------------------------------------- encoding
def _encode(value, key, arrays):
    """JSON description of ``value``; numeric arrays go to ``arrays`` under ``key``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, _VALUE_TYPES):
        return {"v": value}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf" and value.ndim >= 2 and not value.flags.c_contiguous:
            if value.flags.f_contiguous:  # keep the memory layout: results stay bitwise equal
                arrays[key] = value.T
                return {"f": key}
        if value.dtype.kind in "biuf":
            arrays[key] = np.ascontiguousarray(value)
            return {"a": key}
        if value.ndim == 1 and all(isinstance(v, str) for v in value):
            return {"s": [str(v) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"d": {k: _encode(v, f"{key}.{k}", arrays) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
        return {"t" if isinstance(value, tuple) else "l": items}
    raise _Unencodable(f"{key} has type {type(value).__name__}")


def _decode(spec, arrays, used):
    if not isinstance(spec, dict) or len(spec) != 1:
        raise InvalidModelFileError(f"malformed attribute description {spec!r:.80}")
    ((kind, payload),) = spec.items()
    if kind == "v" and isinstance(payload, _VALUE_TYPES):
        return payload
    if kind in ("a", "f") and isinstance(payload, str) and payload in arrays:
        used.add(payload)
        array = arrays[payload].copy()  # writable, owning its memory
        return array.T if kind == "f" else array
    if kind == "s" and isinstance(payload, list) and all(isinstance(s, str) for s in payload):
        return np.asarray(payload, dtype=object)
    if kind == "d" and isinstance(payload, dict):  # e.g. set_output's configuration
        return {str(k): _decode(v, arrays, used) for k, v in payload.items()}
    if kind in ("l", "t") and isinstance(payload, list):
        items = [_decode(item, arrays, used) for item in payload]
        return items if kind == "l" else tuple(items)
    raise InvalidModelFileError(f"malformed attribute description {spec!r:.80}")


def _encode_params(estimator):
    params, arrays = {}, {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "random_state" and isinstance(value, np.random.RandomState):
            warn_user(
                "random_state is a RandomState instance, which is saved as None; pass an "
                "int to keep refits reproducible after loading.",
            )
            value = None
        if name == "network_head" and value is not None:
            warn_user(
                "network_head is a torch module, which is saved as None (the file holds no "
                "code). Inference does not need it; set it again with set_params before a "
                "further partial_fit, or use pickle/joblib to keep it.",
            )
            value = None
        if isinstance(value, np.ndarray):
            value = value.tolist()  # e.g. hidden_layer_sizes given as an array
        try:
            params[name] = _encode(value, name, arrays)
        except _Unencodable as exc:
            raise TypeError(f"Cannot save parameter {name}: {exc}; use plain values.") from exc
        if arrays:
            raise TypeError(f"Cannot save parameter {name}: arrays as parameters are not saved.")
    return params


def _encode_state(estimator, arrays):
    params = set(estimator.get_params(deep=False))
    state = {}
    for name, value in sorted(vars(estimator).items()):
        if name in params or name.startswith("__"):
            continue
        try:
            state[name] = _encode(value, name, arrays)
        except _Unencodable as exc:
            if name.startswith("_"):
                continue  # private caches (tensors, generators) are rebuilt on demand
            raise TypeError(f"Cannot save fitted attribute {exc}.") from exc
    return state


def _digest(meta, arrays):
    """SHA-256 of the metadata (without the checksum) and of every tensor's name and bytes."""
    h = hashlib.sha256()
    body = {k: v for k, v in meta.items() if k != "checksum"}
    h.update(json.dumps(body, sort_keys=True).encode())
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- save
def save(estimator, path):
    """Write a fitted sklearn_xnn estimator to ``path`` (a safetensors file).

    The file holds the library version, the parameters (``get_params``) and every fitted
    attribute, with a SHA-256 checksum. It is written to a temporary file next to ``path``
    and renamed, so an interrupted save never leaves a half-written model behind. A
    ``path`` that is a symbolic link keeps being one: the file it points to is replaced.

    An existing file that is write-protected (no write permission bit, as after ``chmod
    444``, or not writable by this user) is refused rather than replaced: the rename
    would otherwise need only the folder's permission.

    Parameters
    ----------
    estimator : SRAEExplainer
        A fitted explainer.
    path : str or os.PathLike
        Destination; ``.safetensors`` is a good extension. Its folder must exist.

    Raises
    ------
    FileNotFoundError
        If the folder of ``path`` does not exist.
    PermissionError
        If ``path`` is an existing read-only file, or its folder is not writable.
    """
    from sklearn_xnn import __version__

    if type(estimator).__name__ not in _CLASSES:
        raise TypeError(f"save supports {sorted(_CLASSES)}, got {type(estimator).__name__}.")
    check_is_fitted(estimator)
    arrays = {}
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "class": type(estimator).__name__,
        "library_version": __version__,
        "params": json.dumps(_encode_params(estimator)),
        "attributes": json.dumps(_encode_state(estimator, arrays)),
    }
    meta["checksum"] = _digest(meta, arrays)
    payload = _safetensors_numpy().save(arrays, metadata=meta)
    _write_atomically(os.fspath(path), payload)


def _file_mode(path):
    """The permissions a plain ``open(path, "wb")`` would leave: an existing file's own,
    else ``0666`` less the process's umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _destination(path):
    """The file that ``path`` names, once it can be replaced: a symbolic link's target
    (the link stays a link), in a folder that exists, and not write-protected. Errors
    name the caller's ``path``, never the temporary file."""
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            errno.ENOENT, f"Cannot save: the folder {folder!r} does not exist", path
        )
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "Cannot save: it is a folder", path)
    if os.path.exists(target):
        mode = stat.S_IMODE(os.stat(target).st_mode)
        if not mode & 0o222 or not os.access(target, os.W_OK):
            raise PermissionError(
                errno.EACCES,
                f"Cannot save: the existing file is read-only (mode {mode:o}); make it "
                "writable (chmod u+w) or remove it to replace it",
                path,
            )
    return target


def _write_atomically(path, payload):
    """Write ``payload`` to a temporary file next to ``path``'s target, then rename it
    onto the target: readers see the old file or the new one, never half of one."""
    target = _destination(path)
    try:
        fd, tmp = tempfile.mkstemp(
            dir=os.path.dirname(target), prefix=".sklearn_xnn-", suffix=".tmp"
        )
    except OSError as exc:  # e.g. no permission to create files in the folder
        raise type(exc)(exc.errno, f"Cannot save: {exc.strerror}", path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(target))  # mkstemp's file is private (0600)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------- load
def load(path, expected_class=None):
    """Load an estimator written by :meth:`~sklearn_xnn.SRAEExplainer.save`, without
    executing anything from the file.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``save``.
    expected_class : type, default=None
        When given, the file must hold an instance of this class.

    Returns
    -------
    estimator : SRAEExplainer
        Fitted, equal in parameters and fitted attributes to the saved one. A model
        trained on a GPU loads and transforms on a CPU-only machine.

    Raises
    ------
    InvalidModelFileError
        If the file is truncated, corrupted, foreign or inconsistent.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _load_bytes(data, expected_class)
    except InvalidModelFileError as exc:
        raise InvalidModelFileError(f"Cannot load {os.fspath(path)!r}: {exc}") from exc
    except Exception as exc:  # any other failure of a hostile file is still a refusal
        raise InvalidModelFileError(
            f"Cannot load {os.fspath(path)!r}: the file is corrupted ({type(exc).__name__}: {exc})."
        ) from exc


def _read_metadata(data):
    """The ``__metadata__`` strings of a safetensors file, or a clear refusal."""
    foreign = "not a sklearn_xnn model file (expected a safetensors file written by save)"
    if len(data) < 8:
        raise InvalidModelFileError(f"{foreign}: only {len(data)} bytes")
    n = int.from_bytes(data[:8], "little")
    if n > min(len(data) - 8, _MAX_HEADER_BYTES):
        raise InvalidModelFileError(f"{foreign}, or truncated: header length {n} is impossible")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidModelFileError(f"{foreign}: unreadable header ({exc})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InvalidModelFileError(foreign)
    if not all(isinstance(v, str) for v in meta.values()):
        raise InvalidModelFileError("malformed metadata")
    return meta


def _load_bytes(data, expected_class):
    meta = _read_metadata(data)
    version = meta.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise InvalidModelFileError(
            f"format version {version!r} is newer than this sklearn_xnn reads "
            f"({FORMAT_VERSION}); upgrade sklearn_xnn."
        )
    try:
        arrays = _safetensors_numpy().load(data)
    except Exception as exc:
        raise InvalidModelFileError(f"the tensors are corrupted or truncated ({exc})") from None
    if meta.get("checksum") != _digest(meta, arrays):
        raise InvalidModelFileError(
            "checksum mismatch: the file is corrupted or was modified after saving"
        )
    estimator = _new_estimator(meta, expected_class)
    _restore_state(estimator, json.loads(meta["attributes"]), arrays)
    _check_state(estimator)
    _warn_version(meta.get("library_version"), type(estimator).__name__)
    return estimator


def _new_estimator(meta, expected_class):
    name = meta.get("class")
    if name not in _CLASSES:
        raise InvalidModelFileError(f"unknown estimator class {name!r:.40}")
    module, attr = _CLASSES[name]
    cls = getattr(importlib.import_module(module), attr)
    if expected_class is not None and not issubclass(cls, expected_class):
        raise InvalidModelFileError(f"it holds a {name}, not a {expected_class.__name__}")
    specs = json.loads(meta["params"])
    if not isinstance(specs, dict):
        raise InvalidModelFileError("malformed parameters")
    unknown = set(specs) - set(cls().get_params(deep=False))
    if unknown:
        raise InvalidModelFileError(
            f"parameters {sorted(unknown)} are unknown to this sklearn_xnn version"
        )
    params = {k: _decode(v, {}, set()) for k, v in specs.items()}
    estimator = cls(**params)
    estimator._validate_params()
    return estimator


#: Fitted attributes that files of earlier versions hold and this version computes (a
#: deprecated attribute is now a property): read and dropped on load.
_DROPPED_ATTRIBUTES = {"n_collapse_retries_"}


def _restore_state(estimator, specs, arrays):
    if not isinstance(specs, dict):
        raise InvalidModelFileError("malformed fitted attributes")
    used = set()
    for name, spec in specs.items():
        if name in _DROPPED_ATTRIBUTES:
            _decode(spec, arrays, used)
            continue
        valid = isinstance(name, str) and name.isidentifier() and not name.startswith("__")
        if not valid or not (name.endswith("_") or name.startswith("_")):
            raise InvalidModelFileError(f"invalid attribute name {name!r:.40}")
        if hasattr(type(estimator), name) or name in estimator.get_params(deep=False):
            raise InvalidModelFileError(f"attribute {name!r} would shadow the class")
        setattr(estimator, name, _decode(spec, arrays, used))
    if used != set(arrays):
        raise InvalidModelFileError(f"unexpected tensors {sorted(set(arrays) - used)[:5]}")


def _warn_version(saved, class_name):
    from sklearn_xnn import __version__

    if saved != __version__:
        warn_user(
            f"This {class_name} was saved with sklearn_xnn {saved} and is loaded with "
            f"{__version__}; check its results before relying on them.",
        )


# ---------------------------------------------------------------------------- checks
def _check_state(est):
    """The fitted state is complete, consistently shaped and finite."""
    required = [
        "n_features_in_",
        "n_components_",
        "encoder_coefs_",
        "encoder_intercepts_",
        "decoder_coefs_",
        "decoder_intercepts_",
        "decoder_relu_output_",
        "_has_head",
    ]
    if getattr(est, "_has_head", False):
        required += ["coef_", "intercept_", "_y_1d"]
    missing = [name for name in required if not hasattr(est, name)]
    if missing:
        raise InvalidModelFileError(f"fitted attributes {missing} are missing")
    D, K = est.n_features_in_, est.n_components_
    if not (isinstance(D, int) and isinstance(K, int) and D >= 1 and K >= 1):
        raise InvalidModelFileError("n_features_in_ and n_components_ must be positive ints")
    flags = [f for f in ("decoder_relu_output_", "_has_head", "_y_1d") if f in required]
    wrong = [f for f in flags if not isinstance(getattr(est, f), bool)]
    if wrong:
        raise InvalidModelFileError(f"fitted attributes {wrong} must be true or false")
    _check_mlp(est.encoder_coefs_, est.encoder_intercepts_, D, K, "encoder")
    _check_mlp(est.decoder_coefs_, est.decoder_intercepts_, K, D, "decoder")
    if est._has_head:
        C = _float_array(est.coef_, "coef_", ndim=2).shape[0]
        _float_array(est.coef_, "coef_", shape=(C, K))
        _float_array(est.intercept_, "intercept_", shape=(C,))
    if hasattr(est, "components_"):
        _float_array(est.components_, "components_", shape=(K, D))
    names = getattr(est, "feature_names_in_", None)
    if names is not None and np.shape(names) != (D,):
        raise InvalidModelFileError("feature_names_in_ does not match n_features_in_")


def _check_mlp(coefs, intercepts, n_in, n_out, what):
    if not isinstance(coefs, list) or not isinstance(intercepts, list):
        raise InvalidModelFileError(f"{what} layers must be lists of arrays")
    if not coefs or len(coefs) != len(intercepts):
        raise InvalidModelFileError(f"{what} has inconsistent layer counts")
    width = n_in
    for i, (w, b) in enumerate(zip(coefs, intercepts, strict=True)):
        w = _float_array(w, f"{what} weight {i}", ndim=2)
        if w.shape[0] != width:
            raise InvalidModelFileError(f"{what} weight {i} has shape {w.shape}")
        width = w.shape[1]
        _float_array(b, f"{what} bias {i}", shape=(width,))
    if width != n_out:
        raise InvalidModelFileError(f"{what} ends with {width} units, expected {n_out}")


def _float_array(a, name, ndim=None, shape=None):
    if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
        raise InvalidModelFileError(f"{name} is not a float array")
    if (ndim is not None and a.ndim != ndim) or (shape is not None and a.shape != shape):
        raise InvalidModelFileError(f"{name} has shape {a.shape}")
    if not np.isfinite(a).all():
        raise InvalidModelFileError(f"{name} holds non-finite values")
    return a
