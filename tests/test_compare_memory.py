"""The contribution columns of compare_explainers read by blocks of rows: the numbers of the
metrics on the whole ``(n, C, K)`` array, without ever holding it."""

import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import PCA

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.baselines import make_headed
from sklearn_xnn.compare import compare_explainers, evaluate_explainer
from sklearn_xnn.metrics import (
    _blocks,
    mean_abs_correlation,
    n_significant,
    pullaway,
    top_explained,
)
from sklearn_xnn.metrics._adapter import contribution_rows, contributions_of
from sklearn_xnn.metrics._blocks import contribution_metrics, row_blocks
from sklearn_xnn.metrics._geometry import PULLAWAY_EPS
from tests.conftest import FAST

NAMES = ("n_significant", "pullaway_samples", "pullaway_components", "contribution_corr")


def whole_array_metrics(S, eps=PULLAWAY_EPS):
    """The four contribution columns as the public metrics give them on all of ``S``."""
    return {
        "n_significant": n_significant(S),
        "pullaway_samples": pullaway(S, over="samples", eps=eps),
        "pullaway_components": pullaway(S, over="components", eps=eps),
        "contribution_corr": mean_abs_correlation(S),
    }


def signed_contributions(n, n_outputs, K, seed):
    """Signed contributions of uneven scale, with a dead x-feature (K > 1) and a zero row;
    ``n_outputs=None`` gives the 2-D array of 1-D logits."""
    rng = np.random.default_rng(seed)
    C = 1 if n_outputs is None else n_outputs
    S = rng.normal(size=(n, C, K)) * rng.gamma(1.0, 1.0, size=(1, C, K))
    if K > 1:
        S[:, :, 0] = 0.0
    S[n // 2] = 0.0
    return S[:, 0, :] if n_outputs is None else S


def classifier_like(n_rows, n_features, n_outputs, seed=0, rank=6):
    """Non-negative activations and ``n_outputs`` logits driven by ``rank`` factors."""
    rng = np.random.default_rng(seed)
    Z = np.maximum(rng.gamma(1.0, 1.0, (n_rows, rank)) @ rng.normal(size=(rank, n_features)), 0)
    Z += 0.05 * rng.random((n_rows, n_features))
    return Z, Z @ rng.normal(size=(n_features, n_outputs)) / np.sqrt(n_features)


def test_row_blocks_cover_the_rows_once():
    blocks = row_blocks(23, 40, 4 * 40 + 39)
    assert [(b.start, b.stop) for b in blocks] == [(0, 4), (4, 8), (8, 12), (12, 16)] + [
        (16, 20),
        (20, 23),
    ]
    assert [(b.start, b.stop) for b in row_blocks(3, 10**9, 1)] == [(0, 1), (1, 2), (2, 3)]
    assert row_blocks(5, 8, 10**9) == [slice(0, 5)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("rows_per_block", [1, 4, 50])  # 23 rows: 23, 6 (last of 3), 1 blocks
@pytest.mark.parametrize("n_outputs", [None, 1, 3, 1000])
@pytest.mark.parametrize("K", [1, 5])
@pytest.mark.parametrize("eps", [PULLAWAY_EPS, 0.0])
def test_block_metrics_equal_the_whole_array_metrics(rows_per_block, n_outputs, K, eps):
    n = 23
    S = signed_contributions(n, n_outputs, K, seed=7 * K + (n_outputs or 0))
    row_bytes = S[:1].nbytes
    block_bytes = rows_per_block * row_bytes + row_bytes // 2
    got = contribution_metrics(lambda rows: S[rows], n, eps=eps, block_bytes=block_bytes)
    want = whole_array_metrics(S, eps)
    assert got["n_significant"] == want["n_significant"]  # integer counts: exact
    for name in NAMES[1:]:  # NaN where undefined (K = 1) on both sides
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=0, err_msg=name)


def test_block_metrics_refuse_bad_input():
    S = np.ones((4, 2, 3))
    with pytest.raises(ValueError, match="at least one row"):
        contribution_metrics(lambda rows: S[rows], 0)
    with pytest.raises(ValueError, match="coverage must be a number in"):
        contribution_metrics(lambda rows: S[rows], 4, coverage=0.0)
    with pytest.raises(ValueError, match="contributions must have shape"):
        contribution_metrics(lambda rows: S[rows, 0, 0], 4)


def test_contribution_rows_are_slices_of_contributions_of():
    Z, y = classifier_like(60, 12, 5)
    model = make_headed(PCA(3)).fit(Z[:40], y[:40])
    rows_of = contribution_rows(model, Z[40:], Z_ref=Z[:40])
    S = contributions_of(model, Z[40:], Z_ref=Z[:40])
    np.testing.assert_array_equal(rows_of(slice(3, 11)), S[3:11])
    one = make_headed(PCA(3)).fit(Z[:40], y[:40, 0])
    assert contribution_rows(one, Z[40:])(slice(0, 4)).shape == (4, 3)
    assert contribution_rows(PCA(3).fit(Z), Z) is None


@pytest.mark.timeout(120)
def test_compare_columns_equal_the_metrics_of_the_whole_contributions(monkeypatch):
    Z, y = classifier_like(250, 24, 40)
    Ztr, ytr, Zte, yte = Z[:150], y[:150], Z[150:], y[150:]
    # 7 rows of 40 outputs and 3 x-features per block: 100 test rows make 15 blocks
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 7 * 40 * 3 * 8 + 100)
    explainers = {
        "SRAE": SRAEExplainer(3, random_state=0, **FAST),
        "PCA": PCA(3, random_state=0),
        "PLS": PLSRegression(3),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, fitted = compare_explainers(explainers, Ztr, ytr, Zte, yte, return_fitted=True)
    for name, est in fitted.items():
        want = whole_array_metrics(contributions_of(est, Zte, Z_ref=Ztr))
        for column in NAMES:
            got = table.loc[name, column]
            np.testing.assert_allclose(got, want[column], rtol=1e-12, err_msg=f"{name} {column}")


@pytest.mark.timeout(120)
def test_evaluate_explainer_never_holds_the_contributions(monkeypatch):
    # 1,000 rows, 1,000 outputs and K = 20: the contributions are 160 MB, the logits 8 MB
    Z, y = classifier_like(1400, 32, 1000, seed=1)
    model = make_headed(PCA(20, random_state=0)).fit(Z[:400], y[:400])
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 2 * 2**20)
    contributions_bytes = 1000 * 1000 * 20 * 8
    tracemalloc.start()
    try:
        row = evaluate_explainer(model, Z[400:], y[400:], Z_train=Z[:400])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(row["contribution_corr"]) and row["n_significant"] > 0
    # the rest of the peak (~40 MB) is the faithfulness metrics on the (n, C) logits
    assert peak < contributions_bytes / 2, f"peak {peak / 2**20:.0f} MB"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rows_per_block", [1, 4, 50])
@pytest.mark.parametrize("n_outputs", [None, 1, 3, 1000])
def test_decisions_explained_by_blocks_equal_a_loop_over_the_rows(rows_per_block, n_outputs):
    n, K = 23, 4
    S = signed_contributions(n, n_outputs, K, seed=11)
    y = np.random.default_rng(3).normal(size=(n,) if n_outputs is None else (n, n_outputs))
    top = np.zeros(n, int) if y.ndim == 1 else y.argmax(axis=1)
    S3 = S[:, None, :] if S.ndim == 2 else S
    want = np.mean([(S3[i, top[i]] > 0).any() for i in range(n)])
    assert top_explained(S, y) == want
    row_bytes = S[:1].nbytes
    got = contribution_metrics(lambda rows: S[rows], n, y=y, block_bytes=rows_per_block * row_bytes)
    assert got["top_explained"] == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="y must have shape"):
        top_explained(S, y[:-1])
