"""Explanation metrics against references (sklearn, scipy, torch losses) and hand-computed cases."""

import warnings
from itertools import permutations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from scipy.stats import entropy
from sklearn.decomposition import PCA
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import explained_variance_score, r2_score, root_mean_squared_error
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_xnn._nn.losses import pullaway_term
from sklearn_xnn.baselines import RandomNonnegativeProjection
from sklearn_xnn.metrics import (
    component_cosines,
    concept_recovery,
    contribution_correlation,
    cross_correlation,
    dead_fraction,
    faithfulness_r2,
    faithfulness_rmse,
    matched_correlation,
    mean_abs_correlation,
    mean_active,
    mean_contributions,
    n_significant,
    pullaway,
    reconstruction_explained_variance,
    reconstruction_r2,
    seed_stability,
    softmax_kl,
    subspace_similarity,
    top1_agreement,
)


@pytest.fixture
def logits():
    rng = np.random.RandomState(0)
    y = rng.normal(size=(60, 4)) * [1.0, 2.0, 0.5, 3.0]
    y_hat = y + rng.normal(scale=0.7, size=y.shape)
    return y, y_hat


# ----------------------------------------------------------------------------- faithfulness
@pytest.mark.parametrize("multioutput", ["uniform_average", "variance_weighted", "raw_values"])
def test_faithfulness_r2_matches_sklearn(logits, multioutput):
    y, y_hat = logits
    ours = faithfulness_r2(y, y_hat, multioutput=multioutput)
    np.testing.assert_allclose(ours, r2_score(y, y_hat, multioutput=multioutput), rtol=1e-12)


def test_faithfulness_r2_edge_cases(logits):
    y, _ = logits
    mean_pred = np.broadcast_to(y.mean(axis=0), y.shape)
    assert faithfulness_r2(y, mean_pred) == pytest.approx(0.0, abs=1e-12)
    assert faithfulness_r2(y, y) == pytest.approx(1.0, abs=1e-12)
    # a single output, 1-D
    assert faithfulness_r2(y[:, 0], y[:, 0] + 1.0) == pytest.approx(
        r2_score(y[:, 0], y[:, 0] + 1.0), rel=1e-12
    )
    # a constant output: 1 if rebuilt exactly, else 0 (sklearn's force_finite)
    const = np.c_[y[:, 0], np.full(len(y), 2.0)]
    assert faithfulness_r2(const, const) == pytest.approx(1.0, abs=1e-12)
    off = const + [0.0, 1.0]
    np.testing.assert_allclose(
        faithfulness_r2(off, const, multioutput="raw_values"), [1.0, 0.0], atol=1e-12
    )
    np.testing.assert_allclose(
        faithfulness_r2(off, const, multioutput="raw_values"),
        r2_score(off, const, multioutput="raw_values"),
        atol=1e-12,
    )


@pytest.mark.parametrize("multioutput", ["uniform_average", "variance_weighted", "raw_values"])
def test_faithfulness_r2_on_one_row_is_nan_with_sklearns_warning(logits, multioutput):
    y, y_hat = logits
    for truth, rebuild in ((y[:1], y_hat[:1]), (y[:1], y[:1]), (y[0, :1], y_hat[0, :1])):
        with pytest.warns(UndefinedMetricWarning, match="not well-defined with less than two"):
            ours = faithfulness_r2(truth, rebuild, multioutput=multioutput)
        with pytest.warns(UndefinedMetricWarning):
            theirs = r2_score(truth, rebuild, multioutput=multioutput)
        assert np.isnan(ours).all() and np.isnan(theirs)
        # one NaN per output for raw_values (sklearn gives a single NaN)
        assert np.shape(ours) == (
            (np.atleast_2d(truth).shape[1],) if multioutput == "raw_values" else ()
        )


def test_faithfulness_r2_with_constant_outputs_matches_sklearn(logits):
    y, y_hat = logits
    const = np.c_[y[:, :2], np.full(len(y), 2.0)]
    wrong = np.c_[y_hat[:, :2], np.full(len(y), 3.0)]  # the constant output rebuilt wrongly
    all_const = np.ones((5, 2))
    all_wrong = np.c_[np.ones(5), np.full(5, 2.0)]  # one right, one wrong
    for truth, rebuild in ((const, wrong), (const, const), (all_const, all_wrong)):
        # variance_weighted: a constant output weighs 0, or all alike when all are constant
        for multioutput in ("uniform_average", "variance_weighted"):
            assert faithfulness_r2(truth, rebuild, multioutput=multioutput) == pytest.approx(
                r2_score(truth, rebuild, multioutput=multioutput), rel=1e-12, abs=1e-12
            )


