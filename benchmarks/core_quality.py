"""Held-out quality and stability of SRAEExplainer at its defaults beside PCA, NMF, PLS and
the rank-5 bounds.

Every method gets K = 5 x-features. SRAE runs at the defaults read at run time (only
``n_components``, ``random_state`` and ``device="cpu"`` set); PCA, NMF (where Z >= 0;
``init="nndsvda"``) and PLS get a least-squares head on their embedding. Two rank-5 bounds,
reduced-rank regression on the training rows (GCV ridge, fitted values projected on their
top 5 right singular vectors): ``bound unif`` on per-output standardised logits, for
``r2_score(multioutput="uniform_average")``; ``bound vw`` on the raw centred logits, for
``"variance_weighted"``. When ``SRAEExplainer`` has a ``multioutput`` parameter a second SRAE
is fitted with ``multioutput="variance_weighted"`` ("SRAE vw-fit") for the vw columns;
without it the default fit stands in (the table says which).

Cases (``DEFAULT_CASES``, ``QUICK_CASES``; ``--cases all`` for every one): ``planted*``
(``make_concept_activations``, 2000 / 1000 rows, data seed = seed); ``digits*`` (three
layers of three digits CNNs), ``patch_relu_fc1``, ``mlp16_*`` (an MLP with 16 outputs
explained on the 3,600 rows it overfit): fixed networks, seed = explainer seed;
``classifier_200out`` / ``classifier_1000out``: ``make_concept_activations(4000, 256,
n_concepts=8)`` (Z >= 0, 3000 / 1000 rows) and logits ``codes @ W.T + b + noise``, each
output reading ~30% of the 8 factors (weights decaying 0.9 ** j), output scales log-normal
(sigma 1), per-output noise 0.1-1 x its clean spread: outputs of very unequal variance, so
the two bounds differ.

Per case and seed, on held-out rows: R² (uniform, variance-weighted), significant
x-features per input (``n_significant`` of the contributions ``x_k W_ck``; a row whose top
output gets no positive contribution counts 0 there), *top explained* (the share of rows
whose top output gets at least one positive contribution), dead x-features
(zero on every training row), fit time SRAE / NMF (or / (50 x PCA) without NMF): the
shortest of ``--repeat`` fits, SRAE, NMF, PCA and PLS interleaved in one process. Stability
(Hungarian-matched |corr| of held-out x-features, ``matched_correlation``; PCA and NMF
through ``seed_stability``): *seed* -- the first seed's fit against each other seed's on the
first seed's rows (where the data follows the seed, SRAE is refitted on those rows); *half*
-- fits (first seed) on the two halves of a fixed random split of the training rows; *half
span* -- the same two fits' ``subspace_similarity`` (mean canonical correlation: 1 when they
span the same subspace, whatever rotation each took within it).

Checks per case and seed: R² unif >= bound unif - 0.01; (vw fit) R² vw >= bound vw - 0.01;
significant < PCA's; 0 dead; time ratio <= 10; seed stability >= 0.95 (each other seed);
half stability >= 0.90 (first seed).

Torch and BLAS run on ``--threads`` (default 1: on the shared 2-core machine, 2 torch threads
beside another busy process made a fit ~10x slower).

    python benchmarks/core_quality.py            # 8 default cases, seeds 0, 1, 2, repeat 3
    python benchmarks/core_quality.py --quick    # seeds 0, 1; 3 cases; repeat 1
"""

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections import Counter

import numpy as np
import torch
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import NMF, PCA
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import sklearn_xnn
from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import load_digits_activations, make_concept_activations
from sklearn_xnn.datasets._patches import make_patch_images, train_patch_cnn
from sklearn_xnn.metrics import (
    matched_correlation,
    n_significant,
    seed_stability,
    subspace_similarity,
    top1_agreement,
    top_explained,
)
from sklearn_xnn.torch import extract_activations

