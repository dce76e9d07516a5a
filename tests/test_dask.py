"""Grid search on a real Dask cluster (worker processes on loopback), unchanged user code."""

import hashlib
import io
import pickle
import types

import cloudpickle
import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._threads import ENV_VAR, torch_threads
from sklearn_xnn.datasets import make_concept_activations
from tests import conftest

distributed = pytest.importorskip(
    "distributed",
    reason="the Dask tests need the optional 'distributed' package "
    "(pip install 'sklearn-xnn[dask]')",
)

# Five epochs never converge; these tests are about distribution, not quality.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TINY = dict(conftest.TINY, n_components=3, device="cpu", random_state=0)
GRID = {"srae__n_components": [2, 3], "srae__alpha_reconstruction": [0.1, 1.0]}


@pytest.fixture(scope="module")
def client():
    """A 2-process LocalCluster on 127.0.0.1 and its client, both closed at the end."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    dask_client = distributed.Client(cluster)
    try:
        yield dask_client
    finally:
        dask_client.close()
        cluster.close()


@pytest.fixture(scope="module")
def data():
    Z, y, _ = make_concept_activations(240, 16, n_concepts=3, n_outputs=4, random_state=0)
    return Z, y


def _search():
    pipe = Pipeline([("scale", StandardScaler(with_mean=False)), ("srae", SRAEExplainer(**TINY))])
    return GridSearchCV(pipe, GRID, cv=2)


def test_grid_search_on_dask_equals_sequential(client, data):
    Z, y = data
    sequential = _search().fit(Z, y)
    with distributed.get_task_stream(client) as stream:
        with joblib.parallel_config(backend="dask"):  # the only change to user code
            on_dask = _search().fit(Z, y)
    workers = set(client.scheduler_info()["workers"])
    ran_on = {task["worker"] for task in stream.data}
    assert ran_on and ran_on <= workers  # the fits ran in the worker processes

    assert on_dask.best_params_ == sequential.best_params_
    # Tolerance zero: same seeds, one torch thread on both sides, the same CPU kernels.
    for key in ("mean_test_score", "split0_test_score", "split1_test_score"):
        np.testing.assert_array_equal(on_dask.cv_results_[key], sequential.cv_results_[key])
    np.testing.assert_array_equal(on_dask.transform(Z), sequential.transform(Z))


def _fingerprint():
    """This process's global torch/numpy state that a fit must not change."""
    return (
        torch.get_num_threads(),
        hashlib.sha256(torch.random.get_rng_state().numpy().tobytes()).hexdigest(),
        hashlib.sha256(np.random.get_state()[1].tobytes()).hexdigest(),  # noqa: NPY002
    )


def _fit_in_task(Z, y):
    before = _fingerprint()
    with torch_threads() as chosen:
        inside = torch.get_num_threads()
        est = SRAEExplainer(**TINY).fit(Z, y)
    return dict(
        before=before,
        after=_fingerprint(),
        chosen=chosen,
        inside=inside,
        nthreads=distributed.get_worker().state.nthreads,  # what torch_threads reads
        score=est.score(Z, y),
    )


def test_no_thread_or_seed_state_leaks_between_tasks(client, data):
    Z, y = data
    futures = [client.submit(_fit_in_task, Z, y, pure=False) for _ in range(4)]
    reports = client.gather(futures)
    for report in reports:
        assert report["after"] == report["before"]
        # One task thread per worker, and the nanny's OMP_NUM_THREADS=1: one torch thread.
        assert report["nthreads"] == 1
        assert report["chosen"] == report["inside"] == 1
    # Same seed, same data: every task gets the same model, whichever worker ran it.
    scores = [report["score"] for report in reports]
    np.testing.assert_array_equal(scores, [scores[0]] * len(scores))


def test_a_worker_shares_the_cpus_among_its_task_threads(monkeypatch):
    for var in (ENV_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    n_cpus, before = joblib.cpu_count(), torch.get_num_threads()
    torch.set_num_threads(n_cpus)
    try:
        with torch_threads() as n:
            assert n == n_cpus  # distributed is imported, but this process is no worker
        worker = types.SimpleNamespace(state=types.SimpleNamespace(nthreads=2))
        monkeypatch.setattr(distributed, "get_worker", lambda: worker)
        with torch_threads() as n:
            assert n == max(n_cpus // 2, 1)
    finally:
        torch.set_num_threads(before)


class _TorchSpotter(pickle.Pickler):
    """A pickler that records every torch object it is asked to serialise."""

    def __init__(self, file):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.torch_objects = []

    def reducer_override(self, obj):
        if type(obj).__module__.split(".")[0] == "torch":
            self.torch_objects.append(type(obj).__qualname__)
        return NotImplemented


def test_pickled_explainer_holds_no_torch_objects(data):
    Z, y = data
    est = SRAEExplainer(**TINY).fit(Z, y)
    est.partial_fit(Z, y)  # builds the private torch caches partial_fit reuses
    spotter = _TorchSpotter(io.BytesIO())
    spotter.dump(est)
    assert spotter.torch_objects == []
    for payload in (pickle.dumps(est), cloudpickle.dumps(est)):
        assert b"torch" not in payload
        restored = pickle.loads(payload)
        np.testing.assert_array_equal(restored.transform(Z), est.transform(Z))


def _fit_on_gpu_worker(Z, y):
    torch.cuda.reset_peak_memory_stats()
    est = SRAEExplainer(**{**TINY, "device": "auto"}).fit(Z, y)
    return dict(
        visible=torch.cuda.device_count(),
        used_gpu=torch.cuda.max_memory_allocated() > 0,
        score=est.score(Z, y),
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_worker_runs_device_auto_on_its_gpu(data):
    Z, y = data
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            resources={"GPU": 1},
            env={"CUDA_VISIBLE_DEVICES": "0"},
        ) as cluster,
        distributed.Client(cluster) as gpu_client,
    ):
        report = gpu_client.submit(_fit_on_gpu_worker, Z, y, resources={"GPU": 1}).result()
        assert report["visible"] == 1
        assert report["used_gpu"]
        pipe = Pipeline([("srae", SRAEExplainer(**{**TINY, "device": "auto"}))])
        search = GridSearchCV(pipe, {"srae__n_components": [2, 3]}, cv=2)
        with joblib.parallel_config(backend="dask", resources={"GPU": 1}):
            search.fit(Z, y)
        assert np.isfinite(search.cv_results_["mean_test_score"]).all()
