"""One fit over several workers (:func:`sklearn_xnn.distributed.fit_sharded`).

Two real ``torch.distributed`` processes (gloo on loopback) each read their shard of a
``numpy.memmap`` on disk and fit one explainer together (``tests/_distributed_worker.py``);
the results are compared with each other (bitwise) and with a one-process fit on the same
rows (the statistics up to float rounding, the fit by its quality: the minibatches differ,
so the weights do).
"""

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
import torch.distributed as dist
from _distributed_worker import REFUSALS, SAVED

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._nn import bound
from sklearn_xnn._nn.collective import LOCAL
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.distributed import fit_sharded, shard_rows

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "_distributed_worker.py"
PARAMS = dict(
    n_components=3, hidden_layer_sizes=[24, 12], max_iter=5, batch_size=128, random_state=0
)
N_TRAIN, TIMEOUT_S = 1501, 120  # an odd number of rows: the shards differ in length

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _params():
    return dict(PARAMS, hidden_layer_sizes=tuple(PARAMS["hidden_layer_sizes"]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``(rank results, one-process explainer, data)`` of one 2-rank fit and its reference."""
    folder = tmp_path_factory.mktemp("sharded")
    Z, y = make_concept_activations(n_samples=2001, n_features=40, n_outputs=4, random_state=0)[:2]
    Z = Z.astype(np.float32)
    X = np.lib.format.open_memmap(
        folder / "X.npy", mode="w+", dtype=np.float32, shape=(N_TRAIN, 40)
    )
    X[:] = Z[:N_TRAIN]
    X.flush()
    np.save(folder / "y.npy", y[:N_TRAIN])
    np.savez(folder / "test.npz", X=Z[N_TRAIN:], y=y[N_TRAIN:])
    (folder / "params.json").write_text(json.dumps(PARAMS))
    for _ in range(3):
        procs, logs = _two_ranks(folder)
        failed = [log for p, log in zip(procs, logs, strict=True) if p.returncode]
        # A port found free can be taken before rank 0 binds it; gloo's teardown can abort
        # after the results are saved (a race inside torch.distributed): start again.
        taken = any("address already in use" in log.lower() for log in failed)
        teardown = failed and all(SAVED in log for log in failed)
        if not (taken or teardown):
            break
        warnings.warn(f"2-rank fit started again after: {failed[0][-2000:]}", stacklevel=1)
    for r, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"rank {r} exited with {p.returncode}:\n{log[-3000:]}"
    ranks = [dict(np.load(folder / f"rank{r}.npz")) for r in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = SRAEExplainer(**_params()).fit(Z[:N_TRAIN], y[:N_TRAIN])
    return ranks, one, (Z[:N_TRAIN], y[:N_TRAIN], Z[N_TRAIN:], y[N_TRAIN:])


def _two_ranks(folder):
    """Run the 2-rank fit on ``folder``: its processes (ended) and their logs."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", SKLEARN_XNN_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(folder)],
            env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0].decode())
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"the 2-rank fit did not finish in {TIMEOUT_S} s")
    return procs, logs


def test_ranks_end_with_bitwise_identical_weights(runs):
    ranks, _, _ = runs
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert np.array_equal(ranks[0][key], ranks[1][key]), key


def test_reduced_statistics_equal_the_one_process_ones(runs):
    ranks, one, (Z, y, _, _) = runs
    m = bound.moments(torch.as_tensor(Z), torch.as_tensor(y))
    for name in ("z_mean", "zz", "zy", "yy"):
        ref = getattr(m, name).numpy()
        assert np.abs(ranks[0][f"moments/{name}"] - ref).max() <= 1e-10 * np.abs(ref).max(), name
    for name in ("scale_", "y_mean_", "y_scale_", "faithfulness_bound_", "faithfulness_curve_"):
        np.testing.assert_allclose(ranks[0][name], getattr(one, name), rtol=1e-10, atol=1e-12)