K = 5
N_TEST = 1000
N_TRAIN_SMALL = 1000  # the "small-data" planted case
TOL_BOUND = 0.01
MAX_TIME_RATIO = 10.0
PCA_TIME_FACTOR = 50.0
MIN_SEED_STABILITY = 0.95
MIN_HALF_STABILITY = 0.90
VW = "variance_weighted"
#: Extra SRAE parameters (``--srae-params``); empty: the defaults.
SRAE_PARAMS = {}
SRAE_EXTRAS = ("faithfulness_bound_", "faithfulness_", "n_iter_")


# ----------------------------------------------------------------------------- cases
def _split_rows(Z, y, n_train):
    d = dict(Ztr=Z[:n_train], ytr=y[:n_train], Zte=Z[-N_TEST:], yte=y[-N_TEST:])
    return d | dict(seed_role="data + explainer")


def planted(seed, n_train=2000, **kw):
    Z, y, _ = make_concept_activations(n_train + N_TEST, 256, random_state=seed, **kw)
    return _split_rows(Z, y, n_train)


def planted_standardised(seed):
    d = planted(seed)
    scaler = StandardScaler().fit(d["Ztr"])
    return dict(d, Ztr=scaler.transform(d["Ztr"]), Zte=scaler.transform(d["Zte"]))


def classifier_like(n_outputs, n_train=3000, n_factors=8):
    """Many-output logits: a noisy linear function of a non-negative factor model."""

    def load(seed):
        Z, _, codes = make_concept_activations(
            n_train + N_TEST, 256, n_concepts=n_factors, random_state=seed
        )
        rng = np.random.default_rng([seed, n_outputs])
        W = rng.standard_normal((n_outputs, n_factors)) * 0.9 ** np.arange(n_factors)
        reads = rng.random(W.shape) < 0.3  # each output reads ~30% of the factors, >= 1
        reads[np.arange(n_outputs), rng.integers(n_factors, size=n_outputs)] = True
        W *= reads
        W *= rng.lognormal(0.0, 1.0, (n_outputs, 1))  # outputs of very different spread
        clean = codes @ W.T + rng.standard_normal(n_outputs)
        noise = rng.uniform(0.1, 1.0, n_outputs) * clean[:n_train].std(0)
        return _split_rows(Z, clean + noise * rng.standard_normal(clean.shape), n_train)

    return load


def _one_thread(fn, *args, **kw):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kw)
    finally:
        torch.set_num_threads(before)


@functools.cache
def _digits(network=0):
    """The digits CNN ``random_state=network``, trained on one thread (the same network
    whatever ``--threads``)."""
    return _one_thread(load_digits_activations, random_state=network)


@functools.cache
def _patches():
    data = make_patch_images(2000, random_state=0)
    im_tr, im_te, lab_tr, _ = train_test_split(
        data.images, data.labels, test_size=0.3, stratify=data.labels, random_state=0
    )
    return train_patch_cnn(im_tr, lab_tr, random_state=0), im_tr, im_te


def _layer(model, layer, im_tr, im_te):
    out = dict(seed_role="explainer")
    for part, ims in (("tr", im_tr), ("te", im_te)):
        Z, y = extract_activations(model, layer, ims, pooling="flatten", device="cpu")
        out["Z" + part], out["y" + part] = Z.astype(np.float64), y.astype(np.float64)
    return out


MLP_ROWS, MLP_TRAIN = 4600, 3600


