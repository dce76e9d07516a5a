"""The fitted state of SRAEExplainer: from a trained network to numpy attributes and back.

:func:`store` writes every fitted attribute from a training result (weights folded into
the caller's units by the scaler); :func:`engine_from_fitted` rebuilds the torch side from
them for a ``partial_fit`` after ``fit`` or unpickling. The conversion itself is
:mod:`sklearn_xnn._nn.weights`.
"""

import dataclasses
import warnings

import numpy as np
import torch
from sklearn.utils import check_random_state

from sklearn_xnn import _fitting as fitting
from sklearn_xnn._nn import weights
from sklearn_xnn._nn.config import History, TrainConfig
from sklearn_xnn._nn.convert import device_generator, make_generator, resolve_device
from sklearn_xnn._nn.inference import decode_numpy
from sklearn_xnn._nn.scaling import Scaler


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

    @property
    def epochs(self):
        return self.history.n_iter


def store(est, result, eng, supervised):
    """Copy a trained network to the numpy fitted state, in the caller's units."""
    w = eng.scaler.fold(weights.from_module(result.model))
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
        constant = est._constant_outputs
        est.coef_[constant] = 0.0
        est.intercept_[constant] = est.y_mean_[constant]
        est.faithfulness_ = result.faithfulness
        est.faithfulness_multiplier_ = result.multiplier
    x = result.x_train.double().cpu().numpy()
    est.dead_components_ = x.max(axis=0) <= 0
    est.n_dead_components_ = int(est.dead_components_.sum())
    est.components_ = decoder_responses(est, x)
    hist = result.history
    est.loss_curve_ = list(hist.loss)
    kl = est.faithfulness == "kl"
    est.faithfulness_history_ = [e if kl else 1.0 - e for e in hist.faithfulness]
    est.loss_parts_ = np.asarray(hist.parts, dtype=np.float64).reshape(-1, 3)
    est.validation_scores_ = list(hist.validation_loss) if hist.validation_loss else None
    est.n_iter_ = hist.n_iter
    est.alphas_ = result.alphas
    est._converged = hist.converged


def decoder_responses(est, x):
    """``components_``: ``G(m_k e_k) - G(0)``, ``m_k`` the mean positive value of ``x_k``."""
    positive = np.where(x > 0, x, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nan_to_num(np.nanmean(positive, axis=0), nan=0.0)
    probes = np.vstack([np.zeros(est.n_components_), np.diag(means)])
    rebuilt = decode_numpy(
        probes, est.decoder_coefs_, est.decoder_intercepts_, est.decoder_relu_output_
    )
    return rebuilt[1:] - rebuilt[0]


def network_weights(est):
    """The fitted state as :class:`~sklearn_xnn._nn.weights.NetworkWeights`."""
    head = (est.coef_, est.intercept_) if est._has_head else None
    return weights.NetworkWeights(
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
    cfg = fitting.train_config(
        est, n_outputs, w.nonneg_output, est.batch_size, 1, True, y_stats=y_stats
    )
    cfg = cfg.replace(dropout_generator=device_generator(generator, device))
    probe = torch.zeros(1, est.n_features_in_, device=device)
    cfg = fitting.with_network_head(est, cfg, est.scale_, probe)
    model = weights.to_module(scaler.unfold(w), dropout=cfg.dropout, device=device)
    eng = Engine(model, None, generator, cfg, device, scaler)
    eng.multiplier = getattr(est, "faithfulness_multiplier_", cfg.alpha_f)
    eng.history = History(list(est.loss_curve_), est.loss_parts_.tolist())
    return eng


def finish(est, run, result, retries):
    """Everything ``fit`` does after training: the fitted state and the warnings."""
    eng = Engine(result.model, result.optimizer, run.generator, run.cfg, run.device, run.scaler)
    eng.multiplier, eng.history = result.multiplier, result.history
    store(est, result, eng, run.train[1] is not None)
    est.n_collapse_retries_ = retries
    fitting.announce_problems(est, result)
    if run.incremental:  # fit keeps no torch state; a later partial_fit rebuilds it
        est._engine = eng
    return est
