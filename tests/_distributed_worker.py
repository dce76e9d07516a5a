"""One rank of the sharded fits of ``test_distributed.py`` (run as a script, one process per
rank, with ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK`` and ``WORLD_SIZE`` set).

``python tests/_distributed_worker.py DIR`` reads ``DIR/X.npy`` (as a memmap),
``DIR/y.npy``, ``DIR/params.json`` and the held-out rows ``DIR/test.npz`` (when present),
joins the gloo group and writes ``DIR/rank{r}.npz``: the fitted state of
:func:`sklearn_xnn.distributed.fit_sharded` (with the held-out R²), the reduced moments of
the shards and the faithful start built from the reduced statistics. With a file
``DIR/own_rows`` each rank passes its own half of the rows without ``sharded=True`` and
prints the error ``fit_sharded`` raises. With a file ``DIR/uneven`` rank 0 passes the
first quarter of the rows and rank 1 the rest (``sharded=True``) and prints ``n_iter_`` and
the warnings. With a file ``DIR/refusals`` rank 1 is given, case after case, an input it
refuses (:data:`REFUSALS`) and every rank prints the error ``fit_sharded`` raised.
"""

import faulthandler
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._fitting import start_fit
from sklearn_xnn._nn import bound, engine
from sklearn_xnn._nn.collective import Distributed
from sklearn_xnn.distributed import fit_sharded, shard_rows

#: Printed once the rank's results are on disk: what follows is the group's teardown.
SAVED = "rank results saved"

#: What rank 1 alone is given in each refusal case (``DIR/refusals``): its shard (``X``,
#: ``y``, passed with ``sharded=True``) and its estimator's parameters, changed.
REFUSALS = {
    "nan": lambda X, y, p: (_with_nan(X), y, p),
    "n_features": lambda X, y, p: (X[:, :-1], y, p),
    "n_init": lambda X, y, p: (X, y, dict(p, n_init=2)),
    "invalid_parameter": lambda X, y, p: (X, y, dict(p, n_components=-1)),
    "other_parameters": lambda X, y, p: (X, y, dict(p, max_iter=p["max_iter"] + 1)),
    "complex": lambda X, y, p: (X.astype(np.complex64), y, p),
    "list": lambda X, y, p: (X.tolist(), y, p),
    "y_rows": lambda X, y, p: (X, np.vstack([y, y[:5]]), p),
    "device": lambda X, y, p: (X, y, dict(p, device="cuda:99")),
}


def _with_nan(X):
    X = X.copy()
    X[3, 2] = np.nan
    return X


def start_state(est, X, y, collective):
    """The faithful start's weights (and the bound) of ``est`` on ``(X, y)``."""
    run = start_fit(est, X, y, False, collective=collective)
    model, _ = engine.start(*run.train, run.cfg, run.generator, run.device, run.reference)
    state = {f"start/{k}": v.double().numpy() for k, v in model.state_dict().items()}
    state["bound_coef"] = run.reference[1].coef.numpy()
    return state


def refusals(X, y, params, rank, world):
    """Every :data:`REFUSALS` case in turn; then the group is still usable (a barrier)."""
    rows = shard_rows(len(X), rank, world)
    cases = os.environ.get("REFUSALS", ",".join(REFUSALS)).split(",")
    for case, change in ((c, REFUSALS[c]) for c in cases):
        Xr, yr, p = np.array(X[rows]), np.array(y[rows]), dict(params)
        if rank == 1:
            Xr, yr, p = change(Xr, yr, p)
        try:
            fit_sharded(SRAEExplainer(**p), Xr, yr, sharded=True)
            print(f"{case} fitted", flush=True)
        except ValueError as exc:
            print(f"{case} refused: {exc}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


def main(folder):
    faulthandler.enable()  # a native abort prints where it happened (into the test's log)
    folder = Path(folder)
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank, world = dist.get_rank(), dist.get_world_size()
    X = np.load(folder / "X.npy", mmap_mode="r")
    y = np.load(folder / "y.npy", mmap_mode="r")
    params = json.loads((folder / "params.json").read_text())
    params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    warnings.simplefilter("ignore")
    if (folder / "own_rows").exists():  # each rank passes its own half, sharded=True forgotten
        half = slice(rank * len(X) // world, (rank + 1) * len(X) // world)
        try:
            fit_sharded(SRAEExplainer(**params), X[half], y[half])
        except ValueError as exc:
            print(f"refused: {exc}", flush=True)
        dist.destroy_process_group()
        return
    if (folder / "refusals").exists():
        refusals(X, y, params, rank, world)
        return
    if (folder / "uneven").exists():  # a quarter and three quarters of the rows, as given
        mine = slice(0, len(X) // 4) if rank == 0 else slice(len(X) // 4, len(X))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = fit_sharded(SRAEExplainer(**params), X[mine], y[mine], sharded=True)
        print(f"n_iter_ {est.n_iter_}", flush=True)
        for w in caught:
            print(f"warned: {w.message}", flush=True)
        dist.barrier()
        dist.destroy_process_group()
        return
    est = fit_sharded(SRAEExplainer(**params), X, y)
    rows = shard_rows(X.shape[0], rank, world)
    sizes = [len(range(X.shape[0])[shard_rows(X.shape[0], r, world)]) for r in range(world)]
    comm = Distributed(sizes, params["random_state"])
    Zs, Ys = torch.as_tensor(np.asarray(X[rows])), torch.as_tensor(np.asarray(y[rows]))
    m = bound.moments(Zs, Ys, collective=comm)
    out = {
        "moments/z_mean": m.z_mean.numpy(),
        "moments/zz": m.zz.numpy(),
        "moments/zy": m.zy.numpy(),
        "moments/yy": m.yy.numpy(),
        "scale_": np.float64(est.scale_),
        "y_mean_": est.y_mean_,
        "y_scale_": est.y_scale_,
        "faithfulness_bound_": np.float64(est.faithfulness_bound_),
        "faithfulness_curve_": est.faithfulness_curve_,
        "faithfulness_": np.float64(est.faithfulness_),
        "n_dead_components_": np.int64(est.n_dead_components_),
        "n_iter_": np.int64(est.n_iter_),
        "coef_": est.coef_,
        "intercept_": est.intercept_,
        "components_": est.components_,
    }
    if (folder / "test.npz").exists():
        test = np.load(folder / "test.npz")
        out["heldout_r2"] = np.float64(est.score(test["X"], test["y"]))
    for i, (c, b) in enumerate(zip(est.encoder_coefs_, est.encoder_intercepts_, strict=True)):
        out[f"encoder/{i}/coef"], out[f"encoder/{i}/intercept"] = c, b
    for i, (c, b) in enumerate(zip(est.decoder_coefs_, est.decoder_intercepts_, strict=True)):
        out[f"decoder/{i}/coef"], out[f"decoder/{i}/intercept"] = c, b
    out.update(start_state(SRAEExplainer(**params), X[rows], y[rows], comm))
    np.savez(folder / f"rank{rank}.npz", **out)
    print(SAVED, flush=True)
    dist.barrier()  # no rank tears the group down while another still uses it
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
