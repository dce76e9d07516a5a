"""The faithfulness reference: the best rank-K linear predictor of ``y`` from ``Z``.

Computed in closed form from chunk-accumulated float64 moments of the (scaled) training
data, so memory does not depend on the number of rows and streamed data work the same:

1. ridge least squares ``B = (Zc^T Zc + lam I)^-1 Zc^T Yc``, with ``lam`` chosen by
   generalised cross-validation from the eigenvalues of ``Zc^T Zc`` (no tuning constant);
2. reduced-rank regression: the fitted values ``Zc B`` projected on their top ``K``
   right singular vectors ``V_K``, giving ``y_hat = y_mean + (z - z_mean) B V_K V_K^T``.

No linear K-dimensional embedding of ``Z`` with a linear head (PCA, NMF, PLS) is more
faithful on the training rows, up to the ridge (plain least squares fits them closer
where rows are few for the features, by overfitting them). The spectrum of the fitted
values (``fitted_variance``) tells how much of ``y`` each further component can explain.
"""

import dataclasses

import numpy as np
import torch
from scipy.linalg.blas import dsyrk as _syrk

from sklearn_xnn._nn.collective import LOCAL

#: Numbers per chunk of a pass over rows (2 MB as float64: a chunk and the products read
#: from it stay in the CPU's cache; the passes' matrix products are as fast as with larger
#: chunks, the copies and narrow products up to twice as fast).
CHUNK_VALUES = 2**18
#: Ridge values tried by generalised cross-validation, relative to the mean eigenvalue.
RIDGE_GRID = 10.0 ** np.arange(-8.0, 1.5, 0.5)
#: Criteria closer than this share of the outputs' scatter are equal (an R² difference far
#: below float32 training's resolution): the largest such ridge is chosen.
RIDGE_RESOLUTION = 1e-9


