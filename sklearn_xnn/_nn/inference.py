"""Float64 inference from the estimator's numpy weights (no cached tensors, no training state).

Weights follow scikit-learn's MLP convention: ``coefs[l]`` has shape ``(n_in, n_out)``.
Inference runs in float64 so that a batch and its rows agree to ~1e-15, then the caller
casts back to the input dtype.
"""

import numpy as np
import torch

from sklearn_xnn._nn.convert import resolve_device

_CHUNK_ROWS = 65536


def inference_device(device):
    """The fitted ``device`` if it is present here, else the CPU (MPS has no float64)."""
    dev = resolve_device(device, strict=False)
    return torch.device("cpu") if dev.type == "mps" else dev


def _mlp(h, coefs, intercepts, relu_last):
    last = len(coefs) - 1
    for i, (w, b) in enumerate(zip(coefs, intercepts, strict=True)):
        h = torch.addmm(b, h, w)
        if i < last or relu_last:
            h = torch.relu(h)
    return h


def _tensor(array, device):
    """Float64 tensor sharing ``array``'s memory when it can (torch wants writable memory)."""
    array = np.asarray(array, dtype=np.float64)
    array = array if array.flags.writeable else array.copy()
    return torch.as_tensor(array, device=device)


def _run(X, coefs, intercepts, relu_last, device):
    dev = inference_device(device)
    ws = [_tensor(w, dev) for w in coefs]
    bs = [_tensor(b, dev) for b in intercepts]
    out = []
    with torch.no_grad():
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            chunk = _tensor(X[start : start + _CHUNK_ROWS], dev)
            out.append(_mlp(chunk, ws, bs, relu_last).cpu().numpy())
    if not out:
        return np.zeros((0, coefs[-1].shape[1]))
    return np.concatenate(out)


def encode_numpy(X, coefs, intercepts, device="cpu"):
    """x-features ``E(X)`` in float64: every layer Linear + ReLU."""
    return _run(X, coefs, intercepts, True, device)


def decode_numpy(X, coefs, intercepts, relu_out, device="cpu"):
    """Reconstruction ``G(X)`` in float64: ReLU between layers, ``relu_out`` on the output."""
    return _run(X, coefs, intercepts, relu_out, device)