def test_faithful_start_equals_the_one_process_start(runs):
    sys.path.insert(0, str(WORKER.parent))
    from _distributed_worker import start_state

    ranks, _, (Z, y, _, _) = runs
    ref = start_state(SRAEExplainer(**_params()), Z, y, LOCAL)
    np.testing.assert_allclose(ranks[0]["bound_coef"], ref["bound_coef"], rtol=1e-9, atol=1e-10)
    # The start carries the faithful K-dimensional subspace (the first K units of the
    # first layer), the same to float rounding ...
    k = PARAMS["n_components"]
    spans = [r["start/encoder.layers.0.weight"][:k].T for r in (ranks[0], ref)]
    projectors = [q @ q.T for q in (np.linalg.qr(s)[0] for s in spans)]
    assert np.abs(projectors[0] - projectors[1]).max() <= 1e-6
    # ... and so does every weight of the start: it is computed from reduced moments and
    # statistics of every rank's rows, without a sample or a seed
    for key in (k for k in ref if k.startswith("start/")):
        scale = max(np.abs(ref[key]).max(), 1.0)
        assert np.abs(ranks[0][key] - ref[key]).max() <= 1e-4 * scale, key
    for key in ("encoder.layers.1.weight", "decoder.layers.0.weight", "decoder.layers.1.weight"):
        np.testing.assert_array_equal(ranks[0][f"start/{key}"], ref[f"start/{key}"])


def test_sharded_fit_is_as_good_as_the_one_process_fit(runs):
    ranks, one, (_, _, Z_test, y_test) = runs
    sharded = ranks[0]
    # different minibatches, so not the same weights: compare quality
    assert abs(float(sharded["heldout_r2"]) - one.score(Z_test, y_test)) <= 0.01
    assert int(sharded["n_dead_components_"]) == one.n_dead_components_
    # the guarantee, on the union of the shards
    bound_r2 = float(sharded["faithfulness_bound_"])
    assert float(sharded["faithfulness_"]) >= bound_r2 - one.faithfulness_tol - 1e-9


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("uneven", [False, True])
def test_ranks_decide_alike_on_shards_of_sorted_rows(tmp_path, uneven):
    Z, y = make_concept_activations(n_samples=1000, n_features=32, random_state=0)[:2]
    order = np.argsort(y.argmax(1), kind="stable")  # each shard holds other top classes
    np.save(tmp_path / "X.npy", Z[order].astype(np.float32))
    np.save(tmp_path / "y.npy", y[order])
    params = dict(
        n_components=5, hidden_layer_sizes=[32, 16], max_iter=25, n_iter_no_change=2,
        random_state=0,
    )  # fmt: skip
    (tmp_path / "params.json").write_text(json.dumps(params))
    if uneven:  # a quarter of the rows on rank 0, the rest on rank 1
        (tmp_path / "uneven").touch()
    procs, logs = _two_ranks(tmp_path)
    # every epoch's sparsity count is of both shards' rows: the ranks keep and stop at the
    # same epoch (a rank-local count stopped one rank early: a collective mismatch)
    for r, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"rank {r} exited with {p.returncode}:\n{log[-3000:]}"
        warned = "warned: fit_sharded: the shards hold [250, 750] rows" in log
        assert warned == uneven
    if not uneven:
        ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
        for key in ranks[0]:
            assert np.array_equal(ranks[0][key], ranks[1][key]), key


def test_needs_an_initialised_process_group():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="initialised torch.distributed process group"):
        fit_sharded(SRAEExplainer(random_state=0), np.ones((4, 2)))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(random_state=None), "integer random_state"),
        (dict(random_state=np.random.RandomState(0)), "integer random_state"),
        (dict(random_state=0, n_init=2), "n_init=1"),
        (dict(random_state=0, early_stopping=True), "early_stopping=False"),
    ],
)
def test_refuses_unsupported_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        fit_sharded(SRAEExplainer(**params), np.ones((4, 2)))


