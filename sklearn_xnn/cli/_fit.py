"""``sklearn-xnn fit``: explain the user's own activations and logits."""

import math
import zipfile
from pathlib import Path

import numpy as np

from sklearn_xnn._nn.data import iter_chunks, working_dtype
from sklearn_xnn.cli import _shared as shared
from sklearn_xnn.cli._parser import UsageError

#: The first bytes of the files ``np.load`` reads without pickle: ``.npy`` and ``.npz``
#: (a zip archive; an empty one starts with the end-of-archive record).
_MAGIC = (b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")

#: dtype kinds that are real numbers: booleans, integers, floats.
_REAL_KINDS = "biuf"


def _not_numpy_error(path, what):
    """Only NumPy's binary files are read (never pickles): how to convert a text file."""
    stem = Path(path).stem
    sep = ", delimiter=','" if Path(path).suffix.lower() == ".csv" else ""
    return UsageError(
        f"could not read {what} file {path!r}: it is not a .npy or .npz file (only NumPy's "
        f"binary formats are read); convert a text file first, e.g. "
        f"np.save('{stem}.npy', np.loadtxt({str(path)!r}{sep}))"
    )


def _load_array(spec, what):
    """``FILE.npy`` memory-mapped read-only, ``FILE.npz`` (single array) or ``FILE.npz:KEY``
    read (a zip member cannot be mapped), each in its own dtype; UsageError if bad."""
    path, key = spec, None
    if not Path(spec).exists() and ":" in spec:
        path, key = spec.rsplit(":", 1)
    if Path(path).is_dir():
        raise UsageError(f"{what} file {path!r} is a folder; name a .npy or .npz file")
    if not Path(path).is_file():
        raise UsageError(f"{what} file {path!r} does not exist")
    with open(path, "rb") as f:
        if not f.read(6).startswith(_MAGIC):
            raise _not_numpy_error(path, what)
    try:
        data = _open_numpy(path)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return _npz_member(data, path, key, what)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # an object array: refused, never unpickled ("Python objects": it cannot be mapped)
        if "pickle" in str(exc) or "Python objects" in str(exc):
            raise UsageError(
                f"{what} file {path!r} holds Python objects (dtype object), which are not "
                "read; save a numeric array, e.g. np.save(path, np.asarray(a, dtype=float))"
            ) from None
        if "mmap length" in str(exc):
            exc = "it is shorter than its header says (not fully written?)"
        raise UsageError(f"could not read {what} file {path!r} as .npy/.npz: {exc}") from None
    if key is not None:
        raise UsageError(f"{path} is a .npy file; it has no keys (drop ':{key}')")
    return data


def _open_numpy(path):
    """A ``.npy`` file as a read-only ``numpy.memmap`` (nothing is read until used), or
    read where the file system cannot map it; a ``.npz`` file as ``np.load`` opens it."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except OSError:  # mmap itself failed (its errors are OSErrors)
        return np.load(path, allow_pickle=False)


def _npz_member(data, path, key, what):
    keys = list(data.files)
    if key is None and len(keys) != 1:
        raise UsageError(f"{path} holds arrays {keys}; choose one as {path}:KEY for {what}")
    key = keys[0] if key is None else key
    if key not in keys:
        raise UsageError(f"{path} has no array {key!r}; it holds {keys}")
    member = data[key]
    if not isinstance(member, np.ndarray):  # a zip member that is not a .npy file
        raise UsageError(f"{path}: {key!r} is not a .npy array inside the .npz archive")
    return member


def _check_array(a, name, ndims):
    """Real numbers (no complex, strings, dates), ``ndims`` axes, no empty axis, finite."""
    if a.dtype.kind not in _REAL_KINDS:
        kind = "complex" if a.dtype.kind == "c" else "not real numbers"
        fix = f" (save {name}.real or np.abs({name}) if that is meant)" if kind == "complex" else ""
        raise UsageError(f"{name} must be real numbers, got dtype {a.dtype} ({kind}){fix}")
    if a.ndim not in ndims:
        raise UsageError(
            f"{name} must be a numeric array with {' or '.join(map(str, ndims))} axes, "
            f"got shape {a.shape} and dtype {a.dtype}"
        )
    if a.ndim == 2 and a.shape[1] == 0:
        raise UsageError(f"{name} have no columns (shape {a.shape})")
    rows = a if a.ndim == 2 else a.reshape(-1, 1)
    if not all(np.isfinite(chunk).all() for chunk in iter_chunks(rows)):
        raise UsageError(f"{name} contain NaN or infinite values")


def _check_split(n_rows, test_size):
    """The rows ``train_test_split`` gives each side: 2 or more to fit and to measure."""
    n_test = math.ceil(test_size * n_rows)
    n_train = n_rows - n_test
    if n_train < 2 or n_test < 2:
        raise UsageError(
            f"--test-size {test_size} leaves {n_train} training and {n_test} held-out rows "
            f"of {n_rows}; each side needs at least 2"
        )


def _validated_arrays(args):
    """The activations and the logits as loaded, in their own dtypes (the logits' so that
    the estimator sees what the user gave, e.g. class labels instead of logits, and
    warns). Each check reads a ``.npy`` file's rows by chunks, without a copy of it."""
    Z = _load_array(args.activations, "activations")
    Y = _load_array(args.logits, "logits")
    _check_array(Z, "activations", (2,))
    _check_array(Y, "logits", (1, 2))
    if Z.shape[0] != Y.shape[0]:
        raise UsageError(
            f"activations have {Z.shape[0]} rows but logits have {Y.shape[0]}; they must match"
        )
    if Z.shape[0] < 20:
        raise UsageError(f"need at least 20 rows to fit and hold out, got {Z.shape[0]}")
    first = np.asarray(Z[0])
    if all((chunk == first).all() for chunk in iter_chunks(Z)):
        raise UsageError(
            "every activation column is constant (a dead layer?): there is nothing to explain"
        )
    _check_split(Z.shape[0], args.test_size)
    return Z, Y


def _split(Z, Y, args):
    """``Z_train, Z_test, y_train, y_test``: copies of the rows of each side, the
    activations in the dtype the estimator computes in (float32 and float64 as they are,
    float16 as float32, integers and booleans as float64: :func:`working_dtype`)."""
    from sklearn.model_selection import train_test_split

    Z_tr, Z_te, y_tr, y_te = train_test_split(
        Z, Y, test_size=args.test_size, random_state=args.random_state
    )
    Z_tr, Z_te = (a.astype(working_dtype(a.dtype), copy=False) for a in (Z_tr, Z_te))
    return Z_tr, Z_te, y_tr, y_te


def run_fit(args):
    """Fit SRAE and the baselines on the user's arrays; save the explainer and a report.

    A ``.npy`` file is memory-mapped and checked by chunks, never widened to a float64
    copy: the split copies each side's rows once, float32 and float64 as they are.
    """
    Z, Y = _validated_arrays(args)
    names = _output_names(args.output_names, 1 if Y.ndim == 1 else Y.shape[1])
    n_features = Z.shape[1]
    shared.check_device(args.device)
    params = shared.checked_params(args, n_features=n_features)
    if params["faithfulness"] == "kl" and (Y.ndim == 1 or Y.shape[1] < 2):
        raise UsageError("--faithfulness kl compares softmaxes: the logits need 2 or more columns")
    step = shared.Steps(5)
    Z_tr, Z_te, y_tr, y_te = _split(Z, Y, args)
    del Z, Y  # unmaps the files: the pages the split read are freed
    try:
        table, fitted = shared.fit_and_compare(params, step, Z_tr, y_tr, Z_te, y_te)
    except ValueError as exc:  # an estimator refusing these arrays: the user's input
        raise UsageError(f"fitting failed on these arrays: {' '.join(str(exc).split())}") from None
    shared.print_table(table)
    step("saving the fitted SRAE explainer and comparison.csv...")
    with shared.writing_into(args.out):
        model_path = args.out / "explainer.safetensors"
        fitted["SRAE"].save(model_path)
        table.to_csv(args.out / "comparison.csv")
        step(f"writing report (explainer in {model_path}, load it with sklearn_xnn.load)...")
        held_out = (Z_te, y_te)
        path = _fit_report(args, table, fitted["SRAE"], n_features, held_out, len(Z_tr), names)
    step(f"wrote {path}")
    return 0


def _output_names(path, n_outputs):
    """The names in ``--output-names`` (None without it), checked before any fit: one
    distinct name per line, as many as the logits' columns (trailing blank lines ignored)."""
    if path is None:
        return None
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--output-names: cannot read {path} as UTF-8 text ({exc})") from None
    while names and not names[-1]:
        names.pop()
    if "" in names:
        raise UsageError(f"--output-names: line {names.index('') + 1} is blank; name every output")
    from sklearn_xnn.report._figures import checked_output_names  # matplotlib: when used

    try:  # the report's own check: as many distinct names as outputs
        return checked_output_names(names, n_outputs)
    except ValueError as exc:
        raise UsageError(f"--output-names {path}: {exc}") from None


def _fit_report(args, table, srae, n_features, held_out, n_train, names=None):
    """The report on the held-out rows ``(Z_te, y_te)``; the decompositions explain the
    network's decisions (the argmax of the logits given), the outputs by ``names``."""
    from sklearn_xnn.report import write_report

    Z_te, y_te = held_out
    return write_report(
        args.out,
        table,
        explainer=srae,
        Z=Z_te,
        y=y_te,
        output_names=names,
        title="sklearn_xnn: explanation report",
        notes=[
            f"Activations {args.activations} ({n_features} features), logits {args.logits}; "
            f"{n_train} training rows, {len(Z_te)} held-out rows; "
            f"{shared.k_note(args.n_components, srae.n_components_)}.",
            shared.params_note(args),
        ],
    )
