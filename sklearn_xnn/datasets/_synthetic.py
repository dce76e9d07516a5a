"""Planted-concept activations: the ground truth that explanation quality is measured on."""

from numbers import Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from sklearn_xnn.datasets._params import IntInterval

_COUNT = IntInterval(1)
_AT_LEAST_0 = Interval(Real, 0, None, closed="left")


@validate_params(
    {
        "n_samples": [_COUNT],
        "n_features": [_COUNT],
        "n_concepts": [_COUNT],
        "n_outputs": [_COUNT],
        "n_nuisance": [IntInterval(0)],
        "concept_density": [Interval(Real, 0, 1, closed="right")],
        "nuisance_scale": [_AT_LEAST_0],
        "noise": [_AT_LEAST_0],
        "nonnegative": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_concept_activations(
    n_samples=2000,
    n_features=256,
    *,
    n_concepts=5,
    n_outputs=10,
    n_nuisance=10,
    concept_density=0.3,
    nuisance_scale=3.0,
    noise=0.3,
    nonnegative=True,
    random_state=None,
):
    """Make activations driven by a few sparse concepts plus loud nuisance factors.

    Each sample carries ``n_concepts`` non-negative, sparse *concept codes* ``c``
    (each concept is on with probability ``concept_density``, with an exponential
    magnitude when on). The network's logits are a linear function of the codes
    only, ``y = c @ W.T + b``. The activations mix the codes through non-negative
    concept patterns ``A`` (each concept lights up its own random ~20% of the
    units), add ``n_nuisance`` Gaussian factors of ``nuisance_scale`` times the
    concepts' spread that the logits ignore, add Gaussian noise, and (with
    ``nonnegative=True``, like a post-ReLU layer) pass through a ReLU after a
    shift that keeps most units active::

        Z = relu(c @ A + nuisance_scale * g @ B + noise * e + shift)

    A variance-driven method (PCA, NMF) spends its components on the nuisance
    factors; a faithful explainer must find the concepts instead.

    Parameters
    ----------
    n_samples : int, default=2000
        Number of rows.
    n_features : int, default=256
        Dimension ``D`` of the activations.
    n_concepts : int, default=5
        Number of planted concepts (the ``K`` a faithful explainer should use).
    n_outputs : int, default=10
        Number of logits ``C``.
    n_nuisance : int, default=10
        Number of high-variance factors that do not reach the logits.
    concept_density : float, default=0.3
        Probability that a concept is active in a sample.
    nuisance_scale : float, default=3.0
        Standard deviation of the nuisance part relative to the concept part,
        measured over all activation units.
    noise : float, default=0.3
        Standard deviation of the isotropic noise, relative to the concept part.
    nonnegative : bool, default=True
        Apply a shifted ReLU so that activations are non-negative, as after a
        ReLU layer. With ``False`` the activations are signed and unshifted.
    random_state : int, RandomState instance or None, default=None
        Seed for every random draw.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_features)
        The activations, float64.
    y : ndarray of shape (n_samples, n_outputs)
        The logits, linear in the concept codes.
    codes : ndarray of shape (n_samples, n_concepts)
        The planted, non-negative concept codes.

    Examples
    --------
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> Z, y, codes = make_concept_activations(500, 64, random_state=0)
    >>> Z.shape, y.shape, codes.shape
    ((500, 64), (500, 10), (500, 5))
    >>> bool((Z >= 0).all() and (codes >= 0).all())
    True
    """
    rng = check_random_state(random_state)
    active = rng.random_sample((n_samples, n_concepts)) < concept_density
    codes = active * rng.exponential(1.0, size=(n_samples, n_concepts))

    # Concept patterns: non-negative, each on its own random ~20% of the units.
    support = rng.random_sample((n_concepts, n_features)) < 0.2
    patterns = support * rng.uniform(0.5, 1.5, size=(n_concepts, n_features))
    concept_part = codes @ patterns
    unit = concept_part.std()
    unit = unit if unit > 0 else 1.0

    basis = rng.standard_normal((n_nuisance, n_features))
    nuisance = rng.standard_normal((n_samples, n_nuisance)) @ basis
    nuisance *= nuisance_scale * unit / max(nuisance.std(), 1e-12) if n_nuisance else 0.0
    Z = concept_part + nuisance + noise * unit * rng.standard_normal((n_samples, n_features))
    if nonnegative:
        Z = np.maximum(Z + 0.5 * concept_part.mean(axis=0) + unit, 0.0)

    weights = rng.standard_normal((n_outputs, n_concepts))
    bias = rng.standard_normal(n_outputs)
    y = codes @ weights.T + bias
    return Z, y, codes
