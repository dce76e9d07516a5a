"""How SRAEExplainer's parameters become a training run and its result the fitted state.

Before training: validation, scaling, the linear reference, the configuration and the
faithfulness constraint (:func:`start_fit`). Training: one attempt (:func:`train`) and
``partial_fit`` epochs (:func:`train_chunk`). After: the
one writer of the fitted attributes (:func:`store`, weights folded into the caller's units
by the scaler), :func:`engine_from_fitted` to rebuild the torch side from them (for a
``partial_fit`` after ``fit`` or unpickling), and the warnings' words.
"""

import contextlib
import copy
import dataclasses
import logging
import math
import sys
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from sklearn_xnn._nn import data, engine, modules, training
from sklearn_xnn._nn.collective import LOCAL
from sklearn_xnn._nn.config import History, TrainConfig
from sklearn_xnn._nn.data import device_generator, make_generator, resolve_device, to_tensor
from sklearn_xnn._nn.scaling import Scaler, activation_problem
from sklearn_xnn._threads import torch_threads
from sklearn_xnn._validation import (
    announce_constant_y,
    check_params_vs_input,
    check_widths,
    validate_fit_data,
    warn_user,
)
from sklearn_xnn.exceptions import TrainingDivergedError

_PAPER = dict(
    faithfulness_tol=None,
    alpha_faithfulness=1.0,
    log_penalty=100.0,
    reconstruction="log",
    hidden_layer_sizes=(800, 100),
    dropout=0.02,
    batch_size=50,
    pretrain=10,
    max_iter=150,
    n_iter_no_change=10,
    rescale=False,
)
#: The reference recipe of Qi, Khorram & Li (tuned on raw VGG fc activations).
REFERENCE_PARAMS = {
    "samples": dict(_PAPER, alpha_reconstruction=10.0, alpha_pullaway=10.0, pullaway="samples"),
    "components": dict(
        _PAPER, alpha_reconstruction=15.0, alpha_pullaway=5.0, pullaway="components"
    ),
}


#: The parameters that decide the network's shape, the scale and the constraint: fixed
#: by ``fit`` (or the first ``partial_fit``) for every later ``partial_fit`` call.
FIXED_PARAMS = ("n_components", "hidden_layer_sizes", "faithfulness", "multioutput",
                "faithfulness_tol", "temperature", "rescale")  # fmt: skip


@dataclasses.dataclass
class FitRun:
    """What ``fit`` prepared for training one explainer (:func:`start_fit`)."""

    train: tuple
    cfg: TrainConfig
    generator: torch.Generator
    device: torch.device
    reference: tuple
    val: tuple | None
    scaler: object
    incremental: bool = False


def memo(cache, key, compute, *args):
    """``compute(*args)``, computed once per ``key`` when ``cache`` is a dict (None: always)."""
    if cache is None:
        return compute(*args)
    if key not in cache:
        cache[key] = compute(*args)
    return cache[key]


def train(est, run, result=None):
    """Train the one attempt of a prepared fit (:class:`FitRun`), or take ``result``, the
    attempt trained for it in a stacked network; returns it once checked."""
    if result is None:
        train, cfg, gen, ref = run.train, run.cfg, run.generator, run.reference
        result = engine.attempt(*train, cfg, gen, run.device, ref, run.val)
    return checked(est, result, result.stage)


def train_chunk(est, eng, X, Y):
    """One ``partial_fit`` epoch over a chunk, on the kept engine, with the explainer's
    current weights of the regularisers and learning rate (``set_params`` between calls
    takes effect; the network's shape and the constraint stay those of the first call)."""
    Zt, Yt = eng.scaler.chunk(X, Y, eng.device)
    eng.cfg = dataclasses.replace(
        eng.cfg,
        alpha_r=float(est.alpha_reconstruction),
        alpha_p=float(est.alpha_pullaway),
        lr=float(est.learning_rate_init),
    )
    # a chunk shorter than one minibatch is a step, not a data set: its own least-squares
    # head would fit it alone, so the head keeps what its gradient steps learn; a stream
    # has no epochs to warm up or decay over: the learning rate stays learning_rate_init
    cfg = dataclasses.replace(
        eng.cfg,
        max_iter=1,
        batch_size=min(est.batch_size, X.shape[0]),
        exact_head=X.shape[0] >= est.batch_size,
        warmup_steps=0,
        lr_gamma=1.0,
    )
    resumed = eng.multiplier if eng.constraints is None else eng.constraints
    result = engine.tune(
        eng.model, Zt, Yt, cfg, eng.generator, None, eng.optimizer, resumed, eng.epochs
    )
    checked(est, result, "partial_fit")
    if X.shape[0] < 2:  # R² of one row is undefined (r2_score: NaN)
        result.faithfulness = math.nan
    eng.optimizer, eng.multiplier = result.optimizer, result.multiplier
    eng.constraints = result.constraints
    eng.history.extend(result.history)
    result.history = eng.history
    return result


