"""SRAEExplainer at its defaults at classifier scale: 2048 activations, 1,000 logits.

Synthetic rows like a ResNet-50 pooled layer (``Activations``) fitted in one process by
``SRAEExplainer(K, random_state=0, device="cpu")``, PCA(K) and MiniBatchNMF(K) with
least-squares heads, and the rank-K bound (reduced-rank regression from Z^T Z and Z^T Y
summed by chunks): held-out R², significant x-features, fit s, peak memory added, SRAE's
FLOP rate against the machine's fp32 ``torch.mm`` rate and the split of its fit time; the
Markdown output (``NOTES``) says how each is measured. ``--memmap`` also fits from a float32
``.npy`` of ``--memmap-rows`` rows opened with ``mmap_mode="r"``. On a shared 2-core
machine pass ``--threads 1``: 2 torch threads beside busy processes made steps ~10x slower.

    python benchmarks/classifier_scale.py --quick --threads 1  # 5,000 / 2,000 rows, K=10
    python benchmarks/classifier_scale.py --n-train 20000 --k 10 --out PATH_STEM
    python benchmarks/classifier_scale.py              # 50,000 rows, K = 10, 20
    python benchmarks/classifier_scale.py --memmap     # + a fit from a 200,000-row memmap
    python benchmarks/classifier_scale.py --auto       # + a fit with n_components="auto"
"""

import argparse
import contextlib
import ctypes
import functools
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import torch
from sklearn.decomposition import PCA, MiniBatchNMF
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from threadpoolctl import threadpool_limits

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._nn import training
from sklearn_xnn.metrics import n_significant, top_explained

D, C, FACTORS, CHUNK, SIG_ROWS, MB, SEED = 2048, 1000, 64, 5000, 2000, 2**20, 0
ROOT = str(Path(__file__).resolve().parents[1])
TOL_BOUND, MAX_PCA_RATIO, MIN_MATMUL_FRACTION, MAX_MEMORY_RATIO = 0.01, 10.0, 0.5, 2.0


class Activations:
    """``Z = relu(codes @ A + 0.05 noise)``: 64 sparse non-negative factors and loadings;
    ``Y = Z @ pinv(A) @ B.T + b + noise``: factor j weighs ``0.9 ** j``, log-normal class
    scales, class noise 0.2-0.8 x its clean spread (the rank-K bound is well below 1)."""

    def __init__(self, seed):
        self.seed, rng = seed, np.random.default_rng([seed, 0])
        sparse = rng.random((FACTORS, D)) < 0.15
        self.A = (sparse * rng.exponential(0.2, (FACTORS, D))).astype(np.float32)
        B = rng.standard_normal((C, FACTORS)) * 0.9 ** np.arange(FACTORS)  # factor weights
        B = B * rng.lognormal(0.0, 0.5, (C, 1))  # class scales
        self.V = (np.linalg.pinv(self.A.astype(np.float64)) @ B.T).astype(np.float32)
        self.b = rng.standard_normal(C).astype(np.float32)
        clean = self._clean(np.random.default_rng([seed, 99]), 2000)[1]
        self.noise = (rng.uniform(0.2, 0.8, C) * clean.std(0)).astype(np.float32)

    def _clean(self, rng, n):
        codes = (rng.random((n, FACTORS)) < 0.25) * rng.exponential(1.0, (n, FACTORS))
        Z = codes.astype(np.float32) @ self.A
        Z += 0.05 * rng.standard_normal((n, D), dtype=np.float32)
        Z = np.maximum(Z, 0, out=Z)
        return Z, Z @ self.V + self.b

    def rows(self, n, stream, Z=None):
        """``n`` rows of ``stream`` (1: fit, 2: held out) into ``Z`` (or a new array), Y."""
        Z = np.empty((n, D), np.float32) if Z is None else Z
        Y = np.empty((n, C), np.float32)
        for i, a in enumerate(range(0, n, CHUNK)):
            rng = np.random.default_rng([self.seed, stream, i])
            z, y = self._clean(rng, min(CHUNK, n - a))
            Z[a : a + len(z)] = z
            Y[a : a + len(z)] = y + self.noise * rng.standard_normal(y.shape, dtype=np.float32)
        return Z, Y


