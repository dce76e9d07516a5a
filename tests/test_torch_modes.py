"""sklearn_xnn.torch runs a network left in train mode for inference and leaves it as it was;
the explainer part keeps the explainer's precision and one registration of each layer."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from _torch_nets import buffers, make_resnet, training_flags
from torch import nn

from sklearn_xnn import SRAEExplainer, SRAEExplainerCV
from sklearn_xnn.torch import (
    HEATMAP_METHODS,
    ExplainedNetwork,
    TruncatedNetwork,
    check_split,
    explainer_module,
    extract_activations,
    reconstruction_faithfulness,
    split_sequential,
    xfeature_heatmaps,
)
from sklearn_xnn.torch._modes import evaluating
from tests.conftest import fit_quiet


def _in_train_mode(model):
    """Train mode, except ``layer1`` frozen in eval mode (a mixed state to restore)."""
    model.train()
    model.layer1.eval()
    return model


@pytest.fixture(scope="module")
def trained_state():
    """A ResNet with BatchNorm and dropout, running statistics moved off their init, an SRAE."""
    model = make_resnet(0, n_classes=5, width=8, blocks=(1, 1, 1))
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(40, 3, 32, 32, generator=gen)
    with torch.no_grad():  # a few train-mode passes: running statistics off (0, 1)
        model.train()
        for _ in range(3):
            model(torch.rand(16, 3, 32, 32, generator=gen) * 2)
    reference = copy.deepcopy(model).eval()
    Z, y = extract_activations(reference, "layer3", images, device="cpu")
    xnn = fit_quiet(Z, y, n_components=3, device="cpu")
    return model, reference, images, Z, y, xnn


@pytest.fixture
def setup(trained_state):
    model, reference, images, Z, y, xnn = trained_state
    model = _in_train_mode(copy.deepcopy(model))
    return model, reference, images, Z, y, xnn, buffers(model), training_flags(model)


def _assert_untouched(model, before_buffers, before_flags):
    after = buffers(model)
    assert after.keys() == before_buffers.keys()
    for name, b in before_buffers.items():
        assert torch.equal(after[name], b), name  # bitwise
    assert training_flags(model) == before_flags
    assert all(not m._forward_hooks for m in model.modules())


def test_extract_activations_in_train_mode(setup):
    model, _, images, Z, y, _, bufs, flags = setup
    Z_train, y_train = extract_activations(model, "layer3", images, batch_size=16, device="cpu")
    # same float32 arithmetic as the eval-mode copy, batch size aside
    np.testing.assert_allclose(Z_train, Z, rtol=0, atol=1e-5)
    np.testing.assert_allclose(y_train, y, rtol=0, atol=1e-5)
    _assert_untouched(model, bufs, flags)


def test_explained_network_in_train_mode(setup):
    model, _, images, Z, _, xnn, bufs, flags = setup
    net = ExplainedNetwork(model, xnn, layer="layer3")
    net.train()  # the wrapper's own mode does not matter either
    flags = training_flags(model)
    x = images.clone().requires_grad_(True)
    feats = net.xfeatures(x)
    # float32 network and encoder vs transform (float32 activations, float64 arithmetic)
    np.testing.assert_allclose(feats.detach().numpy(), xnn.transform(Z), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net(x).detach().numpy(), xnn.predict(Z), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        net.contributions(x).detach().numpy(), xnn.contributions(Z), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(net.activations(x).detach().numpy(), Z, rtol=0, atol=1e-5)
    # row-wise: one image alone gets its row of the batch (batch statistics would not)
    alone = net.xfeatures(images[7:8]).detach().numpy()
    np.testing.assert_allclose(alone, feats[7:8].detach().numpy(), rtol=1e-5, atol=1e-6)
    feats.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    _assert_untouched(model, bufs, flags)
    assert net.training


@pytest.mark.parametrize("method", HEATMAP_METHODS)
def test_heatmaps_in_train_mode(setup, method):
    model, reference, images, _, _, xnn, bufs, flags = setup
    maps = xfeature_heatmaps(
        ExplainedNetwork(model, xnn, layer="layer3"), images[:6], method=method
    )
    expected = xfeature_heatmaps(
        ExplainedNetwork(reference, xnn, layer="layer3"), images[:6], method=method
    )
    # identical arithmetic: the train-mode model is run as its eval-mode copy
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)
    assert maps.max() > 0
    _assert_untouched(model, bufs, flags)


def test_modes_restored_when_the_network_raises(setup):
    model, _, images, _, _, xnn, bufs, flags = setup
    net = ExplainedNetwork(model, xnn, layer="layer3")
    with pytest.raises(RuntimeError, match="channels"):
        net.xfeatures(images[:, :2])  # 2 channels for a 3-channel stem
    _assert_untouched(model, bufs, flags)
    with pytest.raises(RuntimeError, match="channels"):
        xfeature_heatmaps(net, images[:2, :2], method="excitation_backprop")
    _assert_untouched(model, bufs, flags)
    with pytest.raises(RuntimeError, match="channels"):
        extract_activations(model, "layer3", images[:, :2], device="cpu")
    _assert_untouched(model, bufs, flags)


def test_evaluating_restores_each_flag_and_nests(setup):
    model, _, _, _, _, _, _, flags = setup
    with evaluating(model):
        with evaluating(model.layer2, model):  # shared submodules, nested use
            assert not any(m.training for m in model.modules())
        assert not any(m.training for m in model.modules())
    assert training_flags(model) == flags
    with pytest.raises(KeyError, match="boom"), evaluating(model):
        raise KeyError("boom")
    assert training_flags(model) == flags


def test_cut_split_and_faithfulness_in_train_mode(setup):
    model, reference, images, Z, _, xnn, bufs, flags = setup
    with torch.no_grad():
        cut = TruncatedNetwork(model, "layer3")(images)
    np.testing.assert_allclose(cut.numpy(), Z, rtol=0, atol=1e-5)
    _assert_untouched(model, bufs, flags)

    seq = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5))
    seq.append(nn.Linear(8, 3))
    seq.train()
    seq_bufs, seq_flags = buffers(seq), training_flags(seq)
    trunk, rest = split_sequential(seq, "2")
    check_split(seq, trunk, rest, torch.rand(10, 6))  # dropout would break the match
    _assert_untouched(seq, seq_bufs, seq_flags)

    head = nn.Sequential(nn.Linear(Z.shape[1], 8), nn.BatchNorm1d(8), nn.Dropout(0.5))
    head.append(nn.Linear(8, 2))
    head.train()
    head_bufs, head_flags = buffers(head), training_flags(head)
    first = reconstruction_faithfulness(xnn, head, Z)
    again = reconstruction_faithfulness(xnn, head, Z)
    assert first == again  # deterministic: dropout off
    _assert_untouched(head, head_bufs, head_flags)


@pytest.fixture(scope="module")
def small_cnn():
    """A CNN whose explained layer "4" is a ReLU, its images and an SRAE of that layer."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 16))
        cnn.extend([nn.ReLU(), nn.Linear(16, 3)])
    images = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    Z, y = extract_activations(cnn, "4", images, device="cpu")
    return cnn, images, Z, y, fit_quiet(Z, y, device="cpu")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_network_gets_a_float32_explainer(small_cnn, dtype):
    cnn, images, _, _, xnn = small_cnn
    half = copy.deepcopy(cnn).to(dtype)
    Z = extract_activations(half, "4", images, device="cpu", return_logits=False)
    assert Z.dtype == np.float32
    net = ExplainedNetwork(half, xnn, layer="4")
    assert net.explainer.feature_layer.weight.dtype == torch.float32
    feats = net.xfeatures(images)
    assert feats.dtype == torch.float32
    # the same half-precision activations, float32 encoder vs float64 transform
    # (measured: 1e-2 in bfloat16, 1e-3 in float16 with the encoder in the trunk's dtype)
    np.testing.assert_allclose(feats.detach().numpy(), xnn.transform(Z), rtol=0, atol=1e-5)
    np.testing.assert_allclose(net(images).detach().numpy(), xnn.predict(Z), rtol=0, atol=1e-5)
    # an explainer module passed in keeps the dtype it was built in
    asked = ExplainedNetwork(half, explainer_module(xnn, dtype=dtype), layer="4")
    assert asked.xfeatures(images).dtype == dtype
    double = ExplainedNetwork(copy.deepcopy(cnn).double(), xnn, layer="4")
    assert double.explainer.feature_layer.weight.dtype == torch.float64


