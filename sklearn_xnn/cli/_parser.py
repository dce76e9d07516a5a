"""The argument parser of ``sklearn-xnn``: the ``demo`` and ``fit`` sub-commands."""

import argparse
import numbers
from pathlib import Path

from sklearn.utils._param_validation import Interval

from sklearn_xnn.cli._options import add_estimator_options, checked

DESCRIPTION = (
    "Explain one layer of a trained network with a few sparse, non-negative x-features "
    "(SRAE), compare them with PCA, NMF, PLS and a random projection, and write an HTML "
    "report."
)

#: Options whose command-line default differs from the estimator's (every other option
#: of ``fit`` has the estimator's default): the command shows each epoch's loss on
#: stderr; ``--verbose 0`` silences it.
CLI_DEFAULTS = {"verbose": 1}

#: The demo's smaller network for the CNN's 64-unit layer, and a fixed seed so that two
#: runs give the same report.
DEMO_DEFAULTS = {**CLI_DEFAULTS, "hidden_layer_sizes": (256, 32), "max_iter": 60, "random_state": 0}

#: The defaults of ``demo --quick`` (options given on the command line win).
QUICK_DEFAULTS = {
    "hidden_layer_sizes": (32, 8),
    "max_iter": 5,
    "pretrain": 1,
}


#: The help of ``--out`` (both commands).
OUT_HELP = (
    "output folder, created if needed; files an earlier run of this tool wrote there are "
    "replaced (those this run does not write are removed), other files are left alone"
)


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


def _text(value):
    """A value as it is typed on the command line (a tuple as a comma list)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


_POSITIVE_INT = checked(int, [Interval(numbers.Integral, 1, None, closed="left")], "an integer")
_FRACTION = checked(float, [Interval(numbers.Real, 0, 1, closed="neither")], "a number")


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
        "compare explainers and write report.html (well under a minute on one CPU core). "
        "Unless --hidden-layer-sizes is given, the demo's widths become auto when they "
        "cannot carry --n-components (a K above the narrowest layer, or a K that auto or "
        "a fraction chooses).",
        formatter_class=_HelpFormatter,
    )
    add = demo.add_argument
    add("--out", type=Path, default=Path("sklearn-xnn-demo"), help=OUT_HELP)
    quick = ", ".join(f"--{k.replace('_', '-')} {_text(v)}" for k, v in QUICK_DEFAULTS.items())
    add("--quick", action="store_true", help=f"a reduced run (seconds): {quick} unless given")
    add(
        "--heatmap",
        choices=HEATMAP_METHODS,
        default="excitation_backprop",
        metavar="METHOD",
        help=f"heatmap method of the report: {', '.join(HEATMAP_METHODS)}",
    )
    threads = "torch CPU threads (1 is fastest for the demo's tiny models)"
    add("--threads", type=_POSITIVE_INT, default=1, metavar="INT", help=threads)
    add_estimator_options(demo, defaults)


def _add_fit_parser(sub):
    fit = sub.add_parser(
        "fit",
        help="explain your own activations and logits",
        description="Fit SRAE and the baselines on your own activations and logits, save the "
        "explainer (explainer.safetensors), comparison.csv and report.html.",
        formatter_class=_HelpFormatter,
    )
    add = fit.add_argument
    acts = (
        "activations, an (n_samples, n_features) array in a .npy file (memory-mapped, "
        "float32 kept as float32) or a .npz file (Z.npz:KEY picks one of its arrays)"
    )
    add("--activations", required=True, metavar="Z.npy|Z.npz[:KEY]", help=acts)
    logits = "the outputs to explain, (n_samples,) or (n_samples, n_outputs), as for --activations"
    add("--logits", required=True, metavar="Y.npy|Y.npz[:KEY]", help=logits)
    names = (
        "a UTF-8 text file naming the outputs, one distinct name per line in the logits' "
        "column order: the report shows the names (default: column indices)"
    )
    add("--output-names", type=Path, default=None, metavar="NAMES.txt", help=names)
    add("--out", type=Path, default=Path("sklearn-xnn-fit"), help=OUT_HELP)
    add("--test-size", type=_FRACTION, default=0.2, metavar="X", help="held-out fraction")
    threads = "torch CPU threads (default: torch's choice)"
    add("--threads", type=_POSITIVE_INT, default=None, metavar="INT", help=threads)
    add_estimator_options(fit, CLI_DEFAULTS)
