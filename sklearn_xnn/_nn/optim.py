"""Minibatches, the optimiser, its learning-rate schedule and the constraint's multiplier."""

import math

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


class Schedule:
    """Linear warm-up over ``warmup_steps``, then x``lr_gamma`` every ``lr_step`` epochs."""

    def __init__(self, cfg, steps_per_epoch, start_epoch=0):
        self.cfg, self.per_epoch = cfg, max(1, steps_per_epoch)
        self.step = start_epoch * self.per_epoch

    def __call__(self):
        cfg, t = self.cfg, self.step
        self.step += 1
        warm = min(1.0, (t + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        return cfg.lr * warm * cfg.lr_gamma ** ((t // self.per_epoch) // cfg.lr_step)


class Multiplier:
    """``log lam`` on the device, updated after every step without a host round trip.

    The violation is measured in units of the slack the start leaves (the tolerance): one
    unit sustained for one epoch multiplies ``lam`` by ``e``.
    """

    def __init__(self, value, cfg, slack, steps_per_epoch, device):
        self.on = cfg.faith_target is not None
        self.log = torch.tensor(math.log(max(value, 1e-30)), device=device)
        self.target, self.slack = cfg.faith_target, max(slack, 1e-12)
        self.rate = 1.0 / max(1, steps_per_epoch)
        self.low, self.high = (math.log(v) for v in cfg.multiplier_range)

    def value(self):
        return self.log.exp() if self.on else None

    def current(self, cfg):
        """The multiplier as a float (``alpha_f`` without the constraint)."""
        return float(self.log.exp()) if self.on else float(cfg.alpha_f)

    def update(self, e_faith):
        if self.on and e_faith is not None:
            violation = ((e_faith.detach() - self.target) / self.slack).clamp(-1.0, 5.0)
            self.log = (self.log + self.rate * violation).clamp(self.low, self.high)
