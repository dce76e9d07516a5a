"""Many trainings at once: networks of one shape on the same data, fine-tuned as one.

The ``M`` members of a batch share the training rows, the layer sizes and every setting
that shapes a training step (batch size, learning rate, losses); they differ in their
random draws and in the values a step only multiplies by: the alphas, the faithfulness
target, and the number of epochs and the early-stopping rule. Their parameters are
stacked along a new first dimension (:func:`torch.func.stack_module_state`) and each
step runs the member's own forward pass and loss terms
(:func:`~sklearn_xnn._nn.training.forward_terms`, the very functions of a single fit)
under :func:`torch.func.vmap`, so that a step is one set of batched kernels instead of
``M``. One Adam updates the stacked tensors (Adam is elementwise: the same as ``M``
Adams), the constraint multipliers are one tensor, a row per member (their update is
elementwise too).

Everything between epochs stays per member and is the single fit's own code
(:class:`~sklearn_xnn._nn.training.Progress`): after each epoch the stacked weights are
copied into the members' networks, each member sets its epoch's head, checks its
feasibility, keeps its best epoch and decides whether to stop, and the weights are copied
back. A member that stops leaves the stack (its weights and Adam state are dropped from
it), so it is never trained further. Each member draws its minibatch order from its own
generator, in the order of its
single fit: member ``m`` equals ``fine_tune`` of that member alone up to floating-point
rounding (batched matrix products sum in a different order).

Not batched (:func:`unbatchable_reason`): dropout (each network's masks come from its
own generator, one draw per step; a stacked forward would draw them in another order),
data streamed from the host (each member would read its own rows), ``compile=True``.
"""

import copy
import dataclasses
import math

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from sklearn_xnn._nn import engine, training
from sklearn_xnn._nn.config import Multiplier, adam, schedule
from sklearn_xnn._nn.data import batches
from sklearn_xnn._nn.losses import constraint_terms, epoch_subsets, weighted_loss

#: TrainConfig fields that may differ between the members of a batch; every other field
#: must be equal (a new field is therefore shared by default, which is always safe).
PER_MEMBER = frozenset(
    {
        "alpha_f",
        "alpha_r",
        "alpha_p",
        "faith_target",
        "output_weights",
        "max_iter",
        "tol",
        "n_iter_no_change",
        "verbose",
        "pretrain",
        "dropout_generator",
    }
)

_PER_MEMBER_WORDS = ", ".join(sorted(PER_MEMBER - {"dropout_generator", "output_weights"}))


@dataclasses.dataclass
class Job:
    """One training attempt: the arguments of :func:`sklearn_xnn._nn.engine.attempt`."""

    Z: object
    Y: torch.Tensor | None
    cfg: object
    generator: torch.Generator
    device: torch.device
    reference: tuple
    val: tuple | None = None


def unbatchable_reason(job):
    """Why ``job`` must train on its own, or None when it can join a batch."""
    if not isinstance(job.Z, torch.Tensor):
        return "its data are streamed from the host (each member would read its own rows)"
    if job.cfg.dropout > 0:
        return (
            "dropout > 0 (each network's masks are drawn from its own generator, which a "
            "stacked forward pass cannot reproduce)"
        )
    if job.cfg.compile:
        return "compile=True (the stacked step is not compiled)"
    return None


def _key_of(value):
    """A hashable stand-in for a configuration value: tensors and modules (the logits'
    standardisation, a ``network_head`` copy) by their contents, as each member holds its
    own copy of equal values."""
    if torch.is_tensor(value):
        return ("tensor", tuple(value.shape), value.detach().cpu().numpy().tobytes())
    if isinstance(value, torch.nn.Module):
        state = value.state_dict()
        return ("module", type(value).__name__, tuple((k, _key_of(v)) for k, v in state.items()))
    return value


