"""sklearn_xnn.torch: activation extraction, the network cut, the explainer as a module."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from torch import nn

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets._patches import PatchCNN
from sklearn_xnn.torch import (
    ExplainedNetwork,
    TruncatedNetwork,
    check_split,
    explainer_module,
    extract_activations,
    reconstruction_faithfulness,
    split_sequential,
)
from tests.conftest import fit_quiet


@pytest.fixture(scope="module")
def cnn_and_images():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PatchCNN(image_size=8, n_classes=3).eval()
    images = np.random.default_rng(0).random((37, 1, 8, 8)).astype(np.float32)
    return model, images


def manual_relu2(model, x):
    return model.relu2(model.conv2(model.relu1(model.conv1(x))))


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
def test_conv_layer_matches_manual_forward(cnn_and_images, pooling):
    model, images = cnn_and_images
    Z, logits = extract_activations(
        model, "relu2", images, pooling=pooling, batch_size=10, device="cpu"
    )
    with torch.no_grad():
        x = torch.as_tensor(images)
        maps = manual_relu2(model, x)
        expected = {
            "avg": maps.mean((2, 3)),
            "max": maps.amax((2, 3)),
            "flatten": maps.flatten(1),
        }[pooling]
        expected_logits = model(x)
    np.testing.assert_allclose(Z, expected.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(logits, expected_logits.numpy(), rtol=0, atol=1e-6)


def test_dataloader_and_numpy_inputs_agree(cnn_and_images):
    model, images = cnn_and_images
    x = torch.as_tensor(images)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.zeros(len(x))), batch_size=8
    )
    Z1, y1 = extract_activations(model, "relu_fc1", loader, device="cpu", progress=True)
    Z2, y2 = extract_activations(model, "relu_fc1", images.astype(np.float64), device="cpu")
    with torch.no_grad():
        manual = model.relu_fc1(model.fc1(model.flatten(model.pool(manual_relu2(model, x)))))
    np.testing.assert_allclose(Z1, manual.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(Z1, Z2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y1, y2, rtol=0, atol=1e-6)


def test_model_state_is_restored_and_hooks_removed(cnn_and_images):
    model, images = cnn_and_images
    model.train()
    try:
        extract_activations(model, "relu2", images, device="cpu")
        assert model.training
        assert all(not m._forward_hooks for m in model.modules())
    finally:
        model.eval()


def test_extraction_errors(cnn_and_images):
    model, images = cnn_and_images
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        extract_activations(model, "conv9", images, device="cpu")
    with pytest.raises(ValueError, match="pooling must be one of"):
        extract_activations(model, "relu2", images, pooling="median", device="cpu")
    with pytest.raises(TypeError, match="data must be a tensor"):
        extract_activations(model, "relu2", 3.0, device="cpu")
    with pytest.raises(TypeError, match="data must be a tensor"):
        extract_activations(model, "relu2", "images.npy", device="cpu")
    with pytest.raises(TypeError, match="data must hold numbers, got .* dtype <U"):
        extract_activations(model, "relu2", np.array(["a", "b"]), device="cpu")

    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(RuntimeError, match="was not called"):
        extract_activations(Skips(), "unused", np.ones((3, 2)), device="cpu")


def test_truncated_network_and_split(cnn_and_images):
    model, images = cnn_and_images
    x = torch.as_tensor(images)
    Z = extract_activations(model, "relu_fc1", images, device="cpu", return_logits=False)
    with torch.no_grad():
        cut = TruncatedNetwork(model, "relu_fc1")(x)
        trunk, rest = split_sequential(model, "relu_fc1")
        np.testing.assert_allclose(cut.numpy(), Z, rtol=0, atol=1e-6)
        np.testing.assert_allclose(trunk(x).numpy(), Z, rtol=0, atol=1e-6)
    check_split(model, trunk, rest, x)
    with pytest.raises(ValueError, match="direct child"):
        split_sequential(model, "fc1.weight")


def test_check_split_names_a_forward_that_does_more_than_run_its_children():
    class Net(nn.Module):  # flattens inside forward: the children alone cannot be chained
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(2 * 16, 3)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))

    net = Net()
    trunk, rest = split_sequential(net, "fc")
    with pytest.raises(ValueError, match=r"rest\(trunk\(x\)\) fails where model\(x\) runs"):
        check_split(net, trunk, rest, torch.randn(5, 1, 4, 4))


@pytest.fixture(scope="module")
def fitted_srae():
    rng = np.random.default_rng(0)
    Z = rng.random((120, 12))
    y = Z[:, :3] @ rng.normal(size=(3, 4)) + 0.1 * rng.normal(size=(120, 4))
    srae = fit_quiet(Z, y, n_components=3, device="cpu")
    return srae, Z, y


def test_explainer_module_matches_numpy(fitted_srae):
    srae, Z, _ = fitted_srae
    m64 = explainer_module(srae, dtype=torch.float64)
    z = torch.as_tensor(Z)
    with torch.no_grad():
        # float64 module vs the float64 numpy inference: same arithmetic, ~1e-12
        np.testing.assert_allclose(m64.encode(z).numpy(), srae.transform(Z), rtol=0, atol=1e-10)
        np.testing.assert_allclose(m64(z).numpy(), srae.predict(Z), rtol=0, atol=1e-10)
        np.testing.assert_allclose(
            m64.contributions(z).numpy(), srae.contributions(Z), rtol=0, atol=1e-10
        )
        # float32 module: float32 rounding through 3 layers, relative 1e-5
        out32 = explainer_module(srae)(z.float()).numpy()
    np.testing.assert_allclose(out32, srae.predict(Z), rtol=1e-5, atol=1e-5)
    assert not any(p.requires_grad for p in m64.parameters())


def test_explainer_module_1d_target_and_unsupervised():
    rng = np.random.default_rng(1)
    Z = rng.random((80, 6))
    kw = dict(hidden_layer_sizes=(8,), max_iter=2, pretrain=1, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = SRAEExplainer(2, random_state=0, **kw).fit(Z, Z[:, 0])
        none = SRAEExplainer(2, random_state=0, **kw).fit(Z)
    m = explainer_module(one, dtype=torch.float64)
    out = m(torch.as_tensor(Z)).detach().numpy()
    assert out.shape == (80,)
    np.testing.assert_allclose(out, one.predict(Z), rtol=0, atol=1e-10)
    m0 = explainer_module(none, dtype=torch.float64)
    assert m0.encode(torch.as_tensor(Z)).shape == (80, 2)
    with pytest.raises(RuntimeError, match="without y"):
        m0(torch.as_tensor(Z))


def test_explained_network_equals_transform_of_extracted(cnn_and_images):
    model, images = cnn_and_images
    Z, _ = extract_activations(model, "relu_fc1", images, device="cpu")
    Z = Z.astype(np.float64)
    y = Z @ np.random.default_rng(0).normal(size=(Z.shape[1], 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        srae = SRAEExplainer(
            3,
            hidden_layer_sizes=(16,),
            max_iter=3,
            pretrain=1,
            device="cpu",
            random_state=0,
        ).fit(Z, y)
    net = ExplainedNetwork(model, srae, layer="relu_fc1")
    x = torch.as_tensor(images).requires_grad_(True)
    # float32 CNN + float32 explainer vs float64 numpy on float32 activations
    np.testing.assert_allclose(
        net.xfeatures(x).detach().numpy(), srae.transform(Z), rtol=1e-4, atol=1e-5
    )
    out = net(x)
    np.testing.assert_allclose(out.detach().numpy(), srae.predict(Z), rtol=1e-4, atol=1e-4)
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    # a trunk cut at another layer gives rows of another width: said, not a shape error
    wrong = ExplainedNetwork(model, srae, layer="relu1")
    with pytest.raises(ValueError, match=r"activations per input, but the explainer was fitted on"):
        wrong.xfeatures(x)


def test_reconstruction_faithfulness(fitted_srae):
    srae, Z, _ = fitted_srae
    head = nn.Linear(12, 4, dtype=torch.float64)
    scores = reconstruction_faithfulness(PCA(12).fit(Z), head, Z)
    assert scores["reconstruction_faithfulness_r2"] == pytest.approx(1.0, abs=1e-9)
    assert scores["reconstruction_top1_agreement"] == 1.0
    srae_scores = reconstruction_faithfulness(srae, head, Z)
    assert set(srae_scores) == set(scores)
    assert srae_scores["reconstruction_faithfulness_r2"] <= 1.0
    as_callable = reconstruction_faithfulness(
        srae, lambda a: head(torch.as_tensor(a)).detach().numpy(), Z
    )
    assert as_callable == pytest.approx(srae_scores, abs=1e-12)
    with pytest.raises(ValueError, match="head_network gives"):
        reconstruction_faithfulness(srae, head, Z, np.zeros((len(Z), 2)))


class _SharedReLU(nn.Module):
    """One ``self.relu`` called twice per forward pass, as in torchvision's ResNet blocks."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(5, 7), nn.Linear(7, 7), nn.Linear(7, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))


