"""How faithful K components can be: the curve behind choosing K."""

import warnings

import numpy as np
import pandas as pd
import torch

from sklearn_xnn._nn import bound
from sklearn_xnn._nn.data import working_dtype
from sklearn_xnn._nn.scaling import standardize_columns


def k_curve(Z, y=None, *, max_k=20):
    """The faithfulness of the best rank-K linear explanation and PCA's variance, per K.

    For ``K = 1 .. max_k``:

    - ``linear_bound_r2``: the R² (uniform over outputs, on these rows) of the best
      rank-K linear predictor of ``y`` from ``Z`` (ridge least squares with the ridge
      chosen by generalised cross-validation, then reduced-rank regression, on
      standardised outputs). No K-dimensional linear embedding with a linear head (PCA,
      NMF, PLS) is more faithful on these rows; it is the curve
      ``SRAEExplainer(n_components="auto")`` chooses K from (``faithfulness_curve_``).
      Beyond the rank of ``y`` it stays at its last value.
    - ``pca_explained_variance``: the fraction of ``Z``'s variance its top K principal
      directions explain (``PCA``'s ``explained_variance_ratio_`` summed).

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_features)
        Activations (the training rows of the explainers).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        The logits; without them only the variance curve is given.
    max_k : int, default=20
        Largest K (clipped to ``n_features``).

    Returns
    -------
    curve : pandas.DataFrame
        Indexed by ``K``.

    Examples
    --------
    >>> from sklearn_xnn.compare import k_curve
    >>> from sklearn_xnn.datasets import make_concept_activations
    >>> Z, y, _ = make_concept_activations(500, 32, n_concepts=3, random_state=0)
    >>> curve = k_curve(Z, y, max_k=5)
    >>> list(curve.columns)
    ['linear_bound_r2', 'pca_explained_variance']
    >>> curve["linear_bound_r2"].round(2).tolist()  # three concepts: flat after K = 3
    [0.4, 0.76, 0.89, 0.89, 0.89]
    """
    Z = np.asarray(Z)  # float32 kept: the moments read it in float64 chunk by chunk
    Z = Z.astype(working_dtype(Z.dtype), copy=False)
    with warnings.catch_warnings():  # a read-only array (a memmap) is only ever read
        warnings.simplefilter("ignore", UserWarning)
        Zt = torch.as_tensor(Z)
    if Zt.ndim != 2 or Zt.shape[0] < 2:
        raise ValueError(f"Z must be 2-D with at least 2 rows, got shape {tuple(Zt.shape)}.")
    ks = np.arange(1, min(int(max_k), Zt.shape[1]) + 1)
    columns = {}
    if y is not None:
        Y = np.asarray(y, dtype=np.float64)
        Y = Y.reshape(len(Y), -1) if Y.ndim else Y
        if Y.ndim != 2 or Y.shape[0] != Zt.shape[0]:
            raise ValueError(
                f"y must have one row per row of Z ({Zt.shape[0]}), got shape {Y.shape}."
            )
        mean, scale = standardize_columns(Y)  # as the explainer's own fit (overflow-safe)
        Y = (Y - mean) / scale
        m = bound.moments(Zt, torch.as_tensor(Y))
        if m is None:
            raise ValueError("Z and y must be finite.")
        curve = bound.reduced_rank(m, Y.shape[1]).curve
        columns["linear_bound_r2"] = curve[np.minimum(ks, len(curve)) - 1]
    m = bound.moments(Zt)
    if m is None:
        raise ValueError("Z must be finite.")
    columns["pca_explained_variance"] = bound.variance_curve(m)[ks - 1]
    return pd.DataFrame(columns, index=pd.Index(ks, name="K"))