def test_reconstruction_scores_on_one_row_are_nan_with_a_warning(acts):
    Z, Z_hat = acts
    for metric in (reconstruction_r2, reconstruction_explained_variance):
        for rebuild in (Z_hat[:1], Z[:1]):  # exact or not: one row has no variance
            with pytest.warns(UndefinedMetricWarning, match=f"{metric.__name__} is not well"):
                assert np.isnan(metric(Z[:1], rebuild))


def test_faithfulness_input_errors(logits):
    y, y_hat = logits
    with pytest.raises(ValueError, match="same shape"):
        faithfulness_r2(y, y_hat[:, :2])
    with pytest.raises(ValueError, match="multioutput must be one of"):
        faithfulness_r2(y, y_hat, multioutput="median")
    with pytest.raises(ValueError, match="1-D or 2-D"):
        faithfulness_rmse(y[None], y_hat[None])


def test_faithfulness_rmse(logits):
    y, y_hat = logits
    expected = root_mean_squared_error(y.ravel(), y_hat.ravel())
    assert faithfulness_rmse(y, y_hat) == pytest.approx(expected, rel=1e-12)
    assert faithfulness_rmse([[1.0, 2.0]], [[4.0, 6.0]]) == pytest.approx(np.sqrt(12.5), rel=1e-12)


def test_top1_agreement_hand_case():
    y = [[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]]
    y_hat = [[9.0, 1.0, 0.0], [0.0, 1.0, 3.0], [0.0, 0.0, 5.0], [0.0, 2.0, 0.0]]
    assert top1_agreement(y, y_hat) == pytest.approx(0.5, abs=1e-12)


def test_top1_and_kl_need_two_outputs():
    y = np.arange(5.0)
    with pytest.raises(ValueError, match="top1_agreement needs at least 2 outputs"):
        top1_agreement(y, y)
    with pytest.raises(ValueError, match="softmax_kl needs at least 2 outputs"):
        softmax_kl(y[:, None], y[:, None])


def test_softmax_kl_matches_scipy(logits):
    y, y_hat = logits
    p = np.exp(log_softmax(y, axis=1))
    q = np.exp(log_softmax(y_hat, axis=1))
    expected = np.mean(entropy(p, q, axis=1))
    assert softmax_kl(y, y_hat) == pytest.approx(expected, rel=1e-10)
    # shift invariance and stability with huge logits
    assert softmax_kl(y, y + 1000.0) == pytest.approx(0.0, abs=1e-10)
    assert softmax_kl(1e4 * y, 1e4 * y) == pytest.approx(0.0, abs=1e-10)


# ----------------------------------------------------------------------------- reconstruction
@pytest.fixture
def acts():
    rng = np.random.RandomState(1)
    Z = rng.normal(size=(80, 6)) * [1.0, 5.0, 0.1, 2.0, 1.0, 3.0] + 4.0
    return Z, Z + rng.normal(scale=0.5, size=Z.shape) + 0.3


def test_reconstruction_r2_matches_sklearn(acts):
    Z, Z_hat = acts
    expected = r2_score(Z, Z_hat, multioutput="variance_weighted")
    assert reconstruction_r2(Z, Z_hat) == pytest.approx(expected, rel=1e-12)
    manual = 1 - ((Z - Z_hat) ** 2).sum() / ((Z - Z.mean(0)) ** 2).sum()
    assert reconstruction_r2(Z, Z_hat) == pytest.approx(manual, rel=1e-12)


def test_reconstruction_explained_variance_matches_sklearn(acts):
    Z, Z_hat = acts
    expected = explained_variance_score(Z, Z_hat, multioutput="variance_weighted")
    assert reconstruction_explained_variance(Z, Z_hat) == pytest.approx(expected, rel=1e-12)
    # a constant offset is not penalised by EV, it is by R²
    assert reconstruction_explained_variance(Z, Z + 7.0) == pytest.approx(1.0, abs=1e-12)
    assert reconstruction_r2(Z, Z + 7.0) < 0


