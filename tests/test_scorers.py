"""Scorers in GridSearchCV / cross_validate, for SRAE and for headed baselines."""

import pickle
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import NMF, PCA
from sklearn.inspection import permutation_importance
from sklearn.kernel_approximation import Nystroem
from sklearn.metrics import r2_score
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
    # weighted, by blocks too: the score of the rows repeated as often as their weight
    w = np.arange(len(Zt)) % 3
    repeated = explanation_scorer(model, np.repeat(Zt, w, axis=0), np.repeat(Yt, w, axis=0))
    assert explanation_scorer(model, Zt, Yt, sample_weight=w) == pytest.approx(repeated, rel=1e-9)


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


# ----------------------------------------------------------------------------- sample_weight
#: Every library scorer, by its key in get_explanation_scorers.
ALL_SCORERS = get_explanation_scorers(kl=True)


@pytest.mark.parametrize("name", sorted(ALL_SCORERS))
def test_weighted_scorers_score_the_rows_repeated(srae, data, name):
    scorer = ALL_SCORERS[name]
    Z, y = data
    Zt, yt = Z[200:], y[200:]
    w = np.random.default_rng(0).integers(0, 4, len(Zt))  # zeros drop rows
    repeated = scorer(srae, np.repeat(Zt, w, axis=0), np.repeat(yt, w, axis=0))
    # SRAE's inference is row-wise: the repeated rows get the same rebuilds, so only the
    # order of the sums differs
    assert scorer(srae, Zt, yt, sample_weight=w) == pytest.approx(repeated, abs=1e-10)
    assert scorer(srae, Zt, yt, sample_weight=2.5 * w) == pytest.approx(repeated, abs=1e-10)
    unweighted = scorer(srae, Zt, yt)
    assert scorer(srae, Zt, yt, np.ones(len(Zt))) == pytest.approx(unweighted, abs=1e-12)
    # the weights are used, not ignored: those scores differ far beyond the tolerances above
    assert abs(repeated - unweighted) > 1e-6


def test_weighted_r2_scorers_match_sklearns_r2_score(srae, data):
    Z, y = data
    Zt, yt = Z[200:], y[200:]
    w = np.random.default_rng(1).uniform(0.0, 2.0, len(Zt))
    expected = r2_score(yt, srae.predict(Zt), sample_weight=w)
    assert faithfulness_r2_scorer(srae, Zt, yt, sample_weight=w) == pytest.approx(
        expected, rel=1e-10
    )
    # pooled reconstruction R²: sklearn's variance_weighted when no unit is constant
    pca = PCA(3).fit(Z[:200])
    expected = r2_score(
        Zt,
        pca.inverse_transform(pca.transform(Zt)),
        sample_weight=w,
        multioutput="variance_weighted",
    )
    assert reconstruction_r2_scorer(pca, Zt, sample_weight=w) == pytest.approx(expected, rel=1e-10)


def test_permutation_importance_passes_weights_to_the_scorers(srae, data):
    Z, y = data
    Zt, yt = Z[200:260], y[200:260]
    kw = dict(n_repeats=1, random_state=0)
    w = np.random.default_rng(2).integers(0, 4, len(Zt)).astype(float)
    plain = permutation_importance(srae, Zt, yt, scoring=faithfulness_r2_scorer, **kw)
    uniform = permutation_importance(
        srae, Zt, yt, scoring=faithfulness_r2_scorer, sample_weight=np.full(len(Zt), 2.0), **kw
    )
    np.testing.assert_allclose(uniform.importances, plain.importances, atol=1e-10)
    weighted = permutation_importance(
        srae, Zt, yt, scoring=faithfulness_r2_scorer, sample_weight=w, **kw
    )
    assert np.abs(weighted.importances - plain.importances).max() > 1e-3
    # a scoring= dict: sklearn's multi-metric scorer hands every scorer the weights
    scoring = get_explanation_scorers(reconstruction=False)
    together = permutation_importance(srae, Zt, yt, scoring=scoring, sample_weight=w, **kw)
    assert sorted(together) == sorted(scoring)
    np.testing.assert_allclose(
        together["faithfulness_r2"].importances, weighted.importances, atol=1e-12
    )


def test_cross_validate_routes_weights_to_the_scorers(data):
    Z, y = data
    w = np.random.default_rng(3).uniform(0.0, 3.0, len(Z))
    scoring = get_explanation_scorers(kl=True)
    with sklearn.config_context(enable_metadata_routing=True):
        res = cross_validate(
            PLSRegression(3),  # its fit takes no weights: they go to the scorers only
            Z,
            y,
            scoring=scoring,
            cv=KFold(2, shuffle=True, random_state=0),
            params={"sample_weight": w},
            return_estimator=True,
            return_indices=True,
        )
    for fold, (est, test) in enumerate(zip(res["estimator"], res["indices"]["test"], strict=True)):
        for name, scorer in scoring.items():
            expected = scorer(est, Z[test], y[test], sample_weight=w[test])
            assert res[f"test_{name}"][fold] == pytest.approx(expected, abs=1e-12), name
            assert expected != pytest.approx(scorer(est, Z[test], y[test]), abs=1e-6), name


@pytest.mark.parametrize("name", sorted(ALL_SCORERS))
def test_scorers_refuse_bad_weights(srae, data, name):
    scorer = ALL_SCORERS[name]
    Z, y = data
    Zt, yt = Z[200:210], y[200:210]
    bad = {
        "Negative values": -np.ones(10),
        "at least one non-zero": np.zeros(10),
        r"expected \(10,\)": np.ones(9),
        "sample_weight contains NaN": np.full(10, np.nan),
    }
    for message, w in bad.items():
        with pytest.raises(ValueError, match=message):
            scorer(srae, Zt, yt, sample_weight=w)


def test_score_refuses_negative_weights_as_the_scorers_do(srae, data):
    Z, y = data
    Zt, yt = Z[200:], y[200:]
    mixed = np.where(np.arange(len(Zt)) % 2 == 0, 3.0, -1.0)  # +3 / -1: a plausible number
    scorer = get_explanation_scorers()["faithfulness_r2"]
    for weights in (mixed, -np.ones(len(Zt))):
        with pytest.raises(ValueError, match="Negative values"):
            scorer(srae, Zt, yt, sample_weight=weights)
        with pytest.raises(ValueError, match="Negative values"):
            srae.score(Zt, yt, sample_weight=weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unsupervised = SRAEExplainer(3, random_state=0, **SMALL_SRAE).fit(Z[:200])
    with pytest.raises(ValueError, match="Negative values"):
        unsupervised.score(Zt, sample_weight=mixed)
    assert srae.score(Zt, yt, sample_weight=np.ones(len(Zt))) == srae.score(Zt, yt)
