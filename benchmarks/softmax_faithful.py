"""Decision faithfulness: SRAE with ``faithfulness="kl"`` beside SRAE "mse", PCA, PLS and the
rank-5 linear bound, and ``n_components="auto"`` on planted and real networks.

Every method gets K = 5 x-features and is scored on held-out rows: top-1 agreement with the
network's class, the mean softmax KL divergence (nats, temperature 1), R² (uniform over
outputs), significant x-features per input and fit time. PCA and PLS get a least-squares head
on their embedding; the bound is reduced-rank regression (see ``core_quality.py``, whose cases
and methods this script reuses). SRAE runs at its defaults with ``n_components=5``,
``random_state`` and ``device="cpu"``; "kl" only adds ``faithfulness="kl"``.

The second table: ``n_components="auto"`` (the smallest K whose training R² reaches 0.98 of
what the full-rank linear predictor reaches), the chosen K and the first values of
``faithfulness_curve_`` next to PCA's cumulative explained-variance ratio.

    python benchmarks/softmax_faithful.py             # 3 networks/layers x seeds 0, 1, 2
    python benchmarks/softmax_faithful.py --quick     # digits relu_fc1, seed 0
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import PCA
from sklearn.metrics import r2_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import core_quality as cq  # noqa: E402

from sklearn_xnn import SRAEExplainer  # noqa: E402
from sklearn_xnn.metrics import n_significant, softmax_kl, top1_agreement  # noqa: E402

K = 5
CASES = ["digits_relu_fc1", "digits_pool", "patch_relu_fc1", "digits_fc1_signed"]
AUTO_CASES = ["planted", "planted_small", "planted_16out", "digits_relu_fc1", "patch_relu_fc1"]


def _timed(fn):
    """``(fn(), seconds)``, warnings silenced."""
    t0 = time.perf_counter()
    out = cq._quiet(fn)[0]
    return out, time.perf_counter() - t0


def fit_srae(d, seed, **kw):
    srae = SRAEExplainer(n_components=K, random_state=seed, device="cpu", **kw)
    srae, s = _timed(lambda: srae.fit(d["Ztr"], d["ytr"]))
    extras = dict(bound=srae.faithfulness_bound_, achieved=srae.faithfulness_)
    return dict(pred=srae.predict(d["Zte"]), S=srae.contributions(d["Zte"]), fit_s=s) | extras


def fit_headed(transformer, d):
    """``transformer`` with a least-squares head on its embedding (core_quality's)."""
    fitted, s = _timed(lambda: cq._headed(transformer, d))
    return cq._headed_result(fitted, s, {}, d)


def fit_bound(d):
    """The rank-K reduced-rank regression bound (core_quality's)."""
    predict, s = _timed(lambda: cq.rank_k_bound(d["Ztr"], d["ytr"]))
    return dict(pred=predict(d["Zte"]), fit_s=s)


def row(fitted, yte):
    pred = fitted["pred"]
    out = dict(
        top1=top1_agreement(yte, pred),
        kl=softmax_kl(yte, pred),
        r2=float(r2_score(yte, pred)),
        fit_s=fitted["fit_s"],
    )
    if "S" in fitted:
        out["significant"] = n_significant(fitted["S"])
    return out | {k: fitted[k] for k in ("bound", "achieved") if k in fitted}


def evaluate(d, seed):
    fitted = {
        "SRAE kl": fit_srae(d, seed, faithfulness="kl"),
        "SRAE mse": fit_srae(d, seed),
        "PCA": fit_headed(PCA(K, random_state=seed), d),
        "PLS": fit_headed(PLSRegression(K), d),
        "rank-5 bound": fit_bound(d),
    }
    return {m: row(f, d["yte"]) for m, f in fitted.items()}


def auto_k(d, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = SRAEExplainer("auto", random_state=seed, device="cpu", max_iter=1)
        est.fit(d["Ztr"], d["ytr"])
    pca = PCA(random_state=seed).fit(d["Ztr"])
    curve = est.faithfulness_curve_
    return dict(
        k=est.n_components_,
        curve=[round(float(v), 4) for v in curve[:8]],
        full=float(curve[-1]),
        pca_variance=[round(float(v), 4) for v in np.cumsum(pca.explained_variance_ratio_)[:8]],
    )


def _cell(values, spec):
    return " / ".join("-" if v is None else f"{v:{spec}}" for v in values)


COLUMNS = [
    ("top1", "top-1", ".3f"),
    ("kl", "KL", ".4f"),
    ("r2", "R² unif", ".3f"),
    ("significant", "significant", ".2f"),
    ("fit_s", "fit s", ".2f"),
]


def markdown(records, autos, seeds):
    lines = [
        f"K = {K}, held-out rows, seeds {' / '.join(map(str, seeds))} (one value per seed).",
        "",
        "| case | method | " + " | ".join(c[1] for c in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for case, per_seed in records.items():
        for method in per_seed[0]:
            cells = [
                _cell([r[method].get(key) for r in per_seed], spec) for key, _, spec in COLUMNS
            ]
            lines.append(f"| {case} | {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        '`n_components="auto"` (0.98 of the full-rank R²):',
        "",
        "| case | seed | chosen K | R² curve (K = 1, 2, ...) | full rank | "
        "PCA explained variance (K = 1, 2, ...) |",
        "|---" * 6 + "|",
    ]
    for case, per_seed in autos.items():
        for seed, a in per_seed.items():
            lines.append(
                f"| {case} | {seed} | {a['k']} | {a['curve']} | {a['full']:.4f} | "
                f"{a['pca_variance']} |"
            )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/softmax_faithful")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    seeds, cases = ([0], CASES[:1]) if args.quick else ([0, 1, 2], CASES)
    auto_cases = AUTO_CASES[:1] if args.quick else AUTO_CASES
    t0, records, autos = time.perf_counter(), {}, {}
    for case in cases:
        records[case] = []
        for seed in seeds:
            records[case].append(evaluate(cq.CASES[case](seed), seed))
            print(f"{case} seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    for case in auto_cases:
        autos[case] = {seed: auto_k(cq.CASES[case](seed), seed) for seed in seeds}
    table = markdown(records, autos, seeds)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(
            dict(results=records, auto=autos, total_s=time.perf_counter() - t0),
            f,
            indent=1,
            default=float,
        )
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
