"""Fine-tuning throughput as a fraction of the machine's own fp32 matmul rate.

For each activation width D and batch size N, times the training step of the engine
(``training.forward_loss`` + backward + fused Adam, the loop body of ``training._epoch``)
on data already on the device, and, interleaved with it in the same process, a plain fp32
``torch.mm`` of two 2048 x 2048 (CPU) or 8192 x 8192 (CUDA) matrices. The step's matmul
work is counted two ways:

* ``nominal``: ``6 N P`` with ``P`` the sum of ``in x out`` over every linear layer of
  encoder, decoder and head (forward 2, backward 4 FLOPs per weight and row);
* ``exact``: the same minus ``2 N D h1``, since the first layer needs no gradient with
  respect to its input (the activations).

Ratios use the best (least disturbed) time of each, measured side by side, so they hold on a
shared machine; medians are recorded too. The step uses SRAEExplainer's current defaults
(recorded in the JSON). ``--variants`` adds rows at D = 2048 that isolate what pulls the
step below the matmul rate: pull-away off, the "samples" pull-away (the reference's,
O(N^2) per step) computed pairwise as ``losses.pullaway_term`` does or through the K x K
Gram matrix (same value), dropout off.

    python benchmarks/throughput.py                   # CPU, writes benchmarks/results/
    python benchmarks/throughput.py --device cuda --out "$OUT"   # see gpu_throughput.sh
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._nn import losses, training

HIDDEN, K, C = (800, 100), 5, 10
_PAIRWISE_PULLAWAY = losses.pullaway_term


def gram_pullaway_term(s, over="samples", eps=losses.PULLAWAY_EPS):
    """``losses.pullaway_term`` through ``sum_ab (u_a . u_b)^2 = ||U^T U||_F^2``: O(N K^2)
    instead of O(N^2 K) for the "samples" variant. Same value up to rounding."""
    if over != "samples":
        return _PAIRWISE_PULLAWAY(s, over, eps)
    s = s + eps
    m = s.shape[-2]
    if m < 2:
        return s.new_zeros(())
    unit = s / torch.linalg.vector_norm(s, dim=-1, keepdim=True)
    gram = unit.transpose(-1, -2) @ unit
    diag = (unit * unit).sum(-1).pow(2).sum(-1)
    return torch.sum((gram.pow(2).sum((-2, -1)) - diag) / (m * (m - 1)))


def config(n_features, batch_size, **overrides):
    p = SRAEExplainer().get_params()
    cfg = {
        "n_components": K,
        "hidden": HIDDEN,
        "dropout": float(p["dropout"]),
        "nonneg_output": True,
        "alpha_f": float(p["alpha_faithfulness"]),
        "alpha_r": float(p["alpha_reconstruction"]),
        "alpha_p": float(p["alpha_pullaway"]),
        "reconstruction": p["reconstruction"],
        "q": float(p["log_penalty"]),
        "pullaway": p["pullaway"],
        "batch_size": batch_size,
        "lr": float(p["learning_rate_init"]),
        "weight_decay": float(p["weight_decay"]),
        "precision": "float32",
    }
    return {**cfg, **overrides}


def flops(n_features, batch_size):
    sizes = [n_features, *HIDDEN, K]
    params = 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)) + K * C
    nominal = 6 * batch_size * params
    return nominal, nominal - 2 * batch_size * n_features * HIDDEN[0]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, reps=1):
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / reps


def make_step(n_features, batch_size, device, cfg):
    gen = torch.Generator().manual_seed(0)
    model = training.build_model(n_features, C, cfg, gen, device)
    opt = training._adam(model.parameters(), cfg)
    dgen = torch.Generator(device=device).manual_seed(1)
    Z = torch.rand(batch_size, n_features, generator=gen).to(device)
    Y = torch.randn(batch_size, C, generator=gen).to(device)
    fwd = torch.compile(training.forward_loss) if cfg.compile else training.forward_loss

    def step():
        _, loss, _ = fwd(model, Z, Y, cfg, dgen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def measure(n_features, batch_size, device, rounds, variant, mm):
    overrides = {
        "engine": {},
        "bf16": {"precision": "bf16"},
        "no pull-away": {"alpha_p": 0.0},
        "no dropout": {"dropout": 0.0},
        "samples pull-away": {"pullaway": "samples"},
        "samples, gram": {"pullaway": "samples"},
    }[variant]
    cfg = config(n_features, batch_size, **overrides)
    original = losses.pullaway_term
    if variant == "samples, gram":
        losses.pullaway_term = gram_pullaway_term
    try:
        step = make_step(n_features, batch_size, device, cfg)
        reps = max(1, int(4096 // batch_size)) if device.type == "cuda" else 1
        for _ in range(3):
            step()
        steps, mms = [], []
        for _ in range(rounds):
            mms.append(timed(mm, device))
            steps.append(timed(step, device, reps))
    finally:
        losses.pullaway_term = original
    return steps, mms


def run(args, save=lambda rows: None):
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    mm_flops = 2 * n**3

    def mm():
        torch.mm(a, b)

    rows = []
    variants = ["engine"] + (["bf16"] if device.type == "cuda" else [])
    for d in args.dims:
        for bs in args.batches:
            extra = args.variants if d == 2048 and bs in (256, 1024) else []
            for variant in variants + extra:
                steps, mms = measure(d, bs, device, args.rounds, variant, mm)
                nominal, exact = flops(d, bs)
                peak = mm_flops / min(mms)
                row = {
                    "D": d,
                    "batch": bs,
                    "variant": variant,
                    "step_ms_best": 1e3 * min(steps),
                    "step_ms_median": 1e3 * statistics.median(steps),
                    "samples_per_s": bs / min(steps),
                    "samples_per_s_median": bs / statistics.median(steps),
                    "matmul_gflops": peak / 1e9,
                    "matmul_gflops_median": mm_flops / statistics.median(mms) / 1e9,
                    "achieved_gflops_exact": exact / min(steps) / 1e9,
                    "ratio_exact": exact / min(steps) / peak,
                    "ratio_nominal": nominal / min(steps) / peak,
                    "ratio_exact_median": exact
                    / statistics.median(steps)
                    / (mm_flops / statistics.median(mms)),
                }
                rows.append(row)
                print(
                    f"D={d:5d} N={bs:5d} {variant:15s} {row['step_ms_best']:9.2f} ms "
                    f"{row['samples_per_s']:10.0f} samples/s  exact {row['ratio_exact']:.2f} "
                    f"nominal {row['ratio_nominal']:.2f} (matmul {row['matmul_gflops']:.0f} GF/s)",
                    flush=True,
                )
                save(rows)
    return rows


def machine(device):
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def markdown(rows, info):
    lines = [
        f"Machine: {info['device']} ({info.get('gpu', info['processor'])}), torch "
        f"{info['torch']}, {info['threads']} threads. Ratios: best step vs best fp32 matmul, "
        "measured side by side; exact FLOPs skip the first layer's input gradient.",
        "",
        "| D | batch | variant | step ms | samples/s | achieved GFLOP/s | matmul GFLOP/s "
        "| ratio exact | ratio nominal 6NP | ratio exact (medians) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['D']} | {r['batch']} | {r['variant']} | {r['step_ms_best']:.2f} | "
            f"{r['samples_per_s']:.0f} | {r['achieved_gflops_exact']:.1f} | "
            f"{r['matmul_gflops']:.1f} | {r['ratio_exact']:.2f} | {r['ratio_nominal']:.2f} | "
            f"{r['ratio_exact_median']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def versus_cpu(rows, cpu_json=Path(__file__).parent / "results" / "throughput.json"):
    """The README's GPU-vs-CPU table: CPU samples/s from the committed CPU run."""
    cpu = {}
    if cpu_json.exists():
        for r in json.loads(cpu_json.read_text())["rows"]:
            if r["variant"] == "engine":
                cpu[r["D"], r["batch"]] = r["samples_per_s"]
    by = {(r["D"], r["batch"], r["variant"]): r for r in rows}
    lines = [
        "| D | batch | CPU samples/s (1 thread, table 1) | GPU fp32 samples/s "
        "| GPU bf16 samples/s | GPU fp32 ratio exact | GPU bf16 ratio exact |",
        "|---|---|---|---|---|---|---|",
    ]
    for d, b in sorted({(r["D"], r["batch"]) for r in rows}):
        f32, bf = by.get((d, b, "engine")), by.get((d, b, "bf16"))
        cell = lambda r, k, f: "-" if r is None else format(r[k], f)  # noqa: E731
        lines.append(
            f"| {d} | {b} | {cell(cpu and {'v': cpu.get((d, b), float('nan'))}, 'v', '.0f')} | "
            f"{cell(f32, 'samples_per_s', '.0f')} | {cell(bf, 'samples_per_s', '.0f')} | "
            f"{cell(f32, 'ratio_exact', '.2f')} | {cell(bf, 'ratio_exact', '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in sorted({r["variant"] for r in rows}):
        for d in sorted({r["D"] for r in rows}):
            pts = [r for r in rows if r["D"] == d and r["variant"] == variant]
            if len(pts) > 1:
                ax.plot(
                    [r["batch"] for r in pts],
                    [r["ratio_exact"] for r in pts],
                    "o-",
                    label=f"D={d} {variant}",
                )
    ax.set_xscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("achieved / fp32 matmul rate")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 2048, 4096])
    parser.add_argument("--batches", type=int, nargs="+", default=[50, 256, 1024])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument(
        "--variants",
        nargs="*",
        default=["no pull-away", "samples pull-away", "samples, gram", "no dropout"],
        help="extra rows at D=2048, batch 256 and 1024",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--name", default=None, help="file stem (default throughput[_cuda])")
    args = parser.parse_args()
    info = machine(torch.device(args.device))
    info["config"] = {k: v for k, v in config(0, 0).items() if k not in ("hidden",)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("throughput" if args.device == "cpu" else "throughput_cuda")

    def save(rows):  # after every row, so a run cut short keeps what it measured
        payload = json.dumps({"machine": info, "rows": rows}, indent=1)
        (out / f"{stem}.json").write_text(payload)
        (out / f"{stem}.md").write_text(markdown(rows, info))

    if args.threads:
        torch.set_num_threads(args.threads)
        info["threads"] = args.threads
    rows = run(args, save)
    plot(rows, out / f"{stem}.png")
    if args.device != "cpu":
        (out / f"{stem}_vs_cpu.md").write_text(versus_cpu(rows))
    print(markdown(rows, info))


if __name__ == "__main__":
    main()
