"""A fitted explainer as a ``torch.nn.Module``, alone or on top of the network it explains."""

import warnings

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from sklearn_xnn._nn import modules as weights
from sklearn_xnn.metrics._adapter import refitted
from sklearn_xnn.torch._extract import TruncatedNetwork, as_input
from sklearn_xnn.torch._modes import evaluating


def _float64(arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _output_is_1d(explainer):
    """Whether ``predict`` answers 1-D (the explainer was fitted on a 1-D ``y``).

    Read from the fitted state (``_y_1d``); an explainer without it (a look-alike) is
    asked through ``predict`` on one row of zeros, without the feature-name warning that
    a bare array gives an explainer fitted on a data frame.
    """
    if hasattr(explainer, "_y_1d"):
        return bool(explainer._y_1d)
    probe = np.zeros((1, explainer.n_features_in_))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return np.ndim(explainer.predict(probe)) == 1


def _refitted(explainer):
    """A fitted search's refitted ``best_estimator_`` (:func:`refitted`), or a ValueError
    for a search fitted without refitting its best; any other explainer as it is."""
    if hasattr(explainer, "cv_results_") and not hasattr(explainer, "best_estimator_"):
        raise ValueError(
            f"This {type(explainer).__name__} was fitted with refit=False and has no "
            "refitted explainer to build a module from: fit it with refit=True, or pass "
            "an SRAEExplainer fitted with its best_params_."
        )
    return refitted(explainer)


class ExplainerModule(nn.Module):
    """The encoder and linear head of a fitted explainer as a differentiable module.

    ``forward(z)`` gives the rebuilt logits (``explainer.predict``), :meth:`encode` the
    x-features (``explainer.transform``) and :meth:`contributions` their contributions
    ``x_k W_ck`` (``explainer.contributions``). Build it with :func:`explainer_module`.
    Like ``nn.Linear``, each also takes one unbatched row, shape (n_features,), and then
    answers without the sample axis.

    Attributes
    ----------
    encoder : torch.nn.Sequential
        ``Linear -> ReLU`` for every encoder layer; the last ``Linear`` gives the x-features
        before their ReLU.
    head : torch.nn.Linear or None
        ``y_hat = W x + b``; None when the explainer was fitted without ``y``.
    """

    def __init__(self, encoder, head, output_1d=False):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.output_1d = output_1d

    @property
    def feature_layer(self):
        """The ``nn.Linear`` whose rows give the x-features (before their ReLU)."""
        return self.encoder[-2]

    def encode(self, z):
        """x-features, shape (n_samples, n_components), non-negative."""
        return self.encoder(z)

    def _require_head(self):
        if self.head is None:
            raise RuntimeError(
                "This explainer was fitted without y: it has x-features (encode) but no head."
            )

    def forward(self, z):
        """Rebuilt logits, shape (n_samples, n_outputs) or (n_samples,) for a 1-D ``y``."""
        self._require_head()
        y = self.head(self.encode(z))
        return y[..., 0] if self.output_1d else y

    def contributions(self, z):
        """Contributions ``x_k W_ck``, shape (n_samples, n_outputs, n_components).

        Shape (n_samples, n_components) for an explainer fitted on a 1-D ``y``, as
        ``explainer.contributions`` answers.
        """
        self._require_head()
        S = self.encode(z)[..., None, :] * self.head.weight
        return S[..., 0, :] if self.output_1d else S


def explainer_module(explainer, *, dtype=torch.float32, device="cpu"):
    """Build the torch module of a fitted :class:`~sklearn_xnn.SRAEExplainer`'s encoder and head.

    The weights are copied from the explainer's numpy state (``encoder_coefs_``,
    ``encoder_intercepts_``, ``coef_``, ``intercept_``), so the module answers in the
    caller's units and can be run, moved and backpropagated through like any other.

    Parameters
    ----------
    explainer : SRAEExplainer or SRAEExplainerCV
        A fitted explainer (anything with the same fitted attributes works), or a fitted
        search such as :class:`~sklearn_xnn.SRAEExplainerCV`, whose refitted
        ``best_estimator_`` is used (a search fitted with ``refit=False`` has none and
        raises ``ValueError``).
    dtype : torch.dtype, default=torch.float32
        Parameter dtype; float64 reproduces ``transform`` to ~1e-12.
    device : str or torch.device, default="cpu"
        Where to put the parameters.

    Returns
    -------
    module : ExplainerModule
        In eval mode, parameters with ``requires_grad=False``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_xnn import SRAEExplainer
    >>> from sklearn_xnn.torch import explainer_module
    >>> rng = np.random.default_rng(0)
    >>> Z, y = rng.random((60, 6)), rng.random((60, 2))
    >>> xnn = SRAEExplainer(2, hidden_layer_sizes=(8,), max_iter=2, pretrain=1,
    ...                     device="cpu", random_state=0).fit(Z, y)
    >>> m = explainer_module(xnn, dtype=torch.float64)
    >>> bool(np.allclose(m(torch.as_tensor(Z)).numpy(), xnn.predict(Z)))
    True
    """
    explainer = _refitted(explainer)
    check_is_fitted(explainer, ["encoder_coefs_", "encoder_intercepts_"])
    encoder = weights.encoder(
        _float64(explainer.encoder_coefs_),
        _float64(explainer.encoder_intercepts_),
        device=device,
        dtype=dtype,
    )
    layers = [m for layer in encoder.layers for m in (layer, nn.ReLU())]
    head, output_1d = None, False
    if hasattr(explainer, "coef_"):
        W, b = _float64([np.atleast_2d(explainer.coef_), np.atleast_1d(explainer.intercept_)])
        head = weights.head(W, b, device=device, dtype=dtype)
        output_1d = _output_is_1d(explainer)
    module = ExplainerModule(nn.Sequential(*layers), head, output_1d).eval()
    module.requires_grad_(False)
    return module


class ExplainedNetwork(nn.Module):
    """A network up to its explained layer, then the explainer's encoder and head.

    ``forward(images)`` gives the logits rebuilt from the x-features;
    :meth:`xfeatures` the x-features themselves; :meth:`contributions` each
    x-feature's contribution to each output. Gradients flow to the input, which is what
    the heatmap methods of :func:`sklearn_xnn.torch.xfeature_heatmaps` need.

    Every call runs the network for inference, whatever mode it (or this module) is in:
    in eval mode, so batch normalisation uses its running statistics and leaves its
    buffers untouched and dropout is off, exactly as
    :func:`~sklearn_xnn.torch.extract_activations` reads the rows the explainer was
    fitted on; ``xfeatures(x)`` then equals ``explainer.transform`` of those rows. Every
    submodule's ``training`` flag is restored after the call (also when it raises), so
    a model being trained elsewhere keeps its mode. ``torch.no_grad`` is not entered.

    Parameters
    ----------
    trunk : torch.nn.Module
        Maps inputs to the explained layer's activations, exactly the rows the explainer
        was fitted on: e.g. ``TruncatedNetwork(model, layer)``, or the first part of
        :func:`split_sequential`. A full model plus ``layer`` is accepted too.
    explainer : SRAEExplainer, SRAEExplainerCV or ExplainerModule
        A fitted explainer (or search, see :func:`explainer_module`), or its module from
        :func:`explainer_module`. An explainer is built in the trunk's dtype, but at
        least float32: on a float16 or bfloat16 network the trunk computes in half
        precision and its activations are read in float32, as
        :func:`~sklearn_xnn.torch.extract_activations` returns them, so ``xfeatures``
        equals ``explainer.transform`` of those rows to float32 rounding. To run the
        explainer in another dtype, pass ``explainer_module(explainer, dtype=...)``.
    layer : str, optional
        When given, ``trunk`` is a full model and is cut at this layer with ``pooling``.
    pooling : {"avg", "max", "flatten"}, default="avg"
        Used with ``layer`` only.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_xnn import SRAEExplainer
    >>> from sklearn_xnn.torch import ExplainedNetwork, extract_activations
    >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
    ...                           torch.nn.Flatten(), torch.nn.Linear(144, 3))
    >>> images = torch.rand(50, 1, 8, 8)
    >>> Z, logits = extract_activations(cnn, "1", images, pooling="flatten", device="cpu")
    >>> xnn = SRAEExplainer(2, hidden_layer_sizes=(8,), max_iter=2, pretrain=1,
    ...                     device="cpu", random_state=0).fit(Z, logits)
    >>> net = ExplainedNetwork(cnn, xnn, layer="1", pooling="flatten")
    >>> net.xfeatures(images).shape, net(images).shape
    (torch.Size([50, 2]), torch.Size([50, 3]))
    """

    def __init__(self, trunk, explainer, *, layer=None, pooling="avg"):
        super().__init__()
        if layer is not None:
            trunk = TruncatedNetwork(trunk, layer, pooling)
        if not isinstance(explainer, ExplainerModule):
            param = next(iter(trunk.parameters()), None)
            dtype, device = torch.float32, "cpu"
            if param is not None:  # float64 stays, half precision is read in float32
                dtype = torch.promote_types(param.dtype, torch.float32)
                device = param.device
            explainer = explainer_module(explainer, dtype=dtype, device=device)
        self.trunk = trunk
        self.explainer = explainer

    def activations(self, x):
        """The explained layer's activations, shape (n_samples, n_features).

        The one place where the network runs: in eval mode, training flags restored.
        Floating inputs take the trunk's dtype and device (float64 images become float32
        for a float32 network) as in :func:`~sklearn_xnn.torch.extract_activations`, and
        the activations the explainer module's (a float64 module on a float32 network
        reads them in float64); the casts are differentiable, so gradients still reach
        ``x``.
        """
        with evaluating(self):
            z = self.trunk(self._as_input(x))
        z = z.flatten(1) if z.ndim > 2 else z
        like = self.explainer.feature_layer.weight
        z = z.to(device=like.device, dtype=like.dtype)
        width = self.explainer.encoder[0].in_features
        if z.shape[-1] != width:
            raise ValueError(
                f"The trunk gives {z.shape[-1]} activations per input, but the explainer "
                f"was fitted on {width}: pass the trunk (or layer and pooling) that "
                "produced the rows the explainer was fitted on."
            )
        return z

    def _as_input(self, x):
        """``x`` on the trunk's device, floating inputs in its dtype (else the explainer's)."""
        like = next(iter(self.trunk.parameters()), self.explainer.feature_layer.weight)
        return as_input(torch.as_tensor(x), like.device, like)

    def xfeatures(self, x):
        """x-features, shape (n_samples, n_components)."""
        return self.explainer.encode(self.activations(x))

    def contributions(self, x):
        """Contributions, shape (n_samples, n_outputs, n_components).

        Shape (n_samples, n_components) for an explainer fitted on a 1-D ``y``.
        """
        return self.explainer.contributions(self.activations(x))

    def forward(self, x):
        """Logits rebuilt linearly from the x-features."""
        return self.explainer(self.activations(x))

    def xfeature_module(self):
        """This network with the x-features as its output, as an ``nn.Module``.

        ``xfeature_module()(x)`` is ``xfeatures(x)``; the module contains this network
        (its layers are found under ``"network."``), which is what attribution libraries
        that hook a model's layers, such as captum's ``GuidedBackprop``, need.
        """
        return _XFeatures(self)


class _XFeatures(nn.Module):
    """An :class:`ExplainedNetwork` whose output is its x-features."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network.xfeatures(x)
