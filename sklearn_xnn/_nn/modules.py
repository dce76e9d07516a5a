"""Encoder, decoder and head of the XNN as ``nn.Module``s: forward passes only."""

import math

import torch
from torch import nn
from torch.nn import functional as F


def init_linear(layer, generator):
    """Re-initialise ``layer`` like torch's default, but drawing from ``generator``."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


def dropout(h, p, generator):
    """Inverted dropout whose mask is drawn from ``generator`` (never the global RNG)."""
    if p <= 0.0 or generator is None:
        return h
    keep = torch.rand(h.shape, generator=generator, device=h.device, dtype=h.dtype) >= p
    return h * keep / (1.0 - p)


class Encoder(nn.Module):
    """``Linear -> ReLU -> Dropout -> Linear -> ReLU -> ... -> Linear(., K) -> ReLU``."""

    def __init__(self, sizes, p_dropout=0.0):
        super().__init__()
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.p_dropout = p_dropout

    def hidden(self, z, generator=None):
        """The codes of the last hidden layer (dropout after the first when ``generator``)."""
        h = z
        for i, layer in enumerate(self.layers[:-1]):
            h = F.relu(layer(h))
            if i == 0:
                h = dropout(h, self.p_dropout, generator)
        return h

    def forward(self, z, generator=None):
        return F.relu(self.layers[-1](self.hidden(z, generator)))


class Decoder(nn.Module):
    """``Linear(K, .) -> ReLU -> ... -> Linear(., D) -> out``; out is ReLU or identity."""

    def __init__(self, sizes, nonnegative_output):
        super().__init__()
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.nonnegative_output = nonnegative_output

    def forward(self, x):
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last or self.nonnegative_output:
                h = F.relu(h)
        return h


class XNN(nn.Module):
    """Encoder ``E``, linear head ``H`` (absent when unsupervised) and decoder ``G``."""

    def __init__(self, n_features, hidden, n_components, n_outputs, p_dropout, nonneg_output):
        super().__init__()
        sizes = [n_features, *hidden, n_components]
        self.encoder = Encoder(sizes, p_dropout)
        self.decoder = Decoder(sizes[::-1], nonneg_output)
        self.head = nn.Linear(n_components, n_outputs) if n_outputs else None

    def forward(self, z, generator=None):
        """Return ``(x, y_hat, z_hat)``; ``y_hat`` is None without a head."""
        x = self.encoder(z, generator)
        y_hat = self.head(x) if self.head is not None else None
        return x, y_hat, self.decoder(x)
