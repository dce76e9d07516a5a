"""Later partial_fit chunks: they train the explainer first fitted, with its shape, scale
and constraint, and a chunk on which an output is constant leaves that output's head."""

import pickle
import re
import warnings

import numpy as np
import pytest
from sklearn.metrics import r2_score

from sklearn_xnn import SRAEExplainer, load
from sklearn_xnn.datasets import make_concept_activations

pytestmark = pytest.mark.timeout(120)


def _stream(seed=0):
    Z, y, _ = make_concept_activations(3000, 32, n_outputs=4, random_state=seed)
    return Z[:2000], y[:2000], Z[2000:2600], y[2000:2600], Z[2600:], y[2600:]


def _first(Z, y, **params):
    est = SRAEExplainer(3, device="cpu", random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.partial_fit(Z, y)


def test_a_chunk_on_which_an_output_is_constant_keeps_that_outputs_head():
    Z0, y0, Z1, y1, Zt, yt = _stream()
    est = _first(Z0, y0)
    before = est.coef_.copy()
    r2 = r2_score(yt[:, 0], est.predict(Zt)[:, 0])
    flat = y1.copy()
    flat[:, 0] = 7.0  # output 0 constant on this chunk: it says nothing about its weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(Z1, flat)
    assert np.abs(est.coef_[0]).max() > 0.5 * np.abs(before[0]).max()
    assert r2_score(yt[:, 0], est.predict(Zt)[:, 0]) > r2 - 0.05  # was -3.9 with its row wiped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(Z1, np.full_like(y1, 2.0))  # every output constant on the chunk
    assert est.score(Zt, yt) > 0.5


@pytest.mark.parametrize(
    "change",
    [
        dict(faithfulness="kl"),
        dict(multioutput="variance_weighted"),
        dict(faithfulness_tol=0.05),
        dict(n_components=4),
        dict(hidden_layer_sizes=(32, 8)),
        dict(rescale=False),
    ],
)
def test_parameters_that_shape_the_fit_are_refused_between_chunks(change, tmp_path):
    Z0, y0, Z1, y1, _, _ = _stream()
    est = _first(Z0, y0)
    coef = est.coef_.copy()
    name, value = next(iter(change.items()))
    est.set_params(**change)
    with pytest.raises(ValueError, match=rf"{name}=.* -> {re.escape(repr(value))} changed since"):
        est.partial_fit(Z1, y1)
    np.testing.assert_array_equal(est.coef_, coef)  # nothing trained
    est.save(tmp_path / "e.safetensors")
    for again in (pickle.loads(pickle.dumps(est)), load(tmp_path / "e.safetensors")):
        with pytest.raises(ValueError, match="changed since"):  # a round trip changes nothing
            again.partial_fit(Z1, y1)
    est.set_params(**{name: SRAEExplainer().get_params()[name] if name != "n_components" else 3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(Z1, y1)  # set back: trains
    est.set_params(alpha_pullaway=0.5, learning_rate_init=1e-4)  # read at every call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(Z1, y1)
        est.set_params(**change).fit(Z0, y0)  # fit starts over with the new values
        est.partial_fit(Z1, y1)
