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


@pytest.fixture(scope="module")
def thousand_classes():
    Z, Y = classifier_like(600, 32, 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        xnn = SRAEExplainer(n_components=4, max_iter=2, random_state=0, device="cpu").fit(Z, Y)
    return xnn, Z, Y


def test_contributions_of_chosen_outputs_equal_the_full_arrays(thousand_classes):
    xnn, Z, _ = thousand_classes
    full = xnn.contributions(Z[:20])
    picked = xnn.contributions(Z[:20], outputs=[3, 999, -1, 3])
    np.testing.assert_array_equal(picked, full[:, [3, 999, -1, 3]])
    assert xnn.contributions(Z[:20], outputs=[]).shape == (20, 0, 4)
    top = xnn.predict(Z[:20]).argmax(axis=1)
    predicted = xnn.contributions(Z[:20], outputs="predicted")
    assert predicted.shape == (20, 4)
    np.testing.assert_array_equal(predicted, full[np.arange(20), top])
    # the predicted class's logit is its contributions plus its intercept
    np.testing.assert_allclose(
        predicted.sum(1) + xnn.intercept_[top],
        xnn.predict(Z[:20])[np.arange(20), top],
        rtol=1e-5,
        atol=1e-5,
    )


def test_predicted_contributions_never_hold_every_rows_logits(thousand_classes):
    import tracemalloc

    xnn, Z, _ = thousand_classes
    Zb = np.tile(Z, (-(-8000 // len(Z)), 1))[:8000]  # 8,000 rows x 1,000 logits: 64 MB
    tracemalloc.start()
    try:
        predicted = xnn.contributions(Zb, outputs="predicted")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    top = xnn.predict(Zb[:50]).argmax(axis=1)
    np.testing.assert_array_equal(predicted[:50], xnn.contributions(Zb[:50])[np.arange(50), top])
    assert peak < 40e6, f"contributions('predicted') peaked at {peak / 1e6:.0f} MB"


@pytest.mark.parametrize(
    "outputs, match",
    [
        ([1000], "outside the 1000 outputs"),
        ([-1001], "outside the 1000 outputs"),
        ([0.5], "1-D array-like of output indices"),
        ([[0, 1]], "1-D array-like of output indices"),
        ("top", "1-D array-like of output indices"),
    ],
)
def test_contributions_refuse_unknown_outputs(thousand_classes, outputs, match):
    xnn, Z, _ = thousand_classes
    with pytest.raises(ValueError, match=match):
        xnn.contributions(Z[:2], outputs=outputs)


@pytest.mark.timeout(120)
def test_report_and_comparison_stay_readable_with_1000_outputs(thousand_classes, tmp_path):
    import html as html_lib
    import re

    from PIL import Image

    from sklearn_xnn.compare import compare_explainers
    from sklearn_xnn.report import write_report
    from sklearn_xnn.report._html import MAX_OUTPUTS_SHOWN

    xnn, Z, Y = thousand_classes
    table = compare_explainers({"SRAE": xnn}, Z[:400], Y[:400], Z[400:], Y[400:])
    assert list(table.index) == ["SRAE"]  # one row per explainer, not per output
    names = [f"class {c}" for c in range(1000)]
    path = write_report(tmp_path, table, explainer=xnn, Z=Z[400:], output_names=names)
    page = html_lib.unescape(path.read_text())
    predicted = xnn.predict(Z[400:]).argmax(1)
    counts = np.bincount(predicted, minlength=1000)
    # the head weights show the most often predicted classes only, and say so
    n_shown = min(MAX_OUTPUTS_SHOWN, int((counts > 0).sum()))
    assert f"The {n_shown} outputs predicted most often, of 1000" in page
    height = Image.open(tmp_path / "head_weights.png").size[1]
    assert height < 2000  # a 1,000-row heatmap would be tens of thousands of pixels
    # the per-class summary: one row per shown class that is predicted, with its count
    rows = re.findall(r"<tr><th>class (\d+)</th><td>(\d+)</td>", page)
    assert 0 < len(rows) <= MAX_OUTPUTS_SHOWN
    for c, n in rows:
        assert counts[int(c)] == int(n)
    shown = {int(c) for c, _ in rows}
    assert shown == set(np.argsort(-counts, kind="stable")[:MAX_OUTPUTS_SHOWN]) & set(
        np.flatnonzero(counts)
    )
