"""The ``sklearn-xnn`` command: ``demo`` on a digits CNN, ``fit`` on your own arrays.

Every :class:`~sklearn_xnn.SRAEExplainer` parameter that has a command-line form (all
but those taking a Python object, ``network_head``, and deprecated ones) is an option of
both commands. The options are generated from the estimator itself (names and defaults
from ``get_params()``, types and choices from ``_parameter_constraints``, help from the
class docstring), so a new parameter appears on the command line by itself and the
defaults of ``fit`` are the estimator's. Progress (each step, and each training epoch's
loss through the ``sklearn_xnn`` logger) goes to stderr, as do the warnings of the SRAE
fit (each distinct message once, ``warning: ...``); the comparison table goes to stdout.
Progress bars are shown only when stderr is a terminal.

Both commands write into ``--out``: the files of an earlier run of the tool there (its
own output names only) are replaced, and those this run does not write (e.g. a
``fit``'s ``explainer.safetensors`` before a ``demo``) are removed; other files are left
alone. ``--out`` is checked before any work: it must be a folder, or name one that can
be created.

``fit`` memory-maps a ``.npy`` file (read-only) and checks it by chunks; float32 and
float64 activations are passed on in their own dtype (only the rows of each side of
the train/test split are copied), others as the estimator would convert them (float16
as float32, integers and booleans as float64). A ``.npz`` member is read whole (a zip
member cannot be mapped), in its own dtype too.

Errors in the user's input (missing files, files that are not ``.npy``/``.npz``, bad
shapes or dtypes, constant activations, a ``--test-size`` that leaves fewer than 2 rows
on a side, unknown options, bad values, hidden layers narrower than K, an ``--out`` that
cannot be written, bad ``.npz`` keys, arrays an estimator refuses) print one line and
exit with status 2, without a traceback.
"""

import sys

from sklearn_xnn.cli._demo import run_demo
from sklearn_xnn.cli._fit import run_fit
from sklearn_xnn.cli._options import estimator_options, parameter_help
from sklearn_xnn.cli._parser import (
    CLI_DEFAULTS,
    DEMO_DEFAULTS,
    DESCRIPTION,
    QUICK_DEFAULTS,
    UsageError,
    build_parser,
)
from sklearn_xnn.cli._shared import epoch_progress

__all__ = [
    "CLI_DEFAULTS",
    "DEMO_DEFAULTS",
    "DESCRIPTION",
    "QUICK_DEFAULTS",
    "UsageError",
    "build_parser",
    "estimator_options",
    "main",
    "parameter_help",
    "run_demo",
    "run_fit",
]


def main(argv=None):
    """Run the command line; returns the exit status."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser().parse_args(argv)
        if args.command == "demo" and args.quick:  # parsed again with --quick's defaults
            args = build_parser(quick=True).parse_args(argv)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        with epoch_progress(args.verbose):
            return run_demo(args) if args.command == "demo" else run_fit(args)
    except UsageError as exc:
        print(f"sklearn-xnn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sklearn-xnn: interrupted", file=sys.stderr)
        return 130
