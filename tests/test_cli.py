"""The sklearn-xnn command: demo end to end (--quick), fit on user arrays, readable errors."""

import subprocess
import sys

import numpy as np
import pytest

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.cli import main

FAST = ["--hidden-layer-sizes", "16,8", "--max-iter", "3", "--device", "cpu"]


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    for name in ("SRAE", "PCA", "NMF", "reconstruction_faithfulness_r2", "faithfulness_r2"):
        assert name in captured.out
    assert "[6/6" in captured.err  # progress lines
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    assert (out / "top_activating.png").stat().st_size > 1000
    assert len(list(out.glob("decomposition_*.png"))) == 2


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
        (["fit", "--activations", "Z.npy", "--logits", "Y.npy", "--n-components", "0"], "positive"),
        (["fit", "--activations", "Z.npy", "--logits", "Y.npy", "--n-components", "50"], "exceeds"),
        (["fit", "--activations", "Z.npy", "--logits", "Y.npy", "--device", "tpu"], "device"),
        (["fit", "--activations", "garbage.npy", "--logits", "Y.npy"], "could not read"),
        (["explain"], "invalid choice"),
    ],
)
def test_user_errors_exit_2_with_one_line(arrays, monkeypatch, capsys, argv, message):
    np.save(arrays / "short.npy", np.zeros((7, 4)))
    np.save(arrays / "Z3d.npy", np.zeros((120, 2, 2)))
    (arrays / "garbage.npy").write_bytes(b"not a numpy file")
    monkeypatch.chdir(arrays)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sklearn-xnn: error:")
    assert message in err
    assert len(err.splitlines()) == 1


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