@pytest.mark.parametrize("y_1d", [False, True])
def test_explainer_module_takes_one_unbatched_row(small_cnn, y_1d):
    _, _, Z, y, _ = small_cnn
    module = explainer_module(fit_quiet(Z, y[:, 0] if y_1d else y, device="cpu"))
    z = torch.as_tensor(Z[:5])
    for method in (module.encode, module.forward, module.contributions):
        batch = method(z)
        row = method(z[2])  # as nn.Linear: unbatched in, unbatched out
        assert row.shape == batch.shape[1:]
        torch.testing.assert_close(row, batch[2], rtol=1e-6, atol=1e-6)


def test_explainer_module_of_a_fitted_search(small_cnn):
    cnn, images, Z, y, _ = small_cnn
    base = SRAEExplainer(2, hidden_layer_sizes=(8,), max_iter=2, device="cpu", random_state=0)
    grid = {"alpha_pullaway": [0.1, 0.2]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = SRAEExplainerCV(base, grid, cv=2).fit(Z, y)
        no_refit = SRAEExplainerCV(base, grid, cv=2, refit=False).fit(Z, y)
    Z64 = Z.astype(np.float64)  # float64 module and transform: the same arithmetic
    x = explainer_module(search, dtype=torch.float64).encode(torch.as_tensor(Z64)).numpy()
    np.testing.assert_allclose(x, search.transform(Z64), rtol=1e-9, atol=1e-9)
    net = ExplainedNetwork(cnn, search, layer="4")
    np.testing.assert_allclose(
        net.xfeatures(images).detach().numpy(), search.transform(Z), rtol=1e-5, atol=1e-5
    )
    for build in (lambda: explainer_module(no_refit), lambda: ExplainedNetwork(cnn, no_refit)):
        with pytest.raises(ValueError, match="fitted with refit=False.*refit=True"):
            build()


def test_truncated_network_registers_the_layer_once(small_cnn):
    cnn, images, _, _, xnn = small_cnn
    net = ExplainedNetwork(cnn, xnn, layer="4")
    assert net.trunk.layer is cnn[4]
    names = [n for n, m in net.named_modules(remove_duplicate=False) if m is cnn[4]]
    assert names == ["trunk.model.4"]
    cut = TruncatedNetwork(cnn, "3")  # a layer with weights
    state = cut.state_dict()
    assert list(state) == ["model." + k for k in cnn.state_dict()]  # no "layer." copies
    assert len({t.data_ptr() for t in state.values()}) == len(state)  # nothing shared
    # a state dict saved when the layer was registered twice still loads strictly
    old = {**state, "layer.weight": state["model.3.weight"], "layer.bias": state["model.3.bias"]}
    TruncatedNetwork(copy.deepcopy(cnn), "3").load_state_dict(old)
    # copies keep the layer inside their own model; one pickled with "layer" registered too
    for copied in (copy.deepcopy(cut), pickle.loads(pickle.dumps(cut))):
        assert copied.layer is copied.model[3]
        torch.testing.assert_close(copied(images), cut(images), rtol=0, atol=0)
    legacy = dict(cut.__dict__, _modules={**cut._modules, "layer": cut.layer})
    del legacy["_layer"]
    restored = pickle.loads(pickle.dumps(cut))
    restored.__setstate__(pickle.loads(pickle.dumps(legacy)))
    assert "layer" not in restored._modules and restored.layer is restored.model[3]


@pytest.mark.skipif(
    not hasattr(torch.compiler, "is_exporting"), reason="torch.export needs torch >= 2.5"
)
def test_export_of_a_network_cut_by_layer(small_cnn):
    cnn, images, _, _, xnn = small_cnn
    x = images[:4]
    for module in (ExplainedNetwork(cnn, xnn, layer="4"), TruncatedNetwork(cnn, "4")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(module, (x,))
        torch.testing.assert_close(exported.module()(x), module(x), rtol=0, atol=1e-6)