def test_reconstruction_edge_cases(acts):
    Z, Z_hat = acts
    assert reconstruction_r2(Z, np.broadcast_to(Z.mean(0), Z.shape)) == pytest.approx(0, abs=1e-12)
    assert reconstruction_r2(Z, Z) == pytest.approx(1.0, abs=1e-12)
    # a constant feature rebuilt exactly changes nothing (sklearn agrees) ...
    Zc, Zc_hat = np.c_[Z, np.ones(len(Z))], np.c_[Z_hat, np.ones(len(Z))]
    assert reconstruction_r2(Zc, Zc_hat) == pytest.approx(reconstruction_r2(Z, Z_hat), rel=1e-12)
    assert reconstruction_r2(Zc, Zc_hat) == pytest.approx(
        r2_score(Zc, Zc_hat, multioutput="variance_weighted"), rel=1e-12
    )
    # ... rebuilt wrongly, its error counts in the pooled residual (sklearn weighs it 0)
    Zc_hat[:, -1] = 0.0
    ss_res = ((Z - Z_hat) ** 2).sum() + len(Z)
    expected = 1 - ss_res / ((Z - Z.mean(0)) ** 2).sum()
    assert reconstruction_r2(Zc, Zc_hat) == pytest.approx(expected, rel=1e-12)
    # a single feature and an all-constant Z
    assert reconstruction_r2(Z[:, 0], Z_hat[:, 0]) == pytest.approx(
        r2_score(Z[:, 0], Z_hat[:, 0]), rel=1e-12
    )
    ones = np.ones((5, 3))
    assert reconstruction_r2(ones, ones) == 1.0
    assert reconstruction_r2(ones, 2 * ones) == 0.0


def test_reconstruction_r2_of_pca():
    rng = np.random.RandomState(2)
    Z = rng.normal(size=(100, 5)) @ rng.normal(size=(5, 12))
    full = PCA(5).fit(Z)
    assert reconstruction_r2(Z, full.inverse_transform(full.transform(Z))) == pytest.approx(
        1.0, abs=1e-10
    )
    pca = PCA(2).fit(Z)
    expected = pca.explained_variance_ratio_.sum()
    got = reconstruction_r2(Z, pca.inverse_transform(pca.transform(Z)))
    assert got == pytest.approx(expected, rel=1e-10)


# ----------------------------------------------------------------------------- sparsity
def test_mean_active():
    X = [[0.0, 1.0, -2.0], [0.0, 0.0, 0.0], [1e-3, 0.0, 3.0]]
    assert mean_active(X) == pytest.approx(4 / 3, rel=1e-12)
    assert mean_active(X, threshold=0.01) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match="X must be 2-D"):
        mean_active([1.0, 2.0])


def test_n_significant_hand_cases():
    S = np.array(
        [
            [5.0, 4.0, 1.0, -3.0],  # positives 10: 5 + 4 = 9 >= 9 -> 2
            [1.0, 1.0, 1.0, 1.0],  # 4 -> needs 3.6 -> 4
            [-1.0, -2.0, 0.0, 0.0],  # nothing positive -> 0
            [0.0, 0.0, 7.0, 0.0],  # 1
        ]
    )
    assert n_significant(S) == pytest.approx((2 + 4 + 0 + 1) / 4, rel=1e-12)
    assert n_significant(S, coverage=0.5) == pytest.approx((1 + 2 + 0 + 1) / 4, rel=1e-12)
    # 3-D layout (n, C, K): averaged over rows and outputs
    S3 = np.stack([S, S[::-1] * 0 + [[9.0, 0.0, 0.0, 0.0]]], axis=1)
    assert n_significant(S3) == pytest.approx((7 + 4) / 8, rel=1e-12)
    with pytest.raises(ValueError, match=r"coverage must be a number in \(0, 1\]"):
        n_significant(S, coverage=0.0)
    with pytest.raises(ValueError, match="contributions must have shape"):
        n_significant(np.ones(3))


