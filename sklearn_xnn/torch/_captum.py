"""captum's attribution methods applied to x-features (captum is an optional dependency)."""

import inspect


def captum_attr():
    """``captum.attr``, or None when captum is not installed."""
    try:
        from captum import attr
    except ImportError:
        return None
    return attr


def is_captum_method(method):
    """Whether ``method`` is a captum attribution class or instance."""
    attr = captum_attr()
    if attr is None or isinstance(method, str):
        return False
    if isinstance(method, type):
        return issubclass(method, attr.Attribution)
    return isinstance(method, attr.Attribution)


def equivalent(method, positive):
    """The captum class computing exactly what a hand-written method does, or None.

    Only the textbook forms (``positive=False``) of Grad-CAM and gradient x input have one.
    """
    attr = captum_attr()
    if attr is None or positive:
        return None
    return {"grad_cam": attr.LayerGradCam, "gradient_input": attr.InputXGradient}.get(method)


def check_method(method, layer):
    """Raise ``ValueError`` for a captum method that cannot attribute an x-feature."""
    attr = captum_attr()
    is_class = isinstance(method, type)
    if not is_class and layer is not None:
        raise ValueError("A captum instance carries its own layer; leave layer=None.")
    if (
        issubclass(method, attr.NeuronAttribution)
        if is_class
        else isinstance(method, attr.NeuronAttribution)
    ):
        name = method.__name__ if is_class else type(method).__name__
        raise ValueError(
            f"{name} attributes one neuron of a layer, not an x-feature; use a method "
            "whose attribute() takes a target."
        )
    if is_class:
        _constructor_arguments(method, layer is not None)


def _constructor_arguments(cls, layer_given):
    """The ``__init__`` parameters after the model; raise for the ones that cannot be filled."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if not params or params[0].name not in ("forward_func", "model"):
        first = params[0].name if params else "arguments"
        raise ValueError(
            f"{cls.__name__} needs {first!r} to be built; pass an instance built on "
            "network.xfeature_module() instead of the class."
        )
    rest = params[1:]
    for p in rest:
        required = p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        if required and p.name != "layer":
            raise ValueError(
                f"{cls.__name__} needs {p.name!r} to be built; pass an instance built on "
                "network.xfeature_module() instead of the class."
            )
    if layer_given and not any(p.name == "layer" for p in rest):
        raise ValueError(f"{cls.__name__} attributes to the input; leave layer=None.")
    return rest


def takes_layer(cls):
    """Whether the captum class is built on a layer (``LayerGradCam``, ...)."""
    return any(p.name == "layer" for p in _constructor_arguments(cls, False))


def build(cls, module, layer=None):
    """``cls`` built on ``module`` (the x-feature output), with ``layer`` when it takes one."""
    return cls(module, layer) if takes_layer(cls) else cls(module)


def attributions(attribution, x, components, attribute_kwargs):
    """One attribution tensor per x-feature, ``target`` = the x-feature's index."""
    out = []
    for k in components:
        a = attribution.attribute(x, target=k, **attribute_kwargs)
        a = a[0] if isinstance(a, tuple) else a
        if a.ndim < 3:
            raise ValueError(
                f"{type(attribution).__name__} gave attributions of shape {tuple(a.shape)}, "
                "without spatial axes; attribute to the input or to a spatial layer."
            )
        out.append(a.detach())
    return out