def test_layer_called_twice_gives_its_first_call_everywhere():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _SharedReLU().eval()
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(60, 5)), dtype=torch.float32)
    with pytest.warns(UserWarning, match="runs 2 times per forward pass.*first call"):
        Z, logits = extract_activations(model, "relu", x, batch_size=16, device="cpu")
    with torch.no_grad():
        first = model.relu(model.fc1(x)).numpy()
        cut = TruncatedNetwork(model, "relu")(x).numpy()
    np.testing.assert_allclose(Z, first, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cut, Z, rtol=0, atol=1e-6)
    srae = fit_quiet(Z.astype(np.float64), logits.astype(np.float64), n_components=2, device="cpu")
    net = ExplainedNetwork(model, srae, layer="relu")
    np.testing.assert_allclose(
        net.xfeatures(x).detach().numpy(), srae.transform(Z), rtol=1e-4, atol=1e-5
    )
    # a module that runs once is read without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extract_activations(model, "fc2", x, device="cpu")


def test_unbatched_samples_and_xy_pairs_are_refused():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    rng = np.random.default_rng(0)
    samples = [torch.as_tensor(rng.normal(size=4), dtype=torch.float32) for _ in range(5)]
    with pytest.raises(ValueError, match=r"output of layer '1' has shape \(8,\).*batches \(n, "):
        extract_activations(model, "1", samples, device="cpu")
    with pytest.raises(ValueError, match=r"output of layer '1' has shape \(8,\)"):
        extract_activations(model, "1", samples, device="cpu", return_logits=False)
    X, y = rng.normal(size=(10, 4)).astype(np.float32), rng.integers(0, 4, 10).astype(np.float32)
    with pytest.raises(ValueError, match=r"batch 1 has shape \(10,\).*not an \(X, y\) pair"):
        extract_activations(model, "1", (X, y), device="cpu")
    # a model whose output is not one row per input is refused too
    with pytest.raises(ValueError, match="model's output has shape"):
        extract_activations(nn.Sequential(nn.Linear(4, 8), nn.Flatten(0)), "0", X, device="cpu")
    # batches of inputs, from a list or a DataLoader, are read as before
    Z = extract_activations(model, "1", [X[:6], X[6:]], device="cpu", return_logits=False)
    assert Z.shape == (10, 8)


