"""The pointing game: whether each heatmap's peak falls on the object (Zhang et al., 2016)."""

import numbers

import numpy as np


def pointing_game(heatmaps, masks, *, tolerance=0):
    """Fraction of heatmaps whose maximum falls inside the object mask.

    A hit is ``masks[i]`` containing, within ``tolerance`` pixels (Chebyshev distance),
    the location of the largest value of ``heatmaps[i]``. An all-zero heatmap counts
    as a miss.

    Parameters
    ----------
    heatmaps : array-like of shape (n_samples, height, width)
        One map per input.
    masks : array-like of bool of shape (n_samples, height, width)
        Where the evidence truly is.
    tolerance : int, default=0
        Pixels of slack around the mask, non-negative.

    Returns
    -------
    score : float
        Hits divided by the number of inputs.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_xnn.torch import pointing_game
    >>> maps = np.zeros((2, 4, 4)); maps[0, 1, 1] = maps[1, 3, 3] = 1.0
    >>> masks = np.zeros((2, 4, 4), bool); masks[:, :2, :2] = True
    >>> pointing_game(maps, masks)
    0.5
    """
    if not isinstance(tolerance, numbers.Integral) or isinstance(tolerance, bool):
        raise TypeError(f"tolerance must be a non-negative int, got {tolerance!r}.")
    if tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int, got {tolerance!r}.")
    heatmaps, masks = np.asarray(heatmaps), np.asarray(masks, dtype=bool)
    if heatmaps.shape != masks.shape or heatmaps.ndim != 3:
        raise ValueError(
            f"heatmaps and masks must share a shape (n, height, width); got {heatmaps.shape} "
            f"and {masks.shape}."
        )
    hits = 0
    for hm, mask in zip(heatmaps, masks, strict=True):
        if not np.any(hm > 0):
            continue
        r, c = np.unravel_index(np.argmax(hm), hm.shape)
        window = mask[
            max(r - tolerance, 0) : r + tolerance + 1, max(c - tolerance, 0) : c + tolerance + 1
        ]
        hits += bool(window.any())
    return hits / len(heatmaps) if len(heatmaps) else float("nan")
