"""Scorers in GridSearchCV / cross_validate, for SRAE and for headed baselines."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import NMF, PCA
from sklearn.kernel_approximation import Nystroem
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_xnn import SRAEExplainer, SRAEExplainerCV
from sklearn_xnn.baselines import PLSEmbedding, make_headed
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.metrics import (
    ExplanationScorer,
    dead_fraction,
    explanation_scorer,
    faithfulness_r2,
    faithfulness_r2_scorer,
    get_explanation_scorers,
    mean_abs_correlation,
    reconstruction_r2,
    reconstruction_r2_scorer,
    top1_agreement,
    top1_agreement_scorer,
)
from tests.conftest import FAST

SMALL_SRAE = FAST  # small and fast; conftest also runs torch on one thread


@pytest.fixture(scope="module")
def data():
    Z, y, codes = make_concept_activations(300, 32, random_state=0)
    return Z, y


@pytest.fixture(scope="module")
def srae(data):
    Z, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SRAEExplainer(4, random_state=0, **SMALL_SRAE).fit(Z[:200], y[:200])


def test_scorers_on_srae_match_metrics(srae, data):
    Z, y = data
    Zt, yt = Z[200:], y[200:]
    y_hat = srae.predict(Zt)
    assert faithfulness_r2_scorer(srae, Zt, yt) == pytest.approx(srae.score(Zt, yt), abs=1e-10)
    assert top1_agreement_scorer(srae, Zt, yt) == pytest.approx(top1_agreement(yt, y_hat), abs=0)
    Z_hat = srae.inverse_transform(srae.transform(Zt))
    assert reconstruction_r2_scorer(srae, Zt, yt) == pytest.approx(
        reconstruction_r2(Zt, Z_hat), rel=1e-12
    )


def test_faithfulness_scorer_averages_the_outputs_as_score_does(srae, data):
    Z, y = data
    Zt, yt = Z[200:], y[200:] * np.array([1.0, 30.0] * (y.shape[1] // 2))  # unequal spreads
    vw = clone(srae).set_params(multioutput="variance_weighted")
    vw = vw.fit(Z[:200], y[:200] * np.array([1.0, 30.0] * (y.shape[1] // 2)))
    assert faithfulness_r2_scorer(vw, Zt, yt) == pytest.approx(vw.score(Zt, yt), abs=1e-10)
    weighted = faithfulness_r2(yt, vw.predict(Zt), multioutput="variance_weighted")
    assert faithfulness_r2_scorer(vw, Zt, yt) == pytest.approx(weighted, abs=1e-12)
    assert weighted != pytest.approx(faithfulness_r2(yt, vw.predict(Zt)), abs=1e-3)
    piped = make_pipeline(StandardScaler(with_mean=False), vw).fit(Z[:200], y[:200])
    assert faithfulness_r2_scorer(piped, Zt, yt) == pytest.approx(piped.score(Zt, yt), abs=1e-10)
    search = SRAEExplainerCV(vw, {"alpha_pullaway": [0.1]}, cv=2).fit(Z[:200], y[:200])
    assert faithfulness_r2_scorer(search, Zt, yt) == pytest.approx(search.score(Zt, yt), abs=1e-10)


def test_explanation_scorer_formula(srae, data):
    Z, y = data
    Zt, yt = Z[200:], y[200:]
    X, S = srae.transform(Zt), srae.contributions(Zt)
    rho = mean_abs_correlation(S)
    rho = 1.0 if np.isnan(rho) else rho
    expected = faithfulness_r2(yt, srae.predict(Zt)) - 0.5 * rho - 0.5 * dead_fraction(X)
    assert explanation_scorer(srae, Zt, yt) == pytest.approx(expected, rel=1e-12)
    weighted = ExplanationScorer(corr_weight=0.0, dead_weight=0.0)
    assert weighted(srae, Zt, yt) == pytest.approx(srae.score(Zt, yt), abs=1e-10)
    restored = pickle.loads(pickle.dumps(explanation_scorer))
    assert repr(restored) == "ExplanationScorer(corr_weight=0.5, dead_weight=0.5)"


@pytest.mark.parametrize("block_bytes", [None, 3 * 8 * 1000 * 4])  # whole, or 3-row blocks
def test_explanation_scorer_reads_many_outputs_by_blocks(monkeypatch, block_bytes):
    from sklearn_xnn.metrics import _blocks

    if block_bytes is not None:
        monkeypatch.setattr(_blocks, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(0)
    Z = np.abs(rng.normal(size=(58, 12)))
    Y = Z @ rng.normal(size=(12, 1000))  # 1,000 outputs
    model = make_headed(PCA(4)).fit(Z[:40], Y[:40])
    Zt, Yt = Z[40:], Y[40:]
    X = model[:-1].transform(Zt)
    S = X[:, None, :] * model[-1].coef_[None]  # the whole (n, C, K) contributions
    rho = mean_abs_correlation(S)
    expected = faithfulness_r2(Yt, model.predict(Zt)) - 0.5 * rho - 0.5 * dead_fraction(X)
    assert explanation_scorer(model, Zt, Yt) == pytest.approx(expected, rel=1e-9)


def test_grid_search_headed_baseline(data):
    Z, y = data
    grid = GridSearchCV(
        make_headed(PCA()),
        {"pca__n_components": [2, 5, 8]},
        scoring=faithfulness_r2_scorer,
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(Z, y)
    # same numbers as the pipeline's own score (LinearRegression R²)
    default = GridSearchCV(
        make_headed(PCA()),
        {"pca__n_components": [2, 5, 8]},
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(Z, y)
    np.testing.assert_allclose(
        grid.cv_results_["mean_test_score"], default.cv_results_["mean_test_score"], rtol=1e-10
    )
    assert grid.best_params_ == {"pca__n_components": 8}


def test_cross_validate_srae_and_baselines_multimetric(data):
    Z, y = data
    scoring = get_explanation_scorers()
    cv = KFold(2, shuffle=True, random_state=0)
    models = {
        "srae": SRAEExplainer(3, random_state=0, **SMALL_SRAE),
        "nmf": make_headed(NMF(3, init="nndsvda", max_iter=500, random_state=0)),
        "pls": PLSRegression(3),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = {k: cross_validate(m, Z, y, scoring=scoring, cv=cv) for k, m in models.items()}
    for name, res in results.items():
        for key in scoring:
            assert np.isfinite(res[f"test_{key}"]).all(), (name, key)
        assert (res["test_top1_agreement"] >= 0).all() and (res["test_top1_agreement"] <= 1).all()
        assert (res["test_explanation"] <= res["test_faithfulness_r2"] + 1e-12).all()


def test_pls_through_own_predict_and_as_transformer(data):
    Z, y = data
    own = PLSRegression(3).fit(Z[:200], y[:200])
    headed = make_headed(PLSRegression(3)).fit(Z[:200], y[:200])
    assert isinstance(headed[0], PLSEmbedding)
    np.testing.assert_allclose(headed[0].transform(Z[200:]), own.transform(Z[200:]), atol=1e-10)
    # the least-squares head on PLS scores refits PLS's own linear map
    np.testing.assert_allclose(headed.predict(Z[200:]), own.predict(Z[200:]), atol=1e-8)
    assert faithfulness_r2_scorer(own, Z[200:], y[200:]) == pytest.approx(
        headed.score(Z[200:], y[200:]), abs=1e-8
    )
    assert reconstruction_r2_scorer(own, Z[200:]) == pytest.approx(
        reconstruction_r2_scorer(headed, Z[200:]), abs=1e-10
    )


def test_scorer_errors(data):
    Z, y = data
    model = make_headed(Nystroem(n_components=4, random_state=0)).fit(Z, y)
    with pytest.raises(ValueError, match="Nystroem has no inverse_transform"):
        reconstruction_r2_scorer(model, Z, y)
    one = make_headed(PCA(3)).fit(Z, y[:, 0])
    with pytest.raises(ValueError, match="top1_agreement needs at least 2 outputs"):
        top1_agreement_scorer(one, Z, y[:, 0])
    assert sorted(get_explanation_scorers(reconstruction=False, top1=False)) == [
        "explanation",
        "faithfulness_r2",
    ]
