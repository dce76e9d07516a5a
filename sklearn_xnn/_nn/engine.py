"""One training attempt from data in training units to a trained network.

``start`` builds the network and gives it the faithful closed-form start, ``attempt``
fine-tunes it and assesses the result (``begin`` then ``tune``, the two halves that
:mod:`sklearn_xnn._nn.batched` runs around a stacked fine-tuning), ``resume`` continues a
trained network on more data (``partial_fit``). The estimator orchestrates (validation,
scaling, the collapse guard, the fitted state); everything here is torch.
"""

import torch

from sklearn_xnn._nn import bound, data, init, training
from sklearn_xnn._nn.collective import LOCAL
from sklearn_xnn._nn.config import Attempt, History


def linear_reference(Z, Y, n_components, fraction=None, collective=LOCAL):
    """``(moments, bound, curve, k)``: the moments of ``Z`` (and ``Y``), computed once for
    the bound and every start; the rank-``k`` linear bound of ``Y`` (None without ``Y``);
    the faithfulness curve (the bound's R² for every rank, or without ``Y`` the variance
    fraction of ``Z``'s top principal directions); and the rank ``k``: ``n_components``,
    or with ``fraction`` the smallest rank whose curve value reaches that fraction of the
    last. Moments, bound and curve are None when ``Z`` is not finite. With a
    ``collective`` they are those of every rank's rows.
    """
    m = bound.moments(Z, Y, collective=collective)
    if m is None:
        return None, None, None, n_components or 1
    if Y is None:
        curve = bound.variance_curve(m)
        k = n_components if fraction is None else bound.smallest_rank(curve, fraction)
        return m, None, curve, k
    the_bound = bound.reduced_rank(m, n_components, fraction)
    k = n_components if fraction is None else the_bound.basis.shape[1]
    return m, the_bound, the_bound.curve, k


def start(Z, Y, cfg, generator, device, reference):
    """A new network at the faithful start; returns ``(model, interrupted)``.

    ``interrupted`` is True when a ``KeyboardInterrupt`` cut layer-wise pre-training short
    (the faithful start is still applied, so the network is usable).
    """
    model = init.build_model(Z.shape[1], cfg.n_outputs, cfg, generator, device)
    interrupted = False
    if cfg.pretrain:
        try:
            init.pretrain_layers(model, Z, cfg, generator)
        except KeyboardInterrupt:
            interrupted = True
    m, the_bound = reference
    if m is None or not training.finite_weights(model):
        return model, interrupted  # the caller's finiteness check reports it
    comm = cfg.collective
    S, low = sparse_start(Z, Y, m, the_bound, cfg, generator)
    init.carry_subspace(model, m.z_mean, S, low)
    x_m = bound.moments(Z, Z, transform=model.encoder, collective=comm)
    if x_m is not None:
        init.decoder_from_lstsq(model, x_m)
    if model.head is not None:
        fit = training.lstsq_head(model, Z, Y, collective=comm)
        if fit is not None:
            init.set_head(model.head, *fit[:2])
    comm.broadcast_module(model)  # as DistributedDataParallel does: rank 0's start
    return model, interrupted


#: The starts (FastICA rotations) :func:`sparse_start` tries when the first is not sparser
#: than the PCA explanation.
START_ROTATIONS = 3


def sparse_start(Z, Y, m, the_bound, cfg, generator):
    """``(S, low)``: the directions the start carries and the offsets it cuts them at
    (:func:`start_directions`, then :func:`sparse_offsets`).

    The independent directions are a local optimum of FastICA, drawn from ``generator``;
    training keeps most of the start's sparsity (or, where every epoch after the first
    is infeasible, all of it). So when the start's explanation has no fewer significant
    x-features per input on the training rows than the rank-K PCA explanation
    (``cfg.pca_sparsity``, :func:`pca_sparsity`), up to :data:`START_ROTATIONS`
    rotations are drawn and the start with the best :func:`start_score` is kept (the
    most top outputs explained, then the fewest significant x-features). Measured on 17
    layers and data sets, 3 seeds each, on 1 and 2 threads: of the four fits that had
    ended less sparse than PCA, three ended sparser with the kept start alone (the
    fourth with ``n_init="auto"``), for about 20 ms where more rotations are drawn.
    """
    best, S, low = _scored_start(Z, Y, m, the_bound, cfg, generator)
    if best is None:
        return S, low
    reference = cfg.pca_sparsity
    if reference is None or best[1] < reference:
        return S, low
    for _ in range(START_ROTATIONS - 1):
        score, S2, low2 = _scored_start(Z, Y, m, the_bound, cfg, generator)
        if score < best:
            best, S, low = score, S2, low2
    return S, low


