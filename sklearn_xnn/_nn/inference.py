"""Float64 inference from the estimator's numpy weights (no cached tensors, no training state).

The networks are the engine's own :class:`Encoder` / :class:`Decoder`, built in float64
from the fitted weights (:mod:`sklearn_xnn._nn.weights`), so that a batch and its rows
agree to ~1e-15; the caller casts back to the input dtype.
"""

import numpy as np
import torch

from sklearn_xnn._nn import weights
from sklearn_xnn._nn.convert import resolve_device

_CHUNK_ROWS = 65536


def inference_device(device):
    """The fitted ``device`` if it is present here, else the CPU (MPS has no float64)."""
    dev = resolve_device(device, strict=False)
    return torch.device("cpu") if dev.type == "mps" else dev


def _tensor(array, device):
    """Float64 tensor sharing ``array``'s memory when it can (torch wants writable memory)."""
    array = np.asarray(array, dtype=np.float64)
    array = array if array.flags.writeable else array.copy()
    return torch.as_tensor(array, device=device)


def _run(module, X, n_out, device):
    if X.shape[0] == 0:
        return np.zeros((0, n_out))
    out = []
    with torch.no_grad():
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            chunk = _tensor(X[start : start + _CHUNK_ROWS], device)
            out.append(module(chunk).cpu().numpy())
    return np.concatenate(out)


def encode_numpy(X, coefs, intercepts, device="cpu"):
    """x-features ``E(X)`` in float64: every layer Linear + ReLU."""
    dev = inference_device(device)
    module = weights.encoder(coefs, intercepts, device=dev)
    return _run(module, X, coefs[-1].shape[1], dev)


def decode_numpy(X, coefs, intercepts, relu_out, device="cpu"):
    """Reconstruction ``G(X)`` in float64: ReLU between layers, ``relu_out`` on the output."""
    dev = inference_device(device)
    module = weights.decoder(coefs, intercepts, relu_out, device=dev)
    return _run(module, X, coefs[-1].shape[1], dev)
