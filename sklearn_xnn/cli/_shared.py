"""What both commands share: progress lines, parameter checks, fitting and printing."""

import contextlib
import sys
import time
import warnings
from numbers import Integral

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
    """The estimator parameters, checked against the constraints (and ``--out`` against
    the files there) before any work starts."""
    params = estimator_params(args)
    try:
        SRAEExplainer(**params)._validate_params()
    except InvalidParameterError as exc:
        raise UsageError(str(exc)) from None
    K = params["n_components"]
    if isinstance(K, Integral) and K > n_features:  # "auto" and fractions: the bound decides
        raise UsageError(f"--n-components {K} exceeds the {n_features} activation features")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; name a folder for the results")
    return params


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
    no option changes them; their table rows name them in ``note``.
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
            table, models = compare_explainers(group, Z_tr, y_tr, Z_te, y_te, return_fitted=True)
        if not i:
            show_warnings(table.attrs["warnings"]["SRAE"])
        tables.append(table)
        fitted.update(models)
    table = pd.concat(tables)  # pandas keeps attrs only where the parts agree
    warned = {name: m for t in tables for name, m in t.attrs["warnings"].items()}
    table.attrs = {**tables[-1].attrs, "warnings": warned}
    return table, fitted


def params_note(args):
    """The report's note on the SRAE parameters that differ from the estimator's defaults."""
    defaults = SRAEExplainer().get_params(deep=False)
    params = estimator_params(args)
    changed = [f"{k}={v!r}" for k, v in params.items() if k != "verbose" and v != defaults[k]]
    return f"SRAE parameters other than the defaults: {', '.join(changed) or 'none'}."
