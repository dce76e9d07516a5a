"""SRAEExplainerCV and sweep as scikit-learn's searches: fresh fits, weighted scores, grids.

References are scikit-learn's own: ``GridSearchCV`` for what a refit=False search offers,
``ParameterGrid`` for what a grid means, an explainer's own ``score`` for a weighted score.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.inspection import permutation_importance
from sklearn.metrics import r2_score
from sklearn.model_selection import ParameterGrid, ParameterSampler

from sklearn_xnn import SRAEExplainer, SRAEExplainerCV, sweep
from sklearn_xnn.datasets import make_concept_activations

#: Every method a refitted search delegates to its best explainer.
DELEGATED = (
    "transform",
    "fit_transform",
    "inverse_transform",
    "predict",
    "contributions",
    "score",
    "get_feature_names_out",
)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture(scope="module")
def data():
    Z, y, _ = make_concept_activations(300, 16, random_state=0)
    return Z, y


@pytest.fixture(scope="module")
def other_data():
    """Other rows with another number of features: a model of ``data`` cannot serve them."""
    Z, y, _ = make_concept_activations(300, 12, random_state=1)
    return Z, y


def _explainer():
    return SRAEExplainer(3, hidden_layer_sizes=(16, 8), max_iter=2, device="cpu", random_state=0)


def _frame(Z):
    return pd.DataFrame(Z, columns=[f"z{i}" for i in range(Z.shape[1])])


# ------------------------------------------------------------------- a fit forgets the last one
def test_refit_false_after_refit_true_keeps_nothing_of_the_refitted_explainer(data, other_data):
    (Z1, y1), (Z2, y2) = data, other_data
    search = SRAEExplainerCV(_explainer(), {"n_components": [2, 3]}, cv=2).fit(_frame(Z1), y1)
    assert hasattr(search, "predict") and hasattr(search, "feature_names_in_")
    search.set_params(refit=False)  # as GridSearchCV: refit=False offers no method, fitted or not
    assert [m for m in DELEGATED if hasattr(search, m)] == []
    search.fit(Z2, y2)
    assert not hasattr(search, "best_estimator_")
    assert not hasattr(search, "feature_names_in_")  # Z2 has no column names
    assert search.n_features_in_ == 12 and search.best_params_ in search.cv_results_["params"]
    assert [m for m in DELEGATED if hasattr(search, m)] == []
    with pytest.raises(AttributeError, match="has no attribute 'predict'"):
        search.predict(Z2)
    with pytest.raises(AttributeError, match="has no attribute 'score'"):
        search.score(Z2, y2)


def test_refit_true_after_refit_false_answers_from_the_new_rows_only(data, other_data):
    (Z1, y1), (Z2, y2) = data, other_data
    search = SRAEExplainerCV(_explainer(), {"n_components": [2, 3]}, cv=2).fit(_frame(Z1), y1)
    search.set_params(refit=False).fit(Z2, y2)
    search.set_params(refit=True)  # not refitted yet: no explainer to answer with
    assert [m for m in DELEGATED if hasattr(search, m)] == []
    search.fit(Z2, y2)
    assert search.best_estimator_.n_features_in_ == 12
    assert not hasattr(search, "feature_names_in_")
    assert [m for m in DELEGATED if not hasattr(search, m)] == []
    own = clone(_explainer()).set_params(**search.best_params_).fit(Z2, y2)
    np.testing.assert_allclose(search.predict(Z2), own.predict(Z2), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- weighted scores
@pytest.mark.parametrize("scoring", [None, "r2"])
def test_score_takes_sample_weight_as_the_best_explainer_does(data, scoring):
    Z, y = data
    w = np.random.RandomState(0).uniform(size=Z.shape[0])
    search = SRAEExplainerCV(_explainer(), {"alpha_pullaway": [0.0, 0.5]}, cv=2, scoring=scoring)
    search.fit(Z, y)
    best = search.best_estimator_
    expected = best.score(Z, y, sample_weight=w)
    if scoring == "r2":
        expected = r2_score(y, best.predict(Z), sample_weight=w)
    assert search.score(Z, y, sample_weight=w) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert search.score(Z, y, sample_weight=w) != pytest.approx(search.score(Z, y), abs=1e-6)


def test_permutation_importance_passes_sample_weight_through_the_search(data):
    Z, y = data
    w = np.random.RandomState(0).uniform(size=Z.shape[0])
    search = SRAEExplainerCV(_explainer(), {"alpha_pullaway": [0.0, 0.5]}, cv=2).fit(Z, y)
    kw = dict(n_repeats=2, random_state=0, sample_weight=w)
    ours = permutation_importance(search, Z, y, **kw).importances
    theirs = permutation_importance(search.best_estimator_, Z, y, **kw).importances
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------ what a grid means
@pytest.mark.parametrize(
    "grid",
    [
        [{"n_components": (2, 3)}],
        [{"n_components": np.array([2, 3])}, {"alpha_pullaway": (0.0, 0.5)}],
        [{"n_components": range(2, 4), "alpha_pullaway": [0.1]}, {}],
        ({"hidden_layer_sizes": [(16, 8), (8,)]},),
    ],
    ids=["tuple", "array and tuple", "range and an empty dict", "tuple of dicts"],
)
def test_grids_mean_what_they_mean_in_parameter_grid(data, grid):
    Z, y = data
    expected = list(ParameterGrid(grid))
    search = SRAEExplainerCV(_explainer(), grid, cv=2, refit=False).fit(Z, y)
    assert search.cv_results_["params"] == expected
    fits = sweep(_explainer(), grid, Z, y)
    fitted = [{k: f.get_params()[k] for k in s} for f, s in zip(fits, expected, strict=True)]
    assert fitted == expected


def test_lists_of_single_settings_stay_settings_and_mixed_lists_are_refused(data):
    Z, y = data
    settings = [
        {"n_components": 2, "hidden_layer_sizes": (16, 8)},
        {"n_components": 3, "hidden_layer_sizes": (8,)},
    ]
    with pytest.raises(TypeError, match="needs to be a list or a numpy array"):
        ParameterGrid(settings)  # no grid: the settings themselves
    fits = sweep(_explainer(), settings, Z, y)
    assert [(f.n_components_, f.hidden_layer_sizes) for f in fits] == [(2, (16, 8)), (3, (8,))]
    sampler = ParameterSampler({"hidden_layer_sizes": [(16, 8), (8,)]}, 2, random_state=0)
    fits = sweep(_explainer(), sampler, Z, y)  # its draws are settings, though all sequences
    assert [f.hidden_layer_sizes for f in fits] == [s["hidden_layer_sizes"] for s in sampler]
    mixed = [{"n_components": [2, 3]}, {"alpha_pullaway": 0.5}]
    with pytest.raises(ValueError, match=r"mixes grids and single settings.*one-element list"):
        SRAEExplainerCV(_explainer(), mixed, cv=2).fit(Z, y)
    with pytest.raises(TypeError, match="must hold dicts"):
        sweep(_explainer(), [("n_components", 2)], Z, y)


def test_a_random_state_in_a_grid_is_copied_for_every_fit_as_in_grid_search(data):
    # one RandomState object, shared by every fold's fits and the refit, drew on from fit
    # to fit: the scores moved 2e-5 - 5e-5 from GridSearchCV's, the refit 9e-4
    from sklearn.model_selection import GridSearchCV

    Z, y = data
    xnn = SRAEExplainer(2, hidden_layer_sizes=(8, 4), max_iter=2, device="cpu")
    grid = {"random_state": [np.random.RandomState(1)], "alpha_pullaway": [0.1, 1.0]}
    ours = SRAEExplainerCV(xnn, grid, cv=2).fit(Z, y)
    theirs = GridSearchCV(xnn, grid, cv=2).fit(Z, y)
    for k in range(2):
        key = f"split{k}_test_score"
        np.testing.assert_allclose(ours.cv_results_[key], theirs.cv_results_[key], atol=1e-6)
    np.testing.assert_allclose(ours.transform(Z), theirs.transform(Z), atol=1e-5)


def test_scorers_a_search_cannot_use_are_refused_with_the_fix(data):
    Z, y = data
    xnn = SRAEExplainer(2, hidden_layer_sizes=(8, 4), max_iter=1, device="cpu")
    with pytest.raises(ValueError, match="scoring='r2' needs .* pass the logits y"):
        SRAEExplainerCV(xnn, {"alpha_pullaway": [0.1]}, cv=2, scoring="r2").fit(Z)
    with pytest.raises(ValueError, match="takes one scorer, got a dict of \\['a', 'b'\\]"):
        SRAEExplainerCV(xnn, scoring={"a": "r2", "b": "r2"}).fit(Z, y)