def test_batch_size_must_be_a_positive_integer(cnn_and_images):
    model, images = cnn_and_images
    Z = extract_activations(model, "relu2", images, batch_size=np.int64(8), device="cpu")[0]
    np.testing.assert_allclose(
        Z, extract_activations(model, "relu2", images, device="cpu")[0], rtol=0, atol=1e-6
    )
    for bad in (True, 2.0, "8"):
        with pytest.raises(TypeError, match="batch_size must be a positive int"):
            extract_activations(model, "relu2", images, batch_size=bad, device="cpu")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        extract_activations(model, "relu2", images, batch_size=0, device="cpu")


class _LookAlike(BaseEstimator):
    """An explainer's public fitted attributes and ``predict``, nothing private."""

    def __init__(self, srae):
        names = ["encoder_coefs_", "encoder_intercepts_", "coef_", "intercept_"]
        for name in [*names, "n_features_in_", "feature_names_in_"]:
            setattr(self, name, getattr(srae, name))
        self.predict = srae.predict

    def fit(self, X, y=None):
        return self


def test_explainer_module_of_a_data_frame_fit_warns_nothing():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    Z = pd.DataFrame(rng.random((60, 6)), columns=[f"unit{i}" for i in range(6)])
    for y in (rng.random((60, 3)), rng.random(60)):
        srae = fit_quiet(Z, y, n_components=2, device="cpu")
        look_alike = _LookAlike(srae)  # asked through predict, on a bare array
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            modules = [explainer_module(srae), explainer_module(look_alike)]
            ExplainedNetwork(nn.Sequential(nn.Linear(6, 6)), srae)
        assert [m.output_1d for m in modules] == [y.ndim == 1] * 2


