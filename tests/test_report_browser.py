"""The demo's report in a real headless Chromium at 1280 x 900: the table fits, nothing is fetched.

Chromium is Debian's ``chromium`` package (``apt-get install chromium``; ``.ci/run``
installs it when missing). Without it the tests are skipped, saying so.
"""

import json
import re
import warnings

import numpy as np
import pytest
from matplotlib.image import imread

from sklearn_xnn.compare import compare_explainers, default_explainers
from sklearn_xnn.datasets import load_digits_activations
from sklearn_xnn.report import write_report
from sklearn_xnn.torch import ExplainedNetwork, reconstruction_faithfulness, split_sequential
from tests._browser import HEIGHT, WIDTH, needs_chromium, run_chromium
from tests.conftest import FAST

# Measures the layout after it is done and writes it into the DOM, which --dump-dom prints.
MEASURE = """<script>
const t = document.querySelector("table.comparison.main");
const r = t.getBoundingClientRect();
document.body.dataset.layout = JSON.stringify({
  tableScroll: t.scrollWidth, tableClient: t.clientWidth, tableRight: r.right,
  parentScroll: t.parentElement.scrollWidth, parentClient: t.parentElement.clientWidth,
  pageScroll: document.documentElement.scrollWidth, viewport: window.innerWidth,
  columns: t.querySelectorAll("thead th").length,
});
</script>"""


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """What ``sklearn-xnn demo`` writes, on a quickly trained digits CNN and small fits."""
    data = load_digits_activations(epochs=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, fitted = compare_explainers(
            default_explainers(5, 0, srae_params=FAST),
            data.Z_train,
            data.y_train,
            data.Z_test,
            data.y_test,
            return_fitted=True,
        )
    # the demo's two extra columns: the rest of the network on the reconstruction
    _, rest = split_sequential(data.model, data.layer)
    for name in ("SRAE", "PCA", "NMF"):
        embedder = fitted[name] if name == "SRAE" else fitted[name][0]
        scores = reconstruction_faithfulness(embedder, rest, data.Z_test, data.y_test)
        for column, value in scores.items():
            table.loc[name, column] = value
    srae = fitted["SRAE"]
    out = tmp_path_factory.mktemp("demo-report")
    write_report(
        out,
        table,
        explainer=srae,
        Z=data.Z_test[:120],
        images=data.images_test[:120],
        network=ExplainedNetwork(data.model, srae, layer=data.layer),
        output_names=[str(d) for d in range(10)],
        n_examples=3,
        n_top=6,
        title="sklearn_xnn demo: a digits CNN explained",
        notes=["Network: DigitsCNN, 3 epochs; explained layer relu_fc1 (64 units)."],
    )
    return out / "report.html", table


def test_report_loads_nothing_from_outside(demo_report):
    text = demo_report[0].read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text, re.IGNORECASE)
    assert not re.search(r"url\(|@import|<script|<link", text, re.IGNORECASE)
    # the K curve, the head weights, the top-activating inputs, 3 decompositions
    assert text.count('src="data:image/png;base64,') == 6
    assert "How faithful K components can be" in text


@needs_chromium
def test_main_table_fits_a_laptop_screen(demo_report, tmp_path):
    path, table = demo_report
    probe = tmp_path / "probe.html"
    probe.write_text(
        path.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"),
        encoding="utf-8",
    )
    done = run_chromium("--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    found = re.search(r'data-layout="([^"]+)"', done.stdout)
    assert found, f"chromium printed no measured DOM: {done.stderr[-2000:]}"
    layout = json.loads(found.group(1).replace("&quot;", '"'))
    assert layout["viewport"] == WIDTH
    # the demo's twelve main columns (no planted concepts) and the name column, unscrolled
    assert layout["columns"] == 13
    assert layout["tableScroll"] <= layout["tableClient"]
    assert layout["parentScroll"] <= layout["parentClient"]
    assert layout["tableRight"] <= WIDTH
    assert layout["pageScroll"] <= WIDTH


@needs_chromium
def test_report_screenshot_reads(demo_report, tmp_path_factory):
    shots = tmp_path_factory.mktemp("screenshot")
    shot = shots / "report_1280x900.png"
    run_chromium(f"--screenshot={shot}", demo_report[0].as_uri(), profile=shots / "profile")
    assert shot.exists(), "chromium wrote no screenshot"
    img = imread(shot)[..., :3]
    assert img.shape[:2] == (HEIGHT, WIDTH)
    # the first screen is text on white, the best cells are green, nothing is cut at the
    # right edge: the strip between the page's margin and the scroll bar is background
    white = img.min(2) > 0.95
    green = (np.abs(img - np.array([0xDF, 0xF0, 0xD8]) / 255).max(2)) < 0.02
    assert white.mean() > 0.6
    assert green.sum() > 2000
    assert white[:, WIDTH - 45 : WIDTH - 20].mean() > 0.99
