"""What both commands share: progress lines, parameter checks, fitting and printing."""

import contextlib
import os
import re
import sys
import tempfile
import time
import warnings
from numbers import Integral
from pathlib import Path

from sklearn.utils._param_validation import InvalidParameterError

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._fitting import progress_logging
from sklearn_xnn.cli._options import estimator_params
from sklearn_xnn.cli._parser import UsageError


class Steps:
    """Numbered progress lines on stderr with the time since the start."""

    def __init__(self, total):
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def __call__(self, text):
        self.n += 1
        elapsed = time.perf_counter() - self.t0
        print(f"[{self.n}/{self.total} {elapsed:5.1f}s] {text}", file=sys.stderr, flush=True)


def epoch_progress(verbose):
    """While fitting, the ``sklearn_xnn`` logger's INFO lines (each epoch's loss) on stderr."""
    return progress_logging("    %(message)s", always=True) if verbose else contextlib.nullcontext()


def check_device(device):
    """The torch device ``--device`` names; UsageError when it is not available here."""
    from sklearn_xnn._nn.data import resolve_device

    try:
        return resolve_device(device)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None


def checked_params(args, n_features):
    """The estimator parameters, checked against the constraints (and ``--out``, see
    :func:`check_out`) before any work starts."""
    params = estimator_params(args)
    try:
        SRAEExplainer(**params)._validate_params()
    except InvalidParameterError as exc:
        raise UsageError(str(exc)) from None
    K = params["n_components"]
    if isinstance(K, Integral) and K > n_features:  # "auto" and fractions: the bound decides
        raise UsageError(f"--n-components {K} exceeds the {n_features} activation features")
    check_widths(params["hidden_layer_sizes"], K)
    check_out(args.out)
    return params


def _narrow(widths, K, chosen=""):
    """The UsageError for hidden layers narrower than K (``chosen``: how K was chosen)."""
    n = min(widths)
    return UsageError(
        f"--hidden-layer-sizes {','.join(map(str, widths))} has a layer of {n} "
        f"unit{'s' * (n != 1)}, fewer than {chosen or f'--n-components {K}'}: every hidden "
        "layer needs at least K units; widen the layers or use --hidden-layer-sizes auto"
    )


def check_widths(widths, K):
    """The estimator's rule that every hidden layer is at least ``K`` wide, checked before
    the fit so that the message names the options (a ``K`` that the fit chooses, from
    ``auto`` or a fraction, is checked by the fit: :func:`fit_and_compare`)."""
    if not isinstance(widths, str) and isinstance(K, Integral) and min(widths) < K:
        raise _narrow(widths, K)


def check_out(out):
    """``--out`` is a folder, or names one that can be created: its nearest existing
    ancestor is a folder in which this process can create files (tried with an empty
    folder, removed at once: permission bits do not tell for root, read-only mounts or
    ``/proc``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; name a folder for the results")
    base = out
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"--out {out}: {base} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".sklearn-xnn-", dir=base))
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create files in {base} ({exc.strerror})") from None


#: The names of the files the commands write into ``--out`` (the report's figures too).
OUTPUT_NAMES = re.compile(
    r"report\.html|comparison\.csv|explainer\.safetensors"
    r"|(?:k_curve|top_activating|head_weights|decomposition_\d+)\.png"
)


@contextlib.contextmanager
def writing_into(out):
    """Write the results into ``out`` (created if needed): the files there with the tool's
    output names (:data:`OUTPUT_NAMES`), from an earlier run, are removed first, so that
    none that this run does not write again is left next to its report; other files
    are left alone. An OSError while writing is a UsageError."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path in out.iterdir():
            if OUTPUT_NAMES.fullmatch(path.name) and path.is_file():
                path.unlink()
        yield
    except OSError as exc:
        raise UsageError(f"could not write the results into --out {out}: {exc}") from None


def k_note(requested, k):
    """``K=3``, or ``K=3 (chosen by n_components='auto')`` when K was not given as a number."""
    if isinstance(requested, Integral):
        return f"K={k}"
    return f"K={k} (chosen by n_components={requested!r})"


def print_table(table):
    """The main columns and K on stdout, one line per metric (the report and the CSV have
    all)."""
    from sklearn_xnn.compare import DEFAULT_COLUMNS, format_comparison

    columns = [c for c in [*DEFAULT_COLUMNS, "n_components"] if c in table.columns]
    print(format_comparison(table, columns))


def show_warnings(messages):
    """Each warning message on stderr, as ``warning: <message>``."""
    for message in messages:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def fit_and_compare(params, step, Z_tr, y_tr, Z_te, y_te):
    """Fit SRAE, then the baselines, on the training rows; one table and the fitted models.

    SRAE's warnings (class labels given as logits, dead x-features, no convergence) are
    printed on stderr, each message once: they are about the user's data and options.
    The baselines' (e.g. NMF's ConvergenceWarning at its fixed ``max_iter``) are not, as
    no option changes them; their table rows name them in ``note``. Hidden layers
    narrower than the K that SRAE's fit chose are a UsageError (:func:`_narrow_for_k`);
    other ValueErrors of the fits are raised as they are.
    """
    import pandas as pd

    from sklearn_xnn.compare import compare_explainers, default_explainers

    rest = dict(params)
    K, seed = rest.pop("n_components"), rest.pop("random_state")
    step(
        f"fitting SRAE (K={K}, hidden_layer_sizes={params['hidden_layer_sizes']}, "
        f"max_iter={params['max_iter']}) on {len(Z_tr)} rows..."
    )
    tables, fitted = [], {}
    group = {"SRAE": default_explainers(K, seed, srae_params=rest)["SRAE"]}
    for i in range(2):
        if i:  # the baselines get the K that SRAE used ("auto" or a fraction: the bound's)
            k = fitted["SRAE"].n_components_
            group = default_explainers(k, seed)
            del group["SRAE"]
            step(f"fitting baselines ({', '.join(group)}) with SRAE's {k_note(K, k)}...")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                table, models = compare_explainers(
                    group, Z_tr, y_tr, Z_te, y_te, return_fitted=True
                )
            except ValueError as exc:
                narrow = None if i else _narrow_for_k(exc, params)
                if narrow is None:
                    raise
                raise narrow from None
        if not i:
            show_warnings(table.attrs["warnings"]["SRAE"])
        tables.append(table)
        fitted.update(models)
    table = pd.concat(tables)  # pandas keeps attrs only where the parts agree
    warned = {name: m for t in tables for name, m in t.attrs["warnings"].items()}
    table.attrs = {**tables[-1].attrs, "warnings": warned}
    return table, fitted


def _narrow_for_k(exc, params):
    """SRAE's refusal of fixed widths narrower than the K its fit chose (from ``auto`` or
    a fraction), as a UsageError naming the options; None for any other error."""
    chosen = re.search(r"fewer than the (\d+) x-features", str(exc))
    widths, K = params["hidden_layer_sizes"], params["n_components"]
    if chosen is None or isinstance(widths, str):
        return None
    return _narrow(widths, K, f"the K={chosen[1]} x-features that --n-components {K} chose")


def params_note(args):
    """The report's note on the SRAE parameters that differ from the estimator's defaults."""
    defaults = SRAEExplainer().get_params(deep=False)
    params = estimator_params(args)
    changed = [f"{k}={v!r}" for k, v in params.items() if k != "verbose" and v != defaults[k]]
    return f"SRAE parameters other than the defaults: {', '.join(changed) or 'none'}."
