"""Streaming training for SRAEExplainer: ``partial_fit`` over chunks larger than memory."""

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data

from sklearn_xnn._nn import training
from sklearn_xnn._nn.convert import make_generator, resolve_device, to_tensor
from sklearn_xnn._srae_training import collapse_state
from sklearn_xnn._validation import (
    check_float32_range,
    check_input_kind,
    float_dtypes,
    magnitude,
    numeric_conversion,
    scaled_float32,
)


class _StreamingMixin:
    """``partial_fit`` and its helpers for :class:`~sklearn_xnn.SRAEExplainer`."""

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train on one chunk of rows: streaming training for data larger than memory.

        The first call (on an unfitted explainer) initialises it from its chunk alone, as
        ``fit`` does: layer-wise pre-training, x-feature and head initialisation, and the
        rescaling: ``scale_``, ``y_mean_`` and ``y_scale_`` are computed on this first
        chunk and kept for every later one. It then runs one fine-tuning epoch over the
        chunk. **The first chunk must therefore be a representative sample**: at least 2
        rows (as ``fit``), in practice several thousand with every output varying, and its
        sign decides ``decoder_relu_output_``. Each later call runs one epoch of
        fine-tuning over its chunk (shuffled minibatches of ``batch_size``) with the same
        Adam optimiser, at the constant learning rate ``learning_rate_init``; the collapse
        guard and early stopping do not apply. After ``fit`` or unpickling, ``partial_fit``
        continues from the fitted weights with a fresh optimiser.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of activations.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Their logits; given on every call or on none.

        Returns
        -------
        self : SRAEExplainer
            The updated explainer.
        """
        if not hasattr(self, "n_components_"):
            return self._partial_first(X, y)
        X, Y = self._validate_chunk(X, y)
        engine = self.__dict__.get("_engine") or self._engine_from_fitted()
        Zt, Yt = self._chunk_tensors(X, Y, engine["device"])
        cfg = {**engine["cfg"], "max_iter": 1, "batch_size": min(self.batch_size, X.shape[0])}
        try:
            hist = training.fine_tune(
                engine["model"], Zt, Yt, cfg, engine["generator"], opt=engine["opt"]
            )
        except training.NonFiniteLossError as exc:
            hist = {**exc.history, "diverged_epoch": exc.epoch}
        stopped = self._announce_stop(hist)
        self._require_finite(engine["model"], "partial_fit")
        self._engine = engine
        for key in ("loss", "parts"):
            engine["history"][key] += hist[key]
        self._store_partial(engine, Zt, Y is not None, hist.get("converged", False), stopped)
        return self

    def _partial_first(self, X, y):
        X, Y = self._validate_fit_data(X, y)
        self._check_params_vs_input(*X.shape)
        self._n_val, self._batch_size = 0, min(self.batch_size, X.shape[0])
        device = resolve_device(self.device)
        generator = make_generator(check_random_state(self.random_state))
        Zt, Yt, _, _ = self._prepare_tensors(X, Y, device, generator)
        cfg = self._training_config(device, generator, Yt is not None and Yt.shape[1])
        cfg["max_iter"] = 1
        result = self._train_once(Zt, Yt, None, None, cfg, generator, device)
        opt = result["history"].pop("optimizer")
        self._engine = {
            "model": result["model"],
            "opt": opt,
            "generator": generator,
            "cfg": cfg,
            "device": device,
            "history": result["history"],
        }
        self._store_fitted(result, X, Y is not None)
        self.n_collapse_retries_ = 0
        return self

    def _validate_chunk(self, X, y):
        check_input_kind(X, "X")
        if (y is None) == self._has_head:
            given = "without" if y is None else "with"
            raise ValueError(
                f"partial_fit was called {given} y, but the explainer was first fitted "
                f"{'with' if self._has_head else 'without'} it; give y on every call or on none."
            )
        with numeric_conversion("X or y"):
            if y is None:
                return validate_data(self, X, reset=False, dtype=float_dtypes(X)), None
            X, y = validate_data(
                self, X, y, reset=False, dtype=float_dtypes(X), multi_output=True, y_numeric=True
            )
        Y = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
        if Y.shape[1] != self.coef_.shape[0]:
            raise ValueError(
                f"y has {Y.shape[1]} outputs, but the explainer was fitted on "
                f"{self.coef_.shape[0]}; every chunk must have the same outputs."
            )
        return X, Y

    def _chunk_tensors(self, X, Y, device):
        """A later chunk scaled with the first chunk's ``scale_``, ``y_mean_``, ``y_scale_``."""
        peak = magnitude(X)[0]
        check_float32_range(peak / self.scale_, "X", self.rescale)
        Zs, divisor = scaled_float32(X, self.scale_, peak)
        Zt = to_tensor(Zs, device) / divisor
        if Y is None:
            return Zt, None
        Ys = (Y - self.y_mean_) / self.y_scale_
        check_float32_range(float(np.max(np.abs(Ys))), "y", self.rescale)
        return Zt, to_tensor(Ys, device)

    def _engine_from_fitted(self):
        """Rebuild the torch model from the fitted (caller-unit) weights; a fresh Adam."""
        device = resolve_device(self.device)
        generator = make_generator(check_random_state(self.random_state))
        self._hidden = tuple(w.shape[1] for w in self.encoder_coefs_[:-1])
        self._batch_size = self.batch_size
        n_outputs = self.coef_.shape[0] if self._has_head else 0
        cfg = self._training_config(device, generator, n_outputs)
        model = training.build_model(self.n_features_in_, n_outputs, cfg, generator, device)
        layers = [*model.encoder.layers, *model.decoder.layers]
        coefs = [*self.encoder_coefs_, *self.decoder_coefs_]
        intercepts = [*self.encoder_intercepts_, *self.decoder_intercepts_]
        unfold = np.ones(len(layers))
        unfold[0], unfold[-1] = self.scale_, 1.0 / self.scale_
        with torch.no_grad():
            for layer, w, b, f in zip(layers, coefs, intercepts, unfold, strict=True):
                layer.weight.copy_(torch.as_tensor(w.T * f))
                layer.bias.copy_(torch.as_tensor(b * (f if layer is layers[-1] else 1.0)))
            if self._has_head:
                model.head.weight.copy_(torch.as_tensor(self.coef_ / self.y_scale_[:, None]))
                model.head.bias.copy_(
                    torch.as_tensor((self.intercept_ - self.y_mean_) / self.y_scale_)
                )
        history = {"loss": list(self.loss_curve_), "parts": self.loss_parts_.tolist()}
        return {
            "model": model,
            "opt": training._adam(model.parameters(), cfg),
            "generator": generator,
            "cfg": cfg,
            "device": device,
            "history": history,
        }

    def _store_partial(self, engine, Zt, supervised, converged, stopped):
        x = training.encode(engine["model"], Zt)
        history = {
            **engine["history"],
            "validation_loss": [],
            "converged": converged,
            "n_iter": len(engine["history"]["loss"]),
        }
        weight = None if engine["model"].head is None else engine["model"].head.weight.detach()
        result = {
            "model": engine["model"],
            "history": history,
            "x_train": x,
            "alphas": (
                engine["cfg"]["alpha_f"],
                engine["cfg"]["alpha_r"],
                engine["cfg"]["alpha_p"],
            ),
            "collapsed": collapse_state(x, weight)[0],
            "stopped": stopped,
        }
        self._store_fitted(result, None, supervised)
