"""The HTML report and its figures: self-contained, every column defined, losses said.

The report in a real headless Chromium is in ``test_report_browser.py``.
"""

import copy
import html
import inspect
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import NMF, PCA
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor

from sklearn_xnn import SRAEExplainer, SRAEExplainerCV
from sklearn_xnn.baselines import make_headed
from sklearn_xnn.compare import COLUMN_INFO, compare_explainers, describe_losses, k_curve
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.datasets._patches import make_patch_images, train_patch_cnn
from sklearn_xnn.metrics import n_significant
from sklearn_xnn.report import (
    decomposition_figure,
    head_weights_figure,
    k_curve_figure,
    plot_decision,
    top_activating_figure,
    write_report,
)
from sklearn_xnn.report._explainer import LinearView, feature_names
from sklearn_xnn.report._figures import bias_note, significant, to_png
from sklearn_xnn.report._html import _Decisions, _output_summary_html, _shown_outputs
from sklearn_xnn.torch import (
    HEATMAP_METHODS,
    ExplainedNetwork,
    extract_activations,
    xfeature_heatmaps,
)

OUTPUTS = ["h-stripes", "v-stripes", "checker", "coarse"]


@pytest.fixture(scope="module")
def patches():
    """A small patch-image CNN, its relu_fc1 activations and a small SRAE on them (~3 s)."""
    data = make_patch_images(300, random_state=0)
    model = train_patch_cnn(data.images, data.labels, epochs=3, random_state=0)
    Z, y = extract_activations(model, "relu_fc1", data.images, device="cpu")
    Z, y = Z.astype(np.float64), y.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        srae = SRAEExplainer(
            3, hidden_layer_sizes=(16,), max_iter=10, pretrain=2, device="cpu", random_state=0
        ).fit(Z, y)
    return data, model, Z, y, srae


@pytest.fixture(scope="module")
def report_dir(patches, tmp_path_factory):
    data, model, Z, y, srae = patches
    table = pd.DataFrame(
        {"faithfulness_r2": [srae.score(Z, y), 0.5], "concept_recovery": [np.nan, np.nan]},
        index=pd.Index(["SRAE", "PCA"], name="explainer"),
    )
    out = tmp_path_factory.mktemp("report")
    network = ExplainedNetwork(model, srae, layer="relu_fc1")
    shown = dict(Z=Z[:60], images=data.images[:60], network=network, output_names=OUTPUTS)
    write_report(out, table, explainer=srae, n_examples=3, n_top=5, notes=["a note <b>"], **shown)
    return out


def test_report_is_self_contained(report_dir):
    text = (report_dir / "report.html").read_text()
    pngs = sorted(p.name for p in report_dir.glob("*.png"))
    decompositions = [f"decomposition_{j}.png" for j in range(3)]
    assert pngs == [*decompositions, "head_weights.png", "top_activating.png"]
    assert text.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing fetched from outside
    assert "a note &lt;b&gt;" in text  # notes are escaped
    assert "each has an excitation backprop heatmap, titled with its contribution" in text
    assert "faithfulness_r2" in text and "concept_recovery" not in text  # empty column dropped


TABLE = pd.DataFrame(
    {
        "faithfulness_r2": [0.93, 0.61, 0.95],
        "top1_agreement": [0.904, 0.919, 0.90],
        "mean_active": [1.5, 5.0, 5.0],
        "dead_fraction": [0.0, 0.0, 0.0],
        "rmse": [0.30, 0.80, 0.25],
        "concept_recovery": [np.nan, np.nan, np.nan],
        "note": ["", "", "ConvergenceWarning"],
    },
    index=pd.Index(["SRAE", "PCA", "PLS"], name="explainer"),
)


def _main_table(text):
    return re.search(r'<table class="comparison main">.*?</table>', text, re.S).group(0)


