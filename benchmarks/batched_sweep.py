"""Eight seeds fitted batched (one stacked network) against one after another, same data.

For each case, in one process: ``sweep(SRAEExplainer(...), {"random_state": seeds}, Z, y)``
(the eight fits fine-tuned as one stacked network, see ``sklearn_xnn.sweep``) and the
same eight ``SRAEExplainer(random_state=s).fit(Z, y)`` one after another, after a
warm-up of both; the two are run in alternating order ``--repeats`` times and the best time
of each is kept. Next to the wall times and their ratio: how far each batched member is
from its own fit (largest absolute difference of ``transform`` on held-out rows and of
``coef_``, also relative to the largest value), the held-out faithfulness R² of both,
epochs and dead x-features. For scale, the same single fit with torch using 1 and then
2 threads differs by far more on these data (rounding differences grow during training
and change the solution), which is the tolerance any CPU fit has.

Cases: the 64-unit ``fc1`` layer of the digits CNN (``load_digits_activations``, 1257
training rows, 10 logits) at the default parameters and with a small network
(``hidden_layer_sizes=(64, 16)``), and planted activations
(``make_concept_activations(4000, 512)``) at the default parameters. Writes JSON and a
Markdown table; the machine's load average is recorded before and after (the CPU machine
is shared: compare times within one run only).

    python benchmarks/batched_sweep.py                 # ~5 minutes on 2 loaded cores
    python benchmarks/batched_sweep.py --quick         # digits only, 2 seeds: a smoke run
"""

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sklearn_xnn import SRAEExplainer, __version__, sweep
from sklearn_xnn.datasets import load_digits_activations, make_concept_activations
from sklearn_xnn.metrics import faithfulness_r2

RESULTS = Path(__file__).parent / "results"


def digits():
    d = load_digits_activations()
    return d.Z_train, d.y_train, d.Z_test, d.y_test


def planted():
    Z, y, _ = make_concept_activations(5000, 512, n_outputs=10, random_state=0)
    return Z[:4000], y[:4000], Z[4000:], y[4000:]


CASES = {
    "digits fc1, defaults": (digits, {}),
    "digits fc1, hidden (64, 16)": (digits, {"hidden_layer_sizes": (64, 16)}),
    "planted 4000 x 512, defaults": (planted, {}),
}


def fit_sequential(params, seeds, Z, y):
    return [SRAEExplainer(**params, random_state=s).fit(Z, y) for s in seeds]


def fit_batched(params, seeds, Z, y):
    return sweep(SRAEExplainer(**params), {"random_state": list(seeds)}, Z, y)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def differences(seq, bat, Z_test):
    """Largest differences over the members, and each member's relative one."""
    x_abs = x_rel = c_abs = c_rel = 0.0
    per_member = []
    for a, b in zip(seq, bat, strict=True):
        xa, xb = a.transform(Z_test), b.transform(Z_test)
        d = float(np.abs(xa - xb).max())
        per_member.append(d / max(float(np.abs(xa).max()), 1e-300))
        x_abs, x_rel = max(x_abs, d), max(x_rel, per_member[-1])
        d = float(np.abs(a.coef_ - b.coef_).max())
        c_abs, c_rel = max(c_abs, d), max(c_rel, d / float(np.abs(a.coef_).max()))
    return {
        "transform_abs": x_abs,
        "transform_rel": x_rel,
        "coef_abs": c_abs,
        "coef_rel": c_rel,
        "transform_rel_per_member": per_member,
    }


def thread_difference(params, Z, y, Z_test):
    """The same fit with 1 and with 2 torch threads: the tolerance of any CPU fit."""
    before = torch.get_num_threads()
    fits = []
    for n in (1, 2):
        torch.set_num_threads(n)
        fits.append(SRAEExplainer(**params, random_state=0).fit(Z, y))
    torch.set_num_threads(before)
    return differences(fits[:1], fits[1:], Z_test)


