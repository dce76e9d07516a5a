"""captum's attribution methods as ``xfeature_heatmaps`` methods, on the x-feature outputs."""

import copy

import numpy as np
import pytest
import torch
from _torch_nets import buffers, make_resnet, training_flags

from sklearn_xnn.torch import (
    ExplainedNetwork,
    extract_activations,
    split_sequential,
    xfeature_heatmaps,
)
from sklearn_xnn.torch._heatmaps import _gradient_maps
from tests.conftest import fit_quiet

attr = pytest.importorskip(
    "captum.attr", reason="captum is not installed (pip install sklearn-xnn[captum])"
)


@pytest.fixture(scope="module")
def captum_setup():
    """A two-stage ResNet (BatchNorm, in-place ReLUs, dropout) on 16x16 images, an SRAE."""
    model = make_resnet(0, n_classes=4, width=8, in_channels=1, stem=False, blocks=(1, 1))
    model.eval()
    images = torch.rand(40, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    Z, y = extract_activations(model, "layer2", images, device="cpu")
    xnn = fit_quiet(Z, y, n_components=3, device="cpu")
    net = ExplainedNetwork(model, xnn, layer="layer2")
    return net, images[:5]


def _direct(attribution, x, k, **kwargs):
    """captum called by hand on x-feature ``k``, summed over channels, clipped at zero."""
    a = attribution.attribute(x, target=k, **kwargs).detach()
    if a.shape[2:] != x.shape[2:]:
        a = torch.nn.functional.interpolate(a, size=x.shape[2:], mode="bilinear")
    return a.sum(1).clamp(min=0).double().numpy()


@pytest.mark.parametrize(
    "name, kwargs",
    [("IntegratedGradients", {"n_steps": 16}), ("GuidedBackprop", {}), ("LayerGradCam", {})],
)
def test_captum_classes_match_captum_by_hand(captum_setup, name, kwargs):
    net, x = captum_setup
    cls = getattr(attr, name)
    maps = xfeature_heatmaps(net, x, method=cls, attribute_kwargs=kwargs)
    assert maps.shape == (5, 3, 16, 16)
    assert np.all(maps >= 0) and maps.max() > 0
    if name == "LayerGradCam":  # the default layer: the trunk's last spatial one
        by_hand = cls(net.xfeature_module(), net.trunk.model.layer2[0].relu)
    else:
        by_hand = cls(net.xfeature_module())
    for k in range(3):
        # the same captum computation, batch for batch
        np.testing.assert_allclose(
            maps[:, k], _direct(by_hand, x, k, **kwargs), rtol=1e-5, atol=1e-7
        )


def test_captum_instances_and_layers(captum_setup):
    net, x = captum_setup
    ig = attr.IntegratedGradients(net.xfeatures)
    as_instance = xfeature_heatmaps(net, x, [0, 2], method=ig, attribute_kwargs={"n_steps": 8})
    as_class = xfeature_heatmaps(
        net, x, [0, 2], method=attr.IntegratedGradients, attribute_kwargs={"n_steps": 8}
    )
    np.testing.assert_allclose(as_instance, as_class, rtol=1e-5, atol=1e-7)
    smooth = attr.NoiseTunnel(attr.Saliency(net.xfeature_module()))
    kwargs = {"nt_type": "smoothgrad", "nt_samples": 4, "stdevs": 0.1}
    with torch.random.fork_rng(devices=[]):  # NoiseTunnel draws from the global generator
        torch.manual_seed(0)
        noisy = xfeature_heatmaps(net, x, 1, method=smooth, attribute_kwargs=kwargs)
    assert noisy.shape == (5, 1, 16, 16)
    cam = xfeature_heatmaps(net, x, 1, method=attr.LayerGradCam, layer="trunk.model.layer1")
    assert cam.shape == (5, 1, 16, 16)  # a 16x16 layer: no upsampling needed
    assert all(not m._forward_hooks and not m._backward_hooks for m in net.modules())


@pytest.mark.parametrize("method", ["grad_cam", "gradient_input"])
def test_textbook_methods_use_captum_and_match_the_fallback(captum_setup, method):
    """With captum installed the textbook forms are captum's; the hand-written ones agree."""
    net, x = captum_setup
    maps = xfeature_heatmaps(net, x, method=method, positive_gradients=False)
    xx = x.clone().requires_grad_(True)
    fallback = _gradient_maps(net, xx, [0, 1, 2], None, method, False)
    fallback = torch.stack(fallback, 1).clamp(min=0).detach().double().numpy()
    np.testing.assert_allclose(maps, fallback, rtol=1e-5, atol=1e-7)


def test_captum_leaves_a_train_mode_model_untouched(captum_setup):
    net, x = captum_setup
    model = copy.deepcopy(net.trunk.model).train()
    before, flags = buffers(model), training_flags(model)
    train_net = ExplainedNetwork(model, net.explainer, layer="layer2")
    maps = xfeature_heatmaps(train_net, x, method=attr.GuidedBackprop)
    expected = xfeature_heatmaps(net, x, method=attr.GuidedBackprop)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)
    assert all(torch.equal(b, before[n]) for n, b in buffers(model).items())
    assert training_flags(model) == flags


