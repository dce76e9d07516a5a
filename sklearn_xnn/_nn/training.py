"""Fine-tuning as a plain function: the SRAE objective under its constraints.

Data arrive as float32 tensors (or streaming sources) on the training device. Minibatches
are an index permutation drawn from the CPU generator; the step loop never synchronises
with the host (losses and multipliers stay on the device, read once per epoch).

**The constraints.** With ``cfg.faith_target`` set, the objective is the Lagrangian
``lam * (e_faith - target) + alpha_r L_rec + alpha_p L_pt`` with ``e_faith`` the
normalised faithfulness error ``mean_c MSE_c / var_c`` (``1 - R²``; for ``"kl"`` the
softmax KL of the logits). After every step the multiplier follows the constraint (``log
lam += rate * (e_faith - target) / slack``, clipped: :func:`start_multiplier`), as in GECO
(Rezende & Viola, 2018): it grows while the explainer is less faithful than the target
and shrinks while it has room to spare, so the alphas only trade reconstruction against
pull-away, whatever the data's scale or number of outputs. With two outputs or more a
second multiplier holds, in the same way, the share of rows whose top output gets no
positive contribution to the start's share plus :data:`SHORTFALL_TOL`; its term acts on
those rows alone (:func:`~sklearn_xnn._nn.losses.uncovered`), so the slack buys sparser
explanations, not rows switched off. The learning rate warms up linearly over the first
steps, so Adam's first updates cannot throw the start away.

**One feasibility rule, one selection.** An epoch is *feasible* when it meets the
faithfulness target (on the training rows, and on the validation rows when given), the
rows whose top output the start explained stay explained (:func:`explained_shares`, per
output, so that no output's losses are offset by another's gains; with two or more
outputs), up to :data:`SHORTFALL_TOL` of all rows, and no x-feature is dead. It ends with
the head, exact least-squares or trained, that misses those constraints by less
(:func:`epoch_head`). Training keeps the feasible epoch with the fewest significant
x-features. The start is feasible by construction (for ``"kl"`` it may miss its target;
while no epoch meets it the smallest excess wins), so the fitted explainer is faithful,
explains the rows its start explained (all but :data:`SHORTFALL_TOL` of the rows at most)
and has no dead x-feature, whatever happened in between. The checks read the outputs
through :class:`Targets`, computed once per run: an epoch's head and its error come from
float64 moments of the x-features with ``Y``, not from passes over the ``N x C`` outputs.
"""

import copy
import logging
import math

import numpy as np
import torch

from sklearn_xnn._nn import bound, data
from sklearn_xnn._nn.collective import LOCAL
from sklearn_xnn._nn.config import History, Multiplier, adam, schedule
from sklearn_xnn._nn.losses import (
    constraint_terms,
    covers_rows,
    epoch_subsets,
    faithfulness_error,
    logits,
    softmax_kl,
    srae_terms,
    top_outputs,
    uncovered,
    weighted_loss,
)

logger = logging.getLogger("sklearn_xnn")


class NonFiniteLossError(ArithmeticError):
    """Raised when the training loss stops being finite; carries the epoch it happened in,
    the history, and (from :func:`fine_tune`) the multipliers the run started from."""

    def __init__(self, epoch, history, multiplier=None):
        super().__init__(f"the training loss became non-finite in epoch {epoch + 1}")
        self.epoch = epoch
        self.history = history
        self.multiplier = multiplier


@torch.no_grad()
def encode(model, Z):
    """The x-features of every row of ``Z`` (no dropout), in chunks, into one tensor."""
    out = torch.empty(Z.shape[0], model.encoder.layers[-1].out_features, device=Z.device)
    for s in bound.row_slices(Z.shape[0], Z.shape[1]):
        out[s] = model.encoder(Z[s])
    return out


