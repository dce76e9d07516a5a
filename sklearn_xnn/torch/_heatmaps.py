"""Per-x-feature heatmaps on the input: (contrastive) Excitation Backprop, Grad-CAM, grad x input.

Excitation Backprop (Zhang et al., 2016) passes a "marginal winning probability" top-down:
through a layer ``y = f(a, W)`` with non-negative inputs ``a`` it becomes

    p_in = a * f*(W+, p_out / f(a, W+))          W+ = max(W, 0), no bias

where ``f*`` is the layer's ordinary backward (vector-Jacobian product). Linear and
convolution layers use ``W+``; average pooling has non-negative weights already; batch
normalisation passes the signal through unchanged; ReLU and max pooling keep their
ordinary gradient, which routes the signal to the active units and to the pooling winner.
The sum of two activations (a residual connection) is a unit with two unit weights: the
signal is split between the terms in proportion to their positive parts, so the map's
total stays at most 1 on residual networks too (the ordinary gradient would copy it to
both branches and double it at every block). Other layers, and operations not done by a
module, keep their ordinary gradient.

The gradient methods keep, by default, only the excitatory (positive) part of the
gradient, the evidence Excitation Backprop follows too: Grad-CAM weighs each channel by
its positive gradients only (the ReLU of Grad-CAM++), and gradient x input
backpropagates through ReLU modules by the guided-backprop rule (a negative gradient is
stopped). Their textbook forms (``positive_gradients=False``) give the local net effect
on the x-feature instead, which is not where an x-feature's evidence lies when the
x-feature is large because something is *absent* (e.g. an x-feature shared by two
classes and inhibited by the others' textures: the image parts that raise it are the
ones that do not look like those textures, and its gradient there points at background
or at an uninformative patch).
"""

import contextlib

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sklearn_xnn.torch import _captum
from sklearn_xnn.torch._extract import Pool, _check_batch_size, get_layer
from sklearn_xnn.torch._modes import evaluating

# The default of xfeature_heatmaps, the report and the command line comes first.
HEATMAP_METHODS = (
    "excitation_backprop",
    "contrastive_excitation_backprop",
    "grad_cam",
    "gradient_input",
)

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_AVG_POOL = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)


class _ExcitationRule(torch.autograd.Function):
    """Identity on the layer's output forward; the excitation rule backward."""

    @staticmethod
    def forward(ctx, inp, out, positive_forward):
        ctx.positive_forward = positive_forward
        ctx.save_for_backward(inp)
        return out.clone()

    @staticmethod
    def backward(ctx, p_out):
        (inp,) = ctx.saved_tensors
        with torch.enable_grad():
            a = inp.detach().clamp(min=0).requires_grad_(True)
            z = ctx.positive_forward(a)
            scaled = torch.where(z > 0, p_out / z.clamp(min=torch.finfo(z.dtype).tiny), 0.0)
            (g,) = torch.autograd.grad(z, a, scaled)
        return g * a.detach(), None, None


class _GuidedReLU(torch.autograd.Function):
    """Identity on a ReLU's output forward; backward passes positive gradients at active units."""

    @staticmethod
    def forward(ctx, inp, out):
        ctx.save_for_backward(out > 0)
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        (active,) = ctx.saved_tensors
        return grad.clamp(min=0) * active, None


@contextlib.contextmanager
def _guided_relus(model):
    """Within this context, ReLU modules of ``model`` backpropagate by guided backprop."""

    def hook(module, inputs, output):
        if not (inputs and torch.is_tensor(inputs[0]) and inputs[0].requires_grad):
            return None
        return _GuidedReLU.apply(inputs[0], output.detach())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


class _PassThrough(torch.autograd.Function):
    """Identity forward; the signal passes back unchanged (batch norm under EB)."""

    @staticmethod
    def forward(ctx, inp, out):
        return out.clone()

    @staticmethod
    def backward(ctx, p_out):
        return p_out, None


