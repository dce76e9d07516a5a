"""One training attempt from data in training units to a trained network.

``start`` builds the network and gives it the faithful closed-form start, ``attempt``
starts, fine-tunes and assesses one (``start`` then ``tune``, the two halves that
:mod:`sklearn_xnn._nn.batched` runs around a stacked fine-tuning); ``tune`` also continues
a trained network on more data (``partial_fit``). The estimator orchestrates (validation,
scaling, the fitted state); everything here is torch.
"""

import torch

from sklearn_xnn._nn import bound, data, init, training
from sklearn_xnn._nn.collective import LOCAL
from sklearn_xnn._nn.config import Attempt, History


def linear_reference(
    Z, Y, n_components, fraction=None, collective=LOCAL, multioutput="uniform_average",
    standardize=False,
):  # fmt: skip
    """``(moments, bound, curve, k)``: the moments of ``Z`` (and ``Y``), computed once for
    the bound and every start; the rank-``k`` linear bound of ``Y`` (None without ``Y``);
    the faithfulness curve (the bound's R² for every rank, or without ``Y`` the variance
    fraction of ``Z``'s top principal directions); and the rank ``k``: ``n_components``,
    or with ``fraction`` the smallest rank whose curve value reaches that fraction of the
    last. Moments, bound and curve are None when ``Z`` is not finite. With a
    ``collective`` they are those of every rank's rows. ``standardize``: ``Y`` is in the
    caller's units, and the bound weighs its outputs itself (:func:`bound.reduced_rank`).
    """
    m = bound.moments(Z, Y, collective=collective)
    if m is None:
        return None, None, None, n_components or 1
    if Y is None:
        curve = bound.variance_curve(m)
        k = n_components if fraction is None else bound.smallest_rank(curve, fraction)
        return m, None, curve, k
    the_bound = bound.reduced_rank(m, n_components, fraction, multioutput, standardize)
    k = n_components if fraction is None else the_bound.basis.shape[1]
    return m, the_bound, the_bound.curve, k


def start(Z, Y, cfg, generator, device, reference, targets=None):
    """A new network at the faithful start: ``(model, None)`` for a network to fine-tune,
    or ``(model, attempt)``, its :class:`Attempt`, when there is nothing to fine-tune (a
    non-finite start, or layer-wise pre-training cut short by a ``KeyboardInterrupt``:
    the faithful start is still applied, so the network is usable).

    The encoder carries the faithful subspace (:func:`init.faithful_subspace`) rotated to
    its simplest directions (:func:`init.simple_directions`, varimax) and oriented so that
    their long tails are positive (:func:`init.oriented_directions`); with two or more
    outputs under the constraint, oriented instead so that the most rows get a positive
    contribution to their top output (:func:`init.explaining_signs`); each x-feature
    offset as :func:`sparse_offsets` chooses. The decoder and the head are the
    least-squares ones on those x-features. Every step is deterministic: the start
    depends on the data only, not on the seed.
    """
    model = init.build_model(Z.shape[1], cfg.n_outputs, cfg, generator, device)
    interrupted = False
    if cfg.pretrain:
        try:
            init.pretrain_layers(model, Z, cfg, generator)
        except KeyboardInterrupt:
            interrupted = True
    m, the_bound = reference
    if m is not None and training.finite_weights(model):  # m is None: Z is not finite
        comm = cfg.collective
        if targets is None and Y is not None:
            targets = training.Targets(Y, cfg)
        S0 = init.faithful_subspace(m, the_bound, cfg.n_components)
        S, low, high = init.oriented_directions(Z, m, init.simple_directions(m, S0), comm)
        if targets is not None and cfg.faith_target is not None:
            S, low = init.explaining_signs(m, S, low, high, targets.counts)[:2]
        low = sparse_offsets(Z, targets, m.z_mean, S, low, cfg)
        low = torch.where(S.any(0), low, -1.0)  # no direction left: the constant x-feature 1
        init.carry_subspace(model, Z, m.z_mean, S, low, comm)
        if model.head is not None and targets is not None:
            h_m = targets.head_moments(training.encode(model, Z), cfg)
            if h_m is not None:
                W, b = bound.lstsq_head(h_m)[:2]
                model.head.load_state_dict({"weight": W, "bias": b})
        comm.broadcast_module(model)  # as DistributedDataParallel does: rank 0's start
    if not training.finite_weights(model):
        stage = "layer-wise pre-training" if cfg.pretrain else "initialisation"
        return model, assess(model, Z, Y, History(), None, cfg, cfg.alpha_f, stage=stage)
    if interrupted:
        history = History(interrupted_in_pretraining=True)
        return model, assess(model, Z, Y, history, None, cfg, cfg.alpha_f)
    return model, None


#: The offset shares :func:`sparse_offsets` tries, largest first, until one costs too much.
OFFSET_SHARES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


