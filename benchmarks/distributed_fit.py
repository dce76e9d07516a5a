"""One explainer fitted over several processes, against the same fit in one process.

Run on one machine with two CPU ranks (gloo)::

    torchrun --standalone --nproc_per_node 2 benchmarks/distributed_fit.py

Rank 0 writes synthetic activations to a ``numpy.memmap`` (``--folder``, default a
temporary folder), every rank fits its shard with
:func:`sklearn_xnn.distributed.fit_sharded`, and rank 0 then fits the same explainer in
one process and writes ``benchmarks/results/distributed_fit.{json,md}``: fit time, held-out
R², training faithfulness against the bound, dead x-features, and the largest difference of
the reduced statistics from the one-process ones. On a GPU cluster use
``--backend nccl`` (one GPU per rank, ``device="auto"`` picks ``cuda:LOCAL_RANK``).
"""

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch.distributed as dist

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.distributed import fit_sharded

RESULTS = Path(__file__).parent / "results"


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    p.add_argument("--n-samples", type=int, default=20000)
    p.add_argument("--n-features", type=int, default=256)
    p.add_argument("--max-iter", type=int, default=10)
    p.add_argument("--folder", default=None)
    return p.parse_args()


def explainer(args):
    return SRAEExplainer(hidden_layer_sizes=(128, 32), max_iter=args.max_iter, random_state=0)


def write_data(folder, args):
    """The activations as a memmap on disk (``X.npy``), logits and held-out rows beside."""
    n_test = args.n_samples // 5
    Z, y, _ = make_concept_activations(args.n_samples + n_test, args.n_features, random_state=0)
    X = np.lib.format.open_memmap(
        folder / "X.npy", mode="w+", dtype=np.float32, shape=(args.n_samples, args.n_features)
    )
    X[:] = Z[: args.n_samples]
    X.flush()
    np.save(folder / "y.npy", y[: args.n_samples])
    np.savez(folder / "test.npz", X=Z[args.n_samples :], y=y[args.n_samples :])


def summary(est, seconds, test):
    return {
        "fit_s": round(seconds, 2),
        "heldout_r2": float(est.score(test["X"], test["y"])),
        "faithfulness": float(est.faithfulness_),
        "faithfulness_bound": float(est.faithfulness_bound_),
        "n_dead_components": int(est.n_dead_components_),
        "n_iter": int(est.n_iter_),
    }


def main():
    args = parse()
    dist.init_process_group(args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    folder = [args.folder or (tempfile.mkdtemp() if rank == 0 else None)]
    dist.broadcast_object_list(folder)
    folder = Path(folder[0])
    if rank == 0:
        write_data(folder, args)
    dist.barrier()
    X = np.load(folder / "X.npy", mmap_mode="r")
    y = np.load(folder / "y.npy", mmap_mode="r")
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    sharded = fit_sharded(explainer(args), X, y)
    seconds = time.perf_counter() - t0
    if rank == 0:
        test = np.load(folder / "test.npz")
        t0 = time.perf_counter()
        one = explainer(args).fit(np.asarray(X), np.asarray(y))
        row = {
            "world_size": world,
            "backend": args.backend,
            "n_samples": args.n_samples,
            "n_features": args.n_features,
            "sharded": summary(sharded, seconds, test),
            "one_process": summary(one, time.perf_counter() - t0, test),
            "max_stat_diff": max(
                float(np.max(np.abs(np.subtract(getattr(sharded, k), getattr(one, k)))))
                for k in ("scale_", "y_mean_", "y_scale_", "faithfulness_curve_")
            ),
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "distributed_fit.json").write_text(json.dumps(row, indent=2) + "\n")
        lines = [
            "| fit | time (s) | held-out R² | faithfulness | bound | dead | epochs |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in ("sharded", "one_process"):
            r = row[name]
            label = f"{world} ranks" if name == "sharded" else "1 process"
            lines.append(
                f"| {label} | {r['fit_s']} | {r['heldout_r2']:.4f} | {r['faithfulness']:.4f} "
                f"| {r['faithfulness_bound']:.4f} | {r['n_dead_components']} | {r['n_iter']} |"
            )
        lines.append(f"\nLargest difference of the reduced statistics: {row['max_stat_diff']:.2e}")
        (RESULTS / "distributed_fit.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))  # noqa: T201
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("SKLEARN_XNN_NUM_THREADS", "1")
    main()
