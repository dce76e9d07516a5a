"""Edge cases of the metrics: constant columns, scale, empty and featureless inputs."""

import numpy as np
import pytest

from sklearn_xnn import metrics
from sklearn_xnn.metrics._blocks import contribution_metrics, correlation_by_blocks

N = 50


def _constant(value, n=N):
    return np.full((n, 1), value)


def test_constant_nonzero_columns_do_not_correlate():
    # centring 0.1 and 0.3 leaves rounding residues; they must not read as +-1
    a, b = _constant(0.1), _constant(0.3)
    np.testing.assert_array_equal(metrics.cross_correlation(a, b), [[0.0]])
    assert metrics.matched_correlation(a, b) == 0.0
    assert metrics.concept_recovery(b, a) == 0.0
    assert metrics.subspace_similarity(a, b) == 0.0
    assert np.isnan(metrics.contribution_correlation(np.c_[a, b])).all()
    assert np.isnan(metrics.mean_abs_correlation(np.c_[a, b]))


def test_constant_column_among_varying_ones_counts_zero():
    rng = np.random.default_rng(0)
    A = np.c_[rng.standard_normal((N, 2)), _constant(0.1)]
    B = np.c_[rng.standard_normal((N, 2)), _constant(0.3)]
    expected = metrics.matched_correlation(A[:, :2], B[:, :2]) * 2 / 3
    assert metrics.matched_correlation(A, B) == pytest.approx(expected, rel=1e-12)
    S = np.c_[A[:, :2], _constant(0.1)]
    R = metrics.contribution_correlation(S)
    assert np.isnan(R[2]).all() and np.isnan(R[:, 2]).all()
    assert np.isfinite(R[:2, :2]).all()


@pytest.mark.parametrize("scale", [1e-13, 1e-200, 1e200])
def test_correlations_are_scale_invariant(scale):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, 3))
    Y = X + 0.1 * rng.standard_normal((N, 3))
    assert metrics.mean_abs_correlation(X * scale) == pytest.approx(
        metrics.mean_abs_correlation(X), rel=1e-9
    )
    np.testing.assert_allclose(
        metrics.cross_correlation(X * scale, Y), metrics.cross_correlation(X, Y), atol=1e-12
    )
    assert metrics.subspace_similarity(X * scale, Y) == pytest.approx(
        metrics.subspace_similarity(X, Y), rel=1e-9
    )
    np.testing.assert_allclose(
        metrics.component_cosines(X.T * scale), metrics.component_cosines(X.T), rtol=1e-9
    )


def test_block_correlation_is_scale_invariant_and_sees_constant_columns():
    rng = np.random.default_rng(2)
    S = np.c_[rng.standard_normal((N, 3)), _constant(0.1)]
    want = metrics.mean_abs_correlation(S)
    for scale in (1.0, 1e-13, 1e200):
        S_scaled = S * scale

        def rows_of(rows, S_scaled=S_scaled):
            return S_scaled[rows]

        got = correlation_by_blocks(rows_of, N, block_bytes=64)
        assert got == pytest.approx(want, rel=1e-9)
        values = contribution_metrics(rows_of, N, block_bytes=64)
        assert values["contribution_corr"] == pytest.approx(want, rel=1e-9)


def test_top_explained_refuses_non_finite_logits():
    S = np.abs(np.random.default_rng(3).standard_normal((N, 4, 5)))
    with pytest.raises(ValueError, match="y contains NaN"):
        metrics.top_explained(S, np.full((N, 4), np.nan))
    with pytest.raises(ValueError, match="y contains infinity"):
        metrics.top_explained(S, np.full((N, 4), np.inf))


PAIR_METRICS = [
    ("faithfulness_r2", "y_true and y_pred"),
    ("faithfulness_rmse", "y_true and y_pred"),
    ("top1_agreement", "y_true and y_pred"),
    ("softmax_kl", "y_true and y_pred"),
    ("reconstruction_r2", "Z and Z_hat"),
    ("reconstruction_explained_variance", "Z and Z_hat"),
]


@pytest.mark.parametrize("name, labels", PAIR_METRICS)
def test_pair_metrics_name_empty_and_mismatched_rows(name, labels):
    f = getattr(metrics, name)
    for empty in (np.empty(0), np.empty((0, 3))):
        with pytest.raises(ValueError, match=f"{name} needs at least one row"):
            f(empty, empty)
    y = np.ones((20, 3))
    with pytest.raises(
        ValueError,
        match=rf"{name}: {labels} must have the same number of rows, got shapes "
        r"\(20, 3\) and \(5, 3\)",
    ):
        f(y, y[:5])
    with pytest.raises(ValueError, match=f"{name}: {labels} must have the same shape"):
        f(y, y[:, :2])


def test_explained_variance_is_scale_invariant():
    rng = np.random.default_rng(4)
    Z, Z_hat = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    want = metrics.reconstruction_explained_variance(Z, Z_hat)
    for scale in (1e-200, 1e200):
        got = metrics.reconstruction_explained_variance(Z * scale, Z_hat * scale)
        assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(
    "name",
    [
        "n_significant",
        "pullaway",
        "contribution_correlation",
        "mean_abs_correlation",
        "mean_contributions",
        "mean_active",
        "dead_fraction",
    ],
)
def test_no_x_features_is_refused(name):
    with pytest.raises(ValueError, match="needs at least one x-feature"):
        getattr(metrics, name)(np.empty((5, 0)))


def test_mean_contributions_validates_like_the_other_metrics():
    with pytest.raises(ValueError, match="contributions needs at least one row"):
        metrics.mean_contributions(np.empty((0, 5)))
    with pytest.raises(ValueError, match="contributions contains NaN"):
        metrics.mean_contributions([[1.0, np.nan], [2.0, 3.0]])
    with pytest.raises(ValueError, match="contributions contains infinity"):
        metrics.mean_contributions([[1.0, np.inf], [2.0, 3.0]])
    S3 = np.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_allclose(metrics.mean_contributions(S3), S3.mean(axis=0), rtol=1e-12)


def test_empty_outputs_concepts_and_wrong_argument_types_get_the_functions_own_errors():
    from sklearn.decomposition import PCA

    from sklearn_xnn.metrics import concept_recovery, n_significant, pullaway, seed_stability

    rng = np.random.default_rng(0)
    no_outputs = rng.random((5, 0, 3))
    for metric in (n_significant, pullaway):
        with pytest.raises(ValueError, match="at least one output"):
            metric(no_outputs)
    with pytest.raises(ValueError, match="at least one concept"):
        concept_recovery(rng.random((5, 2)), np.zeros((5, 0)))
    for coverage in ("0.9", True, None):
        with pytest.raises(ValueError, match="coverage must be a number in"):
            n_significant(rng.random((4, 3)), coverage=coverage)
    assert n_significant([[3.0, 1.0]], coverage=1) == 2.0  # an int is a number
    for seeds in (3, "01"):
        with pytest.raises(ValueError, match=r"seeds must be a sequence .* e.g. \[0, 1, 2\]"):
            seed_stability(PCA(2), rng.random((20, 4)), seeds=seeds)
