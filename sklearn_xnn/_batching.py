"""Fitting many explainers on one ``(X, y)`` at once: ``n_init`` and the sweeps.

:func:`fit_explainers` fits a list of :class:`~sklearn_xnn.SRAEExplainer` in place, each
as its own ``fit`` would. Every explainer runs ``fit``'s own preparation
(:func:`~sklearn_xnn._fitting.start_fit`: validation, scaling, the linear bound, sharing the scaled
data and the bound between explainers that can), then the training attempts of all of
them go to :func:`sklearn_xnn._nn.batched.attempts`, which fine-tunes the compatible ones
as one stacked network, and each explainer then stores its fitted state with ``fit``'s own
:func:`~sklearn_xnn._fitting.finish`. An explainer with ``n_init > 1``
is expanded into ``n_init`` members with their own seeds, and keeps the best of them
(:func:`_keep_best`).
"""

import contextlib
import logging
import math
import warnings
from numbers import Integral

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state

from sklearn_xnn import _fitting as fitting
from sklearn_xnn._nn import batched, training
from sklearn_xnn._threads import torch_threads
from sklearn_xnn._validation import n_init_of

logger = logging.getLogger("sklearn_xnn")

#: Fitted attributes that only an ``n_init > 1`` fit sets.
INIT_ATTRIBUTES = (
    "init_seeds_",
    "init_scores_",
    "init_feasible_",
    "init_n_dead_",
    "best_init_",
    "init_stability_",
)


def init_seeds(est, n_init):
    """The seeds of the ``n_init`` initialisations of ``est``: an integer ``random_state``
    is the first (so the first initialisation is the ``n_init=1`` fit), the others are
    drawn from it."""
    rs = est.random_state
    first = [int(rs)] if isinstance(rs, Integral) else []
    draws = check_random_state(rs).randint(np.iinfo(np.int32).max, size=n_init - len(first))
    return first + [int(s) for s in draws]


def fit_explainers(explainers, X, y=None):
    """Fit every explainer on ``(X, y)`` in place, batched where possible; returns them."""
    explainers = list(explainers)
    for est in explainers:
        est._validate_params()
    members, owners = [], []
    for k, est in enumerate(explainers):
        n_init = n_init_of(est)
        mine = [est] if n_init == 1 else [_member(est, s) for s in init_seeds(est, n_init)]
        if n_init > 1:
            fitting.forget_fit(est)  # a fit that fails leaves no earlier fit's state behind
        members += mine
        owners += [k] * len(mine)
    caught = [[] for _ in members]
    results = _train(members, X, y, caught, {})
    for k, est in enumerate(explainers):
        mine = [i for i, owner in enumerate(owners) if owner == k]
        if len(mine) > 1:
            mine = [mine[_keep_best(est, [members[i] for i in mine], [results[i] for i in mine])]]
        for i in mine:
            for w in caught[i]:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return explainers


def _member(est, seed):
    return clone(est).set_params(n_init=1, random_state=seed)


def _train(members, X, y, caught, shared):
    """Prepare, train and store every member (sharing the scaled data and the bound
    through the dict ``shared``)."""
    runs = []
    for i, member in enumerate(members):  # its warnings re-emitted once, for the kept one
        with _recording(caught[i]):
            runs.append(fitting.start_fit(member, X, y, False, shared))
    with torch_threads():
        jobs = [_job(run) for run in runs]
        attempts, sizes = batched.attempts(jobs)
        _log_round(jobs, sizes)
    results = []
    for i, (member, run, result, size) in enumerate(
        zip(members, runs, attempts, sizes, strict=True)
    ):
        member._stacked_with = size
        with _recording(caught[i]):
            fitting.finish(member, run, fitting.train(member, run, result))
        results.append((run, result))
    return results


def _job(run):
    return batched.Job(*run.train, run.cfg, run.generator, run.device, run.reference, run.val)


def _log_round(jobs, sizes):
    alone = [batched.unbatchable_reason(j) for j, s in zip(jobs, sizes, strict=True) if s == 1]
    logger.info(
        "training %d explainers: %d in stacked networks, %d on their own%s",
        len(jobs),
        sum(s > 1 for s in sizes),
        len(alone),
        "".join(f"; {r}" for r in sorted({r for r in alone if r})),
    )


@contextlib.contextmanager
def _recording(store):
    """Record the warnings of one member (re-emitted once the members are sorted out)."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield
    store.extend(records)


# ---------------------------------------------------------------------------- n_init
def _keep_best(est, members, results):
    """Give ``est`` the fitted state of its best member; returns that member's index.

    The best member meets the faithfulness constraint, then has the fewest dead
    x-features, then the smallest objective (:func:`init_score`); ties go to the first.
    """
    scores = np.array([init_score(m, run, r) for m, (run, r) in zip(members, results, strict=True)])
    feasible = np.array([_feasible(m) for m in members])
    n_dead = np.array([m.n_dead_components_ for m in members])
    order = sorted(
        range(len(members)),
        key=lambda i: (not feasible[i], n_dead[i], _finite_or_inf(scores[i]), i),
    )
    best = order[0]
    _adopt(est, members[best])
    est.init_seeds_ = np.array([m.random_state for m in members])
    est.init_scores_ = scores
    est.init_feasible_ = feasible
    est.init_n_dead_ = n_dead
    est.best_init_ = best
    est.init_stability_ = _stability(results, best)
    return best


def _adopt(est, member):
    """Give ``est`` the fitted state of ``member`` (a fitted clone of it)."""
    fitting.forget_fit(est)
    params = set(est.get_params(deep=False))
    for name, value in vars(member).items():
        if name not in params:
            setattr(est, name, value)


def init_score(est, run, result):
    """The objective an initialisation is ranked by, on its training rows (lower is better).

    Under the faithfulness constraint (``faithfulness_tol`` set, ``y`` given) the mean
    number of significant x-features per input, as fine-tuning ranks its epochs
    (:func:`~sklearn_xnn._nn.training.significant_count`); otherwise the whole
    fixed-weight loss (the regularisers plus ``alpha_faithfulness * L_faith``), with the
    explainer's alphas and the terms of training,
    in training units.
    """
    Z, Y = run.train
    if est.faithfulness_tol is not None and Y is not None:
        x, weight = training.encode(result.model, Z), result.model.head.weight.detach()
        return float(training.significant_count(x, weight))
    parts = training.evaluate(result.model, Z, Y, run.cfg).tolist()
    score = est.alpha_reconstruction * parts[1] + est.alpha_pullaway * parts[2]
    return float(score + est.alpha_faithfulness * parts[0])


def _feasible(est):
    """Whether a fitted member meets its faithfulness target: an R² at least ``1 -
    target``, a softmax KL (lower is better) at most ``target``."""
    target = getattr(est, "_faith_target", None)
    if target is None:
        return True
    if est.faithfulness == "kl":
        return bool(est.faithfulness_ <= target + 1e-9)
    return bool(est.faithfulness_ >= 1.0 - target - 1e-9)


def _finite_or_inf(value):
    return value if math.isfinite(value) else math.inf


def _stability(results, best):
    """Mean matched correlation of the kept x-features with each other initialisation's,
    on the kept one's training rows."""
    from sklearn_xnn.metrics import matched_correlation

    Z = results[best][0].train[0]
    embed = [training.encode(r.model, Z).double().cpu().numpy() for _, r in results]
    others = [matched_correlation(embed[best], e) for i, e in enumerate(embed) if i != best]
    return float(np.mean(others))