def store_constraint(est, cfg, the_bound, train):
    """The linear faithfulness reference and the constraint derived from it.

    Sets ``faithfulness_bound_`` (the rank-K linear predictor's training R² for
    ``"mse"``, its mean softmax KL for ``"kl"``) and returns ``cfg`` with the target:
    ``1 - R²_bound + faithfulness_tol`` for ``"mse"``, ``min(faithfulness_tol, KL_bound)``
    nats for ``"kl"`` (never less faithful to the decisions than the linear reference).
    """
    est.faithfulness_bound_ = None
    est._faith_target = est._output_weights = None
    if the_bound is None:  # unsupervised: no constraint (nor one left by an earlier fit)
        return dataclasses.replace(cfg, faith_target=None, output_weights=None)
    var = the_bound.y_variance.cpu().numpy()
    varying = var > 0
    n = cfg.collective.total_rows(train[1].shape[0])
    if est.multioutput == "variance_weighted":  # sum_c rss_c / sum_c var_c
        est._output_weights = np.where(varying, n / max(float(var[varying].sum()), 1e-300), 0.0)
    else:  # mean_c rss_c / var_c
        weights = np.where(varying, n / np.where(varying, var, 1.0), 0.0)
        est._output_weights = weights / max(int(varying.sum()), 1)
    cfg = dataclasses.replace(cfg, output_weights=to_tensor(est._output_weights, train[0].device))
    if cfg.faithfulness == "kl":  # the rank-K linear predictor's KL, on every row
        reference = training.prediction_error(the_bound.predict, *train, cfg)
        est.faithfulness_bound_ = reference
    else:  # its R², from the moments
        reference = est.faithfulness_bound_ = the_bound.r2
    if est.faithfulness_tol is not None:
        tol = float(est.faithfulness_tol)
        kl = cfg.faithfulness == "kl"
        est._faith_target = min(tol, reference) if kl else max(1.0 - reference, 0.0) + tol
    return dataclasses.replace(cfg, faith_target=est._faith_target)


def train_config(est, n_outputs, nonneg_output, batch_size, n_train, incremental, y_stats=None):
    """The :class:`TrainConfig` of ``est``'s parameters (and its stored constraint).

    ``y_stats`` is ``(y_mean, y_scale)``, the logits' standardisation. Its ``logit_unit``
    is 1, or for logits beyond float32's comfortable range (``1e-30 .. 1e30``) the power
    of two that brings the largest of ``|y_mean|`` and ``y_scale`` near 1: training reads
    each row's top logit on the logits over it. The softmax of ``"kl"`` needs the logits
    themselves, so logits that large are refused there.
    """
    weights = getattr(est, "_output_weights", None)
    device = resolve_device(est.device)
    y_mean, y_scale = (None, None) if y_stats is None else y_stats
    unit = 1.0
    if y_stats is not None:
        peak = float(max(np.abs(y_mean).max(initial=0.0), np.abs(y_scale).max(initial=0.0)))
        if est.faithfulness == "kl" and peak > 1e30:
            raise ValueError(
                f'faithfulness="kl" takes the softmax of the logits in float32, and these '
                f'reach {peak:.3g}, beyond its range; use faithfulness="mse" (it rescales '
                "the logits), or logits below 1e30 in magnitude."
            )
        if peak != 0.0 and not 1e-30 <= peak <= 1e30:
            unit = 2.0 ** round(math.log2(peak))
    return TrainConfig(
        n_components=est._n_components,
        hidden=est._hidden,
        n_outputs=n_outputs,
        dropout=float(est.dropout),
        nonneg_output=nonneg_output,
        alpha_f=float(est.alpha_faithfulness),
        alpha_r=float(est.alpha_reconstruction),
        alpha_p=float(est.alpha_pullaway),
        reconstruction=est.reconstruction,
        q=float(est.log_penalty),
        pullaway=est.pullaway,
        pretrain=est.pretrain,
        max_iter=1 if incremental else est.max_iter,
        batch_size=batch_size,
        lr=float(est.learning_rate_init),
        weight_decay=float(est.weight_decay),
        tol=float(est.tol),
        n_iter_no_change=est.n_iter_no_change,
        verbose=est.verbose,
        precision=est.precision,
        compile=est.compile,
        faith_target=getattr(est, "_faith_target", None),
        output_weights=None if weights is None else to_tensor(weights, device),
        faithfulness=est.faithfulness,
        multioutput=est.multioutput,
        temperature=float(est.temperature),
        y_mean=None if y_mean is None else to_tensor(np.asarray(y_mean) / unit, device),
        y_scale=None if y_scale is None else to_tensor(np.asarray(y_scale) / unit, device),
        logit_unit=unit,
        warmup_steps=math.ceil(n_train / batch_size),
    )


