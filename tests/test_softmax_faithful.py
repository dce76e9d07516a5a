"""Decision faithfulness (``faithfulness="kl"``) and the automatic number of x-features."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import load_digits_activations, make_concept_activations
from sklearn_xnn.metrics import softmax_kl, top1_agreement


def _fit(Z, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SRAEExplainer(device="cpu", **kw).fit(Z, y)


def _rank_k_predictions(Z, y, k):
    """Training predictions of the rank-k reduced-rank regression on standardised y
    (ordinary least squares, without the bound's small ridge)."""
    sc = StandardScaler().fit(y)
    fitted = LinearRegression().fit(Z, sc.transform(y)).predict(Z)
    centre = fitted.mean(0)
    _, _, vt = np.linalg.svd(fitted - centre, full_matrices=False)
    return sc.inverse_transform((fitted - centre) @ vt[:k].T @ vt[:k] + centre)


@pytest.fixture(scope="module")
def digits():
    return load_digits_activations(random_state=0)


# ----------------------------------------------------------------------------- "kl"
def test_kl_rebuilds_the_digits_cnn_decisions_from_five_features(digits):
    # measured on seeds 0, 1, 2: held-out top-1 0.983 / 0.980 / 0.983 with "kl", 0.900 -
    # 0.904 with "mse"; held-out KL 0.033 - 0.039 against 0.29
    d = digits
    kl = _fit(d.Z_train, d.y_train, n_components=5, faithfulness="kl", random_state=0)
    mse = _fit(d.Z_train, d.y_train, n_components=5, random_state=0)
    top1_kl = top1_agreement(d.y_test, kl.predict(d.Z_test))
    top1_mse = top1_agreement(d.y_test, mse.predict(d.Z_test))
    assert top1_kl >= 0.97
    assert top1_kl >= top1_mse + 0.05
    assert softmax_kl(d.y_test, kl.predict(d.Z_test)) < 0.5 * softmax_kl(
        d.y_test, mse.predict(d.Z_test)
    )
    # the reference is the rank-5 linear predictor's training KL; the fit is far below it
    assert kl.faithfulness_ < 0.2 * kl.faithfulness_bound_
    assert kl.faithfulness_ == pytest.approx(softmax_kl(d.y_train, kl.predict(d.Z_train)), rel=1e-3)


@pytest.mark.parametrize("signed", [False, True])
def test_kl_is_never_less_decision_faithful_than_the_linear_reference(signed):
    Z, y, _ = make_concept_activations(800, 32, n_outputs=6, random_state=1)
    if signed:
        Z = StandardScaler().fit_transform(Z)
    est = _fit(
        Z, y, n_components=3, faithfulness="kl", faithfulness_tol=10.0, max_iter=1, random_state=0
    )
    reference = softmax_kl(y, _rank_k_predictions(Z, y, 3))
    assert est.faithfulness_bound_ == pytest.approx(reference, rel=0.02)
    # a tolerance above the reference is capped by it: training may not lose decisions
    assert est.faithfulness_ <= est.faithfulness_bound_ * (1 + 1e-6)


def test_temperature_sets_the_softmax_the_constraint_compares():
    Z, y, _ = make_concept_activations(600, 24, n_outputs=5, random_state=2)
    warm = _fit(
        Z, y, n_components=3, faithfulness="kl", temperature=3.0, max_iter=2, random_state=0
    )
    assert warm.faithfulness_bound_ == pytest.approx(
        softmax_kl(y, _rank_k_predictions(Z, y, 3), temperature=3.0), rel=0.02
    )
    assert warm.faithfulness_ == pytest.approx(
        softmax_kl(y, warm.predict(Z), temperature=3.0), rel=1e-3
    )


def test_kl_needs_several_logits():
    Z, y, _ = make_concept_activations(200, 16, n_outputs=3, random_state=0)
    with pytest.raises(ValueError, match=r'faithfulness="kl" .* at least 2 columns.*got 1'):
        SRAEExplainer(2, faithfulness="kl").fit(Z, y[:, 0])
    with pytest.raises(ValueError, match=r"got 0"):
        SRAEExplainer(2, faithfulness="kl").fit(Z)
    with pytest.raises(ValueError, match="temperature"):
        SRAEExplainer(2, faithfulness="kl", temperature=0.0).fit(Z, y)


def test_a_kl_target_no_epoch_meets_is_reported():
    # 100 decisions from 3 x-features: the linear start misses 0.005 nats, and so does
    # every epoch; the explainer keeps the closest one and says so
    Z, y, _ = make_concept_activations(600, 32, n_outputs=100, random_state=0)
    est = SRAEExplainer(3, faithfulness="kl", max_iter=3, random_state=0, device="cpu")
    with pytest.warns(ConvergenceWarning, match=r"No epoch, nor the start, met the constr"):
        est.fit(Z, y)
    assert est.faithfulness_ > min(est.faithfulness_tol, est.faithfulness_bound_)
    assert np.isnan(est.n_significant_curve_).all()
    with warnings.catch_warnings():  # "mse": the start meets its target, nothing to report
        warnings.simplefilter("error", ConvergenceWarning)
        SRAEExplainer(3, random_state=0, device="cpu").fit(Z, y)


def test_kl_partial_fit_and_persistence_keep_the_decision_constraint(tmp_path):
    Z, y, _ = make_concept_activations(600, 24, n_outputs=5, random_state=4)
    est = SRAEExplainer(3, faithfulness="kl", hidden_layer_sizes=(32, 16), random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.partial_fit(Z[:400], y[:400]).partial_fit(Z[400:], y[400:])
    path = tmp_path / "kl.safetensors"
    est.save(path)
    back = SRAEExplainer.load(path)
    np.testing.assert_array_equal(back.predict(Z), est.predict(Z))
    assert back.get_params()["faithfulness"] == "kl"
    assert back.faithfulness_bound_ == est.faithfulness_bound_
    assert clone(est).get_params()["temperature"] == 1.0


# ----------------------------------------------------------------------------- auto K
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_picks_the_number_of_planted_concepts(seed):
    Z, y, _ = make_concept_activations(1500, 64, n_concepts=5, random_state=seed)
    est = _fit(
        Z, y, n_components="auto", max_iter=1, hidden_layer_sizes=(64, 32), random_state=seed
    )
    assert est.n_components_ == 5
    assert est.transform(Z).shape == (len(Z), 5)
    curve = est.faithfulness_curve_
    assert np.all(np.diff(curve) >= -1e-9)  # more components never fit worse
    assert curve[4] >= 0.98 * curve[-1] > curve[3]
    assert est.faithfulness_bound_ == pytest.approx(curve[4], abs=1e-9)


def test_a_fraction_picks_the_smallest_rank_reaching_it(digits):
    d = digits
    est = _fit(d.Z_train, d.y_train, n_components=0.9, max_iter=1, random_state=0)
    curve, k = est.faithfulness_curve_, est.n_components_
    assert curve[k - 1] >= 0.9 * curve[-1]
    assert k == 1 or curve[k - 2] < 0.9 * curve[-1]
    auto = _fit(d.Z_train, d.y_train, n_components="auto", max_iter=1, random_state=0)
    assert auto.n_components_ > k  # 0.98 asks for more than 0.9
    assert auto.faithfulness_curve_[auto.n_components_ - 1] >= 0.98 * curve[-1]
    # the fixed-K fit stores the same curve: choosing K costs no extra training
    fixed = _fit(d.Z_train, d.y_train, n_components=5, max_iter=1, random_state=0)
    np.testing.assert_allclose(fixed.faithfulness_curve_, curve, rtol=1e-12)


def test_auto_without_logits_uses_the_variance_curve():
    Z, _, _ = make_concept_activations(500, 20, random_state=0)
    est = _fit(Z, None, n_components=0.8, max_iter=1, hidden_layer_sizes=(32, 16), random_state=0)
    Zc = Z - Z.mean(0)
    evals = np.linalg.eigvalsh(Zc.T @ Zc)[::-1]
    expected = np.cumsum(evals) / evals.sum()
    np.testing.assert_allclose(est.faithfulness_curve_, expected, rtol=1e-8, atol=1e-10)
    assert est.n_components_ == int(np.argmax(expected >= 0.8)) + 1


@pytest.mark.parametrize("bad", [0, 1.0, 1.5, "many", -0.2])
def test_bad_n_components_is_refused(bad):
    Z, y, _ = make_concept_activations(100, 8, random_state=0)
    with pytest.raises(ValueError, match="n_components"):
        SRAEExplainer(bad).fit(Z, y)


# ----------------------------------------------------------------------------- network_head
@pytest.fixture(scope="module")
def network():
    """Planted activations and a fixed nonlinear 'rest of the network' that makes y."""
    import torch

    Z, _, _ = make_concept_activations(1200, 48, random_state=0)
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(48, 32), torch.nn.ReLU(), torch.nn.Linear(32, 6))
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        y = head(torch.tensor(Z, dtype=torch.float32)).double().numpy()
    return Z, y, head


def test_network_head_makes_the_decoded_activations_keep_the_networks_output(network):
    from sklearn_xnn.torch import reconstruction_faithfulness

    Z, y, head = network
    kw = dict(n_components=4, hidden_layer_sizes=(64, 32), random_state=0)
    plain = _fit(Z[:900], y[:900], **kw)
    through = _fit(Z[:900], y[:900], network_head=head, **kw)
    r2 = {
        name: reconstruction_faithfulness(est, head, Z[900:], y[900:])[
            "reconstruction_faithfulness_r2"
        ]
        for name, est in (("plain", plain), ("through", through))
    }
    # measured: 0.855 against 0.827 (random_state 1 and 2: 0.855 / 0.818, 0.846 / 0.818)
    assert r2["through"] >= r2["plain"] + 0.02
    # the explanation itself stays as faithful (the term acts on the decoder)
    assert through.score(Z[900:], y[900:]) >= plain.score(Z[900:], y[900:]) - 0.01
    # the caller's module is neither moved, frozen nor switched to eval mode
    assert all(p.requires_grad for p in head.parameters()) and head.training


def test_network_head_errors_and_persistence(network, tmp_path):
    import torch

    Z, y, head = network
    with pytest.raises(ValueError, match=r"network_head maps rows of X to shape \(2, 6\).*3"):
        SRAEExplainer(2, network_head=head).fit(Z[:100], y[:100, :3])
    with pytest.raises(ValueError, match="network_head failed on rows of X of shape"):
        SRAEExplainer(2, network_head=torch.nn.Linear(5, 6)).fit(Z[:100], y[:100])
    est = _fit(Z[:300], y[:300], n_components=2, network_head=head, max_iter=2, random_state=0)
    with pytest.warns(UserWarning, match="network_head is a torch module, which is saved as None"):
        est.save(tmp_path / "m.safetensors")
    back = SRAEExplainer.load(tmp_path / "m.safetensors")
    assert back.network_head is None
    np.testing.assert_array_equal(back.predict(Z), est.predict(Z))
    assert clone(est).network_head is not head  # cloned, like any parameter
