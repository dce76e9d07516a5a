"""Property-based tests (hypothesis) of SRAEExplainer's invariants.

Shapes, dtypes, non-negative x-features, row-wise inference, consistency of predict and
contributions, and finite outputs on finite input.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tests.conftest import fit_quiet

N_FEATURES = 6
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def models():
    """Explainers fitted four ways: multi-output, 1-D y, unsupervised, signed activations."""
    rng = np.random.RandomState(0)
    Z = np.abs(rng.randn(60, N_FEATURES))
    Y = Z @ rng.randn(N_FEATURES, 3)
    return {
        "multi": fit_quiet(Z, Y),
        "single": fit_quiet(Z, Y[:, 0]),
        "unsupervised": fit_quiet(Z),
        "signed": fit_quiet(Z - 1.0, Y, n_components=3),
    }


def inputs(dtype=np.float64, bound=1e6, max_rows=12):
    width = 32 if dtype == np.float32 else 64
    return arrays(
        dtype,
        st.tuples(st.integers(1, max_rows), st.just(N_FEATURES)),
        elements=st.floats(-bound, bound, allow_nan=False, width=width),
    )


MODEL_NAMES = st.sampled_from(["multi", "single", "unsupervised", "signed"])


@SETTINGS
@given(name=MODEL_NAMES, X=st.one_of(inputs(np.float64), inputs(np.float32)))
def test_transform_shape_dtype_nonnegative_finite(models, name, X):
    est = models[name]
    out = est.transform(X)
    assert out.shape == (X.shape[0], est.n_components_)
    assert out.dtype == X.dtype
    assert np.isfinite(out).all()
    assert (out >= 0).all()
    Z_hat = est.inverse_transform(out)
    assert Z_hat.shape == X.shape and Z_hat.dtype == X.dtype
    assert np.isfinite(Z_hat).all()
    if est.decoder_relu_output_:
        assert (Z_hat >= 0).all()


@SETTINGS
@given(name=st.sampled_from(["multi", "single", "signed"]), X=inputs(np.float64))
def test_predict_and_contributions_agree(models, name, X):
    est = models[name]
    pred, S = est.predict(X), est.contributions(X)
    n_out = est.coef_.shape[0]
    assert pred.shape == ((X.shape[0],) if name == "single" else (X.shape[0], n_out))
    assert np.isfinite(pred).all() and np.isfinite(S).all()
    rebuilt = S.sum(axis=-1) + (est.intercept_[0] if name == "single" else est.intercept_)
    np.testing.assert_allclose(rebuilt, pred, rtol=1e-9, atol=1e-9 * (1 + np.abs(pred).max()))


@SETTINGS
@given(name=MODEL_NAMES, X=inputs(np.float64), data=st.data())
def test_inference_is_row_wise(models, name, X, data):
    est = models[name]
    full = est.transform(X)
    rows = np.vstack([est.transform(X[i : i + 1]) for i in range(X.shape[0])])
    # one row and many go through different float64 kernels (matrix-vector, matrix-matrix):
    # they agree to rounding of the sums, whose size is the inputs', not the outputs' (at
    # inputs of -4.3e5 a 23.0 came out 5e-11 apart, cancellation of 1e-16-relative terms)
    scale = 1 + np.abs(full).max() + np.abs(X).max()
    np.testing.assert_allclose(rows, full, rtol=1e-12, atol=1e-12 * scale)
    perm = data.draw(st.permutations(range(X.shape[0])))
    np.testing.assert_allclose(est.transform(X[perm]), full[perm], rtol=1e-12, atol=1e-300)


@SETTINGS
@given(name=MODEL_NAMES, X=inputs(np.float32, bound=1e4))
def test_float32_rows_match_batch(models, name, X):
    est = models[name]
    full = est.transform(X)
    rows = np.vstack([est.transform(X[i : i + 1]) for i in range(X.shape[0])])
    np.testing.assert_allclose(rows, full, rtol=1e-6, atol=1e-6 * (1 + np.abs(full).max()))


@SETTINGS
@given(name=MODEL_NAMES, X=inputs(np.float64, bound=np.finfo(np.float64).max))
def test_any_finite_input_gives_finite_output_or_a_clear_error(models, name, X):
    est = models[name]
    try:
        out = est.transform(X)
    except ValueError as exc:  # only overflow of the float64 arithmetic is allowed
        assert "overflowed to non-finite values" in str(exc)
        assert np.abs(X).max() > 1e300
    else:
        assert np.isfinite(out).all() and (out >= 0).all()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(3, 24),
    d=st.integers(1, 6),
    n_out=st.integers(0, 3),
    exponent=st.integers(-30, 30),
    seed=st.integers(0, 2**16),
    float32=st.booleans(),
)
def test_fit_on_any_finite_data_gives_finite_outputs(n, d, n_out, exponent, seed, float32):
    rng = np.random.RandomState(seed)
    Z = rng.standard_exponential((n, d)) * 10.0**exponent
    Z[:, rng.rand(d) < 0.2] = 1.0  # some constant columns
    Z = Z.astype(np.float32 if float32 else np.float64)
    y = None if n_out == 0 else rng.randn(n, n_out) * 10.0 ** rng.randint(-5, 6)
    est = fit_quiet(Z, y)
    X = est.transform(Z)
    assert X.shape == (n, 2) and X.dtype == Z.dtype
    assert np.isfinite(X).all() and (X >= 0).all()
    assert np.isfinite(est.inverse_transform(X)).all()
    assert np.isfinite(est.loss_curve_).all()
    if y is not None:
        assert est.predict(Z).shape == (n, n_out)
        assert np.isfinite(est.predict(Z)).all()