def _train_mlp16():
    from sklearn.datasets import make_classification

    X, labels = make_classification(
        MLP_ROWS, 40, n_informative=24, n_redundant=8, n_classes=16,
        n_clusters_per_class=2, class_sep=1.5, random_state=0,
    )  # fmt: skip
    X = StandardScaler().fit(X[:MLP_TRAIN]).transform(X).astype(np.float32)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    fc1, fc2, out = torch.nn.Linear(40, 256), torch.nn.Linear(256, 128), torch.nn.Linear(128, 16)
    params = [*fc1.parameters(), *fc2.parameters(), *out.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)
    Xt, yt = torch.from_numpy(X[:MLP_TRAIN]), torch.from_numpy(labels[:MLP_TRAIN])
    for _ in range(60):
        for idx in torch.randperm(MLP_TRAIN, generator=gen).split(128):
            loss = torch.nn.functional.cross_entropy(
                out(torch.relu(fc2(torch.relu(fc1(Xt[idx]))))), yt[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        h1 = fc1(torch.from_numpy(X))
        h2 = fc2(torch.relu(h1))
        logits = out(torch.relu(h2))
    layers = {"fc1": h1, "relu_fc1": torch.relu(h1), "relu_fc2": torch.relu(h2)}
    return {k: v.double().numpy() for k, v in layers.items()}, logits.double().numpy()


@functools.cache
def _mlp16():
    """MLP 40 -> 256 -> 128 -> 16 (ReLU) trained on one thread: ``({layer: Z}, logits)``."""
    return _one_thread(_train_mlp16)


def mlp16(layer):
    def load(seed):
        layers, logits = _mlp16()
        Z, n = layers[layer], MLP_TRAIN
        return dict(Ztr=Z[:n], ytr=logits[:n], Zte=Z[n:], yte=logits[n:], seed_role="explainer")

    return load


def digits(layer, network=0):
    def load(seed):
        d = _digits(network)
        return _layer(d.model, layer, d.images_train, d.images_test)

    return load


def patches(seed):
    model, im_tr, im_te = _patches()
    return _layer(model, "relu_fc1", im_tr, im_te)


CASES = {  # name -> loader(seed); the fixed networks ignore the seed (explainer seed only)
    "planted": planted,
    "planted_small": functools.partial(planted, n_train=N_TRAIN_SMALL),
    "planted_16out": functools.partial(planted, n_outputs=16),
    "planted_standardised": planted_standardised,
    "digits_relu_fc1": digits("relu_fc1"),
    "digits_pool": digits("pool"),
    "digits_fc1_signed": digits("fc1"),
    "patch_relu_fc1": patches,
    **{
        f"digits{net}_{name}": digits(layer, net)
        for net in (1, 2)
        for name, layer in (("pool", "pool"), ("relu_fc1", "relu_fc1"), ("fc1_signed", "fc1"))
    },
    "mlp16_fc1_signed": mlp16("fc1"),
    "mlp16_relu_fc1": mlp16("relu_fc1"),
    "mlp16_relu_fc2": mlp16("relu_fc2"),
    "classifier_200out": classifier_like(200),
    "classifier_1000out": classifier_like(1000),
}
DEFAULT_CASES = [
    "planted", "planted_16out", "digits_relu_fc1", "digits_pool", "digits_fc1_signed",
    "mlp16_relu_fc1", "classifier_200out", "classifier_1000out",
]  # fmt: skip
QUICK_CASES = ["planted", "digits_relu_fc1", "classifier_200out"]


# ----------------------------------------------------------------------------- methods
def has_multioutput():
    return "multioutput" in SRAEExplainer().get_params()


def make_srae(seed, **kw):
    return SRAEExplainer(n_components=K, random_state=seed, device="cpu", **SRAE_PARAMS | kw)


def make_nmf(seed):
    return NMF(K, init="nndsvda", max_iter=500, random_state=seed)


def rank_k_bound(Z, y, k=K, standardise=True):
    """Reduced-rank regression fitted on (Z, y); returns its predict function.

    GCV ridge (grid relative to the mean eigenvalue of Zc^T Zc) on per-output standardised
    y (``standardise=False``: on the raw centred y), then the fitted values projected on
    their top-k right singular vectors.
    """
    mu = y.mean(0)
    sd = np.where(y.std(0) > 0, y.std(0), 1.0) if standardise else np.ones(y.shape[1])
    mean_eig = float(((Z - Z.mean(0)) ** 2).sum()) / Z.shape[1]
    ridge = RidgeCV(alphas=mean_eig * 10.0 ** np.arange(-8.0, 1.5, 0.5)).fit(Z, (y - mu) / sd)
    fitted = ridge.predict(Z)
    center = fitted.mean(0)
    _, _, vt = np.linalg.svd(fitted - center, full_matrices=False)
    proj = vt[:k].T @ vt[:k]
    return lambda Znew: ((ridge.predict(Znew) - center) @ proj + center) * sd + mu


def _headed(transformer, d):
    """Fit ``transformer`` and a least-squares head on its training embedding."""
    Xtr = transformer.fit_transform(d["Ztr"], d["ytr"])
    Xtr = Xtr[0] if isinstance(Xtr, tuple) else Xtr  # PLS returns (x_scores, y_scores)
    return transformer, Xtr, LinearRegression().fit(Xtr, d["ytr"])


def _quiet(fn):
    """``fn()`` with warnings recorded: (result, {category: count})."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, Counter(w.category.__name__ for w in caught)


def timed_side_by_side(fits, repeat):
    """Run every ``fits[name]()`` ``repeat`` times, interleaved (one round of all methods,
    then the next), so the methods share the machine's load; keeps the shortest time.
    Returns {name: (last result, seconds, warnings per fit)}."""
    out = {name: [None, np.inf, Counter()] for name in fits}
    for _ in range(repeat):
        for name, fit in fits.items():
            t0 = time.perf_counter()
            res, warns = _quiet(fit)
            seconds = time.perf_counter() - t0
            out[name] = [res, min(out[name][1], seconds), out[name][2] + warns]
    return {n: (r, s, {k: v // repeat for k, v in w.items()}) for n, (r, s, w) in out.items()}


def _srae_result(srae, seconds, warns, d):
    (Xtr, Xte, pred, S), more = _quiet(
        lambda: (srae.transform(d["Ztr"]), srae.transform(d["Zte"]), srae.predict(d["Zte"]),
                 srae.contributions(d["Zte"]))
    )  # fmt: skip
    extras = {a: _plain(getattr(srae, a, None)) for a in SRAE_EXTRAS}
    extras["loss_rises"] = loss_rises(srae.loss_curve_)
    warns = dict(Counter(warns) + more)
    return dict(pred=pred, Xtr=Xtr, Xte=Xte, S=S, fit_s=seconds, warnings=warns, extras=extras)


def loss_rises(curve, after=3, rtol=1e-4):
    """How many epochs after the first ``after`` end with ``loss_curve_`` above the
    previous epoch's value (by more than ``rtol`` of it)."""
    tail = np.asarray(curve, dtype=float)[after:]
    return int((np.diff(tail) > rtol * np.abs(tail[:-1])).sum()) if tail.size > 1 else 0


def _headed_result(fitted, seconds, warns, d):
    transformer, Xtr, head = fitted
    Xte = transformer.transform(d["Zte"])
    Xte = Xte[0] if isinstance(Xte, tuple) else Xte
    S = Xte[:, None, :] * head.coef_[None, :, :]
    return dict(pred=head.predict(Xte), Xtr=Xtr, Xte=Xte, S=S, fit_s=seconds, warnings=warns)


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _jsonable(v):
    return v.item() if isinstance(v, np.generic) else str(v)


def scores(fitted, yte):
    """Held-out metrics of one fitted method."""
    pred = fitted["pred"]
    row = dict(
        r2_uniform=float(r2_score(yte, pred, multioutput="uniform_average")),
        r2_vw=float(r2_score(yte, pred, multioutput=VW)),
        top1=float(top1_agreement(yte, pred)),
        fit_s=float(fitted["fit_s"]),
        warnings=fitted["warnings"],
        n_warnings=sum(fitted["warnings"].values()),
    )
    if "Xte" in fitted:
        row["active"] = float(np.mean((fitted["Xte"] > 0).sum(axis=1)))
        row["significant"] = float(n_significant(fitted["S"]))
        row["top_explained"] = top_explained(fitted["S"], yte)
        row["dead"] = int((np.abs(fitted["Xtr"]).max(axis=0) == 0).sum())
    return row | fitted.get("extras", {})


def evaluate(d, seed, repeat):
    """All methods on one case and seed: ({method: metrics}, SRAE's held-out x-features)."""
    fits = {"SRAE": lambda: make_srae(seed).fit(d["Ztr"], d["ytr"])}
    if d["Ztr"].min() >= 0 and d["Zte"].min() >= 0:
        fits["NMF"] = lambda: _headed(make_nmf(seed), d)
    fits["PCA"] = lambda: _headed(PCA(K, random_state=seed), d)
    fits["PLS"] = lambda: _headed(PLSRegression(K), d)
    timed = timed_side_by_side(fits, repeat)
    fitted = {"SRAE": _srae_result(*timed.pop("SRAE"), d)}
    fitted |= {m: _headed_result(*timed[m], d) for m in timed}
    if has_multioutput():
        t0 = time.perf_counter()
        vw, warns = _quiet(lambda: make_srae(seed, multioutput=VW).fit(d["Ztr"], d["ytr"]))
        fitted["SRAE vw-fit"] = _srae_result(vw, time.perf_counter() - t0, warns, d)
    for name, std in (("bound unif", True), ("bound vw", False)):
        t0 = time.perf_counter()
        predict, warns = _quiet(
            functools.partial(rank_k_bound, d["Ztr"], d["ytr"], standardise=std)
        )
        fitted[name] = dict(pred=predict(d["Zte"]), fit_s=time.perf_counter() - t0, warnings=warns)
    return {m: scores(f, d["yte"]) for m, f in fitted.items()}, fitted["SRAE"]["Xte"]


# ----------------------------------------------------------------------------- stability
def _heldout_x(estimator, d, rows=slice(None)):
    """Fit ``estimator`` on the training ``rows`` (warnings recorded, not shown); its held-out
    x-features."""
    fit = lambda: estimator.fit(d["Ztr"][rows], d["ytr"][rows]).transform(d["Zte"])  # noqa: E731
    return _quiet(fit)[0]


def stability(d, seeds, srae_x, seed_role):
    """Matched |corr| of held-out x-features on the first seed's data ``d``.

    ``seed``: {method: [first seed against each other seed]}; ``half``: {method: the two
    halves of the training rows (first seed)}. ``srae_x``: {seed: SRAE's held-out x-features
    from the main fits}, reused where the data does not follow the seed.
    """
    first, nonneg = seeds[0], d["Ztr"].min() >= 0 and d["Zte"].min() >= 0
    baselines = {"PCA": lambda s: PCA(K, random_state=s)}
    if nonneg:
        baselines["NMF"] = make_nmf
    out = {"seed": {}, "half": {}, "half_span": {}}
    if len(seeds) > 1:
        others = [
            srae_x[s] if seed_role == "explainer" else _heldout_x(make_srae(s), d)
            for s in seeds[1:]
        ]
        out["seed"]["SRAE"] = [matched_correlation(srae_x[first], X) for X in others]
        for name, make in baselines.items():
            run = functools.partial(
                seed_stability, make(first), d["Ztr"], seeds=seeds, Z_eval=d["Zte"]
            )
            out["seed"][name] = [float(v) for v in _quiet(run)[0].pairwise[0, 1:]]
    halves = np.array_split(np.random.default_rng(0).permutation(len(d["Ztr"])), 2)
    for name, make in {"SRAE": make_srae, **baselines}.items():
        X1, X2 = (_heldout_x(make(first), d, rows) for rows in halves)
        out["half"][name] = matched_correlation(X1, X2)
        out["half_span"][name] = subspace_similarity(X1, X2)
    return out


# ----------------------------------------------------------------------------- checks
def checks(res, stab, seed, seeds):
    """{check: {"ok", "value"}} of one case and seed; the time ratio's reference."""
    srae, pca = res["SRAE"], res["PCA"]
    vw = res.get("SRAE vw-fit", srae)
    if "NMF" in res:
        ratio, ref = srae["fit_s"] / res["NMF"]["fit_s"], "NMF"
    else:
        ratio, ref = srae["fit_s"] / (PCA_TIME_FACTOR * pca["fit_s"]), "50 x PCA"
    unif, vw_bound = res["bound unif"]["r2_uniform"], res["bound vw"]["r2_vw"]
    out = {  # name: (ok, value)
        "R² unif >= bound - 0.01": (srae["r2_uniform"] >= unif - TOL_BOUND, srae["r2_uniform"]),
        "R² vw >= vw bound - 0.01": (vw["r2_vw"] >= vw_bound - TOL_BOUND, vw["r2_vw"]),
        "significant < PCA": (srae["significant"] < pca["significant"], srae["significant"]),
        "0 dead": (srae["dead"] == 0, srae["dead"]),
        f"time ratio <= {MAX_TIME_RATIO:g}": (ratio <= MAX_TIME_RATIO, ratio),
    }
    i = seeds.index(seed)
    if i > 0 and "SRAE" in stab["seed"]:
        value = stab["seed"]["SRAE"][i - 1]
        out[f"seed stability >= {MIN_SEED_STABILITY}"] = (value >= MIN_SEED_STABILITY, value)
    if i == 0:
        value = stab["half"]["SRAE"]
        out[f"half stability >= {MIN_HALF_STABILITY}"] = (value >= MIN_HALF_STABILITY, value)
    return {k: dict(ok=bool(ok), value=_plain(v)) for k, (ok, v) in out.items()}, ref


# ----------------------------------------------------------------------------- report
def _fmt(v, spec=".3f"):
    if v is None:
        return "-"
    return f"{v:{spec}}" if isinstance(v, (float, np.floating)) else str(v)


def _joined(values, spec=".3f", oks=None):
    """Per-seed values joined "a / b / c"; a value whose check fails in bold."""
    oks = oks or [True] * len(values)
    return " / ".join(
        _fmt(v, spec) if ok else f"**{_fmt(v, spec)}**" for v, ok in zip(values, oks, strict=True)
    )


def _oks(rec, prefix):
    return [next((c["ok"] for k, c in r["checks"].items() if k.startswith(prefix)), True)
            for r in rec["seeds"]]  # fmt: skip


def summary_row(case, rec):
    """One row of the main table: every seed's value joined."""
    per = [r["methods"] for r in rec["seeds"]]
    col = lambda m, k: [p.get(m, {}).get(k) for p in per]  # noqa: E731
    vw_method = "SRAE vw-fit" if "SRAE vw-fit" in per[0] else "SRAE"
    stab = rec["stability"]
    cells = [
        _joined(col("SRAE", "r2_uniform"), oks=_oks(rec, "R² unif")),
        _joined(col("bound unif", "r2_uniform")),
        _joined(col("PCA", "r2_uniform")),
        _joined(col(vw_method, "r2_vw"), oks=_oks(rec, "R² vw")),
        _joined(col("bound vw", "r2_vw")),
        _joined(col("PCA", "r2_vw")),
        _joined(col("SRAE", "significant"), ".2f", _oks(rec, "significant")),
        _joined(col("PCA", "significant"), ".2f"),
        _joined(col("SRAE", "top_explained"), ".2f"),
        _joined(col("PCA", "top_explained"), ".2f"),
        _joined(col("SRAE", "dead"), "d", _oks(rec, "0 dead")),
    ]
    for m in ("SRAE", "PCA", "NMF"):
        ok = [v >= MIN_SEED_STABILITY for v in stab["seed"].get(m, [])]
        cells.append(_joined(stab["seed"].get(m, []), oks=ok) or "-")
    for m in ("SRAE", "PCA", "NMF"):
        v = stab["half"].get(m)
        cells.append(_joined([v], oks=[v is None or v >= MIN_HALF_STABILITY]))
    cells.append(_joined([stab.get("half_span", {}).get("SRAE")]))
    ref = "" if rec["time_ref"] == "NMF" else " (/50 PCA)"
    time_cells = [r["checks"][f"time ratio <= {MAX_TIME_RATIO:g}"]["value"] for r in rec["seeds"]]
    cells.append(_joined(time_cells, ".2f", _oks(rec, "time ratio")) + ref)
    return f"| {case} | " + " | ".join(cells) + " |"


MAIN_HEAD = [
    "R² unif SRAE", "R² unif bound", "R² unif PCA", "R² vw SRAE {vw}", "R² vw bound",
    "R² vw PCA", "significant SRAE", "significant PCA", "top explained SRAE",
    "top explained PCA", "dead", "seed stab SRAE",
    "seed stab PCA", "seed stab NMF", "half stab SRAE", "half stab PCA", "half stab NMF",
    "half span SRAE", "time / NMF (or /50 PCA)",
]  # fmt: skip
DETAIL_COLUMNS = [
    ("r2_uniform", "R² uniform", ".3f"), ("r2_vw", "R² vw", ".3f"), ("top1", "top-1", ".3f"),
    ("active", "active", ".2f"), ("significant", "significant", ".2f"),
    ("top_explained", "top explained", ".2f"), ("dead", "dead", "d"), ("fit_s", "fit s", ".2f"),
    ("n_warnings", "warnings", "d"), ("n_iter_", "epochs", "d"),
    ("loss_rises", "loss_curve_ rises after epoch 3", "d"),
]  # fmt: skip


def main_table(records, meta):
    vw = "vw-fit" if meta["multioutput_param"] else "(default fit)"
    head = [h.format(vw=vw) for h in MAIN_HEAD]
    lines = ["| case | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    return lines + [summary_row(case, rec) for case, rec in records.items()]


def detail_table(records):
    head = "| case | method | " + " | ".join(c[1] for c in DETAIL_COLUMNS) + " |"
    lines = [head, "|---" * (len(DETAIL_COLUMNS) + 2) + "|"]
    for case, rec in records.items():
        for method in rec["seeds"][0]["methods"]:
            rows = [r["methods"][method] for r in rec["seeds"]]
            cells = [_joined([r.get(key) for r in rows], spec) for key, _, spec in DETAIL_COLUMNS]
            lines.append(f"| {case} | {method} | " + " | ".join(cells) + " |")
    return lines


def failing(records):
    fails, total = [], 0
    for case, rec in records.items():
        for r in rec["seeds"]:
            for name, c in r["checks"].items():
                total += 1
                if not c["ok"]:
                    fails.append(f"* {case}, seed {r['seed']}: {name} ({_fmt(c['value'])})")
    return [f"**{len(fails)} of {total} checks fail**" + (":" if fails else "."), ""] + fails


def markdown(meta, records):
    seeds = " / ".join(map(str, meta["seeds"]))
    vw_note = (
        '"R² vw SRAE vw-fit": a second SRAE fitted with `multioutput="variance_weighted"`.'
        if meta["multioutput_param"]
        else 'SRAEExplainer has no `multioutput` parameter: "R² vw SRAE (default fit)" is '
        "the default fit's variance-weighted R²."
    )
    lines = [
        f"Machine: {meta['machine']}, torch {meta['torch']}, {meta['threads']} threads; library "
        f"`{meta['library_file']}` at commit {meta['commit']}"
        f"{' (uncommitted changes)' if meta['dirty'] else ''}; repeat {meta['repeat']}; "
        f"total {meta['total_s']:.0f} s; load average {meta['load_before']} before, "
        f"{meta['load_after']} after. SRAE defaults: `{meta['srae_defaults']}`.",
        "",
        f"Held-out rows, K = {K}; seeds {seeds} (one value per seed). {vw_note} Seed stab: "
        f"seed {meta['seeds'][0]} against each other seed (matched |corr| of held-out "
        f"x-features); half stab: fits on the two halves of the training rows (seed "
        f"{meta['seeds'][0]}); half span: their subspace similarity (canonical correlations, "
        "blind to rotations). Bold: a failing check.",
        "",
    ]
    lines += main_table(records, meta) + [""] + failing(records) + [""]
    lines += ["| case | n train | n test | D | outputs | Z >= 0 | seed sets |", "|---" * 7 + "|"]
    lines += [f"| {c} | " + " | ".join(map(str, meta["cases"][c])) + " |" for c in records]
    return "\n".join(lines + ["", "All methods:", ""] + detail_table(records))


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="path without extension (.json and .md)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cases", default=None, help=f"'all' or from {', '.join(CASES)}")
    ap.add_argument("--quick", action="store_true", help="first 2 seeds, 3 cases, repeat 1")
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    ap.add_argument("--repeat", type=int, default=None, help="timed fits (shortest kept)")
    ap.add_argument("--srae-params", default="{}", help="JSON, e.g. '{\"alpha_pullaway\": 0.3}'")
    args = ap.parse_args(argv)
    SRAE_PARAMS.update(json.loads(args.srae_params))
    args.seeds = [int(s) for s in args.seeds.split(",")][: 2 if args.quick else None]
    default = QUICK_CASES if args.quick else DEFAULT_CASES
    cases = args.cases or ",".join(default)
    args.cases = list(CASES) if cases == "all" else cases.split(",")
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.out = args.out or "benchmarks/results/core_quality" + ("_quick" if args.quick else "")
    unknown = set(args.cases) - set(CASES)
    if unknown:
        ap.error(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")
    return args


def warm_up():
    """One untimed small fit of each kind, so no timed fit pays one-time costs."""
    d = planted(0, n_train=300)
    _quiet(lambda: make_srae(0).fit(d["Ztr"], d["ytr"]))
    _quiet(lambda: make_nmf(0).set_params(max_iter=50).fit(d["Ztr"]))


def run_case(case, seeds, repeat):
    loader, seed_sets, srae_x = CASES[case], [], {}
    for seed in seeds:
        d = loader(seed)
        t0 = time.perf_counter()
        res, srae_x[seed] = evaluate(d, seed, repeat)
        seed_sets.append(dict(seed=seed, methods=res))
        print(f"{case} seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    d0 = loader(seeds[0])
    stab = stability(d0, seeds, srae_x, d0["seed_role"])
    print(f"{case} stability: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    for r in seed_sets:
        r["checks"], ref = checks(r["methods"], stab, r["seed"], seeds)
    shape = [len(d["Ztr"]), len(d["Zte"]), d["Ztr"].shape[1], d["ytr"].shape[1]]
    shape += [bool(d["Ztr"].min() >= 0), d["seed_role"]]
    return dict(seeds=seed_sets, stability=stab, time_ref=ref), shape


def library_commit():
    """(short commit, uncommitted changes under sklearn_xnn/) of the imported library's tree."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(sklearn_xnn.__file__)))
    git = lambda *a: subprocess.run(["git", "-C", root, *a], capture_output=True, text=True)  # noqa: E731
    commit = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    return commit, bool(git("status", "--porcelain", "--", "sklearn_xnn").stdout.strip())


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    warm_up()
    defaults, t0, load = SRAEExplainer().get_params(), time.perf_counter(), os.getloadavg()
    records, shapes = {}, {}
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        for case in args.cases:
            records[case], shapes[case] = run_case(case, args.seeds, args.repeat)
    commit, dirty = library_commit()
    meta = dict(
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(), cpus=os.cpu_count(),
        torch=torch.__version__, threads=torch.get_num_threads(),
        library_file=sklearn_xnn.__file__, commit=commit, dirty=dirty,
        seeds=args.seeds, repeat=args.repeat, total_s=time.perf_counter() - t0,
        load_before=[round(v, 2) for v in load],
        load_after=[round(v, 2) for v in os.getloadavg()],
        srae_defaults=defaults, srae_params=SRAE_PARAMS, multioutput_param=has_multioutput(),
        cases=shapes, other_warnings=dict(Counter(w.category.__name__ for w in outside)),
    )  # fmt: skip
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(dict(meta=meta, results=records), f, indent=1, default=_jsonable)
    table = markdown(meta, records)
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