@torch.no_grad()
def _prediction_r2(predict, Z, Y, collective, multioutput="uniform_average"):
    """R² of ``predict`` on ``(Z, Y)`` (averaged over the outputs as ``multioutput``
    says), chunk by chunk, over every rank."""
    rss = torch.zeros(Y.shape[1], dtype=torch.float64, device=Y.device)
    for s in bound.row_slices(Z.shape[0], Z.shape[1]):
        rss += ((predict(Z[s]) - Y[s]).double() ** 2).sum(0)
    y_var = bound.output_moments(Y, collective)[2]
    return bound.r2_score(collective.sum(rss), y_var, multioutput)


@torch.no_grad()
def prediction_error(predict, Z, Y, cfg):
    """The faithfulness error of ``predict`` (rows of ``Z`` to training-unit outputs) on
    ``(Z, Y)``: ``1 - R²`` (averaged over the outputs as ``cfg.multioutput`` says, with
    ``Y``'s own variances) for ``"mse"``, the mean softmax KL for ``"kl"``; over every
    rank's rows."""
    if cfg.faithfulness != "kl":
        return 1.0 - _prediction_r2(predict, Z, Y, cfg.collective, cfg.multioutput)
    total = 0.0
    for s in bound.row_slices(Z.shape[0], Z.shape[1]):
        y_hat = logits(predict(Z[s]).double(), cfg)
        kl = softmax_kl(y_hat, logits(Y[s].double(), cfg), cfg.temperature)
        total += float(kl) * (min(s.stop, Z.shape[0]) - s.start)
    return cfg.collective.row_mean(total / max(Z.shape[0], 1), Z.shape[0])


class Targets:
    """The outputs ``Y`` of a run's rows (training units) and what every check reads of
    them, computed in one pass: each output's ``mean`` and centred sum of squares
    ``scatter`` (float64, over every rank's rows), each row's ``top`` output (its largest
    logit in the caller's units) and how many rows of every rank each output tops
    (``counts``). With them a check over the rows costs a product of the x-features with
    ``Y`` (:func:`head_error`), not passes over the ``N x C`` outputs."""

    @torch.no_grad()
    def __init__(self, Y, cfg):
        self.Y = Y
        _, self.mean, self.scatter = bound.output_moments(Y, cfg.collective)
        top = [top_outputs(Y[s], cfg) for s in bound.row_slices(*Y.shape)]
        self.top = torch.cat(top) if top else torch.zeros(0, dtype=torch.long, device=Y.device)
        counts = torch.bincount(self.top, minlength=Y.shape[1]).double()
        self.counts = cfg.collective.sum(counts)

    def head_moments(self, x, cfg):
        """The :class:`~sklearn_xnn._nn.bound.Moments` of x-features ``x`` (of these rows)
        with the outputs (None when ``x`` is not finite)."""
        return bound.head_moments(x, self.Y, self.mean, self.scatter, cfg.collective)


def head_error(head, x, targets, cfg, m=None):
    """The faithfulness error of ``head`` on x-features ``x`` of the rows of ``targets``
    (:func:`prediction_error`); for ``"mse"`` from their moments ``m`` (computed when
    None) and the head's weights alone."""
    if cfg.faithfulness == "kl":
        return prediction_error(head, x, targets.Y, cfg)
    m = targets.head_moments(x, cfg) if m is None else m
    if m is None:
        return math.inf
    rss = bound.head_rss(m, head.weight.detach(), head.bias.detach())
    return 1.0 - bound.r2_score(rss, m.yy, cfg.multioutput)


