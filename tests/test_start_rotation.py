"""The start's rotation within the faithful subspace: the activation units' simplest
directions when the units show a simple structure beyond chance, else the outputs'.

Both choices are deterministic functions of the moments, so the start (and the concepts
it gives) is the same for every seed; what these tests pin is which structure the
directions follow.
"""

import numpy as np
import pytest
import torch

from sklearn_xnn._nn import bound, init

pytestmark = pytest.mark.timeout(60)


def _unit_rows(rng, p, k):
    A = rng.standard_normal((p, k))
    return torch.as_tensor(A / np.linalg.norm(A, axis=1, keepdims=True))


@pytest.mark.parametrize(("p", "k"), [(40, 3), (300, 5)])
def test_isotropic_loadings_stay_at_chance_and_a_simple_structure_beats_it(p, k):
    rng = np.random.default_rng(1)  # not the draws the chance level is computed from
    chance = init.chance_simplicity(p, k)
    scores = [
        init.simplicity(A @ init.varimax(A)) for A in (_unit_rows(rng, p, k) for _ in range(5))
    ]
    assert max(scores) <= chance
    # each row mostly on one column, seen through a rotation: simple once rotated back
    Q = np.linalg.qr(rng.standard_normal((k, k)))[0]
    simple = np.eye(k)[rng.integers(0, k, p)] + 0.2 * rng.standard_normal((p, k))
    simple = torch.as_tensor(simple / np.linalg.norm(simple, axis=1, keepdims=True) @ Q)
    assert init.simplicity(simple @ init.varimax(simple)) > max(0.5, 2 * chance)


def test_chance_is_computed_once_and_falls_with_the_rows():
    assert init.chance_simplicity(100, 4) == init.chance_simplicity(100, 4)
    assert init.chance_simplicity(2000, 4) < init.chance_simplicity(200, 4)
    assert init.simplicity(torch.zeros(6, 3)) == 0.0  # no row loads on anything


def _directions_and_truth(units_simple, seed=0, n=3000, D=60, k=4, C=8):
    """Moments of activations whose faithful span is ``k``-dimensional, and the
    directions the outputs read (each output one of them) or, with ``units_simple``,
    the directions each unit loads on (each unit one of them)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((D, D)))[0]
    span = basis[:, :k]
    if units_simple:  # every unit on one concept of the span: concepts = unit groups
        groups = rng.integers(0, k, D)
        loading = np.zeros((k, D))
        loading[groups, np.arange(D)] = rng.uniform(1.0, 2.0, D)
        codes = rng.standard_normal((n, k))
        Z = codes @ loading + 0.05 * rng.standard_normal((n, D))
        truth = np.linalg.pinv(loading)  # (D, k): reads each concept's code back
        Y = codes @ rng.standard_normal((k, C))  # outputs read mixtures of concepts
    else:  # isotropic units; each output reads one of k rotated directions of the span
        Z = rng.standard_normal((n, D)) @ basis.T
        truth = span @ np.linalg.qr(rng.standard_normal((k, k)))[0]
        Y = (Z @ truth)[:, np.arange(C) % k] * rng.uniform(1.0, 2.0, C)
    Y = Y + 0.05 * rng.standard_normal((n, C))
    m = bound.moments(torch.as_tensor(Z), torch.as_tensor(Y))
    S0 = torch.as_tensor(span if not units_simple else np.linalg.qr(truth)[0])
    return m, S0, torch.as_tensor(Z), truth


def _matched_abs_corr(P, Q):
    """Mean over the columns of ``P`` of the largest |correlation| with a column of ``Q``."""
    c = np.corrcoef(P.T, Q.T)[: P.shape[1], P.shape[1] :]
    return float(np.abs(c).max(axis=1).mean())


@pytest.mark.parametrize("units_simple", [False, True])
def test_the_start_follows_the_units_structure_else_the_outputs(units_simple):
    m, S0, Z, truth = _directions_and_truth(units_simple)
    S = init.simple_directions(m, S0)
    found = (Z - m.z_mean) @ S
    assert _matched_abs_corr(found.numpy(), Z.numpy() @ truth) > 0.98
