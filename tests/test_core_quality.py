"""The default explainer on every kind of case: faithful to the rank-5 bound, sparser than
PCA, no dead x-features, the decisions explained (held-out rows, K = 5, default parameters).

Cases: planted concepts (2,000 training rows, raw and standardised: signed), two layers of
the digits CNN (``relu_fc1``, 64 units, and the pooled convolutions, 512), the same ``fc1``
before its ReLU (signed), the patch CNN, planted concepts with 16 outputs and planted
concepts with 1,000 training rows. Sparser than PCA also means not by leaving inputs
unexplained: almost every held-out input's top logit keeps a positive contribution, in
every class.
The default run checks one seed per case; ``-m slow`` checks seeds 0, 1 and 2
(``benchmarks/core_quality.py`` reports the same numbers with every baseline and the fit
times).
"""

import functools
import warnings

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import load_digits_activations, make_concept_activations
from sklearn_xnn.datasets._patches import make_patch_images, train_patch_cnn
from sklearn_xnn.metrics import n_significant, top_explained
from sklearn_xnn.torch import extract_activations

K = 5


def rank_k_heldout(Ztr, ytr, Zte, yte, k=K):
    """Held-out uniform R² of rank-k reduced-rank regression fitted on standardised y."""
    sc = StandardScaler().fit(ytr)
    lin = LinearRegression().fit(Ztr, sc.transform(ytr))
    fitted = lin.predict(Ztr)
    centre = fitted.mean(0)
    _, _, vt = np.linalg.svd(fitted - centre, full_matrices=False)
    pred = (lin.predict(Zte) - centre) @ vt[:k].T @ vt[:k] + centre
    return r2_score(yte, sc.inverse_transform(pred))


def pca_significant(Ztr, ytr, Zte):
    pca = PCA(K, random_state=0).fit(Ztr)
    head = LinearRegression().fit(pca.transform(Ztr), ytr)
    return n_significant(pca.transform(Zte)[:, None, :] * head.coef_[None])


def explained_by_class(S, y, min_rows=20):
    """Per top class (with at least ``min_rows`` inputs): the fraction of its inputs whose
    top logit gets at least one positive contribution."""
    top = np.asarray(y).argmax(axis=1)
    hit = (S[np.arange(top.shape[0]), top] > 0).any(axis=1)
    classes, counts = np.unique(top, return_counts=True)
    pairs = zip(classes, counts, strict=True)
    return {int(c): float(hit[top == c].mean()) for c, n in pairs if n >= min_rows}


@functools.cache
def _digits():
    return load_digits_activations(random_state=0)


def _layer(model, layer, images_train, images_test):
    parts = [
        extract_activations(model, layer, ims, pooling="flatten", device="cpu")
        for ims in (images_train, images_test)
    ]
    (Ztr, ytr), (Zte, yte) = parts
    return Ztr.astype(np.float64), ytr.astype(np.float64), Zte.astype(np.float64), yte


def digits(layer):
    d = _digits()
    return _layer(d.model, layer, d.images_train, d.images_test)


@functools.cache
def _patch_data():
    data = make_patch_images(2000, random_state=0)
    im_tr, im_te, lab_tr, _ = train_test_split(
        data.images, data.labels, test_size=0.3, stratify=data.labels, random_state=0
    )
    return _layer(train_patch_cnn(im_tr, lab_tr, random_state=0), "relu_fc1", im_tr, im_te)


def planted(seed, n_train=2000, **kw):
    Z, y, _ = make_concept_activations(n_train + 1000, 256, random_state=seed, **kw)
    return Z[:n_train], y[:n_train], Z[n_train:], y[n_train:]


def planted_standardised(seed):
    Ztr, ytr, Zte, yte = planted(seed)
    scaler = StandardScaler().fit(Ztr)
    return scaler.transform(Ztr), ytr, scaler.transform(Zte), yte


CASES = {
    "planted": planted,
    "planted_standardised": planted_standardised,
    "digits_relu_fc1": lambda seed: digits("relu_fc1"),
    "digits_pool": lambda seed: digits("pool"),
    "digits_fc1_signed": lambda seed: digits("fc1"),
    "patch_relu_fc1": lambda seed: _patch_data(),
    "planted_16_outputs": lambda seed: planted(seed, n_outputs=16),
    "planted_1000_rows": lambda seed: planted(seed, n_train=1000),
}


def check_case(case, seed):
    Ztr, ytr, Zte, yte = CASES[case](seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        srae = SRAEExplainer(K, random_state=seed, device="cpu").fit(Ztr, ytr)
    bound = rank_k_heldout(Ztr, ytr, Zte, yte)
    r2 = srae.score(Zte, yte)
    sig, sig_pca = n_significant(srae.contributions(Zte)), pca_significant(Ztr, ytr, Zte)
    assert r2 >= bound - 0.01, (r2, bound)
    assert sig < sig_pca, (sig, sig_pca)
    # sparsity is not bought by leaving inputs unexplained: the decision (top logit) of
    # almost every held-out input gets a positive contribution, in every class (measured
    # on seeds 0-2: at least 0.96 of the inputs, 0.91 of a class; before training held
    # the rows explained, 0.61 on planted data, and one patch-CNN class had 0)
    S = srae.contributions(Zte)
    assert top_explained(S, yte) >= 0.95
    shares = explained_by_class(S, yte)
    assert min(shares.values()) >= 0.8, shares
    assert srae.n_dead_components_ == 0
    assert srae.faithfulness_ >= srae.faithfulness_bound_ - srae.faithfulness_tol - 1e-9


@pytest.mark.parametrize("case", list(CASES))
def test_default_explainer_on_every_kind_of_case(case):
    check_case(case, 0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_default_explainer_on_every_kind_of_case_three_seeds(case, seed):
    check_case(case, seed)
