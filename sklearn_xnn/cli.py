"""The ``sklearn-xnn`` command: ``demo`` on a digits CNN, ``fit`` on your own arrays.

Every :class:`~sklearn_xnn.SRAEExplainer` parameter is an option of both commands. The
options are generated from the estimator itself (names and defaults from ``get_params()``,
types and choices from ``_parameter_constraints``, help from the class docstring), so a
new parameter appears on the command line by itself and the defaults of ``fit`` are the
estimator's. Progress (each step, and each training epoch's loss through the
``sklearn_xnn`` logger) goes to stderr; the comparison table goes to stdout.

Errors in the user's input (missing files, bad shapes, unknown options, bad values,
bad ``.npz`` keys) print one line and exit with status 2, without a traceback.
"""

import argparse
import contextlib
import inspect
import logging
import numbers
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    make_constraint,
)

from sklearn_xnn import SRAEExplainer

DESCRIPTION = (
    "Explain one layer of a trained network with a few sparse, non-negative x-features "
    "(SRAE), compare them with PCA, NMF, PLS and a random projection, and write an HTML "
    "report."
)

#: Options whose command-line default differs from the estimator's (every other option
#: of ``fit`` has the estimator's default): the command shows each epoch's loss on
#: stderr; ``--verbose 0`` silences it.
CLI_DEFAULTS = {"verbose": 1}
_CLI_NOTES = {"verbose": "The command prints these lines on stderr; 0 silences them."}

#: The demo's smaller network for the CNN's 64-unit layer, and a fixed seed so that two
#: runs give the same report.
DEMO_DEFAULTS = {**CLI_DEFAULTS, "hidden_layer_sizes": (256, 32), "max_iter": 60, "random_state": 0}

#: The defaults of ``demo --quick`` (options given on the command line win).
QUICK_DEFAULTS = {
    "hidden_layer_sizes": (32, 8),
    "max_iter": 5,
    "pretrain": 1,
    "collapse_retries": 0,
}

#: The demo's CNN and report sizes.
_DEMO = {
    "full": dict(cnn_epochs=15, n_examples=6, n_top=8),
    "quick": dict(cnn_epochs=2, n_examples=2, n_top=4),
}


class UsageError(Exception):
    """A problem with the command line or the user's files (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default (a tuple as the comma list it is typed as), except for
    required options and help that states its own."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action.default, tuple):
            return f"{text} (default: {','.join(map(str, action.default))})"
        return super()._get_help_string(action)


# ------------------------------------------------------------- options from the estimator
def _plain(text):
    """reST markup of a docstring as plain text (``x`` -> x, :class:`~a.B` -> B)."""
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`<]+?)(?:\s*<[^>]*>)?`", r"\1", text)
    text = text.replace(" (see above)", "")
    return re.sub(r"``([^`]*)``", r"\1", text).replace("%", "%%")


def parameter_help(estimator_class=SRAEExplainer):
    """``{name: first sentence}`` of each parameter in the class docstring, as plain text."""
    doc = estimator_class.__doc__ or ""
    section = re.search(
        r"\n\s*Parameters\n\s*-+\n(.*?)(?:\n\s*\n\s*\w[\w ]*\n\s*-+\n|\Z)", doc, re.S
    )
    helps = {}
    for m in re.finditer(
        r"^    (\w+) : [^\n]*\n((?:        [^\n]*\n?)*)", section.group(1) if section else "", re.M
    ):
        words = " ".join(m.group(2).split())
        first = re.split(r"(?<=[a-z0-9)`])\.(?:\s|$)", words, maxsplit=1)[0]
        helps[m.group(1)] = _plain(first.rstrip(".") + ".")
    return helps


def _checked(convert, constraints, what):
    """An argparse type: ``convert(text)``, then the estimator's constraints on the value."""
    objects = [make_constraint(c) for c in constraints]

    def parse(text):
        if text.lower() == "none" and (None in constraints or "random_state" in constraints):
            return None
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not any(c.is_satisfied_by(value) for c in objects):
            allowed = " or ".join(str(c) for c in objects)
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