def _positive_forward(module):
    if isinstance(module, nn.Linear):
        return lambda a: F.linear(a, module.weight.clamp(min=0))
    if isinstance(module, _CONV):
        return lambda a: module._conv_forward(a, module.weight.clamp(min=0), None)
    if isinstance(module, _AVG_POOL) or (isinstance(module, Pool) and module.pooling == "avg"):
        return module.forward  # bypasses the hooks: no recursion
    return None


class _SumRule(torch.autograd.Function):
    """``a + b`` forward (in place with ``inplace``); backward splits by ``a+`` and ``b+``."""

    @staticmethod
    def forward(ctx, a, b, inplace):
        ctx.save_for_backward(a.detach().clamp(min=0), b.detach().clamp(min=0))
        if not inplace:
            return a + b
        ctx.mark_dirty(a)
        return a.add_(b)

    @staticmethod
    def backward(ctx, p_out):
        a, b = ctx.saved_tensors
        total = a + b
        scaled = torch.where(total > 0, p_out / total.clamp(min=torch.finfo(a.dtype).tiny), 0.0)
        return scaled * a, scaled * b, None


# ``a + b`` and ``torch.add`` arrive as ``add``, ``a += b`` as ``add_``.
_ADDS = {torch.add: False, torch.Tensor.add: False, torch.Tensor.add_: True}


class _ActivationSums(torch.overrides.TorchFunctionMode):
    """Route ``a + b`` (``+=`` included) of two same-shape activations through the sum rule.

    Activations are tensors computed in the autograd graph (``grad_fn`` set): a residual
    connection's ``out += identity`` qualifies, a parameter (a leaf) or a broadcast does
    not. Forward values are those of the plain sum, in place where the sum was.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _ADDS and len(args) == 2 and not kwargs and _both_activations(*args):
            return _SumRule.apply(*args, _ADDS[func])
        return func(*args, **kwargs)


def _both_activations(a, b):
    return (
        torch.is_tensor(a)
        and torch.is_tensor(b)
        and a.shape == b.shape
        and a.grad_fn is not None
        and b.grad_fn is not None
    )


@contextlib.contextmanager
def excitation_rules(model):
    """Within this context, backward passes through ``model`` follow Excitation Backprop.

    Forward hooks replace each supported layer's output by an identical tensor whose
    backward is the excitation rule (see the module docstring), and the sum of two
    activations of the same shape (a residual connection's ``out += identity``, done
    outside any module) splits the signal between its terms in proportion to their
    positive parts, the rule of a unit with two unit weights, instead of copying it to
    both. Nothing global is patched (the sums are caught by a torch function mode that
    lives as long as the context) and the model's parameters are untouched.

    Parameters
    ----------
    model : torch.nn.Module
        The network (all its submodules get the rules).
    """
    handles = []

    def make_hook(fn):
        def hook(module, inputs, output):
            if not (inputs and torch.is_tensor(inputs[0]) and inputs[0].requires_grad):
                return None
            if fn is None:
                return _PassThrough.apply(inputs[0], output.detach())
            return _ExcitationRule.apply(inputs[0], output.detach(), fn)

        return hook

    try:
        for module in model.modules():
            fn = _positive_forward(module)
            if fn is None and not isinstance(module, nn.modules.batchnorm._BatchNorm):
                continue
            handles.append(module.register_forward_hook(make_hook(fn)))
        with _ActivationSums():
            yield model
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _capture(module):
    """Record ``module``'s (final, after other hooks) output during forward passes."""
    store = []
    handle = module.register_forward_hook(lambda m, i, o: store.append(o))
    try:
        yield store
    finally:
        handle.remove()


def _top_signal(z, w):
    """Winning probability of the activations ``z`` under a linear unit with weights ``w``.

    ``p_j = z_j w+_j / sum_j' z_j' w+_j'`` for each row (the unit's probability is 1).
    """
    z = z.detach().clamp(min=0)
    share = z * w.clamp(min=0)
    total = share.sum(1, keepdim=True)
    return torch.where(total > 0, share / total.clamp(min=torch.finfo(z.dtype).tiny), 0.0)