def with_network_head(est, cfg, z_scale, Z):
    """``cfg`` with ``est.network_head`` ready to train through: a frozen float32 copy in
    eval mode on ``Z``'s device, checked to map rows of activations to the logits."""
    head = est.network_head
    if head is None:
        return cfg
    if not cfg.n_outputs:
        raise ValueError(
            "network_head checks that the decoded activations keep the logits y, so it "
            "needs y; pass y, or network_head=None for an unsupervised explainer."
        )
    if not isinstance(head, torch.nn.Module):
        raise TypeError(
            f"network_head must be a torch.nn.Module, got {type(head).__name__}; wrap the "
            "layers after the explained one in a module (e.g. torch.nn.Sequential)."
        )
    head = copy.deepcopy(head).to(device=Z.device, dtype=torch.float32).eval()
    head.requires_grad_(False)
    with torch.no_grad():
        try:
            out = head(Z[:2] * z_scale)
        except Exception as exc:
            raise ValueError(
                f"network_head failed on rows of X of shape {tuple(Z[:2].shape)} ({exc}); "
                "it must take activations as X holds them (flattened rows) and return the "
                "logits y."
            ) from exc
    if tuple(out.shape) != (min(2, Z.shape[0]), cfg.n_outputs):
        raise ValueError(
            f"network_head maps rows of X to shape {tuple(out.shape)}, but y has "
            f"{cfg.n_outputs} outputs; it must return one logit per column of y."
        )
    return dataclasses.replace(cfg, network_head=head, z_scale=float(z_scale))


def forget_fit(est):
    """Remove the fitted state of ``est`` (a fit that fails leaves none of an earlier
    fit behind)."""
    for name in [n for n in vars(est) if n.endswith("_") and not n.startswith("__")]:
        delattr(est, name)
    est.__dict__.pop("_engine", None)


