"""The sklearn-xnn command: demo end to end (--quick), fit on user arrays, readable errors,
options generated from the estimator, plain-text help with defaults, progress on stderr."""

import argparse
import html
import io
import re
import subprocess
import sys
import tracemalloc
import zipfile
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.cli import (
    CLI_DEFAULTS,
    DEMO_DEFAULTS,
    QUICK_DEFAULTS,
    UsageError,
    _demo,
    _fit,
    _shared,
    build_parser,
    estimator_options,
    main,
)

FAST = ["--hidden-layer-sizes", "16,8", "--max-iter", "3", "--device", "cpu"]


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    for name in ("SRAE", "PCA", "NMF", "reconstruction_faithfulness_r2", "faithfulness_r2"):
        assert name in captured.out
    assert "[7/7" in captured.err  # numbered step lines
    assert "fitting SRAE" in captured.err and "writing report" in captured.err
    assert re.search(r"^    epoch 1: loss \S+", captured.err, re.M)  # the estimator's lines
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert "Every explainer has K=5;" in page  # the demo's default K
    captions = re.findall(r"<figcaption>Held-out input \d+: ([^<(]*)", page)
    assert len(captions) == 2 and all(c.startswith("the network predicts ") for c in captions)
    assert (out / "top_activating.png").stat().st_size > 1000
    assert len(list(out.glob("decomposition_*.png"))) == 2
    # stderr is not a terminal here: no progress bar leaves its redraws in the log
    assert "activations:" not in captured.err and "%|" not in captured.err
    assert all(_shared.OUTPUT_NAMES.fullmatch(p.name) for p in out.iterdir())


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    Z = np.abs(rng.normal(size=(120, 10)))
    Y = Z[:, :3] @ rng.normal(size=(3, 4))
    np.save(tmp_path / "Z.npy", Z)
    np.save(tmp_path / "Y.npy", Y)
    np.savez(tmp_path / "both.npz", acts=Z, logits=Y)
    np.savez(tmp_path / "one.npz", Y)
    return tmp_path


def test_fit_on_npy_and_npz(arrays, capsys):
    out = arrays / "out"
    args = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    assert main([*args, "--out", str(out), "--n-components", "3", *FAST]) == 0
    assert "SRAE" in capsys.readouterr().out
    xnn = SRAEExplainer.load(out / "explainer.safetensors")
    assert xnn.n_components_ == 3
    assert (out / "report.html").exists() and (out / "comparison.csv").exists()
    assert (out / "head_weights.png").exists()
    acts, logits = f"{arrays / 'both.npz'}:acts", str(arrays / "one.npz")
    npz = ["fit", "--activations", acts, "--logits", logits]
    assert main([*npz, "--out", str(arrays / "out2"), "--n-components", "2", *FAST]) == 0


def test_fit_with_an_automatic_k_gives_the_baselines_the_chosen_k(arrays, capsys):
    pd = pytest.importorskip("pandas")
    np.save(arrays / "B.npy", np.load(arrays / "Z.npy") > 1.0)  # boolean activations
    out = arrays / "auto"
    args = ["fit", "--activations", str(arrays / "B.npy"), "--logits", str(arrays / "Y.npy")]
    assert main([*args, "--out", str(out), "--n-components", "auto", *FAST]) == 0
    k = SRAEExplainer.load(out / "explainer.safetensors").n_components_
    table = pd.read_csv(out / "comparison.csv", index_col="explainer")
    assert set(table.index) == {"SRAE", "PCA", "NMF", "PLS", "random"}
    assert (table["n_components"] == k).all()
    captured = capsys.readouterr()
    assert re.search(rf"^n_components +{k} +{k} +{k} +{k} +{k}$", captured.out, re.M)
    chosen = f"K={k} (chosen by n_components='auto')"
    assert f"fitting baselines (PCA, NMF, PLS, random) with SRAE's {chosen}" in captured.err
    report = html.unescape((out / "report.html").read_text())
    assert f"held-out rows; {chosen}." in report and "K=auto" not in report


def test_the_fit_report_explains_the_networks_decisions(arrays, capsys):
    out = arrays / "out"
    args = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    assert main([*args, "--out", str(out), "--n-components", "3", *FAST]) == 0
    report = html.unescape((out / "report.html").read_text())
    captions = re.findall(r"<figcaption>Held-out input \d+: ([^<(]*)", report)
    assert captions and all(c.startswith("the network predicts ") for c in captions)
    assert "rows the network predicts it on" in report
    assert "held-out rows; K=3." in report


