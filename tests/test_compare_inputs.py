"""Planted codes that concept recovery cannot read are refused by compare_explainers
before any explainer fits, naming ``codes_test`` (not a metric's internal argument)."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from sklearn_xnn.compare import compare_explainers
from sklearn_xnn.datasets import make_concept_activations

pytestmark = pytest.mark.timeout(60)


class _MustNotFit(PCA):
    def fit(self, X, y=None):
        raise AssertionError("fitted before the codes were checked")

    fit_transform = fit


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c[:, 0], r"codes_test must be 2-D.*got shape \(100,\); one concept"),
        (lambda c: c[None], r"codes_test must be 2-D.*got shape \(1, 100, 5\)"),
        (lambda c: np.where(c > 1, np.nan, c), "codes_test must hold finite numbers.*NaN"),
        (lambda c: c.astype(str), "codes_test must hold finite numbers.*<U"),
    ],
)
def test_codes_that_concept_recovery_cannot_read_are_refused_first(change, message):
    Z, y, codes = make_concept_activations(400, 32, n_outputs=4, random_state=0)
    with pytest.raises(ValueError, match=message):
        compare_explainers(
            {"PCA": _MustNotFit(2)},
            Z[:300],
            y[:300],
            Z[300:],
            y[300:],
            codes_test=change(codes[300:]),
        )
