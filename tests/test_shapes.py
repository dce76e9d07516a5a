"""Every chunked or capped computation is right at any shape, 1 to 1,000 outputs.

The chunk sizes are shrunk so that a few dozen rows already cross several chunk
boundaries (and the significance cap several row caps); the results must not depend on
where the chunks end.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._nn import bound, data, training
from sklearn_xnn.metrics import n_significant

SHAPES = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OUTPUTS = st.sampled_from([1, 2, 3, 17, 200, 1000])


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 40 values: a row of 8 features is a chunk of 5 rows."""
    monkeypatch.setattr(bound, "CHUNK_VALUES", 40)
    monkeypatch.setattr(data, "CHUNK_VALUES", 40)


def _data(n, d, c, seed):
    rng = np.random.default_rng(seed)
    Z = np.abs(rng.normal(size=(n, d))) + rng.random((n, 1))
    Y = Z @ rng.normal(size=(d, c)) + 0.1 * rng.normal(size=(n, c))
    return Z, Y


@pytest.mark.timeout(120)
@SHAPES
@given(n=st.integers(2, 90), d=st.integers(1, 12), c=OUTPUTS, seed=st.integers(0, 2**16))
def test_chunked_moments_equal_the_whole_arrays(small_chunks, n, d, c, seed):
    Z, Y = _data(n, d, c, seed)
    m = bound.moments(torch.as_tensor(Z), torch.as_tensor(Y))
    Zc, Yc = Z - Z.mean(0), Y - Y.mean(0)
    np.testing.assert_allclose(m.z_mean.numpy(), Z.mean(0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(m.zz.numpy(), Zc.T @ Zc, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(m.zy.numpy(), Zc.T @ Yc, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(m.yy.numpy(), (Yc**2).sum(0), rtol=1e-9, atol=1e-8)


@pytest.mark.timeout(120)
@SHAPES
@given(n=st.integers(2, 90), k=st.integers(1, 6), c=OUTPUTS, seed=st.integers(0, 2**16))
def test_a_heads_error_from_moments_equals_its_residuals(small_chunks, n, k, c, seed):
    # every epoch's check reads Y only through these: output moments, the x-features'
    # moments with Y, and a head's residual sums of squares from them
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(n, k)), 0.0)
    Y = x @ rng.normal(size=(k, c)) + rng.normal(size=(n, c)) + 3.0
    W, b = rng.normal(size=(c, k)), rng.normal(size=c)
    count, mean, scatter = bound.output_moments(torch.as_tensor(Y, dtype=torch.float32))
    Y32 = Y.astype(np.float32).astype(np.float64)  # what the float32 outputs hold
    assert count == n
    np.testing.assert_allclose(mean.numpy(), Y32.mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scatter.numpy(), ((Y32 - Y32.mean(0)) ** 2).sum(0), rtol=1e-7)
    m = bound.head_moments(torch.as_tensor(x), torch.as_tensor(Y32), mean, scatter)
    rss = bound.head_rss(m, torch.as_tensor(W), torch.as_tensor(b)).numpy()
    expected = ((Y32 - x @ W.T - b) ** 2).sum(0)
    np.testing.assert_allclose(rss, expected, rtol=1e-7, atol=1e-7 * np.abs(expected).max())


@pytest.mark.timeout(120)
@SHAPES
@given(n=st.integers(1, 400), k=st.integers(1, 6), c=OUTPUTS, seed=st.integers(0, 2**16))
def test_the_significance_count_reads_whole_rows_under_its_cap(n, k, c, seed):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(n, k)), 0.0)
    W = rng.normal(size=(c, k))
    cap = 997  # contributions read at most: a few rows when c is large
    rows = max(1, min(n, cap // (c * k)))  # as many whole rows as stay under the cap
    count = training.significant_count(torch.as_tensor(x), torch.as_tensor(W), cap)
    S = x[:rows, None, :] * W[None]
    assert count == pytest.approx(n_significant(S), abs=1e-12)


@pytest.mark.timeout(240)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(12, 80),
    d=st.integers(2, 10),
    c=OUTPUTS,
    k=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_a_fit_at_any_shape_keeps_its_guarantee(n, d, c, k, seed):
    Z, Y = _data(n, d, c, seed)
    with pytest.MonkeyPatch.context() as mp:  # chunk ends everywhere, in the fit too
        mp.setattr(bound, "CHUNK_VALUES", 40)
        mp.setattr(data, "CHUNK_VALUES", 40)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = SRAEExplainer(
                k, hidden_layer_sizes=(16, 8), max_iter=2, random_state=0, device="cpu"
            ).fit(Z, Y)
    Y_hat = est.predict(Z)
    assert Y_hat.shape == Y.shape and est.coef_.shape == (c, k)
    S = est.contributions(Z[:3])
    assert S.shape == (3, c, k)
    np.testing.assert_allclose(S.sum(-1) + est.intercept_, Y_hat[:3], rtol=1e-6, atol=1e-6)
    # the faithfulness guarantee, on the training rows
    r2 = r2_score(Y, Y_hat)
    assert r2 >= est.faithfulness_bound_ - est.faithfulness_tol - 1e-5
    assert est.n_dead_components_ == 0


@pytest.mark.timeout(120)
@SHAPES
@given(
    n=st.integers(1, 300),
    d=st.integers(1, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
    divisor=st.sampled_from([1.0, 3.7]),
    seed=st.integers(0, 2**16),
    data_=st.data(),
)
def test_rows_read_in_place_equal_the_scaled_copy(n, d, dtype, divisor, seed, data_):
    # what a CPU fit reads of X (index sets, slices, sub-sources) is float32(X) / divisor
    X = np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)
    X.setflags(write=False)
    source = data.HostRows(X, "cpu", divisor=divisor)
    copy = torch.as_tensor(X, dtype=torch.float32) / divisor
    idx = torch.as_tensor(
        data_.draw(st.lists(st.integers(0, n - 1), max_size=50)), dtype=torch.long
    )
    start, stop = sorted(data_.draw(st.tuples(st.integers(0, n), st.integers(0, n))))
    assert torch.equal(data.batch(source, idx), copy[idx])
    assert torch.equal(source[start:stop], copy[start:stop])
    sub = data.take_rows(source, idx)  # a validation split's lazy rows
    inner = torch.arange(idx.shape[0])
    assert torch.equal(sub[inner], copy[idx]) and torch.equal(sub[:], copy[idx])
    np.testing.assert_array_equal(X, np.random.default_rng(seed).normal(size=(n, d)).astype(dtype))