# ------------------------------------------------- activation files: mapped, own dtype
def test_float32_activations_are_fitted_as_float32_and_match_float64(arrays, monkeypatch):
    pd = pytest.importorskip("pandas")
    Z32 = np.load(arrays / "Z.npy").astype(np.float32)
    np.save(arrays / "Z32.npy", Z32)
    np.save(arrays / "Z64.npy", Z32.astype(np.float64))  # the same values, widened
    handed = []

    def spy(params, step, Z_tr, y_tr, Z_te, y_te):
        handed.append((type(Z_tr), Z_tr.dtype, Z_te.dtype))
        return fit_and_compare(params, step, Z_tr, y_tr, Z_te, y_te)

    fit_and_compare = _shared.fit_and_compare
    monkeypatch.setattr(_shared, "fit_and_compare", spy)
    fitted, tables = [], []
    for name in ("Z32", "Z64"):
        out = arrays / f"out_{name}"
        argv = ["fit", "--activations", str(arrays / f"{name}.npy"), "--logits"]
        argv += [str(arrays / "Y.npy"), "--out", str(out), "--n-components", "3"]
        assert main([*argv, "--random-state", "0", *FAST, "--verbose", "0"]) == 0
        fitted.append(SRAEExplainer.load(out / "explainer.safetensors"))
        tables.append(pd.read_csv(out / "comparison.csv", index_col="explainer"))
    # the rows of the split, in the file's dtype: never a float64 copy of float32 rows
    assert handed == [
        (np.ndarray, np.float32, np.float32),
        (np.ndarray, np.float64, np.float64),
    ]
    # SRAE trains in float32 from either dtype: the same explainer up to the rounding of
    # the float32 rows' scaling, done in each input's own dtype
    names = [k for k, v in vars(fitted[0]).items() if k.endswith("_") and hasattr(v, "dtype")]
    assert "coef_" in names and "components_" in names
    for name in names:
        a, b = getattr(fitted[0], name), getattr(fitted[1], name)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    # its metrics agree to float32 rounding (the transform's output follows the input dtype)
    measured = tables[0].columns.drop(["fit_time_s", "note"], errors="ignore")
    row32, row64 = (t.loc["SRAE", measured].astype(float) for t in tables)
    np.testing.assert_allclose(row32, row64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_npy_file_is_mapped_and_checked_by_chunks_not_read_whole(tmp_path, dtype):
    rng = np.random.default_rng(0)
    Z = rng.random((4096, 1024)).astype(dtype)  # 16 MB as float32, 32 MB as float64
    Z[-1, -1] = 2.0  # the last row differs from the first in any case
    np.save(tmp_path / "Z.npy", Z)
    np.save(tmp_path / "Y.npy", rng.random((4096, 3)).astype(dtype))
    argv = ["fit", "--activations", str(tmp_path / "Z.npy"), "--logits", str(tmp_path / "Y.npy")]
    args = build_parser().parse_args(argv)
    tracemalloc.start()
    try:
        acts, logits = _fit._validated_arrays(args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # reading the file whole takes Z.nbytes, widening it to float64 a copy more
    assert peak < Z.nbytes / 4, f"peak {peak / 2**20:.1f} MiB"
    for a, name in ((acts, "Z.npy"), (logits, "Y.npy")):
        assert isinstance(a, np.memmap) and a.dtype == dtype and not a.flags.writeable
        assert a.filename == str(tmp_path / name)
    np.testing.assert_array_equal(acts[-1], Z[-1])


def test_npz_members_keep_their_float_dtype(arrays):
    Z = np.load(arrays / "Z.npy")
    np.savez(arrays / "f32.npz", acts=Z.astype(np.float32), logits=np.load(arrays / "Y.npy"))
    spec = str(arrays / "f32.npz")
    args = build_parser().parse_args(
        ["fit", "--activations", f"{spec}:acts", "--logits", f"{spec}:logits"]
    )
    acts, logits = _fit._validated_arrays(args)
    assert acts.dtype == np.float32 and logits.dtype == np.float64
    np.testing.assert_array_equal(acts, Z.astype(np.float32))


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.float16, np.float32),
        (np.int16, np.float64),
        (np.bool_, np.float64),
    ],
)
def test_the_split_copies_rows_in_the_dtype_the_estimator_computes_in(tmp_path, dtype, expected):
    rng = np.random.default_rng(0)
    Z = rng.integers(0, 2, size=(40, 5)).astype(dtype)
    np.save(tmp_path / "Z.npy", Z)
    mapped = np.load(tmp_path / "Z.npy", mmap_mode="r")
    args = argparse.Namespace(test_size=0.25, random_state=0)
    Z_tr, Z_te, y_tr, y_te = _fit._split(mapped, np.arange(40), args)
    for part, rows in ((Z_tr, y_tr), (Z_te, y_te)):
        assert type(part) is np.ndarray and part.dtype == expected
        np.testing.assert_array_equal(part, Z[rows].astype(expected))
    assert (len(y_tr), len(y_te)) == (30, 10)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "--activations", "missing.npy", "--logits", "Y.npy"], "does not exist"),
        (["fit", "--activations", "Z.npy", "--logits", "short.npy"], "120 rows but logits have 7"),
        (["fit", "--activations", "both.npz", "--logits", "Y.npy"], "choose one as"),
        (["fit", "--activations", "both.npz:nope", "--logits", "Y.npy"], "has no array 'nope'"),
        (["fit", "--activations", "Z.npy:acts", "--logits", "Y.npy"], "has no keys"),
        (["fit", "--activations", "Y.npy", "--logits", "Z3d.npy"], "1 or 2 axes"),
        (["fit", "--activations", "Z.npy", "--logits", "Y.npy", "--frobnicate"], "unrecognized"),
        (
            ["fit", "--activations", "Z.npy", "--logits", "Y.npy", "--n-components", "0"],
            "range [1, inf)",
        ),
        (["fit", "--activations", "Z.npy", "--logits", "Y.npy", "--n-components", "50"], "exceeds"),
        (["fit", "--activations", "Z.npy", "--logits", "Y.npy", "--device", "tpu"], "device"),
        (["fit", "--activations", "garbage.npy", "--logits", "Y.npy"], "could not read"),
        (
            ["fit", "--activations", "Z.npy", "--logits", "Y1.npy", "--faithfulness", "kl"],
            "2 or more",
        ),
        (["fit", "--activations", "Z.npy", "--logits", "Y.npy", "--out", "Y.npy"], "is a file"),
        (["fit", "--activations", ".", "--logits", "Y.npy"], "file '.' is a folder; name a .npy"),
        (
            ["fit", "--activations", "Z.npy", "--logits", "Y.npy", "--hidden-layer-sizes", "4,2"],
            "--hidden-layer-sizes 4,2 has a layer of 2 units, fewer than --n-components 5",
        ),
        (["explain"], "invalid choice"),
        # complex or non-numeric arrays are refused, not cut to their real part
        (["fit", "--activations", "Zc.npy", "--logits", "Y.npy"], "dtype complex128 (complex)"),
        (["fit", "--activations", "Z.npy", "--logits", "Yc.npy"], "logits must be real numbers"),
        (["fit", "--activations", "Z.npy", "--logits", "Ystr.npy"], "not real numbers"),
        (["fit", "--activations", "Zdate.npy", "--logits", "Y.npy"], "not real numbers"),
        # inputs the estimators would refuse with a traceback
        (["fit", "--activations", "Z.npy", "--logits", "Y.npy", "--test-size", "0.99"], "1 train"),
        (["fit", "--activations", "Z.npy", "--logits", "Y0.npy"], "logits have no columns"),
        (["fit", "--activations", "Z0.npy", "--logits", "Y.npy"], "activations have no col"),
        (["fit", "--activations", "Zconst.npy", "--logits", "Y.npy"], "column is constant"),
        (["fit", "--activations", "Zzero.npy", "--logits", "Y.npy"], "column is constant"),
        (["fit", "--activations", "csv.npz", "--logits", "Y.npy"], "is not a .npy array inside"),
        # the checks read a mapped file by chunks: the last row is checked too
        (["fit", "--activations", "Znan.npy", "--logits", "Y.npy"], "activations contain NaN"),
        (["fit", "--activations", "Z.npy", "--logits", "Yinf.npy"], "logits contain NaN or inf"),
        (["fit", "--activations", "cut.npy", "--logits", "Y.npy"], "shorter than its header"),
    ],
)
def test_user_errors_exit_2_with_one_line(arrays, monkeypatch, capsys, argv, message):
    np.save(arrays / "short.npy", np.zeros((7, 4)))
    np.save(arrays / "Z3d.npy", np.zeros((120, 2, 2)))
    (arrays / "garbage.npy").write_bytes(b"not a numpy file")
    np.save(arrays / "Y1.npy", np.zeros(120))
    Z, Y = np.load(arrays / "Z.npy"), np.load(arrays / "Y.npy")
    np.save(arrays / "Zc.npy", Z + 1j * Z)
    np.save(arrays / "Yc.npy", Y.astype(np.complex64))
    np.save(arrays / "Ystr.npy", Y.astype(str))
    np.save(arrays / "Zdate.npy", np.zeros((120, 10), dtype="datetime64[s]"))
    np.save(arrays / "Y0.npy", np.zeros((120, 0)))
    np.save(arrays / "Z0.npy", np.zeros((120, 0)))
    np.save(arrays / "Zconst.npy", np.full((120, 10), 0.5))
    np.save(arrays / "Zzero.npy", np.zeros((120, 10)))
    with zipfile.ZipFile(arrays / "csv.npz", "w") as archive:  # a zip of text files
        archive.writestr("Z.csv", "1,2\n3,4\n")
    Znan, Yinf = Z.astype(np.float32), Y[:, 0].copy()
    Znan[-1, -1], Yinf[-1] = np.nan, np.inf
    np.save(arrays / "Znan.npy", Znan)
    np.save(arrays / "Yinf.npy", Yinf)
    (arrays / "cut.npy").write_bytes((arrays / "Z.npy").read_bytes()[:-40])  # not fully written
    monkeypatch.chdir(arrays)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sklearn-xnn: error:")
    assert message in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("test_size, n_train, n_test", [(0.99, 1, 119), (0.01, 118, 2)])
