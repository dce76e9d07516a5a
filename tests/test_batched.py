"""Many explainers at once: the stacked fine-tuning, n_init, sweep and SRAEExplainerCV.

Batched members must equal their own fits. On the CPU the stacked network's batched
matrix products sum in another order than a single fit's, so members agree to float
rounding, not bitwise: transform outputs and ``coef_`` to rtol 1e-4 / atol 1e-5 (measured
differences are ~1e-6), the same number of epochs. Fits that
fall back to training on their own are bitwise equal.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_xnn import SRAEExplainer, SRAEExplainerCV, sweep
from sklearn_xnn._fitting import start_fit
from sklearn_xnn._nn import batched
from sklearn_xnn.exceptions import TrainingDivergedError
from sklearn_xnn.metrics import reconstruction_r2_scorer

#: Small and fast; pretrain=1 so that every member's start draws from its generator; one
#: initialisation, so that each member is comparable with its own fit.
SMALL = dict(
    n_init=1,
    n_components=3,
    hidden_layer_sizes=(16, 8),
    max_iter=6,
    pretrain=1,
    batch_size=64,
    device="cpu",
)
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _alone(Z, y, setting):
    return SRAEExplainer(**{**SMALL, **setting}).fit(Z, y)


def assert_same_fit(a, b, Z, exact=False):
    """``a`` and ``b`` are the same explainer (to float rounding unless ``exact``)."""
    close = np.testing.assert_array_equal if exact else _close
    assert a.n_iter_ == b.n_iter_
    close(a.transform(Z), b.transform(Z))
    close(a.inverse_transform(a.transform(Z)), b.inverse_transform(a.transform(Z)))
    if a._has_head:
        close(a.coef_, b.coef_)
        close(a.intercept_, b.intercept_)
    close(np.asarray(a.loss_curve_), np.asarray(b.loss_curve_))


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def _sweep(Z, y, settings):
    return sweep(SRAEExplainer(**SMALL), settings, Z, y)


# ---------------------------------------------------------------------------- equality
def test_members_with_different_seeds_equal_their_own_fits(planted_small):
    Z, y, _ = planted_small
    settings = [{"random_state": s} for s in (0, 1, 2)]
    fits = _sweep(Z, y, settings)
    assert [f._stacked_with for f in fits] == [3, 3, 3]
    for setting, fit in zip(settings, fits, strict=True):
        assert_same_fit(_alone(Z, y, setting), fit, Z)
    # the seeds really differ
    assert np.abs(fits[0].transform(Z) - fits[1].transform(Z)).max() > 1e-3


def test_members_with_different_trade_offs_equal_their_own_fits(planted_small):
    Z, y, _ = planted_small
    settings = [
        {"random_state": 0, "alpha_pullaway": 0.0},
        {"random_state": 0, "alpha_pullaway": 1.0, "alpha_reconstruction": 1.0},
        {"random_state": 1, "faithfulness_tol": 0.05, "max_iter": 3},
        {"random_state": 2, "n_iter_no_change": 1, "tol": 1.0},  # stops after two epochs
    ]
    fits = _sweep(Z, y, settings)
    assert [f._stacked_with for f in fits] == [4] * 4
    assert [f.n_iter_ for f in fits] == [6, 6, 3, 2]  # stopped members were frozen
    for setting, fit in zip(settings, fits, strict=True):
        assert_same_fit(_alone(Z, y, setting), fit, Z)


@pytest.mark.parametrize("case", ["unsupervised", "fixed weights"])
def test_batched_without_the_constraint(planted_small, case):
    Z, y, _ = planted_small
    y = None if case == "unsupervised" else y
    extra = {"faithfulness_tol": None} if case == "fixed weights" else {}
    settings = [{"random_state": s, **extra} for s in (0, 1)]
    for setting, fit in zip(settings, _sweep(Z, y, settings), strict=True):
        assert fit._stacked_with == 2
        assert_same_fit(_alone(Z, y, setting), fit, Z)


def test_members_of_wide_layers_with_many_outputs_draw_their_subsets_as_their_own_fits(
    planted_small, monkeypatch
):
    from sklearn_xnn._nn import losses, training

    Z, y, _ = planted_small
    rng = np.random.default_rng(0)
    Z = np.hstack([Z, np.abs(Z @ rng.normal(size=(Z.shape[1], 280)))])  # 304 > 256 units
    Y = y @ rng.normal(size=(y.shape[1], 100))  # 100 > 64 outputs
    drawn = {training: [], batched: []}
    for module in drawn:  # record every epoch's draws, in the fit and in the stack

        def spy(*args, _seen=drawn[module], **kw):
            _seen.append(losses.epoch_subsets(*args, **kw))
            return _seen[-1]

        monkeypatch.setattr(module, "epoch_subsets", spy)
    alone = _alone(Z, Y, {"random_state": 1})
    fits = _sweep(Z, Y, [{"random_state": s} for s in (0, 1)])
    assert [f._stacked_with for f in fits] == [2, 2]
    # every step reads a subset of the outputs (pull-away) and of the units (reconstruction)
    mine = [step for epoch in drawn[training] for step in epoch]
    assert len(drawn[training]) == alone.n_iter_
    assert {tuple(len(a) for a in step) for step in mine} == {
        (losses.PULLAWAY_OUTPUTS, losses.RECONSTRUCTION_UNITS)
    }
    stacked = [step for epoch in drawn[batched][1::2] for step in epoch]  # member 1's
    for a, b in zip(mine, stacked, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))  # its own draws
    # equal up to rounding, which a sum over 100 outputs and 30 steps grows to ~5e-4
    for a, b in ((alone.transform(Z), fits[1].transform(Z)), (alone.coef_, fits[1].coef_)):
        np.testing.assert_allclose(a, b, rtol=5e-3, atol=1e-4)


@pytest.mark.parametrize("lr", [1e4, 1e6], ids=["loss diverges", "start diverges"])
def test_diverging_members_end_as_their_own_fits(planted_small, lr):
    Z, y, _ = planted_small
    settings = [{"random_state": s, "learning_rate_init": lr} for s in (0, 1)]
    if lr > 1e5:  # no finite network at all: the fit's own error
        with pytest.raises(TrainingDivergedError, match="during layer-wise pre-training"):
            _sweep(Z, y, settings)
        return
    with pytest.warns(ConvergenceWarning, match="non-finite in fine-tuning epoch 1"):
        fits = _sweep(Z, y, settings)
    for setting, fit in zip(settings, fits, strict=True):
        assert fit._stacked_with == 2
        assert_same_fit(_alone(Z, y, setting), fit, Z)


def test_dropout_members_train_alone_exactly(planted_small):
    Z, y, _ = planted_small
    settings = [{"random_state": s, "dropout": 0.1} for s in (0, 1)]
    fits = _sweep(Z, y, settings)
    assert [f._stacked_with for f in fits] == [1, 1]
    for s, fit in zip(settings, fits, strict=True):
        assert_same_fit(_alone(Z, y, s), fit, Z, exact=True)


def test_early_stopping_members_share_their_split_and_train_stacked(planted_small):
    Z, y, _ = planted_small
    runs = [
        start_fit(SRAEExplainer(**SMALL, early_stopping=True, random_state=s), Z, y, False)
        for s in (0, 1)
    ]
    for a, b in zip(runs[0].val[:2], runs[1].val[:2], strict=True):
        assert torch.equal(a[:], b[:])  # every seed holds out the same rows
    assert runs[0].val[0].shape[0] == 30  # validation_fraction=0.1 of 300 rows
    settings = [{"random_state": s, "early_stopping": True} for s in (0, 1)]
    fits = _sweep(Z, y, settings)
    assert [f._stacked_with for f in fits] == [2, 2]
    for s, fit in zip(settings, fits, strict=True):
        alone = _alone(Z, y, s)
        assert_same_fit(alone, fit, Z)
        _close(np.asarray(fit.validation_scores_), np.asarray(alone.validation_scores_))


def test_settings_of_different_shapes_form_separate_batches(planted_small):
    Z, y, _ = planted_small
    grid = {"n_components": [2, 3], "random_state": [0, 1]}
    fits = _sweep(Z, y, grid)
    assert [f.n_components_ for f in fits] == [2, 2, 3, 3]
    assert [f._stacked_with for f in fits] == [2, 2, 2, 2]
    assert_same_fit(_alone(Z, y, {"n_components": 2, "random_state": 1}), fits[1], Z)


def test_a_batch_of_different_shapes_is_refused_with_advice(planted_small):
    Z, y, _ = planted_small
    shared = {}
    runs = [
        start_fit(SRAEExplainer(**{**SMALL, "n_components": k}), Z, y, False, shared)
        for k in (2, 3)
    ]
    jobs = [batched.Job(*r.train, r.cfg, r.generator, r.device, r.reference) for r in runs]
    with pytest.raises(ValueError, match="differs from member 0 in n_components.*one batch"):
        batched.check_batch(jobs)


# ---------------------------------------------------------------------------- n_init
def test_n_init_keeps_the_best_initialisation_reproducibly(planted_small):
    Z, y, _ = planted_small
    a = SRAEExplainer(**{**SMALL, "n_init": 3}, random_state=0).fit(Z, y)
    b = SRAEExplainer(**{**SMALL, "n_init": 3}, random_state=0).fit(Z, y)
    np.testing.assert_array_equal(a.transform(Z), b.transform(Z))
    assert a.init_seeds_[0] == 0 and len(set(a.init_seeds_)) == 3
    assert a.init_scores_.shape == a.init_feasible_.shape == a.init_n_dead_.shape == (3,)
    ranks = zip(~a.init_feasible_, a.init_n_dead_, a.init_scores_, strict=True)
    assert a.best_init_ == min(enumerate(ranks), key=lambda r: r[1])[0]
    assert 0.0 <= a.init_stability_ <= 1.0
    # the kept state is that seed's own fit; the first seed is the n_init=1 fit
    kept = SRAEExplainer(**SMALL, random_state=int(a.init_seeds_[a.best_init_])).fit(Z, y)
    assert_same_fit(kept, a, Z)
    assert a.n_init == 3 and a.random_state == 0  # parameters untouched
    one = SRAEExplainer(**SMALL, random_state=0).fit(Z, y)
    assert not hasattr(one, "init_scores_")
    # refitting with n_init=1 forgets the initialisations
    assert not hasattr(a.set_params(n_init=1).fit(Z, y), "init_scores_")


def test_auto_n_init_is_deprecated_and_fits_one_initialisation(planted_small):
    Z, y, _ = planted_small
    one = SRAEExplainer(**SMALL, random_state=1).fit(Z, y)
    with pytest.warns(FutureWarning, match="n_init='auto' is deprecated"):
        auto = SRAEExplainer(**{**SMALL, "n_init": "auto"}, random_state=1).fit(Z, y)
    assert not hasattr(auto, "init_scores_")
    np.testing.assert_array_equal(auto.transform(Z), one.transform(Z))
    np.testing.assert_array_equal(auto.coef_, one.coef_)


def test_n_init_explainer_clones_pickles_and_validates(planted_small):
    Z, y, _ = planted_small
    est = SRAEExplainer(**{**SMALL, "n_init": 2}, random_state=0)
    assert clone(est).get_params()["n_init"] == 2
    fitted = est.fit(Z, y)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.transform(Z), fitted.transform(Z))
    with pytest.raises(InvalidParameterError, match="n_init"):
        SRAEExplainer(n_init=0).fit(Z, y)


# ---------------------------------------------------------------------------- model selection
def test_sraeexplainercv_chooses_as_grid_search_does(planted_small):
    Z, y, _ = planted_small
    xnn = SRAEExplainer(**SMALL, random_state=0)
    grid = {"alpha_pullaway": [0.0, 1.0], "alpha_reconstruction": [0.1, 3.0]}
    cv = KFold(2, shuffle=True, random_state=0)
    ours = SRAEExplainerCV(xnn, grid, cv=cv).fit(Z, y)
    theirs = GridSearchCV(xnn, grid, cv=cv).fit(Z, y)
    assert ours.best_params_ == theirs.best_params_
    for key in ("mean_test_score", "split0_test_score", "split1_test_score"):
        np.testing.assert_allclose(ours.cv_results_[key], theirs.cv_results_[key], atol=1e-5)
    np.testing.assert_array_equal(ours.cv_results_["rank_test_score"],
                                  theirs.cv_results_["rank_test_score"])  # fmt: skip
    assert list(ours.cv_results_["param_alpha_pullaway"]) == [0.0, 0.0, 1.0, 1.0]
    _close(ours.transform(Z), theirs.best_estimator_.transform(Z))
    assert ours.score(Z, y) == pytest.approx(theirs.score(Z, y), abs=1e-5)


def test_sraeexplainercv_works_inside_sklearn(planted_small):
    Z, y, _ = planted_small
    search = SRAEExplainerCV(SRAEExplainer(**SMALL), {"random_state": [0, 1]}, cv=2)
    params = clone(search).get_params()
    assert params["estimator__max_iter"] == SMALL["max_iter"] and params["cv"] == 2
    pipe = make_pipeline(StandardScaler(), search)
    scores = cross_val_score(pipe, Z, y, cv=2)
    assert scores.shape == (2,) and np.all(scores > 0.5)
    fitted = pipe.fit(Z, y)
    assert fitted.predict(Z).shape == y.shape
    assert list(fitted.get_feature_names_out()) == [f"sraeexplainer{k}" for k in range(3)]
    inner = pickle.loads(pickle.dumps(fitted[-1]))
    np.testing.assert_array_equal(inner.contributions(Z), fitted[-1].contributions(Z))
    frame = inner.set_output(transform="pandas").transform(Z)
    assert list(frame.columns) == [f"sraeexplainer{k}" for k in range(3)]
    with pytest.raises(ValueError, match="score needs y"):
        inner.score(Z)


def test_sraeexplainercv_unsupervised_scores_the_reconstruction_as_gridsearchcv(planted_small):
    Z, _, _ = planted_small
    grid = {"alpha_pullaway": [0.0, 1.0]}
    cv = KFold(2, shuffle=True, random_state=0)
    xnn = SRAEExplainer(**SMALL, random_state=0)
    ours = SRAEExplainerCV(xnn, grid, cv=cv).fit(Z)
    theirs = GridSearchCV(xnn, grid, cv=cv).fit(Z)
    np.testing.assert_allclose(
        ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"], atol=1e-5
    )
    assert ours.score(Z) == pytest.approx(ours.best_estimator_.score(Z), abs=1e-12)
    search = SRAEExplainerCV(SRAEExplainer(**SMALL), cv=2)
    search.set_params(scoring=reconstruction_r2_scorer, refit=False).fit(Z)
    assert search.best_index_ == 0 and np.isfinite(search.best_score_)
    with pytest.raises(AttributeError, match="has no attribute 'transform'"):
        search.transform(Z)
    # nothing claims to transform (set_output's wrappers keep available_if's check)
    assert not hasattr(search, "transform") and not hasattr(search, "fit_transform")
    assert not hasattr(clone(search), "fit_transform")  # refused before any fit


def test_sweep_refuses_bad_input(planted_small):
    Z, y, _ = planted_small
    with pytest.raises(TypeError, match="batches SRAEExplainer fits; got StandardScaler"):
        sweep(StandardScaler(), {"with_mean": [True]}, Z, y)
    with pytest.raises(ValueError, match="describes no parameter setting"):
        sweep(SRAEExplainer(**SMALL), [], Z, y)
    with pytest.raises(ValueError, match="Invalid parameter 'alpha'"):
        sweep(SRAEExplainer(**SMALL), {"alpha": [1.0]}, Z, y)
    with pytest.raises(InvalidParameterError, match="alpha_pullaway"):
        sweep(SRAEExplainer(**SMALL), [{"alpha_pullaway": -1.0}], Z, y)


def test_decision_faithful_members_equal_their_own_fits(planted_small):
    # faithfulness="kl" and the K chosen by n_components="auto" travel through the batch
    Z, y, _ = planted_small
    settings = [{"random_state": s, "faithfulness": "kl", "n_components": "auto"} for s in (0, 1)]
    fits = _sweep(Z, y, settings)
    assert [f._stacked_with for f in fits] == [2, 2]
    for setting, fit in zip(settings, fits, strict=True):
        alone = _alone(Z, y, setting)
        assert fit.n_components_ == alone.n_components_
        assert_same_fit(alone, fit, Z)
        assert fit.faithfulness_ == pytest.approx(alone.faithfulness_, rel=1e-4, abs=1e-7)


def test_n_init_judges_a_kl_fit_feasible_by_its_kl(planted_small):
    Z, y, _ = planted_small
    params = dict(SMALL, max_iter=3, faithfulness="kl", faithfulness_tol=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = SRAEExplainer(**{**params, "n_init": 3}, random_state=0).fit(Z, y)
        kls = [SRAEExplainer(**params, random_state=int(s)).fit(Z, y).faithfulness_
               for s in est.init_seeds_]  # fmt: skip
    target = min(0.05, est.faithfulness_bound_)  # a KL: lower is better
    assert list(est.init_feasible_) == [kl <= target + 1e-9 for kl in kls]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        params["faithfulness_tol"] = 1e-6  # a KL target no member reaches
        strict = SRAEExplainer(**{**params, "n_init": 3}, random_state=0).fit(Z, y)
    assert min(kls) > 1e-6 and not strict.init_feasible_.any()
