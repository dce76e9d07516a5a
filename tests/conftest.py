"""Shared fixtures: small planted data sets and a fast estimator configuration."""

import warnings

import pytest
import torch
from hypothesis import settings
from sklearn.exceptions import ConvergenceWarning

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import make_concept_activations

# Tiny models are dominated by thread start-up: one torch thread makes the suite ~10x faster
# on a loaded 2-core machine, and the results do not depend on it.
torch.set_num_threads(1)

# Property tests draw the same examples on every run and machine: a failure reproduces,
# and the suite passes or fails as a whole (random exploration belongs in a local run:
# pytest --hypothesis-profile=explore).
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=200)
settings.load_profile("default")

#: A small, fast configuration for behaviour tests (not for quality).
FAST = dict(
    hidden_layer_sizes=(32, 16),
    max_iter=15,
    pretrain=2,
    batch_size=64,
    device="cpu",
)


#: The smallest configuration that still trains: for tests of plumbing, not of quality.
TINY = dict(hidden_layer_sizes=(16, 8), max_iter=5, pretrain=1, n_components=2)


def fit_quiet(X, y=None, **kw):
    """A :data:`TINY` explainer (``random_state=0``, ``kw`` on top) fitted without its
    ConvergenceWarnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SRAEExplainer(**{**TINY, "random_state": 0, **kw}).fit(X, y)


@pytest.fixture(scope="session")
def planted_small():
    """(Z, y, codes) with 300 rows, 24 features, 3 concepts, 4 outputs."""
    return make_concept_activations(
        300, 24, n_concepts=3, n_outputs=4, n_nuisance=3, random_state=0
    )