def test_a_test_size_leaving_fewer_than_2_rows_on_a_side_is_refused(
    arrays, capsys, test_size, n_train, n_test
):
    # 0.01 of 120 rows: train_test_split holds out ceil(1.2) = 2 rows, which is allowed
    argv = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    argv += ["--test-size", str(test_size), "--out", str(arrays / "out"), "--n-components", "2"]
    status = main([*argv, *FAST, "--verbose", "0"])
    err = capsys.readouterr().err
    if n_train < 2:
        assert status == 2
        assert f"leaves {n_train} training and {n_test} held-out rows of 120" in err
    else:
        assert status == 0, err
        assert "fitting SRAE (K=2" in err and f"on {n_train} rows" in err
    rows = [(20, 0.05, "leaves 19 training and 1 held-out rows"), (20, 0.95, "leaves 1 train")]
    for n, size, message in rows:
        np.save(arrays / "Zs.npy", np.load(arrays / "Z.npy")[:n])
        np.save(arrays / "Ys.npy", np.load(arrays / "Y.npy")[:n])
        small = ["fit", "--activations", str(arrays / "Zs.npy"), "--logits", str(arrays / "Ys.npy")]
        assert main([*small, "--test-size", str(size), "--out", str(arrays / "small")]) == 2
        assert message in capsys.readouterr().err


