"""Peak RSS added by compare_explainers with 1,000 outputs (run in a fresh process).

    python benchmarks/compare_memory.py --n-test 10000 [--estimator srae|pca]
Prints the code used, the phases reached, VmHWM every 10 s and the final added peak.
"""

import argparse
import resource
import sys
import threading
import time
import warnings

import numpy as np


def hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024


def data(n_rows, n_features, n_outputs, seed=0, rank=8):
    """Non-negative rank-8 activations and n_outputs linear logits (as tests/test_many_outputs)."""
    rng = np.random.default_rng(seed)
    f = rng.gamma(1.0, 1.0, size=(n_rows, rank))
    Z = np.maximum(f @ rng.normal(size=(rank, n_features)), 0.0)
    Z += 0.05 * rng.random((n_rows, n_features))
    return Z, Z @ rng.normal(size=(n_features, n_outputs)) / np.sqrt(n_features)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--estimator", default="srae")
    # old code only: its pull-away over the samples takes ~4 s per output at 10,000 rows
    # (an n x n matrix each); this runs it on the first two outputs only, to reach the
    # phases after it
    p.add_argument("--stub-samples-pullaway", action="store_true")
    a = p.parse_args()
    from sklearn.decomposition import PCA

    import sklearn_xnn
    from sklearn_xnn import SRAEExplainer, metrics
    from sklearn_xnn.compare import compare_explainers

    print("code:", sklearn_xnn.__file__, flush=True)
    for name in ("n_significant", "pullaway", "mean_abs_correlation"):  # log the phases
        fn = getattr(metrics, name)

        def logged(*args, _fn=fn, _name=name, **kw):
            print(f"{time.perf_counter() - t0:7.1f} s enter {_name} {kw}", flush=True)
            if a.stub_samples_pullaway and _name == "pullaway" and kw.get("over") == "samples":
                return _fn(args[0][:, :2], **kw)
            return _fn(*args, **kw)

        setattr(metrics, name, logged)
    Z, y = data(a.n_train + a.n_test, 256, 1000)
    Ztr, ytr, Zte, yte = Z[: a.n_train], y[: a.n_train], Z[a.n_train :], y[a.n_train :]
    del Z, y  # the four slices keep them alive; nothing is copied
    est = (
        SRAEExplainer(n_components=20, random_state=0, device="cpu")
        if a.estimator == "srae"
        else PCA(20, random_state=0)
    )
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"baseline peak RSS {base:.0f} MB (data and imports)", flush=True)

    def poll():
        while True:
            time.sleep(10)
            print(f"{time.perf_counter() - t0:7.1f} s VmHWM {hwm_mb():.0f} MB", flush=True)

    t0 = time.perf_counter()
    threading.Thread(target=poll, daemon=True).start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = compare_explainers({"est": est}, Ztr, ytr, Zte, yte)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cols = [
        "faithfulness_r2",
        "n_significant",
        "pullaway_samples",
        "pullaway_components",
        "contribution_corr",
        "fit_time_s",
    ]
    print(table.loc["est", cols].to_dict())
    print(
        f"done in {time.perf_counter() - t0:.1f} s; peak RSS {peak:.0f} MB; "
        f"added by compare_explainers {peak - base:.0f} MB",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
