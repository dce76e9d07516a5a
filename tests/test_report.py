"""The HTML report: self-contained, figures as PNGs, and rendered by a real headless Chromium."""

import re
import shutil
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets._patches import make_patch_images, train_patch_cnn
from sklearn_xnn.report import significant_components, write_report
from sklearn_xnn.torch import ExplainedNetwork, extract_activations

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """A report on a small patch-image CNN, with heatmaps (~3 s)."""
    data = make_patch_images(300, random_state=0)
    model = train_patch_cnn(data.images, data.labels, epochs=3, random_state=0)
    Z, y = extract_activations(model, "relu_fc1", data.images, device="cpu")
    Z, y = Z.astype(np.float64), y.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        srae = SRAEExplainer(
            3, hidden_layer_sizes=(16,), max_iter=10, pretrain=2, device="cpu", random_state=0
        ).fit(Z, y)
    table = pd.DataFrame(
        {"faithfulness_r2": [srae.score(Z, y), 0.5], "concept_recovery": [np.nan, np.nan]},
        index=pd.Index(["SRAE", "PCA"], name="explainer"),
    )
    out = tmp_path_factory.mktemp("report")
    write_report(
        out,
        table,
        explainer=srae,
        Z=Z[:60],
        images=data.images[:60],
        network=ExplainedNetwork(model, srae, layer="relu_fc1"),
        n_examples=3,
        n_top=5,
        output_names=["h-stripes", "v-stripes", "checker", "coarse"],
        notes=["a note <b>"],
    )
    return out


def test_report_is_self_contained(report_dir):
    html = (report_dir / "report.html").read_text()
    pngs = sorted(p.name for p in report_dir.glob("*.png"))
    assert pngs == [
        "decomposition_0.png",
        "decomposition_1.png",
        "decomposition_2.png",
        "head_weights.png",
        "top_activating.png",
    ]
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing fetched from outside
    assert "a note &lt;b&gt;" in html  # notes are escaped
    assert "faithfulness_r2" in html and "concept_recovery" not in html  # empty column dropped


def test_significant_components():
    assert significant_components([1.0, 1.0, 1.0, 1.0]).tolist() == [0, 1, 2, 3]
    assert significant_components([9.0, 1.0, -5.0]).tolist() == [0]
    assert significant_components([-1.0, 0.0]).tolist() == []
    assert significant_components([3.0, 3.0, 3.0, 1.0]).tolist() == [0, 1, 2]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        "--window-size=1000,1600",
        (report_dir / "report.html").as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    img = imread(shot)[..., :3]
    assert img.shape[:2] == (1600, 1000)
    spread = img.max(2) - img.min(2)
    red = (img[..., 0] > 0.7) & (img[..., 1] < 0.4) & (img[..., 2] < 0.4)
    blue = (img[..., 2] > 0.7) & (img[..., 0] < 0.4)
    dark = img.max(2) < 0.15
    # the top of the page is the title and the table: mostly white
    assert (img[:120].min(2) > 0.9).mean() > 0.8
    # figures were decoded and painted: saturated colours (bars, heatmaps, head weights)
    # and dark pixels (the images' backgrounds), well beyond anti-aliasing noise
    assert (spread > 0.4).mean() > 0.01
    assert red.sum() > 500 and blue.sum() > 500
    assert dark.mean() > 0.01