def test_refuses_other_estimators():
    from sklearn.decomposition import PCA

    with pytest.raises(TypeError, match="fits an SRAEExplainer"):
        fit_sharded(PCA(), np.ones((4, 2)))


@pytest.fixture
def one_rank_group():
    """A gloo group of this process alone (destroyed afterwards)."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
    )
    yield
    dist.destroy_process_group()


def test_an_unusable_shard_is_reported(one_rank_group):
    X = np.ones((6, 3))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"rank 0 is refused.*\(rank 0: X contains NaN") as exc:
        fit_sharded(SRAEExplainer(random_state=0), X)
    assert isinstance(exc.value.__cause__, ValueError)  # this rank's own error, chained
    with pytest.raises(ValueError, match="rank 0: its shard holds 1 rows; each rank needs"):
        fit_sharded(SRAEExplainer(random_state=0), np.ones((1, 3)))
    with pytest.raises(ValueError, match="rank 0: fit_sharded slices X by rows") as exc:
        fit_sharded(SRAEExplainer(random_state=0), [[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(exc.value.__cause__, TypeError)
    with pytest.raises(ValueError, match=r"rank 0: fit_sharded trains one initialisation"):
        fit_sharded(SRAEExplainer(random_state=0, n_init=2), np.ones((6, 3)))
    with pytest.raises(ValueError, match=r"rank 0: X is a scipy sparse matrix.*X.toarray\(\)"):
        fit_sharded(SRAEExplainer(random_state=0), scipy.sparse.csr_matrix(np.ones((6, 3))))
    with pytest.raises(ValueError, match=r"rank 0: Non-numeric values in X.*encode or drop"):
        fit_sharded(SRAEExplainer(random_state=0), np.array([[1.0, "a"], [2.0, 3.0]], dtype=object))


def test_one_rank_fit_runs_on_arrays_tensors_and_frames(one_rank_group):
    import pandas as pd

    rng = np.random.RandomState(0)
    Z = np.abs(rng.randn(120, 6))
    y = Z[:, :2] @ [1.0, -2.0]
    params = dict(n_components=2, hidden_layer_sizes=(8, 4), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fit_sharded(SRAEExplainer(**params), Z, y)
        names = [f"unit{j}" for j in range(6)]
        for X in (torch.as_tensor(Z), pd.DataFrame(Z, columns=names)):  # read as numpy
            other = fit_sharded(SRAEExplainer(**params), X, torch.as_tensor(y))
            np.testing.assert_allclose(other.transform(Z), est.transform(Z), rtol=1e-6, atol=1e-8)
    assert list(other.feature_names_in_) == names  # kept from the data frame, as fit keeps
    assert not hasattr(est, "feature_names_in_")
    assert est.transform(Z).shape == (120, 2)
    assert est.faithfulness_ >= est.faithfulness_bound_ - est.faithfulness_tol - 1e-9
    with pytest.raises(ValueError, match=r"rank 0: y has 100 rows and X 120; y needs one row"):
        fit_sharded(SRAEExplainer(**params), Z, y[:100], sharded=True)


def test_two_ranks_given_their_own_rows_without_sharding_are_refused(tmp_path):
    Z, y = make_concept_activations(n_samples=600, n_features=20, random_state=0)[:2]
    np.save(tmp_path / "X.npy", Z.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "params.json").write_text(json.dumps(PARAMS))
    (tmp_path / "own_rows").touch()
    procs, logs = _two_ranks(tmp_path)
    for r, (p, log) in enumerate(zip(procs, logs, strict=True)):  # every rank, not a hang
        assert p.returncode == 0, f"rank {r} exited with {p.returncode}:\n{log[-3000:]}"
        assert "refused: fit_sharded(sharded=False)" in log, log[-3000:]
        assert "the ranks were given different X" in log


#: The error every rank raises when rank 1 alone is given ``REFUSALS[case]`` (the worker's
#: cases): it names rank 1 and the error rank 1 raised, or what differs between the ranks.
REFUSED = {
    "nan": "the input of rank 1 is refused, and every rank stops (rank 1: X contains NaN",
    "n_features": "differ in their number of features or outputs (rank 0: 20 features, 3 "
    "outputs; rank 1: 19 features, 3 outputs)",
    "n_init": "rank 1 is refused, and every rank stops (rank 1: fit_sharded trains one "
    "initialisation; got n_init=2",
    "invalid_parameter": "(rank 1: The 'n_components' parameter of SRAEExplainer must be",
    "other_parameters": "different estimator parameters (rank 0: max_iter=5; rank 1: max_iter=6)",
    "complex": "(rank 1: Complex data not supported: X has a complex dtype",
    "list": "(rank 1: fit_sharded slices X by rows",
    "y_rows": "(rank 1: y has 205 rows and X 200; y needs one row per row of X",
    "device": "(rank 1: device='cuda:99' was requested but",
}


def test_a_rank_refused_alone_stops_every_rank_with_its_error(tmp_path):
    Z, y = make_concept_activations(n_samples=400, n_features=20, n_outputs=3, random_state=0)[:2]
    np.save(tmp_path / "X.npy", Z.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "params.json").write_text(json.dumps(PARAMS))
    (tmp_path / "refusals").touch()
    assert REFUSED.keys() == REFUSALS.keys()
    procs, logs = _two_ranks(tmp_path)  # a rank left waiting in a collective: a timeout
    for r, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"rank {r} exited with {p.returncode}:\n{log[-3000:]}"
        assert "Connection closed" not in log, log[-3000:]
        for case, message in REFUSED.items():  # every case refused on both ranks, in turn
            assert f"{case} refused: fit_sharded: " in log, f"rank {r}, {case}:\n{log[-3000:]}"
            assert message in log, f"rank {r}, {case}:\n{log[-3000:]}"


def test_ranks_given_different_x_without_sharding_are_refused():
    from sklearn_xnn.distributed import _check_shards, _sample_digest

    Z = np.arange(2400.0).reshape(1200, 2)
    same, own_rows, shorter = _sample_digest(Z), _sample_digest(Z[600:]), _sample_digest(Z[:1000])
    assert _sample_digest(Z.copy()) == same  # the same X, another copy
    shard = dict(problem=None, params={"max_iter": "5"}, rows=600, cols=3, y_max=np.zeros(2))
    for other in (own_rows, shorter):  # sharded=True forgotten; another length
        with pytest.raises(ValueError, match="the ranks were given different X"):
            _check_shards([dict(shard, given=same), dict(shard, given=other)])
    _check_shards([dict(shard, given=same), dict(shard, given=same)])
    _check_shards([dict(shard, given=None), dict(shard, given=None)])  # sharded=True


def test_shard_rows_cover_the_rows_in_order():
    parts = [range(11)[shard_rows(11, r, 3)] for r in range(3)]
    assert [i for p in parts for i in p] == list(range(11))


def test_ranks_whose_y_differ_in_dimensions_are_refused():
    from sklearn_xnn.distributed import _check_shards

    shard = {"problem": None, "given": None, "params": {}, "cols": 4, "y_max": np.ones(1)}
    with pytest.raises(ValueError, match=r"rank 0: 4 features, 1 outputs \(y 1-D\); rank 1"):
        _check_shards([dict(shard, y_ndim=1), dict(shard, y_ndim=2)])
    _check_shards([dict(shard, y_ndim=2), dict(shard, y_ndim=2)])  # alike: accepted


def test_constant_logits_are_judged_on_every_ranks_rows_and_warned_once(one_rank_group):
    rng = np.random.RandomState(0)
    Z = np.abs(rng.randn(60, 5))
    params = dict(n_components=2, hidden_layer_sizes=(8, 4), max_iter=1, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_sharded(SRAEExplainer(**params), Z, np.full((60, 2), 3.0))
    said = [w for w in caught if "y is the same on every row" in str(w.message)]
    assert len(said) == 1