def moments(Z, Y):
    """Float64 sums over the rows, chunk by chunk: n, z, y, y², Z^T Z, Z^T Y."""
    s = dict(n=0, z=0.0, y=0.0, yy=0.0, zz=0.0, zy=0.0)
    for a in range(0, len(Z), CHUNK):
        z, y = np.asarray(Z[a : a + CHUNK], np.float64), np.asarray(Y[a : a + CHUNK], np.float64)
        s["n"], s["z"], s["y"] = s["n"] + len(z), s["z"] + z.sum(0), s["y"] + y.sum(0)
        s["yy"], s["zz"], s["zy"] = s["yy"] + (y * y).sum(0), s["zz"] + z.T @ z, s["zy"] + z.T @ y
    return s


def rank_k_bounds(s, ks):
    """Reduced-rank regression from ``moments``: ({k: predict}, ridge penalty). GCV in
    closed form in the eigenbasis of the centred Z^T Z; F^T F's top k eigenvectors."""
    n, zm, ym = s["n"], s["z"] / s["n"], s["y"] / s["n"]
    sd = np.sqrt(np.maximum(s["yy"] / n - ym**2, 1e-300))
    czz = s["zz"] - n * np.outer(zm, zm)
    evals, U = np.linalg.eigh(czz)
    evals = np.maximum(evals, 0.0)
    G = U.T @ ((s["zy"] - n * np.outer(zm, ym)) / sd)
    g2 = (G**2).sum(1)

    def gcv(alpha):  # residual sum of squares of standardised Y / (n - trace of the hat)^2
        rss = n * C - np.sum((2 / (evals + alpha) - evals / (evals + alpha) ** 2) * g2)
        return rss / (n - np.sum(evals / (evals + alpha))) ** 2

    alpha = min(evals.mean() * 10.0 ** np.arange(-8.0, 1.5, 0.5), key=gcv)
    beta = U @ (G / (evals + alpha)[:, None])
    w, vecs = np.linalg.eigh(beta.T @ czz @ beta)
    top = vecs[:, np.argsort(w)[::-1]]
    maps = {k: (beta @ top[:, :k]) @ (top[:, :k].T * sd) for k in ks}
    return {k: (lambda Zn, M=M: (Zn - zm) @ M + ym) for k, M in maps.items()}, float(alpha)


@contextlib.contextmanager
def measured(row):
    """Sets ``row``'s fit_s, warnings, peak_added_mb (peak RSS in the block, sampled every 5 ms
    by a thread with psutil, minus the RSS at entry) and peak_added_anon_mb (no file pages)."""
    getattr(ctypes.CDLL(None), "malloc_trim", lambda _: 0)(0)  # freed heap back to the OS
    proc, stop = psutil.Process(), threading.Event()

    def read():
        m = proc.memory_info()
        return np.array([m.rss, m.rss - getattr(m, "shared", 0)])

    def sample():
        nonlocal peak
        while not stop.wait(0.005):
            peak = np.maximum(peak, read())

    base = peak = read()
    thread, t0 = threading.Thread(target=sample, daemon=True), time.perf_counter()
    thread.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    row["fit_s"] = time.perf_counter() - t0
    row["warnings"] = dict(Counter(f"{w.category.__name__}: {w.message}"[:120] for w in caught))
    stop.set()
    thread.join()
    row["peak_added_mb"], row["peak_added_anon_mb"] = (np.maximum(peak, read()) - base) / MB


class PhaseClock:
    """Wall-clock wrappers on ``training.fine_tune`` and ``training._epoch`` during a fit."""

    def __enter__(self):
        self.spans = {"fine_tune": [], "_epoch": []}
        self.saved = {name: getattr(training, name) for name in self.spans}
        for name, fn in self.saved.items():
            setattr(training, name, self.timed(fn, self.spans[name]))
        self.start = time.perf_counter()
        return self

    @staticmethod
    def timed(fn, spans):
        def wrapper(*args, **kwargs):
            t0, threads = time.perf_counter(), torch.get_num_threads()
            try:
                return fn(*args, **kwargs)
            finally:
                spans.append((t0, time.perf_counter(), threads))

        return wrapper

    def __exit__(self, *exc):
        self.end = time.perf_counter()
        for name, fn in self.saved.items():
            setattr(training, name, fn)

    def split(self):
        tune, steps = (self.spans[n] for n in ("fine_tune", "_epoch"))
        steps_s = sum(b - a for a, b, _ in steps)
        return dict(setup_s=tune[0][0] - self.start, steps_s=steps_s, epochs_run=len(steps),
                    checks_s=sum(b - a for a, b, _ in tune) - steps_s, fit_threads=tune[0][2],
                    after_s=self.end - tune[-1][1])  # fmt: skip


