"""Compare SRAE with PCA, NMF, PLS and a random non-negative projection on held-out rows.

Two data sets: planted-concept activations (``make_concept_activations(3000, 256)``, 70/30
split, concept recovery against the planted codes) and the fc1 layer of a small CNN
trained on scikit-learn's digits. For each K in (3, 5, 10), two settings:

* ``all``: one explainer for all 10 logits;
* ``one``: the paper's setting, one explainer per logit (``y`` 1-D); metrics are averaged
  over the explained logits, ``fit_time_s`` is the total (top-1 / KL need every logit,
  so they are NaN unless ``--all-logits`` is given).

Prints the tables and writes ``compare_explainers[_quick].md`` and ``.json`` to
``benchmarks/results/``. SRAE runs with a small network (``--srae-*`` flags) so that the
whole script stays within a few minutes on 2 CPU cores; ``--quick`` runs K=5 and one logit.
Torch runs on one thread by default (``--threads``): on a small shared machine more
threads oversubscribe the cores and were 5x slower in our measurements.

Usage::

    python benchmarks/compare_explainers.py            # full run (K = 3, 5, 10)
    python benchmarks/compare_explainers.py --quick    # K = 5 only, one logit
"""

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import torch

from sklearn_xnn.compare import compare_explainers, compare_per_output, default_explainers
from sklearn_xnn.datasets import load_digits_activations, make_concept_activations

SHOWN = [
    "faithfulness_r2",
    "rmse",
    "top1_agreement",
    "kl",
    "reconstruction_r2",
    "mean_active",
    "n_significant",
    "pullaway_samples",
    "contribution_corr",
    "component_max_cos",
    "dead_fraction",
    "concept_recovery",
    "fit_time_s",
]
SHORT = {
    "faithfulness_r2": "faith_r2",
    "top1_agreement": "top1",
    "reconstruction_r2": "rec_r2",
    "mean_active": "active",
    "n_significant": "n_sig",
    "pullaway_samples": "pt_samp",
    "contribution_corr": "corr",
    "component_max_cos": "max_cos",
    "dead_fraction": "dead",
    "concept_recovery": "concepts",
    "fit_time_s": "fit_s",
}


def load_data(seed):
    Z, y, codes = make_concept_activations(3000, 256, random_state=seed)
    cut = 2100
    planted = dict(
        Z_train=Z[:cut], y_train=y[:cut], Z_test=Z[cut:], y_test=y[cut:], codes_test=codes[cut:]
    )
    d = load_digits_activations(random_state=seed)
    digits = dict(Z_train=d.Z_train, y_train=d.y_train, Z_test=d.Z_test, y_test=d.y_test)
    return {"planted": planted, "digits": digits}


def run(data, Ks, outputs, srae_params, seed):
    frames = []
    for name, ds in data.items():
        codes = ds.get("codes_test")
        for K in Ks:
            ex = default_explainers(K, seed, srae_params=srae_params)
            args = (ds["Z_train"], ds["y_train"], ds["Z_test"], ds["y_test"])
            t = compare_explainers(ex, *args, codes_test=codes)
            frames.append(t.assign(data=name, setting="all", K=K))
            t = compare_per_output(ex, *args, outputs=outputs, codes_test=codes)
            frames.append(t.assign(data=name, setting="one", K=K))
            print(f"  done: {name} K={K}", flush=True)
    return pd.concat(frames).reset_index()


def markdown(frame, columns):
    head = "| " + " | ".join(columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for _, r in frame.iterrows()]
    return "\n".join([head, rule, *rows])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K=5 and a single logit only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logits", type=int, default=3, help="logits explained one at a time")
    parser.add_argument("--all-logits", action="store_true", help="one setting over all 10")
    parser.add_argument("--srae-hidden", type=int, nargs=2, default=(128, 32))
    parser.add_argument("--srae-max-iter", type=int, default=50)
    parser.add_argument("--srae-pretrain", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 avoids oversubscription)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    Ks = (5,) if args.quick else (3, 5, 10)
    n_logits = 10 if args.all_logits else (1 if args.quick else args.logits)
    outputs = list(range(n_logits))
    srae_params = dict(
        hidden_layer_sizes=tuple(args.srae_hidden),
        max_iter=args.srae_max_iter,
        pretrain=args.srae_pretrain,
    )
    start = time.perf_counter()
    data = load_data(args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # recorded per row in the "note" column
        table = run(data, Ks, outputs, srae_params, args.seed)
    total = time.perf_counter() - start

    meta = {
        "command": "python benchmarks/compare_explainers.py" + (" --quick" if args.quick else ""),
        "seed": args.seed,
        "K": list(Ks),
        "one_logit_outputs": outputs,
        "srae_params": {k: list(v) if isinstance(v, tuple) else v for k, v in srae_params.items()},
        "total_time_s": round(total, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"(threads {torch.get_num_threads()}), sklearn {sklearn.__version__}",
    }
    cols = ["explainer", "K", *SHOWN, "note"]
    sections = []
    for (name, setting), part in table.groupby(["data", "setting"], sort=False):
        title = (
            f"{name}, {'all 10 logits' if setting == 'all' else f'one logit at a time {outputs}'}"
        )
        shown = part[cols].rename(columns=SHORT)
        print(f"\n== {title}\n{shown.to_string(index=False, float_format='{:.3f}'.format)}")
        sections.append(f"### {title}\n\n{markdown(shown, list(shown.columns))}\n")
    print(f"\ntotal {total:.1f} s")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "compare_explainers_quick" if args.quick else "compare_explainers"
    header = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    (out / f"{stem}.md").write_text(f"# Explainer comparison\n\n{header}\n\n" + "\n".join(sections))
    records = json.loads(table.to_json(orient="records"))
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": records}, indent=1))
    print(f"wrote {out / stem}.md and .json")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
