"""Reconstruction faithfulness: do the rebuilt activations still drive the network the same way?"""

import numpy as np
import torch
from sklearn.metrics import r2_score

from sklearn_xnn.torch._modes import evaluating


def _run_head(head_network, Z, batch_size):
    """``head_network`` on the rows of ``Z``: a torch module (batched, no grad) or a callable."""
    if not isinstance(head_network, torch.nn.Module):
        return np.asarray(head_network(Z), dtype=np.float64)
    param = next(iter(head_network.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    out = []
    with evaluating(head_network), torch.no_grad():
        for start in range(0, Z.shape[0], batch_size):
            z = torch.as_tensor(Z[start : start + batch_size], dtype=dtype, device=device)
            out.append(head_network(z).reshape(len(z), -1).double().cpu().numpy())
    return np.concatenate(out)


def reconstruction_faithfulness(explainer, head_network, Z, y=None, *, batch_size=1024):
    """Logits of the rest of the network on ``inverse_transform(transform(Z))`` vs. the originals.

    The linear-head faithfulness asks whether the x-features predict the logits; this asks
    whether the activations rebuilt from the x-features still make the *network* produce
    them. With ``Z_hat = explainer.inverse_transform(explainer.transform(Z))``,
    ``y_rec = head_network(Z_hat)``:

    - ``reconstruction_faithfulness_r2 = r2_score(y, y_rec)`` (uniform average over
      outputs, as :meth:`SRAEExplainer.score`);
    - ``reconstruction_top1_agreement = mean_i [argmax_c y_rec_ic == argmax_c y_ic]``
      (omitted for a single output).

    Parameters
    ----------
    explainer : fitted transformer with ``inverse_transform``
        SRAEExplainer, PCA, NMF, ...
    head_network : torch.nn.Module or callable
        The layers after the explained one: maps activations of shape
        (n_samples, n_features) to logits. A callable gets and returns numpy arrays.
        A module runs in eval mode under ``torch.no_grad`` (batch normalisation on its
        running statistics, buffers untouched, dropout off); its submodules' ``training``
        flags are restored afterwards.
    Z : array-like of shape (n_samples, n_features)
        Activations, preferably held out.
    y : array-like of shape (n_samples, n_outputs), optional
        The original logits; default ``head_network(Z)``.
    batch_size : int, default=1024
        Rows per forward pass of a torch ``head_network``.

    Returns
    -------
    scores : dict
        ``{"reconstruction_faithfulness_r2": float, "reconstruction_top1_agreement": float}``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_xnn.torch import reconstruction_faithfulness
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    >>> head = torch.nn.Linear(6, 3, dtype=torch.float64)
    >>> scores = reconstruction_faithfulness(PCA(6).fit(Z), head, Z)
    >>> round(scores["reconstruction_faithfulness_r2"], 6), scores["reconstruction_top1_agreement"]
    (1.0, 1.0)
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"Z must be 2-D (n_samples, n_features), got shape {Z.shape}.")
    Z_hat = np.asarray(explainer.inverse_transform(explainer.transform(Z)), dtype=np.float64)
    y_rec = _run_head(head_network, Z_hat, batch_size)
    y = _run_head(head_network, Z, batch_size) if y is None else np.asarray(y, dtype=np.float64)
    y = y.reshape(len(y), -1)
    if y.shape != y_rec.shape:
        raise ValueError(
            f"y has shape {y.shape} but head_network gives {y_rec.shape}; pass the logits "
            "that the head network produces."
        )
    scores = {"reconstruction_faithfulness_r2": float(r2_score(y, y_rec))}
    if y.shape[1] > 1:
        agree = np.mean(y_rec.argmax(1) == y.argmax(1))
        scores["reconstruction_top1_agreement"] = float(agree)
    return scores
