"""Activations of a named layer of any ``torch.nn.Module``, and the network cut at that layer."""

import contextlib
import inspect
import logging
import numbers
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from sklearn_xnn._nn.data import resolve_device
from sklearn_xnn.torch._modes import evaluating

logger = logging.getLogger("sklearn_xnn")

POOLINGS = ("avg", "max", "flatten")


def get_layer(model, layer):
    """The submodule of ``model`` named ``layer`` (a dotted name from ``named_modules``).

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    layer : str or torch.nn.Module
        A name such as ``"features.3"`` or the submodule itself.

    Returns
    -------
    module : torch.nn.Module
        The submodule.
    """
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError("The module given as layer is not part of the model.")
        return layer
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n]
        shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
        raise ValueError(f"The model has no layer named {layer!r}; its layers are: {shown}.")
    return modules[layer]


def pool_activations(a, pooling="avg"):
    """Turn a layer's output into one row per input.

    Parameters
    ----------
    a : torch.Tensor of shape (n_samples, n_channels, ...)
        Layer output; 2-D outputs are returned unchanged.
    pooling : {"avg", "max", "flatten"}, default="avg"
        Mean or max over the spatial axes (``(N, C, H, W) -> (N, C)``), or flatten them
        (``-> (N, C*H*W)``).

    Returns
    -------
    rows : torch.Tensor of shape (n_samples, n_features)
        One row per input.

    Examples
    --------
    >>> import torch
    >>> from sklearn_xnn.torch import pool_activations
    >>> pool_activations(torch.ones(2, 3, 4, 4), "flatten").shape
    torch.Size([2, 48])
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    if a.ndim == 2:
        return a
    if a.ndim < 2:
        return a.reshape(a.shape[0], -1)
    if pooling == "flatten":
        return a.flatten(1)
    spatial = tuple(range(2, a.ndim))
    return a.mean(spatial) if pooling == "avg" else a.amax(spatial)


def iter_batches(data, batch_size, n_inputs=1):
    """Yield tuples of ``n_inputs`` input tensors, one tuple per batch.

    ``data`` is a tensor or an array (``n_inputs=1``), a tuple or list of ``n_inputs``
    of them (``n_inputs > 1``), cut into batches of ``batch_size`` rows, or an iterable of
    batches. A batch that is a tuple or list (as a ``DataLoader`` over ``(x, y)`` yields)
    contributes its first ``n_inputs`` elements. Every input must have as many axes in
    every batch as in the first, at least one, and as many rows as the batch's other
    inputs: an ``(X, y)`` pair given as ``data`` is refused.
    """
    arrays = _arrays(data, n_inputs)
    if arrays is not None:
        if len(arrays) != n_inputs:
            raise ValueError(
                f"data holds {len(arrays)} array(s) for n_inputs={n_inputs}: give one array "
                "or tensor per input of the model's forward, or an iterable of batches "
                "(e.g. a DataLoader) yielding (inputs..., target) tuples."
            )
        for a in arrays:
            if isinstance(a, np.ndarray) and a.dtype.kind not in "biuf":
                raise TypeError(f"data must hold numbers, got a numpy array of dtype {a.dtype}.")
        tensors = [torch.as_tensor(a) for a in arrays]
        _check_inputs(tensors, 0, [t.ndim for t in tensors])
        for start in range(0, tensors[0].shape[0], batch_size):
            yield tuple(t[start : start + batch_size] for t in tensors)
        return
    if not isinstance(data, Iterable) or isinstance(data, str | bytes):
        raise TypeError(
            "data must be a tensor, a numpy array, a tuple of them (one per input, with "
            "n_inputs) or an iterable of batches (e.g. a DataLoader), got "
            f"{type(data).__name__}."
        )
    ndims = None
    for i, batch in enumerate(data):
        parts = batch[:n_inputs] if isinstance(batch, tuple | list) else [batch]
        if parts and isinstance(parts[0], Mapping):
            raise TypeError(
                f"data yields dicts (keys {sorted(map(str, parts[0]))}); the model is called "
                "with positional input tensors: yield the input tensor (or (inputs..., "
                "target) tuples, with n_inputs), or wrap the model in a module taking tensors."
            )
        if len(parts) != n_inputs:
            raise ValueError(
                f"data must yield tuples of at least n_inputs={n_inputs} tensors (the "
                f"inputs, then any targets); batch {i} holds {len(parts)}."
            )
        parts = tuple(torch.as_tensor(b) for b in parts)
        ndims = [p.ndim for p in parts] if ndims is None else ndims
        _check_inputs(parts, i, ndims)
        yield parts


def _arrays(data, n_inputs):
    """The arrays or tensors ``data`` holds as whole inputs, or None for an iterable of batches."""
    if isinstance(data, torch.Tensor | np.ndarray):
        return (data,)
    if n_inputs > 1 and isinstance(data, tuple | list) and data:
        if all(isinstance(a, torch.Tensor | np.ndarray) for a in data):
            return tuple(data)
    return None


def _check_inputs(parts, i, ndims):
    """Raise ``ValueError`` unless the inputs ``parts`` of batch ``i`` have ``ndims`` axes
    (those of batch 0), at least one, and as many rows each."""
    shapes = " and ".join(str(tuple(p.shape)) for p in parts)
    if any(p.ndim == 0 or p.ndim != n for p, n in zip(parts, ndims, strict=True)):
        raise ValueError(
            "data must yield batches (n, ...) of inputs, all with the same number of "
            f"axes; batch {i} has shape {shapes}, batch 0 had {', '.join(map(str, ndims))} "
            "axes. Pass X alone, not an (X, y) pair (or a DataLoader over "
            "TensorDataset(X, y)), and stack single samples into batches."
        )
    if len({p.shape[0] for p in parts}) > 1:
        raise ValueError(
            f"The inputs of batch {i} have shapes {shapes}: every input of the model needs "
            "one row per sample, as many rows as the others."
        )


def _n_rows(data, n_inputs=1):
    arrays = _arrays(data, n_inputs)
    if arrays is not None:
        return int(arrays[0].shape[0]) if arrays[0].ndim else None
    dataset = getattr(data, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def _progress(total, enabled):
    if not enabled:
        return contextlib.nullcontext(None)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: fall back to the logger
        logger.info("extracting activations (install tqdm for a progress bar)")
        return contextlib.nullcontext(None)
    return tqdm(total=total, unit="img", desc="activations", leave=False)


@contextlib.contextmanager
def _on_device(model, device):
    """Move ``model`` to ``device``; move it back to where its parameters were afterwards."""
    param = next(iter(model.parameters()), None)
    old_device = param.device if param is not None else None
    model.to(device)
    try:
        yield model
    finally:
        if old_device is not None:
            model.to(old_device)


def _check_batch_size(value, name="batch_size"):
    """``value`` as an int; raise unless it is a positive integer (numpy's too, not a bool)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive int, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def _forward(model, inputs):
    """``model(*inputs)``; a ``TypeError`` raised because its ``forward`` cannot take
    ``len(inputs)`` tensors is raised again with the way to pass its inputs."""
    try:
        return model(*inputs)
    except TypeError as exc:
        message = _arity_message(model, len(inputs), exc)
        if message is None:  # raised inside forward, or no signature to read
            raise
        raise TypeError(message) from exc


def _arity_message(model, n, exc):
    """Why ``model.forward`` cannot take ``n`` positional tensors, or None when it can."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*range(n))
        return None
    except TypeError:
        pass
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [
        p.name
        for p in signature.parameters.values()
        if p.kind in positional and p.default is p.empty
    ]
    k, listed = len(names), ", ".join(names)
    how = (
        f"It takes {k} input{'s' * (k > 1)}: pass n_inputs={k} and data as a tuple ({listed}) "
        f"of arrays or tensors, or as an iterable of batches yielding ({listed}[, target]) "
        f"tuples, such as a DataLoader over TensorDataset({listed}, y)."
        if k and k != n
        else "Wrap the model in a module whose forward takes its inputs as positional "
        "tensors, and pass n_inputs."
    )
    return (
        f"{type(model).__name__}.forward{signature} cannot be called with {n} input "
        f"tensor{'s' * (n > 1)} (n_inputs={n}): {exc}. {how}"
    )


def as_input(batch, device, like=None):
    """``batch`` on ``device``, floating inputs in the dtype of the tensor ``like`` (a
    model's first parameter: numpy float64 becomes a float32 network's float32; float32
    without one); other dtypes are kept."""
    if not batch.is_floating_point():
        return batch.to(device)
    return batch.to(device=device, dtype=torch.float32 if like is None else like.dtype)


def extract_activations(
    model,
    layer,
    data,
    *,
    n_inputs=1,
    pooling="avg",
    batch_size=256,
    device="auto",
    return_logits=True,
    progress=False,
):
    """Activations of one layer of a network, with the network's outputs, as numpy arrays.

    A forward hook on ``layer`` records its output on every batch; a layer module that
    runs more than once per forward pass (a shared ``self.relu``, torchvision's
    ``layer4.1.relu``) gives its first call's output, as :class:`TruncatedNetwork` and
    :class:`~sklearn_xnn.torch.ExplainedNetwork` read it, with a ``UserWarning``. The
    model runs for inference whatever mode it is in: in eval mode (batch normalisation
    uses its running statistics and leaves its buffers untouched, dropout is off) under
    ``torch.no_grad``, on ``device``; afterwards every submodule's ``training`` flag and
    the model's device are restored, also when an error is raised.

    Parameters
    ----------
    model : torch.nn.Module
        Any network whose ``forward`` returns a tensor (the logits).
    layer : str or torch.nn.Module
        The layer to read, by its name in ``model.named_modules()`` or as the module.
    data : tensor, ndarray, tuple of them, or iterable of batches
        The inputs: an array/tensor of shape (n_samples, ...) cut into batches of
        ``batch_size``, or an iterable (e.g. a ``DataLoader``) yielding tensors or
        ``(inputs, targets)`` tuples. Every batch has shape (n, ...), its first axis
        read as rows: stack single samples first (many layers also accept one unbatched
        sample, so a list of samples raises ``ValueError`` only where the layer's output
        stops having one row per input). An ``(X, y)`` pair raises ``ValueError``.
        With ``n_inputs > 1``: a tuple of ``n_inputs`` arrays/tensors with the same
        number of rows, or an iterable yielding ``(input_1, ..., input_n[, targets])``
        tuples.
    n_inputs : int, default=1
        How many positional inputs the model's ``forward`` takes: it is called as
        ``model(*inputs)`` on the first ``n_inputs`` elements of each batch (say 2 for
        ``forward(image, metadata)`` or ``forward(input_ids, attention_mask)``). A
        ``forward`` that cannot take ``n_inputs`` tensors raises a ``TypeError`` naming
        the number it needs.
    pooling : {"avg", "max", "flatten"}, default="avg"
        How outputs with more than two axes, such as conv maps ``(N, C, H, W)``, become
        rows: spatial mean, spatial max, or flattening. Axis 1 is read as the channels,
        as in convolutions; a sequence model's ``(N, L, D)`` output (``batch_first``)
        would be pooled over its features: use ``"flatten"``, or read a layer that
        gives ``(N, D, L)``.
    batch_size : int, default=256
        Rows per forward pass when ``data`` is an array or tensor.
    device : str, default="auto"
        "auto" (a GPU when torch sees one), "cpu", "cuda", "cuda:N" or "mps".
    return_logits : bool, default=True
        Also return the model's outputs.
    progress : bool, default=False
        Show a progress bar (tqdm when installed, else one log line).

    Returns
    -------
    Z : ndarray of shape (n_samples, n_features)
        The layer's activations as the layer output them (a copy taken before any later
        in-place operation of the model), float32 unless the model computes in float64
        (float16 and bfloat16 models give float32).
    logits : ndarray of shape (n_samples, n_outputs)
        The model's outputs; only when ``return_logits=True``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_xnn.torch import extract_activations
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> Z, logits = extract_activations(net, "1", torch.randn(10, 4), device="cpu")
    >>> Z.shape, logits.shape
    ((10, 8), (10, 3))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    batch_size = _check_batch_size(batch_size)
    n_inputs = _check_batch_size(n_inputs, "n_inputs")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    module = get_layer(model, layer)
    dev = resolve_device(device)
    captured, rows, outs, n_calls = [], [], [], 1

    def record(module, inputs, output):  # a copy: later in-place operations (a ReLU with
        # inplace=True, a residual "out += identity") would rewrite the layer's own output
        captured.append(None if captured else _first_tensor(output).detach().clone())

    handle = module.register_forward_hook(record)
    try:
        with (
            evaluating(model),
            _on_device(model, dev),
            torch.no_grad(),
            _progress(_n_rows(data, n_inputs), progress) as bar,
        ):
            like = next(iter(model.parameters()), None)
            for inputs in iter_batches(data, batch_size, n_inputs):
                captured.clear()
                out = _forward(model, [as_input(x, dev, like) for x in inputs])
                batch = inputs[0]
                if not captured:
                    raise RuntimeError(f"Layer {layer!r} was not called by the model's forward.")
                n_calls = max(n_calls, len(captured))
                acts = _check_rows(captured[0], batch, f"output of layer {layer!r}")
                rows.append(pool_activations(acts, pooling).cpu())
                if return_logits:
                    logits = _check_rows(_first_tensor(out), batch, "model's output", 1)
                    outs.append(logits.reshape(len(batch), -1).cpu())
                if bar is not None:
                    bar.update(len(batch))
    finally:
        handle.remove()
    if not rows:
        raise ValueError("data yielded no batches; nothing to extract.")
    if n_calls > 1:
        _warn_repeated(layer, n_calls)
    Z = _as_numpy(torch.cat(rows))
    return (Z, _as_numpy(torch.cat(outs))) if return_logits else Z


