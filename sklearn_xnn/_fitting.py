"""How SRAEExplainer's parameters become a training run: the configuration, the
faithfulness constraint, the collapse guard, ``partial_fit`` epochs and the fault reports."""

import copy
import dataclasses
import logging
import math
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from sklearn_xnn import _messages as messages
from sklearn_xnn._nn import data, engine, training
from sklearn_xnn._nn.collective import LOCAL
from sklearn_xnn._nn.config import TrainConfig
from sklearn_xnn._nn.convert import make_generator, resolve_device, to_tensor
from sklearn_xnn._nn.scaling import Scaler
from sklearn_xnn._threads import torch_threads
from sklearn_xnn._validation import (
    auto_hidden_sizes,
    check_faithfulness,
    check_params_vs_input,
    rank_request,
    validate_fit_data,
)
from sklearn_xnn.exceptions import TrainingDivergedError

logger = logging.getLogger("sklearn_xnn")

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


@dataclasses.dataclass
class FitRun:
    """What ``fit`` prepared for training one explainer (``SRAEExplainer._start_fit``)."""

    train: tuple
    cfg: TrainConfig
    generator: torch.Generator
    device: torch.device
    reference: tuple
    val: tuple | None
    scaler: object
    incremental: bool = False

    @property
    def guard_args(self):
        """The arguments of :func:`train_with_guard` after the explainer."""
        return self.train, self.cfg, self.generator, self.device, self.reference, self.val


def memo(cache, key, compute, *args):
    """``compute(*args)``, computed once per ``key`` when ``cache`` is a dict (None: always)."""
    if cache is None:
        return compute(*args)
    if key not in cache:
        cache[key] = compute(*args)
    return cache[key]


def train_with_guard(est, train, cfg, generator, device, reference, val):
    """Train; retrain with adjusted alphas while the x-features collapse (the guard)."""
    guard = Guard(est, cfg)
    while guard.offer(engine.attempt(*train, guard.cfg, generator, device, reference, val)):
        pass
    return guard.best, guard.retries


class Guard:
    """The collapse guard of one explainer: the best attempt so far, and the configuration
    of the next one."""

    def __init__(self, est, cfg):
        self.est, self.cfg, self.best, self.retries = est, cfg, None, 0
        # under the faithfulness constraint every kept epoch is faithful and the start
        # explains with all K directions: the guard belongs to the fixed-weight objective
        self.limit = est.collapse_retries if cfg.faith_target is None else 0

    def offer(self, result):
        """Take an attempt (trained with ``self.cfg``); True when another one is due."""
        est = self.est
        require_finite(est, result.model, result.stage)
        result.stopped = announce_stop(est, result.history)
        if self.best is None or result.balance > self.best.balance:
            self.best = result
        if not result.collapsed or self.retries >= self.limit or result.stopped:
            return False
        self.retries += 1
        self.cfg = self.cfg.replace(alpha_r=self.cfg.alpha_r * 1.2, alpha_p=self.cfg.alpha_p * 0.8)
        logger.info("collapse guard: retraining (attempt %d)", self.retries + 1)
        return True


def train_chunk(est, eng, X, Y):
    """One ``partial_fit`` epoch over a chunk, on the kept engine."""
    Zt, Yt = eng.scaler.chunk(X, eng.device), eng.scaler.targets(Y, eng.device)
    cfg = eng.cfg.replace(max_iter=1, batch_size=min(est.batch_size, X.shape[0]))
    result = engine.resume(
        eng.model, eng.optimizer, Zt, Yt, cfg, eng.generator, eng.multiplier, eng.epochs
    )
    require_finite(est, result.model, "partial_fit")
    result.stopped = announce_stop(est, result.history)
    eng.optimizer, eng.multiplier = result.optimizer, result.multiplier
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
        return cfg.replace(faith_target=None, output_weights=None)
    var = the_bound.y_variance.cpu().numpy()
    varying = var > 0
    n = cfg.collective.total_rows(train[1].shape[0])
    if est.multioutput == "variance_weighted":  # sum_c rss_c / sum_c var_c
        est._output_weights = np.where(varying, n / max(float(var[varying].sum()), 1e-300), 0.0)
    else:  # mean_c rss_c / var_c
        weights = np.where(varying, n / np.where(varying, var, 1.0), 0.0)
        est._output_weights = weights / max(int(varying.sum()), 1)
    cfg = cfg.replace(output_weights=to_tensor(est._output_weights, train[0].device))
    if cfg.faithfulness == "kl":  # the rank-K linear predictor's KL, on every row
        reference = training.prediction_error(the_bound.predict, *train, cfg)
        est.faithfulness_bound_ = reference
    else:  # its R², from the moments
        reference = est.faithfulness_bound_ = the_bound.r2
    if est.faithfulness_tol is not None:
        tol = float(est.faithfulness_tol)
        kl = cfg.faithfulness == "kl"
        est._faith_target = min(tol, reference) if kl else max(1.0 - reference, 0.0) + tol
    return cfg.replace(faith_target=est._faith_target)