def matmul_rate(reps=10):
    """Best fp32 FLOP/s of ``torch.mm`` of two 2048 x 2048 matrices."""
    a, b, best = torch.randn(D, D), torch.randn(D, D), np.inf
    torch.mm(a, b)
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * D**3 / best


def fit_srae(k, Ztr, Ytr, **params):
    est, row = SRAEExplainer(k, random_state=0, device="cpu", **params), {}
    with measured(row), PhaseClock() as clock:
        est.fit(Ztr, Ytr)
    P = sum(W.size for W in [*est.encoder_coefs_, *est.decoder_coefs_, est.coef_])
    flops, split = 6.0 * len(Ztr) * P * est.n_iter_, clock.split()
    n_out = Ytr.shape[1]  # + the float64 moments of Z and Y, and the eigendecomposition of Z^T Z
    flops_all = flops + 2.0 * len(Ztr) * D * (D + n_out) + 4.0 * D**3
    row |= dict(P=int(P), n_iter=int(est.n_iter_), flops=flops, gflops=flops / row["fit_s"] / 1e9,
                flops_all=flops_all, gflops_all=flops_all / row["fit_s"] / 1e9,
                steps_gflops=flops / split["steps_s"] / 1e9, train_r2=est.faithfulness_,
                train_bound=est.faithfulness_bound_,
                hidden=[W.shape[1] for W in est.encoder_coefs_[:-1]])  # fmt: skip
    return est, row | split


def fit_headed(transformer, Ztr, Ytr):
    """``transformer`` and a least-squares head: (predict, contributions, row)."""
    row = {}
    with measured(row):
        head = LinearRegression().fit(transformer.fit_transform(Ztr), Ytr)
    predict = lambda Z: head.predict(transformer.transform(Z))  # noqa: E731
    return predict, lambda Z: transformer.transform(Z)[:, None, :] * head.coef_[None], row


def heldout(predict, contrib, Zte, Yte):
    row = dict(r2=float(r2_score(Yte, predict(Zte))))
    if contrib is not None:
        S = contrib(Zte[:SIG_ROWS])
        row["significant"] = float(n_significant(S))
        row["top_explained"] = top_explained(S, Yte[:SIG_ROWS])
    return row


def compare(k, Ztr, Ytr, Zte, Yte, bounds, bound_s):
    """Every method at one K: {method: row}."""
    srae, row = fit_srae(k, Ztr, Ytr)
    out = {"SRAE": row | heldout(srae.predict, srae.contributions, Zte, Yte)}
    baselines = {"PCA + LS": PCA(k, random_state=0),
                 "MiniBatchNMF + LS": MiniBatchNMF(k, random_state=0)}  # fmt: skip
    for name, transformer in baselines.items():
        predict, contrib, row = fit_headed(transformer, Ztr, Ytr)
        out[name] = row | heldout(predict, contrib, Zte, Yte)
    out["rank-K bound"] = dict(fit_s=bound_s) | heldout(bounds[k], None, Zte, Yte)
    for key, ref in (("ratio_pca", "PCA + LS"), ("ratio_nmf", "MiniBatchNMF + LS")):
        out["SRAE"][key] = out["SRAE"]["fit_s"] / out[ref]["fit_s"]
    print(f"K={k}:", ", ".join(f"{m} {r['fit_s']:.1f} s R² {r['r2']:.3f}" for m, r in out.items()))
    return out