def test_table_defines_every_column_and_marks_the_best(tmp_path):
    text = write_report(tmp_path, TABLE).read_text(encoding="utf-8")
    main = _main_table(text)
    # one header row (no empty pandas row), the name column and the four main metrics
    assert main.count("<tr>") + main.count('<tr class="reference">') == 4
    assert main.count("<thead><tr>") == 1 and "<thead><tr><th" in main
    headers = re.findall(r'<th scope="col" title="([^"]*)">([^<]*)', main)
    assert [h[1].strip() for h in headers] == [
        "faithfulness R²",
        "top\u20111 agreement",
        "active per input",
        "dead x\u2011features",
    ]
    for column, (tooltip, _) in zip(
        ["faithfulness_r2", "top1_agreement", "mean_active", "dead_fraction"], headers, strict=True
    ):
        info = COLUMN_INFO[column]
        assert html.unescape(tooltip) == f"{info.meaning} {info.better.capitalize()} is better."
        assert f"<code>{column}</code>" in text  # the legend names the column
    # best per column: PLS faithfulness, PCA top-1, SRAE sparsity, a three-way tie on dead
    best = re.findall(r'<th scope="row">(\w+)</th>(.*?)</tr>', main)
    marked = {
        name: re.findall(r"<td( class=\"best\")?[^>]*>([^<]*)</td>", row) for name, row in best
    }
    assert [bool(c) for c, _ in marked["SRAE"]] == [False, False, True, True]
    assert [bool(c) for c, _ in marked["PCA"]] == [False, True, False, True]
    assert [bool(c) for c, _ in marked["PLS"]] == [True, False, False, True]
    assert '<tr class="reference"><th scope="row">SRAE</th>' in main
    assert "↑</span>" in main and "↓</span>" in main
    # the other columns are folded, rmse with them; the empty column nowhere
    assert "<summary>All metrics (5)</summary>" in text and "<code>rmse</code>" in text
    assert "concept_recovery" not in text
    assert "<b>PLS</b>: ConvergenceWarning" in text
    # a metric undefined for one explainer is a dash, not a blank or "nan"
    gap = TABLE.assign(rmse=[0.3, np.nan, 0.25])
    full = write_report(tmp_path, gap).read_text(encoding="utf-8").split("All metrics")[1]
    assert full.count('<td class="na" title="not defined for this explainer">–</td>') == 1
    assert "nan" not in full


def test_report_says_where_srae_loses(tmp_path):
    text = write_report(tmp_path, TABLE).read_text(encoding="utf-8")
    sentences = describe_losses(TABLE)
    assert sentences == [
        "PLS is more faithful than SRAE on these data: SRAE's faithfulness R² 0.93 is below "
        "PLS's 0.95.",
        "PCA is closer to the network's decisions than SRAE on these data: SRAE's top-1 "
        "agreement 0.904 is below PCA's 0.919.",
        "PLS is closer to the logits than SRAE on these data: SRAE's logit RMSE 0.3 is above "
        "PLS's 0.25 (lower is better).",
    ]
    assert "<h3>Where SRAE loses</h3>" in text
    for sentence in sentences:
        assert f"<li>{html.escape(sentence)}</li>" in text
    winning = TABLE.drop(index="PLS").assign(top1_agreement=[0.95, 0.9])
    text = write_report(tmp_path, winning).read_text(encoding="utf-8")
    assert "SRAE is best or tied on every metric of this table." in text
    assert "<h3>Where" not in write_report(tmp_path, TABLE.drop(index="SRAE")).read_text()
    # another reference row
    text = write_report(tmp_path, TABLE, reference="PLS").read_text(encoding="utf-8")
    assert (
        "<h3>Where PLS loses</h3>" in text and '<tr class="reference"><th scope="row">PLS' in text
    )


def test_significant_is_the_metric():
    rng = np.random.RandomState(0)
    for _ in range(50):
        s = rng.normal(size=7) * rng.exponential(size=7)
        chosen = significant(s)
        assert len(chosen) == n_significant(s[None, :])
        np.testing.assert_array_equal(chosen, np.argsort(-s, kind="stable")[: len(chosen)])
    assert significant([1.0, 1.0, 1.0, 1.0]).tolist() == [0, 1, 2, 3]
    assert significant([9.0, 1.0, -5.0]).tolist() == [0]
    assert significant([-1.0, 0.0]).tolist() == []
    assert significant([3.0, 3.0, 3.0, 1.0]).tolist() == [0, 1, 2]


