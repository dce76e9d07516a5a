"""Explainers of classifiers with many outputs (hundreds to a thousand logits)."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from sklearn_xnn import SRAEExplainer


def classifier_like(n_rows, n_features, n_outputs, rank=8, seed=0):
    """Non-negative activations and ``n_outputs`` logits driven by ``rank`` factors."""
    rng = np.random.default_rng(seed)
    factors = rng.gamma(1.0, 1.0, size=(n_rows, rank))
    Z = np.maximum(factors @ rng.normal(size=(rank, n_features)), 0.0)
    Z += 0.05 * rng.random((n_rows, n_features))
    Y = Z @ rng.normal(size=(n_features, n_outputs)) / np.sqrt(n_features)
    return Z.astype(np.float32), Y.astype(np.float32)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n_rows, n_outputs", [(1000, 1000), (1200, 200)])
def test_default_fit_with_many_outputs(n_rows, n_outputs):
    # more rows than 2**22 // (n_outputs * K) crossed a row cap of a chunked computation
    Z, Y = classifier_like(n_rows, 48, n_outputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        xnn = SRAEExplainer(n_components=5, max_iter=2, random_state=0, device="cpu").fit(Z, Y)
    assert xnn.coef_.shape == (n_outputs, 5)
    assert xnn.predict(Z[:7]).shape == (7, n_outputs)
    assert xnn.contributions(Z[:3]).shape == (3, n_outputs, 5)
    assert xnn.score(Z, Y) >= xnn.faithfulness_bound_ - 0.01