def _local_weights(explainer, z, k):
    """Weights of the linear unit that the ReLU encoder is at ``z`` for x-feature ``k``.

    The encoder is piecewise linear: at each input, ``x_k = w(z) . z + b(z)`` with
    ``w(z) = d x_k / d z`` (rows are independent, so one backward gives every row's).
    """
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        (w,) = torch.autograd.grad(explainer.encode(zz)[:, k].sum(), zz)
    return w


_RESIZE_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _to_input_size(maps, size):
    """Sum over channels and resize (bi/tri)linearly to the input's spatial size."""
    maps = maps.sum(1, keepdim=True)
    if maps.shape[2:] == size:
        return maps[:, 0]
    n_axes = maps.ndim - 2
    if n_axes != len(size) or n_axes not in _RESIZE_MODES:
        raise ValueError(
            f"A map of shape {tuple(maps.shape[2:])} cannot be resized to the input's "
            f"{tuple(size)}: maps read on a layer need its output to keep the input's 1 to 3 "
            "spatial axes; choose such a layer (or layer=None where the method allows it)."
        )
    maps = F.interpolate(maps, size=size, mode=_RESIZE_MODES[n_axes], align_corners=False)
    return maps[:, 0]


def _captured(store, layer):
    """The output recorded on ``layer`` before the cut, or a ``ValueError`` saying it never ran."""
    if not store:
        raise ValueError(
            f"Layer {layer!r} does not run before the explained layer, so no map can be read "
            "on it: name a layer of the trunk that runs before the explained layer."
        )
    return store[-1]


def _layer_before_the_cut(network, x, layer):
    """The module named ``layer``, checked on one input to run before the explained layer."""
    module = get_layer(network, layer)
    with torch.no_grad(), _capture(module) as store:
        network.activations(x[:1])
    _captured(store, layer)
    return module


def _excitation_maps(network, x, components, layer, contrastive):
    """EB, or c-EB: the signed difference of the target's and the dual's top signals."""
    saliency = None if layer is None else get_layer(network, layer)
    maps = []
    with (
        excitation_rules(network.trunk),
        _capture(saliency) if saliency is not None else contextlib.nullcontext() as store,
    ):
        z = network.activations(x)
        target = x if store is None else _captured(store, layer)
        for k in components:
            w = _local_weights(network.explainer, z, k)
            top = _top_signal(z, w)
            if contrastive:  # EB is linear in its top signal: one pass gives the difference
                top = top - _top_signal(z, -w)
            (g,) = torch.autograd.grad(z, target, top, retain_graph=True)
            maps.append(_to_input_size(g, x.shape[2:]))
    return maps


def _spatial_size(output):
    """Number of spatial positions of a module output (0 when it has no spatial axes)."""
    if not torch.is_tensor(output) or output.ndim < 3:
        return 0
    return int(np.prod(output.shape[2:]))


def _last_spatial_layer(network, x, required=True):
    """The last trunk module run whose output has more than one spatial position."""
    order = []
    leaves = [m for m in network.trunk.modules() if not list(m.children())]
    handles = [
        m.register_forward_hook(lambda mod, i, o: order.append((mod, _spatial_size(o))))
        for m in leaves
    ]
    try:
        with torch.no_grad():
            network.activations(x[:1])
    finally:
        for h in handles:
            h.remove()
    spatial = [m for m, size in order if size > 1]
    if not spatial and not required:
        return None
    if not spatial:
        raise ValueError("grad_cam needs a layer with spatial output in the trunk; none was found.")
    return spatial[-1]


def _gradient_maps(network, x, components, layer, method, positive):
    """Hand-written Grad-CAM and gradient x input (the fallbacks of the textbook forms)."""
    maps = []
    if method == "grad_cam":
        module = _last_spatial_layer(network, x) if layer is None else get_layer(network, layer)
        with _capture(module) as store:
            feats = network.xfeatures(x)
        acts = _captured(store, layer if layer is not None else module)
        for k in components:
            (g,) = torch.autograd.grad(feats[:, k].sum(), acts, retain_graph=True)
            if positive:
                g = g.clamp(min=0)
            alpha = g.mean(tuple(range(2, g.ndim)), keepdim=True)
            maps.append(_to_input_size(F.relu((alpha * acts).sum(1, keepdim=True)), x.shape[2:]))
        return maps
    with _guided_relus(network.trunk) if positive else contextlib.nullcontext():
        feats = network.xfeatures(x)
        for k in components:
            (g,) = torch.autograd.grad(feats[:, k].sum(), x, retain_graph=True)
            maps.append(_to_input_size(g * x.detach(), x.shape[2:]))
    return maps


