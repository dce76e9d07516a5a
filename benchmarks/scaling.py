"""Fit time against the number of rows, and peak memory of a fit from a 2 GB memmap.

1. ``fit`` time for N in {10k, 25k, 50k, 100k, 200k} rows of
   ``make_concept_activations(N, D)`` with a fixed number of epochs (no early stop, no
   collapse retries), so that time should grow linearly in N; the seconds per 10k rows
   show it.
2. A float32 ``numpy.memmap`` of ``--memmap-rows`` x 2048 (2 GiB by default) is written to
   ``--tmp`` chunk by chunk (planted concepts, the same patterns in every chunk) and fitted
   in a fresh subprocess with the default ``stream_threshold`` (1 GiB), so it is streamed.
   Peak resident memory (``VmHWM`` of the child: interpreter, torch, model, batches and
   touched file pages) must stay under 1 GB.

    python benchmarks/scaling.py
"""

import argparse
import json
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import make_concept_activations

_CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np, torch
from sklearn_xnn import SRAEExplainer

def peak_rss():  # VmHWM: this process's own peak (ru_maxrss would carry the parent's over exec)
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
path, n_out, max_iter = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
Z = np.load(path, mmap_mode="r")
y = np.load(path.replace(".npy", "_y.npy"))
after_import = peak_rss()
warnings.simplefilter("ignore")
start = time.perf_counter()
est = SRAEExplainer(max_iter=max_iter, pretrain=1, random_state=0).fit(Z, y)
seconds = time.perf_counter() - start
peak = peak_rss()
r2 = est.score(np.asarray(Z[-20000:]), y[-20000:])
print(json.dumps({"peak_rss_bytes": peak, "rss_after_imports_bytes": after_import,
                  "fit_s": seconds, "r2_last_20k_rows": r2, "n_iter": est.n_iter_,
                  "dead": est.n_dead_components_}))
"""


def time_vs_rows(sizes, n_features, max_iter):
    rows = []
    for n in sizes:
        Z, y, _ = make_concept_activations(n, n_features, random_state=0)
        Z = Z.astype(np.float32)
        est = SRAEExplainer(max_iter=max_iter, pretrain=1, tol=0.0, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            est.fit(Z, y)
            seconds = time.perf_counter() - start
        rows.append(
            {
                "n_samples": n,
                "fit_s": seconds,
                "s_per_10k": seconds / n * 1e4,
                "r2": est.score(Z, y),
            }
        )
        print(rows[-1], flush=True)
    return rows


def write_memmap(path, n_rows, n_features, chunk=16384):
    """Planted data: relu(codes @ A + noise + shift), logits = codes @ W (same A, W for all)."""
    rng = np.random.default_rng(0)
    k, n_out = 5, 10
    A = (rng.random((k, n_features)) < 0.2) * rng.random((k, n_features))
    W = rng.normal(size=(n_out, k))
    Z = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_rows, n_features))
    y = np.empty((n_rows, n_out))
    for i in range(0, n_rows, chunk):
        m = min(chunk, n_rows - i)
        codes = (rng.random((m, k)) < 0.3) * rng.exponential(size=(m, k))
        noise = 0.3 * rng.standard_normal((m, n_features), dtype=np.float32)
        Z[i : i + m] = np.maximum(codes @ A + noise + 0.2, 0)
        y[i : i + m] = codes @ W.T
    Z.flush()
    del Z
    np.save(str(path).replace(".npy", "_y.npy"), y)


def memmap_fit(path, n_rows, n_features, max_iter):
    start = time.perf_counter()
    write_memmap(path, n_rows, n_features)
    written = time.perf_counter() - start
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), "10", str(max_iter)],
        capture_output=True,
        text=True,
        check=True,
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row.update(
        {
            "rows": n_rows,
            "features": n_features,
            "file_bytes": n_rows * n_features * 4,
            "write_s": written,
        }
    )
    print(row, flush=True)
    return row


def markdown(info, rows, mm):
    lines = [
        f"Machine: {info['processor']}, torch {info['torch']}, {info['threads']} threads; "
        f"D = {info['n_features']}, {info['max_iter']} epochs, pretrain=1, other parameters "
        "default.",
        "",
        "| N | fit s | s per 10k rows | train R² |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['n_samples']} | {r['fit_s']:.1f} | {r['s_per_10k']:.2f} | {r['r2']:.3f} |"
        for r in rows
    ]
    if mm:
        lines += [
            "",
            "| memmap | file | streamed fit s | peak RSS | RSS after imports | R² last 20k |",
            "|---|---|---|---|---|---|",
            f"| {mm['rows']} x {mm['features']} float32 | {mm['file_bytes'] / 2**30:.2f} GiB | "
            f"{mm['fit_s']:.0f} ({mm['n_iter']} epoch) | {mm['peak_rss_bytes'] / 2**20:.0f} MiB | "
            f"{mm['rss_after_imports_bytes'] / 2**20:.0f} MiB | {mm['r2_last_20k_rows']:.3f} |",
        ]
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    n = np.array([r["n_samples"] for r in rows])
    t = np.array([r["fit_s"] for r in rows])
    ax.plot(n, t, "o-", label="fit")
    ax.plot(n, t[-1] * n / n[-1], "--", color="grey", label="linear through the largest")
    ax.set_xlabel("rows")
    ax.set_ylabel("fit seconds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10000, 25000, 50000, 100000, 200000]
    )
    parser.add_argument("--n-features", type=int, default=512)
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--memmap-rows", type=int, default=262144)
    parser.add_argument("--memmap-features", type=int, default=2048)
    parser.add_argument("--skip-memmap", action="store_true")
    parser.add_argument("--tmp", default="/tmp")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    rows = time_vs_rows(args.sizes, args.n_features, args.max_iter)
    mm = None
    if not args.skip_memmap:
        path = Path(args.tmp) / "sklearn_xnn_scaling.npy"
        try:
            mm = memmap_fit(path, args.memmap_rows, args.memmap_features, 1)
        finally:
            path.unlink(missing_ok=True)
            Path(str(path).replace(".npy", "_y.npy")).unlink(missing_ok=True)
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "n_features": args.n_features,
        "max_iter": args.max_iter,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "time_vs_rows": rows, "memmap": mm}
    (out / "scaling.json").write_text(json.dumps(payload, indent=1))
    (out / "scaling.md").write_text(markdown(info, rows, mm))
    plot(rows, out / "scaling.png")
    print(markdown(info, rows, mm))


if __name__ == "__main__":
    main()