def _word_or_number(text):
    for convert in (int, float):
        with contextlib.suppress(ValueError):
            return convert(text)
    return text


def _number_tuple(default):
    """Comma lists like ``800,100`` for a tuple default (positive ints for an int tuple)."""
    ints = all(isinstance(v, numbers.Integral) for v in default)

    def parse(text):
        try:
            values = tuple((int if ints else float)(s) for s in text.split(","))
        except ValueError:
            kind = "integers" if ints else "numbers"
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind}, got {text!r}"
            ) from None
        if ints and min(values) < 1:
            raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
        return values

    return parse, ",".join(["INT" if ints else "X"] * max(len(default), 1))


def _option_kwargs(default, constraints):
    """argparse keyword arguments for one parameter from its default and its constraints."""
    options = [c for c in constraints if isinstance(c, StrOptions)]
    if options and len(options) == len(constraints):
        return dict(choices=sorted(set().union(*(c.options for c in options))), type=str)
    if options:  # a word or a number, e.g. "auto" or 0.5
        return dict(type=_checked(_word_or_number, constraints, "a word or a number"))
    for c in constraints:
        if c == "boolean":
            return dict(action=argparse.BooleanOptionalAction)
        if isinstance(c, Interval):
            if c.type is numbers.Integral:
                return dict(type=_checked(int, constraints, "an integer"), metavar="INT")
            return dict(type=_checked(float, constraints, "a number"), metavar="X")
        if c in ("random_state", "verbose"):
            return dict(type=_checked(int, constraints, "an integer"), metavar="INT")
        if c == "array-like" and isinstance(default, tuple):
            parse, metavar = _number_tuple(default)
            return dict(type=parse, metavar=metavar)
    if isinstance(default, bool):
        return dict(action=argparse.BooleanOptionalAction)
    if isinstance(default, tuple):
        parse, metavar = _number_tuple(default)
        return dict(type=parse, metavar=metavar)
    kinds = {int: "an integer", float: "a number"}
    convert = type(default) if type(default) in kinds else str
    return dict(type=_checked(convert, constraints, kinds.get(convert, "a string")))


def estimator_options(estimator_class=SRAEExplainer):
    """``{parameter: (flag, argparse kwargs)}`` for every parameter of the estimator.

    Names and defaults come from ``estimator_class().get_params()``, types, ranges and
    choices from its ``_parameter_constraints``, the help text from its docstring.
    """
    defaults = estimator_class().get_params(deep=False)
    order = list(inspect.signature(estimator_class).parameters)
    constraints = getattr(estimator_class, "_parameter_constraints", {})
    helps = parameter_help(estimator_class)
    options = {}
    for name in sorted(defaults, key=lambda n: order.index(n) if n in order else len(order)):
        default = defaults[name]
        kwargs = _option_kwargs(default, constraints.get(name, []))
        text = " ".join(
            filter(None, [helps.get(name, f"The {name} parameter."), _CLI_NOTES.get(name)])
        )
        kwargs.update(default=default, dest=name, help=text)
        options[name] = ("--" + name.replace("_", "-"), kwargs)
    return options


def _add_estimator_options(parser, defaults):
    group = parser.add_argument_group(
        "SRAEExplainer parameters", "every parameter of sklearn_xnn.SRAEExplainer"
    )
    for name, (flag, kwargs) in estimator_options().items():
        group.add_argument(flag, **{**kwargs, "default": defaults.get(name, kwargs["default"])})


def _estimator_params(args):
    """The SRAEExplainer parameters given on the command line (with their defaults)."""
    return {name: getattr(args, name) for name in SRAEExplainer().get_params(deep=False)}


