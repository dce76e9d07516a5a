"""Held-out quality of SRAEExplainer at default settings beside PCA, NMF, PLS and rank-K optimum.

Planted data (``make_concept_activations(3000, 256)``, 2000 train / 1000 test rows, K = 5 =
the number of planted concepts) for three data seeds, and the digits CNN's ``fc1`` layer
(K = 5, all 10 logits) for three explainer seeds. Writes JSON and a Markdown table.

    python benchmarks/core_quality.py --out benchmarks/results/core_quality
"""

import argparse
import json
import os
import time
import warnings

import numpy as np
import torch
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import NMF, PCA
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import load_digits_activations, make_concept_activations
from sklearn_xnn.metrics import concept_recovery

K = 5


def reduced_rank_r2(Ztr, ytr, Zte, yte, k):
    """Best rank-k linear map from Z to y (reduced-rank regression), held-out R²."""
    lin = LinearRegression().fit(Ztr, ytr)
    fitted = lin.predict(Ztr) - ytr.mean(0)
    _, _, vt = np.linalg.svd(fitted, full_matrices=False)
    proj = vt[:k].T @ vt[:k]
    pred = (lin.predict(Zte) - ytr.mean(0)) @ proj + ytr.mean(0)
    return r2_score(yte, pred)


def headed(transformer, Ztr, ytr, Zte):
    t0 = time.perf_counter()
    Xtr = transformer.fit_transform(Ztr)
    fit_s = time.perf_counter() - t0
    head = LinearRegression().fit(Xtr, ytr)
    Xte = transformer.transform(Zte)
    return head.predict(Xte), Xte, fit_s


def evaluate(name, Ztr, ytr, Zte, yte, codes_te, seed):
    rows = []
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        srae = SRAEExplainer(K, random_state=seed).fit(Ztr, ytr)
    fit_s = time.perf_counter() - t0
    rows.append(
        dict(
            method="SRAE",
            r2=r2_score(yte, srae.predict(Zte)),
            X=srae.transform(Zte),
            fit_s=fit_s,
            dead=srae.n_dead_components_,
            warnings=sorted({str(w.category.__name__) for w in caught}),
        )
    )
    for label, tr in (
        ("PCA", PCA(K, random_state=seed)),
        ("NMF", NMF(K, init="nndsvda", max_iter=500, random_state=seed)),
    ):
        pred, Xte, s = headed(tr, Ztr, ytr, Zte)
        rows.append(dict(method=label, r2=r2_score(yte, pred), X=Xte, fit_s=s, dead=0))
    t0 = time.perf_counter()
    pls = PLSRegression(K).fit(Ztr, ytr)
    rows.append(
        dict(
            method="PLS",
            r2=r2_score(yte, pls.predict(Zte)),
            X=pls.transform(Zte),
            fit_s=time.perf_counter() - t0,
            dead=0,
        )
    )
    rows.append(
        dict(
            method="rank-K linear optimum",
            r2=reduced_rank_r2(Ztr, ytr, Zte, yte, K),
            X=None,
            fit_s=np.nan,
            dead=0,
        )
    )
    for r in rows:
        X = r.pop("X")
        r["recovery"] = (
            float(concept_recovery(X, codes_te))
            if codes_te is not None and X is not None
            else float("nan")
        )
        r.update(data=name, seed=seed, r2=float(r["r2"]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="benchmarks/results/core_quality")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        Z, y, codes = make_concept_activations(3000, 256, random_state=seed)
        rows += evaluate("planted", Z[:2000], y[:2000], Z[2000:], y[2000:], codes[2000:], seed)
        print(f"planted seed {seed} done", flush=True)
    d = load_digits_activations(random_state=0)
    for seed in seeds:
        rows += evaluate("digits", d.Z_train, d.y_train, d.Z_test, d.y_test, None, seed)
        print(f"digits seed {seed} done", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    lines = [
        "| data | seed | method | held-out R² | concept recovery | dead | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['seed']} | {r['method']} | {r['r2']:.3f} | "
            f"{r['recovery']:.3f} | {r['dead']} | {r['fit_s']:.2f} |"
        )
    table = "\n".join(lines)
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
