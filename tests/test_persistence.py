"""save / load without pickle, pickle and joblib, and a fuzzed loader."""

import io
import json
import os
import pickle
import stat
import warnings

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as st_save
from sklearn.exceptions import NotFittedError

import sklearn_xnn
from sklearn_xnn import SRAEExplainer
from sklearn_xnn import _persistence as persistence
from sklearn_xnn.exceptions import InvalidModelFileError
from tests.conftest import fit_quiet


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    return np.abs(rng.randn(40, 6)), rng.randn(40, 3)


@pytest.fixture(scope="module")
def fitted(data):
    return fit_quiet(*data)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    fitted.save(path)
    return path, path.read_bytes()


def assert_same_state(a, b):
    assert a.get_params() == b.get_params()
    assert set(vars(a)) == set(vars(b))
    for name, value in vars(a).items():
        other = getattr(b, name)
        assert type(value) is type(other), name
        if isinstance(value, np.ndarray):
            assert value.dtype == other.dtype, name
            np.testing.assert_array_equal(value, other, err_msg=name)
        elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            for u, v in zip(value, other, strict=True):
                np.testing.assert_array_equal(u, v, err_msg=name)
        else:
            assert value == other, name


def assert_same_outputs(a, b, Z):
    for method in ("transform", "predict", "contributions"):
        np.testing.assert_array_equal(getattr(a, method)(Z), getattr(b, method)(Z))
    X = a.transform(Z)
    np.testing.assert_array_equal(a.inverse_transform(X), b.inverse_transform(X))


# ------------------------------------------------------------------ round trips
def test_round_trip_is_exact(fitted, saved, data):
    loaded = SRAEExplainer.load(saved[0])
    assert_same_state(fitted, loaded)
    assert_same_outputs(fitted, loaded, data[0])
    assert_same_outputs(fitted, loaded, data[0].astype(np.float32))


def test_module_level_load(fitted, saved, data):
    loaded = persistence.load(saved[0])
    assert_same_outputs(fitted, loaded, data[0])
    if hasattr(sklearn_xnn, "load"):
        assert_same_outputs(fitted, sklearn_xnn.load(saved[0]), data[0])


def test_round_trip_unsupervised_1d_y_and_pandas(tmp_path, data):
    pd = pytest.importorskip("pandas")
    Z, Y = data
    frame = pd.DataFrame(Z, columns=[f"unit{i}" for i in range(6)])
    for est in (fit_quiet(frame), fit_quiet(frame, Y[:, 0], early_stopping=True)):
        est.save(tmp_path / "m.safetensors")
        loaded = SRAEExplainer.load(tmp_path / "m.safetensors")
        assert_same_state(est, loaded)
        np.testing.assert_array_equal(est.transform(frame), loaded.transform(frame))
    assert list(loaded.feature_names_in_) == list(frame.columns)
    assert loaded.predict(frame).shape == (40,)


def test_the_file_is_plain_safetensors(saved):
    from safetensors import safe_open

    with safe_open(saved[0], framework="np") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["format"] == "sklearn_xnn" and meta["class"] == "SRAEExplainer"
    assert meta["library_version"] == sklearn_xnn.__version__
    assert json.loads(meta["params"])["n_components"] == {"v": 2}
    assert {"encoder_coefs_.0", "coef_", "components_", "loss_parts_"} <= keys


def test_model_fitted_on_gpu_loads_and_transforms_on_cpu(fitted, tmp_path, data):
    gpu = pickle.loads(pickle.dumps(fitted))
    gpu.set_params(device="cuda")  # what a GPU fit leaves in the parameters
    gpu.save(tmp_path / "gpu.safetensors")
    loaded = SRAEExplainer.load(tmp_path / "gpu.safetensors")
    assert loaded.device == "cuda"
    assert_same_outputs(fitted, loaded, data[0])
    assert_same_outputs(fitted, pickle.loads(pickle.dumps(gpu)), data[0])


