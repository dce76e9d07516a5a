"""The ``sklearn-xnn`` command: ``demo`` on a digits CNN, ``fit`` on your own arrays.

Errors in the user's input (missing files, bad shapes, unknown options, bad ``.npz``
keys) print one line and exit with status 2, without a traceback.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HEATMAPS = (
    "contrastive_excitation_backprop",
    "excitation_backprop",
    "grad_cam",
    "gradient_input",
)


class UsageError(Exception):
    """A problem with the command line or the user's files (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _hidden_sizes(text):
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return sizes


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {value}")
    return value


def _add_estimator_options(p, max_iter, hidden, threads=None):
    p.add_argument("--n-components", type=_positive_int, default=5, help="x-features K")
    p.add_argument("--max-iter", type=_positive_int, default=max_iter, help="SRAE epochs")
    p.add_argument(
        "--hidden-layer-sizes",
        type=_hidden_sizes,
        default=hidden,
        metavar="H1,H2",
        help="SRAE hidden widths",
    )
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=threads,
        help="torch CPU threads"
        + (
            " (default: 1, fastest for the demo's tiny models)"
            if threads
            else " (default: torch's choice)"
        ),
    )


def build_parser():
    """The argument parser of ``sklearn-xnn``."""
    parser = _Parser(prog="sklearn-xnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="{demo,fit}", parser_class=_Parser)
    sub.required = True
    demo = sub.add_parser("demo", help="train a CNN on digits, explain it, write a report")
    demo.add_argument("--out", type=Path, default=Path("sklearn-xnn-demo"), help="output folder")
    demo.add_argument("--quick", action="store_true", help="a reduced run (seconds)")
    demo.add_argument("--heatmap", choices=HEATMAPS, default=HEATMAPS[0])
    _add_estimator_options(demo, max_iter=60, hidden=(256, 32), threads=1)
    fit = sub.add_parser("fit", help="explain your own activations and logits")
    fit.add_argument("--activations", required=True, metavar="Z.npy[:KEY]")
    fit.add_argument("--logits", required=True, metavar="Y.npy[:KEY]")
    fit.add_argument("--out", type=Path, default=Path("sklearn-xnn-fit"), help="output folder")
    fit.add_argument("--test-size", type=_fraction, default=0.2, help="held-out fraction")
    _add_estimator_options(fit, max_iter=100, hidden=(800, 100))
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.command == "demo":
            return run_demo(args)
        return run_fit(args)
    except UsageError as exc:
        print(f"sklearn-xnn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sklearn-xnn: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------- helpers
class _Steps:
    """Numbered progress lines on stderr with the time each step took."""

    def __init__(self, total):
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def __call__(self, text):
        self.n += 1
        elapsed = time.perf_counter() - self.t0
        print(f"[{self.n}/{self.total} {elapsed:5.1f}s] {text}", file=sys.stderr, flush=True)


def _check_device(device):
    from sklearn_xnn._nn.convert import resolve_device

    try:
        return resolve_device(device)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None


def _srae_params(args, quick=False):
    params = dict(
        hidden_layer_sizes=args.hidden_layer_sizes, max_iter=args.max_iter, device=args.device
    )
    if quick:
        params.update(pretrain=1, collapse_retries=0)
    return params


def _print_table(table):
    """The main columns on stdout (the report and the CSV have them all)."""
    import pandas as pd

    from sklearn_xnn.report._html import MAIN_COLUMNS

    shown = [c for c in MAIN_COLUMNS if c in table.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table[shown].to_string(float_format=lambda v: f"{v:.3g}"))


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


# ---------------------------------------------------------------------------- demo
_DEMO = {
    "full": dict(cnn_epochs=15, n_examples=6, n_top=8),
    "quick": dict(cnn_epochs=2, n_examples=2, n_top=4),
}


def run_demo(args):
    """Train a CNN on digits, explain its fc1 layer, compare, write ``report.html``."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from sklearn_xnn.compare import compare_explainers, default_explainers
    from sklearn_xnn.datasets import train_digits_cnn
    from sklearn_xnn.report import write_report
    from sklearn_xnn.torch import (
        ExplainedNetwork,
        check_split,
        extract_activations,
        split_sequential,
    )

    device = _check_device(args.device)
    cfg = _DEMO["quick" if args.quick else "full"]
    if args.quick:
        args.max_iter = min(args.max_iter, 5)
        args.hidden_layer_sizes = (32, 8)
    step = _Steps(6)
    step(f"training the digits CNN ({cfg['cnn_epochs']} epochs on 8x8 images, CPU)")
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
    step(f"extracting layer relu_fc1 on {device}")
    Z_tr, y_tr, Z_te, y_te = (
        a.astype(np.float64)
        for pair in (
            extract_activations(model, "relu_fc1", ims, device=args.device, progress=True)
            for ims in (im_tr, im_te)
        )
        for a in pair
    )
    accuracy = float((y_te.argmax(1) == lab_te).mean())
    step(f"fitting and comparing explainers (CNN held-out accuracy {accuracy:.3f})")
    explainers = default_explainers(
        args.n_components, args.random_state, srae_params=_srae_params(args, args.quick)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, fitted = compare_explainers(explainers, Z_tr, y_tr, Z_te, y_te, return_fitted=True)
    step("reconstruction faithfulness through the rest of the network (fc2)")
    trunk, rest = split_sequential(model, "relu_fc1")
    check_split(model, trunk, rest, torch.as_tensor(im_te[:8]))
    fitted = _embedders(fitted)
    table = _add_reconstruction_columns(table, fitted, rest, Z_te, y_te)
    _print_table(table)
    step(f"heatmaps ({args.heatmap}) and report")
    srae = fitted["SRAE"]
    path = write_report(
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
        notes=_demo_notes(args, cfg, accuracy, len(Z_tr), len(Z_te)),
    )
    step(f"wrote {path}")
    return 0


def _demo_notes(args, cfg, accuracy, n_train, n_test):
    return [
        f"Network: DigitsCNN trained {cfg['cnn_epochs']} epochs on {n_train} of scikit-learn's "
        f"8x8 digits (held-out accuracy {accuracy:.3f}); explained layer relu_fc1 (64 units), "
        f"logits of fc2 (10 classes); metrics on {n_test} held-out images.",
        f"Every explainer has K={args.n_components}; PCA, NMF, PLS and the random projection get "
        "a least-squares head on their training embedding. reconstruction_faithfulness_r2 / "
        "reconstruction_top1_agreement: fc2 applied to inverse_transform(transform(Z)) "
        "against the original logits.",
        f"SRAE: hidden_layer_sizes={args.hidden_layer_sizes}, max_iter={args.max_iter}, "
        f"random_state={args.random_state}.",
    ]


# ---------------------------------------------------------------------------- fit
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

    from sklearn_xnn.compare import compare_explainers, default_explainers
    from sklearn_xnn.report import write_report

    Z, Y = _validated_arrays(args)
    _check_device(args.device)
    if args.n_components > Z.shape[1]:
        raise UsageError(
            f"--n-components {args.n_components} exceeds the {Z.shape[1]} activation features"
        )
    step = _Steps(4)
    Z_tr, Z_te, y_tr, y_te = train_test_split(
        Z, Y, test_size=args.test_size, random_state=args.random_state
    )
    step(f"fitting and comparing explainers on {len(Z_tr)} rows, measuring on {len(Z_te)}")
    explainers = default_explainers(
        args.n_components, args.random_state, srae_params=_srae_params(args)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, fitted = compare_explainers(explainers, Z_tr, y_tr, Z_te, y_te, return_fitted=True)
    _print_table(table)
    step("saving the fitted SRAE explainer")
    srae = fitted["SRAE"]
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "explainer.safetensors"
    srae.save(model_path)
    table.to_csv(args.out / "comparison.csv")
    step(f"saved {model_path} (load with sklearn_xnn.load) and comparison.csv")
    path = write_report(
        args.out,
        table,
        explainer=srae,
        Z=Z_te,
        title="sklearn_xnn: explanation report",
        notes=[
            f"Activations {args.activations} ({Z.shape[1]} features), logits {args.logits}; "
            f"{len(Z_tr)} training rows, {len(Z_te)} held-out rows; K={args.n_components}."
        ],
    )
    step(f"wrote {path}")
    return 0
