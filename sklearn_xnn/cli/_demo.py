"""``sklearn-xnn demo``: train a CNN on digits, explain its fc1 layer, write a report."""

import sys
from numbers import Integral

import numpy as np

from sklearn_xnn.cli import _shared as shared
from sklearn_xnn.cli._parser import DEMO_DEFAULTS, QUICK_DEFAULTS, UsageError

#: The demo's CNN and report sizes.
_DEMO = {
    "full": dict(cnn_epochs=15, n_examples=6, n_top=8),
    "quick": dict(cnn_epochs=2, n_examples=2, n_top=4),
}


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


def _digits_cnn(args, cfg, step):
    """Train the digits CNN; returns the model and the train/test images and labels."""
    from sklearn_xnn.datasets import train_digits_cnn
    from sklearn_xnn.datasets._digits import split_digit_images

    step(f"training the digits CNN ({cfg['cnn_epochs']} epochs on 8x8 images, CPU)...")
    im_tr, im_te, lab_tr, lab_te = split_digit_images(0.3, args.random_state)
    model = train_digits_cnn(
        im_tr, lab_tr, epochs=cfg["cnn_epochs"], random_state=args.random_state
    )
    return model, (im_tr, im_te), lab_te


def _layer_activations(model, images, device):
    """``Z_train, y_train, Z_test, y_test`` of layer relu_fc1 (float64); a progress bar
    only on a terminal (redirected, it would leave its redraws in the log)."""
    from sklearn_xnn.torch import extract_activations

    bar = sys.stderr.isatty()
    return tuple(
        a.astype(np.float64)
        for ims in images
        for a in extract_activations(model, "relu_fc1", ims, device=device, progress=bar)
    )


def _default_widths(args):
    """``--hidden-layer-sizes`` when it is not given: the demo's default (``--quick``'s)
    when every layer is at least ``--n-components`` wide, else ``"auto"``, the widths the
    estimator gives the K it fits (a K above the narrowest layer, or one that ``auto`` or
    a fraction chooses). A given value is kept as it is."""
    widths, K = args.hidden_layer_sizes, args.n_components
    defaults = (DEMO_DEFAULTS["hidden_layer_sizes"], QUICK_DEFAULTS["hidden_layer_sizes"])
    # argparse keeps a default that is not a string as the very object (as it tells given
    # values from defaults itself); a value typed on the command line is a new tuple
    if not any(widths is d for d in defaults):
        return widths
    return widths if isinstance(K, Integral) and K <= min(widths) else "auto"


def _add_network_columns(table, fitted, model, im_te, Z_te, y_te):
    """Reconstruction faithfulness through the rest of the network (fc2)."""
    import torch

    from sklearn_xnn.torch import check_split, split_sequential

    trunk, rest = split_sequential(model, "relu_fc1")
    check_split(model, trunk, rest, torch.as_tensor(im_te[:8]))
    return _add_reconstruction_columns(table, fitted, rest, Z_te, y_te)


def run_demo(args):
    """Train a CNN on digits, explain its fc1 layer, compare, write ``report.html``."""
    device = shared.check_device(args.device)
    args.hidden_layer_sizes = _default_widths(args)
    params = shared.checked_params(args, n_features=64)
    cfg = _DEMO["quick" if args.quick else "full"]
    step = shared.Steps(7)
    model, images, lab_te = _digits_cnn(args, cfg, step)
    step(f"extracting layer relu_fc1 on {device}...")
    Z_tr, y_tr, Z_te, y_te = _layer_activations(model, images, args.device)
    accuracy = float((y_te.argmax(1) == lab_te).mean())
    step(f"CNN held-out accuracy {accuracy:.3f}")
    try:
        table, fitted = shared.fit_and_compare(params, step, Z_tr, y_tr, Z_te, y_te)
    except ValueError as exc:  # the demo's data is fixed: an option the fit refuses
        message = " ".join(str(exc).split())
        raise UsageError(f"fitting failed with these options: {message}") from None
    fitted = _embedders(fitted)
    table = _add_network_columns(table, fitted, model, images[1], Z_te, y_te)
    shared.print_table(table)
    step(f"writing report (heatmaps: {args.heatmap})...")
    held_out = images[1], Z_te, y_te
    with shared.writing_into(args.out):
        path = _demo_report(args, cfg, table, fitted["SRAE"], model, held_out, accuracy)
    step(f"wrote {path}")
    return 0


def _demo_report(args, cfg, table, srae, model, held_out, accuracy):
    """The report on the held-out ``(images, Z, y)``; the decompositions explain the CNN's
    decisions."""
    from sklearn_xnn.report import write_report
    from sklearn_xnn.torch import ExplainedNetwork

    im_te, Z_te, y_te = held_out
    return write_report(
        args.out,
        table,
        explainer=srae,
        Z=Z_te,
        y=y_te,
        images=im_te,
        network=ExplainedNetwork(model, srae, layer="relu_fc1"),
        heatmap_method=args.heatmap,
        output_names=[str(d) for d in range(10)],
        n_examples=cfg["n_examples"],
        n_top=cfg["n_top"],
        title="sklearn_xnn demo: a digits CNN explained",
        notes=_demo_notes(args, cfg, accuracy, len(Z_te), srae.n_components_),
    )


def _demo_notes(args, cfg, accuracy, n_test, k):
    return [
        f"Network: DigitsCNN trained {cfg['cnn_epochs']} epochs on 70% of scikit-learn's "
        f"8x8 digits (held-out accuracy {accuracy:.3f}); explained layer relu_fc1 (64 units), "
        f"logits of fc2 (10 classes); metrics on {n_test} held-out images.",
        f"Every explainer has {shared.k_note(args.n_components, k)}; PCA, NMF, PLS and the "
        "random projection get a least-squares head on their training embedding. "
        "reconstruction_faithfulness_r2 / reconstruction_top1_agreement: fc2 applied to "
        "inverse_transform(transform(Z)) against the original logits.",
        shared.params_note(args),
    ]
