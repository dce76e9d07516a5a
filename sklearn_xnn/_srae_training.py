"""How SRAEExplainer trains: one attempt's recipe, fault reports, storing the fitted state.

The estimator's ``fit`` orchestrates (validation, rescaling, collapse-guard retries); the
methods here run one training attempt on the torch engine and copy its result to numpy.
"""

import logging
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from sklearn_xnn._nn import training
from sklearn_xnn._nn.convert import device_generator
from sklearn_xnn._nn.inference import decode_numpy
from sklearn_xnn.exceptions import TrainingDivergedError

logger = logging.getLogger("sklearn_xnn")

#: Step decay of the learning rate, as in the reference: x0.1 every 40 epochs.
LR_STEP_EPOCHS = 40
LR_GAMMA = 0.1


class _TrainingMixin:
    """Private training steps of :class:`~sklearn_xnn.SRAEExplainer`."""

    def _training_config(self, device, generator, n_outputs):
        return {
            "n_components": self.n_components,
            "hidden": self._hidden,
            "n_outputs": n_outputs or 0,
            "dropout": float(self.dropout),
            "nonneg_output": self.decoder_relu_output_,
            "alpha_f": float(self.alpha_faithfulness),
            "alpha_r": float(self.alpha_reconstruction),
            "alpha_p": float(self.alpha_pullaway),
            "reconstruction": self.reconstruction,
            "q": float(self.log_penalty),
            "pullaway": self.pullaway,
            "pretrain": self.pretrain,
            "max_iter": self.max_iter,
            "batch_size": self._batch_size,
            "lr": float(self.learning_rate_init),
            "weight_decay": float(self.weight_decay),
            "lr_step": LR_STEP_EPOCHS,
            "lr_gamma": LR_GAMMA,
            "tol": float(self.tol),
            "n_iter_no_change": self.n_iter_no_change,
            "verbose": self.verbose,
            "dropout_generator": device_generator(generator, device),
            "precision": self.precision,
            "compile": self.compile,
            "revive_dead": True,
        }

    def _train_once(self, Zt, Yt, Zv, Yv, cfg, generator, device):
        """One attempt: initialise, pre-train, initialise the head, fine-tune, assess collapse."""
        model = training.build_model(Zt.shape[1], cfg["n_outputs"], cfg, generator, device)
        interrupted = self._pretrain(model, Zt, cfg, generator)
        if cfg["revive_dead"]:
            x = training.encode(model, Zt)
            training.revive_dead(model, Zt, x.amax(0) <= 0, generator)
        if model.head is not None:
            training.init_last_layer_rrr(model, Zt, Yt, generator)
            training.init_head_lstsq(model.head, training.encode(model, Zt), Yt)
        self._require_finite(model, "layer-wise pre-training and head initialisation")
        history = self._fine_tune(model, Zt, Yt, Zv, Yv, cfg, generator, interrupted)
        self._require_finite(model, "fine-tuning")
        x = training.encode(model, Zt)
        weight = None if model.head is None else model.head.weight.detach()
        collapsed, balance = collapse_state(x, weight)
        return {
            "model": model,
            "history": history,
            "collapsed": collapsed,
            "balance": balance,
            "alphas": (cfg["alpha_f"], cfg["alpha_r"], cfg["alpha_p"]),
            "x_train": x,
            "stopped": self._announce_stop(history),
        }

    def _pretrain(self, model, Zt, cfg, generator):
        """Layer-wise pre-training; returns True when a KeyboardInterrupt cut it short."""
        if not cfg["pretrain"]:
            return False
        try:
            training.pretrain_layers(model, Zt, cfg, generator)
        except KeyboardInterrupt:
            return True
        return False

    def _fine_tune(self, model, Zt, Yt, Zv, Yv, cfg, generator, skip):
        """Fine-tune; a non-finite loss keeps the last finite weights and is recorded."""
        if skip:  # interrupted in pre-training: no fine-tuning, an empty history
            history = training.fine_tune(model, Zt, Yt, {**cfg, "max_iter": 0}, generator)
            history["interrupted_in_pretraining"] = True
            return history
        try:
            return training.fine_tune(model, Zt, Yt, cfg, generator, Zv, Yv)
        except training.NonFiniteLossError as exc:
            exc.history["diverged_epoch"] = exc.epoch
            return exc.history

    def _require_finite(self, model, stage):
        """Raise TrainingDivergedError (and forget any earlier fit) if a weight is not finite."""
        if training.finite_weights(model):
            return
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, name)
        raise TrainingDivergedError(
            f"Training diverged: the weights became NaN or infinite during {stage} "
            f"(learning_rate_init={self.learning_rate_init}, rescale={self.rescale}) and no "
            "finite model was reached. Lower learning_rate_init, keep rescale=True, or check "
            "X and y for extreme values."
        )

    def _announce_stop(self, history):
        """Warn about an interrupted or diverged training; returns whether it stopped early."""
        done = history["n_iter"]
        kept = f"after epoch {done}" if done else "from before fine-tuning"
        if history.get("interrupted_in_pretraining"):
            msg = (
                "fit was interrupted (KeyboardInterrupt) during layer-wise pre-training; "
                "fine-tuning was skipped and the explainer keeps the partly pre-trained "
                "weights with a least-squares head. It is usable but not trained."
            )
        elif "interrupted_epoch" in history:
            msg = (
                "fit was interrupted (KeyboardInterrupt) in fine-tuning epoch "
                f"{history['interrupted_epoch'] + 1} of {self.max_iter}; the explainer keeps "
                f"the weights {kept} and is usable, but not converged."
            )
        elif "diverged_epoch" in history:
            msg = (
                "The training loss became non-finite in fine-tuning epoch "
                f"{history['diverged_epoch'] + 1} (learning_rate_init="
                f"{self.learning_rate_init}); training stopped and the explainer keeps the "
                f"last finite weights ({kept}). Lower learning_rate_init, keep "
                "rescale=True, or check X and y for extreme values."
            )
        else:
            return False
        warnings.warn(msg, ConvergenceWarning, stacklevel=4)
        return True

    def _store_fitted(self, result, X, supervised):
        """Copy the kept attempt's weights to numpy, folding the scalings into them."""
        model, hist = result["model"], result["history"]
        tonp = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
        enc = [(tonp(l.weight).T, tonp(l.bias)) for l in model.encoder.layers]
        dec = [(tonp(l.weight).T, tonp(l.bias)) for l in model.decoder.layers]
        enc[0] = (enc[0][0] / self.scale_, enc[0][1])
        dec[-1] = (dec[-1][0] * self.scale_, dec[-1][1] * self.scale_)
        self.encoder_coefs_ = [w for w, _ in enc]
        self.encoder_intercepts_ = [b for _, b in enc]
        self.decoder_coefs_ = [w for w, _ in dec]
        self.decoder_intercepts_ = [b for _, b in dec]
        self.n_components_ = self.n_components
        if supervised:
            W, b = tonp(model.head.weight), tonp(model.head.bias)
            self.coef_ = W * self.y_scale_[:, None]
            self.intercept_ = b * self.y_scale_ + self.y_mean_
            # An output constant on the training rows carries nothing to explain: its
            # prediction is that constant, with no x-feature contributing.
            constant = getattr(self, "_constant_outputs", np.zeros(len(b), dtype=bool))
            self.coef_[constant] = 0.0
            self.intercept_[constant] = self.y_mean_[constant]
        self._has_head = supervised
        x = result["x_train"].double().cpu().numpy()
        self.dead_components_ = x.max(axis=0) <= 0
        self.n_dead_components_ = int(self.dead_components_.sum())
        self.components_ = self._decoder_responses(x)
        self.loss_curve_ = list(hist["loss"])
        self.loss_parts_ = np.asarray(hist["parts"], dtype=np.float64).reshape(-1, 3)
        self.validation_scores_ = list(hist["validation_loss"]) if self._n_val else None
        self.n_iter_ = hist["n_iter"]
        self.alphas_ = result["alphas"]
        self._converged = hist["converged"]

    def _decoder_responses(self, x):
        positive = np.where(x > 0, x, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nan_to_num(np.nanmean(positive, axis=0), nan=0.0)
        probes = np.vstack([np.zeros(self.n_components_), np.diag(means)])
        rebuilt = decode_numpy(
            probes, self.decoder_coefs_, self.decoder_intercepts_, self.decoder_relu_output_
        )
        return rebuilt[1:] - rebuilt[0]

    def _announce_problems(self, result):
        if self.n_dead_components_:
            warnings.warn(
                f"{self.n_dead_components_} of {self.n_components_} x-features are dead (zero "
                "on every training row): the explanation space uses fewer concepts than "
                "asked. Try another random_state, pretrain > 0, a smaller n_components or "
                "collapse_retries > 0.",
                ConvergenceWarning,
                stacklevel=3,
            )
        if result["collapsed"] and self.collapse_retries:
            warnings.warn(
                f"The collapse guard retried {self.collapse_retries} times and one x-feature "
                "still carries most of the prediction; the best attempt was kept.",
                ConvergenceWarning,
                stacklevel=3,
            )
        if not self._converged and not self.early_stopping and not result["stopped"]:
            warnings.warn(
                f"SRAEExplainer reached max_iter={self.max_iter} epochs before the loss "
                "stopped improving; consider increasing max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )


def collapse_state(x, weight, min_ratio=0.3):
    """Whether the x-features collapsed, and how balanced their mean contributions are.

    With one output the mean contribution of x-feature ``k`` is ``mean_i x_ik W_k``; with
    several outputs it is the magnitude ``mean_i x_ik ||W_:k||``. Collapsed means fewer
    than two positive means, or the second largest under ``min_ratio`` of the largest.
    Returns ``(collapsed, second / largest)``.
    """
    mean_x = x.double().mean(0).cpu()
    if weight is None:
        score = mean_x
    elif weight.shape[0] == 1:
        score = mean_x * weight[0].double().cpu()
    else:
        score = mean_x * torch.linalg.vector_norm(weight.double().cpu(), dim=0)
    top = torch.sort(score, descending=True).values
    if top.numel() < 2:
        return False, 1.0
    if top[0] <= 0:
        return True, 0.0
    ratio = float(max(top[1], 0.0) / top[0])
    return (int((score > 0).sum()) < 2 or ratio < min_ratio), ratio