def auto_fit(Ztr, Ytr, Zte, Yte):
    """SRAE with ``n_components="auto"``: the K it picks from the rank curve, its fit."""
    srae, row = fit_srae("auto", Ztr, Ytr)
    curve = srae.faithfulness_curve_
    return (
        row
        | heldout(srae.predict, None, Zte, Yte)
        | dict(k=int(srae.n_components_), full_rank_r2=float(curve[-1]), curve_len=len(curve))
    )


def memmap_fit(args, data, Zte, Yte):
    """Write Z to a float32 .npy by chunks; fit SRAE from it opened with mmap_mode="r"."""
    with tempfile.TemporaryDirectory(prefix="classifier_scale_", dir=args.tmp) as folder:
        path, t0 = Path(folder) / "Z.npy", time.perf_counter()
        Zmm = np.lib.format.open_memmap(path, "w+", np.float32, (args.memmap_rows, D))
        Y = data.rows(args.memmap_rows, 1, Z=Zmm)[1]
        del Zmm  # unmapped: the pages stay in the page cache, the file is complete
        write_s, default = time.perf_counter() - t0, SRAEExplainer().stream_threshold
        Z = np.load(path, mmap_mode="r")
        params = {} if Z.shape[0] * D * 4 > default else {"stream_threshold": 0}
        srae, row = fit_srae(args.k[0], Z, Y, **params)
    return row | heldout(srae.predict, None, Zte, Yte) | dict(  # floor: n (h + C) floats
        rows=args.memmap_rows, k=args.k[0], z_file_mb=args.memmap_rows * D * 4 / MB,
        y_mb=Y.nbytes / MB, write_s=write_s,
        library_floor_mb=args.memmap_rows * (row["hidden"][-1] + C) * 4 / MB,
        stream_threshold=params.get("stream_threshold", default))  # fmt: skip


def checks(res, z_mb):
    """{K: {PASS/FAIL line: ok}}."""
    out = {}
    for k, r in res.items():
        s, pca, b = r["SRAE"], r["PCA + LS"]["significant"], r["rank-K bound"]["r2"]
        out[k] = {
            f"R² {s['r2']:.3f} >= bound {b:.3f} - {TOL_BOUND}": s["r2"] >= b - TOL_BOUND,
            f"significant {s['significant']:.2f} < PCA's {pca:.2f}": s["significant"] < pca,
            f"fit <= {MAX_PCA_RATIO:g} x PCA + LS (is {s['ratio_pca']:.1f} x)":
                s["ratio_pca"] <= MAX_PCA_RATIO,
            f"whole fit >= {MIN_MATMUL_FRACTION} of matmul rate (is {s['matmul_fraction']:.3f}; "
            f"{s['matmul_fraction_all']:.3f} counting all arithmetic)":
                s["matmul_fraction"] >= MIN_MATMUL_FRACTION,
            f"peak added {s['peak_added_mb']:.0f} MB <= {MAX_MEMORY_RATIO:g} x Z ({z_mb:.0f} MB)":
                s["peak_added_mb"] <= MAX_MEMORY_RATIO * z_mb,
        }  # fmt: skip
    return out


COLUMNS = [
    ("R² held-out", "r2", ".3f"),
    ("bound", "bound", ".3f"),
    ("significant", "significant", ".2f"),
    ("top explained", "top_explained", ".2f"),
    ("fit s", "fit_s", ".1f"),
    ("ratio vs PCA+LS", "ratio_pca", ".1f"),
    ("ratio vs MiniBatchNMF", "ratio_nmf", ".2f"),
    ("peak added MB (anon)", "memory", "s"),
    ("GFLOP/s", "gflops", ".2f"),
    ("of matmul rate", "matmul_fraction", ".3f"),
    ("all arithmetic GFLOP/s", "gflops_all", ".2f"),
    ("of matmul rate (all)", "matmul_fraction_all", ".3f"),
    ("setup / steps / checks / after s", "split", "s"),
]