def _check_method(method, layer, attribute_kwargs):
    """Raise ``ValueError`` on a method this function cannot run with these arguments."""
    if isinstance(method, str) and method in HEATMAP_METHODS:
        if method == "gradient_input" and layer is not None:
            raise ValueError("method='gradient_input' works on the input; leave layer=None.")
        if attribute_kwargs:
            raise ValueError("attribute_kwargs is only used with a captum method.")
        return
    if _captum.is_captum_method(method):
        _captum.check_method(method, layer)
        return
    hint = "" if _captum.captum_attr() is not None else " (captum is not installed)"
    raise ValueError(
        f"method must be one of {HEATMAP_METHODS} or a captum.attr attribution method "
        f"(class or instance){hint}, got {method!r}."
    )


def _batch_maps(network, x, components, method, layer, positive, attribute_kwargs, built):
    """Maps of one batch; ``built`` caches the captum instance across batches."""
    if isinstance(method, str) and method.endswith("excitation_backprop"):
        contrastive = method.startswith("contrastive")
        return _excitation_maps(network, x, components, layer, contrastive)
    if isinstance(method, str):
        cls = _captum.equivalent(method, positive)
        if cls is None:
            return _gradient_maps(network, x, components, layer, method, positive)
        attribute_kwargs = {"relu_attributions": True} if method == "grad_cam" else {}
        method = cls
    if isinstance(method, type):
        if "instance" not in built:
            module = None
            if _captum.takes_layer(method):
                module = (
                    _last_spatial_layer(network, x)
                    if layer is None
                    else _layer_before_the_cut(network, x, layer)
                )
            built["instance"] = _captum.build(method, network.xfeature_module(), module)
        method = built["instance"]
    return [
        _to_input_size(a, x.shape[2:])
        for a in _captum.attributions(method, x, components, attribute_kwargs)
    ]


