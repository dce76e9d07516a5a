"""How many intra-op threads torch may use for one fit, set for its duration only.

Torch starts one intra-op thread per physical core it sees, whatever the process is
allowed to use and however many other fits run beside it. Under
``GridSearchCV(n_jobs=2)``, in a Dask worker running several tasks, or in a container
with a CPU quota, that oversubscribes the cores: small networks then spend their time
waiting on threads (5 epochs took 2.1 s on a quiet 2-core machine and 29 s beside one
busy process). :func:`torch_threads` sets a sane count around a fit and puts the previous
one back afterwards, so that nothing leaks from one task into the next.

The count is, in order of precedence:

1. ``n_threads`` when given, else the environment variable ``SKLEARN_XNN_NUM_THREADS``
   (a positive integer): used as it is, even above the other limits;
2. otherwise the smallest of

   * torch's current count, ``torch.get_num_threads()``: a lower value set by the user
     with ``torch.set_num_threads``, or by a ``threadpoolctl.threadpool_limits`` context
     (torch's pool is the OpenMP pool threadpoolctl limits), or read by torch at start-up
     from ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, is kept; a count is never raised;
   * ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` as they are now: joblib's loky workers
     receive them (``inner_max_num_threads``, else cores // ``n_jobs``) and Dask's nanny
     sets them to 1 in its worker processes;
   * the CPUs this process may use (``joblib.cpu_count()``: affinity mask, cgroup CPU
     quota and ``LOKY_MAX_CPU_COUNT``), divided by the number of task threads when the
     code runs inside a ``distributed`` worker (its ``nthreads``).

Torch keeps the count per thread (each new thread starts from the last value set), so
concurrent fits in threads of one process each set and restore their own.
"""

import contextlib
import logging
import os
import sys

import joblib
import torch

logger = logging.getLogger(__name__)

#: Environment variable that fixes torch's thread count for every fit.
ENV_VAR = "SKLEARN_XNN_NUM_THREADS"

# The variables torch itself reads for its intra-op pool (OpenMP, then MKL).
_LIMIT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _positive_int(value, name):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return number


def choose_num_threads(current, n_cpus, env=None, worker_nthreads=None, override=None):
    """The rule of :func:`torch_threads` as a pure function.

    Parameters
    ----------
    current : int
        Torch's current intra-op thread count.
    n_cpus : int
        CPUs the process may use.
    env : mapping, default=None
        Environment variables (only ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` are read).
    worker_nthreads : int, default=None
        Task threads of the enclosing Dask worker, if any.
    override : int or str, default=None
        An explicit count (``n_threads`` or ``SKLEARN_XNN_NUM_THREADS``); wins.

    Returns
    -------
    n_threads : int
        The count to use, at least 1.

    Examples
    --------
    >>> from sklearn_xnn._threads import choose_num_threads
    >>> choose_num_threads(current=16, n_cpus=4)
    4
    >>> choose_num_threads(current=16, n_cpus=16, worker_nthreads=4)
    4
    >>> choose_num_threads(current=16, n_cpus=16, env={"OMP_NUM_THREADS": "1"})
    1
    >>> choose_num_threads(current=1, n_cpus=16, override=8)
    8
    """
    if override is not None and override != "":
        return _positive_int(override, ENV_VAR if isinstance(override, str) else "n_threads")
    share = max(int(n_cpus) // (worker_nthreads or 1), 1)
    limits = [int(current), share]
    for var in _LIMIT_VARS:
        # OpenMP accepts a nesting list ("4,2"): the first entry is the outer level
        head = str((env or {}).get(var, "")).split(",")[0].strip()
        if head.isdigit() and int(head) > 0:
            limits.append(int(head))
    return max(min(limits), 1)


@contextlib.contextmanager
def torch_threads(n_threads=None):
    """Set torch's intra-op thread count for the duration of a block, then restore it.

    Parameters
    ----------
    n_threads : int, default=None
        An explicit count; ``None`` reads ``SKLEARN_XNN_NUM_THREADS``, then applies the
        default rule (the module docstring, :func:`choose_num_threads`).

    Yields
    ------
    n_threads : int
        The count in force inside the block.

    Examples
    --------
    >>> import torch
    >>> from sklearn_xnn._threads import torch_threads
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1) as n:
    ...     torch.get_num_threads() == n == 1
    True
    >>> torch.get_num_threads() == before
    True
    """
    previous = torch.get_num_threads()
    worker_nthreads = None  # the task threads of the distributed worker running this code
    distributed = sys.modules.get("distributed")  # never import it just to look
    if distributed is not None:
        try:
            worker = distributed.get_worker()
        except (ValueError, AttributeError):  # not in a worker
            worker = None
        nthreads = getattr(getattr(worker, "state", worker), "nthreads", None)
        worker_nthreads = nthreads if isinstance(nthreads, int) and nthreads > 0 else None
    chosen = choose_num_threads(
        current=previous,
        n_cpus=joblib.cpu_count(),
        env=os.environ,
        worker_nthreads=worker_nthreads,
        override=n_threads if n_threads is not None else os.environ.get(ENV_VAR),
    )
    if chosen != previous:
        torch.set_num_threads(chosen)
    logger.debug("torch intra-op threads: %d (was %d)", chosen, previous)
    try:
        yield chosen
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
