"""The numpy <-> torch boundary: device resolution, tensors, seeds -> generators."""

import numpy as np
import torch

_DEVICE_HELP = 'Use device="cpu", or device="auto" to take a GPU only when one is present.'


def resolve_device(device, *, strict=True):
    """Return the ``torch.device`` that ``device`` ("auto", "cpu", "cuda", "cuda:N", "mps") names.

    With ``strict=False`` an unavailable accelerator resolves to the CPU instead of
    raising (used at inference time, so that a model fitted on a GPU still
    transforms on a machine without one).
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device name; expected 'auto', 'cpu', 'cuda', "
            f"'cuda:N' or 'mps'. {_DEVICE_HELP}"
        ) from exc
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r} is not supported. {_DEVICE_HELP}")
    problem = _unavailable_reason(dev)
    if problem is None:
        return dev
    if strict:
        raise RuntimeError(f"device={device!r} was requested but {problem}. {_DEVICE_HELP}")
    return torch.device("cpu")


def _unavailable_reason(dev):
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return "torch sees no CUDA GPU on this machine"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return f"only {torch.cuda.device_count()} CUDA device(s) are visible"
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return "the MPS backend is not available on this machine"
    return None


def make_generator(random_state):
    """A CPU ``torch.Generator`` seeded from ``random_state`` (a ``np.random.RandomState``)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(random_state.randint(0, 2**31 - 1)))
    return gen


def device_generator(cpu_generator, device):
    """A generator on ``device`` seeded by a draw from ``cpu_generator`` (for dropout masks)."""
    if device.type == "cpu":
        return cpu_generator
    seed = int(torch.randint(0, 2**62, (1,), generator=cpu_generator))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def to_tensor(array, device, dtype=torch.float32):
    """Copy a numpy array (or array slice) to a contiguous tensor on ``device``."""
    return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)