def _as_numpy(t):
    """``t`` as float64 numpy when it is float64, else as float32 (half-precision models)."""
    return (t if t.dtype == torch.float64 else t.float()).numpy()


def _check_rows(out, batch, what, min_ndim=2):
    """Raise ``ValueError`` unless ``out`` has one row per input of ``batch`` (and at
    least ``min_ndim`` axes: a layer's output has features, a model's may be 1-D)."""
    if out.ndim < min_ndim or out.shape[0] != batch.shape[0]:
        raise ValueError(
            f"The {what} has shape {tuple(out.shape)} for a batch of shape "
            f"{tuple(batch.shape)}, not one row per input: data must yield batches "
            "(n, ...) of inputs, not single samples (stack them, e.g. with a DataLoader)."
        )
    return out


def _warn_repeated(layer, n_calls):
    """Warn that ``layer`` ran ``n_calls`` > 1 times in one forward pass."""
    name = layer if isinstance(layer, str) else type(layer).__name__
    warnings.warn(
        f"Layer {name!r} runs {n_calls} times per forward pass (a module used more than "
        "once, such as a shared ReLU); the first call's output is used. Name a module "
        "that runs once per forward pass to read an unambiguous layer.",
        UserWarning,
        stacklevel=3,
    )


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"Expected a tensor output, got {type(out).__name__}.")


