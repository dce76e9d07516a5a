"""Training as plain functions: layer-wise pre-training, head initialisation, fine-tuning.

Data arrive as float32 tensors already on the training device. Minibatches are drawn by
an index permutation from the CPU generator; the step loop never synchronises with the
host (losses are accumulated on the device and read once per epoch).
"""

import copy
import logging
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sklearn_xnn._nn import data
from sklearn_xnn._nn.losses import srae_loss
from sklearn_xnn._nn.modules import XNN, init_linear

logger = logging.getLogger("sklearn_xnn")


class NonFiniteLossError(ArithmeticError):
    """Raised when the training loss stops being finite; carries the epoch it happened in."""

    def __init__(self, epoch, history):
        super().__init__(f"the training loss became non-finite in epoch {epoch + 1}")
        self.epoch = epoch
        self.history = history


def batches(n, batch_size, generator, device, shuffle=True):
    """Index tensors of the minibatches of one epoch (a permutation drawn on the CPU)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(device)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _adam(params, cfg):
    """Adam with torch's fused kernel where the device has one (CPU and CUDA do): one pass
    over each parameter instead of ~10, deterministic, so CPU fits stay bitwise repeatable."""
    params = list(params)
    kwargs = dict(cfg.get("adam_kwargs", {}))
    if "fused" not in kwargs and "foreach" not in kwargs and params:
        kwargs["fused"] = params[0].device.type in _fused_devices()
    return torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], **kwargs)


def _fused_devices():
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # pragma: no cover - older torch
        return ("cuda",)
    return tuple(_get_fused_kernels_supported_devices())


def pretrain_layers(model, Z, cfg, generator):
    """Greedy layer-wise pre-training of ``model.encoder`` / ``model.decoder`` in place.

    Layer ``l`` is trained as a one-hidden-layer autoencoder (Linear+ReLU encoder, Linear
    decoder with the decoder's output activation, MSE) on the codes of layer ``l - 1``.
    """
    enc, dec = model.encoder.layers, model.decoder.layers
    n_layers = len(enc)
    codes = Z
    for level in range(n_layers):
        e, d = enc[level], dec[n_layers - 1 - level]
        relu_out = level > 0 or model.decoder.nonnegative_output
        opt = _adam([*e.parameters(), *d.parameters()], cfg)
        for _ in range(cfg["pretrain"]):
            for idx in batches(
                codes.shape[0], cfg["batch_size"], generator, data.index_device(codes)
            ):
                target = codes[idx]
                rebuilt = d(F.relu(e(target)))
                rebuilt = F.relu(rebuilt) if relu_out else rebuilt
                loss = F.mse_loss(rebuilt, target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        codes = _next_codes(codes, e)
    return codes


def _next_codes(codes, layer):
    """The codes of the next level: stored for a device tensor, recomputed per batch for
    a host source (whose codes would not fit in memory either)."""
    if not torch.is_tensor(codes):
        return data.Mapped(codes, layer)
    with torch.no_grad():
        return torch.cat([F.relu(layer(codes[i])) for i in _chunks(codes.shape[0])])


def _chunks(n, size=8192):
    return [slice(i, i + size) for i in range(0, n, size)]


@torch.no_grad()
def encode(model, Z):
    """The x-features of every row of ``Z`` (no dropout), in chunks.

    Written into one preallocated tensor: a list of small per-chunk outputs would pin the
    top of the C heap above each chunk's large temporaries, which then are never given
    back (resident memory grew with the number of rows of a streamed fit).
    """
    out = torch.empty(Z.shape[0], model.encoder.layers[-1].out_features, device=Z.device)
    for s in _chunks(Z.shape[0]):
        out[s] = model.encoder(Z[s])
    return out


@torch.no_grad()
def init_head_lstsq(head, x, y, ridge=1e-6):
    """Set the head to the (slightly ridged) least-squares regression of ``y`` on ``x``."""
    x64, y64 = x.double().cpu(), y.double().cpu()
    x_mean, y_mean = x64.mean(0), y64.mean(0)
    xc, yc = x64 - x_mean, y64 - y_mean
    gram = xc.T @ xc
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    gram += ridge * (torch.trace(gram) / gram.shape[0] + 1.0) * eye
    coef = torch.linalg.solve(gram, xc.T @ yc).T
    head.weight.copy_(coef.to(head.weight))
    head.bias.copy_((y_mean - coef @ x_mean).to(head.bias))


@torch.no_grad()
def init_last_layer_rrr(model, Z, Y, generator, ridge=1e-3, unmix=True):
    """Point the x-features at independent directions of the best rank-K linear predictor.

    Reduced-rank regression on the codes ``h`` of the encoder's last hidden layer: the
    least-squares fit ``Y ~ h B`` is projected on the top right singular vectors ``V_K`` of
    its fitted values, giving the faithful rank-K subspace ``h B V_K``. With ``unmix`` the
    subspace is rotated by FastICA into its most independent (sparsest) directions, which
    leaves the rank-K faithfulness unchanged. Each x-feature then starts as
    ``relu(h d_k + b_k)``, oriented so its long tail is positive, scaled to unit spread and
    shifted so it is active on every row: the least-squares head on them starts at the
    rank-K linear optimum on ``h``, and fine-tuning makes them sparse. With fewer outputs
    than x-features the remaining x-features keep their pre-trained weights.
    """
    last = model.encoder.layers[-1]
    stats = _code_moments(model, Z, Y)
    if stats is None:
        return  # pre-training diverged: the caller's finiteness check reports it
    h_mean, gram, cross = stats
    fitted_gram = gram.clone()  # h_c^T h_c, for the fitted values' singular vectors
    gram += (
        ridge
        * (torch.trace(gram) / gram.shape[0] + 1e-12)
        * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    )
    coef = torch.linalg.solve(gram, cross)  # (h2, C)
    # Right singular vectors of the fitted values h_c B: eigenvectors of B^T (h_c^T h_c) B.
    evals, evecs = torch.linalg.eigh(coef.T @ fitted_gram @ coef)
    vh = evecs.flip(-1).T
    k = min(last.out_features, vh.shape[0])
    directions = coef @ vh[:k].T  # (h2, k)
    if unmix and k > 1:
        directions = directions @ _ica_rotation(
            _projection(model, Z, h_mean, directions), generator
        ).to(directions)
    proj = _projection(model, Z, h_mean, directions)
    skew = torch.mean(((proj - proj.mean(0)) / proj.std(0).clamp_min(1e-12)) ** 3, dim=0)
    sign = torch.where(skew >= 0, 1.0, -1.0).to(proj)
    directions, proj = directions * sign, proj * sign
    spread = proj.std(0).clamp_min(1e-12)
    directions, proj = directions / spread, proj / spread
    last.weight[:k] = directions.T.to(last.weight)
    last.bias[:k] = (-(h_mean @ directions) - proj.min(0).values).to(last.bias)


def _code_moments(model, Z, Y):
    """Mean of the last hidden codes ``h`` and the centred ``h^T h`` and ``h^T y`` (float64).

    Accumulated chunk by chunk, so memory stays independent of the number of rows; None
    when a code is not finite.
    """
    n, y = Z.shape[0], Y.double()
    y_mean = y.mean(0)
    s1 = s2 = sxy = None
    for s in _chunks(n):
        h = _hidden_codes(model, Z[s]).double()
        if not torch.isfinite(h).all():
            return None
        hy = h.T @ (y[s] - y_mean)
        s1 = h.sum(0) if s1 is None else s1 + h.sum(0)
        s2 = h.T @ h if s2 is None else s2 + h.T @ h
        sxy = hy if sxy is None else sxy + hy
    mean = s1 / n
    return mean, s2 - n * torch.outer(mean, mean), sxy


def _projection(model, Z, h_mean, directions):
    """``(h - mean) @ directions`` for every row, chunk by chunk (float64, ``(N, k)``)."""
    return torch.cat(
        [(_hidden_codes(model, Z[s]).double() - h_mean) @ directions for s in _chunks(Z.shape[0])]
    )


def _ica_rotation(proj, generator):
    """The ``(k, k)`` FastICA unmixing of ``proj`` (rows = samples), as a right factor."""
    import warnings

    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    ica = FastICA(whiten="unit-variance", max_iter=400, tol=1e-4, random_state=seed)
    identity = torch.eye(proj.shape[1], dtype=torch.float64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            ica.fit(proj.cpu().numpy())
    except (ValueError, np.linalg.LinAlgError):  # degenerate subspace (tiny or constant data)
        return identity
    unmixing = torch.as_tensor(ica.components_, dtype=torch.float64)  # (k, k)
    if not torch.isfinite(unmixing).all():
        return identity
    return unmixing.T


def _hidden_codes(model, z):
    for layer in model.encoder.layers[:-1]:
        z = F.relu(layer(z))
    return z


def build_model(n_features, n_outputs, cfg, generator, device):
    """A freshly initialised XNN (weights drawn from ``generator``) on ``device``.

    The layers are built on the meta device, so torch's default initialisation never
    draws from the global RNG; every weight comes from ``generator`` on the CPU.
    """
    with torch.device("meta"):
        model = XNN(
            n_features,
            cfg["hidden"],
            cfg["n_components"],
            n_outputs,
            cfg["dropout"],
            cfg["nonneg_output"],
        )
    model = model.to_empty(device="cpu")
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            init_linear(layer, generator)
    return model.to(device)


@torch.no_grad()
def revive_dead(model, Z, dead, generator, density=0.3, max_rows=8192):
    """Give each dead x-feature (zero on every row) a fresh start; returns how many.

    The feature's last-layer weights are redrawn and its bias set so that it is positive
    on the ``density`` fraction of (a sample of) the rows with the largest pre-activation.
    """
    n_dead = int(dead.sum())
    if not n_dead:
        return 0
    last = model.encoder.layers[-1]
    rows = torch.randperm(Z.shape[0], generator=generator)[:max_rows].to(data.index_device(Z))
    h = Z[rows]
    for layer in model.encoder.layers[:-1]:
        h = F.relu(layer(h))
    idx = torch.nonzero(dead).flatten()
    fresh = torch.empty(n_dead, last.in_features)
    nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
    last.weight[idx] = fresh.to(last.weight)
    pre = h @ last.weight[idx].T
    last.bias[idx] = -torch.quantile(pre, 1.0 - density, dim=0)
    return n_dead


def forward_loss(model, zb, yb, cfg, dropout_gen):
    """Forward pass and SRAE loss of one minibatch: ``(x, loss, parts)``.

    With ``cfg["precision"] == "bf16"`` on CUDA the network runs under bf16 autocast
    and the loss is computed in float32 from its float32-cast outputs.
    """
    bf16 = cfg.get("precision") == "bf16" and zb.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        x, y_hat, z_hat = model(zb, dropout_gen)
    if bf16:
        x, z_hat = x.float(), z_hat.float()
        y_hat = None if y_hat is None else y_hat.float()
    weight = None if model.head is None else model.head.weight
    loss, parts = srae_loss(x, y_hat, z_hat, zb, yb, weight, cfg)
    return x, loss, parts


def _step_function(cfg):
    """``forward_loss``, compiled with ``torch.compile`` when ``cfg["compile"]``."""
    if cfg.get("compile"):
        return torch.compile(forward_loss)
    return forward_loss


def _epoch(model, opt, Z, Y, cfg, generator, dropout_gen, step=forward_loss):
    model.train()
    acc = torch.zeros(3 + cfg["n_components"], device=Z.device)
    for idx in batches(Z.shape[0], cfg["batch_size"], generator, data.index_device(Z)):
        zb = Z[idx]
        yb = None if Y is None else Y[idx]
        x, loss, parts = step(model, zb, yb, cfg, dropout_gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc[:3] += parts * idx.shape[0]
        acc[3:] = torch.maximum(acc[3:], x.detach().amax(0))
    acc[:3] /= Z.shape[0]
    return acc


@torch.no_grad()
def evaluate(model, Z, Y, cfg):
    """Mean loss parts ``[faith, rec, pt]`` on ``(Z, Y)`` without dropout, in one batch pass."""
    model.eval()
    acc = torch.zeros(3, device=Z.device)
    n, size = Z.shape[0], max(cfg["batch_size"], 1024)
    for idx in batches(n, size, None, data.index_device(Z), shuffle=False):
        zb = Z[idx]
        yb = None if Y is None else Y[idx]
        x, y_hat, z_hat = model(zb)
        weight = None if model.head is None else model.head.weight
        acc += srae_loss(x, y_hat, z_hat, zb, yb, weight, cfg)[1] * idx.shape[0]
    return acc / Z.shape[0]


def total_loss(parts, cfg):
    return cfg["alpha_f"] * parts[0] + cfg["alpha_r"] * parts[1] + cfg["alpha_p"] * parts[2]


def _finite_state(state):
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def finite_weights(model):
    """Whether every weight of ``model`` is finite."""
    return _finite_state(model.state_dict())


def _roll_back(model, hist, good_state, prev_state, best_state=None):
    """Restore the last finite weights after a non-finite loss.

    The weights at the start of the failing epoch can already be non-finite (the last step
    of the previous epoch overflowed while its loss was finite); then the weights from one
    epoch earlier are restored and that epoch is dropped from the history. With a
    validation set the best validated weights are restored instead.
    """
    if prev_state is not None and not _finite_state(good_state):
        good_state = prev_state
        for key in ("loss", "parts", "validation_loss"):
            del hist[key][-1:]
    model.load_state_dict(good_state if best_state is None else best_state)
    hist["n_iter"] = len(hist["loss"])


def fine_tune(model, Z, Y, cfg, generator, Z_val=None, Y_val=None, opt=None):
    """Joint fine-tuning of encoder, decoder and head on the SRAE loss with Adam.

    The learning rate is multiplied by ``cfg["lr_gamma"]`` every ``cfg["lr_step"]`` epochs.
    Stops after ``cfg["max_iter"]`` epochs, or when the monitored loss (validation loss when
    ``Z_val`` is given, else training loss) has not improved by ``tol`` for
    ``n_iter_no_change`` epochs. With a validation set the best weights are restored.
    A non-finite loss restores the last finite weights and raises ``NonFiniteLossError``;
    a ``KeyboardInterrupt`` stops training with the weights of the last complete epoch
    (or the best validated ones) and records ``hist["interrupted_epoch"]``.
    ``opt`` continues an existing Adam (``partial_fit``); the one used is returned as
    ``hist["optimizer"]``. Returns a history dict.
    """
    opt = _adam(model.parameters(), cfg) if opt is None else opt
    step = _step_function(cfg)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg["lr_step"], gamma=cfg["lr_gamma"])
    dropout_gen = cfg["dropout_generator"]
    hist = {"loss": [], "parts": [], "validation_loss": [], "converged": False, "revived": 0}
    hist["optimizer"] = opt
    best, best_state, stall = math.inf, None, 0
    epoch, good_state = 0, None
    try:
        for epoch in range(cfg["max_iter"]):
            prev_state, good_state = good_state, copy.deepcopy(model.state_dict())
            stats = _epoch(model, opt, Z, Y, cfg, generator, dropout_gen, step).tolist()
            sched.step()  # the line above is the one host synchronisation of the epoch
            parts_host, x_max = stats[:3], torch.tensor(stats[3:])
            if cfg["revive_dead"] and epoch < cfg["max_iter"] - 1:
                n_revived = revive_dead(model, Z, x_max <= 0, generator)
                hist["revived"] += n_revived
                stall = 0 if n_revived else stall
            loss = total_loss(parts_host, cfg)
            if not math.isfinite(loss):
                _roll_back(model, hist, good_state, prev_state, best_state)
                raise NonFiniteLossError(epoch, hist)
            hist["loss"].append(loss)
            hist["parts"].append(parts_host)
            monitored = loss
            if Z_val is not None:
                monitored = total_loss(evaluate(model, Z_val, Y_val, cfg).tolist(), cfg)
                hist["validation_loss"].append(monitored)
            if cfg["verbose"]:
                logger.info("epoch %d: loss %.6g (monitored %.6g)", epoch + 1, loss, monitored)
            if monitored < best - cfg["tol"]:
                stall = 0
            else:
                stall += 1
            if monitored < best:
                best = monitored
                if Z_val is not None:
                    best_state = copy.deepcopy(model.state_dict())
            if stall >= cfg["n_iter_no_change"]:
                hist["converged"] = True
                break
    except KeyboardInterrupt:  # keep a usable model: the last complete epoch's weights
        if len(hist["loss"]) <= epoch and good_state is not None:
            model.load_state_dict(good_state)
        hist["interrupted_epoch"] = epoch
    if best_state is not None:
        model.load_state_dict(best_state)
    hist["n_iter"] = len(hist["loss"])
    return hist