def sparse_offsets(Z, targets, z_mean, S, low, cfg):
    """The offsets the start's x-features ``relu((z - z_mean) . S_k - offset_k)`` use
    (``low`` without outputs, without the constraint and for ``"kl"``, where nothing is
    cut):
    ``low`` (each direction's lowest training projection: every row positive, nothing
    lost) raised to ``share * low``, the share lowered through :data:`OFFSET_SHARES` for
    as long as the cut start spends at most half the slack the uncut one leaves under the
    faithfulness target and leaves no more top outputs unexplained.

    Offsetting every direction by its minimum makes every x-feature positive on every
    row, so every contribution ``x_k W_ck`` counts: the start is denser than it needs to
    be. The projections are centred, so ``low < 0`` and ``share * low`` cuts the rows
    closest to each direction's low end, where the least-squares head reads little (the
    error is measured, not assumed, on every training row: the same offsets however the
    rows are sharded). The other half of the slack is left to training.
    """
    if targets is None or cfg.faith_target is None or cfg.faithfulness == "kl":
        return low
    p = init.project(Z, z_mean, S)  # every row, read once and cut many times
    kept = limits = None
    for share in (1.0, *OFFSET_SHARES):
        # the cut x-features under their least-squares head, over every rank's rows: its
        # error 1 - R² and the share of the rows whose top output gets no positive
        # contribution (0 with one output)
        with torch.no_grad():
            x = (p - share * low.to(p.device)).clamp_min(0.0).to(targets.Y.dtype)
            m = targets.head_moments(x, cfg)
            weight, _, r2 = bound.lstsq_head(m, multioutput=cfg.multioutput)
            shares = training.explained_shares(x, weight.to(x), targets, cfg)
        error, lost = 1.0 - r2, 0.0
        if shares is not None:
            lost = round(1.0 - float(shares[0].sum() / shares[1].sum().clamp_min(1.0)), 9)
        if limits is None:  # the uncut start: the error allowed, the rows it explains
            limits = (error + 0.5 * max(cfg.faith_target - error, 0.0), lost)
        elif error > limits[0] or lost > limits[1]:
            break
        kept = share * low
    return kept


def attempt(Z, Y, cfg, generator, device, reference, val=None):
    """Start, fine-tune and assess one network: an :class:`Attempt`. The outputs'
    :class:`~sklearn_xnn._nn.training.Targets` are computed once for all three (each
    step builds its own when not given them)."""
    targets = None if Y is None else training.Targets(Y, cfg)
    model, done = start(Z, Y, cfg, generator, device, reference, targets)
    if done is not None:
        return done
    return tune(model, Z, Y, cfg, generator, val, targets=targets)


def tune(
    model, Z, Y, cfg, generator, val=None, opt=None, multiplier=None, start_epoch=0, targets=None
):
    """Fine-tune and assess a started network (see :func:`start`), or continue training
    one on more data (``partial_fit``: its ``opt``, ``multiplier`` and ``start_epoch``):
    an :class:`Attempt`. A non-finite loss ends training with the last finite weights."""
    try:
        history, opt, lam = training.fine_tune(
            model, Z, Y, cfg, generator, val, opt, multiplier, start_epoch, targets
        )
    except training.NonFiniteLossError as exc:
        exc.history.diverged_epoch = exc.epoch
        history, lam = exc.history, exc.multiplier
    attempt = assess(model, Z, Y, history, opt, cfg, lam.current(cfg), targets=targets)
    attempt.constraints = lam
    return attempt


def assess(model, Z, Y, history, opt, cfg, lam, stage=None, targets=None):
    """The :class:`Attempt` of a trained network: its x-features and, after fine-tuning,
    its final head and that head's training faithfulness (R² averaged as ``multioutput``
    says for ``"mse"``, the mean softmax KL for ``"kl"``).

    Under the faithfulness constraint the head is the one the kept epoch ended with
    (:func:`training.epoch_head`, which kept it within the constraints); for ``"kl"``, or
    without the constraint, :func:`training.epoch_head` chooses again on the final
    x-features, without a target: the more faithful of the exact and the trained head.
    """
    faithfulness = x = None
    if training.finite_weights(model):
        x = training.encode(model, Z)  # this rank's rows, for the final head
        if stage is None and model.head is not None:
            targets = training.Targets(Y, cfg) if targets is None else targets
            if cfg.faith_target is None or cfg.faithfulness == "kl":
                error = training.epoch_head(model, x, targets, cfg, None)[0]
            else:
                error = training.head_error(model.head, x, targets, cfg)
            faithfulness = error if cfg.faithfulness == "kl" else 1.0 - error
        x = cfg.collective.all_gather_rows(x)  # every rank's rows, in rank order
    return Attempt(model, history, opt, x, lam, faithfulness, stage or "fine-tuning")


#: The seed of the validation split: every explainer fitted on the same rows holds out the
#: same ones, whatever its ``random_state`` (seeds and settings are compared on one split,
#: and explainers fitted together share their training rows and train stacked).
SPLIT_SEED = 0


def split_rows(Zt, Yt, n_val, device):
    """``((Z_train, Y_train), (Z_val, Y_val))``: ``n_val`` random rows held out (drawn from
    :data:`SPLIT_SEED`)."""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    order = torch.randperm(Zt.shape[0], generator=generator).to(device)
    val, train = order[:n_val], order[n_val:]
    pick = data.take_rows
    return (pick(Zt, train), pick(Yt, train)), (pick(Zt, val), pick(Yt, val))


def validation_target(val, the_bound, tol, cfg):
    """``(Z_val, Y_val, target)``: the constraint on the validation rows ``val``."""
    Zv, Yv = val
    if the_bound is None or tol is None or Yv is None:
        return Zv, Yv, None
    reference = training.prediction_error(the_bound.predict, Zv, Yv, cfg)
    if cfg.faithfulness == "kl":
        return Zv, Yv, min(float(tol), reference)
    return Zv, Yv, max(reference, 0.0) + float(tol)
