"""Initialisation: a random network, optional layer-wise pre-training, then the faithful start.

The faithful start is closed form and deterministic. The encoder's hidden layers *carry*
a K-dimensional subspace of the activations exactly: for each direction ``s_k`` the first
layer holds the pair ``relu(p_k)``, ``relu(-p_k)`` with ``p_k = (z - z_mean) . s_k``,
every later hidden layer passes the pair on, and x-feature ``k`` is ``relu(p_k - c_k)``.
The subspace is the faithful one of the rank-K linear predictor, completed by the leading
principal directions of what it leaves out when ``y`` has fewer than ``K`` dimensions,
and rotated to its varimax-simple directions (:func:`simple_directions`: each activation
unit loads on few directions, or each output on few when the units show no simple
structure beyond chance). The head is the least-squares head on those x-features, so
training starts near the rank-K linear bound; the decoder starts as the least-squares
affine reconstruction of ``Z`` from the x-features. The units not used as carriers keep
their random (or pre-trained) weights: the nonlinear capacity that training can use to go
beyond the linear bound.
"""

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sklearn_xnn._nn import bound, data
from sklearn_xnn._nn.collective import LOCAL
from sklearn_xnn._nn.config import adam
from sklearn_xnn._nn.modules import XNN


def build_model(n_features, n_outputs, cfg, generator, device):
    """A freshly initialised XNN (weights drawn from ``generator``) on ``device``.

    The layers are built on the meta device, so torch's default initialisation never
    draws from the global RNG; every weight comes from ``generator`` on the CPU, drawn
    like torch's default.
    """
    with torch.device("meta"):
        model = XNN(
            n_features, cfg.hidden, cfg.n_components, n_outputs, cfg.dropout, cfg.nonneg_output
        )
    model = model.to_empty(device="cpu")
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            limit = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
            nn.init.uniform_(layer.bias, -limit, limit, generator=generator)
    return model.to(device)


