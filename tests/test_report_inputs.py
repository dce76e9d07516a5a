"""What the report refuses before it writes anything, and what its figures do with the
names of many outputs (ImageNet-style class names run to 50 characters and more)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.report import head_weights_figure, plot_decision, write_report

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def fitted():
    Z, y, _ = make_concept_activations(300, 32, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        srae = SRAEExplainer(3, max_iter=2, device="cpu", random_state=0).fit(Z, y)
    table = pd.DataFrame({"faithfulness_r2": [0.5]}, index=pd.Index(["SRAE"], name="explainer"))
    return Z, y, srae, table


def test_logits_that_are_not_finite_are_refused_before_anything_is_written(fitted, tmp_path):
    Z, y, srae, table = fitted
    lost = y.copy()
    lost[:, 3] = np.nan  # one class's logits lost in an export: argmax would pick it
    with pytest.raises(ValueError, match="NaN or infinity"):
        write_report(tmp_path / "r", table, explainer=srae, Z=Z, y=lost)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    with pytest.raises(ValueError, match="NaN or infinity"):
        plot_decision(srae, Z[0], y=lost[0])
    bad = y[0].copy()
    bad[1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        plot_decision(srae, Z[0], y=bad)


def test_output_names_are_one_distinct_name_per_output(fitted, tmp_path):
    Z, y, srae, table = fitted
    C = y.shape[1]
    with pytest.raises(ValueError, match="single string"):
        write_report(tmp_path / "a", table, explainer=srae, Z=Z, output_names="abcdefghij"[:C])
    with pytest.raises(ValueError, match=r"name each output once; \['cat'\]"):
        write_report(tmp_path / "b", table, explainer=srae, Z=Z, output_names=["cat"] * C)
    names = [f"class {c}" for c in range(C)]
    assert write_report(tmp_path / "c", table, explainer=srae, Z=Z, output_names=names).exists()


@pytest.mark.parametrize("length", [2, 50, 80])
def test_long_class_names_leave_the_head_weights_readable(length):
    rng = np.random.default_rng(0)
    coef = rng.standard_normal((10, 5))
    names = [f"{c}" + "x" * (length - 1) for c in range(10)]
    fig = head_weights_figure(coef, output_names=names)
    heatmap = fig.axes[0]
    assert heatmap.get_position().width > 0.35  # of the figure's width
    labels = [t.get_text() for t in heatmap.get_yticklabels()]
    assert all(len(t) <= 28 for t in labels)
    assert labels[3].startswith("3") and (length <= 28 or labels[3].endswith("..."))
