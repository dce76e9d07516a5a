"""The training engine's fast paths: fused Adam, bf16 autocast, torch.compile."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from sklearn_xnn import SRAEExplainer
from sklearn_xnn._nn import config as optim
from tests.conftest import FAST

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="bf16 autocast and compile are CUDA paths; no GPU here"
)


def _fit(Z, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SRAEExplainer(**{**FAST, "random_state": 0, **kw}).fit(Z, y)


def test_adam_is_fused_on_cpu():
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = optim.adam(params, 1e-3, 0.0)
    assert opt.defaults["fused"] is True


def test_fused_adam_keeps_cpu_fits_bitwise_repeatable(planted_small):
    Z, y, _ = planted_small
    a, b = _fit(Z, y), _fit(Z, y)
    np.testing.assert_array_equal(a.transform(Z), b.transform(Z))
    assert a.loss_curve_ == b.loss_curve_


def test_fused_adam_follows_the_plain_adam_update():
    torch.manual_seed(0)
    w0 = torch.randn(50, 20)
    results = []
    for kwargs in ({"fused": True}, {"foreach": False}):
        w = torch.nn.Parameter(w0.clone())
        opt = torch.optim.Adam([w], lr=1e-2, weight_decay=1e-4, **kwargs)
        for step in range(20):
            w.grad = torch.sin(w.detach() * (step + 1))
            opt.step()
        results.append(w.detach())
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)
    assert optim.adam([torch.nn.Parameter(w0.clone())], 1e-2, 1e-4).defaults["fused"] is True


def test_bf16_is_ignored_off_cuda(planted_small):
    Z, y, _ = planted_small
    a, b = _fit(Z, y), _fit(Z, y, precision="bf16", device="cpu")
    np.testing.assert_array_equal(a.transform(Z), b.transform(Z))


def test_bad_precision_is_refused(planted_small):
    Z, y, _ = planted_small
    with pytest.raises(ValueError, match="precision"):
        SRAEExplainer(precision="fp16").fit(Z, y)


@needs_cuda
def test_bf16_on_cuda_stays_close_to_float32(planted_small):
    Z, y, _ = planted_small
    a = _fit(Z, y, device="cuda")
    b = _fit(Z, y, device="cuda", precision="bf16")
    assert abs(a.score(Z, y) - b.score(Z, y)) < 0.05


@needs_cuda
def test_compile_on_cuda_matches_eager(planted_small):
    Z, y, _ = planted_small
    a = _fit(Z, y, device="cuda", max_iter=3)
    b = _fit(Z, y, device="cuda", max_iter=3, compile=True)
    np.testing.assert_allclose(a.transform(Z), b.transform(Z), rtol=1e-3, atol=1e-3)


def test_few_rows_of_a_wide_layer_take_the_spectrum_of_its_range_alone(monkeypatch):
    from sklearn_xnn._nn import bound

    rng = np.random.default_rng(0)
    n, D = 40, 300  # rank <= 39: the range path (O(D^2 n))
    Z = np.abs(rng.standard_normal((n + 100, D)))
    y = Z[:, :8] @ rng.standard_normal((8, 6)) + 0.1 * rng.standard_normal((n + 100, 6))
    Zc = torch.as_tensor(Z[:n] - Z[:n].mean(0))
    G = Zc.T @ Zc
    evals, evecs = bound.scatter_eigh(G, n)
    assert evecs.shape == (D, n + bound.RANGE_OVERSAMPLE)
    full_vals, full_vecs = torch.linalg.eigh(G)
    top = slice(-(n - 1), None)  # the n - 1 nonzero eigenpairs
    torch.testing.assert_close(evals[top], full_vals[top], rtol=1e-9, atol=1e-9)
    proj = lambda V: V @ V.T  # noqa: E731 - the subspace, whatever the basis
    torch.testing.assert_close(proj(evecs[:, top]), proj(full_vecs[:, top]), rtol=0, atol=1e-8)

    def fit(y_fit):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return SRAEExplainer(4, random_state=0, max_iter=2, device="cpu").fit(Z[:n], y_fit)

    fast = [fit(y[:n]), fit(None)]
    monkeypatch.setattr(bound, "RANGE_OVERSAMPLE", 10**9)  # every spectrum in full
    exact = [fit(y[:n]), fit(None)]
    assert fast[0].faithfulness_bound_ == pytest.approx(exact[0].faithfulness_bound_, abs=1e-10)
    curves = fast[1].faithfulness_curve_, exact[1].faithfulness_curve_
    np.testing.assert_allclose(*curves, atol=1e-12)
    for a, b in zip(fast, exact, strict=True):
        np.testing.assert_allclose(a.transform(Z[n:]), b.transform(Z[n:]), atol=1e-4)