def xfeature_heatmaps(
    network,
    images,
    components=None,
    *,
    method="excitation_backprop",
    layer=None,
    positive_gradients=True,
    attribute_kwargs=None,
    batch_size=64,
):
    """Where in each input the evidence for each x-feature lies.

    The network runs in eval mode whatever mode it is in (batch normalisation on its
    running statistics, its buffers untouched, dropout off), as
    :class:`ExplainedNetwork` always runs it; every submodule's ``training`` flag is
    restored afterwards, also when an error is raised. Gradients are enabled for the
    call, also under ``torch.no_grad()`` or ``torch.inference_mode()`` (images made in
    inference mode are cloned; a network built there raises ``RuntimeError``).

    Parameters
    ----------
    network : ExplainedNetwork
        The network up to the explained layer followed by the explainer's encoder.
    images : tensor or ndarray of shape (n_samples, n_channels, height, width)
        Inputs, at least one. Signals (``(n, channels, length)``) and volumes
        (``(n, channels, depth, height, width)``) work too: maps read on a layer are
        resized linearly, bilinearly or trilinearly; maps read on the input (Excitation
        Backprop with ``layer=None``, gradient x input) need no resizing and take any
        number of spatial axes.
    components : int, sequence of int or None, default=None
        Which x-features (indices, not bools); None means all of them.
    method : str, captum attribution class or instance, default="excitation_backprop"
        One of :data:`HEATMAP_METHODS`:

        - ``"excitation_backprop"``: the marginal winning probability of Zhang et al.
          (2016), started from the x-feature's unit (see the module docstring). The map
          is a probability distribution over the input (it sums to at most 1, residual
          connections included; read at a coarser ``layer`` and upsampled, times the
          upsampling factor) and is positive wherever an excitatory path reaches.
        - ``"contrastive_excitation_backprop"``: the same minus the map of the dual unit
          (the x-feature's local weights on the explained layer negated), as in the
          paper. EB is linear in its top signal, so the two top signals are subtracted
          on the explained layer, the signed difference is propagated in one pass and
          only the final map is clipped at zero: the map is positive where the
          x-feature's excitatory channels draw more of their evidence than its
          inhibitory ones. On an average-pooled layer (a ResNet's ``layer4``) the two
          signals sit on disjoint channels, so a difference clipped there would drop the
          dual and equal EB exactly; propagated first, the two maps overlap and largely
          cancel (on a random-weight ResNet-18 c-EB keeps 30-50% of the pixels, EB all
          of them). Where the inhibitory units also look at the object (similar classes)
          the contrast removes evidence from it: on the patch images of the test suite
          it points into the patch on 65-77% of the images, EB on 90-100% (seeds 0-3),
          hence EB is the default.
        - ``"grad_cam"``: Grad-CAM of the x-feature on ``layer`` (default: the trunk's
          last layer with spatial output), upsampled (bi)linearly. With
          ``positive_gradients`` (the default) each channel's weight is the spatial mean
          of the *positive part* of the x-feature's gradient, the ReLU that Grad-CAM++
          (Chattopadhay et al., 2018) puts on the gradients, with Grad-CAM's uniform
          mean over positions; otherwise the textbook mean of the gradient, computed by
          captum's ``LayerGradCam`` when captum is installed.
        - ``"gradient_input"``: gradient of the x-feature times the input. With
          ``positive_gradients`` (the default) the gradient is the guided-backprop one
          (Springenberg et al., 2015): every ReLU module of the trunk, the explained
          layer's included, passes back only positive gradients, so the map follows
          the x-feature's excitatory inputs (the positive part of its local linear
          unit on the explained layer, where Excitation Backprop starts too);
          otherwise the plain gradient, computed by captum's ``InputXGradient`` when
          captum is installed.

        Or a captum attribution method (``pip install sklearn-xnn[captum]``), applied to
        the x-features with ``target`` the x-feature's index: a class such as
        ``captum.attr.IntegratedGradients``, ``GuidedBackprop`` or ``LayerGradCam``, built
        on ``network.xfeature_module()`` (a layer method gets ``layer``, by default the
        trunk's last layer with spatial output), or an instance built by the caller on
        ``network.xfeature_module()`` or ``network.xfeatures``. Layer attributions are
        summed over channels and upsampled (bi)linearly.
    layer : str, optional
        For the Excitation Backprop methods, the layer (name in ``network``, e.g.
        ``"trunk.model.conv1"``) where the map is read and then upsampled; None reads it
        on the input pixels. For ``"grad_cam"`` and captum layer classes, the layer the
        map is computed on. It must run before the explained layer (``ValueError``
        otherwise).
    positive_gradients : bool, default=True
        For ``"grad_cam"`` and ``"gradient_input"``: keep only the excitatory (positive)
        part of the gradients, as described under ``method``. False gives the textbook
        methods, whose maps show the local *net* effect on the x-feature: an x-feature
        raised by the absence of some pattern (inhibited where the pattern is) can then
        point away from the evidence that the excitatory maps find. Captum methods are
        applied as they are.
    attribute_kwargs : dict, optional
        Extra arguments of a captum method's ``attribute`` (e.g. ``n_steps`` and
        ``baselines`` for ``IntegratedGradients``).
    batch_size : int, default=64
        Inputs per backward pass.

    Returns
    -------
    heatmaps : ndarray of shape (n_samples, n_selected, height, width)
        On the input's spatial axes, whatever their number; summed over channels; the
        positive part is the evidence for the x-feature (Grad-CAM is non-negative by
        construction, the others are clipped at zero).

    Notes
    -----
    Where captum computes exactly what a method here does (textbook Grad-CAM and
    gradient x input, ``positive_gradients=False``), captum's implementation is used when
    it is installed and the hand-written one, which gives the same maps, otherwise.
    Captum has no Excitation Backprop, and neither the positive-gradient Grad-CAM nor
    gradient x input with guided backprop through the trunk only (captum's
    ``GuidedBackprop`` also guides the explainer's own ReLUs and does not multiply by the
    input), so those stay hand-written.

    References
    ----------
    J. Zhang, Z. Lin, J. Brandt, X. Shen, S. Sclaroff. "Top-down Neural Attention by
    Excitation Backprop". ECCV 2016. R. Selvaraju et al. "Grad-CAM". ICCV 2017.
    A. Chattopadhay, A. Sarkar, P. Howlader, V. Balasubramanian. "Grad-CAM++". WACV 2018.
    J. T. Springenberg, A. Dosovitskiy, T. Brox, M. Riedmiller. "Striving for Simplicity:
    The All Convolutional Net". ICLR workshop 2015 (guided backprop).

    Examples
    --------
    >>> import torch
    >>> from sklearn_xnn import SRAEExplainer
    >>> from sklearn_xnn.torch import ExplainedNetwork, extract_activations, xfeature_heatmaps
    >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.Flatten(), torch.nn.Linear(256, 3))
    >>> images = torch.rand(40, 1, 8, 8)
    >>> Z, logits = extract_activations(cnn, "1", images, pooling="flatten", device="cpu")
    >>> xnn = SRAEExplainer(2, hidden_layer_sizes=(8,), max_iter=2, pretrain=1,
    ...                     device="cpu", random_state=0).fit(Z, logits)
    >>> net = ExplainedNetwork(cnn, xnn, layer="1", pooling="flatten")
    >>> xfeature_heatmaps(net, images[:5], method="grad_cam").shape
    (5, 2, 8, 8)
    """
    _check_method(method, layer, attribute_kwargs)
    if not hasattr(network, "explainer") or not hasattr(network, "trunk"):
        raise TypeError(
            f"network must be an ExplainedNetwork (the network and its explainer), got "
            f"{type(network).__name__}: build one with ExplainedNetwork(model, explainer, "
            "layer=...)."
        )
    components = _check_components(components, network.explainer.feature_layer.out_features)
    batch_size = _check_batch_size(batch_size)
    param = next(iter(network.parameters()))
    images = torch.as_tensor(images)
    if images.ndim < 3:
        raise ValueError(f"images must have shape (n, channels, ...), got {tuple(images.shape)}.")
    if images.shape[0] == 0:
        raise ValueError("images holds no input (shape (0, ...)); pass at least one.")
    if any(p.is_inference() for p in network.parameters()):
        raise RuntimeError(
            "The network's parameters were created under torch.inference_mode(), which "
            "no gradient can pass: build the model and the ExplainedNetwork outside it."
        )
    out, built, kwargs = [], {}, dict(attribute_kwargs or {})
    # gradients are this function's own: on under torch.no_grad, and out of inference
    # mode, whose images are cloned into ordinary tensors
    with evaluating(network), torch.inference_mode(False), torch.enable_grad():
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(param.device, param.dtype)
            x = x.detach().clone().requires_grad_(True)
            args = (components, method, layer, bool(positive_gradients), kwargs, built)
            maps = _batch_maps(network, x, *args)
            out.append(torch.stack(maps, 1).clamp(min=0).detach().cpu())
    return torch.cat(out).double().numpy()


def _check_components(components, k_total):
    """``components`` as a list of x-feature indices, or a TypeError / ValueError."""
    if components is None:
        return list(range(k_total))
    indices = np.asarray(components)
    if indices.ndim == 1 and indices.size == 0:
        raise ValueError("components is empty; pass None for every x-feature.")
    if indices.dtype.kind not in "iu" or indices.ndim > 1:
        raise TypeError(
            "components must be None, an int or a sequence of ints (x-feature indices), "
            f"got {components!r}."
        )
    indices = [int(k) for k in np.atleast_1d(indices)]
    if any(k < 0 or k >= k_total for k in indices):
        raise ValueError(f"components must lie in [0, {k_total}), got {indices}.")
    return indices