# ------------------------------------------------------------------------------- parser
def _text(value):
    """A value as it is typed on the command line (a tuple as a comma list)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


_POSITIVE_INT = _checked(int, [Interval(numbers.Integral, 1, None, closed="left")], "an integer")
_FRACTION = _checked(float, [Interval(numbers.Real, 0, 1, closed="neither")], "a number")


def build_parser(quick=False):
    """The argument parser of ``sklearn-xnn``; ``quick=True``: ``demo --quick``'s defaults."""
    parser = _Parser(
        prog="sklearn-xnn",
        description=DESCRIPTION,
        epilog="'sklearn-xnn demo --help' and 'sklearn-xnn fit --help' list their options.",
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{demo,fit}", parser_class=_Parser)
    sub.required = True
    _add_demo_parser(sub, {**DEMO_DEFAULTS, **(QUICK_DEFAULTS if quick else {})})
    _add_fit_parser(sub)
    return parser


def _add_demo_parser(sub, defaults):
    from sklearn_xnn.torch import HEATMAP_METHODS

    demo = sub.add_parser(
        "demo",
        help="train a CNN on digits, explain it, write a report",
        description="Train a small CNN on scikit-learn's 8x8 digits, explain its fc1 layer, "
        "compare explainers and write report.html (well under a minute on one CPU core).",
        formatter_class=_HelpFormatter,
    )
    add = demo.add_argument
    add("--out", type=Path, default=Path("sklearn-xnn-demo"), help="output folder")
    quick = ", ".join(f"--{k.replace('_', '-')} {_text(v)}" for k, v in QUICK_DEFAULTS.items())
    add("--quick", action="store_true", help=f"a reduced run (seconds): {quick} unless given")
    add(
        "--heatmap",
        choices=HEATMAP_METHODS,
        default=HEATMAP_METHODS[0],
        metavar="METHOD",
        help=f"heatmap method of the report: {', '.join(HEATMAP_METHODS)}",
    )
    threads = "torch CPU threads (1 is fastest for the demo's tiny models)"
    add("--threads", type=_POSITIVE_INT, default=1, metavar="INT", help=threads)
    _add_estimator_options(demo, defaults)


def _add_fit_parser(sub):
    fit = sub.add_parser(
        "fit",
        help="explain your own activations and logits",
        description="Fit SRAE and the baselines on your own activations and logits, save the "
        "explainer (explainer.safetensors), comparison.csv and report.html.",
        formatter_class=_HelpFormatter,
    )
    add = fit.add_argument
    acts = "activations, an (n_samples, n_features) array in a .npy or .npz file"
    add("--activations", required=True, metavar="Z.npy[:KEY]", help=acts)
    logits = "the outputs to explain, (n_samples,) or (n_samples, n_outputs)"
    add("--logits", required=True, metavar="Y.npy[:KEY]", help=logits)
    add("--out", type=Path, default=Path("sklearn-xnn-fit"), help="output folder")
    add("--test-size", type=_FRACTION, default=0.2, metavar="X", help="held-out fraction")
    threads = "torch CPU threads (default: torch's choice)"
    add("--threads", type=_POSITIVE_INT, default=None, metavar="INT", help=threads)
    _add_estimator_options(fit, CLI_DEFAULTS)


def main(argv=None):
    """Run the command line; returns the exit status."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser(quick="--quick" in argv).parse_args(argv)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        with _epoch_progress(args.verbose):
            return run_demo(args) if args.command == "demo" else run_fit(args)
    except UsageError as exc:
        print(f"sklearn-xnn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sklearn-xnn: interrupted", file=sys.stderr)
        return 130


# ------------------------------------------------------------------------------ progress
class _Steps:
    """Numbered progress lines on stderr with the time since the start."""

    def __init__(self, total):
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def __call__(self, text):
        self.n += 1
        elapsed = time.perf_counter() - self.t0
        print(f"[{self.n}/{self.total} {elapsed:5.1f}s] {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _epoch_progress(verbose):
    """While fitting, the ``sklearn_xnn`` logger's INFO lines (each epoch's loss) on stderr."""
    if not verbose:
        yield
        return
    logger = logging.getLogger("sklearn_xnn")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("    %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# ------------------------------------------------------------------------------ helpers
def _check_device(device):
    from sklearn_xnn._nn.convert import resolve_device

    try:
        return resolve_device(device)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None


def _checked_params(args, n_features):
    """The estimator parameters, checked against the constraints before any work starts."""
    params = _estimator_params(args)
    try:
        SRAEExplainer(**params)._validate_params()
    except InvalidParameterError as exc:
        raise UsageError(str(exc)) from None
    if params["n_components"] > n_features:
        raise UsageError(
            f"--n-components {params['n_components']} exceeds the {n_features} activation features"
        )
    return params


def _print_table(table):
    """The main columns on stdout, one line per metric (the report and the CSV have all)."""
    from sklearn_xnn.compare import DEFAULT_COLUMNS, format_comparison

    print(format_comparison(table, [c for c in DEFAULT_COLUMNS if c in table.columns]))


def _fit_and_compare(params, step, Z_tr, y_tr, Z_te, y_te):
    """Fit SRAE, then the baselines, on the training rows; one table and the fitted models."""
    import pandas as pd

    from sklearn_xnn.compare import compare_explainers, default_explainers

    rest = dict(params)
    K, seed = rest.pop("n_components"), rest.pop("random_state")
    explainers = default_explainers(K, seed, srae_params=rest)
    srae = {"SRAE": explainers.pop("SRAE")}
    step(
        f"fitting SRAE (K={K}, hidden_layer_sizes={params['hidden_layer_sizes']}, "
        f"max_iter={params['max_iter']}) on {len(Z_tr)} rows..."
    )
    tables, fitted = [], {}
    for group in (srae, explainers):
        if group is explainers:
            step(f"fitting baselines ({', '.join(explainers)})...")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table, models = compare_explainers(group, Z_tr, y_tr, Z_te, y_te, return_fitted=True)
        tables.append(table)
        fitted.update(models)
    return pd.concat(tables), fitted


def _non_default(params):
    """``name=value`` for each parameter that differs from the estimator's default."""
    defaults = SRAEExplainer().get_params(deep=False)
    changed = [f"{k}={v!r}" for k, v in params.items() if k != "verbose" and v != defaults[k]]
    return ", ".join(changed) or "none"


