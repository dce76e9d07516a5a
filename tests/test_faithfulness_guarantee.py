"""The faithfulness guarantee: training starts at, and never falls below, the linear bound."""

import warnings

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._fitting import start_fit
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.metrics import n_significant


def _fit(Z, y, k=5, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SRAEExplainer(k, device="cpu", **kw).fit(Z, y)


def _rank_k_heldout(Ztr, ytr, Zte, yte, k=5):
    """Held-out uniform R² of the rank-k reduced-rank regression fitted on standardised y."""
    sc = StandardScaler().fit(ytr)
    lin = LinearRegression().fit(Ztr, sc.transform(ytr))
    _, _, vt = np.linalg.svd(lin.predict(Ztr) - lin.predict(Ztr).mean(0), full_matrices=False)
    proj = vt[:k].T @ vt[:k]
    pred = sc.inverse_transform((lin.predict(Zte) - lin.intercept_) @ proj + lin.intercept_)
    return r2_score(yte, pred)


@pytest.fixture(scope="module", params=["non-negative", "signed"])
def planted(request):
    Z, y, _ = make_concept_activations(2000, 64, random_state=3)
    if request.param == "signed":
        Z = StandardScaler().fit_transform(Z)
    return Z[:1400], y[:1400], Z[1400:], y[1400:]


@pytest.mark.parametrize("seed", [0, 1])
def test_one_epoch_is_already_as_faithful_as_the_bound_allows(planted, seed):
    Ztr, ytr, _, _ = planted
    est = _fit(Ztr, ytr, max_iter=1, random_state=seed)
    assert est.faithfulness_bound_ > 0.9
    assert est.faithfulness_ >= est.faithfulness_bound_ - est.faithfulness_tol - 1e-9
    assert r2_score(ytr, est.predict(Ztr)) >= est.faithfulness_bound_ - est.faithfulness_tol - 1e-6


def test_default_fit_is_faithful_sparse_and_alive_on_held_out_rows(planted):
    Ztr, ytr, Zte, yte = planted
    est = _fit(Ztr, ytr, random_state=0)
    bound = _rank_k_heldout(Ztr, ytr, Zte, yte)
    assert est.score(Zte, yte) >= bound - 0.01  # measured: within 0.006 of it
    assert est.faithfulness_ >= est.faithfulness_bound_ - est.faithfulness_tol - 1e-9
    pca = PCA(5).fit(Ztr)
    head = LinearRegression().fit(pca.transform(Ztr), ytr)
    S_pca = pca.transform(Zte)[:, None, :] * head.coef_[None]
    assert np.mean(n_significant(est.contributions(Zte))) < np.mean(n_significant(S_pca))
    assert est.n_dead_components_ == 0


def test_fixed_weight_objective_is_still_reachable(planted):
    Ztr, ytr, _, _ = planted
    est = _fit(Ztr, ytr, faithfulness_tol=None, max_iter=3, random_state=0)
    assert est.faithfulness_multiplier_ == est.alpha_faithfulness
    ref = SRAEExplainer.reference()
    assert ref.faithfulness_tol is None and ref.pretrain == 10 and ref.max_iter == 150


def test_a_refit_without_logits_keeps_no_constraint_of_the_earlier_fit():
    # train_config reads the stored constraint (for partial_fit after fit); a new fit
    # without y must not inherit the target and output weights of a fit with y
    Z, y, _ = make_concept_activations(300, 24, n_concepts=3, n_outputs=4, random_state=0)
    est = _fit(Z, y, hidden_layer_sizes=(16, 8), max_iter=2, random_state=0)
    assert start_fit(est, Z, y, False).cfg.faith_target is not None
    run = start_fit(est, Z, None, False)
    fresh = start_fit(
        SRAEExplainer(5, device="cpu", hidden_layer_sizes=(16, 8), max_iter=2, random_state=0),
        Z,
        None,
        False,
    )
    assert run.cfg.faith_target is None and run.cfg.output_weights is None
    assert run.cfg == fresh.cfg
    # and the refitted explainer keeps no head, no logit scale, no faithfulness of it
    unsupervised = _fit(Z, None, hidden_layer_sizes=(16, 8), max_iter=2, random_state=0)
    refit = est.fit(Z)
    fitted = lambda e: sorted(k for k in vars(e) if k.endswith("_") and k[0] != "_")  # noqa: E731
    assert fitted(refit) == fitted(unsupervised)
    assert not hasattr(refit, "predict")  # no head: predict is not offered


def _rank_k_train_r2(Z, y, multioutput, k=5):
    """Training R² of the rank-k reduced-rank regression in the ``multioutput`` average:
    on per-output standardised ``y`` for the uniform average, on ``y`` itself for the
    variance-weighted one."""
    scale = y.std(0) if multioutput == "uniform_average" else np.ones(y.shape[1])
    fitted = LinearRegression().fit(Z, y / scale).predict(Z)
    centred = fitted - fitted.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    pred = (centred @ vt[:k].T @ vt[:k] + fitted.mean(0)) * scale
    return r2_score(y, pred, multioutput=multioutput)


@pytest.mark.parametrize("rescale", [True, False])  # False: outputs in the caller's units
@pytest.mark.parametrize("multioutput", ["uniform_average", "variance_weighted"])
def test_multioutput_decides_the_bound_the_constraint_and_the_score(multioutput, rescale):
    Z, y, _ = make_concept_activations(1600, 48, random_state=1)
    y = y * np.linspace(0.1, 10.0, y.shape[1])  # outputs of very different spreads
    Ztr, ytr, Zte, yte = Z[:1200], y[:1200], Z[1200:], y[1200:]
    est = _fit(Ztr, ytr, 3, multioutput=multioutput, rescale=rescale, random_state=0)
    # the bound is the rank-K linear predictor's R² in that average (up to its ridge)
    assert est.faithfulness_bound_ == pytest.approx(
        _rank_k_train_r2(Ztr, ytr, multioutput, k=3), abs=2e-3
    )
    train = r2_score(ytr, est.predict(Ztr), multioutput=multioutput)
    assert train >= est.faithfulness_bound_ - est.faithfulness_tol - 1e-6
    assert est.faithfulness_ == pytest.approx(train, abs=1e-6)
    held = r2_score(yte, est.predict(Zte), multioutput=multioutput)
    assert est.score(Zte, yte) == pytest.approx(held, abs=1e-12)


def test_one_unit_on_a_scale_of_its_own_keeps_the_bound_and_the_fit():
    Z, y, _ = make_concept_activations(1200, 32, random_state=0)
    reference = _rank_k_train_r2(Z, y, "uniform_average")  # least squares: any unit scale
    for factor in (1.0, 1e4, 1e6):  # one unit in other units (e.g. before a normalisation)
        Zs = Z.copy()
        Zs[:, 0] *= factor
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            est = SRAEExplainer(5, random_state=0, max_iter=3).fit(Zs, y)
        assert est.faithfulness_bound_ == pytest.approx(reference, abs=2e-3), factor
        assert est.faithfulness_ >= est.faithfulness_bound_ - est.faithfulness_tol - 1e-6
        scales = [w for w in rec if "vary on very different scales" in str(w.message)]
        assert bool(scales) == (factor > 1e4), factor  # float32 keeps 4 orders of magnitude


def test_units_on_a_tiny_scale_that_carry_y_keep_the_bound_and_the_fit():
    rng = np.random.default_rng(0)
    factors, noise = rng.standard_normal((1200, 3)), rng.standard_normal((1200, 4))
    carry = factors @ rng.standard_normal((3, 4)) + 0.1 * rng.standard_normal((1200, 4))
    other = noise @ rng.standard_normal((4, 12)) + 0.1 * rng.standard_normal((1200, 12))
    y = factors @ rng.standard_normal((3, 5)) + 0.05 * rng.standard_normal((1200, 5))
    reference = _rank_k_train_r2(np.hstack([carry, other]), y, "uniform_average", k=3)
    assert reference > 0.99  # the four units that carry y are a minority
    for factor in (1e-3, 1e-5, 1e-8):  # in other units than the rest of the layer
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            est = SRAEExplainer(3, random_state=0, max_iter=3).fit(
                np.hstack([carry * factor, other]), y
            )
        scales = [w for w in rec if "vary on very different scales" in str(w.message)]
        assert bool(scales) == (factor < 1e-6), factor  # the float64 bound keeps 6 orders
        if not scales:
            assert est.faithfulness_bound_ == pytest.approx(reference, abs=2e-3), factor
            assert est.faithfulness_ >= est.faithfulness_bound_ - est.faithfulness_tol - 1e-6


def test_loss_curve_goes_down_and_the_faithfulness_stays_near_the_bound(planted):
    Ztr, ytr, _, _ = planted
    est = _fit(Ztr, ytr, random_state=0)
    assert len(est.loss_curve_) == len(est.faithfulness_history_) == est.n_iter_
    assert est.loss_curve_[-1] < est.loss_curve_[0]
    # epochs may leave the constraint while the multiplier settles; the kept one meets it
    assert max(est.faithfulness_history_) >= est.faithfulness_bound_ - est.faithfulness_tol
    assert est.faithfulness_ >= est.faithfulness_bound_ - est.faithfulness_tol - 1e-9


def test_the_kept_epoch_is_the_sparsest_feasible_one(planted):
    Ztr, ytr, _, _ = planted
    est = _fit(Ztr, ytr, random_state=0)
    curve, history = est.n_significant_curve_, np.asarray(est.faithfulness_history_)
    assert curve.shape == (est.n_iter_,)
    target = est.faithfulness_bound_ - est.faithfulness_tol
    # an epoch that breaks the constraint has no count; one with a count meets it
    assert np.isnan(curve[history < target - 1e-9]).all()
    assert (history[~np.isnan(curve)] >= target - 1e-9).all()
    kept = int(np.nanargmin(curve))
    assert est.faithfulness_ == pytest.approx(history[kept], abs=1e-9)
    # the count is the metric's, on the training rows, of the fitted explainer
    assert n_significant(est.contributions(Ztr)) == pytest.approx(curve[kept], abs=0.01)
    # partial_fit continues every per-epoch curve
    est.partial_fit(Ztr[:700], ytr[:700])
    assert len(est.loss_curve_) == len(est.faithfulness_history_) == est.n_iter_
    assert est.n_significant_curve_.shape == (est.n_iter_,)
    assert _fit(Ztr, ytr, faithfulness_tol=None, max_iter=2).n_significant_curve_.shape == (0,)