# ----------------------------------------------------------------------------- orthogonality
@pytest.mark.parametrize("over", ["samples", "components"])
def test_pullaway_agrees_with_training_loss(over):
    rng = np.random.RandomState(3)
    S2 = np.abs(rng.normal(size=(30, 5)))
    S2[:, 2] = 0.0  # a dead column: eps keeps it defined, as in training
    torch_value = pullaway_term(torch.as_tensor(S2), over).item()
    assert pullaway(S2, over=over) == pytest.approx(torch_value, rel=1e-9)
    # (n, C, K) layout: the training loss sums over outputs, the metric averages
    S3 = rng.normal(size=(30, 3, 5))
    torch_sum = pullaway_term(torch.as_tensor(S3).permute(1, 0, 2), over).item()
    assert pullaway(S3, over=over) * 3 == pytest.approx(torch_sum, rel=1e-9)


def _pullaway_by_pairs(S, eps):
    """The definition: mean squared cosine over ordered pairs of distinct nonzero rows."""
    s = np.asarray(S, dtype=float) + eps
    s = s[np.linalg.norm(s, axis=1) > 0]
    u = s / np.linalg.norm(s, axis=1, keepdims=True)
    cos2 = (u @ u.T) ** 2
    return (cos2.sum() - np.trace(cos2)) / (len(u) * (len(u) - 1))


@pytest.mark.parametrize("shape", [(40, 3), (3, 40), (7, 7), (3, 5)])
def test_pullaway_equals_the_pairwise_definition(shape):
    rng = np.random.RandomState(11)
    S = np.abs(rng.normal(size=shape)) * (rng.uniform(size=shape) < 0.6)
    S[0] = 0.0  # a row without direction (eps=0) is left out of the pairs
    for eps in (0.0, 1e-6):
        for over, M in (("samples", S), ("components", S.T)):
            assert pullaway(S, over=over, eps=eps) == pytest.approx(
                _pullaway_by_pairs(M, eps), rel=1e-12, abs=1e-15
            )


def test_pullaway_over_many_rows_needs_no_row_by_row_matrix():
    # 100,000 rows: an n x n matrix of cosines would take 80 GB
    S = np.random.RandomState(0).exponential(size=(100_000, 3))
    value = pullaway(S)
    head = pullaway(S[:2000])  # same distribution: about the same value
    assert 0.0 < value < 1.0 and value == pytest.approx(head, rel=0.05)


def test_pullaway_hand_cases():
    eye = np.eye(3)
    assert pullaway(eye, eps=0.0) == pytest.approx(0.0, abs=1e-12)
    assert pullaway(eye, over="components", eps=0.0) == pytest.approx(0.0, abs=1e-12)
    parallel = np.outer([1.0, 2.0, 3.0], [1.0, 1.0])
    assert pullaway(parallel, eps=0.0) == pytest.approx(1.0, abs=1e-12)
    # rows (1,0), (1,1): cos² = 1/2 for the one pair, counted twice over 2*1 ordered pairs
    assert pullaway([[1.0, 0.0], [1.0, 1.0]], eps=0.0) == pytest.approx(0.5, abs=1e-12)
    assert np.isnan(pullaway([[1.0, 2.0]], eps=0.0))
    with pytest.raises(ValueError, match="over must be 'samples' or 'components'"):
        pullaway(eye, over="rows")


def test_contribution_correlation_matches_corrcoef():
    rng = np.random.RandomState(4)
    S = rng.normal(size=(50, 4))
    np.testing.assert_allclose(contribution_correlation(S), np.corrcoef(S.T), atol=1e-12)
    S3 = rng.normal(size=(50, 2, 4))
    R3 = contribution_correlation(S3)
    assert R3.shape == (2, 4, 4)
    np.testing.assert_allclose(R3[1], np.corrcoef(S3[:, 1, :].T), atol=1e-12)


def test_mean_abs_correlation_ignores_dead_columns():
    rng = np.random.RandomState(5)
    a = rng.normal(size=40)
    S = np.c_[a, -2 * a, np.zeros(40), rng.normal(size=40)]
    R = contribution_correlation(S)
    assert np.isnan(R[2]).all() and np.isnan(R[:, 2]).all()
    live = np.corrcoef(S[:, [0, 1, 3]].T)
    expected = np.abs(live[~np.eye(3, dtype=bool)]).mean()
    assert mean_abs_correlation(S) == pytest.approx(expected, rel=1e-12)
    assert np.isnan(mean_abs_correlation(np.c_[a, np.zeros(40)]))


