"""The XNN as ``nn.Module``s (encoder, decoder, head) and its fitted weights.

Fitted weights follow scikit-learn's MLP convention: ``coef`` of a layer has shape
``(n_in, n_out)`` and the layer computes ``h @ coef + intercept``; the head keeps the
``(n_outputs, n_components)`` convention of ``coef_``. :func:`from_module` reads a trained
:class:`XNN` into a :class:`NetworkWeights` (float64 numpy), and :func:`encoder`,
:func:`decoder`, :func:`head` and :func:`to_module` build modules from one: the one
conversion that inference, ``partial_fit`` after ``fit``, persistence and
``sklearn_xnn.torch.explainer_module`` go through. Inference runs these modules in
float64 (:func:`encode_numpy`, :func:`decode_numpy`), so that a batch and its rows agree
to ~1e-15; the caller casts back to the input dtype.
"""

import dataclasses
import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sklearn_xnn._nn.data import resolve_device


class MLP(nn.Module):
    """``Linear -> ReLU -> ... -> Linear`` and a ReLU on the output when
    ``nonnegative_output``: the encoder (``... -> Linear(., K) -> ReLU``) and the decoder
    (``Linear(K, .) -> ... -> Linear(., D)``, ReLU or identity on its output) of an XNN.

    With ``p_dropout`` (the encoder's), the first layer's output goes through inverted
    dropout when more layers follow and a ``generator`` is given; its mask is drawn from
    that generator, never from the global RNG.
    """

    def __init__(self, sizes, nonnegative_output=True, p_dropout=0.0):
        super().__init__()
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.nonnegative_output, self.p_dropout = nonnegative_output, p_dropout

    def forward(self, h, generator=None, pre=False, units=None):
        """The output (the x-features, or the rebuilt activations); with ``units``
        (indices) only those of its columns; with ``pre``, ``(output, the last layer's
        pre-activations)``."""
        last, p = len(self.layers) - 1, self.p_dropout
        for i, layer in enumerate(self.layers):
            if i == last and units is not None:  # the rows of the last layer that are read
                a = F.linear(h, layer.weight[units], layer.bias[units])
            else:
                a = layer(h)
            h = F.relu(a) if i < last or self.nonnegative_output else a
            if i == 0 and p > 0.0 and generator is not None and last > 0:
                keep = torch.rand(h.shape, generator=generator, device=h.device, dtype=h.dtype)
                h = h * (keep >= p) / (1.0 - p)
        return (h, a) if pre else h


class XNN(nn.Module):
    """Encoder ``E``, linear head ``H`` (absent when unsupervised) and decoder ``G``."""

    def __init__(self, n_features, hidden, n_components, n_outputs, p_dropout, nonneg_output):
        super().__init__()
        sizes = [n_features, *hidden, n_components]
        self.encoder = MLP(sizes, p_dropout=p_dropout)
        self.decoder = MLP(sizes[::-1], nonneg_output)
        self.head = nn.Linear(n_components, n_outputs) if n_outputs else None

    def forward(self, z, generator=None, units=None):
        """Return ``(x, y_hat, z_hat)``; ``y_hat`` is None without a head; with ``units``
        ``z_hat`` holds only those activation units."""
        x = self.encoder(z, generator)
        y_hat = self.head(x) if self.head is not None else None
        return x, y_hat, self.decoder(x, units=units)


# -------------------------------------------------------------- fitted weights
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


def from_module(model):
    """The weights of ``model`` (an ``XNN``) as float64 numpy arrays."""
    f64 = [
        (l.weight.detach().cpu().double().numpy(), l.bias.detach().cpu().double().numpy())
        for l in [*model.encoder.layers, *model.decoder.layers]
        + ([model.head] if model.head is not None else [])
    ]
    n_enc = len(model.encoder.layers)
    return NetworkWeights(
        [(W.T, b) for W, b in f64[:n_enc]],
        [(W.T, b) for W, b in f64[n_enc : 2 * n_enc]],
        f64[-1] if model.head is not None else None,
        bool(model.decoder.nonnegative_output),
    )


