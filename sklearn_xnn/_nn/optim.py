"""Minibatches and the optimiser."""

import torch


def batches(n, batch_size, generator, device, shuffle=True):
    """Index tensors of the minibatches of one epoch (a permutation drawn on the CPU)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(device)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def adam(params, lr, weight_decay):
    """Adam with torch's fused kernel where the device has one (CPU and CUDA do): one pass
    over each parameter instead of ~10, deterministic, so CPU fits stay bitwise repeatable."""
    params = list(params)
    fused = bool(params) and params[0].device.type in _fused_devices()
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)


def _fused_devices():
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # pragma: no cover - older torch
        return ("cuda",)
    return tuple(_get_fused_kernels_supported_devices())
