"""compare_explainers / compare_per_output, the baselines and the random sanity row."""

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import NMF, PCA
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.baselines import PLSEmbedding, RandomNonnegativeProjection, make_headed
from sklearn_xnn.compare import (
    COLUMN_INFO,
    COLUMNS,
    DEFAULT_COLUMNS,
    ComparisonTable,
    best_rows,
    compare_explainers,
    compare_per_output,
    default_explainers,
    describe_losses,
    evaluate_explainer,
    format_comparison,
    k_curve,
)
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.metrics import (
    component_cosines,
    concept_recovery,
    faithfulness_r2,
    mean_abs_correlation,
    reconstruction_r2,
    top1_agreement,
)
from sklearn_xnn.metrics._adapter import contributions_of, head_coef
from tests.conftest import FAST

SMALL_SRAE = FAST  # small and fast; conftest also runs torch on one thread


@pytest.fixture(scope="module")
def split():
    Z, y, codes = make_concept_activations(400, 32, n_outputs=4, random_state=0)
    return Z[:300], y[:300], Z[300:], y[300:], codes[300:]


@pytest.fixture(scope="module")
def table(split):
    Zt, yt, Zs, ys, codes = split
    explainers = default_explainers(3, 0, srae_params=SMALL_SRAE)
    explainers["nystroem"] = Nystroem(n_components=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare_explainers(explainers, Zt, yt, Zs, ys, codes_test=codes)


@parametrize_with_checks([RandomNonnegativeProjection(3, random_state=0)])
def test_random_projection_sklearn_checks(estimator, check):
    check(estimator)


def test_random_projection_behaviour():
    Z = np.random.RandomState(0).exponential(size=(60, 8))
    rnp = RandomNonnegativeProjection(3, random_state=0).fit(Z)
    X = rnp.transform(Z)
    assert (rnp.projection_ >= 0).all() and (X >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(rnp.projection_, axis=1), 1.0, rtol=1e-12)
    # inverse_transform is the least-squares regression of Z on the projected features
    lr = LinearRegression().fit(X, Z)
    np.testing.assert_allclose(rnp.inverse_transform(X), lr.predict(X), atol=1e-10)
    assert rnp.get_feature_names_out().tolist() == [
        "randomnonnegativeprojection0",
        "randomnonnegativeprojection1",
        "randomnonnegativeprojection2",
    ]
    other = RandomNonnegativeProjection(3, random_state=1).fit(Z)
    assert not np.allclose(other.projection_, rnp.projection_)
    assert X.dtype == np.float64 and rnp.transform(Z.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="inverse_transform expects 3 features per row"):
        rnp.inverse_transform(X[:, :2])


def test_make_headed():
    model = make_headed(PCA(2))
    assert isinstance(model, Pipeline) and [n for n, _ in model.steps] == ["pca", "head"]
    pls = make_headed(PLSRegression(4, scale=False))
    assert type(pls[0]) is PLSEmbedding and pls[0].get_params()["scale"] is False
    assert pls[0].n_components == 4


def test_compare_table_shape_and_columns(table):
    assert list(table.index) == ["SRAE", "PCA", "NMF", "PLS", "random", "nystroem"]
    assert list(table.columns) == COLUMNS
    assert (table["n_components"] == 3).all()
    assert (table["fit_time_s"] > 0).all()
    # every row has a head on equal footing: faithfulness and top-1 everywhere
    assert table[["faithfulness_r2", "top1_agreement", "kl"]].notna().all().all()
    # no inverse_transform -> NaN reconstruction; no PCA-style components_ for ... Nystroem has some
    assert np.isnan(table.loc["nystroem", "reconstruction_r2"])
    assert table.drop(index="nystroem")["reconstruction_r2"].notna().all()
    assert table["concept_recovery"].between(0, 1).all()
    assert table["top_explained"].between(0, 1).all()


def test_compare_rows_match_direct_computation(split, table):
    Zt, yt, Zs, ys, codes = split
    pca = make_headed(PCA(3, random_state=0)).fit(Zt, yt)
    row = table.loc["PCA"]
    assert row["faithfulness_r2"] == pytest.approx(pca.score(Zs, ys), rel=1e-10)
    assert row["top1_agreement"] == pytest.approx(top1_agreement(ys, pca.predict(Zs)), abs=0)
    Z_hat = pca[0].inverse_transform(pca[0].transform(Zs))
    assert row["reconstruction_r2"] == pytest.approx(reconstruction_r2(Zs, Z_hat), rel=1e-10)
    assert row["component_max_cos"] == pytest.approx(0.0, abs=1e-10)
    assert row["mean_active"] == 3.0
    assert row["concept_recovery"] == pytest.approx(
        concept_recovery(pca[0].transform(Zs), codes), rel=1e-10
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        srae = SRAEExplainer(3, random_state=0, **SMALL_SRAE).fit(Zt, yt)
    assert table.loc["SRAE", "faithfulness_r2"] == pytest.approx(srae.score(Zs, ys), rel=1e-9)
    assert table.loc["SRAE", "contribution_corr"] == pytest.approx(
        mean_abs_correlation(srae.contributions(Zs)), rel=1e-9
    )
    assert table.loc["SRAE", "component_max_cos"] == pytest.approx(
        component_cosines(srae.components_)[0], rel=1e-9
    )


def test_random_row_is_told_apart(table):
    # all-positive projections of non-negative data: nearly collinear contributions
    assert table.loc["random", "contribution_corr"] > 0.8
    assert table.loc["random", "contribution_corr"] > table.loc["PCA", "contribution_corr"] + 0.5
    assert table.loc["random", "pullaway_samples"] > 0.9


def test_pls_contributions_rebuild_its_own_predict(split):
    Zt, yt, Zs, ys, _ = split
    pls = PLSRegression(3).fit(Zt, yt)
    S = contributions_of(pls, Zs, Z_ref=Zt)
    assert S.shape == (len(Zs), 4, 3)
    offset = pls.predict(Zs) - S.sum(axis=2)
    np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-8)
    assert head_coef(pls, Zt).shape == (4, 3)


def test_nmf_is_skipped_on_signed_activations(split):
    Zt, yt, Zs, ys, _ = split
    signed = Zt - Zt.mean(0)
    table = compare_explainers(
        {"NMF": NMF(2, init="nndsvda", random_state=0), "PCA": PCA(2)},
        signed,
        yt,
        Zs - Zt.mean(0),
        ys,
    )
    assert table.loc["NMF", "note"].startswith("skipped: NMF needs non-negative activations")
    assert table.loc["NMF", COLUMNS[:-1]].isna().all()
    assert np.isfinite(table.loc["PCA", "faithfulness_r2"])


def test_one_output_leaves_top1_nan(split):
    Zt, yt, Zs, ys, _ = split
    table = compare_explainers({"PCA": PCA(2)}, Zt, yt[:, 0], Zs, ys[:, 0])
    assert np.isnan(table.loc["PCA", "top1_agreement"]) and np.isnan(table.loc["PCA", "kl"])
    assert np.isnan(table.loc["PCA", "top_explained"])  # no decision, as compare_per_output
    assert table.loc["PCA", "faithfulness_r2"] == pytest.approx(
        make_headed(PCA(2)).fit(Zt, yt[:, 0]).score(Zs, ys[:, 0]), rel=1e-10
    )


def test_compare_per_output(split):
    Zt, yt, Zs, ys, _ = split
    ex = {"PCA": PCA(2), "PLS": PLSRegression(2)}
    table = compare_per_output(ex, Zt, yt, Zs, ys)
    preds = np.column_stack(
        [PLSRegression(2).fit(Zt, yt[:, c]).predict(Zs) for c in range(ys.shape[1])]
    )
    per_logit = [faithfulness_r2(ys[:, c], preds[:, c]) for c in range(ys.shape[1])]
    assert table.loc["PLS", "faithfulness_r2"] == pytest.approx(np.mean(per_logit), rel=1e-10)
    assert table.loc["PLS", "top1_agreement"] == pytest.approx(top1_agreement(ys, preds), abs=0)
    # a subset of logits in another order: averages still defined, top-1 is not
    part = compare_per_output(ex, Zt, yt, Zs, ys, outputs=[2, 0])
    assert np.isnan(part.loc["PLS", "top1_agreement"])
    assert part.loc["PLS", "faithfulness_r2"] == pytest.approx(
        np.mean([per_logit[2], per_logit[0]]), rel=1e-10
    )
    assert table["top_explained"].isna().all()  # one logit per explainer: no decision
    with pytest.raises(ValueError, match="compare_per_output needs 2-D logits"):
        compare_per_output(ex, Zt, yt[:, 0], Zs, ys[:, 0])


def test_evaluate_explainer_bare_transformer(split):
    Zt, yt, Zs, ys, _ = split
    row = evaluate_explainer(PCA(2).fit(Zt), Zs, ys)
    assert row["y_pred"] is None and np.isnan(row["faithfulness_r2"])
    assert np.isnan(row["n_significant"]) and row["reconstruction_r2"] > 0


def test_default_columns_are_described():
    assert set(COLUMNS) | set(DEFAULT_COLUMNS) == set(COLUMN_INFO)
    assert {info.better for info in COLUMN_INFO.values()} == {"higher", "lower", None}
    assert all(info.meaning.endswith(".") for info in COLUMN_INFO.values())


def test_comparison_prints_readably(table):
    assert isinstance(table, pd.DataFrame) and isinstance(table, ComparisonTable)
    text = str(table)
    assert text == repr(table) == format_comparison(table) == table.to_text()
    lines = text.splitlines()
    assert "..." not in text and max(len(line) for line in lines) <= 100
    assert lines[0].split() == ["metric", "(*", "best)", *table.index, "better"]
    shown = [c for c in DEFAULT_COLUMNS if c in table.columns and table[c].notna().any()]
    assert [line.split()[0] for line in lines[1 : 1 + len(shown)]] == shown
    # one star per scored line, on the best value (faithfulness: higher is better)
    row = lines[1 + shown.index("faithfulness_r2")].split()
    best = table["faithfulness_r2"].idxmax()
    assert row[-1] == "higher" and row[1 + list(table.index).index(best)].endswith("*")
    assert sum(cell.endswith("*") for cell in row) == 1
    assert lines[-1] == "(7 more columns: format_comparison(table, columns='all'))"
    full = format_comparison(table, columns="all")
    assert "pullaway_components" in full and "pullaway_components" not in text
    assert format_comparison(table, columns=["rmse"]).splitlines()[1].startswith("rmse ")
    with pytest.raises(ValueError, match=r"columns \['nope'\] are not in the comparison"):
        format_comparison(table, columns=["nope"])
    # derived frames are plain DataFrames with pandas' own repr
    assert type(table[["rmse"]]) is pd.DataFrame


def test_skipped_rows_are_noted_in_the_text(split):
    Zt, yt, Zs, ys, _ = split
    table = compare_explainers(
        {"NMF": NMF(2, init="nndsvda", random_state=0), "PCA": PCA(2)},
        Zt - Zt.mean(0),
        yt,
        Zs - Zt.mean(0),
        ys,
    )
    assert "note: NMF: skipped: NMF needs non-negative activations" in format_comparison(table)


def test_describe_losses_from_the_numbers(table):
    sentences = describe_losses(table)
    for column, info in COLUMN_INFO.items():
        if info.better is None or column not in table.columns:
            continue
        ours = table.loc["SRAE", column]
        sign = 1 if info.better == "higher" else -1
        beaten = [
            n
            for n in table.index
            if n != "SRAE"
            and sign * (table.loc[n, column] - ours) > 0
            and f"{table.loc[n, column]:.3g}" != f"{ours:.3g}"
            and abs(table.loc[n, column] - ours) > 1e-12
        ]
        label = info.label.removesuffix(" (s)")
        said = [s for s in sentences if f"SRAE's {label} " in s]
        assert len(said) == (1 if beaten else 0), column
        for name in beaten:
            value = table.loc[name, column]
            assert f"{name}'s {'0' if abs(value) < 1e-12 else f'{value:.3g}'}" in said[0]
    # fit times are measured: two can tie at the shown precision, and then both are best
    fastest = best_rows(table, "fit_time_s")
    assert table["fit_time_s"].idxmin() in fastest
    shown = {f"{table.loc[n, 'fit_time_s']:.3g}" for n in fastest}
    assert shown == {f"{table['fit_time_s'].min():.3g}"}


def test_describe_losses_sentences():
    t = pd.DataFrame(
        {
            "faithfulness_r2": [0.93, 0.95, 0.9304],
            "dead_fraction": [0.2, 0.0, 0.2],
            "n_components": [3, 2, 1],
            "fit_time_s": [2.0, 0.01, 0.5],
        },
        index=["SRAE", "PLS", "PCA"],
    )
    assert describe_losses(t) == [
        "PLS is more faithful than SRAE on these data: SRAE's faithfulness R² 0.93 is below "
        "PLS's 0.95.",
        "SRAE's dead x-features 0.2 is above PLS's 0 (lower is better).",
        "PLS and PCA are faster to fit than SRAE on these data: SRAE's fit time 2 s is above "
        "PLS's 0.01 s and PCA's 0.5 s (lower is better).",
    ]
    assert describe_losses(t.drop(columns="fit_time_s"), reference="PLS") == []
    assert describe_losses(t, reference="absent") == []


def test_comparison_carries_the_k_curve(split):
    Zt, yt, Zs, ys, _ = split
    table = compare_explainers({"PCA": PCA(3)}, Zt, yt, Zs, ys)
    curve = table.k_curve
    pd.testing.assert_frame_equal(curve, k_curve(Zt, yt), check_exact=False, rtol=1e-12)
    # the rank-K linear bound beats PCA's own faithfulness on the training rows
    pca_train = make_headed(PCA(3)).fit(Zt, yt).score(Zt, yt)
    assert curve.loc[3, "linear_bound_r2"] >= pca_train - 1e-3  # (GCV's ridge: 1e-3)
    assert np.all(np.diff(curve["pca_explained_variance"]) >= -1e-12)
    assert any(line.startswith("K curve (training rows)") for line in str(table).splitlines())
    combined = pd.concat([table, table])  # frames carrying the curve still combine
    assert len(combined) == 2


def test_float32_activations_are_compared_in_float32(split, tmp_path):
    Zt, yt, Zs, ys, _ = split
    explainers = {"PCA": PCA(3), "NMF": NMF(3, init="nndsvda", max_iter=500)}
    as32 = [a.astype(np.float32) for a in (Zt, Zs)]
    tables = [compare_explainers(explainers, Zt, yt, Zs, ys),
              compare_explainers(explainers, as32[0], yt, as32[1], ys)]  # fmt: skip
    columns = ["faithfulness_r2", "reconstruction_r2"]
    np.testing.assert_allclose(tables[1][columns], tables[0][columns], rtol=1e-4, atol=1e-5)
    # the K curve reads a float32 memmap in place: no float64 copy of its rows
    big = np.lib.format.open_memmap(tmp_path / "z.npy", "w+", np.float32, (20000, 64))
    big[:] = np.random.default_rng(0).random(big.shape, dtype=np.float32)
    big.flush()
    Z = np.load(tmp_path / "z.npy", mmap_mode="r")
    tracemalloc.start()
    curve = k_curve(Z, max_k=3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.5 * Z.nbytes, peak  # a float64 copy would be 2x
    np.testing.assert_allclose(curve, k_curve(np.asarray(Z, np.float64), max_k=3), rtol=1e-9)


def test_pls_embedding_needs_y():
    with pytest.raises(ValueError, match="PLSEmbedding needs y"):
        PLSEmbedding(2).fit_transform(np.ones((5, 3)))


def test_k_curve_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        k_curve(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        k_curve(np.full((4, 3), np.nan))
    Z, y, _ = make_concept_activations(200, 8, random_state=0)
    with pytest.raises(ValueError, match=r"one row per row of Z \(200\), got shape \(100, 10\)"):
        k_curve(Z, y[:100])  # never reshaped to Z's rows
    with pytest.raises(ValueError, match=r"got shape \(400, 1\)"):
        k_curve(Z, np.zeros(400))


def test_compare_refuses_data_that_do_not_line_up(split):
    Zt, yt, Zs, ys, codes = split
    pca = {"PCA": PCA(2)}
    cols = [f"u{j}" for j in range(Zt.shape[1])]
    frame_t, frame_s = pd.DataFrame(Zt, columns=cols), pd.DataFrame(Zs, columns=cols)
    with pytest.raises(ValueError, match="Z_test's columns are not Z_train's"):
        compare_explainers(pca, frame_t, yt, frame_s[cols[::-1]], ys)
    same = compare_explainers(pca, frame_t, yt, frame_s, ys)  # same names, same order: fine
    assert np.isfinite(same.loc["PCA", "faithfulness_r2"])
    bad = {
        "y_test must have one row per activation row": dict(y_test=ys[:-10]),
        "y_train must have one row per activation row": dict(y_train=yt[:-1]),
        "same number of outputs": dict(y_test=ys[:, :-1]),
        "codes_test must be 2-D, one row per row of Z_test": dict(codes_test=codes[:-1]),
        "y_test contains NaN": dict(y_test=np.where(np.arange(len(ys))[:, None] == 3, np.nan, ys)),
        "same number of columns": dict(Z_test=Zs[:, :-1]),
    }
    for message, change in bad.items():
        args = dict(Z_train=Zt, y_train=yt, Z_test=Zs, y_test=ys, codes_test=codes) | change
        with pytest.raises(ValueError, match=message):
            compare_explainers(pca, **args)
    with pytest.raises(ValueError, match=r"outputs must be logit indices in \[0, 4\)"):
        compare_per_output(pca, Zt, yt, Zs, ys, outputs=[5])


class _Warns(PCA):
    """PCA that warns as it fits: three messages (two the same up to white space), a deprecation."""

    def fit_transform(self, X, y=None):
        for message in ("first\n  spread  over lines", "second", "first spread over lines"):
            warnings.warn(message, UserWarning, stacklevel=2)
        warnings.warn("n_init='auto' is deprecated", FutureWarning, stacklevel=2)
        return super().fit_transform(X, y)


def test_comparison_keeps_each_fits_warning_messages_once(split):
    Zt, yt, Zs, ys, _ = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = compare_explainers({"w": _Warns(2), "PCA": PCA(2)}, Zt, yt, Zs, ys)
    messages = ["first spread over lines", "second", "n_init='auto' is deprecated"]
    assert table.attrs["warnings"] == {"w": messages, "PCA": []}
    assert table.loc["w", "note"] == "FutureWarning; UserWarning"  # deprecations recorded too


def test_data_frames_are_fitted_as_frames(split):
    Zt, yt, Zs, ys, _ = split
    cols = [f"u{j}" for j in range(Zt.shape[1])]
    Ft, Fs = pd.DataFrame(Zt, columns=cols), pd.DataFrame(Zs, columns=cols)[40:]  # index 40..
    ex = {"SRAE": SRAEExplainer(2, random_state=0, **TINY_SRAE), "PCA": PCA(2)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, fitted = compare_explainers(ex, Ft, yt, Fs, ys[40:], return_fitted=True)
        arrays = compare_explainers(ex, Zt, yt, Zs[40:], ys[40:])
    measured = [t.drop(columns=["fit_time_s", "note"]) for t in (table, arrays)]
    pd.testing.assert_frame_equal(*measured, rtol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X has feature names, but ... was fitted without"
        for est in fitted.values():
            assert list(est.feature_names_in_) == cols
            est.predict(Fs)


# --------------------------------------------------------------- reading a comparison
def test_repeated_explainer_names_are_refused(split):
    Zt, yt, Zs, ys, _ = split
    t3 = compare_explainers({"PCA": PCA(3)}, Zt, yt, Zs, ys)
    t6 = compare_explainers({"PCA": PCA(6), "PLS": PLSRegression(2)}, Zt, yt, Zs, ys)
    both = pd.concat([t3, t6])
    match = r"repeats the explainer names \['PCA'\]; every row needs its own name"
    for read in (
        lambda: format_comparison(both),
        lambda: describe_losses(both, "PLS"),
        lambda: best_rows(both, "faithfulness_r2"),
    ):
        with pytest.raises(ValueError, match=match):
            read()
    assert "PCA" in repr(t3.__class__(both))  # printing still works (pandas' text)
    renamed = both.set_axis(["PCA-3", "PCA-6", "PLS"])
    assert best_rows(renamed, "faithfulness_r2") == [renamed["faithfulness_r2"].idxmax()]


def test_a_method_skipped_on_every_output_has_no_fit_time(split):
    Zt, yt, Zs, ys, _ = split
    signed = {"Z_train": Zt - Zt.mean(0), "Z_test": Zs - Zt.mean(0)}
    table = compare_per_output(
        {"PCA": PCA(2), "NMF": NMF(2)}, signed["Z_train"], yt, signed["Z_test"], ys
    )
    assert table.loc["NMF", "note"].startswith("skipped: NMF needs non-negative")
    assert np.isnan(table.loc["NMF", "fit_time_s"])
    assert table.loc["PCA", "fit_time_s"] > 0
    assert best_rows(table, "fit_time_s") == ["PCA"]
    assert not any("faster" in s for s in describe_losses(table, "PCA"))


def test_the_k_curve_reaches_the_largest_k_compared(split):
    Zt, yt, Zs, ys, _ = split  # 32 activation features
    table = compare_explainers({"PCA-3": PCA(3), "PCA-25": PCA(25)}, Zt, yt, Zs, ys)
    assert list(table.k_curve.index) == list(range(1, 26))
    small = compare_explainers({"PCA": PCA(3)}, Zt, yt, Zs, ys)
    assert small.k_curve.index.max() == 20  # at least 20


CONCISE = pd.DataFrame(
    {"n_significant": [1.0, 0.46, 0.9], "top_explained": [1.0, 0.46, 0.97]},
    index=["NMF", "PCA", "PLS"],
)


def test_conciseness_is_read_with_the_decisions_explained():
    # PCA's low n_significant comes from inputs it does not explain: not starred
    assert best_rows(CONCISE, "n_significant") == ["PLS"]  # 0.97 is within 0.05 of 1
    assert best_rows(CONCISE.loc[["PCA"]], "n_significant") == ["PCA"]
    assert best_rows(CONCISE[["n_significant"]], "n_significant") == ["PCA"]
    (sentence,) = [s for s in describe_losses(CONCISE, "NMF") if "concise" in s]
    assert sentence == (
        "PCA and PLS are more concise than NMF on these data: NMF's significant per input "
        "and output 1 is above PCA's 0.46 and PLS's 0.9 (lower is better), but PCA and PLS "
        "explain fewer decisions (decisions explained: PCA's 0.46 and PLS's 0.97, NMF's 1; "
        "an input with no positive contribution counts 0 here)."
    )
    (one,) = [s for s in describe_losses(CONCISE.drop(index="PLS"), "NMF") if "concise" in s]
    assert one.endswith(
        "(lower is better), but PCA explains fewer decisions (decisions explained: PCA's "
        "0.46, NMF's 1; an input with no positive contribution counts 0 here)."
    )
    as_good = CONCISE.assign(top_explained=[1.0, 1.0, 1.0])
    (plain,) = [s for s in describe_losses(as_good, "NMF") if "concise" in s]
    assert plain.endswith("(lower is better).")


def test_the_more_columns_hint_counts_what_all_columns_adds(split):
    Zt, yt, Zs, ys, _ = split
    table = compare_explainers({"PCA": PCA(1)}, Zt, yt[:, 0], Zs, ys[:, 0])  # no codes, 1 logit

    def metric_lines(text):
        lines = text.split("\nnote:")[0].split("\nK curve")[0].splitlines()[1:]
        return [line for line in lines if not line.startswith("(")]

    main, every = format_comparison(table), format_comparison(table, columns="all")
    extra = len(metric_lines(every)) - len(metric_lines(main))
    assert main.splitlines()[-1] == (
        f"({extra} more columns: format_comparison(table, columns='all'))"
    )
    assert extra == 4  # rmse, explained_variance, pullaway_samples, n_components


def test_make_headed_refuses_tuple_transformers_and_classifier_heads():
    from sklearn.cross_decomposition import CCA, PLSCanonical
    from sklearn.linear_model import LogisticRegression

    for transformer in (PLSCanonical(2), CCA(2)):
        with pytest.raises(TypeError, match=r"returns \(x_scores, y_scores\)"):
            make_headed(transformer)
    with pytest.raises(TypeError, match="must be a regressor; got the classifier"):
        make_headed(PCA(2), LogisticRegression())


def test_scorers_read_a_search_through_its_refitted_explainer(split):
    from sklearn.model_selection import GridSearchCV

    from sklearn_xnn.metrics import (
        explanation_scorer,
        faithfulness_r2_scorer,
        reconstruction_r2_scorer,
    )

    Zt, yt, Zs, ys, _ = split
    search = GridSearchCV(make_headed(PCA()), {"pca__n_components": [2, 3]}, cv=2).fit(Zt, yt)
    best = search.best_estimator_
    for scorer in (explanation_scorer, reconstruction_r2_scorer):
        assert scorer(search, Zs, ys) == pytest.approx(scorer(best, Zs, ys), rel=1e-12)
    vw = make_pipeline(
        StandardScaler(), SRAEExplainer(2, multioutput="variance_weighted", **SMALL_SRAE)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vw_search = GridSearchCV(vw, {"sraeexplainer__alpha_pullaway": [0.1]}, cv=2).fit(Zt, yt)
    assert faithfulness_r2_scorer(vw_search, Zs, ys) == pytest.approx(
        vw_search.score(Zs, ys), rel=1e-12
    )


# ------------------------------------------------------------ K and test rows out of reach
TINY_SRAE = dict(hidden_layer_sizes=(16, 8), max_iter=2, device="cpu")


@pytest.mark.parametrize(
    ("rows", "units", "limit"),
    [(200, 3, 3), (4, 16, 4)],  # a 3-unit layer; 4 training rows
)
def test_baselines_that_cannot_give_k_components_are_skipped_with_a_note(rows, units, limit):
    Z, y, _ = make_concept_activations(300, 16, random_state=0)
    Zt, yt, Zs, ys = Z[:rows, :units], y[:rows], Z[200:, :units], y[200:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = compare_explainers(default_explainers(5, 0, srae_params=TINY_SRAE), Zt, yt, Zs, ys)
    assert list(table.index) == ["SRAE", "PCA", "NMF", "PLS", "random"]
    for name, cls in (("PCA", "PCA"), ("NMF", "NMF"), ("PLS", "PLSRegression")):
        assert table.loc[name, "note"] == (
            f"skipped: {cls} cannot fit K=5 components on {rows} training rows of {units} "
            f"activation units (at most min(n_samples, n_features) = {limit}); lower K to "
            "compare it"
        )
        assert table.loc[name, COLUMNS[:-1]].isna().all()
    # SRAE and the random projection have no such limit: measured as usual
    assert np.isfinite(table.loc[["SRAE", "random"], "faithfulness_r2"]).all()
    assert (table.loc[["SRAE", "random"], "n_components"] == 5).all()


def test_compare_per_output_skips_a_baseline_that_cannot_give_k_components(split):
    Zt, yt, Zs, ys, _ = split
    table = compare_per_output(
        {"PCA": PCA(5), "PLS": PLSRegression(2)}, Zt[:, :3], yt, Zs[:, :3], ys
    )
    assert table.loc["PCA", "note"].startswith("skipped: PCA cannot fit K=5 components")
    assert np.isnan(table.loc["PCA", "faithfulness_r2"])
    assert np.isfinite(table.loc["PLS", "faithfulness_r2"])


class _FailsToFit(PCA):
    """PCA whose fit fails for a reason of its own (not its K)."""

    def fit_transform(self, X, y=None):
        raise ValueError("the layer is not what I expected")


def test_an_explainer_that_fails_raises_with_its_name(split):
    Zt, yt, Zs, ys, _ = split
    with pytest.raises(
        ValueError, match=r"explainer 'mine' failed: the layer is not what I expected"
    ):
        compare_explainers({"PCA": PCA(2), "mine": _FailsToFit(2)}, Zt, yt, Zs, ys)
    # a parameter error is the user's to fix, even at a K beyond the layer: raised, named
    with pytest.raises(ValueError, match=r"explainer 'bad' failed: The 'svd_solver' param"):
        compare_explainers({"bad": PCA(5, svd_solver="nope")}, Zt[:, :3], yt, Zs[:, :3], ys)
    with pytest.raises(ValueError, match=r"explainer 'mine' failed: the layer is not"):
        compare_per_output({"mine": _FailsToFit(2)}, Zt, yt, Zs, ys)


def test_compare_refuses_fewer_than_two_test_rows(split):
    Zt, yt, Zs, ys, _ = split
    message = r"Z_test has 1 row\(s\); the metrics need at least 2 held-out rows"
    with pytest.raises(ValueError, match=message):
        compare_explainers({"PCA": PCA(2)}, Zt, yt, Zs[:1], ys[:1])
    with pytest.raises(ValueError, match=message):
        compare_per_output({"PCA": PCA(2)}, Zt, yt, Zs[:1], ys[:1])
    two = compare_explainers({"PCA": PCA(2)}, Zt, yt, Zs[:2], ys[:2])
    assert np.isfinite(two.loc["PCA", "faithfulness_r2"])
    with pytest.raises(ValueError, match=r"Z_train has 1 row\(s\); every explainer needs"):
        compare_explainers({"PCA": PCA(2)}, Zt[:1], yt[:1], Zs, ys)  # before any fit