def test_captum_errors(captum_setup):
    net, x = captum_setup
    with pytest.raises(ValueError, match="method must be one of"):
        xfeature_heatmaps(net, x, method=torch.nn.ReLU)
    with pytest.raises(ValueError, match="method must be one of"):
        xfeature_heatmaps(net, x, method=object())
    with pytest.raises(ValueError, match="attributes one neuron"):
        xfeature_heatmaps(net, x, method=attr.NeuronGradient)
    with pytest.raises(ValueError, match="needs 'attribution_method'"):
        xfeature_heatmaps(net, x, method=attr.NoiseTunnel)
    with pytest.raises(ValueError, match="carries its own layer"):
        xfeature_heatmaps(net, x, method=attr.Saliency(net.xfeatures), layer="trunk.model.layer1")
    with pytest.raises(ValueError, match="attributes to the input; leave layer=None"):
        xfeature_heatmaps(net, x, method=attr.Saliency, layer="trunk.model.layer1")
    with pytest.raises(ValueError, match="only used with a captum method"):
        xfeature_heatmaps(net, x, method="grad_cam", attribute_kwargs={"n_steps": 4})
    with pytest.raises(ValueError, match="without spatial axes"):
        xfeature_heatmaps(net, x, method=attr.LayerGradCam, layer="trunk.pool")


def test_captum_layer_after_the_cut_is_refused(captum_setup):
    net, x = captum_setup
    with pytest.raises(ValueError, match=r"'trunk.model.fc' does not run before the explained"):
        xfeature_heatmaps(net, x, method=attr.LayerGradCam, layer="trunk.model.fc")
    with pytest.raises(ValueError, match=r"'trunk.model.fc' does not run before the explained"):
        xfeature_heatmaps(
            net, x, method="grad_cam", positive_gradients=False, layer="trunk.model.fc"
        )


@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks:UserWarning")
def test_relu_at_the_cut_runs_once_for_deeplift():
    """A network cut by ``layer=`` at a ReLU is the network cut by ``split_sequential``:
    the ReLU gets captum's hooks once, so DeepLift accepts it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
        cnn.extend([torch.nn.Linear(144, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)])
    images = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    Z, y = extract_activations(cnn, "4", images, device="cpu")
    xnn = fit_quiet(Z, y, device="cpu")
    cut = ExplainedNetwork(cnn, xnn, layer="4")
    maps = xfeature_heatmaps(cut, images[:3], method=attr.DeepLift)
    split = ExplainedNetwork(split_sequential(cnn, "4")[0], xnn)
    expected = xfeature_heatmaps(split, images[:3], method=attr.DeepLift)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)
    assert maps.max() > 0