def start_fit(est, X, y, incremental, shared=None, collective=LOCAL):
    """Everything ``fit`` does before training: validation, scaling, the linear reference
    (and the number of x-features it decides), the configuration and the constraint; a
    :class:`FitRun`. ``shared`` (a dict) lets explainers fitted together on one ``(X, y)``
    share the scaled data and the bound; ``collective`` reduces every statistic over the
    ranks of a sharded fit (:func:`sklearn_xnn.distributed.fit_sharded`; ``X`` and ``y``
    are then this rank's shard). A fit that fails leaves no earlier fit's state behind."""
    forget_fit(est)
    X, Y = validate_fit_data(est, X, y)
    if Y is not None and collective is LOCAL:  # fit_sharded judges every rank's rows
        announce_constant_y(est._constant_outputs, Y.shape[0])
    params = est.get_params(deep=False)  # what later partial_fit calls must keep
    est._fixed_params_ = {name: params[name] for name in FIXED_PARAMS}
    if incremental and Y is not None:
        announce_first_chunk(est, X)
    stream = data.should_stream(X, est.stream_threshold)
    n_rows = collective.total_rows(X.shape[0])
    n_val, batch_size, k, fraction = check_params_vs_input(est, n_rows, incremental)
    device = resolve_device(est.device)
    generator = make_generator(check_random_state(est.random_state))
    # "variance_weighted" pools the outputs' squared errors; the softmax KL has its own
    pooled = est.multioutput == "variance_weighted" and est.faithfulness == "mse"
    key = (est.rescale, stream, str(device), pooled)
    scaler = memo(shared, ("scaler", key), Scaler.fit, X, Y, est.rescale, collective, pooled)
    with torch_threads():
        # one explainer on the CPU reads X's rows as it needs them, scaled on the fly: no
        # copy of X (stacked fits share one scaled copy, an accelerator holds its own); a
        # streamed fit reads y's rows that way too (every epoch's head reads all of them)
        lazy = stream or (shared is None and device.type == "cpu")
        Zt, Yt = memo(shared, ("data", key), scaler.to_device, X, Y, device, lazy, stream)
        split = ("split", key, n_val)
        train, val = (Zt, Yt), None
        if n_val:
            train, val = memo(shared, split, engine.split_rows, Zt, Yt, n_val, device)
        # outputs left in the caller's units: the uniform average's bound weighs them itself
        standardize = not est.rescale and est.multioutput == "uniform_average"
        standardize = standardize and est.faithfulness == "mse"
        z_moments, the_bound, curve, est._n_components = memo(
            shared,
            ("bound", key, n_val, est.n_components, standardize),
            engine.linear_reference,
            *train,
            k,
            fraction,
            collective,
            est.multioutput,
            standardize,
        )
        problem = activation_problem(z_moments)
        if problem:
            warn_user(problem)
        est.faithfulness_curve_ = curve
        check_widths(est, X.shape[1])  # and sets "auto"'s widths for the chosen K
        n_outputs = 0 if Y is None else Y.shape[1]
        y_stats = None if Y is None else (scaler.y_mean, scaler.y_scale)
        cfg = train_config(
            est, n_outputs, scaler.nonnegative, batch_size, n_rows - n_val, incremental, y_stats
        )
        cfg = dataclasses.replace(cfg, collective=collective)
        cfg = store_constraint(est, cfg, the_bound, train)
        cfg = with_network_head(est, cfg, scaler.scale, train[0])
        dropout = collective.dropout_generator(generator, device)
        cfg = dataclasses.replace(cfg, dropout_generator=dropout)
        if val is not None:
            val = engine.validation_target(val, the_bound, est.faithfulness_tol, cfg)
    return FitRun(train, cfg, generator, device, (z_moments, the_bound), val, scaler, incremental)


# ---------------------------------------------------------------------------- fitted state
@dataclasses.dataclass
class Engine:
    """The torch side of a fitted explainer that ``partial_fit`` keeps training."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    generator: torch.Generator
    cfg: TrainConfig
    device: torch.device
    scaler: Scaler
    multiplier: float = 1.0
    history: History = dataclasses.field(default_factory=History)
    #: The constraints' multipliers and targets the last run ended with (a
    #: :class:`~sklearn_xnn._nn.config.Multiplier`), continued by the next ``partial_fit``;
    #: None in an engine rebuilt from a fitted explainer, where ``multiplier`` restarts them.
    constraints: object = None

    @property
    def epochs(self):
        return len(self.history.loss)


def store(est, result, eng, supervised):
    """Copy a trained network to the numpy fitted state, in the caller's units."""
    w = eng.scaler.fold(modules.from_module(result.model))
    est.encoder_coefs_ = [c for c, _ in w.encoder]
    est.encoder_intercepts_ = [b for _, b in w.encoder]
    est.decoder_coefs_ = [c for c, _ in w.decoder]
    est.decoder_intercepts_ = [b for _, b in w.decoder]
    est.decoder_relu_output_ = w.nonneg_output
    est.scale_ = eng.scaler.scale
    est.n_components_ = est._n_components
    est._has_head = supervised
    if supervised:
        est.y_mean_, est.y_scale_ = eng.scaler.y_mean, eng.scaler.y_scale
        est.coef_, est.intercept_ = w.head
        # An output constant on the training rows carries nothing to explain: its
        # prediction is that constant, with no x-feature contributing.
        constant = ~np.isnan(est._constant_outputs)
        est.coef_[constant] = 0.0
        est.intercept_[constant] = est._constant_outputs[constant]
        est.faithfulness_ = result.faithfulness
        est.faithfulness_multiplier_ = result.multiplier
    x = result.x_train.double().cpu().numpy()
    est.dead_components_ = x.max(axis=0) <= 0
    est.n_dead_components_ = int(est.dead_components_.sum())
    # components_: G(m_k e_k) - G(0) in the caller's units, m_k the mean positive value of
    # x_k and G the trained decoder (in float64; its output times the scale is the
    # caller's units, as the fitted decoder's weights are)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nan_to_num(np.nanmean(np.where(x > 0, x, np.nan), axis=0), nan=0.0)
    probes = torch.as_tensor(np.vstack([np.zeros(x.shape[1]), np.diag(means)]))
    with torch.no_grad():
        rebuilt = copy.deepcopy(result.model.decoder).cpu().double()(probes).numpy()
    rebuilt = rebuilt * eng.scaler.scale
    est.components_ = rebuilt[1:] - rebuilt[0]
    hist = result.history
    est.loss_curve_ = list(hist.loss)
    kl = est.faithfulness == "kl"
    est.faithfulness_history_ = [e if kl else 1.0 - e for e in hist.faithfulness]
    est.loss_parts_ = np.asarray(hist.parts, dtype=np.float64).reshape(-1, 3)
    est.n_significant_curve_ = np.asarray(hist.significant, dtype=np.float64)
    est.validation_scores_ = list(hist.validation_loss) if hist.validation_loss else None
    est.n_iter_ = len(hist.loss)
    est.alphas_ = (eng.cfg.alpha_f, eng.cfg.alpha_r, eng.cfg.alpha_p)
    est._converged = hist.converged


