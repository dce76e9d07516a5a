"""torch_threads: the intra-op thread count of a fit, its limits, and its restoration."""

import os
import threading

import joblib
import pytest
import torch
from threadpoolctl import threadpool_limits

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._threads import ENV_VAR, choose_num_threads, torch_threads
from sklearn_xnn.datasets import make_concept_activations
from tests import conftest

# Five epochs never converge; these tests are about threads, not quality.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TINY = dict(conftest.TINY, n_components=3, device="cpu", random_state=0)


@pytest.fixture
def torch_two_threads(monkeypatch):
    """Torch at 2 threads in this process for the test (conftest uses 1), restored after."""
    for var in (ENV_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(current=16, n_cpus=4), 4),  # capped at the CPUs the process may use
        (dict(current=2, n_cpus=16), 2),  # a lower user setting is kept, never raised
        (dict(current=16, n_cpus=16, worker_nthreads=4), 4),  # a Dask worker's share
        (dict(current=16, n_cpus=3, worker_nthreads=4), 1),  # at least one thread
        (dict(current=16, n_cpus=16, env={"OMP_NUM_THREADS": "2"}), 2),  # loky / nanny
        (dict(current=16, n_cpus=16, env={"MKL_NUM_THREADS": "3"}), 3),
        (dict(current=16, n_cpus=16, env={"OMP_NUM_THREADS": "4,2"}), 4),  # nesting list
        (dict(current=16, n_cpus=16, env={"OMP_NUM_THREADS": "lots"}), 16),  # ignored
        (dict(current=1, n_cpus=2, env={"OMP_NUM_THREADS": "1"}, override="8"), 8),
        (dict(current=1, n_cpus=2, override=3), 3),
        (dict(current=5, n_cpus=8, override=""), 5),  # an empty variable is unset
    ],
)
def test_choose_num_threads_rule(kwargs, expected):
    assert choose_num_threads(**kwargs) == expected


@pytest.mark.parametrize("override", ["0", "-2", "two", 0])
def test_invalid_override_raises(override):
    with pytest.raises(ValueError, match="must be a positive integer"):
        choose_num_threads(current=2, n_cpus=2, override=override)


def test_env_override_is_used_and_invalid_env_raises(torch_two_threads, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1")
    with torch_threads() as n:
        assert n == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    monkeypatch.setenv(ENV_VAR, "many")
    with pytest.raises(ValueError, match=f"{ENV_VAR} must be a positive integer"):
        with torch_threads():
            pass
    assert torch.get_num_threads() == 2


def test_context_restores_after_a_fit_and_after_an_error(torch_two_threads, planted_small):
    Z, y, _ = planted_small
    with torch_threads(1):
        SRAEExplainer(**TINY).fit(Z, y)
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


def test_nested_contexts_restore_in_order(torch_two_threads):
    with torch_threads(1):
        with torch_threads() as inner:  # the default never raises the current count
            assert inner == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_default_respects_a_threadpoolctl_limit(torch_two_threads):
    # torch's intra-op pool is the OpenMP pool that threadpoolctl limits.
    with threadpool_limits(limits=1, user_api="openmp"):
        with torch_threads() as n:
            assert n == 1
            assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_default_is_capped_at_usable_cpus(torch_two_threads):
    torch.set_num_threads(joblib.cpu_count() + 3)  # e.g. torch's count of a whole host
    with torch_threads() as n:
        assert n == joblib.cpu_count()


def test_concurrent_threads_keep_their_own_count(torch_two_threads):
    # Torch keeps the count per thread: two fits in two threads do not disturb each other.
    barrier = threading.Barrier(2, timeout=30)
    seen = {}

    def run(n):
        with torch_threads(n):
            barrier.wait()  # both are inside their context now
            seen[n] = torch.get_num_threads()
            barrier.wait()

    threads = [threading.Thread(target=run, args=(n,)) for n in (1, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {1: 1, 3: 3}
    assert torch.get_num_threads() == 2


def _fit_in_worker(start_threads):
    """In a loky worker: raise torch's count (as a leaked setting would), fit, report."""
    before = torch.get_num_threads()
    torch.set_num_threads(start_threads)
    try:
        Z, y, _ = make_concept_activations(200, 16, n_concepts=3, n_outputs=4, random_state=0)
        with torch_threads() as chosen:
            SRAEExplainer(**TINY).fit(Z, y)
            inside = torch.get_num_threads()
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    return dict(omp=os.environ.get("OMP_NUM_THREADS"), chosen=chosen, inside=inside, after=after)


@pytest.mark.parametrize("inner", [1, 2])
def test_loky_inner_max_num_threads_limits_a_fit(inner, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    main_before = torch.get_num_threads()
    with joblib.parallel_config(backend="loky", inner_max_num_threads=inner):
        reports = joblib.Parallel(n_jobs=2)(joblib.delayed(_fit_in_worker)(4) for _ in range(2))
    expected = min(inner, joblib.cpu_count())
    for report in reports:
        assert report["omp"] == str(inner)  # what loky gives its workers
        assert report["chosen"] == report["inside"] == expected
        assert report["after"] == 4  # the worker's own setting is back after the fit
    assert torch.get_num_threads() == main_before


def test_usable_as_a_method_decorator(torch_two_threads, monkeypatch):
    # The form used on fit / partial_fit: one decorator object, a fresh context per call.
    monkeypatch.setenv(ENV_VAR, "1")

    class Fitter:
        @torch_threads()
        def fit(self):
            """Docstring kept."""
            return torch.get_num_threads()

    assert Fitter.fit.__doc__ == "Docstring kept."
    assert [Fitter().fit() for _ in range(2)] == [1, 1]
    assert torch.get_num_threads() == 2
