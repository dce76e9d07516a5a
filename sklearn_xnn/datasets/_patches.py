"""Synthetic images whose class evidence sits in a known patch (for testing heatmaps)."""

from math import comb
from numbers import Real

import numpy as np
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from sklearn_xnn.datasets._digits import SmallCNN, check_training_input, train_classifier
from sklearn_xnn.datasets._params import IntInterval


def _check_patch_size(patch_size, n_classes):
    """Refuse a patch too small or too odd for ``n_classes`` distinct, half-on textures.

    The stripes and the checkerboard are half on at every even size; the coarse checkerboard
    (2x2 blocks, the fourth class) only when the side is a multiple of 4; the random textures
    are drawn distinct, so there can be no more classes than half-on textures.
    """
    step = 4 if n_classes > 3 else 2
    if patch_size % step:
        raise ValueError(
            f"patch_size={patch_size} cannot hold {n_classes} distinct textures with half their "
            f"pixels on: it must be a multiple of {step} (the smallest that works is {step})."
        )
    n_textures = comb(patch_size**2, patch_size**2 // 2)
    if n_classes > n_textures:
        raise ValueError(
            f"n_classes={n_classes} is more than the {n_textures} distinct half-on textures of "
            f"patch_size={patch_size}; use a larger patch_size."
        )


def _patterns(n_classes, size, rng):
    """One binary texture per class, each with half its pixels on, all distinct
    (``size`` as checked by :func:`_check_patch_size`)."""
    r, c = np.indices((size, size))
    fixed = [r % 2 == 0, c % 2 == 0, (r + c) % 2 == 0, (r // 2 + c // 2) % 2 == 0]
    out = [p.astype(np.float32) for p in fixed[:n_classes]]
    while len(out) < n_classes:
        flat = np.zeros(size * size, dtype=np.float32)
        flat[rng.permutation(size * size)[: size * size // 2]] = 1.0
        if not any(np.array_equal(flat, p.ravel()) for p in out):
            out.append(flat.reshape(size, size))
    return np.stack(out)


def _distractor(kind, size, rng):
    """An uninformative patch: uniform 0.5, or a fresh random half-on binary texture."""
    if kind == "uniform":
        return np.full((size, size), 0.5, dtype=np.float32)
    if kind == "texture":
        flat = np.zeros(size * size, dtype=np.float32)
        flat[rng.permutation(size * size)[: size * size // 2]] = 1.0
        return flat.reshape(size, size)
    raise ValueError(f"distractor must be 'texture', 'uniform' or None, got {kind!r}.")


def _has_room(corner, image_size, patch_size):
    """Whether a second patch fits beside the patch at ``corner`` without overlapping it."""
    return any(a >= patch_size or a + 2 * patch_size <= image_size for a in corner)


def _place(rng, image_size, patch_size, avoid=None):
    """Top-left corner of a patch that does not overlap the ``avoid`` patch (which must
    leave room for it, :func:`_has_room`)."""
    while True:
        r0, c0 = rng.randint(0, image_size - patch_size + 1, size=2)
        if avoid is None:
            return r0, c0
        ar, ac = avoid
        if abs(r0 - ar) >= patch_size or abs(c0 - ac) >= patch_size:
            return r0, c0


@validate_params(
    {
        "n_samples": [IntInterval(1)],
        "image_size": [IntInterval(2)],
        "patch_size": [IntInterval(1)],
        "n_classes": [IntInterval(1)],
        "noise": [Interval(Real, 0, 1, closed="both")],
        "distractor": [StrOptions({"uniform", "texture"}), None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_patch_images(
    n_samples=600,
    *,
    image_size=16,
    patch_size=4,
    n_classes=4,
    noise=0.15,
    distractor="uniform",
    random_state=None,
):
    """Images whose class is decided by a textured patch at a random, known place.

    Each image is uniform noise in ``[0, noise]``; a ``patch_size`` square at a random
    place in it (one that leaves room for the distractor) holds the class's binary
    texture (horizontal stripes, vertical stripes, a checkerboard, a coarse checkerboard,
    then random textures). A second, non-overlapping square carries no class information:
    uniform 0.5, the patterns' mean (``distractor="uniform"``), or a fresh random binary
    texture (``"texture"``, harder: it can look like a weak piece of a class texture). The
    mask of the textured patch is the ground truth of the pointing game
    (:func:`sklearn_xnn.torch.pointing_game`).

    Parameters
    ----------
    n_samples : int, default=600
        Number of images.
    image_size : int, default=16
        Height and width.
    patch_size : int, default=4
        Side of the patches. Every class texture has exactly half its pixels on and
        differs from the others, so the side must be even, and a multiple of 4 with more
        than 3 classes (the coarse checkerboard is made of 2x2 blocks); other sizes raise
        a ValueError naming the smallest that works.
    n_classes : int, default=4
        Number of classes (distinct textures).
    noise : float, default=0.15
        Amplitude of the background noise, in ``[0, 1]``.
    distractor : {"uniform", "texture"} or None, default="uniform"
        The uninformative square, or None for none (then the patch may be as large as
        the image).
    random_state : int, RandomState instance or None, default=None
        Seed.

    Returns
    -------
    data : Bunch
        ``images`` (n_samples, 1, image_size, image_size) float32 in [0, 1], ``labels``
        (n_samples,), ``masks`` (n_samples, image_size, image_size) bool (the textured
        patch), ``distractor_masks`` (same shape; all False without a distractor),
        ``patterns`` (n_classes, patch_size, patch_size).

    Examples
    --------
    >>> from sklearn_xnn.datasets._patches import make_patch_images
    >>> data = make_patch_images(10, random_state=0)
    >>> data.images.shape, data.masks.shape, int(data.masks[0].sum())
    ((10, 1, 16, 16), (10, 16, 16), 16)
    """
    if distractor is not None and patch_size * 2 > image_size:
        raise ValueError(
            f"patch_size={patch_size} is too large for image_size={image_size}; two patches "
            "(the textured one and the distractor) must fit side by side."
        )
    if patch_size > image_size:
        raise ValueError(f"patch_size={patch_size} is too large for image_size={image_size}.")
    _check_patch_size(patch_size, n_classes)
    rng = check_random_state(random_state)
    patterns = _patterns(n_classes, patch_size, rng)
    images = rng.uniform(0, noise, size=(n_samples, 1, image_size, image_size)).astype(np.float32)
    labels = rng.randint(0, n_classes, size=n_samples)
    masks = np.zeros((n_samples, image_size, image_size), dtype=bool)
    distractor_masks = np.zeros_like(masks)
    for i, label in enumerate(labels):
        r0, c0 = _place(rng, image_size, patch_size)
        while distractor is not None and not _has_room((r0, c0), image_size, patch_size):
            r0, c0 = _place(rng, image_size, patch_size)  # the distractor must fit too
        images[i, 0, r0 : r0 + patch_size, c0 : c0 + patch_size] = patterns[label]
        masks[i, r0 : r0 + patch_size, c0 : c0 + patch_size] = True
        if distractor is not None:
            r1, c1 = _place(rng, image_size, patch_size, avoid=(r0, c0))
            images[i, 0, r1 : r1 + patch_size, c1 : c1 + patch_size] = _distractor(
                distractor, patch_size, rng
            )
            distractor_masks[i, r1 : r1 + patch_size, c1 : c1 + patch_size] = True
    return Bunch(
        images=images,
        labels=labels,
        masks=masks,
        distractor_masks=distractor_masks,
        patterns=patterns,
    )


class PatchCNN(SmallCNN):
    """``conv -> ReLU -> conv -> ReLU -> maxpool -> fc -> ReLU -> fc`` for small square images.

    Named layers as in :class:`sklearn_xnn.datasets.DigitsCNN`: ``conv1``, ``relu1``,
    ``conv2``, ``relu2``, ``pool``, ``flatten``, ``fc1``, ``relu_fc1``, ``fc2``.
    """

    def __init__(self, image_size=16, n_classes=4, width=8, hidden=32):
        super().__init__(image_size, n_classes, width, hidden)


def train_patch_cnn(images, labels, *, epochs=10, batch_size=32, lr=3e-3, random_state=None):
    """Train a :class:`PatchCNN` on ``images`` (N, 1, S, S); returns it in eval mode.

    ``images`` and ``labels`` may be any array-likes. Randomness comes from
    ``random_state`` only (the layer initialisation runs in a forked RNG, the shuffling
    uses a local generator).
    """
    images, labels = check_training_input(images, labels, epochs, batch_size)
    n_classes = int(np.max(labels)) + 1
    return train_classifier(
        lambda: PatchCNN(images.shape[-1], n_classes),
        images,
        labels,
        epochs,
        batch_size,
        lr,
        random_state,
    )