def network_weights(est):
    """The fitted state as :class:`~sklearn_xnn._nn.modules.NetworkWeights`."""
    head = (est.coef_, est.intercept_) if est._has_head else None
    return modules.NetworkWeights(
        list(zip(est.encoder_coefs_, est.encoder_intercepts_, strict=True)),
        list(zip(est.decoder_coefs_, est.decoder_intercepts_, strict=True)),
        head,
        bool(est.decoder_relu_output_),
    )


def engine_from_fitted(est):
    """Rebuild the torch network from the fitted weights; a fresh Adam (``partial_fit``)."""
    device = resolve_device(est.device)
    generator = make_generator(check_random_state(est.random_state))
    y_mean, y_scale = getattr(est, "y_mean_", None), getattr(est, "y_scale_", None)
    scaler = Scaler(est.scale_, y_mean, y_scale, est.rescale, est.decoder_relu_output_)
    w = network_weights(est)
    est._hidden = w.hidden
    n_outputs = est.coef_.shape[0] if est._has_head else 0
    est._n_components = est.n_components_
    y_stats = (y_mean, y_scale) if est._has_head else None
    cfg = train_config(est, n_outputs, w.nonneg_output, est.batch_size, 1, True, y_stats=y_stats)
    cfg = dataclasses.replace(cfg, dropout_generator=device_generator(generator, device))
    probe = torch.zeros(1, est.n_features_in_, device=device)
    cfg = with_network_head(est, cfg, est.scale_, probe)
    model = modules.to_module(scaler.fold(w, inverse=True), dropout=cfg.dropout, device=device)
    eng = Engine(model, None, generator, cfg, device, scaler)
    eng.multiplier = getattr(est, "faithfulness_multiplier_", cfg.alpha_f)
    kl = est.faithfulness == "kl"
    eng.history = History(
        list(est.loss_curve_),
        est.loss_parts_.tolist(),
        faithfulness=[e if kl else 1.0 - e for e in est.faithfulness_history_],
        significant=list(getattr(est, "n_significant_curve_", ())),  # absent before 0.2
    )
    return eng


def finish(est, run, result):
    """Everything ``fit`` does after training: the fitted state and the warnings."""
    eng = Engine(result.model, result.optimizer, run.generator, run.cfg, run.device, run.scaler)
    eng.multiplier, eng.history = result.multiplier, result.history
    eng.constraints = result.constraints
    store(est, result, eng, run.train[1] is not None)
    if run.incremental:  # fit keeps no torch state; a later partial_fit rebuilds it
        est._engine = eng
    # dead x-features, unmet constraints, and (fit only: the first partial_fit call runs
    # its one epoch by design) no convergence
    out = []
    if est.n_dead_components_:
        out.append(
            f"{est.n_dead_components_} of {est.n_components_} x-features are dead (zero "
            "on every training row): the explanation space uses fewer concepts than "
            f"asked. Try {_dead_advice(est)}."
        )
    if result.history.infeasible:  # "kl" only: its start may miss the target
        kl = est.faithfulness == "kl"
        what, target = ("softmax KL", est._faith_target) if kl else ("R²", 1 - est._faith_target)
        out.append(
            f"No epoch, nor the start, met the constraints (training {what} "
            f"{est.faithfulness_:.4g} against a target of {target:.4g}; every output keeping "
            "the rows its start explained; no dead x-feature): the explainer keeps the epoch "
            "closest to them. Try a larger faithfulness_tol, n_components or max_iter."
        )
    elif not (est._converged or result.stopped or run.incremental):
        out.append(
            f"SRAEExplainer reached max_iter={est.max_iter} epochs before the loss "
            "stopped improving; consider increasing max_iter."
        )
    for msg in out:
        warn_user(msg, ConvergenceWarning)
    return est


