"""Wall time of one grid search sequentially, with joblib's loky (n_jobs=2) and on Dask.

A 12-setting x 3-fold ``GridSearchCV`` over ``SRAEExplainer`` (``n_components`` x
``alpha_reconstruction`` x ``alpha_pullaway``, a small network and a fixed number of
epochs) on ``make_concept_activations(1500, 64)``, run three ways in one process:

* ``sequential``: ``n_jobs=None``, every fit in this process, torch's thread default;
* ``sequential, torch 1 thread``: the same after ``torch.set_num_threads(1)``;
* ``loky``: ``n_jobs=2``, joblib's default process backend (worker start-up included);
* ``dask``: ``joblib.parallel_config(backend="dask")`` on a ``distributed.LocalCluster``
  of 2 worker processes x 1 thread on 127.0.0.1 (cluster start-up timed separately).

Next to the wall time: torch's intra-op thread count a fit sees in each setting (probed
with a tiny fit in the same kind of worker), the best parameters and score, and the
largest difference of ``mean_test_score`` from the sequential run (0 means bitwise
equal). The machine's load average is recorded before and after: on a shared machine
the times are only comparable within one run. Writes JSON and a Markdown table.

    python benchmarks/grid_search_backends.py                 # a few minutes on 2 cores
    python benchmarks/grid_search_backends.py --max-iter 5    # a quick smoke run
"""

import argparse
import json
import os
import platform
import resource
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
import sklearn
import torch
from sklearn.model_selection import GridSearchCV

from sklearn_xnn import SRAEExplainer, __version__
from sklearn_xnn.datasets import make_concept_activations

GRID = {
    "n_components": [3, 5, 8],
    "alpha_reconstruction": [0.1, 1.0],
    "alpha_pullaway": [0.02, 0.2],
}


def estimator(args):
    return SRAEExplainer(
        hidden_layer_sizes=tuple(args.hidden),
        max_iter=args.max_iter,
        pretrain=2,
        device="cpu",
        random_state=0,
    )


def probe_threads(_=None):
    """Torch's thread count during a tiny fit, in whatever process runs this."""
    seen = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda *_: seen.append(torch.get_num_threads())
    )
    Z, y, _ = make_concept_activations(100, 8, n_concepts=2, n_outputs=2, random_state=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SRAEExplainer(
                n_components=2, hidden_layer_sizes=(8, 4), max_iter=1, pretrain=1, device="cpu"
            ).fit(Z, y)
    finally:
        hook.remove()
    return {"fit": max(seen) if seen else None, "env": os.environ.get("OMP_NUM_THREADS")}


def search(args, Z, y, n_jobs=None):
    gs = GridSearchCV(estimator(args), GRID, cv=3, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at the fixed epoch budget
        t0 = time.perf_counter()
        gs.fit(Z, y)
    return gs, time.perf_counter() - t0


def summary(name, gs, seconds, threads, reference=None, **extra):
    scores = np.asarray(gs.cv_results_["mean_test_score"])
    diff = None if reference is None else float(np.max(np.abs(scores - reference)))
    return {
        "backend": name,
        "wall_s": round(seconds, 2),
        "fits": len(scores) * 3 + 1,
        "torch_threads_in_fit": threads["fit"],
        "OMP_NUM_THREADS": threads["env"],
        "best_params": gs.best_params_,
        "best_faithfulness_r2": round(float(gs.best_score_), 4),
        "max_abs_diff_vs_sequential": diff,
        **extra,
    }


def run_dask(args, Z, y, reference):
    import logging

    import distributed

    logging.getLogger("distributed").setLevel(logging.ERROR)  # shutdown chatter

    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    startup = time.perf_counter() - t0
    try:
        with joblib.parallel_config(backend="dask"):
            gs, seconds = search(args, Z, y)
        threads = client.submit(probe_threads, pure=False).result()
    finally:
        client.close()
        cluster.close()
    return summary(
        "dask (2 workers x 1 thread)",
        gs,
        seconds,
        threads,
        reference,
        cluster_startup_s=round(startup, 2),
    )


def machine():
    import distributed

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus_usable": joblib.cpu_count(),
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "joblib": joblib.__version__,
        "distributed": distributed.__version__,
        "sklearn_xnn": __version__,
        "torch_threads_main": torch.get_num_threads(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }


def markdown(rows, info, args):
    lines = [
        f"Grid search: {len(rows[0]['best_params'])} parameters, 12 settings x 3 folds "
        f"(+1 refit) on make_concept_activations(1500, 64); hidden={tuple(args.hidden)}, "
        f"max_iter={args.max_iter}, pretrain=2.",
        "",
        f"Machine: {info['processor']}, {info['cpus_usable']} usable CPUs, torch "
        f"{info['torch']}, distributed {info['distributed']}; load average (1, 5, 15 min) "
        f"before {info['loadavg_before']}, after {info['loadavg_after']}.",
        "",
        "| backend | wall s | speed-up | torch threads in a fit | OMP_NUM_THREADS | best "
        "params | best CV R² | max diff vs sequential |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = rows[0]["wall_s"]
    for r in rows:
        extra = f" (+{r['cluster_startup_s']} s cluster start)" if "cluster_startup_s" in r else ""
        diff = (
            "-"
            if r["max_abs_diff_vs_sequential"] is None
            else (f"{r['max_abs_diff_vs_sequential']:.1e}")
        )
        params = ", ".join(f"{k}={v}" for k, v in sorted(r["best_params"].items()))
        lines.append(
            f"| {r['backend']} | {r['wall_s']}{extra} | {base / r['wall_s']:.2f} | "
            f"{r['torch_threads_in_fit']} | {r['OMP_NUM_THREADS'] or 'unset'} | {params} | "
            f"{r['best_faithfulness_r2']} | {diff} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=40)
    parser.add_argument("--hidden", type=int, nargs=2, default=[64, 32])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    Z, y, _ = make_concept_activations(1500, 64, random_state=0)
    info = machine()
    rows = []
    gs, seconds = search(args, Z, y)
    reference = np.asarray(gs.cv_results_["mean_test_score"])
    rows.append(summary("sequential", gs, seconds, probe_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the user's override: the default keeps a lower count
    try:
        gs, seconds = search(args, Z, y)
        rows.append(summary("sequential, torch 1 thread", gs, seconds, probe_threads(), reference))
    finally:
        torch.set_num_threads(before)
    gs, seconds = search(args, Z, y, n_jobs=2)
    loky_threads = joblib.Parallel(n_jobs=2)(joblib.delayed(probe_threads)(i) for i in range(2))
    rows.append(summary("loky (n_jobs=2)", gs, seconds, loky_threads[0], reference))
    rows.append(run_dask(args, Z, y, reference))
    info["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    info["max_rss_main_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": info,
        "grid": GRID,
        "cv": 3,
        "max_iter": args.max_iter,
        "hidden": args.hidden,
        "rows": rows,
    }
    (args.out / "grid_search_backends.json").write_text(json.dumps(payload, indent=1))
    table = markdown(rows, info, args)
    (args.out / "grid_search_backends.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
