"""Time to quality of SRAE at its defaults (per batch size), next to the fit times and
held-out faithfulness of PCA, NMF and PLSRegression on the same data, in one run.

Data: ``make_concept_activations(n_train + n_test, 2048, random_state=0)`` (K = 5 concepts,
10 outputs); the last ``n_test`` rows are held out. Held-out faithfulness is the R² of the
rebuilt logits (uniform average over outputs): SRAE's own head; a least-squares head on the
training embedding for PCA and NMF; PLS's own prediction. With the faithful start SRAE's
R² starts within half the tolerance of the rank-5 linear bound, so what training buys is
sparsity: the curve records,
after every fine-tuning epoch, the held-out R² and the mean significant x-features per
input (``n_significant`` of the contributions), and "time to quality" is the first epoch
whose R² is within 0.01 of the final one *and* whose significant count is within 5% of the
final one. The clock starts when ``fit`` is called (so it includes the bound and the
faithful start); the evaluation time is excluded.

    python benchmarks/time_to_quality.py --n-train 10000
"""

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import NMF, PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._nn import training
from sklearn_xnn._nn.scaling import Scaler
from sklearn_xnn.datasets import make_concept_activations
from sklearn_xnn.metrics import n_significant

K = 5


def baselines(Z, y, Zt, yt):
    rows = []
    for name, make in [
        ("PCA", lambda: PCA(K, random_state=0)),
        ("NMF", lambda: NMF(K, init="nndsvda", max_iter=200, random_state=0)),
        ("PLSRegression", lambda: PLSRegression(K, scale=False)),
    ]:
        est = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            est.fit(Z, y) if name == "PLSRegression" else est.fit(Z)
            seconds = time.perf_counter() - start
        if name == "PLSRegression":
            pred, sig = est.predict(Zt), None
        else:
            head = LinearRegression().fit(est.transform(Z), y)
            pred = head.predict(est.transform(Zt))
            sig = n_significant(est.transform(Zt)[:, None, :] * head.coef_[None])
        row = {"method": name, "fit_s": seconds, "r2_test": r2_score(yt, pred)}
        rows.append(row | ({} if sig is None else {"significant": sig}))
        print(rows[-1], flush=True)
    return rows


def srae_curve(Z, y, Zt, yt, batch_size, max_iter, device, precision):
    """Fit SRAE, recording (seconds since fit began, held-out R², significant x-features)
    after every epoch."""
    est = SRAEExplainer(
        n_components=K,
        batch_size=batch_size,
        max_iter=max_iter,
        device=device,
        precision=precision,
        random_state=0,
    )
    scaler = Scaler.fit(Z, y, rescale=True)  # the statistics fit will use
    curve, spent = [], [0.0]
    real_epoch = training._epoch
    Zt_tensor = {}

    def epoch(model, *args, **kwargs):
        out = real_epoch(model, *args, **kwargs)
        out.tolist()  # the loop synchronises here anyway
        pause = time.perf_counter()
        if "Z" not in Zt_tensor:
            Zt_tensor["Z"] = scaler.to_device(Zt, None, out.device)[0]
        with torch.no_grad():
            model.eval()
            x = training.encode(model, Zt_tensor["Z"])
            pred = model.head(x).double().cpu().numpy()
            W = model.head.weight.double().cpu().numpy()
            model.train()
        pred = pred * scaler.y_scale + scaler.y_mean
        sig = n_significant(x.double().cpu().numpy()[:, None, :] * W[None])
        curve.append((pause - start - spent[0], r2_score(yt, pred), sig))
        spent[0] += time.perf_counter() - pause
        return out

    training._epoch = epoch
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            est.fit(Z, y)
            total = time.perf_counter() - start - spent[0]
    finally:
        training._epoch = real_epoch
    final = est.score(Zt, yt)
    final_sig = n_significant(est.contributions(Zt))
    good = (t for t, r, q in curve if r >= final - 0.01 and q <= 1.05 * final_sig)
    reach = next(good, total)
    return {
        "method": f"SRAE batch={batch_size} {precision}",
        "fit_s": total,
        "time_to_quality_s": reach,
        "r2_test": final,
        "significant": final_sig,
        "bound": est.faithfulness_bound_,
        "epochs": est.n_iter_,
        "dead": est.n_dead_components_,
        "curve": curve,
    }


def markdown(rows, info):
    lines = [
        f"Machine: {info['device']} ({info.get('gpu', info['processor'])}), torch "
        f"{info['torch']}, {info['threads']} threads; data {info['n_train']} x 2048 train, "
        f"{info['n_test']} held out; SRAE defaults, max_iter={info['max_iter']}. Time to "
        "quality: first epoch within 0.01 of the final held-out R² and within 5% of the "
        "final significant x-features.",
        "",
        "| method | fit s | fit / NMF | time to quality (s) | held-out R² | significant "
        "| epochs | dead |",
        "|---|---|---|---|---|---|---|---|",
    ]
    nmf = next((r["fit_s"] for r in rows if r["method"] == "NMF"), None)
    for r in rows:
        ttq = f"{r['time_to_quality_s']:.2f}" if "time_to_quality_s" in r else "(= fit)"
        ratio = f"{r['fit_s'] / nmf:.1f}" if nmf else "-"
        sig = f"{r['significant']:.2f}" if "significant" in r else "-"
        lines.append(
            f"| {r['method']} | {r['fit_s']:.2f} | {ratio} | {ttq} | {r['r2_test']:.3f} | {sig} "
            f"| {r.get('epochs', '')} | {r.get('dead', '')} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_sig) = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        if "curve" in r:
            t, q, sig = zip(*r["curve"], strict=True)
            ax.plot(t, q, ".-", label=r["method"])
            ax_sig.plot(t, sig, ".-", label=r["method"])
        else:
            ax.plot([r["fit_s"]], [r["r2_test"]], "s", label=r["method"])
            if "significant" in r:
                ax_sig.plot([r["fit_s"]], [r["significant"]], "s", label=r["method"])
    ax.set_xlabel("seconds since fit began")
    ax.set_ylabel("held-out faithfulness R²")
    ax.set_ylim(bottom=max(-0.1, ax.get_ylim()[0]))
    ax_sig.set_xlabel("seconds since fit began")
    ax_sig.set_ylabel("significant x-features per input (held out)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--precisions", nargs="+", default=["float32"])
    parser.add_argument("--max-iter", type=int, default=SRAEExplainer().max_iter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--name", default="time_to_quality")
    args = parser.parse_args()
    n = args.n_train + args.n_test
    Z, y, _ = make_concept_activations(n, 2048, n_concepts=K, random_state=0)
    Z = Z.astype(np.float32)
    Z, Zt, y, yt = Z[: args.n_train], Z[args.n_train :], y[: args.n_train], y[args.n_train :]
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "max_iter": args.max_iter,
    }
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save(rows):  # after every row, so a run cut short keeps what it measured
        payload = json.dumps({"machine": info, "rows": rows}, indent=1)
        (out / f"{args.name}.json").write_text(payload)
        (out / f"{args.name}.md").write_text(markdown(rows, info))

    rows = [] if args.no_baselines else baselines(Z, y, Zt, yt)
    for precision in args.precisions:
        for bs in args.batches:
            row = srae_curve(Z, y, Zt, yt, bs, args.max_iter, args.device, precision)
            print({k: v for k, v in row.items() if k != "curve"}, flush=True)
            rows.append(row)
            save(rows)
    save(rows)
    plot(rows, out / f"{args.name}.png")
    print(markdown(rows, info))


if __name__ == "__main__":
    main()