def _add_reconstruction_columns(table, fitted, head_network, Z_test, y_test):
    """Add ``reconstruction_faithfulness_r2`` / ``reconstruction_top1_agreement`` columns."""
    from sklearn_xnn.torch import reconstruction_faithfulness

    for name, est in fitted.items():
        if est is None or not hasattr(est, "inverse_transform"):
            continue
        scores = reconstruction_faithfulness(est, head_network, Z_test, y_test)
        for column, value in scores.items():
            table.loc[name, column] = value
    front = [
        "faithfulness_r2",
        "reconstruction_faithfulness_r2",
        "top1_agreement",
        "reconstruction_top1_agreement",
    ]
    order = [c for c in front if c in table.columns]
    return table[order + [c for c in table.columns if c not in order]]


def _embedders(fitted):
    """The fitted embedding of each explainer (the transformer inside a headed pipeline)."""
    from sklearn.pipeline import Pipeline

    return {name: est[0] if isinstance(est, Pipeline) else est for name, est in fitted.items()}


# --------------------------------------------------------------------------------- demo
def _digits_cnn(args, cfg, step):
    """Train the digits CNN; returns the model and the train/test images and labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from sklearn_xnn.datasets import train_digits_cnn

    step(f"training the digits CNN ({cfg['cnn_epochs']} epochs on 8x8 images, CPU)...")
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    im_tr, im_te, lab_tr, lab_te = train_test_split(
        images,
        digits.target,
        test_size=0.3,
        stratify=digits.target,
        random_state=args.random_state,
    )
    model = train_digits_cnn(
        im_tr, lab_tr, epochs=cfg["cnn_epochs"], random_state=args.random_state
    )
    return model, (im_tr, im_te), lab_te


def _layer_activations(model, images, device):
    """``Z_train, y_train, Z_test, y_test`` of layer relu_fc1 (float64)."""
    from sklearn_xnn.torch import extract_activations

    return tuple(
        a.astype(np.float64)
        for ims in images
        for a in extract_activations(model, "relu_fc1", ims, device=device, progress=True)
    )


def _add_network_columns(table, fitted, model, im_te, Z_te, y_te):
    """Reconstruction faithfulness through the rest of the network (fc2)."""
    import torch

    from sklearn_xnn.torch import check_split, split_sequential

    trunk, rest = split_sequential(model, "relu_fc1")
    check_split(model, trunk, rest, torch.as_tensor(im_te[:8]))
    return _add_reconstruction_columns(table, fitted, rest, Z_te, y_te)


def run_demo(args):
    """Train a CNN on digits, explain its fc1 layer, compare, write ``report.html``."""
    device = _check_device(args.device)
    params = _checked_params(args, n_features=64)
    cfg = _DEMO["quick" if args.quick else "full"]
    step = _Steps(7)
    model, images, lab_te = _digits_cnn(args, cfg, step)
    step(f"extracting layer relu_fc1 on {device}...")
    Z_tr, y_tr, Z_te, y_te = _layer_activations(model, images, args.device)
    accuracy = float((y_te.argmax(1) == lab_te).mean())
    step(f"CNN held-out accuracy {accuracy:.3f}")
    table, fitted = _fit_and_compare(params, step, Z_tr, y_tr, Z_te, y_te)
    fitted = _embedders(fitted)
    table = _add_network_columns(table, fitted, model, images[1], Z_te, y_te)
    _print_table(table)
    step(f"writing report (heatmaps: {args.heatmap})...")
    path = _demo_report(args, cfg, table, fitted["SRAE"], model, images[1], Z_te, accuracy)
    step(f"wrote {path}")
    return 0


def _demo_report(args, cfg, table, srae, model, im_te, Z_te, accuracy):
    from sklearn_xnn.report import write_report
    from sklearn_xnn.torch import ExplainedNetwork

    return write_report(
        args.out,
        table,
        explainer=srae,
        Z=Z_te,
        images=im_te,
        network=ExplainedNetwork(model, srae, layer="relu_fc1"),
        heatmap_method=args.heatmap,
        output_names=[str(d) for d in range(10)],
        n_examples=cfg["n_examples"],
        n_top=cfg["n_top"],
        title="sklearn_xnn demo: a digits CNN explained",
        notes=_demo_notes(args, cfg, accuracy, len(Z_te)),
    )


def _demo_notes(args, cfg, accuracy, n_test):
    return [
        f"Network: DigitsCNN trained {cfg['cnn_epochs']} epochs on 70% of scikit-learn's "
        f"8x8 digits (held-out accuracy {accuracy:.3f}); explained layer relu_fc1 (64 units), "
        f"logits of fc2 (10 classes); metrics on {n_test} held-out images.",
        f"Every explainer has K={args.n_components}; PCA, NMF, PLS and the random projection get "
        "a least-squares head on their training embedding. reconstruction_faithfulness_r2 / "
        "reconstruction_top1_agreement: fc2 applied to inverse_transform(transform(Z)) "
        "against the original logits.",
        f"SRAE parameters other than the defaults: {_non_default(_estimator_params(args))}.",
    ]


# ---------------------------------------------------------------------------------- fit
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
        if a.ndim not in ndims or not np.issubdtype(a.dtype, np.number):
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
    _check_device(args.device)
    params = _checked_params(args, n_features=Z.shape[1])
    step = _Steps(5)
    Z_tr, Z_te, y_tr, y_te = train_test_split(
        Z, Y, test_size=args.test_size, random_state=args.random_state
    )
    table, fitted = _fit_and_compare(params, step, Z_tr, y_tr, Z_te, y_te)
    _print_table(table)
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
            f"SRAE parameters other than the defaults: {_non_default(_estimator_params(args))}.",
        ],
    )