def batch_key(job):
    """Jobs with equal keys can be fine-tuned as one stacked network."""
    shared = []
    for f in dataclasses.fields(job.cfg):
        if f.name in PER_MEMBER:
            continue
        shared.append((f.name, _key_of(getattr(job.cfg, f.name))))
    constrained = job.cfg.faith_target is not None
    return (id(job.Z), id(job.Y), str(job.device), constrained, tuple(shared))


def check_batch(jobs):
    """Raise a ValueError saying what differs when ``jobs`` cannot form one batch."""
    for job in jobs:
        reason = unbatchable_reason(job)
        if reason is not None:
            raise ValueError(f"A member cannot be trained batched: {reason}.")
    first = batch_key(jobs[0])
    for i, job in enumerate(jobs[1:], 1):
        key = batch_key(job)
        if key[:4] != first[:4]:
            raise ValueError(
                f"Member {i} trains on other data (or on another device, or with the "
                "faithfulness constraint where member 0 has none, or vice versa) than "
                "member 0; only members fitted on the same rows can be batched. Fit them "
                "in separate batches."
            )
        differ = [a[0] for a, b in zip(first[4], key[4], strict=True) if a != b]
        if differ:
            raise ValueError(
                f"Member {i} differs from member 0 in {', '.join(differ)}; the members of "
                f"one batch may differ only in {_PER_MEMBER_WORDS} and their random draws. "
                "Group the members by these settings and fit one batch per group."
            )


def attempts(jobs):
    """:func:`~sklearn_xnn._nn.engine.attempt` for every job, in order; the jobs that can
    share a stacked network (:func:`batch_key`) are fine-tuned as one.

    Returns ``(attempts, sizes)``: ``sizes[i]`` is the number of networks job ``i`` was
    fine-tuned with (1: on its own).
    """
    results, sizes = [None] * len(jobs), [1] * len(jobs)
    for group in _groups(jobs):
        if len(group) == 1:
            job = jobs[group[0]]
            results[group[0]] = engine.attempt(
                job.Z, job.Y, job.cfg, job.generator, job.device, job.reference, job.val
            )
            continue
        started = []
        for i in group:
            job = jobs[i]
            model, done = engine.start(
                job.Z, job.Y, job.cfg, job.generator, job.device, job.reference
            )
            if done is None:
                started.append((i, model))
            results[i] = done
        for (i, _model), attempt in zip(started, _tune_many(jobs, started), strict=True):
            results[i], sizes[i] = attempt, len(started)
    return results, sizes


def _groups(jobs):
    groups = {}
    for i, job in enumerate(jobs):
        key = ("alone", i) if unbatchable_reason(job) else batch_key(job)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _tune_many(jobs, started):
    """:func:`~sklearn_xnn._nn.engine.tune` of every started network, batched."""
    if not started:
        return []
    if len(started) == 1:
        (i, model) = started[0]
        job = jobs[i]
        return [engine.tune(model, job.Z, job.Y, job.cfg, job.generator, job.val)]
    members = [jobs[i] for i, _ in started]
    models = [model for _, model in started]
    ended = fine_tune_many(models, members)
    return [
        engine.assess(model, job.Z, job.Y, history, None, job.cfg, lam)
        for model, job, (history, lam) in zip(models, members, ended, strict=True)
    ]