def test_pickle_and_joblib_still_work(fitted, tmp_path, data):
    assert_same_outputs(fitted, pickle.loads(pickle.dumps(fitted)), data[0])
    joblib.dump(fitted, tmp_path / "m.joblib")
    assert_same_outputs(fitted, joblib.load(tmp_path / "m.joblib"), data[0])
    with warnings.catch_warnings():  # read-only memory-mapped weights: read, never written
        warnings.simplefilter("error")
        assert_same_outputs(fitted, joblib.load(tmp_path / "m.joblib", mmap_mode="r"), data[0])


def test_save_is_atomic_and_overwrites(fitted, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"old content")
    fitted.save(str(path))
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary file left behind
    SRAEExplainer.load(str(path))


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_files_get_the_permissions_of_a_plain_write(fitted, tmp_path):
    path = tmp_path / "m.safetensors"
    previous = os.umask(0o022)
    try:
        fitted.save(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
        path.chmod(0o640)
        fitted.save(path)  # an existing file keeps its own
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(previous)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_saving_through_a_symlink_replaces_its_target_and_keeps_the_link(fitted, data, tmp_path):
    (tmp_path / "runs").mkdir()
    target, link = tmp_path / "runs" / "42.safetensors", tmp_path / "latest.safetensors"
    target.write_bytes(b"the old model")
    link.symlink_to(os.path.join("runs", "42.safetensors"))  # relative, as `ln -s` makes
    fitted.save(link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("runs", "42.safetensors")
    assert_same_outputs(fitted, SRAEExplainer.load(target), data[0])
    assert sorted(os.listdir(tmp_path / "runs")) == ["42.safetensors"]  # no temporary file


def test_saving_into_a_missing_folder_names_the_path_not_a_temporary_file(fitted, tmp_path):
    path = tmp_path / "no_such_dir" / "model.safetensors"
    with pytest.raises(FileNotFoundError, match="no_such_dir' does not exist") as info:
        fitted.save(path)
    assert info.value.filename == str(path)
    assert ".tmp" not in str(info.value)


def test_saving_onto_a_folder_is_refused_with_its_name(fitted, tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a folder") as info:
        fitted.save(tmp_path)
    assert info.value.filename == str(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_read_only_file_is_not_replaced(fitted, tmp_path):
    # Checked on the mode bits, so that it holds for root as well (os.access is always
    # True there, and the rename needs only the folder's permission).
    path = tmp_path / "frozen.safetensors"
    path.write_bytes(b"the old model")
    path.chmod(0o444)
    try:
        with pytest.raises(PermissionError, match="read-only .mode 444.") as info:
            fitted.save(path)
        assert info.value.filename == str(path)
        assert path.read_bytes() == b"the old model"
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
        assert os.listdir(tmp_path) == ["frozen.safetensors"]  # no temporary file left
    finally:
        path.chmod(0o644)


def test_save_refuses_unfitted_and_odd_parameters(tmp_path, fitted):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        SRAEExplainer().save(tmp_path / "x.safetensors")
    est = pickle.loads(pickle.dumps(fitted))
    est.set_params(random_state=np.random.RandomState(0))
    with pytest.warns(UserWarning, match="random_state is a RandomState instance"):
        est.save(tmp_path / "rs.safetensors")
    assert SRAEExplainer.load(tmp_path / "rs.safetensors").random_state is None
    est.set_params(random_state=0, verbose=object())
    with pytest.raises(TypeError, match="Cannot save parameter verbose"):
        est.save(tmp_path / "bad.safetensors")


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        SRAEExplainer.load(tmp_path / "absent.safetensors")


# ------------------------------------------------------------------ foreign and crafted files
def foreign_files(fitted):
    buf = io.BytesIO()
    np.savez(buf, a=np.ones(3))
    return {
        "empty": b"",
        "text": b"hello, this is not a model\n" * 10,
        "pickle": pickle.dumps(fitted),
        "npz": buf.getvalue(),
        "json": json.dumps({"__metadata__": {"format": "sklearn_xnn"}}).encode(),
        "other safetensors": st_save({"w": np.ones((2, 2))}, metadata={"format": "pt"}),
        "no metadata": st_save({"w": np.ones(2)}),
    }


@pytest.mark.parametrize(
    "kind", ["empty", "text", "pickle", "npz", "json", "other safetensors", "no metadata"]
)
def test_foreign_files_are_refused(fitted, tmp_path, kind):
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(foreign_files(fitted)[kind])
    with pytest.raises(InvalidModelFileError, match="not a sklearn_xnn model file"):
        SRAEExplainer.load(path)


def craft(saved, tmp_path, meta=None, arrays=None):
    """Rewrite a saved file with edited metadata/tensors and a *valid* checksum."""
    from safetensors import safe_open

    with safe_open(saved[0], framework="np") as f:
        m = dict(f.metadata())
        t = {k: f.get_tensor(k) for k in f.keys()}
    m.update(meta or {})
    t.update(arrays or {})
    t = {k: v for k, v in t.items() if v is not None}
    m = {k: v for k, v in m.items() if v is not None}
    m["checksum"] = persistence._digest(m, t)
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(st_save(t, metadata=m))
    return path


def edit_json(saved, key, fn):
    from safetensors import safe_open

    with safe_open(saved[0], framework="np") as f:
        doc = json.loads(f.metadata()[key])
    fn(doc)
    return {key: json.dumps(doc)}


@pytest.mark.parametrize(
    "meta, arrays, msg",
    [
        (None, {"coef_": np.full((3, 2), np.nan)}, "coef_ holds non-finite values"),
        (None, {"encoder_coefs_.1": np.ones((16, 5))}, "encoder weight 1 has shape"),
        (None, {"components_": np.ones((2, 7))}, "components_ has shape"),
        (None, {"coef_": np.ones((3, 2), dtype=np.int64)}, "coef_ is not a float array"),
        (None, {"intruder": np.ones(3)}, "unexpected tensors"),
        (None, {"encoder_coefs_.0": None}, "malformed attribute"),
        ({"class": "os.system"}, None, "unknown estimator class"),
        ({"format_version": "99"}, None, "newer than this sklearn_xnn reads"),
        ({"params": json.dumps({"n_components": {"v": 2}, "evil": {"v": 1}})}, None, "unknown"),
        ({"params": json.dumps({"n_components": {"v": -3}})}, None, "n_components"),
        ({"attributes": "[1, 2"}, None, "corrupted"),
    ],
)
def test_crafted_files_with_valid_checksum_are_refused(saved, tmp_path, meta, arrays, msg):
    with pytest.raises(InvalidModelFileError, match=msg):
        SRAEExplainer.load(craft(saved, tmp_path, meta, arrays))


@pytest.mark.parametrize(
    "edit, msg",
    [
        (lambda d: d.update(_parameter_constraints={"v": 1}), "would shadow the class"),
        (lambda d: d.update(transform={"v": 1}), "invalid attribute name"),
        (lambda d: d.update(__class__={"v": 1}), "invalid attribute name"),
        (lambda d: d.update(plain={"v": 1}), "invalid attribute name"),
        (lambda d: d.pop("coef_"), "missing"),
        (lambda d: d.update(n_components_={"v": 3}), "encoder ends with 2 units, expected 3"),
        (lambda d: d.update(n_components_={"x": 3}), "malformed attribute"),
        (lambda d: d.update(_y_1d={"v": "no"}), r"\['_y_1d'\] must be true or false"),
        (lambda d: d.update(_has_head={"v": 1}), r"\['_has_head'\] must be true or false"),
    ],
)
def test_crafted_attributes_are_refused(saved, tmp_path, edit, msg):
    meta = edit_json(saved, "attributes", edit)
    arrays = {"coef_": None} if msg == "missing" else None
    with pytest.raises(InvalidModelFileError, match=msg):
        SRAEExplainer.load(craft(saved, tmp_path, meta, arrays))


def test_wrong_class_is_refused(saved):
    class Other(SRAEExplainer):
        pass

    with pytest.raises(InvalidModelFileError, match="holds a SRAEExplainer, not a Other"):
        Other.load(saved[0])


def test_other_library_version_warns(saved, tmp_path, data, fitted):
    path = craft(saved, tmp_path, {"library_version": "0.0.1"})
    with pytest.warns(UserWarning, match="saved with sklearn_xnn 0.0.1"):
        loaded = SRAEExplainer.load(path)
    assert_same_outputs(fitted, loaded, data[0])


def test_a_file_with_the_removed_collapse_guards_attribute_loads(saved, tmp_path, data, fitted):
    # files of earlier versions hold n_collapse_retries_, now a deprecated property
    old = edit_json(saved, "attributes", lambda d: d.update(n_collapse_retries_={"v": 2}))
    loaded = SRAEExplainer.load(craft(saved, tmp_path, old))
    assert_same_outputs(fitted, loaded, data[0])
    with pytest.warns(FutureWarning, match="n_collapse_retries_ is deprecated"):
        assert loaded.n_collapse_retries_ == 0
    # and a pickle of an earlier version: the attribute is dropped, the property answers
    state = fitted.__getstate__()
    state["n_collapse_retries_"] = 2
    unpickled = SRAEExplainer.__new__(SRAEExplainer)
    unpickled.__setstate__(state)
    assert "n_collapse_retries_" not in vars(unpickled)
    assert_same_outputs(fitted, unpickled, data[0])


def test_checksum_catches_a_changed_weight(saved, tmp_path):
    raw = bytearray(saved[1])
    raw[-3] ^= 0x01  # a low bit of the last float: still finite, still the right shape
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(raw))
    with pytest.raises(InvalidModelFileError, match="checksum mismatch"):
        SRAEExplainer.load(path)


# ------------------------------------------------------------------ fuzzing
def try_load(raw, path, fitted, Z):
    """'refused' or 'loaded'; a loaded model must be exactly the saved one."""
    path.write_bytes(bytes(raw))
    try:
        loaded = SRAEExplainer.load(path)
    except InvalidModelFileError:
        return "refused"
    assert_same_outputs(fitted, loaded, Z)
    return "loaded"


def mutations(raw, rng, n_truncate=150, n_flip=300, n_burst=100):
    """Truncations, single bit flips, and bursts of random bytes, header-biased."""
    size, header = len(raw), 8 + int.from_bytes(raw[:8], "little")
    lengths = {0, 1, 7, 8, 9, header - 1, header, header + 1, size - 1}
    lengths |= set(rng.randint(0, size, n_truncate - len(lengths)).tolist())
    for n in sorted(lengths):
        yield "truncate", raw[:n]
    for _ in range(n_flip):
        out = bytearray(raw)
        at = rng.randint(0, header) if rng.rand() < 0.5 else rng.randint(0, size)
        out[at] ^= 1 << rng.randint(8)
        yield "flip", out
    for _ in range(n_burst):
        out = bytearray(raw)
        at, n = rng.randint(0, size), rng.randint(1, 17)
        out[at : at + n] = rng.randint(0, 256, len(out[at : at + n])).astype(np.uint8).tobytes()
        yield "burst", out


def test_fuzzed_files_are_refused_or_exact(saved, fitted, data, tmp_path):
    rng = np.random.RandomState(0)
    outcomes = {}
    for kind, raw in mutations(saved[1], rng):
        result = try_load(raw, tmp_path / "fuzz.safetensors", fitted, data[0])
        outcomes[kind, result] = outcomes.get((kind, result), 0) + 1
    n_tried = sum(outcomes.values())
    assert n_tried >= 540
    # a truncated file never loads; a flip loads only if it hit JSON padding (same model)
    assert ("truncate", "loaded") not in outcomes
    assert outcomes.get(("flip", "refused"), 0) >= 290


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "blob.safetensors"
    path.write_bytes(blob)
    with pytest.raises(InvalidModelFileError, match="Cannot load"):
        SRAEExplainer.load(path)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_hypothesis_mutations_are_refused_or_exact(saved, fitted, data, tmp_path, edits, cut):
    raw = bytearray(saved[1])
    for at, value in edits:
        raw[at % len(raw)] = value
    if cut is not None:
        raw = raw[: cut % len(raw)]
    assert try_load(raw, tmp_path / "h.safetensors", fitted, data[0]) in ("refused", "loaded")


def test_set_output_survives_save_and_load(data, tmp_path):
    pd = pytest.importorskip("pandas")
    est = fit_quiet(*data).set_output(transform="pandas")
    path = tmp_path / "pandas.safetensors"
    est.save(path)
    back = SRAEExplainer.load(path)
    out = back.transform(data[0])
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(est.get_feature_names_out())