def _load(layers, pairs, transpose=True):
    """Copy ``(coef, intercept)`` pairs (``coef`` transposed, scikit-learn's MLP
    convention, unless ``transpose`` is false) into ``layers``."""
    with torch.no_grad():
        for layer, (coef, intercept) in zip(layers, pairs, strict=True):
            coef = np.asarray(coef)  # torch.tensor copies: read-only (memory-mapped) arrays too
            layer.weight.copy_(torch.tensor(coef.T if transpose else coef))
            layer.bias.copy_(torch.tensor(np.asarray(intercept)))


def _built(make, coefs, intercepts, device, dtype):
    """``make(sizes)`` built on the meta device (no global RNG draw), then given storage
    and the weights."""
    pairs = list(zip(coefs, intercepts, strict=True))
    with torch.device("meta"):
        module = make([pairs[0][0].shape[0], *(c.shape[1] for c, _ in pairs)])
    module = module.to_empty(device=device).to(dtype)
    _load(module.layers, pairs)
    return module


def encoder(coefs, intercepts, *, device="cpu", dtype=torch.float64):
    """An encoder (:class:`MLP`) holding MLP-convention weights (every layer Linear + ReLU)."""
    return _built(MLP, coefs, intercepts, device, dtype)


def decoder(coefs, intercepts, relu_output, *, device="cpu", dtype=torch.float64):
    """A decoder (:class:`MLP`) holding MLP-convention weights."""
    make = functools.partial(MLP, nonnegative_output=relu_output)
    return _built(make, coefs, intercepts, device, dtype)


def head(W, b, *, device="cpu", dtype=torch.float64):
    """The head ``y_hat = x @ W.T + b`` as an ``nn.Linear``; ``W`` of shape (n_outputs, K)."""
    with torch.device("meta"):
        layer = torch.nn.Linear(W.shape[1], W.shape[0])
    layer = layer.to_empty(device=device).to(dtype)
    _load([layer], [(W, b)], transpose=False)
    return layer


def to_module(weights, *, dropout=0.0, device="cpu", dtype=torch.float32):
    """A trainable :class:`XNN` holding ``weights``."""
    n_outputs = 0 if weights.head is None else weights.head[0].shape[0]
    K = weights.encoder[-1][0].shape[1]
    with torch.device("meta"):
        model = XNN(
            weights.n_features, weights.hidden, K, n_outputs, dropout, weights.nonneg_output
        )
    model = model.to_empty(device=device).to(dtype)
    _load(model.encoder.layers, weights.encoder)
    _load(model.decoder.layers, weights.decoder)
    if weights.head is not None:
        _load([model.head], [weights.head], transpose=False)
    return model


# ----------------------------------------------------------- float64 inference
_CHUNK_ROWS = 65536


def inference_device(device):
    """The fitted ``device`` if it is present here, else the CPU (MPS has no float64)."""
    dev = resolve_device(device, strict=False)
    return torch.device("cpu") if dev.type == "mps" else dev


def _run(module, X, n_out, device):
    """``module`` on the rows of ``X`` in float64, chunk by chunk (a chunk shares ``X``'s
    memory when it can: torch wants writable memory without negative strides)."""
    if X.shape[0] == 0:
        return np.zeros((0, n_out))
    out = []
    with torch.no_grad():
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            chunk = np.asarray(X[start : start + _CHUNK_ROWS], dtype=np.float64)
            if not chunk.flags.writeable or min(chunk.strides, default=0) < 0:
                chunk = chunk.copy()
            out.append(module(torch.as_tensor(chunk, device=device)).cpu().numpy())
    return np.concatenate(out)


def encode_numpy(X, coefs, intercepts, device="cpu"):
    """x-features ``E(X)`` in float64: every layer Linear + ReLU."""
    dev = inference_device(device)
    module = encoder(coefs, intercepts, device=dev)
    return _run(module, X, coefs[-1].shape[1], dev)


def decode_numpy(X, coefs, intercepts, relu_out, device="cpu"):
    """Reconstruction ``G(X)`` in float64: ReLU between layers, ``relu_out`` on the output."""
    dev = inference_device(device)
    module = decoder(coefs, intercepts, relu_out, device=dev)
    return _run(module, X, coefs[-1].shape[1], dev)
