"""What a fitted explainer computes: x-features, rebuilt activations and logits, scores and
contributions, all from its numpy fitted state (row by row, in float64, cast back to the
input's dtype)."""

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.metrics import r2_score
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _num_samples, check_array, check_is_fitted, validate_data

from sklearn_xnn._nn.modules import decode_numpy, encode_numpy
from sklearn_xnn._validation import (
    check_input_kind,
    finite_output,
    float_dtypes,
    numeric_conversion,
)
from sklearn_xnn.metrics._faithfulness import _row_weights, overflow_safe_scale


def _fitted_with_head(est):
    """``available_if`` check of ``predict`` and ``contributions``: they exist unless the
    explainer was fitted without ``y`` (no linear head; the error names that cause)."""
    if not hasattr(est, "encoder_coefs_") or est._has_head:
        return True
    raise AttributeError(
        "predict and contributions need the linear head, which exists only when fit was "
        "given y; this explainer was fitted unsupervised (y=None)."
    )


class ExplainerInferenceMixin(TransformerMixin):
    """``transform``, ``inverse_transform``, ``predict``, ``score`` and ``contributions``
    of a fitted explainer (``encoder_coefs_``, ``decoder_coefs_``, ``coef_`` ...).

    A ``TransformerMixin``: scikit-learn wraps ``transform`` for ``set_output`` in the
    class that defines it."""

    def _validated(self, X):
        check_is_fitted(self)
        X = check_input_kind(X, "X")
        with numeric_conversion("X"):
            return validate_data(self, X, reset=False, dtype=float_dtypes(X))

    def _encode64(self, X):
        return encode_numpy(X, self.encoder_coefs_, self.encoder_intercepts_, self.device)

    def transform(self, X):
        """Map activations to the x-features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            Non-negative x-features, in the dtype of ``X``: float32 for float32 (and
            float16, computed as float32) input, float64 for anything else (float64,
            integers, booleans, numeric objects).
        """
        X = self._validated(X)
        return finite_output(self._encode64(X), X.dtype, X, "transform")

    def inverse_transform(self, X):
        """Rebuild activations from x-features with the decoder.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            x-features.

        Returns
        -------
        Z_hat : ndarray of shape (n_samples, n_features_in_)
            Reconstructed activations, in the dtype of ``X``.
        """
        check_is_fitted(self)
        X = check_input_kind(X, "X")
        with numeric_conversion("X"):
            X = check_array(X, dtype=float_dtypes(X))
        if X.shape[1] != self.n_components_:
            raise ValueError(
                f"inverse_transform expects {self.n_components_} x-features per row, got "
                f"X with {X.shape[1]} columns; pass the output of transform."
            )
        Z = decode_numpy(
            X, self.decoder_coefs_, self.decoder_intercepts_, self.decoder_relu_output_, self.device
        )
        return finite_output(Z, X.dtype, X, "inverse_transform")

    @available_if(_fitted_with_head)
    def predict(self, X):
        """Rebuild the explained logits linearly from the x-features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.

        Returns
        -------
        y_hat : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Same shape convention as the ``y`` given to ``fit``; dtype of ``X``.
        """
        X = self._validated(X)
        y = self._encode64(X) @ self.coef_.T + self.intercept_
        y = y.ravel() if self._y_1d else y
        return finite_output(y, X.dtype, X, "predict")

    def score(self, X, y=None, sample_weight=None):
        """R² of :meth:`predict` against ``y``, averaged over the outputs as
        ``multioutput`` says; for an explainer fitted without ``y``, R² of the rebuilt
        activations ``inverse_transform(transform(X))`` against ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            The logits to compare with; required when ``fit`` was given ``y``, refused
            when it was not.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights: finite and not negative (negative ones are refused, as the
            library's scorers refuse them).

        Returns
        -------
        score : float
            :func:`sklearn.metrics.r2_score` of ``predict(X)`` and ``y`` (for logits
            beyond ``1e150`` or within ``1e-150`` of zero, of both divided by the largest
            ``|y|``: the same R², with sums of squares that stay finite). Fitted without
            ``y``: ``r2_score(X, inverse_transform(transform(X)),
            multioutput="variance_weighted")``, the share of the activations' variance
            the x-features keep (so a search over unsupervised explainers needs no
            scorer).
        """
        check_is_fitted(self)
        if sample_weight is not None:  # as the library's scorers: finite, not negative
            sample_weight = _row_weights(sample_weight, _num_samples(X))
        if not self._has_head:
            if y is not None:
                raise ValueError(
                    "This explainer was fitted without y (unsupervised): score(X) rates how "
                    "well it rebuilds X. Pass no y, or fit with the logits to score them."
                )
            X = self._validated(X)
            Z_hat = decode_numpy(self._encode64(X), self.decoder_coefs_, self.decoder_intercepts_,
                                 self.decoder_relu_output_, self.device)  # fmt: skip
            return r2_score(X, Z_hat, sample_weight=sample_weight, multioutput="variance_weighted")
        if y is None:
            raise ValueError(
                "score needs y, the logits this explainer was fitted to rebuild: "
                "score(X, y). (Only an explainer fitted without y scores X alone.)"
            )
        y_hat = np.asarray(self.predict(X), dtype=np.float64)
        y = np.asarray(check_input_kind(y, "y"), dtype=np.float64)
        scale = overflow_safe_scale(y)
        if scale != 1.0:  # as faithfulness_r2: no copies of y at ordinary magnitudes
            y, y_hat = y / scale, y_hat / scale
        return r2_score(y, y_hat, sample_weight=sample_weight, multioutput=self.multioutput)

    @available_if(_fitted_with_head)
    def contributions(self, X, outputs=None):
        """Each x-feature's contribution ``x_ik W_ck`` to each output.

        ``predict(X)[i, c] == contributions(X)[i, c, :].sum() + intercept_[c]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Activations.
        outputs : None, array-like of int or "predicted", default=None
            Which outputs: all of them; the listed output indices; or, with
            ``"predicted"``, each row's top output in :meth:`predict` (the class the
            explainer's rebuilt logits pick, which can differ from the network's own: for
            the network's decision pass its argmax as a list). With many outputs, choose:
            the full array holds ``n_outputs`` numbers per x-feature and row (8 GB for
            100,000 rows, 1,000 classes and K = 10).

        Returns
        -------
        S : ndarray of shape (n_samples, n_outputs, n_components)
            Contributions. ``(n_samples, len(outputs), n_components)`` for listed
            outputs; ``(n_samples, n_components)`` for ``"predicted"``, or when ``fit``
            got a 1-D ``y``.
        """
        X = self._validated(X)
        x, W = self._encode64(X), self.coef_
        if isinstance(outputs, str) and outputs == "predicted":
            step = max(1, 2**20 // max(W.shape[0], 1))  # rows of rebuilt logits at a time
            top = [np.argmax(x[a : a + step] @ W.T + self.intercept_, axis=1)
                   for a in range(0, x.shape[0], step)]  # fmt: skip
            S = x * W[np.concatenate(top) if top else np.zeros(0, dtype=np.intp)]
            return finite_output(S, X.dtype, X, "contributions")
        W = W if outputs is None else W[self._output_indices(outputs)]
        # in X's dtype, 2 MB of float64 rows at a time: no float64 copy of the whole array
        S = np.empty((x.shape[0], *W.shape), dtype=X.dtype)
        step = max(1, 2**18 // max(W.size, 1))
        for a in range(0, x.shape[0], step):
            S[a : a + step] = finite_output(
                x[a : a + step, None, :] * W, X.dtype, X, "contributions"
            )
        return S[:, 0, :] if outputs is None and self._y_1d else S

    def _output_indices(self, outputs):
        """``outputs`` as an array of output indices, or a ValueError saying what is wrong."""
        n = self.coef_.shape[0]
        idx = np.asarray(outputs)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise ValueError(
                "outputs must be None, 'predicted' or a 1-D array-like of output indices "
                f"(integers), got {outputs!r}."
            )
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise ValueError(
                f"outputs holds indices outside the {n} outputs (valid: {-n} to {n - 1}), "
                f"got {idx.min()} to {idx.max()}."
            )
        return idx.astype(np.intp, copy=False)  # an empty list reads as float64