def train_config(est, n_outputs, nonneg_output, batch_size, n_train, incremental, y_stats=None):
    """The :class:`TrainConfig` of ``est``'s parameters (and its stored constraint).

    ``y_stats`` is ``(y_mean, y_scale)``, the logits' standardisation (for ``"kl"``).
    """
    weights = getattr(est, "_output_weights", None)
    device = resolve_device(est.device)
    y_mean, y_scale = (None, None) if y_stats is None else y_stats
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
        y_mean=None if y_mean is None else to_tensor(np.asarray(y_mean), device),
        y_scale=None if y_scale is None else to_tensor(np.asarray(y_scale), device),
        warmup_steps=math.ceil(n_train / batch_size),
    )


def with_network_head(est, cfg, z_scale, Z):
    """``cfg`` with ``est.network_head`` ready to train through: a frozen float32 copy in
    eval mode on ``Z``'s device, checked to map rows of activations to the logits."""
    head = est.network_head
    if head is None or not cfg.n_outputs:
        return cfg
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
    return cfg.replace(network_head=head, z_scale=float(z_scale))


def require_finite(est, model, stage):
    """Raise TrainingDivergedError (and forget any earlier fit) if a weight is not finite."""
    if training.finite_weights(model):
        return
    for name in [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]:
        delattr(est, name)
    raise TrainingDivergedError(
        f"Training diverged: the weights became NaN or infinite during {stage} "
        f"(learning_rate_init={est.learning_rate_init}, rescale={est.rescale}) and no "
        "finite model was reached. Lower learning_rate_init, keep rescale=True, or check "
        "X and y for extreme values."
    )


def announce_stop(est, history):
    """Warn about an interrupted or diverged training; returns whether it stopped early."""
    msg = messages.stop_message(history, est.max_iter, est.learning_rate_init)
    if msg is None:
        return False
    warnings.warn(msg, ConvergenceWarning, stacklevel=6)
    return True


def announce_problems(est, result):
    for msg in messages.problem_messages(est, result):
        warnings.warn(msg, ConvergenceWarning, stacklevel=4)


def start_fit(est, X, y, incremental, shared=None, collective=LOCAL):
    """Everything ``fit`` does before training: validation, scaling, the linear reference
    (and the number of x-features it decides), the configuration and the constraint; a
    :class:`FitRun`. ``shared`` (a dict) lets explainers fitted together on one ``(X, y)``
    share the scaled data and the bound; ``collective`` reduces every statistic over the
    ranks of a sharded fit (:func:`sklearn_xnn.distributed.fit_sharded`)."""
    X, Y = validate_fit_data(est, X, y)
    check_faithfulness(est, Y)
    stream = data.should_stream(X, est.stream_threshold)
    n_rows = collective.total_rows(X.shape[0])
    n_val, batch_size = check_params_vs_input(est, n_rows, incremental)
    device = resolve_device(est.device)
    generator = make_generator(check_random_state(est.random_state))
    pooled = est.multioutput == "variance_weighted"
    key = (est.rescale, stream, str(device), pooled)
    scaler = memo(
        shared, ("scaler", key), Scaler.fit, X, Y, est.rescale, stream, collective, pooled
    )
    with torch_threads():
        Zt = memo(shared, ("Z", key), scaler.activations, X, device, stream)
        Yt = memo(shared, ("Y", key), scaler.targets, Y, device)
        split = ("split", key, n_val)
        train, val = memo(shared, split, engine.split_rows, Zt, Yt, n_val, device)
        k, fraction = rank_request(est.n_components)
        z_moments, the_bound, curve, est._n_components = memo(
            shared,
            ("bound", key, n_val, est.n_components),
            engine.linear_reference,
            *train,
            k,
            fraction,
            collective,
            est.multioutput,
        )
        est.faithfulness_curve_ = curve
        if est._hidden is None:  # "auto": the widths for the chosen K
            est._hidden = auto_hidden_sizes(X.shape[1], est._n_components)
        n_outputs = 0 if Y is None else Y.shape[1]
        y_stats = None if Y is None else (scaler.y_mean, scaler.y_scale)
        cfg = train_config(
            est, n_outputs, scaler.nonnegative, batch_size, n_rows - n_val, incremental, y_stats
        ).replace(collective=collective)
        cfg = store_constraint(est, cfg, the_bound, train)
        cfg = with_network_head(est, cfg, scaler.scale, train[0])
        cfg = cfg.replace(dropout_generator=collective.dropout_generator(generator, device))
        val = engine.validation_target(val, the_bound, est.faithfulness_tol, cfg)
    return FitRun(train, cfg, generator, device, (z_moments, the_bound), val, scaler, incremental)