def row_slices(n, n_cols):
    size = max(1, CHUNK_VALUES // max(1, n_cols))
    return [slice(i, i + size) for i in range(0, n, size)]


@dataclasses.dataclass
class Moments:
    """Float64 means and centred cross-products of ``Z`` (and ``Y``): ``zz`` and ``zy``
    are matrices, ``yy`` holds each output's centred sum of squares only (the ``C x C``
    scatter of many outputs is never needed, and costs ``N C^2``)."""

    n: int
    z_mean: torch.Tensor
    zz: torch.Tensor
    y_mean: torch.Tensor | None = None
    zy: torch.Tensor | None = None
    yy: torch.Tensor | None = None


@torch.no_grad()  # a transform's graph would otherwise keep every chunk alive
def moments(Z, Y=None, transform=None, collective=LOCAL):
    """Moments of ``transform(Z)`` (default: ``Z`` itself) and ``Y``, chunk by chunk.

    Sums are shifted by the first chunk's mean, so that centring loses no precision. With
    a :class:`~sklearn_xnn._nn.collective.Distributed` ``collective`` they are the moments
    of every rank's rows (:func:`combine`). None when ``transform(Z)`` is not finite (on
    any rank).
    """
    n = Z.shape[0]
    zs, ys = Chunks(), Chunks()
    s1 = s2 = sy = syy = sxy = None
    for s in row_slices(n, Z.shape[1]):
        zc = zs.load(Z[s] if transform is None else transform(Z[s]))
        if not torch.isfinite(zc).all():
            return None if collective.world == 1 else combine(None, collective)
        if s1 is None:
            zs.shift = zc.mean(0)
            D = zc.shape[1]
            s1 = zc.new_zeros(D)
            s2 = np.zeros((D, D), order="F") if zc.device.type == "cpu" else zc.new_zeros(D, D)
        zc.sub_(zs.shift)
        s1 += zc.sum(0)
        if isinstance(s2, np.ndarray):  # BLAS syrk: the upper triangle only, half the work
            _syrk(1.0, zc.numpy().T, beta=1.0, c=s2, overwrite_c=1)  # (D, n) Fortran = zc^T
        else:
            s2.addmm_(zc.T, zc)
        if Y is not None:
            yc = ys.load(Y[s])
            if sy is None:
                ys.shift = yc.mean(0)
                sy, syy = yc.new_zeros(yc.shape[1]), yc.new_zeros(yc.shape[1])
                sxy = zc.new_zeros(zc.shape[1], yc.shape[1])
            yc.sub_(ys.shift)
            sy += yc.sum(0)
            syy += torch.linalg.vecdot(yc, yc, dim=0)
            sxy.addmm_(zc.T, yc)
    if isinstance(s2, np.ndarray):  # the upper triangle, mirrored
        s2 = torch.from_numpy(np.triu(s2) + np.triu(s2, 1).T)
    dz = s1 / n
    out = Moments(n, zs.shift + dz, s2 - n * torch.outer(dz, dz))
    if Y is not None:
        dy = sy / n
        out.y_mean = ys.shift + dy
        out.yy = syy - n * dy * dy
        out.zy = sxy - n * torch.outer(dz, dy)
    return out if collective.world == 1 else combine(out, collective)


@dataclasses.dataclass
class Chunks:
    """One float64 buffer that every chunk of a pass is copied into (a new buffer per
    chunk would leave the allocator's heap fragmented, growing the process by about a
    chunk per chunk), and the pass's shift."""

    buffer: torch.Tensor | None = None
    shift: torch.Tensor | None = None

    def load(self, chunk):
        if self.buffer is None:
            self.buffer = torch.empty(chunk.shape, dtype=torch.float64, device=chunk.device)
        return self.buffer[: chunk.shape[0]].copy_(chunk)


@torch.no_grad()
def output_moments(Y, collective=LOCAL):
    """``(n, mean, scatter)`` of the columns of ``Y`` over every rank's rows: the row
    count, float64 means and centred sums of squares, chunk by chunk (shifted by the first
    row, so that centring loses no precision)."""
    n, C = Y.shape
    s1 = torch.zeros(C, dtype=torch.float64, device=Y.device)
    s2 = torch.zeros_like(s1)
    ys = Chunks()
    ys.shift = Y[:1].double()[0] if n else s1
    for s in row_slices(n, C):
        yc = ys.load(Y[s]).sub_(ys.shift)
        s1 += yc.sum(0)
        s2 += torch.linalg.vecdot(yc, yc, dim=0)
    mean, scatter = ys.shift + s1 / max(n, 1), s2 - s1 * s1 / max(n, 1)
    if collective.world == 1:
        return n, mean, scatter
    total = int(collective.sum(float(n)))
    all_mean = collective.sum(n * mean) / max(total, 1)
    return total, all_mean, collective.sum(scatter + n * (mean - all_mean) ** 2)


@torch.no_grad()
def head_moments(x, Y, y_mean, y_scatter, collective=LOCAL):
    """The :class:`Moments` of x-features ``x`` with outputs ``Y`` whose means and
    scatters (:func:`output_moments`) are known: the ``Y`` side costs one product
    ``(x - x_mean)^T Y`` per chunk and no pass over ``Y`` of its own. In float64
    throughout: a faithfulness error from moments, ``1 - R²``, subtracts sums of squares
    about as large as ``Y``'s own, and float32 products would leave it ``~1e-7 / (1 - R²)``
    off. None when ``x`` is not finite (on any rank)."""
    x = x.double()
    m = moments(x, collective=collective)
    if m is None:
        return None
    zy = torch.zeros(x.shape[1], Y.shape[1], dtype=torch.float64, device=x.device)
    ys = Chunks()
    for s in row_slices(x.shape[0], Y.shape[1]):
        zy.addmm_((x[s] - m.z_mean).T, ys.load(Y[s]))
    m.y_mean, m.yy, m.zy = y_mean, y_scatter, collective.sum(zy)
    return m


def combine(m, collective):
    """The moments of all ranks' rows from each rank's own ``m``, exactly (the parallel
    formula): ``mean = sum_r n_r mean_r / n`` and ``S = sum_r S_r + n_r d_r d_r^T`` with
    ``d_r = mean_r - mean`` (the cross terms likewise). None on every rank when one
    rank's rows are not finite."""
    if not collective.min(float(m is not None)):
        return None
    n = int(collective.sum(float(m.n)))
    z_mean = collective.sum(m.n * m.z_mean) / n
    dz = m.z_mean - z_mean
    out = Moments(n, z_mean, collective.sum(m.zz + m.n * torch.outer(dz, dz)))
    if m.y_mean is not None:
        out.y_mean = collective.sum(m.n * m.y_mean) / n
        dy = m.y_mean - out.y_mean
        out.yy = collective.sum(m.yy + m.n * dy * dy)
        out.zy = collective.sum(m.zy + m.n * torch.outer(dz, dy))
    return out


@dataclasses.dataclass
class Bound:
    """The rank-K reduced-rank regression of ``y`` on ``z`` and its training faithfulness."""

    z_mean: torch.Tensor
    y_mean: torch.Tensor
    coef: torch.Tensor  # (D, C) ridge least squares
    basis: torch.Tensor  # (C, r) top right singular vectors of the fitted values
    ridge: float
    fitted_variance: torch.Tensor  # (C,) eigenvalues of the fitted values' scatter, descending
    y_variance: torch.Tensor  # (C,) scatter of each output
    r2: float  # uniform-average R² of the rank-K predictor on the training rows
    curve: np.ndarray | None = None  # (rank,) that R² for every rank 1, 2, ...
    output_scale: torch.Tensor | float = 1.0  # coef and basis are of Y / output_scale

    def predict(self, Z):
        """The rank-K prediction of ``Y`` for rows ``Z`` (a tensor in training units)."""
        proj = (Z.double() - self.z_mean) @ (self.coef @ self.basis)  # the faithful subspace
        return self.y_mean + (proj @ self.basis.T) * self.output_scale


def canonical_signs(V):
    """``V`` with each column's largest-magnitude entry positive (eigenvectors have no sign
    of their own; fixing it makes the start the same for data that differ by rounding)."""
    if V.numel() == 0:
        return V
    pick = V.abs().argmax(0)
    sign = torch.sign(V[pick, torch.arange(V.shape[1])])
    return V * torch.where(sign == 0, 1.0, sign).to(V)


#: Columns beyond the rank ``n - 1`` that :func:`scatter_eigh` samples the range with.
RANGE_OVERSAMPLE = 8


def scatter_eigh(G, n, vectors=True):
    """``(evals, evecs)`` of the scatter ``G = Zc^T Zc`` of ``n`` rows: ascending eigenvalues
    (clamped at 0) and their eigenvectors (None without ``vectors``).

    With fewer rows than half the columns ``G``'s rank is at most ``n - 1``: its range is
    that of ``G`` times a block of ``n + 8`` fixed random columns, and the eigenpairs on it
    are those of ``G`` projected on that block's orthonormal basis, ``O(D^2 n)`` work
    instead of ``O(D^3)`` (``D = 4,000`` features: seconds). Only those ``n + 8`` pairs are
    returned; every direction left out has eigenvalue 0, and ``Zc^T Y`` has no part on it.
    """
    D = G.shape[0]
    if n + RANGE_OVERSAMPLE > D // 2:
        if not vectors:
            return torch.linalg.eigvalsh(G).clamp_min(0.0), None
        evals, evecs = torch.linalg.eigh(G)
        return evals.clamp_min(0.0), evecs
    gen = torch.Generator().manual_seed(0)
    block = torch.randn(D, n + RANGE_OVERSAMPLE, generator=gen, dtype=G.dtype).to(G.device)
    Q = torch.linalg.qr(G @ block).Q
    evals, U = torch.linalg.eigh(Q.T @ G @ Q)
    return evals.clamp_min(0.0), Q @ U


def reduced_rank(m, n_components, fraction=None, multioutput="uniform_average", standardize=False):
    """The :class:`Bound` of rank ``n_components`` from the moments ``m`` (with ``Y``).

    The ridge minimises generalised cross-validation, from ``eig(Zc^T Zc) = V diag(evals)
    V^T`` and ``V^T Zc^T Yc``. The ridges tried are :data:`RIDGE_GRID` times the mean
    eigenvalue, continued below the grid in the same steps down to float64's resolution
    of the largest eigenvalue, and the largest ridge whose criterion is within
    :data:`RIDGE_RESOLUTION` of the outputs' scatter of the smallest wins: where some
    units' scale dwarfs the others', the mean eigenvalue is theirs, and a search stopped
    higher would shrink the other units away, however much of ``Y`` they carry; where
    ``Y`` is exactly linear in ``Z`` the criterion falls to rounding at every small ridge,
    and the smallest would follow that rounding.

    With ``fraction`` the rank is chosen instead: the smallest one whose training R²
    reaches ``fraction`` of the full-rank predictor's (:func:`smallest_rank` on the
    curve). The bound's ``curve`` holds that R² for every rank ``1 .. r``, ``r`` the rank
    of the fitted values: their scatter is ``F = V diag(f) V^T``, so the rank-``k``
    predictor's fit and cross terms are running sums over the eigenpairs, and the whole
    curve costs ``O(C^2)``. R² is averaged over the outputs as ``multioutput`` says
    (:func:`r2_score`); the predictor minimises the sum of the outputs' squared errors in
    the units of the moments, so they must be standardised per output for
    ``"uniform_average"`` (``standardize`` divides each by its spread here, for outputs
    left in the caller's units) and share one scale for ``"variance_weighted"``.
    """
    y_var, scale = m.yy, 1.0
    if standardize:  # the bound of Y / scale, predicting in Y's units
        scale = torch.where(m.yy > 0, (m.yy / max(m.n, 1)).sqrt(), 1.0)
        m = dataclasses.replace(m, y_mean=m.y_mean / scale, zy=m.zy / scale, yy=m.yy / scale**2)
    D = m.zz.shape[0]
    evals, evecs = scatter_eigh(m.zz, m.n)
    rot = evecs.T @ m.zy  # (D, C), or (n + 8, C) with few rows: the rest is 0
    mean = float(evals.sum()) / D  # of all D eigenvalues, the zeros left out included
    total, energy = float(m.yy.sum()), (rot * rot).sum(1)  # energy: per eigenvector
    ridges, step = RIDGE_GRID * (mean if mean > 0 else 1.0), RIDGE_GRID[1] / RIDGE_GRID[0]
    floor = D * np.finfo(np.float64).eps * float(evals.max())
    below = int(np.ceil(np.log(ridges[0] / floor) / np.log(step))) if 0 < floor < ridges[0] else 0
    ridges = np.concatenate([ridges[0] / step ** np.arange(below, 0, -1), ridges])
    values = np.full(len(ridges), np.inf)  # the criterion, infinite with no degree of freedom left
    for i, lam in enumerate(ridges):
        shrink = evals / (evals + lam)
        fitted = float((energy * (2.0 - shrink) / (evals + lam)).sum())
        dof = float(shrink.sum())
        if dof < m.n - 1:
            values[i] = max(total - fitted, 0.0) / (1.0 - dof / m.n) ** 2
    lam = ridges[0]
    if np.isfinite(values.min()):  # the largest ridge within rounding of the least criterion
        lam = ridges[values <= values.min() + RIDGE_RESOLUTION * total][-1]
    scaled = rot / (evals + lam)[:, None]  # the ridge coefficients in the eigenbasis
    coef = evecs @ scaled  # (D, C)
    fitted = scaled.T @ (evals[:, None] * scaled)  # coef^T Zc^T Zc coef: the fitted scatter
    fvals, fvecs = torch.linalg.eigh((fitted + fitted.T) / 2)
    fvals, fvecs = fvals.flip(0).clamp_min(0.0), fvecs.flip(-1)
    rank = int((fvals > 1e-12 * max(float(fvals[0]), 1e-300)).sum()) or 1
    V = canonical_signs(fvecs[:, :rank])  # (C, r)
    P = coef.T @ m.zy  # (C, C): cross-products of fitted and true values
    cross = V * (V.T @ P).T  # cross[c, j] = V[c, j] (v_j^T P)_c
    fit = V**2 * fvals[:rank]  # fit[c, j] = f_j V[c, j]^2
    rss = m.yy[:, None] - 2 * cross.cumsum(1) + fit.cumsum(1)  # (C, r)
    curve = np.array([r2_score(rss[:, j], m.yy, multioutput) for j in range(rank)])
    k = smallest_rank(curve, fraction) if fraction is not None else n_components
    basis = V[:, : min(k, rank)]
    r2 = float(curve[basis.shape[1] - 1])  # the curve's value at the bound's rank
    return Bound(m.z_mean, m.y_mean * scale, coef, basis, lam, fvals, y_var, r2, curve, scale)


def variance_curve(m):
    """``(D,)`` float64: the fraction of ``Z``'s variance its top ``k`` principal directions
    explain, ``k = 1 .. D`` (the unsupervised counterpart of a :class:`Bound`'s ``curve``)."""
    evals = scatter_eigh((m.zz + m.zz.T) / 2, m.n, vectors=False)[0].flip(0)
    evals = torch.cat([evals, evals.new_zeros(m.zz.shape[0] - evals.numel())])
    total = float(evals.sum())
    if total <= 0:
        return np.ones(evals.numel())
    return (evals.cumsum(0) / total).cpu().numpy()


def smallest_rank(curve, fraction):
    """The smallest ``k`` whose ``curve[k - 1]`` reaches ``fraction`` of ``curve[-1]``."""
    top = float(curve[-1])
    if top <= 0:
        return 1
    return int(np.argmax(np.asarray(curve) >= fraction * top * (1.0 - 1e-12))) + 1


def r2_score(rss, y_var, multioutput="uniform_average"):
    """R² from each output's residual and total sums of squares, over the outputs that
    vary (1.0 when none does): ``mean_c (1 - rss_c / var_c)`` (``"uniform_average"``) or
    ``1 - sum_c rss_c / sum_c var_c`` (``"variance_weighted"``), as
    :func:`sklearn.metrics.r2_score` averages."""
    varying = y_var > 0
    if not bool(varying.any()):
        return 1.0
    if multioutput == "variance_weighted":
        return float(1.0 - rss[varying].sum() / y_var[varying].sum())
    return float(1.0 - (rss[varying] / y_var[varying]).mean())


def lstsq_head(x_moments, ridge=1e-9, multioutput="uniform_average"):
    """``(W, b)`` of the least-squares regression of ``Y`` on ``x`` and its training R²."""
    m = x_moments
    eye = torch.eye(m.zz.shape[0], dtype=m.zz.dtype, device=m.zz.device)
    gram = m.zz + ridge * (float(torch.trace(m.zz)) / m.zz.shape[0] + 1e-30) * eye
    W = torch.linalg.solve(gram, m.zy).T  # (C, K)
    b = m.y_mean - W @ m.z_mean
    return W, b, r2_score(head_rss(m, W, b), m.yy, multioutput)


def head_rss(x_moments, W, b):
    """Each output's residual sum of squares of the linear head ``x W^T + b`` on the rows
    whose moments are ``x_moments`` (float64, from the moments alone)."""
    m, W, b = x_moments, W.to(x_moments.zz), b.to(x_moments.zz)
    offset = m.y_mean - b - W @ m.z_mean
    return m.yy - 2 * (W * m.zy.T).sum(1) + ((W @ m.zz) * W).sum(1) + m.n * offset * offset
