"""Shared fixtures: small planted data sets and a fast estimator configuration."""

import pytest
import torch

from sklearn_xnn.datasets import make_concept_activations

# Tiny models are dominated by thread start-up: one torch thread makes the suite ~10x faster
# on a loaded 2-core machine, and the results do not depend on it.
torch.set_num_threads(1)

#: A small, fast configuration for behaviour tests (not for quality).
FAST = dict(
    hidden_layer_sizes=(32, 16),
    max_iter=15,
    pretrain=2,
    batch_size=64,
    collapse_retries=0,
    device="cpu",
)


@pytest.fixture(scope="session")
def planted_small():
    """(Z, y, codes) with 300 rows, 24 features, 3 concepts, 4 outputs."""
    return make_concept_activations(
        300, 24, n_concepts=3, n_outputs=4, n_nuisance=3, random_state=0
    )
