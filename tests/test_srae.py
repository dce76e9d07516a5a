"""Behaviour of SRAEExplainer: reproducibility, persistence, dtypes, sklearn integration."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_xnn import SRAEExplainer
from tests.conftest import FAST, fit_quiet


def _fit(planted, **kw):
    Z, y, _ = planted
    return SRAEExplainer(3, random_state=0, **{**FAST, **kw}).fit(Z, y)


def _state(est):
    return est.encoder_coefs_ + est.decoder_coefs_ + [est.coef_, est.intercept_]


def test_fitted_attributes_and_shapes(planted_small):
    Z, y, _ = planted_small
    est = _fit(planted_small)
    assert est.n_components_ == 3 and est.n_features_in_ == Z.shape[1]
    assert est.coef_.shape == (4, 3) and est.intercept_.shape == (4,)
    assert est.components_.shape == (3, Z.shape[1])
    assert est.loss_parts_.shape == (est.n_iter_, 3) and len(est.loss_curve_) == est.n_iter_
    assert est.dead_components_.shape == (3,)
    assert est.n_dead_components_ == int(est.dead_components_.sum())
    X = est.transform(Z)
    assert X.shape == (Z.shape[0], 3) and (X >= 0).all()
    assert est.inverse_transform(X).shape == Z.shape
    assert est.predict(Z).shape == y.shape


def test_components_are_the_decoders_response_in_the_callers_units(planted_small):
    Z, y, _ = planted_small
    Z = Z * 1000.0  # rescale=True trains on Z / scale_: the components are in Z's units
    est = SRAEExplainer(3, random_state=0, **FAST).fit(Z, y)
    x = est.transform(Z)
    means = np.array([x[x[:, k] > 0, k].mean() for k in range(3)])
    rebuilt = est.inverse_transform(np.vstack([np.zeros(3), np.diag(means)]))
    np.testing.assert_allclose(est.components_, rebuilt[1:] - rebuilt[0], rtol=1e-5, atol=1e-6)
    assert list(est.get_feature_names_out()) == [f"sraeexplainer{k}" for k in range(3)]


def test_contributions_sum_to_the_prediction(planted_small):
    Z, _, _ = planted_small
    est = _fit(planted_small)
    S = est.contributions(Z)
    assert S.shape == (Z.shape[0], 4, 3)
    np.testing.assert_allclose(S.sum(-1) + est.intercept_, est.predict(Z), rtol=1e-10, atol=1e-10)


def test_one_dimensional_y_round_trips_its_shape(planted_small):
    Z, y, _ = planted_small
    est = SRAEExplainer(3, random_state=0, **FAST).fit(Z, y[:, 0])
    assert est.predict(Z).shape == (Z.shape[0],)
    assert est.contributions(Z).shape == (Z.shape[0], 3)
    assert est.score(Z, y[:, 0]) == pytest.approx(
        1 - np.sum((y[:, 0] - est.predict(Z)) ** 2) / np.sum((y[:, 0] - y[:, 0].mean()) ** 2),
        rel=1e-9,
    )


def test_unsupervised_fit_has_no_head(planted_small):
    Z, _, _ = planted_small
    est = SRAEExplainer(3, random_state=0, **FAST).fit(Z)
    assert est.transform(Z).shape == (Z.shape[0], 3)
    assert est.inverse_transform(est.transform(Z)).shape == Z.shape
    with pytest.raises(AttributeError) as info:
        est.predict(Z)
    assert "fitted unsupervised" in str(info.value.__cause__)


def test_an_unsupervised_explainer_scores_its_reconstruction_so_searches_need_no_scorer(
    planted_small,
):
    Z, y, _ = planted_small
    est = SRAEExplainer(3, random_state=0, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(est, {"alpha_pullaway": [0.0, 0.5]}, cv=2, error_score="raise")
        scores = search.fit(Z).cv_results_["mean_test_score"]
        supervised = clone(est).fit(Z, y)
        est.fit(Z)
    assert np.isfinite(scores).all() and 0.0 < scores.min() <= 1.0
    rebuilt = est.inverse_transform(est.transform(Z))
    assert est.score(Z) == pytest.approx(
        r2_score(Z, rebuilt, multioutput="variance_weighted"), abs=1e-12
    )
    w = np.random.default_rng(0).random(len(Z))
    expected = r2_score(Z, rebuilt, sample_weight=w, multioutput="variance_weighted")
    assert est.score(Z, sample_weight=w) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="fitted without y .* Pass no y"):
        est.score(Z, y)
    with pytest.raises(ValueError, match="score needs y"):
        supervised.score(Z)


def test_cpu_fits_are_bitwise_repeatable_and_ignore_the_global_seed(planted_small):
    torch.manual_seed(1)
    a = _fit(planted_small)
    torch.manual_seed(12345)
    np.random.seed(7)  # noqa: NPY002 - the legacy global seed must not matter either
    b = _fit(planted_small)
    for wa, wb in zip(_state(a), _state(b), strict=True):
        np.testing.assert_array_equal(wa, wb)
    c = (
        _fit(planted_small, random_state=1)
        if False
        else SRAEExplainer(3, random_state=1, **FAST).fit(*planted_small[:2])
    )
    assert not np.array_equal(a.encoder_coefs_[0], c.encoder_coefs_[0])


def test_fit_does_not_touch_the_global_torch_rng(planted_small):
    torch.manual_seed(3)
    before = torch.get_rng_state().clone()
    _fit(planted_small)
    assert torch.equal(before, torch.get_rng_state())


def test_pickle_round_trip_transforms_identically(planted_small):
    Z, _, _ = planted_small
    est = _fit(planted_small)
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.transform(Z), est.transform(Z))
    np.testing.assert_array_equal(back.predict(Z), est.predict(Z))


def test_fitted_state_holds_no_tensors(planted_small):
    est = _fit(planted_small)

    def walk(obj):
        if isinstance(obj, torch.Tensor | torch.nn.Module):
            raise AssertionError(f"tensor state found: {type(obj)}")
        if isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        if isinstance(obj, list | tuple):
            for v in obj:
                walk(v)

    walk(vars(est))


def test_model_fitted_on_a_gpu_transforms_on_a_cpu_only_machine(planted_small, monkeypatch):
    """A model whose device is 'cuda' unpickles and transforms here, where torch sees no GPU."""
    Z, _, _ = planted_small
    est = _fit(planted_small)
    expected = est.transform(Z)
    est.set_params(device="cuda:0")  # what a GPU-trained model carries
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.transform(Z), expected)


def test_weights_that_lived_on_the_meta_device_are_refused_not_silently_used(planted_small):
    """Tensors never enter the fitted state: weights from another device go through numpy."""
    from sklearn_xnn._nn.modules import encode_numpy

    est = _fit(planted_small)
    Z = planted_small[0]
    meta = [torch.as_tensor(w).to("meta") for w in est.encoder_coefs_]
    with pytest.raises((NotImplementedError, RuntimeError, TypeError)):
        encode_numpy(Z, [m.numpy() for m in meta], est.encoder_intercepts_)


def test_row_by_row_transform_equals_batch_transform(planted_small):
    Z, _, _ = planted_small
    est = _fit(planted_small)
    rows = Z[:40]
    batch = est.transform(rows)
    one_by_one = np.vstack([est.transform(r[None]) for r in rows])
    np.testing.assert_allclose(one_by_one, batch, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        np.vstack([est.predict(r[None]) for r in rows]), est.predict(rows), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_in_is_dtype_out(planted_small, dtype):
    Z, y, _ = planted_small
    est = SRAEExplainer(3, random_state=0, **FAST).fit(Z.astype(dtype), y)
    Zd = Z.astype(dtype)
    assert est.transform(Zd).dtype == dtype
    assert est.predict(Zd).dtype == dtype
    assert est.contributions(Zd).dtype == dtype
    assert est.inverse_transform(est.transform(Zd)).dtype == dtype


def test_pipeline_and_grid_search_with_the_default_score(planted_small):
    Z, y, _ = planted_small
    pipe = make_pipeline(FunctionTransformer(), SRAEExplainer(random_state=0, **FAST))
    grid = GridSearchCV(pipe, {"sraeexplainer__n_components": [1, 3]}, cv=2)
    grid.fit(Z, y)
    assert grid.best_params_["sraeexplainer__n_components"] == 3
    assert np.isfinite(grid.best_score_)


def test_cross_validate_and_column_transformer(planted_small):
    Z, y, _ = planted_small
    res = cross_validate(SRAEExplainer(3, random_state=0, **FAST), Z, y, cv=2)
    assert np.all(np.isfinite(res["test_score"]))
    ct = ColumnTransformer([("xnn", SRAEExplainer(2, random_state=0, **FAST), slice(0, 24))])
    assert ct.fit_transform(Z, y[:, 0]).shape == (Z.shape[0], 2)


def test_set_output_pandas(planted_small):
    pd = pytest.importorskip("pandas")
    Z, y, _ = planted_small
    est = SRAEExplainer(3, random_state=0, **FAST).set_output(transform="pandas").fit(Z, y)
    out = est.transform(Z)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["sraeexplainer0", "sraeexplainer1", "sraeexplainer2"]


def test_clone_keeps_parameters_and_drops_fit(planted_small):
    est = _fit(planted_small)
    fresh = clone(est)
    assert fresh.get_params() == est.get_params()
    assert not hasattr(fresh, "coef_")


def test_predictions_are_in_the_callers_units(planted_small):
    """Rescaling is internal: scaling Z and y by constants scales predictions the same way.

    Powers of two keep the internally rescaled float32 data identical, so training follows
    the same path and only the unit handling is tested.
    """
    Z, y, _ = planted_small
    a = SRAEExplainer(3, random_state=0, **FAST).fit(Z, y)
    b = SRAEExplainer(3, random_state=0, **FAST).fit(Z * 32.0, y * 8.0 + 3.0)
    np.testing.assert_allclose(b.predict(Z * 32.0), a.predict(Z) * 8.0 + 3.0, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(b.transform(Z * 32.0), a.transform(Z), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        b.inverse_transform(b.transform(Z * 32.0)),
        a.inverse_transform(a.transform(Z)) * 32.0,
        rtol=1e-5,
        atol=1e-4,
    )


def test_signed_activations_use_a_linear_decoder_output(planted_small):
    Z, y, _ = planted_small
    Zs = Z - Z.mean(0)
    est = SRAEExplainer(3, random_state=0, **FAST).fit(Zs, y)
    assert not est.decoder_relu_output_
    assert (est.inverse_transform(est.transform(Zs)) < 0).any()
    assert _fit(planted_small).decoder_relu_output_


def test_reference_preset_has_the_papers_recipe():
    est = SRAEExplainer.reference(n_components=4)
    assert (est.alpha_faithfulness, est.alpha_reconstruction, est.alpha_pullaway) == (1, 10, 10)
    assert est.batch_size == 50 and est.pullaway == "samples" and est.n_components == 4
    comp = SRAEExplainer.reference("components")
    assert (comp.alpha_reconstruction, comp.alpha_pullaway) == (15, 5)
    with pytest.raises(ValueError, match="pullaway must be"):
        SRAEExplainer.reference("rows")


def test_dead_features_are_counted_and_announced(planted_small, monkeypatch):
    """Kill x-feature 0 by hand and check it is reported, not hidden."""
    from sklearn_xnn._nn import training

    original = training.fine_tune

    def kill_first(model, *args, **kwargs):
        hist = original(model, *args, **kwargs)
        with torch.no_grad():
            model.encoder.layers[-1].weight[0] = 0.0
            model.encoder.layers[-1].bias[0] = -1.0
        return hist

    monkeypatch.setattr(training, "fine_tune", kill_first)
    Z, y, _ = planted_small
    with pytest.warns(Warning, match="1 of 3 x-features are dead"):
        est = SRAEExplainer(3, random_state=0, **FAST).fit(Z, y)
    assert est.n_dead_components_ == 1 and est.dead_components_[0]
    assert np.all(est.transform(Z)[:, 0] == 0)
    np.testing.assert_array_equal(est.components_[0], 0.0)


def test_collapse_retries_is_deprecated_and_has_no_effect(planted_small):
    Z, y, _ = planted_small
    plain = SRAEExplainer(3, random_state=0, **FAST).fit(Z, y)
    with pytest.warns(FutureWarning, match="collapse_retries is deprecated"):
        old = SRAEExplainer(3, random_state=0, collapse_retries=2, **FAST).fit(Z, y)
    np.testing.assert_array_equal(old.transform(Z), plain.transform(Z))
    with pytest.warns(FutureWarning, match="n_collapse_retries_ is deprecated"):
        assert plain.n_collapse_retries_ == 0
    with pytest.raises(NotFittedError):
        getattr(SRAEExplainer(), "n_collapse_retries_")  # noqa: B009


def test_early_stopping_keeps_validation_scores(planted_small):
    est = _fit(planted_small, early_stopping=True, validation_fraction=0.2)
    assert len(est.validation_scores_) == est.n_iter_
    assert _fit(planted_small).validation_scores_ is None


def test_verbose_shows_each_epoch_where_logging_is_configured_or_not(planted_small, caplog):
    import logging
    import subprocess
    import sys

    Z, y, _ = planted_small
    logger = logging.getLogger("sklearn_xnn")
    fit_quiet(Z, y, verbose=1)  # logging configured (pytest's handler), loggers at WARNING
    assert any(r.getMessage().startswith("epoch 1: loss") for r in caplog.records)
    assert logger.level == logging.NOTSET and not logger.handlers  # as it was
    # without any logging configuration the lines go to stderr, as scikit-learn's do
    code = (
        "from sklearn_xnn import SRAEExplainer\n"
        "from sklearn_xnn.datasets import make_concept_activations\n"
        "Z, y, _ = make_concept_activations(200, 8, random_state=0)\n"
        "SRAEExplainer(2, max_iter=2, random_state=0, device='cpu', verbose=1).fit(Z, y)\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "epoch 2: loss" in out.stderr


def test_every_hidden_layer_carries_the_k_directions(planted_small):
    from sklearn_xnn._validation import check_widths

    Z, y, _ = planted_small
    with pytest.raises(ValueError, match=r"a layer of 4 units, fewer than the 5 x-features"):
        SRAEExplainer(5, hidden_layer_sizes=(16, 4), device="cpu").fit(Z, y)
    for n_features in (3, 64, 1000):  # "auto" carries them as pairs, whatever K and D
        for k in (1, 50, 101, 400):
            est = SRAEExplainer(k)
            est._hidden, est._n_components = None, k
            check_widths(est, n_features)
            assert min(est._hidden) >= 2 * k


def test_a_failed_refit_leaves_no_earlier_fit_behind(planted_small):
    Z, y, _ = planted_small
    est = fit_quiet(Z, y, n_components=3)
    with pytest.raises(ValueError, match="network_head"):  # a head of the wrong shape
        est.set_params(network_head=torch.nn.Linear(4, 2)).fit(Z[:, :16], y)
    with pytest.raises(NotFittedError):
        est.transform(Z)


def test_faithfulness_tol_zero_and_early_stopping_warn_as_documented(planted_small):
    from sklearn.exceptions import ConvergenceWarning

    Z, y, _ = planted_small
    with pytest.warns(ConvergenceWarning, match="No epoch, nor the start, met the constraints"):
        SRAEExplainer(3, faithfulness="kl", faithfulness_tol=0.0, **FAST).fit(Z, y)
    with pytest.warns(ConvergenceWarning, match="reached max_iter=2"):  # early stopping too
        SRAEExplainer(3, **{**FAST, "max_iter": 2, "early_stopping": True}).fit(Z, y)


def test_kl_fits_ignore_multioutput_but_score_follows_it(planted_small):
    Z, y, _ = planted_small
    fits = [
        fit_quiet(Z, y, n_components=3, faithfulness="kl", multioutput=m)
        for m in ("uniform_average", "variance_weighted")
    ]
    np.testing.assert_array_equal(fits[0].transform(Z), fits[1].transform(Z))
    assert fits[1].score(Z, y) == pytest.approx(
        r2_score(y, fits[1].predict(Z), multioutput="variance_weighted"), rel=1e-9
    )


def test_network_head_needs_y(planted_small):
    Z, _, _ = planted_small
    with pytest.raises(ValueError, match="network_head .* needs y"):
        SRAEExplainer(3, network_head=torch.nn.Linear(Z.shape[1], 4), **FAST).fit(Z)


def test_n_init_warns_once_and_partial_fit_drops_the_initialisations(planted_small):
    Z, y, _ = planted_small
    labels = np.argmax(y, axis=1)  # class labels where the logits go
    with pytest.warns(UserWarning) as record:
        est = SRAEExplainer(3, n_init=3, random_state=0, **FAST).fit(Z, labels)
    assert sum("looks like class labels" in str(w.message) for w in record) == 1
    est.partial_fit(Z[:100], labels[:100])
    assert not hasattr(est, "init_scores_") and not hasattr(est, "best_init_")


def test_all_dead_advice_names_a_valid_remedy():
    from sklearn.exceptions import ConvergenceWarning

    from sklearn_xnn.datasets import make_concept_activations

    Z, y, _ = make_concept_activations(500, 32, random_state=0)
    est = SRAEExplainer(max_iter=5, learning_rate_init=100.0, faithfulness_tol=None, random_state=0)
    with pytest.warns(ConvergenceWarning, match="dead") as record:
        est.fit(Z, y)
    assert est.n_dead_components_ == est.n_components_  # every one: training went astray
    message = next(str(w.message) for w in record if "dead" in str(w.message))
    assert "n_components=0" not in message and "smaller learning_rate_init" in message


def test_contributions_in_float32_hold_no_float64_copy_of_the_whole_array():
    import tracemalloc

    from sklearn_xnn.datasets import make_concept_activations

    Z, y, _ = make_concept_activations(400, 16, n_outputs=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        srae = SRAEExplainer(3, max_iter=1, device="cpu", random_state=0).fit(Z, y)
    Zq = np.tile(Z, (50, 1)).astype(np.float32)  # 20,000 rows
    full = srae.contributions(Zq)
    assert full.dtype == np.float32 and full.shape == (20000, 50, 3)
    expected = srae.transform(Zq).astype(np.float64)[:, None, :] * srae.coef_[None]
    np.testing.assert_allclose(full, expected, rtol=1e-6, atol=1e-6)
    tracemalloc.start()
    srae.contributions(Zq)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.5 * full.nbytes  # the float32 result and one block, not 3x its size
    listed = srae.contributions(Zq[:10], outputs=[4, 0])
    np.testing.assert_allclose(listed, full[:10][:, [4, 0]], rtol=1e-6)