def test_component_cosines():
    rng = np.random.RandomState(6)
    pca = PCA(4).fit(rng.normal(size=(60, 10)))
    max_cos, mean_cos = component_cosines(pca.components_)
    assert max_cos == pytest.approx(0.0, abs=1e-10)
    assert mean_cos == pytest.approx(0.0, abs=1e-10)
    # (1,0),(1,1),(0,2): |cos| = 1/sqrt2, 0, 1/sqrt2 -> max 0.7071, mean 0.4714
    max_cos, mean_cos = component_cosines([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    assert max_cos == pytest.approx(np.sqrt(0.5), rel=1e-12)
    assert mean_cos == pytest.approx(2 * np.sqrt(0.5) / 3, rel=1e-12)
    assert np.isnan(component_cosines([[1.0, 0.0]])[0])


# ----------------------------------------------------------------------------- health
def test_dead_fraction_and_mean_contributions():
    X = np.array([[0.0, 1.0, 3.0, 2.0], [0.0, 0.0, 3.0, 2.0 + 1e-9]])
    assert dead_fraction(X) == pytest.approx(0.5, abs=1e-12)
    assert dead_fraction(X, atol=1e-6) == pytest.approx(0.75, abs=1e-12)
    np.testing.assert_allclose(mean_contributions(X), [0.0, 0.5, 3.0, 2.0 + 5e-10], rtol=1e-12)
    S3 = np.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_allclose(mean_contributions(S3), S3.mean(0), rtol=1e-12)
    with pytest.raises(ValueError, match="contributions must have shape"):
        mean_contributions(np.ones(3))


# ----------------------------------------------------------------------------- stability
def test_cross_correlation_matches_corrcoef():
    rng = np.random.RandomState(7)
    A, B = rng.normal(size=(30, 3)), rng.normal(size=(30, 2))
    expected = np.corrcoef(A.T, B.T)[:3, 3:]
    np.testing.assert_allclose(cross_correlation(A, B), expected, atol=1e-12)
    assert (cross_correlation(np.c_[A, np.ones(30)], B)[3] == 0).all()
    with pytest.raises(ValueError, match="same number of rows"):
        cross_correlation(A, B[:5])


def test_matched_correlation_is_permutation_and_scale_invariant():
    rng = np.random.RandomState(8)
    A = rng.exponential(size=(100, 4))
    B = A[:, [2, 0, 3, 1]] * [3.0, 0.5, 2.0, 7.0] + 1.0
    assert matched_correlation(A, B) == pytest.approx(1.0, abs=1e-12)
    score, (rows, cols, vals) = matched_correlation(A, B, return_pairs=True)
    np.testing.assert_array_equal(cols[np.argsort(rows)], [1, 3, 0, 2])
    assert matched_correlation(A, -B) == pytest.approx(1.0, abs=1e-12)
    # signed: the best assignment of signed correlations, found by brute force
    R = np.corrcoef(A.T, -B.T)[:4, 4:]
    best = max(np.mean([R[i, p[i]] for i in range(4)]) for p in permutations(range(4)))
    assert matched_correlation(A, -B, absolute=False) == pytest.approx(best, rel=1e-12)
    assert best < 0.5


def test_matched_correlation_equals_brute_force():
    rng = np.random.RandomState(9)
    A, B = rng.normal(size=(25, 4)), rng.normal(size=(25, 4))
    R = np.abs(np.corrcoef(A.T, B.T)[:4, 4:])
    best = max(np.mean([R[i, p[i]] for i in range(4)]) for p in permutations(range(4)))
    assert matched_correlation(A, B) == pytest.approx(best, rel=1e-12)


def test_subspace_similarity_equals_scipy_principal_angles():
    from scipy.linalg import subspace_angles

    rng = np.random.RandomState(11)
    A, B = rng.normal(size=(60, 3)), rng.normal(size=(60, 4)) + 5.0
    B[:, 0] += 2.0 * A[:, 1]  # partly shared
    angles = subspace_angles(A - A.mean(0), B - B.mean(0))
    assert subspace_similarity(A, B) == pytest.approx(np.cos(angles).sum() / 3, rel=1e-10)
    assert subspace_similarity(A, B) == pytest.approx(subspace_similarity(B, A), rel=1e-12)


def test_subspace_similarity_ignores_rotations_and_counts_missing_directions_as_zero():
    rng = np.random.RandomState(12)
    A = rng.exponential(size=(200, 3))
    Q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    assert matched_correlation(A, A @ Q) < 0.95  # single x-features disagree...
    # ...but their span agrees
    assert subspace_similarity(A, A @ Q * 3.0 + 1.0) == pytest.approx(1.0, abs=1e-12)
    # a dead (constant) x-feature spans nothing: one of three directions missing
    dead = np.c_[A[:, :2], np.zeros(200)]
    assert subspace_similarity(A, dead) == pytest.approx(2 / 3, abs=1e-12)
    with pytest.raises(ValueError, match="more rows than the columns"):
        subspace_similarity(A[:6], A[:6])
    with pytest.raises(ValueError, match="same number of rows"):
        subspace_similarity(A, A[:5])
    with pytest.raises(ValueError, match="NaN"):
        subspace_similarity(np.c_[A[:, :2], np.full(200, np.nan)], A)


def test_concept_recovery():
    rng = np.random.RandomState(10)
    codes = rng.exponential(size=(200, 3)) * (rng.uniform(size=(200, 3)) < 0.3)
    assert concept_recovery(codes[:, [2, 0, 1]] * 4.0, codes) == pytest.approx(1.0, abs=1e-12)
    # two of three concepts found, the third has no x-feature: 2 / 3
    assert concept_recovery(codes[:, :2], codes) == pytest.approx(2 / 3, abs=1e-12)
    # extra x-features do not hurt
    noisy = np.c_[codes, rng.normal(size=(200, 2))]
    assert concept_recovery(noisy, codes) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="codes must be 2-D"):
        concept_recovery(codes, codes[:, 0])


def test_seed_stability():
    rng = np.random.RandomState(11)
    Z = rng.exponential(size=(120, 10))
    pca = seed_stability(PCA(3), Z, seeds=[0, 1, 2])
    assert pca.mean == pytest.approx(1.0, abs=1e-10)
    assert pca.pairwise.shape == (3, 3)
    rand = seed_stability(RandomNonnegativeProjection(3), Z, seeds=[0, 1, 2])
    assert rand.mean < 0.99
    np.testing.assert_allclose(np.diag(rand.pairwise), 1.0)
    # nested random_state inside a pipeline is set too
    pipe = make_pipeline(StandardScaler(), RandomNonnegativeProjection(3))
    res = seed_stability(pipe, Z, seeds=[0, 5])
    assert res.estimators[1][-1].random_state == 5
    assert res.mean == pytest.approx(
        matched_correlation(res.estimators[0].transform(Z), res.estimators[1].transform(Z)),
        rel=1e-12,
    )
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_stability(PCA(3), Z, seeds=[0])


def test_correlation_metrics_on_one_row_are_nan_with_a_warning():
    rng = np.random.RandomState(13)
    A, B = rng.normal(size=(1, 3)), rng.normal(size=(1, 2))
    with pytest.warns(RuntimeWarning):  # numpy's reference: no correlation on one row
        assert np.isnan(np.corrcoef(A.T, B.T)[:3, 3:]).all()
    with pytest.warns(UndefinedMetricWarning, match="cross_correlation is not well-defined"):
        R = cross_correlation(A, B)
    assert R.shape == (3, 2) and np.isnan(R).all()
    with pytest.warns(UndefinedMetricWarning, match="matched_correlation is not well-defined"):
        assert np.isnan(matched_correlation(A, B))
    with pytest.warns(UndefinedMetricWarning, match="matched_correlation is not well-defined"):
        score, (rows, cols, values) = matched_correlation(A, A, return_pairs=True)
    assert np.isnan(score) and rows.size == cols.size == values.size == 0
    with pytest.warns(UndefinedMetricWarning) as record:
        assert np.isnan(concept_recovery(A, A))  # a perfect copy: still no correlation
    assert [str(w.message).split()[0] for w in record] == ["concept_recovery"]  # warned once
    with pytest.raises(ValueError, match="need at least one row"):
        matched_correlation(A[:0], B[:0])
    with pytest.raises(ValueError, match="need at least one row"):
        concept_recovery(A[:0], B[:0])


def test_constant_columns_on_several_rows_still_correlate_zero_without_a_warning():
    rng = np.random.RandomState(14)
    codes = rng.exponential(size=(50, 3))
    dead = np.c_[codes[:, :2], np.zeros(50)]  # the third x-feature never fires
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # documented as 0: no UndefinedMetricWarning
        assert matched_correlation(codes, dead) == pytest.approx(2 / 3, abs=1e-12)
        assert concept_recovery(dead, codes) == pytest.approx(2 / 3, abs=1e-12)
        # a planted concept that never varies cannot be recovered: it counts 0
        flat = np.c_[codes[:, :2], np.ones(50)]
        assert concept_recovery(codes, flat) == pytest.approx(2 / 3, abs=1e-12)
        # two rows are enough for a correlation
        assert concept_recovery(codes[:2] * 3.0, codes[:2]) == pytest.approx(1.0, abs=1e-12)


def test_seed_stability_refuses_one_evaluation_row_before_fitting():
    class MustNotFit(PCA):
        def fit(self, X, y=None):
            raise AssertionError("fitted before Z_eval was checked")

    Z = np.random.RandomState(15).exponential(size=(40, 6))
    with pytest.raises(ValueError, match="needs at least two of them, got 1"):
        seed_stability(MustNotFit(2), Z, Z_eval=Z[:1])
    with pytest.raises(ValueError, match="needs at least two of them, got 1"):
        seed_stability(MustNotFit(2), Z[:1])
    # two evaluation rows are enough (a correlation of two points is +-1 or 0)
    res = seed_stability(PCA(2), Z, seeds=[0, 1], Z_eval=Z[:2])
    assert np.isfinite(res.pairwise).all()


def test_metrics_refuse_non_finite_and_empty_input():
    from sklearn_xnn import metrics

    nan_row = [[1.0, 2.0], [np.nan, 1.0]]
    calls = {
        "y_true contains NaN": lambda: metrics.faithfulness_r2([1, np.nan, 3], [1, 2, 3]),
        "y_pred contains infinity": lambda: metrics.faithfulness_r2([1, 2, 3], [1, np.inf, 3]),
        "top1_agreement: y_true contains NaN": lambda: metrics.top1_agreement(nan_row, nan_row),
        "contributions contains NaN": lambda: metrics.n_significant([[np.nan, 1.0, 2.0]]),
        "A contains NaN": lambda: metrics.matched_correlation(nan_row, [[1.0], [2.0]]),
        "X needs at least one row": lambda: metrics.dead_fraction(np.zeros((0, 3))),
        "expects 1-D or 2-D arrays": lambda: metrics.faithfulness_r2(1.0, 1.0),
    }
    for message, call in calls.items():
        with pytest.raises(ValueError, match=message):
            call()


def test_mean_abs_correlation_averages_each_output_alike():
    from sklearn_xnn.metrics import contribution_correlation, mean_abs_correlation

    rng = np.random.default_rng(0)
    S = rng.normal(size=(50, 2, 3))
    S[:, 1, 2] = 0.0  # output 1: its third column constant (a zero head weight)
    R = contribution_correlation(S)
    per_output = [
        np.mean([abs(R[0, k, l]) for k in range(3) for l in range(3) if k != l]),
        abs(R[1, 0, 1]),  # the one pair of non-constant columns
    ]
    assert mean_abs_correlation(S) == pytest.approx(np.mean(per_output), rel=1e-12)


# ----------------------------------------------------------------------------- sample_weight
def _weighted_metrics(y, y_hat, X, S):
    """Each metric that takes ``sample_weight``, as a function of the weights."""
    from sklearn_xnn.metrics._blocks import correlation_by_blocks

    def by_blocks(rows_per_block):
        def rho(w):
            block_bytes = rows_per_block and rows_per_block * S[0].nbytes
            return correlation_by_blocks(lambda rows: S[rows], len(S), block_bytes, sample_weight=w)

        return rho

    calls = {
        f"faithfulness_r2[{multioutput}]": lambda w, m=multioutput: faithfulness_r2(
            y, y_hat, sample_weight=w, multioutput=m
        )
        for multioutput in ("uniform_average", "variance_weighted", "raw_values")
    }
    return calls | {
        "top1_agreement": lambda w: top1_agreement(y, y_hat, sample_weight=w),
        "softmax_kl": lambda w: softmax_kl(y, y_hat, sample_weight=w, temperature=2.0),
        "reconstruction_r2": lambda w: reconstruction_r2(y, y_hat, sample_weight=w),
        "dead_fraction": lambda w: dead_fraction(X, sample_weight=w, atol=0.1),
        "correlation_by_blocks": by_blocks(None),
        "correlation_by_blocks[3-row blocks]": by_blocks(3),
    }


@pytest.fixture
def weighted_case(logits):
    """Logits, x-features and contributions of the same rows, and integer weights."""
    y, y_hat = logits
    rng = np.random.default_rng(7)
    w = rng.integers(0, 4, len(y))  # zeros drop rows
    X = np.maximum(rng.normal(size=(len(y), 5)), 0.0)
    X[:, 1] = 0.0  # dead
    X[:, 2] = np.where(w == 0, 1.0, 0.0)  # fires on rows of weight 0 only
    S = rng.normal(size=(len(y), 3, 4)) + rng.normal(size=(len(y), 3, 1))  # correlated
    S[:, 1, 3] = 0.5  # a constant column
    return y, y_hat, X, S, w


@pytest.mark.parametrize("name", list(_weighted_metrics(None, None, None, None)))
def test_weighted_metrics_equal_the_rows_repeated(weighted_case, name):
    y, y_hat, X, S, w = weighted_case
    weighted = _weighted_metrics(y, y_hat, X, S)[name]
    repeated = _weighted_metrics(*(np.repeat(a, w, axis=0) for a in (y, y_hat, X, S)))[name]
    expected = repeated(None)
    np.testing.assert_allclose(weighted(w), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(weighted(2.5 * w), expected, rtol=0, atol=1e-10)
    # unit weights are the unweighted formula itself, to the last bit
    np.testing.assert_array_equal(weighted(np.ones(len(y))), weighted(None))
    assert np.max(np.abs(np.asarray(expected) - weighted(None))) > 1e-3  # weights are used


@pytest.mark.parametrize("multioutput", ["uniform_average", "variance_weighted", "raw_values"])
def test_weighted_faithfulness_r2_matches_sklearn_with_a_constant_output(multioutput):
    rng = np.random.default_rng(4)
    y = np.c_[rng.normal(size=(40, 2)) * [1.0, 5.0], np.full(40, 2.0)]  # a constant output
    y_hat = np.c_[y[:, :2] + rng.normal(scale=0.5, size=(40, 2)), np.full(40, 3.0)]
    w = rng.uniform(0.0, 2.0, 40)
    np.testing.assert_allclose(
        faithfulness_r2(y, y_hat, sample_weight=w, multioutput=multioutput),
        r2_score(y, y_hat, sample_weight=w, multioutput=multioutput),
        rtol=1e-10,
    )


def test_weighted_reconstruction_r2_matches_sklearn(acts):
    Z, Z_hat = acts  # no constant unit: the pooled R² is sklearn's variance_weighted
    w = np.random.default_rng(5).uniform(0.0, 2.0, len(Z))
    expected = r2_score(Z, Z_hat, sample_weight=w, multioutput="variance_weighted")
    assert reconstruction_r2(Z, Z_hat, sample_weight=w) == pytest.approx(expected, rel=1e-10)


def test_metrics_refuse_bad_weights(weighted_case):
    y, y_hat, X, S, _ = weighted_case
    calls = _weighted_metrics(y, y_hat, X, S)
    n = len(y)
    bad = {
        "Negative values": -np.ones(n),
        "at least one non-zero": np.zeros(n),
        rf"expected \({n},\)": np.ones(n - 1),
        "sample_weight contains NaN": np.full(n, np.nan),
    }
    for call in calls.values():
        for message, w in bad.items():
            with pytest.raises(ValueError, match=message):
                call(w)
