"""Quality on planted ground truth: faithfulness far above PCA/NMF, concepts recovered."""

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import NMF, PCA
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.metrics import concept_recovery


def _headed_r2(transformer, Ztr, ytr, Zte, yte):
    Xtr = transformer.fit_transform(Ztr)
    head = LinearRegression().fit(Xtr, ytr)
    return r2_score(yte, head.predict(transformer.transform(Zte)))


def _check_planted(seed, n, d):
    Z, y, codes = make_concept_activations(n, d, random_state=seed)
    cut = 2 * n // 3
    Ztr, ytr, Zte, yte = Z[:cut], y[:cut], Z[cut:], y[cut:]
    srae = SRAEExplainer(n_components=5, random_state=seed, device="cpu").fit(Ztr, ytr)
    r2 = srae.score(Zte, yte)
    recovery = concept_recovery(srae.transform(Zte), codes[cut:])
    pca = _headed_r2(PCA(5), Ztr, ytr, Zte, yte)
    nmf = _headed_r2(NMF(5, init="nndsvda", max_iter=400), Ztr, ytr, Zte, yte)
    pls = r2_score(yte, PLSRegression(5).fit(Ztr, ytr).predict(Zte))
    assert srae.n_dead_components_ == 0
    assert r2 >= 0.95, r2
    assert recovery >= 0.9, recovery
    assert r2 >= pca + 0.5 and r2 >= nmf + 0.5, (r2, pca, nmf)
    assert r2 > pls, (r2, pls)


def test_planted_concepts_default_settings():
    _check_planted(0, 1500, 128)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_concepts_three_seeds_full_size(seed):
    _check_planted(seed, 3000, 256)


def test_faithfulness_beats_a_random_projection_of_the_same_size():
    from sklearn_xnn import RandomNonnegativeProjection

    Z, y, _ = make_concept_activations(900, 64, random_state=3)
    srae = SRAEExplainer(5, random_state=0, device="cpu", hidden_layer_sizes=(128, 32))
    r2 = srae.fit(Z[:600], y[:600]).score(Z[600:], y[600:])
    rand = _headed_r2(
        RandomNonnegativeProjection(5, random_state=0), Z[:600], y[:600], Z[600:], y[600:]
    )
    assert r2 > rand + 0.3, (r2, rand)
    assert np.isfinite(rand)
