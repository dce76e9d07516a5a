"""Bad input, bad parameters and training faults: a clear error, or a correct result."""

import logging
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._nn import init, training
from sklearn_xnn.exceptions import TrainingDivergedError
from sklearn_xnn.metrics import faithfulness_r2
from tests.conftest import TINY


def tiny(**kw):
    return SRAEExplainer(**{**TINY, "random_state": 0, **kw})


def fit_quiet(est, X, y=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    return np.abs(rng.randn(40, 6)), rng.randn(40)


@pytest.fixture(scope="module")
def fitted(data):
    return fit_quiet(tiny(), *data)


def with_value(a, value):
    a = a.copy()
    a.flat[0] = value
    return a


# ------------------------------------------------------------------ non-finite data
@pytest.mark.parametrize(
    "value, msg", [(np.nan, "Input X contains NaN"), (np.inf, "Input X contains infinity")]
)
def test_non_finite_X(data, fitted, value, msg):
    Z, y = data
    with pytest.raises(ValueError, match=msg):
        tiny().fit(with_value(Z, value), y)
    with pytest.raises(ValueError, match=msg):
        fitted.transform(with_value(Z, value))
    with pytest.raises(ValueError, match=msg):
        fitted.predict(with_value(Z, value))


@pytest.mark.parametrize(
    "value, msg", [(np.nan, "Input y contains NaN"), (-np.inf, "Input y contains infinity")]
)
def test_non_finite_y(data, value, msg):
    Z, y = data
    with pytest.raises(ValueError, match=msg):
        tiny().fit(Z, with_value(y, value))


def test_non_finite_inverse_transform(fitted):
    with pytest.raises(ValueError, match="Input contains NaN"):
        fitted.inverse_transform(np.array([[np.nan, 1.0]]))


# ------------------------------------------------------------------ shapes
def test_1d_and_3d_X(data, fitted):
    Z, y = data
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        tiny().fit(Z[:, 0], y)
    with pytest.raises(ValueError, match="Reshape your data"):
        fitted.transform(Z[0])
    with pytest.raises(ValueError, match="Found array with dim 3"):
        tiny().fit(Z.reshape(40, 2, 3), y)
    with pytest.raises(ValueError, match="Found array with dim 3"):
        fitted.transform(Z.reshape(40, 2, 3))


def test_3d_y(data):
    Z, y = data
    with pytest.raises(ValueError, match=r"y must have shape \(n_samples,\) or"):
        tiny().fit(Z, y.reshape(40, 1, 1))


def test_empty_X(data, fitted):
    Z, y = data
    with pytest.raises(ValueError, match=r"0 sample\(s\) .* minimum of 2 is required"):
        tiny().fit(Z[:0], y[:0])
    with pytest.raises(ValueError, match=r"0 feature\(s\) .* minimum of 1 is required"):
        tiny().fit(Z[:, :0], y)
    with pytest.raises(ValueError, match=r"0 sample\(s\) .* minimum of 1 is required"):
        fitted.transform(Z[:0])


def test_one_sample_refused_two_samples_work(data):
    Z, y = data
    with pytest.raises(ValueError, match=r"1 sample\(s\) .* minimum of 2 is required"):
        tiny().fit(Z[:1], y[:1])
    est = fit_quiet(tiny(), Z[:2], y[:2])
    assert np.isfinite(est.predict(Z)).all()


def test_batch_larger_than_data_is_clipped(data):
    Z, y = data
    est = fit_quiet(tiny(batch_size=1000), Z, y)
    assert est.transform(Z).shape == (40, 2)


def test_too_few_samples_for_validation_split(data):
    Z, y = data
    with pytest.raises(ValueError, match="early_stopping .* needs at least 2 training rows"):
        tiny(early_stopping=True).fit(Z[:2], y[:2])
    est = fit_quiet(tiny(early_stopping=True), Z[:3], y[:3])  # 2 train + 1 validation
    assert len(est.validation_scores_) == est.n_iter_


def test_mismatched_lengths(data):
    Z, y = data
    with pytest.raises(ValueError, match="inconsistent numbers of samples: \\[40, 30\\]"):
        tiny().fit(Z, y[:30])


def test_wrong_feature_count_at_transform(data, fitted):
    Z, _ = data
    with pytest.raises(ValueError, match="X has 5 features, but SRAEExplainer is expecting 6"):
        fitted.transform(Z[:, :5])
    with pytest.raises(ValueError, match="X has 7 features"):
        fitted.predict(np.c_[Z, Z[:, 0]])


def test_wrong_component_count_at_inverse_transform(fitted):
    with pytest.raises(ValueError, match="inverse_transform expects 2 x-features per row"):
        fitted.inverse_transform(np.ones((3, 3)))
    with pytest.raises(ValueError, match="Expected 2D array"):
        fitted.inverse_transform(np.ones(2))


# ------------------------------------------------------------------ dtypes and containers
def test_string_data(data, fitted):
    Z, y = data
    with pytest.raises(ValueError, match="X has a string dtype; .* np.asarray"):
        tiny().fit(Z.astype(str), y)
    with pytest.raises(ValueError, match="X has a string dtype"):
        fitted.transform(Z.astype(str))
    with pytest.raises(ValueError, match="y has a string dtype; .* not class labels"):
        tiny().fit(Z, np.array(["cat", "dog"] * 20))
    labels = np.arange(len(Z)) % 3  # class labels passed where the logits go
    with pytest.warns(UserWarning, match="y is one column of integers: it looks like class lab"):
        fit_quiet(tiny(), Z, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit_quiet(tiny(), Z, labels.astype(float))  # a numeric output: said nothing


def test_pandas_series_of_extension_dtypes(data):
    pd = pytest.importorskip("pandas")
    Z, y = data
    v = np.round(np.reshape(y, (len(Z), -1))[:, 0] * 10)
    for dtype in ("Float64", "Int64", "category"):
        est = fit_quiet(tiny(), Z, pd.Series(v, dtype=dtype))
        np.testing.assert_allclose(est.predict(Z), fit_quiet(tiny(), Z, v).predict(Z))
    labels = ["cat", "dog"] * (len(Z) // 2)
    with pytest.raises(ValueError, match="y has a string dtype; .* not class labels"):
        tiny().fit(Z, pd.Series(labels, dtype="string"))
    with pytest.raises(ValueError, match="Non-numeric values in X or y"):
        tiny().fit(Z, pd.Series(labels, dtype=object))


def test_object_data(data, fitted):
    Z, y = data
    est = fit_quiet(tiny(), Z.astype(object), y)  # numeric objects: converted to float64
    assert est.transform(Z.astype(object)).dtype == np.float64
    mixed = Z.astype(object)
    mixed[3, 2] = "n/a"
    with pytest.raises(ValueError, match="Non-numeric values in X or y: could not convert"):
        tiny().fit(mixed, y)
    with pytest.raises(ValueError, match="Non-numeric values in X: could not convert"):
        fitted.transform(mixed)
    with pytest.raises(ValueError, match="Non-numeric values in X or y"):
        tiny().fit(Z, np.array(["1.0", "x"] * 20, dtype=object))


def test_complex_data(data, fitted):
    Z, y = data
    with pytest.raises(ValueError, match="Complex data not supported: X .* X.real"):
        tiny().fit(Z.astype(complex), y)
    with pytest.raises(ValueError, match="Complex data not supported: y"):
        tiny().fit(Z, y.astype(complex))
    with pytest.raises(ValueError, match="Complex data not supported: X"):
        fitted.transform(Z + 0j)
    with pytest.raises(ValueError, match="Complex data not supported: X"):
        fitted.inverse_transform(np.ones((2, 2)) + 0j)


def test_sparse_is_refused_with_toarray_hint(data, fitted):
    Z, y = data
    with pytest.raises(TypeError, match=r"Sparse data was passed .* '\.toarray\(\)'"):
        tiny().fit(sp.csr_matrix(Z), y)
    with pytest.raises(TypeError, match=r"Sparse data was passed .* '\.toarray\(\)'"):
        fitted.transform(sp.csr_matrix(Z))
    with pytest.raises(TypeError, match=r"y is a scipy sparse matrix.*y\.toarray\(\)"):
        tiny().fit(Z, sp.csr_matrix(y[:, None]))


def test_pandas_frames(data):
    pd = pytest.importorskip("pandas")
    Z, y = data
    frame = pd.DataFrame(Z, columns=list("abcdef"))
    est = fit_quiet(tiny(), frame, pd.Series(y))
    np.testing.assert_allclose(est.transform(frame), est.transform(Z), rtol=0, atol=1e-12)
    assert list(est.feature_names_in_) == list("abcdef")
    with pytest.raises(ValueError, match="feature names should match"):
        est.transform(frame.rename(columns={"f": "g"}))
    with pytest.raises(ValueError, match="Complex data not supported"):
        est.transform(frame.astype(complex))


@pytest.mark.parametrize(
    "dtype, out",
    [
        (np.int64, np.float64),
        (np.int32, np.float64),
        (np.uint8, np.float64),
        (bool, np.float64),
        (np.float16, np.float32),
        (np.float32, np.float32),
        (np.float64, np.float64),
    ],
)
def test_integer_bool_and_float_dtypes(data, dtype, out):
    Z, y = data
    Zd = (Z * 3).astype(dtype)
    est = fit_quiet(tiny(), Zd, y)
    for result in (est.transform(Zd), est.predict(Zd), est.inverse_transform(est.transform(Zd))):
        assert result.dtype == out
        assert np.isfinite(result).all()


def test_float16_is_computed_as_float32(data, fitted):
    Z, _ = data
    Z16 = Z.astype(np.float16)
    np.testing.assert_array_equal(fitted.transform(Z16), fitted.transform(Z16.astype(np.float32)))


def test_integer_y(data):
    Z, y = data
    est = fit_quiet(tiny(), Z, (y * 10).astype(int))
    assert est.predict(Z).dtype == np.float64


# ------------------------------------------------------------------ values
def test_constant_columns_and_constant_data(data):
    Z, y = data
    for X in (np.c_[Z, np.ones(40)], np.ones((40, 6)), np.zeros((40, 6))):
        est = fit_quiet(tiny(), X, y)
        assert np.isfinite(est.transform(X)).all()
        assert np.isfinite(est.predict(X)).all()
    with pytest.warns(UserWarning, match="y is the same on every row"):  # constant logits
        est = tiny().fit(Z, np.full(40, 3.0))
    np.testing.assert_allclose(est.predict(Z), 3.0, atol=1e-6)
    Y = np.c_[y, np.full(40, 2.0)]  # one constant output among others: predicted exactly
    for rescale in (True, False):
        pred = fit_quiet(tiny(rescale=rescale), Z, Y).predict(Z)
        np.testing.assert_array_equal(pred[:, -1], 2.0)


@pytest.mark.parametrize("magnitude", [1e-30, 1e30, 1e200])
def test_extreme_magnitudes_rescale_without_overflow(data, fitted, magnitude):
    Z, y = data
    est = fit_quiet(tiny(), Z * magnitude, y)
    ref = fitted  # the same fit on unscaled data
    assert np.isfinite(est.scale_) and est.scale_ > 0
    np.testing.assert_allclose(est.scale_ / magnitude, ref.scale_, rtol=1e-12)
    # the model sees the same data up to float32 rounding: same x-features
    np.testing.assert_allclose(est.transform(Z * magnitude), ref.transform(Z), atol=1e-4)
    Z_hat = est.inverse_transform(est.transform(Z * magnitude))
    assert np.isfinite(Z_hat).all()


def test_huge_float32_activations(data):
    Z, y = data
    Z32 = (Z * 1e30).astype(np.float32)
    est = fit_quiet(tiny(), Z32, y)
    assert np.isfinite(est.transform(Z32)).all()
    assert est.transform(Z32).dtype == np.float32


@pytest.mark.parametrize("magnitude", [1e-300, 1e30, 1e200, 1e300])
def test_huge_and_tiny_logits(data, fitted, magnitude):
    Z, y = data
    est = fit_quiet(tiny(), Z, y * magnitude)
    pred = est.predict(Z)
    assert np.isfinite(pred).all()
    ref = fitted
    np.testing.assert_allclose(pred / magnitude, ref.predict(Z), rtol=1e-6, atol=1e-6)
    # score's and the scorer's sums of squares neither overflow nor underflow
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert est.score(Z, y * magnitude) == pytest.approx(ref.score(Z, y), abs=1e-6)
        r2 = faithfulness_r2(y * magnitude, pred)
    assert r2 == pytest.approx(faithfulness_r2(y, pred / magnitude), abs=1e-12)


def test_many_logits_of_any_magnitude_give_the_same_explainer():
    from sklearn_xnn.datasets import make_concept_activations

    Z, y, _ = make_concept_activations(300, 16, random_state=0)  # 10 outputs: a top one per row
    ref = fit_quiet(tiny(n_components=3), Z, y).transform(Z)
    for magnitude in (1e-100, 1e-35, 1e35, 1e100):  # every row's top output read alike
        np.testing.assert_array_equal(
            fit_quiet(tiny(n_components=3), Z, y * magnitude).transform(Z), ref
        )
    with pytest.raises(ValueError, match=r'faithfulness="kl" takes the softmax .*e\+40'):
        fit_quiet(tiny(n_components=3, faithfulness="kl"), Z, y * 1e40)


def test_a_large_common_offset_is_reported(data):
    Z, y = data
    spread = float(Z.std())
    with pytest.warns(UserWarning, match="X varies about its column means by .* float32") as rec:
        fit_quiet(tiny(), Z + 1e7 * spread, y)
    assert rec[0].filename == __file__  # the user's line, not the library's
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit_quiet(tiny(), Z + 1e3 * spread, y)  # 7 digits hold this one


def test_warnings_point_at_the_callers_line(data):
    Z, y = data
    with pytest.warns(ConvergenceWarning) as rec:
        tiny(max_iter=1).fit(Z, y)
    with pytest.warns(FutureWarning, match="n_init='auto' is deprecated") as deprecated:
        tiny(max_iter=1, n_init="auto").fit(Z, y)
    assert {w.filename for w in [*rec, *deprecated]} == {__file__}


def test_values_beyond_float32_without_rescaling(data):
    Z, y = data
    with pytest.raises(ValueError, match="beyond the float32 range .* use rescale=True"):
        tiny(rescale=False).fit(Z * 1e200, y)
    for stream_threshold in (2**30, 0):  # in memory, and streamed
        with pytest.raises(ValueError, match="y has values up to .*e\\+200, beyond the float32"):
            tiny(rescale=False, stream_threshold=stream_threshold).fit(Z, y * 1e200)


def test_transform_overflow_is_an_error_not_inf(data):
    Z, y = data
    est = fit_quiet(tiny(), Z * 1e-200, y)  # the rescaling folds ~1e200 into the weights
    with pytest.raises(ValueError, match="transform overflowed to non-finite values in float64"):
        est.transform(Z * 1e200)
    with pytest.raises(ValueError, match="predict overflowed"):
        est.predict(Z * 1e200)
    est32 = fit_quiet(tiny(), (Z * 1e-30).astype(np.float32), y)
    with pytest.raises(ValueError, match="overflowed to non-finite values in float32"):
        est32.transform((Z * 1e15).astype(np.float32))
    np.testing.assert_allclose(est.transform(Z * 1e-200), est32.transform(Z * 1e-30), atol=1e-4)


# ------------------------------------------------------------------ parameters and devices
@pytest.mark.parametrize(
    "params, err, msg",
    [
        ({"n_components": 0}, InvalidParameterError, "'n_components' parameter"),
        ({"learning_rate_init": -1.0}, InvalidParameterError, "'learning_rate_init'"),
        ({"learning_rate_init": np.nan}, InvalidParameterError, "Got nan instead"),
        ({"alpha_reconstruction": np.inf}, InvalidParameterError, "'alpha_reconstruction'"),
        ({"dropout": 1.0}, InvalidParameterError, "'dropout' parameter"),
        ({"reconstruction": "l1"}, InvalidParameterError, "'reconstruction' parameter"),
        ({"pullaway": "rows"}, InvalidParameterError, "'pullaway' parameter"),
        ({"batch_size": 0}, InvalidParameterError, "'batch_size' parameter"),
        ({"validation_fraction": 1.0}, InvalidParameterError, "'validation_fraction'"),
        ({"hidden_layer_sizes": "abc"}, InvalidParameterError, "'hidden_layer_sizes'"),
        ({"hidden_layer_sizes": (0,)}, ValueError, "hidden_layer_sizes must be positive"),
        ({"hidden_layer_sizes": ()}, ValueError, "non-empty tuple of positive ints"),
        ({"hidden_layer_sizes": (1.5,)}, ValueError, "non-empty tuple of positive ints"),
        ({"device": None}, InvalidParameterError, "'device' parameter"),
        ({"device": "tpu"}, ValueError, "device='tpu' is not a device name"),
        ({"device": "gpu please"}, ValueError, "is not a device name"),
    ],
)
def test_invalid_parameters(data, params, err, msg):
    with pytest.raises(err, match=msg):
        tiny(**params).fit(*data)


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_absent_device(data, device):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has the device")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has the device")
    with pytest.raises(RuntimeError, match=f"device='{device}' was requested but .*device=\"cpu\""):
        tiny(device=device).fit(*data)


def test_absent_device_at_inference_falls_back_to_cpu(data, fitted):
    Z, _ = data
    from sklearn.base import clone

    est = clone(fitted)
    est.__dict__.update(fitted.__dict__)
    est.device = "cuda:7"  # as if fitted on a GPU machine
    np.testing.assert_array_equal(est.transform(Z), fitted.transform(Z))


@pytest.mark.parametrize(
    "method", ["transform", "inverse_transform", "predict", "contributions", "score"]
)
def test_unfitted(data, method):
    Z, y = data
    args = (Z, y) if method == "score" else (Z,)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        getattr(SRAEExplainer(), method)(*args)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        SRAEExplainer().save("never-written.safetensors")


def test_head_methods_after_unsupervised_fit(data):
    Z, _ = data
    est = fit_quiet(tiny(), Z)
    assert not hasattr(est, "predict") and not hasattr(est, "contributions")
    with pytest.raises(AttributeError, match="has no attribute 'predict'") as info:
        est.predict(Z)  # the cause says why
    assert "need the linear head" in str(info.value.__cause__)
    assert "fitted unsupervised" in str(info.value.__cause__)


# ------------------------------------------------------------------ training faults
def test_divergence_in_fine_tuning_keeps_last_finite_weights(data):
    Z, y = data
    with pytest.warns(ConvergenceWarning, match="non-finite in fine-tuning epoch 2"):
        est = tiny(pretrain=0, max_iter=20, learning_rate_init=1e6).fit(Z, y)
    assert est.n_iter_ == 1 and len(est.loss_curve_) == 1
    assert np.isfinite(est.loss_curve_).all()
    for out in (est.transform(Z), est.predict(Z), est.inverse_transform(est.transform(Z))):
        assert np.isfinite(out).all()


def test_divergence_keeps_the_last_finite_weights(data):
    Z, y = data
    with pytest.warns(ConvergenceWarning, match=r"keeps the last finite weights"):
        est = tiny(max_iter=20, learning_rate_init=1e6).fit(Z, y)
    assert est.n_iter_ <= 1
    assert np.isfinite(est.predict(Z)).all()
    # the kept weights are at least as faithful as the constraint allows
    assert est.faithfulness_ >= est.faithfulness_bound_ - est.faithfulness_tol - 1e-6


def test_divergence_without_any_finite_model_raises_and_unfits(data):
    Z, y = data
    est = fit_quiet(tiny(), Z, y)
    est.set_params(learning_rate_init=1e10)
    with pytest.raises(TrainingDivergedError, match="Lower learning_rate_init"):
        est.fit(Z, y)
    with pytest.raises(NotFittedError):  # no stale half-fitted state is left behind
        est.transform(Z)
    with pytest.raises(ArithmeticError, match="during layer-wise pre-training"):
        tiny(rescale=False).fit(Z * 1e30, y)


def test_divergence_trains_once(data, monkeypatch):
    Z, y = data
    calls = []
    real = training.fine_tune
    monkeypatch.setattr(training, "fine_tune", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.warns(ConvergenceWarning, match="non-finite"):
        tiny(pretrain=0, max_iter=20, learning_rate_init=1e6).fit(Z, y)
    assert len(calls) == 1


def interrupt_on_call(monkeypatch, name, call, module=training):
    real = getattr(module, name)
    count = {"n": 0}

    def wrapped(*args, **kwargs):
        count["n"] += 1
        if count["n"] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


def test_keyboard_interrupt_in_fine_tuning(data, monkeypatch):
    Z, y = data
    interrupt_on_call(monkeypatch, "_epoch", 3)
    with pytest.warns(ConvergenceWarning, match="interrupted .* in fine-tuning epoch 3 of 5"):
        est = tiny().fit(Z, y)
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2
    assert np.isfinite(est.predict(Z)).all()
    monkeypatch.undo()
    # the kept weights are exactly those after epoch 2 of an uninterrupted run
    ref = fit_quiet(tiny(max_iter=2), Z, y)
    np.testing.assert_array_equal(est.transform(Z), ref.transform(Z))


def test_keyboard_interrupt_in_pretraining(data, monkeypatch):
    Z, y = data
    interrupt_on_call(monkeypatch, "pretrain_layers", 1, module=init)
    with pytest.warns(ConvergenceWarning, match="interrupted .* during layer-wise pre-training"):
        est = tiny().fit(Z, y)
    assert est.n_iter_ == 0
    assert np.isfinite(est.predict(Z)).all()


def test_keyboard_interrupt_from_logging_handler(data):
    Z, y = data

    class Interrupting(logging.Handler):
        seen = 0

        def emit(self, record):
            Interrupting.seen += 1
            if Interrupting.seen == 2:
                raise KeyboardInterrupt

    logger = logging.getLogger("sklearn_xnn")
    handler, level = Interrupting(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with pytest.warns(ConvergenceWarning, match="epoch 2 of 5; .* after epoch 2"):
            est = tiny(verbose=1).fit(Z, y)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert est.n_iter_ == 2
    assert np.isfinite(est.transform(Z)).all()


@pytest.mark.parametrize(
    "make, kw, message",
    [
        ("concepts", dict(n_samples=10.5), "'n_samples' parameter .* must be an int"),
        ("concepts", dict(noise=float("nan")), "'noise' parameter"),
        ("concepts", dict(concept_density=0.0), "'concept_density' parameter"),
        ("patches", dict(patch_size=0), "'patch_size' parameter"),
        ("patches", dict(n_classes=0), "'n_classes' parameter"),
        ("patches", dict(patch_size=9), "too large for image_size=16"),
        ("patches", dict(noise=2.0), "'noise' parameter .* range \\[0.0, 1.0\\]"),
    ],
)
def test_dataset_generators_refuse_bad_parameters(make, kw, message):
    from sklearn_xnn.datasets import make_concept_activations
    from sklearn_xnn.datasets._patches import make_patch_images

    fn = make_concept_activations if make == "concepts" else make_patch_images
    with pytest.raises(ValueError, match=message):
        fn(**kw)


@pytest.mark.parametrize("image_size", [8, 10, 12])
def test_patch_images_always_leave_room_for_the_distractor(image_size):
    from sklearn_xnn.datasets._patches import make_patch_images

    # every size that fits two patches side by side terminates, without overlap
    data = make_patch_images(300, image_size=image_size, patch_size=4, random_state=0)
    assert not (data.masks & data.distractor_masks).any()
    assert (data.masks.sum((1, 2)) == 16).all() and (data.distractor_masks.sum((1, 2)) == 16).all()
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0


def test_a_tensor_that_requires_grad_is_named(data, fitted):
    import torch

    Z, y = data
    Zt = torch.as_tensor(Z, dtype=torch.float32).requires_grad_()
    with pytest.raises(TypeError, match=r"X is a torch tensor that requires grad; .* X.detach\(\)"):
        tiny().fit(Zt, y)
    with pytest.raises(TypeError, match="y is a torch tensor that requires grad"):
        tiny().fit(Z, torch.as_tensor(y).requires_grad_())
    with pytest.raises(TypeError, match="X.detach"):
        fitted.transform(Zt)
    assert fitted.transform(Zt.detach()).shape == (len(Z), fitted.n_components_)


@pytest.mark.parametrize("epochs", [-3, 1.5, True])
def test_digits_activations_refuse_a_bad_epoch_count(epochs):
    from sklearn_xnn.datasets import load_digits_activations

    with pytest.raises(ValueError, match="epochs must be a non-negative int"):
        load_digits_activations(epochs=epochs)


def test_torch_tensors_of_every_float_dtype_work_like_their_numpy_arrays(data, fitted):
    import torch

    Z, y = data
    Z32, y32 = Z.astype(np.float32), y.astype(np.float32)
    ref = fit_quiet(tiny(), Z32, y32)
    # a float32 tensor is read in place (no float64 copy) and answers in float32
    est = fit_quiet(tiny(), torch.from_numpy(Z32), torch.from_numpy(y32))
    np.testing.assert_array_equal(est.transform(Z32), ref.transform(Z32))
    assert fitted.transform(torch.from_numpy(Z32)).dtype == np.float32
    assert fitted.transform(torch.from_numpy(Z32).half()).dtype == np.float32  # as numpy's
    # bfloat16 (activations extracted under autocast; numpy has no such dtype) as float32
    Zb, yb = torch.from_numpy(Z32).bfloat16(), torch.from_numpy(y32).bfloat16()
    est = fit_quiet(tiny(), Zb, yb)
    Zr, yr = Zb.float().numpy(), yb.float().numpy()
    np.testing.assert_array_equal(est.transform(Zb), fit_quiet(tiny(), Zr, yr).transform(Zr))
    assert est.score(Zb, yb) == pytest.approx(est.score(Zr, yr), abs=1e-12)
    epochs = est.n_iter_
    assert est.partial_fit(Zb[:50], yb[:50]).n_iter_ == epochs + 1


def test_activations_without_variation_and_one_hot_labels_are_named(data):
    Z, y = data
    with pytest.warns(UserWarning, match="X is the same on every training row"):
        fit_quiet(tiny(), np.tile(Z[:1], (len(Z), 1)), y)
    labels = np.eye(3)[np.arange(len(Z)) % 3]
    with pytest.warns(UserWarning, match="y holds one-hot rows .* looks like class labels"):
        fit_quiet(tiny(), Z, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit_quiet(tiny(), Z, labels * 2.0 - 0.5)  # any other two-valued logits pass