def fine_tune_many(models, jobs):
    """Fine-tune ``models[m]`` as ``jobs[m]`` says, all as one stacked network.

    Member by member the same as :func:`~sklearn_xnn._nn.training.fine_tune` (up to
    rounding), with a non-finite loss ending that member as
    :func:`~sklearn_xnn._nn.engine.attempt` does. Returns ``[(history, lam)]``; the
    members' Adam states are not returned (a fit keeps none).
    """
    check_batch(jobs)
    Z, Y, cfg = jobs[0].Z, jobs[0].Y, jobs[0].cfg
    n_steps = math.ceil(Z.shape[0] / cfg.batch_size)
    rates = schedule(cfg, n_steps)
    pairs = list(zip(models, jobs, strict=True))
    lams = [training.start_multiplier(m, Z, Y, j.cfg, n_steps) for m, j in pairs]
    runs = [training.Progress(m, j.Z, j.Y, j.cfg, j.val) for m, j in pairs]
    stack = _Stack(models, [j.cfg for j in jobs], lams, Y is not None)
    ended, epoch = [None] * len(models), 0
    try:
        for epoch in range(max(j.cfg.max_iter for j in jobs)):
            generators = [jobs[i].generator for i in stack.members]
            stats = stack.epoch(Z, Y, generators, rates)
            stack.unload(models)
            for row, i in enumerate(list(stack.members)):
                ended[i] = _end_epoch(runs[i], models[i], jobs[i], stats[row], stack, row, epoch)
            stack.load(models, [i for i in stack.members if ended[i] is None])
            if not stack.members:
                break
    except KeyboardInterrupt:  # every member keeps its last complete epoch, as fine_tune does
        for row, i in enumerate(stack.members):
            if ended[i] is not None:  # it had ended before the interrupt
                continue
            runs[i].interrupt(models[i], epoch)
            runs[i].finish(models[i])
            ended[i] = (runs[i].hist, stack.lam.current_at(row, jobs[i].cfg))
    return ended


def _end_epoch(run, model, job, stats, stack, row, epoch):
    """One member's end of epoch: None while it trains on, else its ``(history, lam)``."""
    try:
        lam = stack.lam.current_at(row, job.cfg)
        stop = run.end_epoch(model, job.Z, stats, lam, epoch)
    except training.NonFiniteLossError as exc:
        exc.history.diverged_epoch = exc.epoch
        return exc.history, job.cfg.alpha_f
    if not stop and epoch < job.cfg.max_iter - 1:
        return None
    run.finish(model)
    return run.hist, stack.lam.current_at(row, job.cfg)


class _Objective(nn.Module):
    """One member's forward pass and loss terms, for ``functional_call`` under ``vmap``."""

    def __init__(self, model, cfg, pullaway, constrained):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.pullaway, self.constrained = pullaway, constrained

    def forward(self, zb, yb, output_weights, outputs, units):
        cfg = self.cfg
        if output_weights is not None:
            cfg = dataclasses.replace(cfg, output_weights=output_weights)
        x, _, terms, cover = training.forward_terms(
            self.model, zb, yb, cfg, None, self.pullaway, subsets=(outputs, units)
        )
        if not self.constrained:
            return x, terms
        return x, terms, *constraint_terms(terms, cover)


class _Multipliers(Multiplier):
    """The constraint multipliers of the stacked members as one vector (elementwise update)."""

    def __init__(self, singles, device):
        first = singles[0]
        self.on, self.rate, self.low, self.high = first.on, first.rate, first.low, first.high
        self.log = torch.stack([m.log for m in singles])
        self.target = self.slack = None
        if self.on:
            self.target = torch.stack([m.target for m in singles]).to(device)
            self.slack = torch.stack([m.slack for m in singles]).to(device)

    def keep(self, rows):
        self.log = self.log[rows]
        if self.on:
            self.target, self.slack = self.target[rows], self.slack[rows]

    def current_at(self, row, cfg):
        return float(self.log[row, 0].exp()) if self.on else float(cfg.alpha_f)