def forward_loss(model, zb, yb, cfg, dropout_gen, multiplier=None, subsets=None, top=None):
    """Forward pass and loss of one minibatch: ``(x, loss, parts, errors)``.

    ``multiplier`` (the device vector of :class:`~sklearn_xnn._nn.config.Multiplier`)
    weighs the constraints' terms when the constraint is on (``alpha_f`` is not used
    then); ``errors`` are the constraints' errors
    (:func:`~sklearn_xnn._nn.losses.constraint_terms`), else None.
    ``subsets`` and ``top`` are as in :func:`forward_terms`. With ``cfg.precision ==
    "bf16"`` on CUDA the network runs under bf16 autocast and the loss is computed in
    float32 from its float32-cast outputs.
    """
    x, _, terms, cover = forward_terms(model, zb, yb, cfg, dropout_gen, subsets=subsets, top=top)
    constrained = multiplier is not None and yb is not None
    loss, parts = weighted_loss(
        terms, (0.0 if constrained else cfg.alpha_f, cfg.alpha_r, cfg.alpha_p)
    )
    errors = None
    if constrained:
        penalties, errors = constraint_terms(terms, cover)
        loss = loss + (multiplier * penalties).sum(-1)
    return x, loss, parts, errors


def forward_terms(model, zb, yb, cfg, dropout_gen=None, pullaway=None, subsets=None, top=None):
    """Forward pass of one minibatch and its loss terms: ``(x, y_hat, (faith, rec, pt),
    cover)`` (:func:`~sklearn_xnn._nn.losses.srae_terms`); ``cover`` is the rows'
    :func:`~sklearn_xnn._nn.losses.uncovered` when training holds them to explain their
    top output (:func:`~sklearn_xnn._nn.losses.covers_rows`), else None. ``subsets``: the
    step's pull-away outputs and reconstructed units
    (:func:`~sklearn_xnn._nn.losses.epoch_subsets`); ``top``: the rows' top outputs when
    known (:class:`Targets`), else read from ``yb``."""
    outputs, units = (None, None) if subsets is None else subsets
    bf16 = cfg.precision == "bf16" and zb.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        x, h = model.encoder(zb, dropout_gen, pre=True)
        y_hat = None if model.head is None else model.head(x)
        z_hat = model.decoder(x, units=units)
    if bf16:
        x, h, z_hat = x.float(), h.float(), z_hat.float()
        y_hat = None if y_hat is None else y_hat.float()
    weight = None if model.head is None else model.head.weight
    z = zb if units is None else zb.index_select(-1, units)
    terms = srae_terms(x, y_hat, z_hat, z, yb, weight, cfg, pullaway, outputs)
    cover = None
    if yb is not None and weight is not None and covers_rows(cfg, yb.shape[-1]):
        top = top_outputs(yb, cfg) if top is None else top
        cover = uncovered(h, weight, top)
    return x, y_hat, terms, cover


