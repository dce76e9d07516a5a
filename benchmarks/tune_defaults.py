"""Measure SRAEExplainer settings over several seeds on planted and digits-CNN data.

The evidence behind the estimator's default loss weights. Each fit runs single-threaded
in its own process; results go to JSON and a Markdown summary (mean and worst seed).

    python benchmarks/tune_defaults.py --procs 16 --out benchmarks/results/tune_defaults
"""

import argparse
import itertools
import json
import multiprocessing as mp
import os
import time
import warnings

import numpy as np

GRID = {
    "pullaway": ["samples", "components"],
    "alpha_pullaway": [0.0, 0.1, 0.3, 1.0, 3.0],
    "alpha_reconstruction": [0.0, 0.1, 1.0],
}
EXTRA = [
    {"reconstruction": "mse", "alpha_reconstruction": 0.1, "alpha_pullaway": 0.3},
    {"reconstruction": "mse", "alpha_reconstruction": 1.0, "alpha_pullaway": 0.3},
    {"batch_size": 256, "max_iter": 300, "alpha_reconstruction": 0.1, "alpha_pullaway": 0.3},
    {"batch_size": 50, "alpha_reconstruction": 0.1, "alpha_pullaway": 0.3},
    {"preset": "samples"},
    {"preset": "components"},
]
BASE = {"batch_size": 64, "max_iter": 150}
SEEDS = [0, 1, 2]
DATA = {}


def recovery(X, codes):
    from scipy.optimize import linear_sum_assignment

    c = np.nan_to_num(np.abs(np.corrcoef(X.T, codes.T)[: X.shape[1], X.shape[1] :]))
    r, k = linear_sum_assignment(-c)
    return float(c[r, k].mean())


def run_one(job):
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from sklearn.metrics import r2_score

    from sklearn_xnn import SRAEExplainer

    params, dataset, seed = job
    Ztr, ytr, Zte, yte, codes_te = DATA[(dataset, seed)]
    p = dict(params)
    preset = p.pop("preset", None)
    kw = {**BASE, **p} if preset is None else {}
    est = (
        SRAEExplainer.reference(preset, random_state=seed, device="cpu", **kw)
        if preset
        else SRAEExplainer(5, random_state=seed, device="cpu", **kw)
    )
    t0 = time.perf_counter()
    est.fit(Ztr, ytr)
    fit_s = time.perf_counter() - t0
    X = est.transform(Zte)
    y_hat = est.predict(Zte)
    out = {
        "params": params,
        "dataset": dataset,
        "seed": seed,
        "r2": float(r2_score(yte, y_hat)),
        "top1": float((y_hat.argmax(1) == yte.argmax(1)).mean()),
        "dead": int(est.n_dead_components_),
        "n_iter": int(est.n_iter_),
        "fit_s": fit_s,
    }
    if codes_te is not None:
        out["recovery"] = recovery(X, codes_te)
    return out


def load_data():
    import torch

    torch.set_num_threads(1)
    from sklearn_xnn.datasets import load_digits_activations, make_concept_activations

    for seed in SEEDS:
        Z, y, codes = make_concept_activations(3000, 256, random_state=seed)
        DATA[("planted", seed)] = (Z[:2000], y[:2000], Z[2000:], y[2000:], codes[2000:])
    d = load_digits_activations(random_state=0)
    for seed in SEEDS:
        DATA[("digits", seed)] = (d.Z_train, d.y_train, d.Z_test, d.y_test, None)


def summarise(rows):
    lines = [
        "| setting | data | R² mean | R² min | recovery mean | recovery min | dead max | fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    key = lambda r: (json.dumps(r["params"], sort_keys=True), r["dataset"])  # noqa: E731
    for (params, dataset), group in itertools.groupby(sorted(rows, key=key), key=key):
        g = list(group)
        r2 = [r["r2"] for r in g]
        rec = [r.get("recovery", np.nan) for r in g]
        lines.append(
            f"| {params} | {dataset} | {np.mean(r2):.3f} | {np.min(r2):.3f} | "
            f"{np.mean(rec):.3f} | {np.min(rec):.3f} | {max(r['dead'] for r in g)} | "
            f"{np.mean([r['fit_s'] for r in g]):.1f} |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--procs", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="benchmarks/results/tune_defaults")
    ap.add_argument("--datasets", default="planted,digits")
    ap.add_argument("--limit", type=int, default=None, help="run only the first N fits")
    args = ap.parse_args()
    settings = [dict(zip(GRID, v, strict=True)) for v in itertools.product(*GRID.values())] + EXTRA
    jobs = [(s, d, seed) for s in settings for d in args.datasets.split(",") for seed in SEEDS]
    jobs = jobs[: args.limit]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    t0 = time.time()
    pool = mp.get_context("spawn").Pool(args.procs, initializer=load_data)
    with pool, open(args.out + ".jsonl", "w") as log:
        rows = []
        for row in pool.imap_unordered(run_one, jobs):
            rows.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            if len(rows) % 20 == 0:
                print(f"{len(rows)}/{len(jobs)} fits, {time.time() - t0:.0f}s", flush=True)
    with open(args.out + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    table = summarise(rows)
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