def test_contributions_of_a_1d_target_have_the_explainers_shape():
    rng = np.random.default_rng(1)
    Z = rng.random((50, 6))
    srae = fit_quiet(Z, Z @ rng.normal(size=6), n_components=2, device="cpu")
    m = explainer_module(srae, dtype=torch.float64)
    with torch.no_grad():
        S = m.contributions(torch.as_tensor(Z)).numpy()
        S_net = ExplainedNetwork(nn.Identity(), m).contributions(torch.as_tensor(Z)).numpy()
    assert S.shape == S_net.shape == srae.contributions(Z).shape == (50, 2)
    np.testing.assert_allclose(S, srae.contributions(Z), rtol=0, atol=1e-10)
    np.testing.assert_allclose(S.sum(1) + srae.intercept_, srae.predict(Z), rtol=0, atol=1e-10)


def test_explained_network_casts_float64_inputs(cnn_and_images):
    model, images = cnn_and_images
    images64 = images.astype(np.float64)
    Z = extract_activations(model, "relu_fc1", images64, device="cpu", return_logits=False)
    y = Z.astype(np.float64) @ np.random.default_rng(0).normal(size=(Z.shape[1], 3))
    srae = fit_quiet(Z.astype(np.float64), y, n_components=3, device="cpu")
    net = ExplainedNetwork(model, srae, layer="relu_fc1")
    x = torch.as_tensor(images64).requires_grad_(True)
    feats = net.xfeatures(x)
    assert feats.dtype == torch.float32
    np.testing.assert_allclose(feats.detach().numpy(), srae.transform(Z), rtol=1e-4, atol=1e-5)
    net(x).sum().backward()  # the cast is differentiable: the gradient reaches the input
    assert x.grad is not None and x.grad.dtype == torch.float64
    np.testing.assert_allclose(
        net.xfeatures(images64).detach().numpy(), feats.detach().numpy(), rtol=0, atol=0
    )


def test_a_model_with_one_output_per_row_may_answer_1d():
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1), torch.nn.Flatten(0)
    )
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    Z, y = extract_activations(model, "1", x)
    assert Z.shape == (10, 8) and y.shape == (10, 1)
    np.testing.assert_allclose(y[:, 0], model(x).detach().numpy(), rtol=1e-6)