# ---------------------------------------------------------------------------- progress
@contextlib.contextmanager
def progress_logging(fmt="%(message)s", always=False):
    """For a ``verbose`` fit: the ``sklearn_xnn`` logger passes its INFO lines (each
    epoch's loss) on, to the handlers the user configured, or to stderr when logging is
    not configured (or ``always``, with the format ``fmt``); as it was afterwards."""
    logger = logging.getLogger("sklearn_xnn")
    handler, level = None, logger.level
    if always or not logger.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(fmt))
        logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(level)


# ---------------------------------------------------------------------------- warnings
def announce_first_chunk(est, X):
    """Warn about a first ``partial_fit`` chunk that cannot stand for the stream: outputs
    constant on it (they stay constants), or fewer rows than features (the bound fitted
    on it rebuilds that chunk, so later chunks' epochs, held to it, are undone)."""
    if not np.isnan(est._constant_outputs).all():
        outputs = np.flatnonzero(~np.isnan(est._constant_outputs)).tolist()
        warn_user(
            f"outputs {outputs} are constant on the first partial_fit chunk: the explainer "
            "predicts them as constants and later chunks do not change that. Start with a "
            "chunk on which every output varies."
        )
    if X.shape[0] <= X.shape[1]:
        warn_user(
            f"The first partial_fit chunk has {X.shape[0]} rows for {X.shape[1]} features: "
            "the linear bound fitted on it rebuilds that chunk (nearly) exactly, and later "
            "chunks' epochs, held to it, are undone. Start with a chunk of more rows than "
            "features (several thousand)."
        )


def checked(est, result, stage):
    """``result``, a training attempt, once checked: raise TrainingDivergedError (and
    forget any earlier fit) if a weight is not finite; warn about an interrupted or
    diverged training and record in ``result.stopped`` whether it stopped early."""
    if not training.finite_weights(result.model):
        forget_fit(est)
        raise TrainingDivergedError(
            f"Training diverged: the weights became NaN or infinite during {stage} "
            f"(learning_rate_init={est.learning_rate_init}, rescale={est.rescale}) and no "
            "finite model was reached. Lower learning_rate_init, keep rescale=True, or check "
            "X and y for extreme values."
        )
    history, max_iter, learning_rate_init = result.history, est.max_iter, est.learning_rate_init
    done = len(history.loss)
    kept = f"after epoch {done}" if done else "from before fine-tuning"
    msg = None
    if history.interrupted_in_pretraining:
        msg = (
            "fit was interrupted (KeyboardInterrupt) during layer-wise pre-training; "
            "fine-tuning was skipped and the explainer keeps the faithful start (the "
            "partly pre-trained network with a least-squares head). It is usable but not "
            "trained."
        )
    elif history.interrupted_epoch is not None:
        msg = (
            "fit was interrupted (KeyboardInterrupt) in fine-tuning epoch "
            f"{history.interrupted_epoch + 1} of {max_iter}; the explainer keeps "
            f"the weights {kept} and is usable, but not converged."
        )
    elif history.diverged_epoch is not None:
        msg = (
            "The training loss became non-finite in fine-tuning epoch "
            f"{history.diverged_epoch + 1} (learning_rate_init={learning_rate_init}); "
            f"training stopped and the explainer keeps the last finite weights ({kept}). "
            "Lower learning_rate_init, keep rescale=True, or check X and y for extreme "
            "values."
        )
    if msg is not None:
        warn_user(msg, ConvergenceWarning)
    result.stopped = msg is not None
    return result


def _dead_advice(est):
    """Remedies for dead x-features that ``est`` is not already using."""
    advice = ["another random_state"]
    if est.n_dead_components_ < est.n_components_:
        advice.append(f"n_components={est.n_components_ - est.n_dead_components_}")
    else:  # every one dead: the training went astray
        advice.append(f"a smaller learning_rate_init (now {est.learning_rate_init:g})")
    if est.alpha_pullaway > 0:
        advice.append(f"a smaller alpha_pullaway (now {est.alpha_pullaway:g})")
    if est.faithfulness_tol is None and getattr(est, "_has_head", False):
        advice.append("faithfulness_tol=0.01 (keeps the faithful start's x-features)")
    return ", ".join(advice[:-1]) + " or " + advice[-1]
