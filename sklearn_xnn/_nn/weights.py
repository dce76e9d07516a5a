"""The one conversion between fitted numpy weights and the torch network.

Fitted weights follow scikit-learn's MLP convention: ``coef`` of a layer has shape
``(n_in, n_out)`` and the layer computes ``h @ coef + intercept``; the head keeps the
``(n_outputs, n_components)`` convention of ``coef_``. :func:`from_module` reads a trained
:class:`~sklearn_xnn._nn.modules.XNN` into a :class:`NetworkWeights` (float64 numpy), and
:func:`encoder`, :func:`decoder`, :func:`head` and :func:`to_module` build modules from
one. Inference, ``partial_fit`` after ``fit``, persistence and
``sklearn_xnn.torch.explainer_module`` all go through here.
"""

import dataclasses

import numpy as np
import torch

from sklearn_xnn._nn.modules import XNN, Decoder, Encoder


@dataclasses.dataclass
class NetworkWeights:
    """Encoder and decoder layers as ``(coef, intercept)`` pairs, and the head ``(W, b)``."""

    encoder: list
    decoder: list
    head: tuple | None
    nonneg_output: bool

    @property
    def hidden(self):
        return tuple(c.shape[1] for c, _ in self.encoder[:-1])

    @property
    def n_features(self):
        return self.encoder[0][0].shape[0]


def _numpy(t):
    return t.detach().cpu().double().numpy()


def from_module(model):
    """The weights of ``model`` (an ``XNN``) as float64 numpy arrays."""
    pairs = lambda layers: [(_numpy(l.weight).T, _numpy(l.bias)) for l in layers]  # noqa: E731
    head = None
    if model.head is not None:
        head = (_numpy(model.head.weight), _numpy(model.head.bias))
    return NetworkWeights(
        pairs(model.encoder.layers),
        pairs(model.decoder.layers),
        head,
        bool(model.decoder.nonnegative_output),
    )


def _load(layers, pairs):
    with torch.no_grad():
        for layer, (coef, intercept) in zip(layers, pairs, strict=True):
            layer.weight.copy_(torch.as_tensor(np.asarray(coef).T))
            layer.bias.copy_(torch.as_tensor(np.asarray(intercept)))


def _load_head(layer, W, b):
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(np.asarray(W)))
        layer.bias.copy_(torch.as_tensor(np.asarray(b)))


def _materialise(module, device, dtype):
    """A module built on the meta device, given storage (no global RNG draw)."""
    return module.to_empty(device=device).to(dtype)


def _sizes(pairs):
    return [pairs[0][0].shape[0], *(c.shape[1] for c, _ in pairs)]


def _built(make, coefs, intercepts, device, dtype):
    """``make(sizes)`` built on the meta device, then given storage and the weights."""
    pairs = list(zip(coefs, intercepts, strict=True))
    with torch.device("meta"):
        module = make(_sizes(pairs))
    module = _materialise(module, device, dtype)
    _load(module.layers, pairs)
    return module


def encoder(coefs, intercepts, *, device="cpu", dtype=torch.float64):
    """An :class:`Encoder` holding MLP-convention weights (every layer Linear + ReLU)."""
    return _built(Encoder, coefs, intercepts, device, dtype)


def decoder(coefs, intercepts, relu_output, *, device="cpu", dtype=torch.float64):
    """A :class:`Decoder` holding MLP-convention weights."""
    return _built(lambda sizes: Decoder(sizes, relu_output), coefs, intercepts, device, dtype)


def head(W, b, *, device="cpu", dtype=torch.float64):
    """The head ``y_hat = x @ W.T + b`` as an ``nn.Linear``; ``W`` of shape (n_outputs, K)."""
    with torch.device("meta"):
        layer = torch.nn.Linear(W.shape[1], W.shape[0])
    layer = _materialise(layer, device, dtype)
    _load_head(layer, W, b)
    return layer


def to_module(weights, *, dropout=0.0, device="cpu", dtype=torch.float32):
    """A trainable :class:`XNN` holding ``weights``."""
    n_outputs = 0 if weights.head is None else weights.head[0].shape[0]
    K = weights.encoder[-1][0].shape[1]
    with torch.device("meta"):
        model = XNN(
            weights.n_features, weights.hidden, K, n_outputs, dropout, weights.nonneg_output
        )
    model = _materialise(model, device, dtype)
    _load(model.encoder.layers, weights.encoder)
    _load(model.decoder.layers, weights.decoder)
    if weights.head is not None:
        _load_head(model.head, *weights.head)
    return model