def run_case(name, load, extra, args):
    Z, y, Z_test, y_test = load()
    params = {"device": "cpu", **extra}
    seeds = list(range(args.seeds))
    warm = {**params, "max_iter": 1}  # warm-up of both paths (first calls, vmap set-up)
    fit_sequential(warm, seeds[:2], Z, y), fit_batched(warm, seeds[:2], Z, y)
    times = {"sequential": [], "batched": []}
    for rep in range(args.repeats):
        order = ("batched", "sequential") if rep % 2 == 0 else ("sequential", "batched")
        for how in order:
            fn = fit_batched if how == "batched" else fit_sequential
            t, fits = timed(fn, params, seeds, Z, y)
            times[how].append(t)
            if how == "batched":
                bat = fits
            else:
                seq = fits
    row = {
        "case": name,
        "n_train": int(Z.shape[0]),
        "n_features": int(Z.shape[1]),
        "n_outputs": int(y.shape[1]),
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in extra.items()},
        "seeds": len(seeds),
        "stacked_with": sorted({int(b._stacked_with) for b in bat}),
        "sequential_s": min(times["sequential"]),
        "batched_s": min(times["batched"]),
        "all_times_s": times,
        "difference": differences(seq, bat, Z_test),
        "r2_sequential": [float(faithfulness_r2(y_test, e.predict(Z_test))) for e in seq],
        "r2_batched": [float(faithfulness_r2(y_test, e.predict(Z_test))) for e in bat],
        "epochs_sequential": [int(e.n_iter_) for e in seq],
        "epochs_batched": [int(e.n_iter_) for e in bat],
        "dead": int(sum(e.n_dead_components_ for e in bat)),
    }
    row["ratio"] = row["sequential_s"] / row["batched_s"]
    row["same_epochs"] = sum(
        a == b for a, b in zip(row["epochs_sequential"], row["epochs_batched"], strict=True)
    )
    if args.thread_reference:
        row["threads_1_vs_2"] = thread_difference(params, Z, y, Z_test)
    return row


def markdown(meta, rows):
    lines = [
        f"Machine: {meta['machine']}, torch {meta['torch']}, {meta['threads']} thread(s); "
        f"load average {meta['load_before']} before, {meta['load_after']} after. "
        f"{meta['seeds']} seeds, best of {meta['repeats']} alternating runs.",
        "",
        "| case | sequential s | batched s | ratio | max abs diff transform (rel) | "
        "max abs diff coef_ (rel) | 1 vs 2 threads, transform (rel) | held-out R² seq / batched "
        "| members with their fit's epochs | dead |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, t = r["difference"], r.get("threads_1_vs_2")
        thr = f"{t['transform_abs']:.2g} ({t['transform_rel']:.2g})" if t else ""
        lines.append(
            f"| {r['case']} | {r['sequential_s']:.1f} | {r['batched_s']:.1f} | "
            f"{r['ratio']:.2f} | {d['transform_abs']:.2g} ({d['transform_rel']:.2g}) | "
            f"{d['coef_abs']:.2g} ({d['coef_rel']:.2g}) | {thr} | "
            f"{np.mean(r['r2_sequential']):.4f} / {np.mean(r['r2_batched']):.4f} | "
            f"{r['same_epochs']} of {r['seeds']} | {r['dead']} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="digits only, 2 seeds, 1 run")
    parser.add_argument("--no-thread-reference", dest="thread_reference", action="store_false")
    parser.add_argument("--out", default="batched_sweep")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.repeats = 2, 1
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # ConvergenceWarning at the default epoch budget
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "sklearn_xnn": __version__,
        "threads": args.threads,
        "seeds": args.seeds,
        "repeats": args.repeats,
        "load_before": [round(v, 2) for v in os.getloadavg()],
    }
    cases = list(CASES.items())[:1] if args.quick else list(CASES.items())
    rows = []
    for name, (load, extra) in cases:
        rows.append(run_case(name, load, extra, args))
        print(json.dumps({k: rows[-1][k] for k in ("case", "sequential_s", "batched_s", "ratio")}))
    meta["load_after"] = [round(v, 2) for v in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (RESULTS / f"{args.out}.md").write_text(markdown(meta, rows))
    print(markdown(meta, rows))


if __name__ == "__main__":
    main()