def pretrain_layers(model, Z, cfg, generator):
    """Greedy layer-wise pre-training of ``model.encoder`` / ``model.decoder`` in place.

    Layer ``l`` is trained as a one-hidden-layer autoencoder (Linear+ReLU encoder, Linear
    decoder with the decoder's output activation, MSE) on the codes of layer ``l - 1``.
    """
    enc, dec = model.encoder.layers, model.decoder.layers
    codes = Z
    for level in range(len(enc)):
        e, d = enc[level], dec[len(enc) - 1 - level]
        relu_out = level > 0 or model.decoder.nonnegative_output
        params = [*e.parameters(), *d.parameters()]
        opt = adam(params, cfg.lr, cfg.weight_decay)
        comm = cfg.collective
        for _ in range(cfg.pretrain):
            for idx in comm.batches(codes, cfg.batch_size, generator):
                target = codes[idx]
                rebuilt = d(F.relu(e(target)))
                rebuilt = F.relu(rebuilt) if relu_out else rebuilt
                loss = F.mse_loss(rebuilt, target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                comm.reduce_step(None, params)
                opt.step()
        codes = data.Mapped(codes, e)


# ---------------------------------------------------------------------------- subspace
def _complement(m, A, k):
    """``k`` leading principal directions of ``Zc`` uncorrelated with ``Zc @ A``; zero
    columns beyond the rank of ``Zc`` (there is no direction left to take)."""
    G = m.zz
    if A.shape[1]:
        GA = G @ A
        inner = A.T @ GA
        G = G - GA @ torch.linalg.pinv(inner, hermitian=True) @ GA.T
    evals, evecs = bound.scatter_eigh((G + G.T) / 2, m.n)
    evals, evecs = evals.flip(0)[:k], evecs.flip(-1)[:, :k]
    varies = evals > 1e-12 * max(float(torch.trace(m.zz)), 1e-300)
    U = bound.canonical_signs(evecs) * varies
    if not A.shape[1]:
        return U
    # remove what Zc @ U shares with Zc @ A (a regression of the one on the other)
    return U - A @ (torch.linalg.pinv(inner, hermitian=True) @ (GA.T @ U))


def faithful_subspace(m, the_bound, k):
    """``(D, k)`` directions: the bound's faithful ones, then principal ones (float64).

    Directions along which the training rows do not vary are dropped first; with fewer
    directions left than ``k`` the last columns are zero.
    """
    D = m.zz.shape[0]
    if not bool(torch.isfinite(m.zz).all()) or float(torch.trace(m.zz)) <= 0:
        return m.zz.new_zeros(D, k)
    # (z - z_mean) @ coef @ basis spans the bound's faithful subspace
    A = (the_bound.coef @ the_bound.basis)[:, :k] if the_bound is not None else m.zz.new_zeros(D, 0)
    spread = torch.diagonal(A.T @ m.zz @ A)
    A = A[:, spread > 1e-12 * float(torch.trace(m.zz)) / D]
    if A.shape[1] < k:
        A = torch.cat([A, _complement(m, A, k - A.shape[1])], 1)
    return A


@torch.no_grad()
def project(Z, z_mean, S, collective=LOCAL):
    """``(Z - z_mean) @ S`` for every row, float64, chunk by chunk (a streamed ``Z`` is
    read once; with a ``collective``, of every rank's rows, gathered in rank order)."""
    z_mean, S = z_mean.to(Z.device), S.to(Z.device)
    out = torch.empty(Z.shape[0], S.shape[1], dtype=torch.float64, device=Z.device)
    chunk = bound.Chunks()  # one float64 buffer for every chunk
    for s in bound.row_slices(Z.shape[0], Z.shape[1]):
        out[s] = chunk.load(Z[s]).sub_(z_mean) @ S
    return collective.all_gather_rows(out)


def _sharded_spread(Z, z_mean, S, collective):
    """``(std, skew, min, max)`` of every rank's projections ``(Z - z_mean) @ S``, from
    reduced sums (the one-process :func:`oriented_directions` holds them all)."""
    sums, lo, hi = 0.0, None, None
    for s in bound.row_slices(Z.shape[0], Z.shape[1]):
        p = (Z[s].double() - z_mean) @ S
        sums = sums + p.sum(0)
        lo = p.amin(0) if lo is None else torch.minimum(lo, p.amin(0))
        hi = p.amax(0) if hi is None else torch.maximum(hi, p.amax(0))
    n = collective.total_rows(Z.shape[0])
    mean = collective.sum(sums) / n
    central = 0.0
    for s in bound.row_slices(Z.shape[0], Z.shape[1]):
        c = (Z[s].double() - z_mean) @ S - mean
        central = central + torch.stack([(c**2).sum(0), (c**3).sum(0)])
    central = collective.sum(central)
    spread = (central[0] / max(n - 1, 1)).sqrt().clamp_min(1e-12)
    skew = central[1] / n / spread**3
    return spread, skew, collective.min(lo), collective.max(hi)


def simple_directions(m, S):
    """``S``'s span rotated to its simplest directions, a deterministic choice.

    The projections ``(z - z_mean) @ S`` are whitened (uncorrelated, unit variance) and
    rotated so that their loadings (each activation unit's correlation with them) are
    varimax-simple, each unit loading on few directions (:func:`varimax` with Kaiser's
    normalisation: every unit that varies counts alike, whatever its spread).

    When the units' simplest rotation is no simpler than the one varimax finds in as many
    isotropic loadings (:func:`simplicity` at most :func:`chance_simplicity`: the units
    carry no simple structure in this span, and their rotation would follow sampling
    noise) and there are at least as many outputs as directions, the loadings of the
    outputs (each output's correlation with the directions, Kaiser-normalised) are rotated
    instead: each output reads few directions, the sparsest explanation of the outputs.

    The same moments give the same directions, whatever the seed. ``S`` itself when the
    span is degenerate.
    """
    S = S.to(m.zz)
    if S.shape[1] < 2:
        return S
    evals, evecs = torch.linalg.eigh(S.T @ m.zz @ S)
    if float(evals.min()) <= 1e-12 * max(float(evals.max()), 1e-300):
        return S
    white = S @ (evecs.flip(-1) / evals.flip(0).sqrt())
    units = _kaiser(m.zz @ white)  # (D, k): each unit's covariance with them, unit rows
    R = varimax(units)
    if m.zy is not None:
        outputs = _kaiser(m.zy.T.to(white) @ white)  # (C, k): each output's, likewise
        n_units, n_outputs = int(units.any(1).sum()), int(outputs.any(1).sum())
        k = S.shape[1]
        if n_outputs >= k and simplicity(units @ R) <= chance_simplicity(n_units, k):
            R = varimax(outputs)
    return white @ R


def _kaiser(loadings):
    """Rows of ``loadings`` scaled to unit length (rows of zeros, up to rounding, stay 0)."""
    norms = torch.linalg.vector_norm(loadings, dim=1, keepdim=True)
    varying = norms > 1e-12 * float(norms.max())
    return torch.where(varying, loadings / norms.clamp_min(1e-300), 0.0)


def simplicity(loadings):
    """How simple unit-length loadings ``(..., p, k)`` are: the mean over the nonzero rows
    of ``sum_k L_jk^4``, rescaled so that a row on one column scores 1 and a row drawn
    uniformly on the sphere 0 in expectation (its mean is ``3 / (k + 2)``); 0 without a
    nonzero row. One value per set of loadings (a float for one set)."""
    L = torch.as_tensor(loadings).double()
    live = (L != 0).any(-1).double()
    mean = ((L**4).sum(-1) * live).sum(-1) / live.sum(-1).clamp_min(1.0)
    chance = 3.0 / (L.shape[-1] + 2)
    out = torch.where(live.sum(-1) > 0, (mean - chance) / (1.0 - chance), 0.0)
    return float(out) if out.dim() == 0 else out


#: Sets of isotropic loadings :func:`chance_simplicity` rotates (drawn from a fixed seed),
#: and the most rows a set holds (the chance level of more rows is scaled from it).
CHANCE_DRAWS, CHANCE_ROWS = 20, 512
#: The chance level of ``(rows, k)`` (``rows <= CHANCE_ROWS``), once computed.
_CHANCE = {}


def chance_simplicity(p, k):
    """The largest :func:`simplicity` varimax reaches on :data:`CHANCE_DRAWS` sets of ``p``
    unit rows drawn uniformly on the sphere in ``k`` dimensions: no simple structure at
    all, what varimax finds there is the sampling noise of ``p`` rows. Beyond
    :data:`CHANCE_ROWS` rows, that of ``CHANCE_ROWS`` rows times ``sqrt(CHANCE_ROWS / p)``
    (a mean over ``p`` rows: its noise falls as ``1 / sqrt(p)``). Deterministic, and
    computed once per ``(min(p, CHANCE_ROWS), k)``."""
    rows = min(max(p, 1), CHANCE_ROWS)
    if (rows, k) not in _CHANCE:
        A = np.random.default_rng(0).standard_normal((CHANCE_DRAWS, rows, k))
        A = torch.as_tensor(A / np.linalg.norm(A, axis=-1, keepdims=True))
        _CHANCE[rows, k] = float(simplicity(A @ varimax(A)).max())
    return _CHANCE[rows, k] * float(np.sqrt(rows / max(p, 1)))


def oriented_directions(Z, m, S, collective=LOCAL):
    """Orient the directions ``S`` so that their long tails are positive, scale them to unit
    spread, most skewed first.

    Returns ``(directions, low, high)``: the smallest and largest training projections.
    """
    S = S.to(Z.device)
    if collective.world > 1:
        spread, skew, lo, hi = _sharded_spread(Z, m.z_mean, S, collective)
        sign = torch.where(skew >= 0, 1.0, -1.0).to(S)
        low = torch.where(sign > 0, lo, -hi) / spread  # the min of the rescaled projections
        high = torch.where(sign > 0, hi, -lo) / spread
        S = S * sign / spread
    else:
        proj = project(Z, m.z_mean, S)
        spread = proj.std(0).clamp_min(1e-12)
        skew = torch.mean(((proj - proj.mean(0)) / spread) ** 3, dim=0)
        sign = torch.where(skew >= 0, 1.0, -1.0).to(proj)
        S, proj = S * sign / spread, proj * sign / spread
        low, high = proj.min(0).values, proj.max(0).values
    order = torch.argsort(skew.abs(), descending=True, stable=True)
    return S[:, order], low[order], high[order]


def varimax(loadings, max_iter=200, tol=1e-8):
    """The ``(k, k)`` rotation ``R`` maximising the varimax criterion of ``loadings @ R``
    (``(p, k)``): the sum over columns of the variance of the squared loadings, so that
    each row loads on few columns (Kaiser, 1958; the SVD iteration, in float64 NumPy:
    the matrices are a few outputs by a few directions). Stacked loadings ``(..., p, k)``
    get one rotation each, iterated together (each stops when its criterion does)."""
    A = loadings.detach().cpu().double().numpy()
    p, k = A.shape[-2:]
    R = np.broadcast_to(np.eye(k), A.shape[:-2] + (k, k)).copy()
    criterion, moving = np.zeros(A.shape[:-2]), np.ones(A.shape[:-2], dtype=bool)
    for _ in range(max_iter):
        L = A @ R
        u, s, vt = np.linalg.svd(
            np.swapaxes(A, -1, -2) @ (L**3 - L * (L**2).sum(-2, keepdims=True) / p)
        )
        R = np.where(moving[..., None, None], u @ vt, R)
        previous, criterion = criterion, np.where(moving, s.sum(-1), criterion)
        moving = moving & (criterion > previous * (1.0 + tol))
        if not moving.any():
            break
    return torch.as_tensor(R).to(loadings)


#: Up to this many directions :func:`explaining_signs` tries every sign pattern.
EXHAUSTIVE_SIGNS = 12


def _covered(signs, W, counts, chunk=64):
    """Rows covered by each sign pattern (a row of ``signs``, or ``signs`` itself when it
    is one pattern): ``sum_c counts_c [max_k signs_k W_kc > 0]`` (``chunk`` patterns at a
    time: all ``2^K`` at once would hold ``2^K K C`` values)."""
    if signs.dim() == 1:
        return _covered(signs.unsqueeze(0), W, counts, chunk)[0]
    parts = []
    for a in range(0, signs.shape[0], chunk):
        hit = ((signs[a : a + chunk].unsqueeze(-1) * W) > 0).any(-2)
        parts.append((hit.to(counts) * counts).sum(-1))
    return torch.cat(parts)


def explaining_signs(m, S, low, high, counts):
    """Orient the directions so that the most rows have a positive contribution to their
    top output; returns ``(S, low, high)`` with some columns negated.

    The x-features start as ``relu(p_k - low_k)`` of the projections ``p = (z - z_mean) @
    S``, linear on every training row (zero at the lowest), so row ``i`` gets a positive
    contribution to its top output ``c`` exactly when some ``W_kc`` of the least-squares
    head on ``p`` is positive; negating a direction negates its row of ``W`` and moves its
    offset from ``-low_k`` to ``high_k``. ``counts[c]`` is how many rows have ``c`` as their
    top output. Among the patterns covering the most rows the one with the smallest total
    offset wins (a constant part of an x-feature explains nothing): every pattern for up
    to :data:`EXHAUSTIVE_SIGNS` directions, one negation at a time beyond.
    """
    if m.zy is None or counts.numel() < 2:
        return S, low, high
    S64 = S.double().to(m.zz.device)  # W: the least-squares head on the projections
    W = torch.linalg.lstsq(S64.T @ m.zz @ S64, S64.T @ m.zy).solution  # (k, C)
    counts = counts.double().to(W.device)
    lo, hi = low.double().to(W.device), high.double().to(W.device)
    k = W.shape[0]
    if k <= EXHAUSTIVE_SIGNS:
        rank = torch.arange(k, device=W.device)
        bits = (torch.arange(2**k, device=W.device).unsqueeze(1) >> rank) & 1
        patterns = 1.0 - 2.0 * bits.to(W)  # pattern 0 negates nothing
        covered = _covered(patterns, W, counts)
        offset = torch.where(patterns > 0, -lo, hi).sum(1)
        offset = torch.where(covered == covered.max(), offset, torch.inf)
        signs = patterns[int(offset.argmin())]
    else:
        signs = torch.ones(k, dtype=W.dtype, device=W.device)
        while True:
            flips = signs * (1.0 - 2.0 * torch.eye(k, dtype=W.dtype, device=W.device))
            gain = _covered(flips, W, counts) - _covered(signs, W, counts)
            if float(gain.max()) <= 0:
                break
            signs = flips[int(gain.argmax())]
    signs = signs.to(S)
    low, high = low.to(S), high.to(S)
    return S * signs, torch.where(signs > 0, low, -high), torch.where(signs > 0, high, -low)


# ---------------------------------------------------------------------------- carriers
@torch.no_grad()
def carry_subspace(model, Z, z_mean, S, low, collective=LOCAL, margin=0.0):
    """Make the encoder compute ``x_k = relu((z - z_mean) . S_k - low_k + margin)`` exactly,
    and the decoder the least-squares affine reconstruction of the rows ``Z`` from them.

    Each hidden encoder layer dedicates its first units to the subspace: a pair per
    direction when it is at least ``2 K`` wide (exact for every input), one shifted unit
    otherwise (exact where the shifted projection stays positive). The first units of each
    hidden decoder layer pass the x-features on unchanged (they are >= 0); the last layer
    is fitted to the moments of the x-features with ``Z`` (of every rank's rows with a
    ``collective``), and left as it is when the x-features are not finite. Returns how
    many directions are carried.
    """
    layers = model.encoder.layers
    K = layers[-1].out_features
    widths = [layer.out_features for layer in layers[:-1]]
    k = min([K, *widths, S.shape[1]])
    pairs = bool(widths) and min(widths) >= 2 * k
    S, low = S[:, :k].to(layers[0].weight), low[:k].to(layers[0].weight)
    bias = -(z_mean.to(S) @ S)
    shift = 1.0 - low  # hidden singles: p + shift >= 1 on every training row
    eye = torch.eye(k).to(S)
    if pairs:
        first_w, first_b = torch.cat([S.T, -S.T]), torch.cat([bias, -bias])
        pass_w = torch.cat([torch.cat([eye, -eye], 1), torch.cat([-eye, eye], 1)])
        read_w, read_b = torch.cat([eye, -eye], 1), -low + margin
    else:
        first_w, first_b = S.T, bias + shift
        pass_w = eye
        read_w, read_b = eye, -low + margin - shift
    if not widths:
        _set_rows(layers[0], S.T, bias - low + margin)
    else:
        _set_rows(layers[0], first_w, first_b)
        for layer in layers[1:-1]:
            _set_rows(layer, pass_w, torch.zeros(pass_w.shape[0]).to(S))
        _set_rows(layers[-1], read_w, read_b, rows=k)
    x_m = bound.moments(Z, Z, transform=model.encoder, collective=collective)
    if x_m is None:
        return k
    layers = model.decoder.layers
    passed = min([layers[0].in_features, *(layer.out_features for layer in layers[:-1])])
    eye = torch.eye(passed).to(layers[0].weight)
    for layer in layers[:-1]:
        _set_rows(layer, eye, torch.zeros(passed).to(eye))
    W, b, _ = bound.lstsq_head(x_m)  # (D, K), (D,)
    last = layers[-1]
    last.weight[:, :] = 0.0
    last.weight[:, :passed] = W[:, :passed].to(last.weight)
    last.bias[:] = b.to(last.bias)
    return k


def _set_rows(layer, w, b, rows=None):
    """Rows ``:len(w)`` of ``layer`` read only the first ``w.shape[1]`` inputs."""
    n = w.shape[0] if rows is None else rows
    layer.weight[:n] = 0.0
    layer.weight[:n, : w.shape[1]] = w[:n]
    layer.bias[:n] = b[:n]