def test_write_report_edges(patches, tmp_path):
    data, model, Z, y, srae = patches
    table = pd.DataFrame({"faithfulness_r2": [0.5]}, index=pd.Index(["SRAE"], name="explainer"))
    with pytest.raises(ValueError, match="needs Z"):
        write_report(tmp_path / "a", table, explainer=srae)
    with pytest.raises(ValueError, match="output_names has 2 names but the explainer has 4"):
        write_report(tmp_path / "b", table, explainer=srae, Z=Z[:20], output_names=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unsupervised = SRAEExplainer(3, hidden_layer_sizes=(16,), max_iter=2, device="cpu")
        unsupervised.fit(Z)
    path = write_report(
        tmp_path / "c", table, explainer=unsupervised, Z=Z[:20], images=data.images[:20]
    )
    assert "no head to show" in path.read_text()
    assert (tmp_path / "c" / "top_activating.png").exists()
    assert not (tmp_path / "c" / "head_weights.png").exists()


def test_data_frames_keep_their_feature_names(patches, tmp_path):
    data, model, Z, y, _ = patches
    frame = pd.DataFrame(Z, columns=[f"unit{j}" for j in range(Z.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xnn = SRAEExplainer(3, hidden_layer_sizes=(16,), max_iter=2, device="cpu").fit(frame, y)
    table = pd.DataFrame({"faithfulness_r2": [0.5]}, index=pd.Index(["SRAE"], name="explainer"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names"
        write_report(tmp_path, table, explainer=xnn, Z=frame.iloc[:20], n_examples=1)
        plot_decision(xnn, frame.iloc[0])


def test_a_search_is_read_through_its_refitted_explainer(patches, tmp_path):
    data, model, Z, y, _ = patches
    srae = SRAEExplainer(3, hidden_layer_sizes=(16,), max_iter=2, device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = SRAEExplainerCV(srae, {"alpha_pullaway": [0.1]}, cv=2).fit(Z, y)
    text = write_report(tmp_path, TABLE, explainer=search, Z=Z[:20], y=y[:20], n_examples=1)
    assert "no head to show" not in text.read_text() and (tmp_path / "head_weights.png").exists()
    best = search.best_estimator_
    bars = [plot_decision(e, Z[0], y=y[0]).axes[0].patches for e in (search, best)]
    assert [p.get_height() for p in bars[0]] == [p.get_height() for p in bars[1]]


def test_one_output_has_no_decision(patches, tmp_path):
    data, model, Z, y, _ = patches
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = SRAEExplainer(2, hidden_layer_sizes=(16,), max_iter=2, device="cpu").fit(Z, y[:, 0])
    logit = pd.Series(y[:30, 0], name="h-score")  # its name names the output
    text = write_report(tmp_path, TABLE, explainer=one, Z=Z[:30], y=logit).read_text()
    assert "<h2>The output decomposed into x-feature contributions</h2>" in text
    assert "network predicts" not in text and "Decisions decomposed" not in text
    assert "Held-out input 0: output h-score (rebuilt score" in text
    fig = plot_decision(one, Z[0], y=y[0, :1], image=data.images[0])
    assert fig.axes[0].get_title() == "input\noutput 0"


def test_head_weights_of_many_outputs_stay_a_readable_size():
    coef = np.random.default_rng(0).normal(size=(1000, 5))
    fig = head_weights_figure(coef)
    assert fig.get_size_inches()[1] < 12
    assert len(fig.axes[0].get_yticklabels()) < 20  # the axis's own index ticks, not 1,000
    labelled = head_weights_figure(coef[:20], [f"c{i}" for i in range(20)])
    assert [t.get_text() for t in labelled.axes[0].get_yticklabels()][-1] == "c19"


def test_bias_note():
    assert bias_note([1.0, -2.0], 2.5) is None  # the bias does not outweigh 1 + 2
    assert bias_note([1.0, -2.0], 3.5) == (
        "Most of this score comes from the bias (3.50): the x-features' contributions add "
        "up to -1.00 (3.00 in absolute value)."
    )
    assert bias_note([-3.0, 0.0, -2.0], 18.15).endswith(
        "-5.00 (5.00 in absolute value) and every one of them is negative or zero."
    )


def test_decomposition_shows_the_bias_and_a_colour_bar():
    rng = np.random.RandomState(0)
    image, maps = rng.rand(1, 8, 8), rng.rand(3, 8, 8)
    fig = decomposition_figure(
        [-2.0, 4.0, 1.0], intercept=18.15, output_name="3", image=image, heatmaps=maps
    )
    bars = fig.axes[1]
    assert [t.get_text() for t in bars.get_xticklabels()] == ["x0", "x1", "x2", "bias"]
    heights = [p.get_height() for p in bars.patches]
    np.testing.assert_allclose(heights, [-2.0, 4.0, 1.0, 18.15], rtol=1e-12)
    # image, bars, one map per significant x-feature (x1, x2), and the colour bar
    assert len(fig.axes) == 5
    assert fig.axes[-1].get_ylabel() == "evidence (share of\nthe map's max)"
    # a map is titled with what the bars show: the contribution, not the x-feature's value
    titles = [ax.get_title() for ax in fig.axes[2:4]]
    assert titles == ["x1\ncontribution 4.00", "x2\ncontribution 1.00"]
    assert "score 21.15 = 3.00 (x-features) + 18.15 (bias)" in bars.get_title()
    assert any("Most of this score comes from the bias" in t.get_text() for t in fig.texts)
    plain = decomposition_figure([2.0, 4.0], intercept=-1.0, output_name="a")
    assert plain.texts == [] and "- 1.00 (bias)" in plain.axes[0].get_title()
    width, height = fig.get_size_inches()
    assert height >= 3.0 and width >= 9.0  # readable, not a thumbnail


def test_feature_names_follow_the_explainer(patches):
    data, model, Z, y, srae = patches
    assert feature_names(srae, 3) == list(srae.get_feature_names_out())
    assert feature_names(PCA(2).fit(Z), 2) == ["pca0", "pca1"]
    assert feature_names(object(), 2) == ["x0", "x1"]
    assert feature_names(PCA(2).fit(Z), 3) == ["x0", "x1", "x2"]  # counts disagree


def test_plot_decision(patches):
    data, model, Z, y, srae = patches
    network = ExplainedNetwork(model, srae, layer="relu_fc1")
    fig = plot_decision(srae, Z[0], image=data.images[0], network=network, output_names=OUTPUTS)
    assert isinstance(fig, Figure)
    names = list(srae.get_feature_names_out())
    ticks = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert ticks == [*names, "bias"]
    predicted = int(srae.predict(Z[:1]).argmax())
    assert fig.axes[0].get_title() == f"input\ntop rebuilt output {OUTPUTS[predicted]}"
    S = srae.contributions(Z[:1])[0, predicted]
    np.testing.assert_allclose(
        [p.get_height() for p in fig.axes[1].patches],
        [*S, srae.intercept_[predicted]],
        rtol=1e-6,
    )
    n_maps = len(significant(S))
    assert len(fig.axes) == 2 + n_maps + (n_maps > 0)
    # another output, drawn into a given figure; no image: only the bars
    target = Figure()
    other = plot_decision(srae, Z[0], output=(predicted + 1) % 4, figure=target)
    assert other is target and len(other.axes) == 1
    assert other.get_size_inches()[1] >= 3.0


def test_report_uses_the_explainer_names_and_flags_the_bias(patches, tmp_path):
    data, model, Z, y, srae = patches
    shifted = copy.deepcopy(srae)
    shifted.intercept_ = shifted.intercept_ + np.array([1e3, 0.0, 0.0, 0.0])
    text = write_report(
        tmp_path, TABLE, explainer=shifted, Z=Z[:30], n_examples=2, output_names=OUTPUTS
    ).read_text(encoding="utf-8")
    assert text.count("<b>Most of this score comes from the bias (") == 2
    assert "the explainer&#x27;s top rebuilt output is h-stripes (rebuilt score" in text


def test_figures_label_their_values(patches):
    data, model, Z, y, srae = patches
    X = srae.transform(Z)
    names = list(srae.get_feature_names_out())
    fig = top_activating_figure(data.images, X, n_top=4, names=names)
    assert "number above an image: the x-feature's value on it" in fig.get_suptitle()
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == names
    weights = head_weights_figure(srae.coef_, OUTPUTS, names)
    assert weights.axes[-1].get_ylabel() == "weight W_ck"
    assert [t.get_text() for t in weights.axes[0].get_xticklabels()] == names


def test_heatmap_default_is_the_user_guides():
    """The report, plot_decision, xfeature_heatmaps and the CLI's choice (HEATMAP_METHODS[0])
    default to the method the user guide calls the default."""
    guide = (Path(__file__).parents[1] / "docs" / "user_guide" / "visualising.rst").read_text()
    (documented,) = re.findall(r'^``"(\w+)"`` \(default\)$', guide, flags=re.MULTILINE)
    defaults = {
        f.__name__: inspect.signature(f).parameters[name].default
        for f, name in (
            (write_report, "heatmap_method"),
            (plot_decision, "heatmap_method"),
            (xfeature_heatmaps, "method"),
        )
    }
    assert defaults == dict.fromkeys(defaults, documented)
    assert HEATMAP_METHODS[0] == documented == "excitation_backprop"


# ------------------------------------------------------------------ whose decision is shown
def _captions(text):
    found = re.findall(r"<figcaption>(Held-out input \d+: [^<]*)", html.unescape(text))
    return [c.strip() for c in found]


def test_with_y_the_report_explains_the_networks_decisions(patches, tmp_path):
    data, model, Z, y, srae = patches
    Z, rebuilt = Z[:40], srae.predict(Z[:40])
    network = np.roll(rebuilt, 1, axis=1)  # the network decides output (top + 1) % 4
    decided = network.argmax(1)
    assert (decided != rebuilt.argmax(1)).all()
    text = write_report(
        tmp_path / "y", TABLE, explainer=srae, Z=Z, y=network, output_names=OUTPUTS
    ).read_text(encoding="utf-8")
    captions = _captions(text)
    assert len(captions) == 6
    for caption in captions:
        i = int(re.match(r"Held-out input (\d+)", caption).group(1))
        score = rebuilt[i, decided[i]]
        top = OUTPUTS[rebuilt[i].argmax()]
        assert caption == (
            f"Held-out input {i}: the network predicts {OUTPUTS[decided[i]]} (its rebuilt "
            f"score {score:.2f}; the explainer's top rebuilt output is {top})."
        )
    counts = dict(re.findall(r"<tr><th>([\w-]+)</th><td>(\d+)</td>", text))
    expected = {OUTPUTS[c]: str(n) for c, n in enumerate(np.bincount(decided, minlength=4)) if n}
    assert counts == expected
    assert "rows the network predicts it on" in text and "predicted output" not in text
    # without y: every sentence says it is the explainer's top rebuilt output
    plain = write_report(tmp_path / "n", TABLE, explainer=srae, Z=Z, output_names=OUTPUTS)
    plain = plain.read_text(encoding="utf-8")
    assert all("the explainer's top rebuilt output is" in c for c in _captions(plain))
    assert "can differ from the network's decision; pass y" in html.unescape(plain)
    assert "predicted output" not in plain and "network predicts" not in plain


def test_write_report_checks_rows_before_writing(patches, tmp_path):
    data, model, Z, y, srae = patches
    for kwargs, match in [
        (dict(images=data.images[:50]), r"images must have one row per row of Z \(40"),
        (dict(images=data.images[:41]), r"images must have one row per row of Z \(40.*got 41"),
        (dict(y=y[:39]), r"y must have one row per row of Z \(40.*got 39"),
        (dict(y=y[:40, :3]), r"y must hold the network's 4 logits per row"),
        (dict(images=data.images[:40], n_top=0), r"n_top must be an integer >= 1 \(top-act"),
        (dict(n_examples=-1), r"n_examples must be an integer >= 0 \(inputs to decompose"),
        (dict(reference="XNN"), r"'XNN' is not a row of the .* valid: \['SRAE', 'PCA', 'PLS'\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            write_report(tmp_path / "never", TABLE, explainer=srae, Z=Z[:40], **kwargs)
    duplicated = pd.concat([TABLE, TABLE.loc[["PCA"]]])
    with pytest.raises(ValueError, match=r"repeats the explainer names \['PCA'\]"):
        write_report(tmp_path / "never", duplicated)
    assert not (tmp_path / "never").exists()
    none = write_report(tmp_path / "none", TABLE, explainer=srae, Z=Z[:20], n_examples=0)
    assert "Decisions decomposed" not in none.read_text()  # n_examples=0: no empty section
    assert not list((tmp_path / "none").glob("decomposition*"))


def test_outputs_never_decided_are_named(patches, tmp_path):
    data, model, Z, y, srae = patches
    always_first = np.tile([1.0, 0.0, 0.0, 0.0], (30, 1))  # the network always decides 0
    text = write_report(
        tmp_path, TABLE, explainer=srae, Z=Z[:30], y=always_first, output_names=OUTPUTS
    ).read_text(encoding="utf-8")
    assert re.findall(r"<tr><th>([\w-]+)</th><td>(\d+)</td>", text) == [("h-stripes", "30")]
    assert (
        "3 of the 4 outputs are never the network's decision on these rows and have no line "
        "above: v-stripes, checker, coarse." in html.unescape(text)
    )


def _summary(decided, C):
    """The per-output summary's text when the network decides ``decided``, of ``C`` outputs."""
    y = np.eye(C)[decided]
    view = LinearView(np.ones((len(y), 2)), np.ones((C, 2)), np.zeros(C), ["a", "b"])
    decisions = _Decisions(y, y)
    shown = _shown_outputs(decisions.counts)
    assert len(shown) == 30
    return html.unescape(_output_summary_html(view, decisions, shown, [f"o{c}" for c in range(C)]))


def test_outputs_left_out_of_a_long_summary_are_counted_and_named():
    # outputs 0..39 decided (0 most often, the others once: 30..39 tie with 29), 40..99 never
    text = _summary(np.r_[np.zeros(10, int), np.arange(40)], 100)
    assert len(re.findall(r"<tr><th>o\d+</th>", text)) == 30
    assert (
        "60 of the 100 outputs are never the network's decision on these rows and have no "
        "line above: o40, o41, o42, o43, o44, o45, o46, o47, o48, o49, ..." in text
    )
    assert (
        "10 more outputs, each on 1 row or fewer (the least frequent output shown has 1; ties "
        "go to the lower index), are left out: o30, " in text
    )
    # 1..29 twice, 30..40 once: fewer rows than any shown; 41 never
    text = _summary(np.r_[np.zeros(10, int), np.arange(41), np.arange(1, 30)], 42)
    assert "1 of the 42 outputs is never the network's decision on these rows and has no " in text
    assert "11 more outputs, each on fewer rows than those shown, are left out: o30, " in text


# ------------------------------------------------------------ explainers other than SRAE
@pytest.fixture(scope="module")
def headed():
    Z, y, _ = make_concept_activations(300, 16, n_outputs=4, random_state=0)
    nmf = NMF(3, max_iter=500, random_state=0)
    explainers = {"PCA": PCA(3), "NMF": nmf, "PLS": PLSRegression(3)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, fitted = compare_explainers(
            explainers, Z[:200], y[:200], Z[200:], y[200:], return_fitted=True
        )
    assert type(fitted["PLS"]) is PLSRegression
    return table, fitted, Z[200:], y[200:]


@pytest.mark.parametrize("name", ["PCA", "NMF", "PLS"])
def test_headed_baselines_are_decomposed_exactly(headed, name, tmp_path):
    table, fitted, Z, y = headed
    est = fitted[name]
    rebuilt = est.predict(Z[:1])[0]
    fig = plot_decision(est, Z[0], y=y[0], output_names=OUTPUTS)
    c = int(y[0].argmax())
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert len(heights) == 4  # K = 3 contributions and the bias
    assert sum(heights) == pytest.approx(rebuilt[c], abs=1e-8)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[-1] == "bias" and ticks[0].startswith(name.lower())
    text = write_report(tmp_path, table, explainer=est, Z=Z, y=y, reference=name).read_text()
    for caption in _captions(text):
        i, c = re.match(r"Held-out input (\d+): the network predicts (\d)", caption).groups()
        score = float(re.search(r"rebuilt score (-?[\d.]+)", caption).group(1))
        assert score == pytest.approx(est.predict(Z[int(i) : int(i) + 1])[0, int(c)], abs=0.006)
    assert (tmp_path / "head_weights.png").exists()


def test_explainers_without_a_linear_head_are_refused(headed, tmp_path):
    table, fitted, Z, y = headed
    with pytest.raises(TypeError, match="write_report explains an SRAEExplainer, a headed"):
        write_report(tmp_path, table, explainer=LinearRegression().fit(Z, y), Z=Z)
    knn = make_headed(PCA(2), head=KNeighborsRegressor(3)).fit(Z, y)
    with pytest.raises(TypeError, match="predict is linear in its x-features; Pipeline's"):
        plot_decision(knn, Z[0])
    bare = PCA(2).fit(Z)  # a transformer alone: its x-features, no head
    text = write_report(tmp_path, table, explainer=bare, Z=Z).read_text()
    assert "no head to show" in text
    with pytest.raises(TypeError, match="plot_decision needs an explainer with a linear head"):
        plot_decision(bare, Z[0])


# ------------------------------------------------------------------------ plot_decision
def test_plot_decision_explains_the_networks_decision_given_y(patches):
    data, model, Z, y, srae = patches
    top = int(srae.predict(Z[:1]).argmax())
    network = np.roll(srae.predict(Z[:1]), 1, axis=1)[0]  # decides (top + 1) % 4
    fig = plot_decision(srae, Z[0], y=network, image=data.images[0], output_names=OUTPUTS)
    decided = (top + 1) % 4
    assert fig.axes[0].get_title() == f"input\nnetwork predicts {OUTPUTS[decided]}"
    np.testing.assert_allclose(
        [p.get_height() for p in fig.axes[1].patches],
        [*srae.contributions(Z[:1])[0, decided], srae.intercept_[decided]],
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(output_names=list("abcdefg")), "output_names has 7 names but the explainer has 4"),
        (dict(output_names=["a"]), "output_names has 1 names but the explainer has 4"),
        (dict(output=4), r"output 4 is outside the explainer's 4 outputs \(valid: -4 to 3\)"),
        (dict(output=-5), r"output -5 is outside the explainer's 4 outputs"),
        (dict(output=1.0), "output must be an integer output index"),
        (dict(y=np.zeros(3)), r"y must be the network's 4 logits for z, of shape \(4,\)"),
        (dict(y=np.zeros((2, 4))), r"y must be the network's 4 logits for z"),
    ],
)
def test_plot_decision_checks_its_arguments(patches, kwargs, match):
    data, model, Z, y, srae = patches
    with pytest.raises(ValueError, match=match):
        plot_decision(srae, Z[0], **kwargs)


def test_plot_decision_takes_one_row_and_negative_outputs(patches):
    data, model, Z, y, srae = patches
    for z in (Z[:2], pd.DataFrame(Z[:2])):
        with pytest.raises(ValueError, match=r"explains one input.*got shape \(2, "):
            plot_decision(srae, z)
    last = plot_decision(srae, Z[0], output=-1, output_names=OUTPUTS)
    assert last.axes[0].get_title().startswith("coarse: score ")
    assert [p.get_height() for p in last.axes[0].patches][-1] == pytest.approx(
        srae.intercept_[3], rel=1e-12
    )


# --------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("K, n_significant", [(8, 6), (20, 10), (20, 20), (40, 40)])
def test_decomposition_wraps_the_heatmaps_within_12_inches(K, n_significant):
    rng = np.random.default_rng(0)
    s = np.r_[np.ones(n_significant), -0.1 * np.ones(K - n_significant)]
    fig = decomposition_figure(
        s,
        intercept=0.5,
        output_name="cat",
        image=rng.random((1, 8, 8)),
        heatmaps=rng.random((K, 8, 8)),
    )
    assert fig.get_figwidth() <= 12.0
    assert len(fig.axes) == 2 + len(significant(s)) + 1  # image, bars, maps, colour bar
    to_png(fig)  # draws
    boxes = [ax.get_position() for ax in fig.axes[2:-1]]
    assert min(b.x0 for b in boxes) >= 0 and max(b.x1 for b in boxes) <= 1  # all on the page


@pytest.mark.parametrize("K", [5, 20, 30])
def test_top_activating_title_clears_the_first_row(K):
    rng = np.random.default_rng(0)
    fig = top_activating_figure(rng.random((40, 1, 8, 8)), rng.random((40, K)), 6)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    first = max(ax.title.get_window_extent(renderer).y1 for ax in fig.axes[:6])
    assert title.y0 >= first
    assert title.y1 <= fig.bbox.y1


def test_k_curve_marks_every_k_compared(tmp_path):
    Z, y, _ = make_concept_activations(200, 40, random_state=0)
    curve = k_curve(Z, y, max_k=30)
    fig = k_curve_figure(curve, [3, 30, 3])
    marks = [line.get_xdata()[0] for line in fig.axes[0].lines if line.get_linestyle() == ":"]
    assert marks == [3, 30]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][-1] == "K = 3, 30"
    ax = fig.axes[0]
    assert all(float(t).is_integer() for t in ax.get_xticks())  # K is a count
    to_png(fig)  # drawn: the legend sits below the axes, clear of the curves
    assert ax.get_legend().get_window_extent().y1 <= ax.get_window_extent().y0