def test_an_estimator_refusing_the_data_is_a_usage_error(arrays, capsys):
    # logits beyond 1e30 pass the CLI's own checks, but the explainer refuses a softmax
    # of them (faithfulness="kl") with a ValueError during the fit
    np.save(arrays / "huge.npy", np.load(arrays / "Y.npy") * 1e40)
    argv = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "huge.npy")]
    argv += ["--faithfulness", "kl", "--out", str(arrays / "out")]
    assert main([*argv, *FAST, "--verbose", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sklearn-xnn: error: fitting failed on these arrays: ")
    assert 'faithfulness="kl" takes the softmax' in err[-1]
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("suffix", [".csv", ".txt", ".npy"])
def test_a_text_file_is_named_as_such_and_never_sent_to_pickle(tmp_path, capsys, suffix):
    rng = np.random.default_rng(0)
    path = tmp_path / f"Z{suffix}"
    np.savetxt(path, rng.random((50, 6)), delimiter=",")
    np.save(tmp_path / "Y.npy", rng.random((50, 3)))
    argv = ["fit", "--activations", str(path), "--logits", str(tmp_path / "Y.npy")]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"could not read activations file {str(path)!r}: it is not a .npy or .npz" in err
    assert f"np.save('Z.npy', np.loadtxt({str(path)!r}" in err
    assert ("delimiter=','" in err) == (suffix == ".csv")
    assert "pickle" not in err


@pytest.mark.parametrize("container", ["npy", "npz"])
def test_object_arrays_are_refused_without_advice_to_unpickle(tmp_path, capsys, container):
    rng = np.random.default_rng(0)
    objects = np.empty((50, 6), dtype=object)
    objects[:] = rng.random((50, 6))
    path = tmp_path / f"Z.{container}"
    if container == "npy":
        np.save(path, objects, allow_pickle=True)
    else:
        np.savez(path, objects)
    np.save(tmp_path / "Y.npy", rng.random((50, 3)))
    argv = ["fit", "--activations", str(path), "--logits", str(tmp_path / "Y.npy")]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "holds Python objects (dtype object), which are not read" in err
    assert "pickle" not in err


# ------------------------------------------------------------------------- the --out folder
@pytest.mark.parametrize("command", ["fit", "demo"])
def test_an_out_under_a_file_is_refused_before_any_work(arrays, capsys, command):
    out = arrays / "Y.npy" / "sub"
    argv = [command, "--out", str(out), "--device", "cpu"]
    if command == "fit":
        argv += ["--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    assert main([*argv, "--quick"] if command == "demo" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sklearn-xnn: error: --out {out}: {arrays / 'Y.npy'} is a file, not a folder"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_out_where_no_file_can_be_created_is_refused_before_the_fit(arrays, capsys):
    # /proc takes no new entries, even from root, whom permission bits would not stop
    argv = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    assert main([*argv, "--out", "/proc/sklearn-xnn-out"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sklearn-xnn: error: --out /proc/sklearn-xnn-out: cannot create files in")
    assert len(err.splitlines()) == 1


def test_a_run_replaces_the_tools_earlier_files_and_leaves_others_alone(arrays, capsys):
    out = arrays / "out"
    out.mkdir()
    earlier = ["decomposition_9.png", "top_activating.png", "report.html"]  # e.g. a demo's
    others = ["notes.txt", "decomposition_x.png", "report.html.orig", "decomposition_9.png.bak"]
    for name in earlier + others:
        (out / name).write_text("earlier")
    (out / "figures").mkdir()
    argv = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    assert main([*argv, "--out", str(out), "--n-components", "3", *FAST, "--verbose", "0"]) == 0
    capsys.readouterr()
    names = {p.name for p in out.iterdir()}
    # fit draws no input images and 6 decompositions: the demo's leftovers are gone
    assert "decomposition_9.png" not in names and "top_activating.png" not in names
    assert {*others, "figures"} <= names
    assert all((out / name).read_text() == "earlier" for name in others)
    assert (out / "report.html").read_text() != "earlier"
    written = names - {*others, "figures"}
    assert {"report.html", "comparison.csv", "explainer.safetensors"} <= written
    # every file the run wrote has a name that the next run's clean-up knows
    assert all(_shared.OUTPUT_NAMES.fullmatch(name) for name in written), written
    assert not list(arrays.glob(".sklearn-xnn-*")), "the --out probe was left behind"


# ------------------------------------------------------------------------ fit warnings
def test_class_labels_as_logits_show_the_librarys_warning_once(arrays, capsys):
    labels = np.load(arrays / "Y.npy").argmax(1)  # the classic mistake
    np.save(arrays / "labels.npy", labels)
    argv = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "labels.npy")]
    assert main([*argv, "--out", str(arrays / "out"), "--n-components", "2", *FAST]) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    label = [x for x in lines if x.startswith("warning: y is one column of integers")]
    assert len(label) == 1 and "it looks like class labels" in label[0]
    # --max-iter 3 stops before the loss does: the library's message, not its class name
    stop = [x for x in lines if x.startswith("warning: ") and "reached max_iter=3" in x]
    assert len(stop) == 1
    assert err.index("fitting SRAE") < err.index(label[0]) < err.index("fitting baselines")
    assert "ConvergenceWarning" not in err


def test_module_entry_point_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sklearn_xnn", "fit", "--activations", "nope.npy", "--logits", "x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "sklearn-xnn: error: activations file 'nope.npy' does not exist"


# ------------------------------------------------------------ options from the estimator
def _subparser(command, quick=False):
    parser = build_parser(quick=quick)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def test_every_estimator_parameter_is_an_option_with_its_default():
    defaults = SRAEExplainer().get_params(deep=False)
    # a torch module has no command-line form; a deprecated parameter has none either
    assert defaults.pop("network_head") is None
    assert defaults.pop("collapse_retries") == "deprecated"
    args = build_parser().parse_args(["fit", "--activations", "Z.npy", "--logits", "Y.npy"])
    for name, default in defaults.items():
        expected = CLI_DEFAULTS.get(name, default)
        assert getattr(args, name) == expected, name
    assert set(CLI_DEFAULTS) <= set(defaults)
    demo = build_parser().parse_args(["demo"])
    for name, default in defaults.items():
        assert getattr(demo, name) == DEMO_DEFAULTS.get(name, default), name
    assert args.max_iter == SRAEExplainer().max_iter  # not a copy of the number
    assert not hasattr(args, "collapse_retries")


def test_quick_changes_defaults_but_not_given_values():
    quick = build_parser(quick=True)
    args = quick.parse_args(["demo", "--quick"])
    assert {k: getattr(args, k) for k in QUICK_DEFAULTS} == QUICK_DEFAULTS
    given = quick.parse_args(["demo", "--quick", "--max-iter", "60", "--pretrain", "0"])
    assert (given.max_iter, given.pretrain, given.hidden_layer_sizes) == (60, 0, (32, 8))
    widths = quick.parse_args(["demo", "--hidden-layer-sizes", "auto"]).hidden_layer_sizes
    assert widths == "auto"
    with pytest.raises(UsageError, match="expected auto or comma-separated"):
        quick.parse_args(["demo", "--hidden-layer-sizes", "wide"])
    help_text = " ".join(_subparser("demo", quick=True).format_help().split())
    assert "(default: 32,8)" in help_text and "(default: 256,32)" not in help_text


@pytest.mark.parametrize(
    "argv, widths",
    [
        (["--quick"], (32, 8)),
        (["--quick", "--n-components", "8"], (32, 8)),
        (["--quick", "--n-components", "20"], "auto"),  # the quick widths cannot carry K
        (["--quick", "--n-components", "auto"], "auto"),  # K is chosen by the fit
        (["--quick", "--n-components", "0.9"], "auto"),
        ([], (256, 32)),
        (["--n-components", "40"], "auto"),
        # given widths are kept, as given (and refused when too narrow)
        (["--quick", "--n-components", "20", "--hidden-layer-sizes", "32,8"], (32, 8)),
        (["--hidden-layer-sizes", "8,4"], (8, 4)),
    ],
)
def test_the_demos_default_widths_follow_k_and_given_widths_are_kept(argv, widths):
    args = build_parser(quick="--quick" in argv).parse_args(["demo", *argv])
    assert _demo._default_widths(args) == widths


def test_demo_quick_with_a_large_k_fits_and_narrow_widths_are_refused(
    tmp_path, monkeypatch, capsys
):
    fitted = []

    def stop(params, *arrays):
        fitted.append(params)
        raise UsageError("stopped before the fit")

    monkeypatch.setattr(_shared, "fit_and_compare", stop)
    out = str(tmp_path / "demo")
    # "--quic": argparse takes the abbreviation, and the quick defaults come with it
    assert main(["demo", "--quic", "--n-components", "20", "--out", out, "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().endswith("error: stopped before the fit")
    assert fitted[0]["hidden_layer_sizes"] == "auto" and fitted[0]["max_iter"] == 5
    for given, message in [
        (
            ["--hidden-layer-sizes", "4,2"],
            "4,2 has a layer of 2 units, fewer than --n-components 5",
        ),
        (["--n-components", "20", "--hidden-layer-sizes", "32,8"], "fewer than --n-components 20"),
    ]:
        assert main(["demo", "--quick", *given, "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("sklearn-xnn: error: --hidden-layer-sizes ") and message in err
        assert len(err.splitlines()) == 1  # refused before the CNN is trained
    assert len(fitted) == 1 and not (tmp_path / "demo").exists()


def test_widths_narrower_than_the_k_the_fit_chose_name_the_options(arrays, capsys):
    argv = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    argv += ["--n-components", "auto", "--hidden-layer-sizes", "1,1", "--out", str(arrays / "o")]
    assert main([*argv, *FAST[2:], "--verbose", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("[1/5") and "fitting SRAE (K=auto" in err[0]  # the step line
    assert len(err) == 2 and re.fullmatch(
        r"sklearn-xnn: error: --hidden-layer-sizes 1,1 has a layer of 1 unit, fewer than the "
        r"K=\d+ x-features that --n-components auto chose: .* --hidden-layer-sizes auto",
        err[1],
    ), err


def test_values_on_the_command_line_reach_the_fitted_estimator(arrays, capsys):
    out = arrays / "out"
    argv = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    given = {
        "--n-components": "2",
        "--hidden-layer-sizes": "12,6",
        "--alpha-pullaway": "0.05",
        "--alpha-reconstruction": "0.2",
        "--pullaway": "samples",
        "--reconstruction": "mse",
        "--max-iter": "3",
        "--batch-size": "32",
        "--pretrain": "1",
        "--random-state": "3",
        "--device": "cpu",
        "--verbose": "0",
    }
    argv += [*(x for item in given.items() for x in item), "--no-rescale", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    params = SRAEExplainer.load(out / "explainer.safetensors").get_params()
    expected = dict(SRAEExplainer().get_params(), rescale=False, verbose=0)
    expected.update(n_components=2, hidden_layer_sizes=(12, 6), alpha_pullaway=0.05)
    expected.update(alpha_reconstruction=0.2, pullaway="samples", reconstruction="mse")
    expected.update(max_iter=3, batch_size=32, pretrain=1)
    expected.update(random_state=3, device="cpu")
    assert {k: params[k] for k in expected} == expected
    assert tuple(params["hidden_layer_sizes"]) == (12, 6)


class _Future(BaseEstimator):
    """A stand-in for a later SRAEExplainer with parameters of every kind.

    Parameters
    ----------
    width : int, default=3
        How wide. More text that the help leaves out.
    faithfulness_tol : float, default=0.05
        Stop when ``R2`` is within this of the best rank-K :class:`~sklearn.Pipeline`.
    mode : {"a", "b"}, default="a"
        Which mode.
    fast : bool, default=True
        Go fast.
    sizes : tuple of int, default=(4, 2)
        Layer sizes.
    random_state : int, RandomState instance or None, default=None
        Seed.
    budget : "auto" or float, default="auto"
        A word or a number.

    Attributes
    ----------
    width_ : int
        Not a parameter.
    """

    _parameter_constraints = {
        "width": [Interval(Integral, 1, None, closed="left")],
        "faithfulness_tol": [Interval(Real, 0, 1, closed="neither"), None],
        "mode": [StrOptions({"a", "b"})],
        "fast": ["boolean"],
        "sizes": ["array-like"],
        "random_state": ["random_state"],
        "budget": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        width=3,
        faithfulness_tol=0.05,
        mode="a",
        fast=True,
        sizes=(4, 2),
        random_state=None,
        budget="auto",
    ):
        self.width = width
        self.faithfulness_tol = faithfulness_tol
        self.mode = mode
        self.fast = fast
        self.sizes = sizes
        self.random_state = random_state
        self.budget = budget


def test_options_follow_the_estimators_constraints_and_docstring():
    options = estimator_options(_Future)
    names = ["width", "faithfulness_tol", "mode", "fast", "sizes", "random_state", "budget"]
    assert list(options) == names
    parser = argparse.ArgumentParser(exit_on_error=False)
    for flag, kwargs in options.values():
        parser.add_argument(flag, **kwargs)
    assert vars(parser.parse_args([])) == _Future().get_params()
    args = parser.parse_args(
        "--width 7 --faithfulness-tol 0.5 --mode b --no-fast --sizes 8,4,2 --random-state 9 "
        "--budget 2.5".split()
    )
    expected = dict(width=7, faithfulness_tol=0.5, mode="b", fast=False, sizes=(8, 4, 2))
    assert vars(args) == dict(expected, random_state=9, budget=2.5)
    assert parser.parse_args(["--budget", "auto"]).budget == "auto"
    assert parser.parse_args(["--faithfulness-tol", "None"]).faithfulness_tol is None
    assert options["width"][1]["help"] == "How wide."
    assert options["faithfulness_tol"][1]["help"] == (
        "Stop when R2 is within this of the best rank-K Pipeline."
    )
    for argv, message in [
        (["--width", "0"], r"an int in the range \[1, inf\)"),
        (["--width", "2.5"], "expected an integer"),
        (["--faithfulness-tol", "1"], r"a float in the range \(0.0, 1.0\) or none, got '1'"),
        (["--mode", "c"], "invalid choice"),
        (["--sizes", "8,x"], "comma-separated integers"),
        (["--sizes", "8,0"], "positive integers"),
        (["--budget", "lots"], r"expected a float in the range \[0.0, inf\) or auto, got"),
        (["--random-state", "-1"], r"expected an integer in the range \[0, 4294967295\] \(a"),
    ]:
        with pytest.raises(argparse.ArgumentError, match=message):
            parser.parse_args(argv)
    # the metavar lists what the option takes; none where None is allowed
    metavars = {name: kwargs.get("metavar") for name, (_, kwargs) in options.items()}
    assert metavars["faithfulness_tol"] == "X|none" and metavars["budget"] == "auto|X"
    assert metavars["random_state"] == "INT|none" and metavars["width"] == "INT"


@pytest.mark.parametrize(
    "option, message",
    [
        (["--alpha-pullaway", "-1"], r"--alpha-pullaway: expected a float in the range \[0"),
        (["--pullaway", "rows"], "invalid choice: 'rows'"),
        (["--hidden-layer-sizes", "8,x"], "comma-separated integers"),
        (["--max-iter", "0"], r"--max-iter: expected an int in the range \[1, inf\)"),
        (["--rescale", "yes"], "unrecognized arguments: yes"),
        (["--test-size", "1.5"], r"--test-size: expected a float in the range \(0"),
        # the values as typed on the command line, not the Python types sklearn names
        (
            ["--random-state", "-1"],
            r"--random-state: expected an integer in the range \[0, 4294967295\] \(a seed\) "
            r"or none, got '-1'$",
        ),
        (["--verbose", "-1"], r"--verbose: expected an integer in the range \[0, inf\), got"),
        (
            ["--n-components", "lots"],
            r"--n-components: expected an int in the range \[1, inf\), a float in the range "
            r"\(0.0, 1.0\) or auto, got 'lots'$",
        ),
        (["--faithfulness-tol", "-1"], r"--faithfulness-tol: expected .* or none, got '-1'$"),
    ],
)
def test_bad_option_values_exit_2_with_one_line(arrays, capsys, option, message):
    argv = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    assert main([*argv, *option]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err
    for python in ("numpy", "instance of", "str among", "None"):
        assert python not in err


# --------------------------------------------------------------------------- help text
@pytest.mark.parametrize("command", [[], ["demo"], ["fit"]])
def test_help_is_plain_text_and_shows_every_default(command):
    proc = subprocess.run(
        [sys.executable, "-m", "sklearn_xnn", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for markup in ("``", ":class:", ":func:", ":meth:", ":data:", "SPEC", "STYLE"):
        assert markup not in text, markup
    if not command:
        assert "demo" in text and "fit" in text
        return
    sub = _subparser(command[0])
    formatter = sub._get_formatter()
    flat = " ".join(text.split())
    for action in sub._actions:
        if action.dest == "help" or action.required:
            continue
        assert max(action.option_strings, key=len) in flat
        assert "default" in formatter._get_help_string(action), action.dest
    assert flat.count("(default: ") >= len(SRAEExplainer().get_params())
    for text in (
        "--n-components auto|INT|X",
        "a fraction in (0, 1) that chooses K",
        "--faithfulness-tol X|none",
        "none turns the constraint off",
        "--random-state INT|none",
        # what is not on the command line, and why
        "collapse_retries (deprecated), network_head (takes a Python object)",
    ):
        assert text in flat, text
    assert "every parameter" not in flat
    if command == ["fit"]:
        assert "--activations Z.npy|Z.npz[:KEY]" in flat and "Z.npz:KEY picks one" in flat
        assert f"(default: {SRAEExplainer().max_iter})" in flat
        max_iter = SRAEExplainer().max_iter
        assert f"--max-iter INT Maximum number of fine-tuning epochs. (default: {max_iter})" in flat


# ---------------------------------------------------------------------------- progress
def test_fit_shows_steps_and_epoch_progress_on_stderr(arrays, capsys):
    argv = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    argv += ["--out", str(arrays / "out"), "--n-components", "3"]
    assert main([*argv, *FAST]) == 0
    err = capsys.readouterr().err
    for text in ("fitting SRAE", "fitting baselines (PCA, NMF, PLS, random)", "writing report"):
        assert text in err
    epochs = re.findall(r"^    epoch (\d+): loss [-+0-9.e]+", err, re.M)
    assert epochs == ["1", "2", "3"]  # FAST: --max-iter 3
    assert err.index("fitting SRAE") < err.index("epoch 1: loss") < err.index("fitting baselines")
    assert main([*argv, *FAST, "--verbose", "0"]) == 0
    quiet = capsys.readouterr().err
    assert "fitting SRAE" in quiet and "epoch 1: loss" not in quiet


@pytest.mark.parametrize("terminal", [True, False])
def test_the_demo_shows_a_progress_bar_only_on_a_terminal(monkeypatch, terminal):
    class Stderr(io.StringIO):
        def isatty(self):
            return terminal

    shown = []

    def extract(model, layer, images, device, progress):
        shown.append(progress)
        return np.zeros((len(images), 3)), np.zeros((len(images), 2))

    monkeypatch.setattr("sklearn_xnn.torch.extract_activations", extract)
    monkeypatch.setattr(sys, "stderr", Stderr())
    _demo._layer_activations(None, (np.zeros((4, 1, 8, 8)), np.zeros((2, 1, 8, 8))), "cpu")
    assert shown == [terminal, terminal]


def test_fit_names_the_outputs_from_a_text_file(arrays, capsys):
    args = ["fit", "--activations", str(arrays / "Z.npy"), "--logits", str(arrays / "Y.npy")]
    names = ["great white shark", "tiger shark", "hammerhead", "electric ray"]
    (arrays / "names.txt").write_text("\n".join(names) + "\n\n", encoding="utf-8")
    out = arrays / "named"
    argv = [*args, "--out", str(out), "--n-components", "2", *FAST]
    assert main([*argv, "--output-names", str(arrays / "names.txt")]) == 0
    report = html.unescape((out / "report.html").read_text())
    assert "the network predicts " in report and any(n in report for n in names)
    for text, message in (
        ("a\nb\n", "output_names has 2 names but the explainer has 4 outputs"),
        ("a\nb\na\nc\n", "output_names must name each output once; ['a'] name several"),
        ("a\n\nb\nc\n", "--output-names: line 2 is blank; name every output"),
    ):
        (arrays / "bad.txt").write_text(text, encoding="utf-8")
        capsys.readouterr()
        assert main([*argv, "--output-names", str(arrays / "bad.txt")]) == 2
        assert message in capsys.readouterr().err