def test_a_layer_rewritten_in_place_later_is_read_as_it_left_the_layer():
    class Block(nn.Module):  # torchvision's BasicBlock: bn2, then out += identity, relu_
        def __init__(self):
            super().__init__()
            self.conv, self.bn2, self.relu = (
                nn.Conv2d(4, 4, 3, padding=1),
                nn.BatchNorm2d(4),
                nn.ReLU(inplace=True),
            )

        def forward(self, x):
            out = self.bn2(self.conv(x))
            out += x
            return self.relu(out)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Block(), nn.Flatten(), nn.Linear(4 * 36, 5))
    net.eval()
    x = torch.randn(20, 3, 6, 6)
    Z, _ = extract_activations(net, "1.bn2", x, pooling="flatten", device="cpu")
    with torch.no_grad():
        block = net[1]
        expected = block.bn2(block.conv(net[0](x))).flatten(1).numpy()
    np.testing.assert_array_equal(Z, expected)  # not relu(bn2 + identity)
    np.testing.assert_array_equal(Z, TruncatedNetwork(net, "1.bn2", "flatten")(x).detach().numpy())
    relu_after = nn.Sequential(nn.Linear(6, 8), nn.ReLU(inplace=True), nn.Linear(8, 2)).eval()
    x = torch.randn(30, 6)
    with torch.no_grad():
        np.testing.assert_array_equal(
            extract_activations(relu_after, "0", x, device="cpu")[0], relu_after[0](x).numpy()
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_give_float32_rows(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).to(dtype).eval()
    x = torch.randn(10, 6)
    Z, logits = extract_activations(net, "1", x, device="cpu")
    assert Z.dtype == logits.dtype == np.float32
    with torch.no_grad():
        np.testing.assert_array_equal(logits, net(x.to(dtype)).float().numpy())


def test_a_float64_explainer_module_explains_a_float32_network():
    from sklearn_xnn.torch import xfeature_heatmaps

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(6, 4),
    ).eval()  # fmt: skip
    x = torch.randn(200, 1, 8, 8)
    Z, y = extract_activations(net, "1", x, device="cpu")
    xnn = fit_quiet(Z, y, n_components=3)
    network = ExplainedNetwork(net, explainer_module(xnn, dtype=torch.float64), layer="1")
    rebuilt = network(x).detach()
    assert rebuilt.dtype == torch.float64
    np.testing.assert_allclose(rebuilt.numpy(), xnn.predict(Z.astype(np.float64)), atol=1e-10)
    maps = xfeature_heatmaps(network, x[:2])
    assert maps.shape[:2] == (2, 3) and np.isfinite(np.asarray(maps)).all()


def test_dict_batches_and_a_plain_model_given_to_heatmaps_are_named():
    from sklearn_xnn.torch import xfeature_heatmaps

    net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    batches = [{"x": torch.randn(5, 8)} for _ in range(2)]
    with pytest.raises(TypeError, match=r"data yields dicts \(keys \['x'\]\)"):
        extract_activations(net, "1", batches, device="cpu")
    with pytest.raises(TypeError, match="network must be an ExplainedNetwork .* got Sequential"):
        xfeature_heatmaps(net, torch.randn(2, 1, 8))


class _ImageAndMetadata(nn.Module):
    """A multimodal net: one linear layer per input, concatenated, then a hidden layer."""

    def __init__(self):
        super().__init__()
        self.image, self.metadata = nn.Linear(12, 4), nn.Linear(3, 2)
        self.hidden, self.relu, self.out = nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)

    def forward(self, image, metadata):
        h = torch.cat([self.image(image.flatten(1)), self.metadata(metadata)], 1)
        return self.out(self.relu(self.hidden(h)))


def _hooked(model, layer, *inputs):
    """The output of ``layer`` and of ``model`` on ``inputs``, read by hand with a hook."""
    seen = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    try:
        with torch.no_grad():
            out = model(*inputs)
    finally:
        handle.remove()
    return seen[0].numpy(), out.numpy()