class Pool(nn.Module):
    """:func:`pool_activations` as a module (so that heatmap rules can see it)."""

    def __init__(self, pooling="avg"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.pooling = pooling

    def forward(self, a):
        return pool_activations(a, self.pooling)


class _Stop(Exception):
    """Raised by the cut hook once the explained layer has run."""


class TruncatedNetwork(nn.Module):
    """A network run only up to one of its layers: ``model(x)`` stops at ``layer``.

    Works for any ``forward`` (the layer's output is captured by a forward hook and the
    rest of the forward pass is skipped; a layer module that runs more than once per
    forward pass gives its first call's output, as in :func:`extract_activations`, which
    warns about it), keeps the autograd graph, and shares the
    wrapped model's parameters. The model always runs in eval mode, as in
    :func:`extract_activations`, whatever mode it or this module is in: batch
    normalisation uses (and does not update) its running statistics and dropout is off;
    every submodule's ``training`` flag is restored after each call.

    The layer is registered once, as part of ``model`` (``layer`` refers to it without
    registering it again), so ``state_dict`` holds each weight under one key (a state
    dict that also holds the ``layer.`` copies, saved before, still loads) and hooks that
    walk the module tree visit the layer once. ``torch.export.export`` (non-strict, its
    default) works: while exporting, the rest of the forward pass runs and its result is
    unused.

    Parameters
    ----------
    model : torch.nn.Module
        The full network.
    layer : str or torch.nn.Module
        The layer whose output is returned.
    pooling : {"avg", "max", "flatten"}, default="avg"
        As in :func:`extract_activations`, so that the output matches its rows.

    Examples
    --------
    >>> import torch
    >>> from sklearn_xnn.torch import TruncatedNetwork
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> TruncatedNetwork(net, "1")(torch.randn(5, 4)).shape
    torch.Size([5, 8])
    """

    def __init__(self, model, layer, pooling="avg"):
        super().__init__()
        self.model = model
        self._layer = (get_layer(model, layer),)  # a tuple: not registered a second time
        self.layer_name = layer if isinstance(layer, str) else None
        self.pool = Pool(pooling)

    @property
    def layer(self):
        """The explained layer: the submodule of ``model`` whose output is returned."""
        return self._layer[0]

    def __setstate__(self, state):
        layer = state["_modules"].pop("layer", None)  # pickled when it was registered twice
        super().__setstate__(state)
        if layer is not None:
            self._layer = (layer,)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in [k for k in state_dict if k.startswith(prefix + "layer.")]:
            del state_dict[key]  # the copies of model's own keys in earlier state dicts
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        captured = []
        exporting = _exporting()

        def hook(module, inputs, output):
            captured.append(output)
            if not exporting:  # torch.export cannot trace the exception that skips the rest
                raise _Stop

        handle = self.layer.register_forward_hook(hook)
        try:
            with evaluating(self.model):
                self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError("The layer was not called by the model's forward.")
        return self.pool(_first_tensor(captured[0]))


def _exporting():
    """Whether ``torch.export`` is tracing (``torch.compiler.is_exporting``, torch >= 2.5)."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting is not None and is_exporting())


def split_sequential(model, layer):
    """Cut a network whose ``forward`` runs its children in order into (trunk, rest).

    ``rest(trunk(x))`` equals ``model(x)`` for networks such as
    :class:`sklearn_xnn.datasets.DigitsCNN` or any ``nn.Sequential``; the caller should
    check it on a batch for other models (:func:`check_split` does).

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    layer : str
        Name of a direct child of ``model``: the last layer of the trunk.

    Returns
    -------
    trunk, rest : torch.nn.Sequential
        The children up to and including ``layer``, and those after it (sharing the
        model's parameters).

    Examples
    --------
    >>> import torch
    >>> from sklearn_xnn.torch import split_sequential
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> trunk, rest = split_sequential(net, "1")
    >>> x = torch.randn(5, 4)
    >>> bool(torch.allclose(rest(trunk(x)), net(x)))
    True
    """
    names = [name for name, _ in model.named_children()]
    if layer not in names:
        raise ValueError(
            f"split_sequential needs the name of a direct child of the model; {layer!r} is not "
            f"one of {names}."
        )
    cut = names.index(layer) + 1
    children = list(model.named_children())
    trunk = nn.Sequential(OrderedDict(children[:cut]))
    rest = nn.Sequential(OrderedDict(children[cut:]))
    return trunk, rest


def check_split(model, trunk, rest, x, *, atol=1e-5):
    """Raise ``ValueError`` unless ``rest(trunk(x))`` matches ``model(x)`` within ``atol``.

    The networks run in eval mode under ``torch.no_grad``; their submodules' ``training``
    flags are restored afterwards and their buffers are left untouched.
    """
    advice = "build the trunk and the rest of the network by hand."
    with evaluating(model, trunk, rest), torch.no_grad():
        full = model(x)
        try:
            parts = rest(trunk(x))
        except RuntimeError as exc:  # e.g. a flatten inside forward, not a child module
            raise ValueError(
                f"rest(trunk(x)) fails where model(x) runs ({exc}): the model's forward "
                f"does more than run its children in order; {advice}"
            ) from exc
    if full.shape != parts.shape or not torch.allclose(full, parts, atol=atol, rtol=1e-4):
        raise ValueError(
            "rest(trunk(x)) differs from model(x): the model's forward does not run its "
            f"children in order; {advice}"
        )
