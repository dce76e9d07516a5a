"""``sklearn-xnn fit``: explain the user's own activations and logits."""

from pathlib import Path

import numpy as np

from sklearn_xnn.cli import _shared as shared
from sklearn_xnn.cli._parser import UsageError


def _load_array(spec, what):
    """Load ``FILE.npy``, ``FILE.npz`` (single array) or ``FILE.npz:KEY``; UsageError if bad."""
    path, key = spec, None
    if not Path(spec).exists() and ":" in spec:
        path, key = spec.rsplit(":", 1)
    if not Path(path).is_file():
        raise UsageError(f"{what} file {path!r} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"could not read {what} file {path!r} as .npy/.npz: {exc}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            keys = list(data.files)
            if key is None and len(keys) != 1:
                raise UsageError(f"{path} holds arrays {keys}; choose one as {path}:KEY for {what}")
            key = keys[0] if key is None else key
            if key not in keys:
                raise UsageError(f"{path} has no array {key!r}; it holds {keys}")
            return data[key]
    if key is not None:
        raise UsageError(f"{path} is a .npy file; it has no keys (drop ':{key}')")
    return data


def _validated_arrays(args):
    Z = _load_array(args.activations, "activations")
    Y = _load_array(args.logits, "logits")
    for name, a, ndims in (("activations", Z, (2,)), ("logits", Y, (1, 2))):
        if a.ndim not in ndims or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise UsageError(
                f"{name} must be a numeric array with {' or '.join(map(str, ndims))} axes, "
                f"got shape {a.shape} and dtype {a.dtype}"
            )
        if not np.all(np.isfinite(a)):
            raise UsageError(f"{name} contain NaN or infinite values")
    if Z.shape[0] != Y.shape[0]:
        raise UsageError(
            f"activations have {Z.shape[0]} rows but logits have {Y.shape[0]}; they must match"
        )
    if Z.shape[0] < 20:
        raise UsageError(f"need at least 20 rows to fit and hold out, got {Z.shape[0]}")
    return Z.astype(np.float64), Y.astype(np.float64)


def run_fit(args):
    """Fit SRAE and the baselines on the user's arrays; save the explainer and a report."""
    from sklearn.model_selection import train_test_split

    Z, Y = _validated_arrays(args)
    shared.check_device(args.device)
    params = shared.checked_params(args, n_features=Z.shape[1])
    if params["faithfulness"] == "kl" and (Y.ndim == 1 or Y.shape[1] < 2):
        raise UsageError("--faithfulness kl compares softmaxes: the logits need 2 or more columns")
    step = shared.Steps(5)
    Z_tr, Z_te, y_tr, y_te = train_test_split(
        Z, Y, test_size=args.test_size, random_state=args.random_state
    )
    table, fitted = shared.fit_and_compare(params, step, Z_tr, y_tr, Z_te, y_te)
    shared.print_table(table)
    step("saving the fitted SRAE explainer and comparison.csv...")
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "explainer.safetensors"
    fitted["SRAE"].save(model_path)
    table.to_csv(args.out / "comparison.csv")
    step(f"writing report (explainer in {model_path}, load it with sklearn_xnn.load)...")
    path = _fit_report(args, table, fitted["SRAE"], Z, Z_te, len(Z_tr))
    step(f"wrote {path}")
    return 0


def _fit_report(args, table, srae, Z, Z_te, n_train):
    from sklearn_xnn.report import write_report

    return write_report(
        args.out,
        table,
        explainer=srae,
        Z=Z_te,
        title="sklearn_xnn: explanation report",
        notes=[
            f"Activations {args.activations} ({Z.shape[1]} features), logits {args.logits}; "
            f"{n_train} training rows, {len(Z_te)} held-out rows; K={args.n_components}.",
            shared.params_note(args),
        ],
    )