def test_a_two_input_model_reads_its_inputs_from_a_tuple_or_a_dataloader():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _ImageAndMetadata().eval()
    rng = np.random.default_rng(0)
    images, metadata = rng.random((23, 1, 3, 4)), rng.random((23, 3)).astype(np.float32)
    x, m = torch.as_tensor(images, dtype=torch.float32), torch.as_tensor(metadata)
    expected, expected_logits = _hooked(model, model.relu, x, m)
    # float64 images are cast to the network's float32, as for a single input
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, m, torch.zeros(23)), batch_size=5
    )
    for data in ((images, metadata), [x, m], loader, [(x[:10], m[:10]), (x[10:], m[10:])]):
        Z, logits = extract_activations(model, "relu", data, n_inputs=2, batch_size=7, device="cpu")
        np.testing.assert_allclose(Z, expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(logits, expected_logits, rtol=0, atol=1e-6)


def test_a_text_model_keeps_its_integer_token_ids():
    class Text(nn.Module):  # forward(input_ids, attention_mask), as a transformer's
        def __init__(self):
            super().__init__()
            self.embed, self.fc, self.out = nn.Embedding(20, 4), nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, input_ids, attention_mask):
            mask = attention_mask.unsqueeze(-1).float()
            mean = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
            return self.out(torch.tanh(self.fc(mean)))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Text().eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (9, 5), generator=g)
    mask = torch.ones(9, 5, dtype=torch.long).tril(1)  # rows of 2 to 5 tokens
    Z = extract_activations(model, "fc", (ids, mask), n_inputs=2, device="cpu")[0]
    np.testing.assert_allclose(Z, _hooked(model, model.fc, ids, mask)[0], rtol=0, atol=1e-6)


def test_a_model_taking_other_inputs_than_given_says_how_to_pass_them():
    model = _ImageAndMetadata().eval()
    rng = np.random.default_rng(0)
    images, metadata = rng.random((8, 1, 3, 4)), rng.random((8, 3))
    two = (
        r"_ImageAndMetadata\.forward\(image, metadata\) cannot be called with 1 input tensor "
        r"\(n_inputs=1\).*It takes 2 inputs: pass n_inputs=2 and data as a tuple "
        r"\(image, metadata\)"
    )
    with pytest.raises(TypeError, match=two):
        extract_activations(model, "relu", images, device="cpu")
    x, m = torch.as_tensor(images), torch.as_tensor(metadata)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, m, torch.zeros(8)))
    with pytest.raises(TypeError, match=two):  # (image, metadata, y): the image alone is input
        extract_activations(model, "relu", loader, device="cpu")
    one = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    pairs = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(m, torch.zeros(8)))
    with pytest.raises(TypeError, match=r"with 2 input tensors .*It takes 1 input: pass n_inpu"):
        extract_activations(one, "1", pairs, n_inputs=2, device="cpu")

    class Raises(nn.Module):  # a TypeError from inside forward is not about its inputs
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            raise TypeError(f"unsupported operand inside forward: {self.fc(x).shape}")

    with pytest.raises(TypeError, match=r"^unsupported operand inside forward: torch.Size"):
        extract_activations(Raises(), "fc", metadata, device="cpu")


def test_n_inputs_and_data_must_agree():
    model = _ImageAndMetadata()
    rng = np.random.default_rng(0)
    images, metadata = rng.random((8, 1, 3, 4)), rng.random((8, 3))
    with pytest.raises(ValueError, match=r"data holds 1 array\(s\) for n_inputs=2"):
        extract_activations(model, "relu", images, n_inputs=2, device="cpu")
    with pytest.raises(ValueError, match=r"data holds 3 array\(s\) for n_inputs=2"):
        extract_activations(model, "relu", (images, metadata, metadata), n_inputs=2, device="cpu")
    with pytest.raises(ValueError, match=r"shapes \(8, 1, 3, 4\) and \(7, 3\): every input"):
        extract_activations(model, "relu", (images, metadata[:7]), n_inputs=2, device="cpu")
    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.as_tensor(images)))
    with pytest.raises(ValueError, match="tuples of at least n_inputs=2 tensors.*batch 0 holds 1"):
        extract_activations(model, "relu", batches, n_inputs=2, device="cpu")
    with pytest.raises(ValueError, match="n_inputs must be a positive int, got 0"):
        extract_activations(model, "relu", images, n_inputs=0, device="cpu")
