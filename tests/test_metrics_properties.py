"""Property-based tests (hypothesis) of the explanation metrics: ranges and invariances."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import r2_score

metrics = pytest.importorskip("sklearn_xnn.metrics")

SETTINGS = settings(max_examples=20, deadline=None)
# Magnitudes under ~1e-150 square to subnormals, where the metrics lose precision (see
# test_pullaway_tiny_magnitudes_stay_in_range); the strategies stay above 1e-100.
NONNEG = st.one_of(st.just(0.0), st.floats(1e-100, 1e3))
VALUES = st.one_of(NONNEG, st.floats(-1e3, -1e-100))


def matrices(elements=VALUES, min_rows=2, max_rows=12, min_cols=2, max_cols=6):
    shape = st.tuples(st.integers(min_rows, max_rows), st.integers(min_cols, max_cols))
    return arrays(np.float64, shape, elements=elements)


@st.composite
def pairs(draw, elements=VALUES, **kw):
    """Two arrays of the same shape: logits and a rebuild of them."""
    a = draw(matrices(elements, **kw))
    b = draw(arrays(np.float64, a.shape, elements=elements))
    return a, b


# ------------------------------------------------------------------ faithfulness
@SETTINGS
@given(pairs())
def test_faithfulness_r2_agrees_with_sklearn_and_is_at_most_one(yy):
    y, y_hat = yy
    score = metrics.faithfulness_r2(y, y_hat)
    assert score <= 1.0 + 1e-12
    assert metrics.faithfulness_r2(y, y) == 1.0
    if (np.ptp(y, axis=0) > 1e-6 * (1 + np.abs(y).max())).all():
        np.testing.assert_allclose(score, r2_score(y, y_hat), rtol=1e-9, atol=1e-9)


@SETTINGS
@given(pairs(), st.floats(1e-3, 1e3))
def test_faithfulness_rmse_is_a_scaled_distance(yy, a):
    y, y_hat = yy
    rmse = metrics.faithfulness_rmse(y, y_hat)
    assert rmse >= 0 and metrics.faithfulness_rmse(y, y) == 0.0
    np.testing.assert_allclose(metrics.faithfulness_rmse(a * y, a * y_hat), a * rmse, rtol=1e-9)
    np.testing.assert_allclose(metrics.faithfulness_rmse(y_hat, y), rmse, rtol=1e-12)


@SETTINGS
@given(pairs(), st.floats(1e-2, 1e2), st.floats(-1e3, 1e3))
def test_top1_agreement_range_and_invariance(yy, scale, shift):
    y, y_hat = yy
    agree = metrics.top1_agreement(y, y_hat)
    assert 0.0 <= agree <= 1.0
    assert metrics.top1_agreement(y, y) == 1.0
    moved = y_hat * scale + shift  # a positive affine map keeps every row's ranking
    same = np.argmax(moved, axis=1) == np.argmax(y_hat, axis=1)  # ties may round apart
    if same.all():
        assert metrics.top1_agreement(y, moved) == agree


@SETTINGS
@given(pairs(), arrays(np.float64, st.integers(2, 12), elements=VALUES), st.floats(1, 1e6))
def test_softmax_kl_nonnegative_shift_invariant_and_stable(yy, shift, big):
    y, y_hat = yy
    kl = metrics.softmax_kl(y, y_hat)
    assert np.isfinite(kl) and kl >= -1e-9
    n = y.shape[0]
    row_shift = np.resize(shift, n)[:, None]
    np.testing.assert_allclose(metrics.softmax_kl(y, y + row_shift), 0.0, atol=1e-9)
    assert np.isfinite(metrics.softmax_kl(y * big, y_hat * big))


@SETTINGS
@given(pairs())
def test_reconstruction_scores(zz):
    Z, Z_hat = zz
    assert metrics.reconstruction_r2(Z, Z) == 1.0
    assert metrics.reconstruction_r2(Z, Z_hat) <= 1.0 + 1e-12
    ev = metrics.reconstruction_explained_variance(Z, Z_hat)
    assert ev <= 1.0 + 1e-12
    assert ev >= metrics.reconstruction_r2(Z, Z_hat) - 1e-9  # EV ignores a constant offset


@st.composite
def weighted_pairs(draw):
    """Logits, a rebuild of them and integer row weights (zeros too, two rows kept)."""
    y, y_hat = draw(pairs())
    w = draw(arrays(np.int64, y.shape[0], elements=st.integers(0, 3)))
    assume((w > 0).sum() >= 2)
    return y, y_hat, w


@SETTINGS
@given(weighted_pairs())
def test_integer_weights_count_as_repeated_rows(yyw):
    y, y_hat, w = yyw
    repeated = np.repeat(y, w, axis=0), np.repeat(y_hat, w, axis=0)
    kept = y[w > 0]
    varies = (np.ptp(kept, axis=0) > 1e-6 * (1 + np.abs(kept).max())).all()
    for metric in (
        metrics.faithfulness_r2,
        metrics.top1_agreement,
        metrics.softmax_kl,
        metrics.reconstruction_r2,
    ):
        assert metric(y, y_hat, sample_weight=np.ones(len(y))) == metric(y, y_hat)
        if varies or metric in (metrics.top1_agreement, metrics.softmax_kl):
            weighted = metric(y, y_hat, sample_weight=w)
            np.testing.assert_allclose(weighted, metric(*repeated), rtol=1e-9, atol=1e-9)
    if varies:
        np.testing.assert_allclose(
            metrics.faithfulness_r2(y, y_hat, sample_weight=w),
            r2_score(y, y_hat, sample_weight=w),
            rtol=1e-9,
            atol=1e-9,
        )


# ------------------------------------------------------------------ sparsity and health
@SETTINGS
@given(matrices(NONNEG))
def test_sparsity_and_health_ranges(X):
    K = X.shape[1]
    assert 0.0 <= metrics.mean_active(X) <= K
    assert 0.0 <= metrics.dead_fraction(X) <= 1.0
    n_sig = metrics.n_significant(X)
    assert 0.0 <= n_sig <= metrics.mean_active(X) + 1e-12
    assert metrics.n_significant(X, coverage=0.5) <= n_sig + 1e-12
    dead = np.c_[X, np.zeros(X.shape[0])]
    assert metrics.dead_fraction(dead) >= 1.0 / (K + 1) - 1e-12


@SETTINGS
@given(matrices(VALUES, min_cols=1), st.data())
def test_mean_contributions_and_permutations(S, data):
    perm = data.draw(st.permutations(range(S.shape[0])))
    np.testing.assert_allclose(metrics.mean_contributions(S), S.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(metrics.n_significant(S[perm]), metrics.n_significant(S), rtol=1e-12)


# ------------------------------------------------------------------ orthogonality
@SETTINGS
@given(matrices(NONNEG), st.data())
def test_pullaway_range_and_invariances(S, data):
    for over in ("samples", "components"):
        pt = metrics.pullaway(S, over=over, eps=0.0)
        assert np.isnan(pt) or -1e-12 <= pt <= 1.0 + 1e-9
    perm = data.draw(st.permutations(range(S.shape[0])))
    scale = data.draw(arrays(np.float64, S.shape[0], elements=st.floats(0.1, 10)))
    a = metrics.pullaway(S, eps=0.0)
    b = metrics.pullaway(S[perm] * scale[:, None], eps=0.0)  # rows' order and length
    if not np.isnan(a):
        np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9)


def test_pullaway_tiny_magnitudes_stay_in_range():
    S = np.full((2, 2), 1.5713434e-160)  # found by hypothesis: gave 1.0006
    assert metrics.pullaway(S, eps=0.0) <= 1.0 + 1e-9
    np.testing.assert_allclose(metrics.pullaway(S * 0.5, eps=0.0), 1.0, rtol=1e-9)


@SETTINGS
@given(matrices(VALUES, min_rows=3))
def test_correlation_and_cosines_ranges(S):
    R = metrics.contribution_correlation(S)
    finite = np.isfinite(R)
    assert (np.abs(R[finite]) <= 1.0).all()
    np.testing.assert_allclose(np.where(finite, R, 0), np.where(finite, R, 0).T, atol=1e-12)
    rho = metrics.mean_abs_correlation(S)
    assert np.isnan(rho) or 0.0 <= rho <= 1.0
    max_cos, mean_cos = metrics.component_cosines(S.T)
    if not np.isnan(max_cos):
        assert 0.0 <= mean_cos <= max_cos + 1e-12 <= 1.0 + 1e-12


@SETTINGS
@given(matrices(VALUES, min_rows=3), st.data())
def test_matched_correlation_finds_permuted_columns(A, data):
    varying = np.ptp(A, axis=0) > 1e-6 * (1 + np.abs(A).max())
    perm = data.draw(st.permutations(range(A.shape[1])))
    score = metrics.matched_correlation(A, A[:, perm])
    assert 0.0 <= score <= 1.0 + 1e-12
    if varying.all():
        np.testing.assert_allclose(score, 1.0, atol=1e-9)
    R = metrics.cross_correlation(A, A[:, perm])
    assert (np.abs(R) <= 1.0).all()