class _Stack:
    """The stacked parameters of the members still training, their Adam and multipliers.

    ``members[r]`` is the member index of row ``r`` of every stacked tensor.
    """

    def __init__(self, models, cfgs, lams, supervised):
        cfg, device = cfgs[0], next(models[0].parameters()).device
        self.members = list(range(len(models)))
        self.batch_size, self.lr, self.weight_decay = cfg.batch_size, cfg.lr, cfg.weight_decay
        self.constrained = cfg.faith_target is not None and supervised
        objective = _Objective(
            copy.deepcopy(models[0]).to("meta"),
            cfg,
            pullaway=any(c.alpha_p for c in cfgs),
            constrained=self.constrained,
        )
        params, _ = stack_module_state(models)
        self.params = {f"model.{name}": p for name, p in params.items()}
        self.opt = adam(self.params.values(), self.lr, self.weight_decay)
        alpha_f = [0.0 if self.constrained else c.alpha_f for c in cfgs]
        alpha_r, alpha_p = [c.alpha_r for c in cfgs], [c.alpha_p for c in cfgs]
        self.alphas = torch.tensor([alpha_f, alpha_r, alpha_p], device=device)
        self.weights = None
        if self.constrained:
            self.weights = torch.stack([c.output_weights for c in cfgs])
        self.lam = _Multipliers(lams, device)
        self.device, self.cfg = device, cfg
        self.n_outputs = cfg.n_outputs if supervised else 0
        self.dims = (0, 0, 0 if supervised else None, None if self.weights is None else 0)
        self.call = lambda p, *a: functional_call(objective, p, a)

    def epoch(self, Z, Y, generators, rates):
        """One epoch of every member: ``(M, 3)`` rows of mean loss parts."""
        n, sizes, parts_seen = Z.shape[0], [], []
        orders = [batches(Z, self.batch_size, g) for g in generators]
        n_steps, cfg = len(orders[0]), self.cfg
        draws = [  # after the order, as each member's own fit draws them
            epoch_subsets(self.n_outputs, Z.shape[1], n_steps, g, self.device, cfg)
            for g in generators
        ]
        # a subset drawn for every member is batched, "all of them" (None) is not
        first = draws[0][0] if n_steps else (None, None)
        step = vmap(self.call, (*self.dims, *(None if a is None else 0 for a in first)))
        for i, idx in enumerate(zip(*orders, strict=True)):
            idx = torch.stack(idx)
            zb = Z[idx]  # idx stacks one row index per member
            yb = None if Y is None else Y[idx]
            lr = next(rates)
            for group in self.opt.param_groups:
                group["lr"] = lr
            picks = zip(*(member[i] for member in draws), strict=True)  # (M, size) or None
            picks = (None if p[0] is None else torch.stack(p) for p in picks)
            out = step(self.params, zb, yb, self.weights, *picks)
            loss, parts = weighted_loss(out[1], self.alphas)
            errors = out[3] if self.constrained else None
            if self.constrained:
                loss = loss + (self.lam.value() * out[2]).sum(-1)
            self.opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            self.opt.step()
            self.lam.update(errors)
            sizes.append(idx.shape[1])
            parts_seen.append(parts)
        acc = training.epoch_totals(sizes, parts_seen) / n
        acc[self.alphas[2] == 0, 2] = 0.0  # a member without pull-away reports none
        return acc.tolist()

    @torch.no_grad()
    def unload(self, models):
        """Copy the stacked weights into the members' networks."""
        for row, i in enumerate(self.members):
            for name, p in models[i].named_parameters():
                p.copy_(self.params[f"model.{name}"][row])

    @torch.no_grad()
    def load(self, models, members):
        """Copy the networks of ``members`` (the ones training on) back into the stack,
        dropping the others' rows from the weights, the Adam state and the multipliers."""
        rows = [self.members.index(i) for i in members]
        if len(rows) < len(self.members):
            self._keep(rows)
        self.members = list(members)
        for row, i in enumerate(self.members):
            for name, p in models[i].named_parameters():
                self.params[f"model.{name}"][row].copy_(p)

    def _keep(self, rows):
        index = torch.tensor(rows, dtype=torch.long, device=self.alphas.device)
        params = {k: p.detach()[index].clone().requires_grad_(True) for k, p in self.params.items()}
        opt = adam(params.values(), self.lr, self.weight_decay)
        for key, old in self.params.items():
            state = self.opt.state.get(old)
            if state:
                opt.state[params[key]] = {
                    k: v[index].clone() if v.dim() else v.clone() for k, v in state.items()
                }
        self.params, self.opt = params, opt
        self.alphas = self.alphas[:, index]
        self.weights = None if self.weights is None else self.weights[index]
        self.lam.keep(index)