def _epoch(model, opt, Z, targets, cfg, generator, rates, multiplier, step=forward_loss):
    model.train()
    comm, sizes, parts_seen = cfg.collective, [], []
    order = comm.batches(Z, cfg.batch_size, generator)
    n_outputs = 0 if targets is None else targets.Y.shape[1]
    subsets = epoch_subsets(n_outputs, Z.shape[1], len(order), generator, Z.device, cfg)
    for i, idx in enumerate(order):
        zb = data.batch(Z, idx)
        yb = None if targets is None else data.batch(targets.Y, idx)
        lr = next(rates)
        for group in opt.param_groups:
            group["lr"] = lr
        top = None if targets is None else data.batch(targets.top, idx)
        _, loss, parts, errors = step(
            model, zb, yb, cfg, cfg.dropout_generator, multiplier.value(), subsets[i], top
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        errors = comm.reduce_step(errors, model.parameters())
        opt.step()
        multiplier.update(errors)
        sizes.append(idx.shape[0])
        parts_seen.append(parts)
    return comm.sum(epoch_totals(sizes, parts_seen)) / (comm.world * sum(sizes))


def epoch_totals(sizes, parts):
    """The sum of loss parts times rows over an epoch's steps, from each step's batch size
    and loss parts (any leading dimensions, e.g. one row per stacked network). Reduced
    once per epoch, not per step: a step's cost on a small layer is its number of
    operations."""
    rows = torch.tensor(sizes, dtype=parts[0].dtype, device=parts[0].device)
    return torch.tensordot(rows, torch.stack(parts), dims=1)


@torch.no_grad()
def evaluate(model, Z, Y, cfg):
    """Mean loss parts ``[faith, rec, pt]`` on ``(Z, Y)`` without dropout, in one batch pass."""
    model.eval()
    acc = torch.zeros(3, device=Z.device)
    size = max(cfg.batch_size, 1024)
    for idx in data.batches(Z, size, None, shuffle=False):
        zb = data.batch(Z, idx)
        yb = None if Y is None else data.batch(Y, idx)
        x, y_hat, z_hat = model(zb)
        weight = None if model.head is None else model.head.weight
        acc += torch.stack(srae_terms(x, y_hat, z_hat, zb, yb, weight, cfg)) * idx.shape[0]
    return acc / Z.shape[0]


def objective(parts, cfg):
    """The objective minimised, from the loss parts ``[faith, rec, pt]``: under the
    constraint the regularisers ``alpha_r L_rec + alpha_p L_pt`` (the faithfulness is held
    at its target), else the total loss (``alpha_f L_faith`` added)."""
    faith = 0.0 if cfg.faith_target is not None else cfg.alpha_f * parts[0]
    return faith + cfg.alpha_r * parts[1] + cfg.alpha_p * parts[2]


def finite_weights(model):
    """Whether every weight of ``model`` (a module or a state dict) is finite."""
    state = model if isinstance(model, dict) else model.state_dict()
    floats = [t.reshape(-1) for t in state.values() if t.is_floating_point()]
    return not floats or bool(torch.isfinite(torch.cat(floats)).all())


#: The share of all rows by which the outputs' explained shares may fall under the start's
#: in a feasible epoch (the shortfall of :func:`epoch_head`), and by which the share of unexplained
#: rows may exceed the start's while training (its multiplier's target).
SHORTFALL_TOL = 0.005


@torch.no_grad()
def epoch_head(model, x, targets, cfg, floor):
    """Set the head an epoch ends with, for its x-features ``x``; returns ``(error,
    shortfall)``: its faithfulness error on the rows of ``targets`` (:func:`head_error`)
    and its shortfall under ``floor``: by how much the outputs' explained shares
    (:func:`explained_shares`) fall under ``floor``, as a fraction of all rows, ``sum_c
    rows_c max(floor_c - explained_c / rows_c, 0) / N`` (0 when ``floor`` is None).

    Of the exact least-squares head on ``x`` (the most faithful for ``"mse"``) and the
    trained head, the one that misses the constraints by less wins (the error's excess
    over ``cfg.faith_target`` plus the shortfall's over :data:`SHORTFALL_TOL`), then the
    more faithful one, the exact head on a tie (it can turn an output's only positive
    weight to zero or below). An output constant on these rows keeps its trained row
    (nothing here to fit it to). Without ``cfg.exact_head``, the trained head.
    """
    m = targets.head_moments(x, cfg)
    heads = [(model.head.weight.detach().clone(), model.head.bias.detach().clone())]
    if m is not None and cfg.exact_head:
        W, b = bound.lstsq_head(m, multioutput=cfg.multioutput)[:2]
        still = m.yy <= 0  # outputs constant on these rows (a chunk): their rows stay
        W[still], b[still] = heads[0][0][still].to(W), heads[0][1][still].to(b)
        heads.insert(0, (W, b))
    target = math.inf if cfg.faith_target is None else cfg.faith_target
    best = None
    for W, b in heads:
        model.head.load_state_dict({"weight": W, "bias": b})
        error, shortfall = head_error(model.head, x, targets, cfg, m), 0.0
        if floor is not None:  # to 12 decimals: a count of rows, not one plus rounding
            explained, rows = explained_shares(x, model.head.weight.detach(), targets, cfg)
            short = (rows * (floor - explained / rows.clamp_min(1.0)).clamp_min(0.0)).sum()
            shortfall = round(float(short / rows.sum().clamp_min(1.0)), 12)
        miss = max(error - target, 0.0) + max(shortfall - SHORTFALL_TOL, 0.0)
        if best is None or (miss, error) < best[0]:
            best = ((miss, error), shortfall, W, b)
    model.head.load_state_dict({"weight": best[2], "bias": best[3]})
    return best[0][1], best[1]


@torch.no_grad()
def explained_shares(x, weight, targets, cfg):
    """``(explained, rows)`` per output, over every rank's rows: how many of the rows whose
    top output (:class:`Targets`) it is get at least one positive contribution
    ``x_k W_ck`` to it (of x-features ``x``, head weights ``weight``), and how many rows
    it is the top output of. None without outputs or with fewer than two: a row with none
    is explained by the head's bias alone."""
    if targets is None or weight is None or targets.Y.shape[1] < 2:
        return None
    top = targets.top
    hit = ((x * weight[top]) > 0).any(1).double()
    C = targets.Y.shape[1]
    explained = torch.zeros(C, dtype=torch.float64, device=x.device).index_add_(0, top, hit)
    return cfg.collective.sum(explained), targets.counts


#: The most contributions ``x_k W_ck`` :func:`significant_count` reads (its first rows).
SIGNIFICANT_VALUES = 2**22


@torch.no_grad()
def significant_count(
    x, weight, max_values=SIGNIFICANT_VALUES, coverage=0.9, spread=False, collective=LOCAL
):
    """:func:`sklearn_xnn.metrics.n_significant` of x-features ``x`` under head weights
    ``weight`` in torch (the fewest positive contributions ``x_k W_ck`` covering
    ``coverage`` of their total, per input and output), on the first rows that keep the
    contributions under ``max_values`` values, of every rank with a ``collective``. With
    ``spread``, ``(count, standard error of that mean over the rows read)``."""
    rows = max(1, max_values // weight.numel())  # whole rows, at least one
    x, weight = x[:rows], weight.double()
    step = max(1, 2**18 // weight.numel())  # rows per chunk: 2 MB of float64 contributions
    total = squares = 0.0
    for a in range(0, x.shape[0], step):
        positive = (x[a : a + step].double().unsqueeze(1) * weight).clamp_min_(0.0)
        running = positive.sort(-1, descending=True).values.cumsum_(-1)
        top = running[..., -1:]
        reached = (running >= coverage * top * (1.0 - 1e-12)).to(torch.uint8)
        counts = torch.where(top[..., 0] > 0, reached.argmax(-1) + 1, 0)
        per_row = counts.sum(-1, dtype=torch.float64) / max(weight.shape[0], 1)
        total, squares = total + float(per_row.sum()), squares + float((per_row**2).sum())
    sums = collective.sum(torch.tensor([total, squares, x.shape[0]], dtype=torch.float64))
    total, squares, n = float(sums[0]), float(sums[1]), max(float(sums[2]), 1.0)
    mean = total / n
    if not spread:
        return mean
    variance = max(squares / n - mean**2, 0.0) * n / max(n - 1, 1)
    return mean, math.sqrt(variance / n)


def _check_epoch(model, Z, targets, val, cfg, parts, hist, coverage=None):
    """Set the epoch's head (:func:`epoch_head`), then ``(monitored value, violation,
    noise)`` of the epoch just run.

    The violation (0 when feasible) sums the faithfulness error's excess over its target
    (training rows, and validation rows when given), the outputs' shortfall
    under ``coverage`` beyond :data:`SHORTFALL_TOL`, and the dead x-features. Under the
    constraint the monitored value is :func:`significant_count` (validation rows when
    given; None for an infeasible epoch, never kept), ``noise`` its standard error: the
    kept epoch is the sparsest feasible one. Without it, the total loss, no noise.
    """
    violation = 0.0
    constrained = targets is not None and cfg.faith_target is not None
    if constrained:
        x = encode(model, Z)  # one pass: the head, the explained rows, dead units, the count
        error, shortfall = epoch_head(model, x, targets, cfg, coverage)
        dead = int((cfg.collective.max(x.amax(0)) <= 0).sum())
        hist.faithfulness.append(error)
        violation = max(error - cfg.faith_target, 0.0) + max(shortfall - SHORTFALL_TOL, 0.0) + dead
    monitored = None if constrained else objective(parts, cfg)
    if val is not None:
        Zv, Tv, val_target = val
        xv = encode(model, Zv)
        validation = objective(evaluate(model, Zv, None if Tv is None else Tv.Y, cfg).tolist(), cfg)
        hist.validation_loss.append(validation)
        monitored = None if constrained else validation
        if Tv is not None and val_target is not None:
            violation += max(head_error(model.head, xv, Tv, cfg) - val_target, 0.0)
    noise = 0.0
    if constrained and violation <= 0:  # an infeasible epoch is never kept: no count
        weight = model.head.weight.detach()
        monitored, noise = significant_count(
            x if val is None else xv, weight, spread=True, collective=cfg.collective
        )
    return monitored, violation, noise


def fine_tune(
    model, Z, Y, cfg, generator, val=None, opt=None, multiplier=None, start_epoch=0, targets=None
):
    """Joint fine-tuning of encoder, decoder and head; returns ``(history, optimizer,
    multiplier)``, the last the run's :class:`~sklearn_xnn._nn.config.Multiplier`.

    ``val`` is ``(Z_val, Y_val, val_target)`` or None. Stops after ``cfg.max_iter`` epochs,
    or when no epoch improved for ``n_iter_no_change`` epochs (:class:`Progress`: on the
    validation rows when given). A non-finite loss restores the last finite weights and
    raises ``NonFiniteLossError``; a ``KeyboardInterrupt`` stops training with the kept
    weights and records ``history.interrupted_epoch``. ``opt`` and ``multiplier`` continue
    an earlier run (``partial_fit``; :func:`start_multiplier`); ``targets`` are the
    :class:`Targets` of ``Y`` when already computed.
    """
    opt = adam(model.parameters(), cfg.lr, cfg.weight_decay) if opt is None else opt
    step = torch.compile(forward_loss) if cfg.compile else forward_loss
    n_steps = cfg.collective.steps(Z.shape[0], cfg.batch_size)
    rates = schedule(cfg, n_steps, start_epoch)
    lam = start_multiplier(model, Z, Y, cfg, n_steps, multiplier)
    initial = copy.copy(lam)  # what a non-finite loss hands back, with good weights
    run = Progress(model, Z, Y, cfg, val, targets)
    epoch = 0
    try:
        for epoch in range(cfg.max_iter):
            stats = _epoch(model, opt, Z, run.targets, cfg, generator, rates, lam, step)
            stats = stats.tolist()
            if run.end_epoch(model, Z, stats, lam.current(cfg), epoch):
                break
    except KeyboardInterrupt:  # keep a usable model: the last complete epoch's weights
        run.interrupt(model, epoch)
    except NonFiniteLossError as exc:
        exc.multiplier = initial
        raise
    run.finish(model)
    return run.hist, opt, lam


@torch.no_grad()
def start_multiplier(model, Z, Y, cfg, steps_per_epoch, value=None, max_rows=4096):
    """The :class:`~sklearn_xnn._nn.config.Multiplier` of a fine-tuning run. ``value``
    continues a run: the ``Multiplier`` an earlier run ended with (carried on at the new
    number of steps), or a float, the faithfulness multiplier of a loaded explainer, that
    starts every constraint. Without the constraint it holds ``alpha_f``; under it, each
    constraint's starts at ``lam_0``, where the faithfulness term at its target weighs as
    much as the regularisers (``lam_0 = (alpha_r L_rec + alpha_p L_pt) / target``), all
    read on rank 0's first ``max_rows`` rows.

    - The faithfulness error's target is ``cfg.faith_target``; the unit of its updates (the
      slack) is the larger of the room the start leaves under the target, ``target -
      e_0``, and the spread of one minibatch's error about it (the standard deviation over
      those rows' consecutive minibatches): a step updates the multiplier from one
      minibatch, and a unit smaller than that minibatch's noise would let the noise, not
      the constraint, drive it.
    - With two outputs or more (:func:`~sklearn_xnn._nn.losses.covers_rows`), the share
      of rows that leave their top output unexplained
      (:func:`~sklearn_xnn._nn.losses.uncovered`) may exceed the start's by
      :data:`SHORTFALL_TOL`, its slack, or by one minibatch's binomial spread at that
      share when larger.
    """
    if isinstance(value, Multiplier):
        return value.resumed(steps_per_epoch)
    if cfg.faith_target is None or Y is None:
        return Multiplier([cfg.alpha_f], [0.0], [1.0], cfg, steps_per_epoch, Z.device)
    Zs, Ys = Z[:max_rows], Y[:max_rows]
    x, h = model.encoder(Zs, pre=True)
    y_hat = model.head(x)
    e0 = float(faithfulness_error(y_hat, Ys, cfg))
    size = max(1, min(cfg.batch_size, Zs.shape[0]))
    errors = [
        float(faithfulness_error(y_hat[a : a + size], Ys[a : a + size], cfg))
        for a in range(0, Zs.shape[0] - size + 1, size)
    ]
    noise = float(np.std(errors)) if len(errors) > 1 else 0.0
    slack = max(cfg.faith_target - e0, noise, 1e-3 * cfg.faith_target, 1e-12)
    lam0 = objective(evaluate(model, Zs, Ys, cfg).tolist(), cfg) / max(cfg.faith_target, 1e-300)
    lam0 = min(max(lam0, cfg.multiplier_range[0]), cfg.multiplier_range[1])
    share = float(uncovered(h, model.head.weight, top_outputs(Ys, cfg))[1])
    lam0, slack, share = cfg.collective.broadcast((lam0, slack, share))  # rank 0's rows decide
    lam = lam0 if value is None else value
    if not covers_rows(cfg, Y.shape[1]):
        return Multiplier([lam], [cfg.faith_target], [slack], cfg, steps_per_epoch, Z.device)
    target = min(share + SHORTFALL_TOL, 1.0)
    spread = max(SHORTFALL_TOL, math.sqrt(target * (1.0 - target) / cfg.batch_size))
    return Multiplier(
        [lam, lam], [cfg.faith_target, target], [slack, spread], cfg, steps_per_epoch, Z.device
    )


class Progress:
    """What fine-tuning decides between epochs, for one network on ``(Z, Y)`` (with ``val``
    ``(Z_val, Y_val, target)`` or None): the finiteness check, the history, the epoch's
    head and its feasibility (:func:`_check_epoch`), the epoch to keep and early stopping.

    The kept epoch has the best key ``(infeasible, violation or monitored value)``: under
    the constraint a feasible epoch beats an infeasible one, among feasible epochs the
    sparsest (:func:`significant_count`) wins, among infeasible ones the smallest
    violation; the start is a candidate, with its own violation (0 for ``"mse"``, where
    the faithful start meets the target). Without the constraint: the best validated
    epoch, else the last one. Patience counts the epochs that do not improve the key;
    until an epoch is feasible, one that comes nearer to the constraints improves.

    Each epoch is its steps, then ``end_epoch(...)``, which returns True when training
    stops; ``finish(model)`` restores the kept weights.
    """

    def __init__(self, model, Z, Y, cfg, val=None, targets=None):
        self.cfg, self.hist, self.coverage = cfg, History(), None
        if targets is None and Y is not None:
            targets = Targets(Y, cfg)
        self.targets = targets
        if val is not None:
            val = (val[0], None if val[1] is None else Targets(val[1], cfg), val[2])
        self.val, self.constrained = val, cfg.faith_target is not None
        violation = 0.0
        if self.constrained and Y is not None and model.head is not None:
            start = explained_shares(
                encode(model, Z), model.head.weight.detach(), self.targets, cfg
            )
            if start is not None:
                self.coverage = start[0] / start[1].clamp_min(1.0)
            if cfg.faithfulness == "kl":  # the start may miss a KL target
                rebuilt = prediction_error(lambda z: model.head(model.encoder(z)), Z, Y, cfg)
                violation = max(rebuilt - cfg.faith_target, 0.0)
        self.best = (True, violation) if violation > 0 else (False, math.inf)
        self.state = copy.deepcopy(model.state_dict()) if self.constrained else None
        # the weights the next epoch starts from, and the ones the epoch before started from
        self.stall, self.good_state, self.prev_state = 0, copy.deepcopy(model.state_dict()), None
        self.nearest = math.inf  # the smallest violation of an epoch so far

    def end_epoch(self, model, Z, parts, multiplier, epoch):
        """Everything after the steps of ``epoch``; ``parts`` is the epoch's mean loss
        parts, ``multiplier`` the constraint's current value. Returns whether training
        stops."""
        cfg, hist = self.cfg, self.hist
        if not all(map(math.isfinite, parts)) or not finite_weights(model):
            self._roll_back(model)
            raise NonFiniteLossError(epoch, hist)
        # under the constraint the regularisers (the faithfulness is held at its target)
        loss = objective(parts, cfg)
        hist.loss.append(loss)
        hist.parts.append(parts)
        hist.multiplier.append(multiplier)
        monitored, violation, noise = _check_epoch(
            model, Z, self.targets, self.val, cfg, parts, hist, self.coverage
        )
        if self.constrained:  # the count of a feasible epoch (never computed otherwise)
            hist.significant.append(math.nan if violation > 0 else monitored)
        if cfg.verbose:
            state = f"infeasible by {violation:.3g}" if violation > 0 else f"{monitored:.6g}"
            logger.info("epoch %d: loss %.6g (monitored %s)", epoch + 1, loss, state)
        new = (True, violation) if violation > 0 else (False, monitored)
        # a feasible epoch's count improves by more than its sampling noise, or not at all
        margin = cfg.tol if new[0] else max(cfg.tol, noise)
        improved = new[0] < self.best[0] or (
            new[0] == self.best[0] and new[1] < self.best[1] - margin
        )
        if new[0] and self.best == (False, math.inf):  # no epoch has met the constraints
            improved = violation < self.nearest - cfg.tol  # coming nearer to them is progress
            self.nearest = min(self.nearest, violation)
        if new < self.best:
            if self.constrained or self.val is not None:
                self.state = copy.deepcopy(model.state_dict())
            self.best = new
        self.stall = 0 if improved else self.stall + 1
        if self.stall >= cfg.n_iter_no_change:
            hist.converged = True
            return True
        self.prev_state, self.good_state = self.good_state, copy.deepcopy(model.state_dict())
        return False

    def interrupt(self, model, epoch):
        """A ``KeyboardInterrupt`` in ``epoch``: back to the last complete epoch's weights."""
        if len(self.hist.loss) <= epoch:
            model.load_state_dict(self.good_state)
        self.hist.interrupted_epoch = epoch

    def finish(self, model):
        """Restore the kept epoch's weights; record whether they break the constraints."""
        self.hist.infeasible = self.constrained and self.best[0]
        if self.state is not None:
            model.load_state_dict(self.state)

    def _roll_back(self, model):
        """Restore the last finite weights after a non-finite loss: the failing epoch's
        start, or the epoch before's when the previous epoch's last step already overflowed
        (that epoch leaves the history); a kept (feasible or validated) state if any."""
        good = self.good_state
        if self.prev_state is not None and not finite_weights(good):
            good = self.prev_state
            for name in History.PER_EPOCH:
                del getattr(self.hist, name)[-1:]
        model.load_state_dict(good)
        self.finish(model)