def _scored_start(Z, Y, m, the_bound, cfg, generator):
    """``(score, S, low)`` of one start; the score (:func:`start_score`) is None where
    the start is not cut (:func:`sparse_offsets`)."""
    S, low = start_directions(Z, Y, m, the_bound, cfg, generator)
    low, fit = sparse_offsets(Z, Y, m.z_mean, S, low, cfg)
    if fit is None:
        return None, S, low
    _, x, weight, Ys = fit
    return start_score(x, weight, Ys, cfg), S, low


def start_directions(Z, Y, m, the_bound, cfg, generator):
    """``(S, low)``: the directions the start carries and their lowest training projections.

    The faithful subspace (:func:`init.faithful_subspace`) is rotated into its most
    independent directions (FastICA) and oriented by :func:`init.explaining_signs`. With
    outputs and ``"mse"`` faithfulness the start may instead split two-sided directions
    in halves (:func:`init.split_directions`), one, two, ... of them, either of those
    directions or of the subspace rotated so that its least-squares head is varimax-simple
    (which gathers an output pair explained by the two ends of one direction onto one
    direction). A split drops a direction, so it is a candidate only while it leaves
    training at least half the slack the unsplit start leaves; among the candidates the
    start takes the one the kept epoch is judged by (:func:`start_score`): the most top
    outputs explained, then the fewest significant x-features. Splits are considered only
    when training keeps its sparsest faithful epoch (``fit``, not ``partial_fit``): from a
    split start the regularisers can lead away from the split's sparsity (measured: 1.55
    to 1.82 significant x-features over 16 chunks of planted data, where the independent
    directions went from 1.66 to 1.50), and only the kept epoch guards against that.
    (Unsplit, the varimax directions were measured to train to less sparse explanations
    than the independent ones, so they are not a candidate of their own.)
    """
    comm = cfg.collective
    S0 = init.faithful_subspace(m, the_bound, cfg.n_components)
    S, low, high = init.unmixed_directions(Z, m, S0, generator, collective=comm)
    if Y is None or cfg.faith_target is None:
        return S, low
    counts = training.top_counts(Y, cfg)
    candidates = [init.explaining_signs(m, S, low, high, counts)[:2]]
    if cfg.faithfulness == "kl" or not cfg.keeps_epochs:
        return candidates[0]
    sources = [candidates[0]]
    simple = init.varimax_directions(m, S0)
    if simple is not None:
        r = init.unmixed_directions(Z, m, simple, generator, False, comm)
        sources.append(init.explaining_signs(m, *r, counts)[:2])
    for S, low in sources:
        for n_split in range(1, S.shape[1] // 2 + 1):
            split = init.split_directions(m, S, low, counts, n_split)
            if split is not None:
                candidates.append(split)
    scored = [_start_fit(Z, Y, m.z_mean, S, low, cfg) for S, low in candidates]
    error = scored[0][0]
    admissible = error + 0.5 * max(cfg.faith_target - error, 0.0)
    keep = [i for i, fit in enumerate(scored) if i == 0 or fit[0] <= admissible]
    if len(keep) == 1:
        return candidates[0]
    ranked = [(start_score(*scored[i][1:], cfg), i) for i in keep]
    return candidates[min(ranked)[1]]


#: The offset shares :func:`sparse_offsets` tries, largest first, until one costs too much.
OFFSET_SHARES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


def sparse_offsets(Z, Y, z_mean, S, low, cfg):
    """``(offsets, fit)``: the offsets the start's x-features ``relu((z - z_mean) . S_k -
    offset_k)`` use, and the :func:`_cut_fit` of the start cut there (``(low, None)``
    without outputs, without the constraint and for ``"kl"``, where nothing is cut):
    ``low`` (each direction's lowest training projection: every row positive, nothing
    lost) raised to ``share * low``, the share lowered through :data:`OFFSET_SHARES` for
    as long as the cut start spends at most half the slack the uncut one leaves under the
    faithfulness target and leaves no more top outputs unexplained.

    Offsetting every direction by its minimum makes every x-feature positive on every
    row, so every contribution ``x_k W_ck`` counts: the start is denser than it needs to
    be. The projections are centred, so ``low < 0`` and ``share * low`` cuts the rows
    closest to each direction's low end, where the least-squares head reads little (the
    error is measured, not assumed). The other half of the slack is left to training.
    """
    if Y is None or cfg.faith_target is None or cfg.faithfulness == "kl":
        return low, None
    p, Ys = _start_projections(Z, Y, z_mean, S, cfg)  # read once, cut many times
    fit = _cut_fit(p, Ys, low, cfg)
    error, x, weight, _ = fit
    allowed = error + 0.5 * max(cfg.faith_target - error, 0.0)
    unexplained = unexplained_share(x, weight, Ys, cfg)
    kept = low
    for share in OFFSET_SHARES:
        cut = _cut_fit(p, Ys, share * low, cfg)
        error, x, weight, _ = cut
        if error > allowed or unexplained_share(x, weight, Ys, cfg) > unexplained:
            break
        kept, fit = share * low, cut
    return kept, fit


def _start_fit(Z, Y, z_mean, S, low, cfg):
    """``(error, x, weight, Y)`` of the start that carries ``S`` from ``low``
    (:func:`_cut_fit` of :func:`_start_projections`)."""
    return _cut_fit(*_start_projections(Z, Y, z_mean, S, cfg), low, cfg)


@torch.no_grad()
def _start_projections(Z, Y, z_mean, S, cfg, max_rows=4096):
    """``(p, Y)``: the projections ``(z - z_mean) @ S`` (float64) of (up to ``max_rows``
    of) every rank's first rows, and those rows' outputs."""
    rows = slice(0, min(Z.shape[0], max(1, max_rows // cfg.collective.world)))
    Zs, Ys = Z[rows], Y[rows]
    return (Zs.double() - z_mean.to(Zs.device)) @ S.to(Zs.device), Ys


@torch.no_grad()
def _cut_fit(p, Ys, low, cfg):
    """``(error, x, weight, Y)`` of the x-features ``relu(p - low)`` of projections ``p``:
    them, their least-squares head (over every rank's rows) and its error ``1 - R²``."""
    x = (p - low.to(p.device)).clamp_min(0.0).to(Ys.dtype)
    weight, _, r2 = bound.lstsq_head(bound.moments(x, Ys, collective=cfg.collective))
    return 1.0 - r2, x, weight.to(x), Ys


def start_score(x, weight, Y, cfg):
    """``(unexplained share, significant count)`` of x-features ``x`` under the head
    ``weight`` on the rows of ``Y`` (of every rank): the share of rows whose top output
    gets no positive contribution, then :func:`training.significant_count` (row-weighted
    over the ranks)."""
    n = float(x.shape[0])
    sig = training.significant_count(x, weight) * n
    total = cfg.collective.sum(torch.tensor([sig, n], dtype=torch.float64))
    return unexplained_share(x, weight, Y, cfg), float(total[0] / total[1])


@torch.no_grad()
def pca_sparsity(Z, Y, reference, collective=LOCAL):
    """The mean number of significant x-features per input
    (:func:`training.significant_count`) of the rank-K PCA explanation of the training
    rows: the scores ``(z - z_mean) @ V`` on the top principal directions ``V``, under
    their least-squares head (fitted on every row, from the moments), counted on the rows
    ``significant_count`` reads of an explainer's own x-features (of every rank,
    row-weighted). None without outputs.
    """
    m, the_bound = reference
    if Y is None or the_bound is None or the_bound.principal is None:
        return None
    V = the_bound.principal
    k = V.shape[1]  # the scores' moments: they are centred
    scores = bound.Moments(m.n, V.new_zeros(k), V.T @ m.zz @ V, m.y_mean, V.T @ m.zy, m.yy)
    weight = bound.lstsq_head(scores)[0]
    rows = training.significant_rows(Z.shape[0], weight)
    x = V.new_empty(rows, k)
    for s in bound.row_slices(rows, Z.shape[1]):  # chunks: Z may be streamed from disk
        s = slice(s.start, min(s.stop, rows))  # the last chunk stops at the rows read
        x[s] = (Z[s].to(V.device, torch.float64) - m.z_mean) @ V
    n = float(x.shape[0])
    sig = training.significant_count(x, weight.to(x.device)) * n
    total = collective.sum(torch.tensor([sig, n], dtype=torch.float64))
    return float(total[0] / total[1])


def unexplained_share(x, weight, Y, cfg):
    """The share of the rows of ``Y`` (of every rank) whose top output gets no positive
    contribution from x-features ``x`` under the head ``weight`` (0 with one output)."""
    shares = training.explained_shares(x, weight, Y, cfg)
    if shares is None:
        return 0.0
    return round(1.0 - float(shares[0].sum() / shares[1].sum().clamp_min(1.0)), 9)


def final_head(model, Z, Y, cfg):
    """Set the head to the least-squares head on the final x-features when that is more
    faithful on the training rows; returns the kept head's training faithfulness: R²
    (uniform over outputs) for ``"mse"``, the mean softmax KL for ``"kl"``.

    Under the faithfulness constraint every epoch ends with the head chosen for its
    x-features (:func:`training.explaining_head`, which takes the least-squares head
    unless it leaves an output unexplained), so the kept head stays.
    """
    if cfg.faithfulness == "kl":
        return training.refit_head(model, Z, Y, cfg)
    trained = training.heldout_r2(model, Z, Y, collective=cfg.collective)
    if cfg.faith_target is not None:
        return trained
    fit = training.lstsq_head(model, Z, Y, collective=cfg.collective)
    if fit is not None and fit[2] >= trained:
        init.set_head(model.head, *fit[:2])
        return fit[2]
    return trained


def attempt(Z, Y, cfg, generator, device, reference, val=None):
    """Start, fine-tune and assess one network: an :class:`Attempt`."""
    model, done = begin(Z, Y, cfg, generator, device, reference)
    return done if done is not None else tune(model, Z, Y, cfg, generator, val)


def tune(model, Z, Y, cfg, generator, val=None):
    """Fine-tune and assess a started network (see :func:`begin`): an :class:`Attempt`."""
    history, opt, lam = _fine_tune(model, Z, Y, cfg, generator, val)
    return assess(model, Z, Y, history, opt, cfg, lam)


def begin(Z, Y, cfg, generator, device, reference):
    """The start of an attempt: ``(model, None)`` for a network to fine-tune, or
    ``(model, attempt)`` when there is nothing to fine-tune (a non-finite start, or
    pre-training cut short by a ``KeyboardInterrupt``)."""
    model, interrupted = start(Z, Y, cfg, generator, device, reference)
    if not training.finite_weights(model):
        stage = "layer-wise pre-training" if cfg.pretrain else "initialisation"
        return model, assess(model, Z, Y, History(), None, cfg, cfg.alpha_f, stage=stage)
    if interrupted:
        history = History(interrupted_in_pretraining=True)
        return model, assess(model, Z, Y, history, None, cfg, cfg.alpha_f)
    return model, None


def resume(model, opt, Z, Y, cfg, generator, multiplier, start_epoch):
    """Continue training ``model`` on ``(Z, Y)`` (one ``partial_fit`` chunk)."""
    history, opt, lam = _fine_tune(
        model, Z, Y, cfg, generator, None, opt=opt, multiplier=multiplier, start_epoch=start_epoch
    )
    return assess(model, Z, Y, history, opt, cfg, lam)


def _fine_tune(model, Z, Y, cfg, generator, val, **kwargs):
    """:func:`training.fine_tune`; a non-finite loss ends it with the last finite weights."""
    try:
        return training.fine_tune(model, Z, Y, cfg, generator, val, **kwargs)
    except training.NonFiniteLossError as exc:
        exc.history.diverged_epoch = exc.epoch
        return exc.history, kwargs.get("opt"), kwargs.get("multiplier") or cfg.alpha_f


def assess(model, Z, Y, history, opt, cfg, lam, stage=None):
    """The :class:`Attempt` of a trained network: the final head, its x-features, collapse."""
    faithfulness = None
    if stage is None and model.head is not None and training.finite_weights(model):
        faithfulness = final_head(model, Z, Y, cfg)
    x = None
    if training.finite_weights(model):  # every rank's rows, in rank order
        x = cfg.collective.all_gather_rows(training.encode(model, Z))
    weight = None if model.head is None else model.head.weight.detach()
    collapsed, balance = collapse_state(x, weight) if x is not None else (True, 0.0)
    alphas = (cfg.alpha_f, cfg.alpha_r, cfg.alpha_p)
    return Attempt(
        model,
        history,
        opt,
        x,
        collapsed,
        balance,
        alphas,
        lam,
        faithfulness,
        stage or "fine-tuning",
    )


def collapse_state(x, weight, min_ratio=0.3):
    """Whether the x-features collapsed, and how balanced their contributions' spreads are.

    With one output the spread of x-feature ``k``'s contribution is ``std_i(x_ik) W_k``
    (signed: positive when it raises the output); with several outputs it is the
    magnitude ``std_i(x_ik) ||W_:k||``. A constant part of a contribution explains
    nothing (the head's bias can hold it), so spreads, not means, are compared.
    Collapsed means fewer than two positive spreads, or the second largest under
    ``min_ratio`` of the largest. Returns ``(collapsed, second / largest)``.
    """
    spread = x.double().std(0).cpu() if x.shape[0] > 1 else x.double().abs().mean(0).cpu()
    if weight is None:
        score = spread
    elif weight.shape[0] == 1:
        score = spread * weight[0].double().cpu()
    else:
        score = spread * torch.linalg.vector_norm(weight.double().cpu(), dim=0)
    top = torch.sort(score, descending=True).values
    if top.numel() < 2:
        return False, 1.0
    if top[0] <= 0:
        return True, 0.0
    ratio = float(max(top[1], 0.0) / top[0])
    return (int((score > 0).sum()) < 2 or ratio < min_ratio), ratio


#: The seed of the validation split: every explainer fitted on the same rows holds out the
#: same ones, whatever its ``random_state`` (seeds and settings are compared on one split,
#: and explainers fitted together share their training rows and train stacked).
SPLIT_SEED = 0


def split_rows(Zt, Yt, n_val, device):
    """``((Z_train, Y_train), (Z_val, Y_val) or None)``: ``n_val`` random rows held out
    (drawn from :data:`SPLIT_SEED`)."""
    if not n_val:
        return (Zt, Yt), None
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    order = torch.randperm(Zt.shape[0], generator=generator).to(device)
    val, train = order[:n_val], order[n_val:]
    pick = data.take_rows
    return (pick(Zt, train), pick(Yt, train)), (pick(Zt, val), pick(Yt, val))


def validation_target(val, the_bound, tol, cfg):
    """``(Z_val, Y_val, target)``: the constraint on the validation rows (or None)."""
    if val is None:
        return None
    Zv, Yv = val
    if the_bound is None or tol is None or Yv is None:
        return Zv, Yv, None
    reference = training.prediction_error(the_bound.predict, Zv, Yv, cfg)
    if cfg.faithfulness == "kl":
        return Zv, Yv, min(float(tol), reference)
    return Zv, Yv, max(reference, 0.0) + float(tol)