def table(res):
    head = ["method", "K"] + [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for k, r in res.items():
        for name, row in r.items():
            row = dict(row, bound=r["rank-K bound"]["r2"])
            if "peak_added_mb" in row:
                row["memory"] = f"{row['peak_added_mb']:.0f} ({row['peak_added_anon_mb']:.0f})"
            if "setup_s" in row:
                parts = ("setup_s", "steps_s", "checks_s", "after_s")
                row["split"] = " / ".join(f"{row[p]:.1f}" for p in parts)
            cells = ["-" if row.get(c) is None else format(row[c], f) for _, c, f in COLUMNS]
            lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
    return lines


NOTES = (
    "Bound: GCV ridge on per-output standardised Y, fitted values on their top K right "
    "singular vectors. R² held-out: r2_score, uniform. Significant: n_significant of x_k W_ck "
    "on 2,000 held-out rows; top explained: top_explained on them (the share whose top "
    "logit gets a positive contribution). Fit s: wall time, heads included. Peak added MB: "
    "psutil RSS sampled every 5 ms by a thread minus RSS at fit start (after malloc_trim); "
    "anon: no file-backed pages. GFLOP/s: 6 x N_train x P x n_iter_ (P: sum of in x out over "
    "encoder_coefs_, decoder_coefs_, coef_) / SRAE wall time (the whole network's work per "
    "row, though a step rebuilds only 256 of the 2,048 units); of matmul rate: over the best "
    "fp32 torch.mm of 2048 x 2048 matrices here. All arithmetic: that plus the float64 "
    "moments (2 N D (D + C)) and the eigendecomposition of Z^T Z (~4 D^3), the work every "
    "fit of the bound does. Split: wall-clock wrappers on "
    "training.fine_tune and training._epoch: setup (to fine-tuning), steps (minibatches), "
    "checks (rest of fine-tuning: per-epoch head, significance, snapshots), after. Before "
    "any timing, a 500-row fit loads what torch loads once per process (its optimisers "
    "import torch._dynamo on first use, ~1.5 s), as the baselines' scikit-learn is loaded."
)


def markdown(m, res, check, mm, auto=None):
    lines = [
        f"Machine: {m['machine']}, {m['cpus']} CPUs, torch {m['torch']}, {m['threads']} "
        f"threads (SRAE fit: {m['fit_threads']}); commit {m['commit']}"
        f"{' (uncommitted changes)' if m['dirty'] else ''}; load {m['load_before']} -> "
        f"{m['load_after']}; total {m['total_s']:.0f} s. N train {m['n_train']}, held out "
        f"{m['n_test']}, D {D}, {C} logits, Z {m['z_mb']:.0f} MB. fp32 matmul "
        f"{m['matmul_gflops']:.1f} GFLOP/s (before {m['matmul_before']:.1f}, after "
        f"{m['matmul_after']:.1f}). Bound ridge {m['bound_alpha']:.3g}.",
        "", NOTES, "", *table(res), "",
    ]  # fmt: skip
    for k, r in res.items():
        s = r["SRAE"]
        lines.append(f"* SRAE K={k}: hidden {s['hidden']}, P = {s['P']:,}, n_iter_ "
                     f"{s['n_iter']} (epochs run {s['epochs_run']}): {s['flops'] / 1e9:.0f} "
                     f"GFLOP; steps alone {s['steps_gflops']:.2f} GFLOP/s; train bound "
                     f"{s['train_bound']:.3f}, train R² {s['train_r2']:.3f}; warnings "
                     f"{s['warnings'] or 'none'}")  # fmt: skip
    if auto:
        lines += ["", f'n_components="auto": K = {auto["k"]} (the rank curve holds '
                  f'{auto["curve_len"]} ranks; train R² of the full-rank predictor '
                  f'{auto["full_rank_r2"]:.3f}, of the rank-K bound {auto["train_bound"]:.3f}): '
                  f'fit {auto["fit_s"]:.1f} s, n_iter_ {auto["n_iter"]}, held-out R² '
                  f'{auto["r2"]:.3f}, peak added {auto["peak_added_mb"]:.0f} MB.']  # fmt: skip
    if mm:
        lines += ["", f"Memmap: {mm['rows']:,} rows (Z file {mm['z_file_mb']:.0f} MB; Y "
                  f"{mm['y_mb']:.0f} MB in memory), K={mm['k']}, stream_threshold "
                  f"{mm['stream_threshold']}: fit {mm['fit_s']:.1f} s, held-out R² "
                  f"{mm['r2']:.3f}, peak added {mm['peak_added_mb']:.0f} MB "
                  f"({mm['peak_added_anon_mb']:.0f} anon); n x (hidden[-1] + outputs) floats: "
                  f"{mm['library_floor_mb']:.0f} MB."]  # fmt: skip
    lines += ["", "Targets:", ""]
    for k, cs in check.items():
        lines += [f"* {'PASS' if ok else 'FAIL'} K={k}: {name}" for name, ok in cs.items()]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--k", default="10,20", help="comma list of K")
    ap.add_argument("--memmap", action="store_true", help="also fit from a memmap")
    ap.add_argument("--auto", action="store_true", help='also fit n_components="auto"')
    ap.add_argument("--memmap-rows", type=int, default=200_000)
    ap.add_argument("--tmp", default=None, help="folder for the memmap (default: system tmp)")
    ap.add_argument("--quick", action="store_true", help="5,000 / 2,000 rows, K=10, no memmap")
    ap.add_argument("--out", default=None, help="path without extension (.json and .md)")
    ap.add_argument("--threads", type=int, default=0, help="torch and BLAS threads (0: torch's)")
    args = ap.parse_args(argv)
    args.k, args.n_test = [int(k) for k in str(args.k).split(",")], 10_000
    if args.quick:
        args.n_train, args.n_test, args.k, args.memmap = 5000, 2000, [10], False
    args.out = args.out or "benchmarks/results/classifier_scale" + ("_quick" if args.quick else "")
    return args


def run(args):
    git = functools.partial(subprocess.run, capture_output=True, text=True, cwd=ROOT)
    commit = git(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()  # the code imported
    dirty = bool(git(["git", "status", "--short", "sklearn_xnn"]).stdout)
    data, t0, load = Activations(SEED), time.perf_counter(), os.getloadavg()
    (Ztr, Ytr), (Zte, Yte) = data.rows(args.n_train, 1), data.rows(args.n_test, 2)
    with warnings.catch_warnings():  # one-time imports (NOTES), not charged to a fit
        warnings.simplefilter("ignore")
        SRAEExplainer(2, max_iter=1, device="cpu").fit(Ztr[:500], Ytr[:500])
    before, t1 = matmul_rate(), time.perf_counter()
    bounds, alpha = rank_k_bounds(moments(Ztr, Ytr), args.k)
    bound_s = time.perf_counter() - t1
    res = {k: compare(k, Ztr, Ytr, Zte, Yte, bounds, bound_s) for k in args.k}
    after = matmul_rate()
    for r in res.values():
        r["SRAE"]["matmul_fraction"] = r["SRAE"]["gflops"] * 1e9 / max(before, after)
        r["SRAE"]["matmul_fraction_all"] = r["SRAE"]["gflops_all"] * 1e9 / max(before, after)
    auto = auto_fit(Ztr, Ytr, Zte, Yte) if args.auto else None
    mm = memmap_fit(args, data, Zte, Yte) if args.memmap else None
    meta = dict(machine=platform.platform(), cpus=os.cpu_count(), torch=torch.__version__,
                threads=torch.get_num_threads(), fit_threads=res[args.k[0]]["SRAE"]["fit_threads"],
                commit=commit, dirty=dirty, n_train=args.n_train, n_test=args.n_test,
                z_mb=Ztr.nbytes / MB, matmul_gflops=max(before, after) / 1e9,
                matmul_before=before / 1e9, matmul_after=after / 1e9, bound_alpha=alpha,
                total_s=time.perf_counter() - t0, load_before=[round(v, 2) for v in load],
                load_after=[round(v, 2) for v in os.getloadavg()])  # fmt: skip
    return meta, res, mm, auto


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    meta, res, mm, auto = run(args)
    check = checks(res, meta["z_mb"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    checked = {k: [dict(check=n, ok=bool(ok)) for n, ok in cs.items()] for k, cs in check.items()}
    report = dict(meta=meta, results=res, memmap=mm, auto=auto, checks=checked)
    Path(args.out + ".json").write_text(json.dumps(report, indent=1, default=float))
    Path(args.out + ".md").write_text(text := markdown(meta, res, check, mm, auto))
    print(text)


if __name__ == "__main__":
    main()
