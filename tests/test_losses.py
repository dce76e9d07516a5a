"""Each SRAE loss term against a hand-computed numpy value on a tiny batch."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sklearn_xnn._nn import losses
from sklearn_xnn._nn.losses import (
    PULLAWAY_EPS,
    faithfulness_loss,
    srae_terms,
    weighted_loss,
)

rng = np.random.RandomState(0)
Z = rng.rand(4, 3)
Z_HAT = Z + rng.randn(4, 3) * 0.3
Y = rng.randn(4, 2)
Y_HAT = Y + rng.randn(4, 2)
X = np.abs(rng.randn(4, 3))
W = rng.randn(2, 3)

t = torch.as_tensor


def reconstruction_loss(z_hat, z, kind, q=100.0):
    """The reconstruction term of :func:`srae_terms` alone (no outputs, no pull-away)."""
    cfg = SimpleNamespace(reconstruction=kind, q=q, network_head=None, alpha_p=0.0)
    return srae_terms(None, None, z_hat, z, None, None, cfg)[1]


def pullaway_loss(x, weight, over="samples"):
    """The pull-away term of :func:`srae_terms` alone (its other terms read zeros)."""
    cfg = SimpleNamespace(
        faithfulness="mse",
        faith_target=None,
        reconstruction="mse",
        q=100.0,
        network_head=None,
        alpha_p=1.0,
        pullaway=over,
    )
    zero = x.new_zeros(1, 1)
    y = None if weight is None else zero  # without outputs the pull-away acts on x
    return srae_terms(x, y, zero, zero, y, weight, cfg)[2]


def srae_loss(x, y_hat, z_hat, z, y, weight, cfg):
    """The weighted SRAE loss and its three parts, as a training step weighs them."""
    terms = srae_terms(x, y_hat, z_hat, z, y, weight, cfg)
    return weighted_loss(terms, (cfg.alpha_f, cfg.alpha_r, cfg.alpha_p))


def _pt_numpy(S):
    """PT over the rows of S, by the definition: mean of squared cosines over ordered pairs."""
    m = S.shape[0]
    total = 0.0
    for a in range(m):
        for b in range(m):
            if a != b:
                cos = S[a] @ S[b] / (np.linalg.norm(S[a]) * np.linalg.norm(S[b]))
                total += cos**2
    return total / (m * (m - 1))


def test_faithfulness_is_mean_squared_error():
    expected = sum((Y_HAT[i, c] - Y[i, c]) ** 2 for i in range(4) for c in range(2)) / 8
    assert faithfulness_loss(t(Y_HAT), t(Y)).item() == pytest.approx(expected, rel=1e-12)


def test_log_reconstruction_by_hand():
    q = 100.0
    e = [np.mean([(Z_HAT[i, j] - Z[i, j]) ** 2 for i in range(4)]) for j in range(3)]
    expected = np.mean([np.log(1 + q * ej) for ej in e])
    got = reconstruction_loss(t(Z_HAT), t(Z), "log", q).item()
    assert got == pytest.approx(expected, rel=1e-12)


def test_mse_reconstruction_by_hand():
    expected = np.sum((Z_HAT - Z) ** 2) / 12
    assert reconstruction_loss(t(Z_HAT), t(Z), "mse").item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("over", ["samples", "components"])
def test_pullaway_by_hand(over):
    expected = 0.0
    for c in range(2):
        S = X * W[c] + PULLAWAY_EPS  # S_ik = x_ik W_ck + eps
        expected += _pt_numpy(S if over == "samples" else S.T)
    got = pullaway_loss(t(X), t(W), over).item()
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("lead", [(), (3,)])
def test_pullaway_with_many_outputs_equals_the_contributions_form(lead):
    """More rows and outputs than x-features: the sum is taken without the (C, N, K)
    contributions; value and gradients equal the definition's, dead rows and a zero head
    row included."""
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(*lead, 40, 4, generator=g, dtype=torch.float64))
    x[..., 0, :] = 0.0  # a row with no x-feature on
    w = torch.randn(*lead, 30, 4, generator=g, dtype=torch.float64)
    w[..., 1, :] = 0.0  # an output with no weight
    x.requires_grad_()
    w.requires_grad_()
    S = x.unsqueeze(-3) * w.unsqueeze(-2) + PULLAWAY_EPS  # (..., C, N, K)
    expected = sum(_pt_numpy(s) for s in S.detach().reshape(-1, 40, 4).numpy())
    got = pullaway_loss(x, w, "samples")
    assert got.item() == pytest.approx(expected, rel=1e-10)
    unit = S / S.norm(dim=-1, keepdim=True)
    gram = unit.transpose(-1, -2) @ unit
    direct = ((gram * gram).sum() - 40 * 30 * max(1, np.prod(lead))) / (40 * 39)
    grads = torch.autograd.grad(got, (x, w)), torch.autograd.grad(direct, (x, w))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-8, atol=1e-8 * b.abs().max())


def test_pullaway_of_orthogonal_rows_is_zero_and_of_parallel_rows_is_one():
    eye = torch.eye(3, dtype=torch.float64) * 5
    assert pullaway_loss(eye, None, "samples").item() == pytest.approx(0.0, abs=1e-10)
    same = torch.ones(4, 3, dtype=torch.float64)
    assert pullaway_loss(same, None, "samples").item() == pytest.approx(1.0, rel=1e-12)


def _supervised_cfg(**changes):
    """A supervised training configuration, under the constraint unless
    ``faith_target=None``."""
    base = dict(
        alpha_f=1.0,
        alpha_r=1.0,
        alpha_p=1.0,
        reconstruction="log",
        q=100.0,
        pullaway="samples",
        faithfulness="mse",
        network_head=None,
        y_mean=t(np.array([0.0, 5.0])),
        y_scale=t(np.array([1.0, 1.0])),
        logit_unit=1.0,
        faith_target=0.01,
        output_weights=t(np.array([0.25, 0.75])),
        multioutput="uniform_average",
    )
    return SimpleNamespace(**{**base, **changes})


def test_srae_loss_weights_the_three_terms():
    cfg = _supervised_cfg(alpha_f=2.0, alpha_r=3.0, alpha_p=5.0)
    total, parts = srae_loss(t(X), t(Y_HAT), t(Z_HAT), t(Z), t(Y), t(W), cfg)
    # under the constraint the faithfulness term is the error it bounds
    f = (((Y_HAT - Y) ** 2).mean(0) * [0.25, 0.75]).sum()
    r = reconstruction_loss(t(Z_HAT), t(Z), "log", 100.0)
    p = pullaway_loss(t(X), t(W), "samples")
    assert total.item() == pytest.approx(2 * f + 3 * r.item() + 5 * p.item(), rel=1e-12)
    np.testing.assert_allclose(parts.numpy(), [f, r.item(), p.item()], rtol=1e-12)


def test_the_fixed_weight_objective_has_the_papers_pull_away():
    cfg = _supervised_cfg(faith_target=None)
    _, parts = srae_loss(t(X), t(Y_HAT), t(Z_HAT), t(Z), t(Y), t(W), cfg)
    assert parts[2].item() == pytest.approx(pullaway_loss(t(X), t(W), "samples").item())


def test_unsupervised_loss_has_no_faithfulness_and_pulls_x_apart():
    cfg = SimpleNamespace(
        alpha_f=1.0,
        alpha_r=1.0,
        alpha_p=1.0,
        reconstruction="mse",
        q=100.0,
        pullaway="samples",
        faithfulness="mse",
        network_head=None,
    )
    total, parts = srae_loss(t(X), None, t(Z_HAT), t(Z), None, t(W), cfg)
    assert parts[0].item() == 0.0
    assert parts[2].item() == pytest.approx(_pt_numpy(X + PULLAWAY_EPS), rel=1e-10)


def test_kl_term_is_the_softmax_kl_of_the_logits_in_the_callers_units():
    from sklearn_xnn._nn.losses import faithfulness_error
    from sklearn_xnn.metrics import softmax_kl

    rng = np.random.default_rng(0)
    y, y_hat = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    mean, scale = np.array([1.0, -2.0, 0.5, 3.0]), np.array([2.0, 0.5, 1.0, 4.0])
    cfg = SimpleNamespace(
        faithfulness="kl", temperature=2.0, y_mean=t(mean), y_scale=t(scale), logit_unit=1.0
    )
    # training units are standardised; the softmax is taken on the caller's logits
    err = faithfulness_error(t((y_hat - mean) / scale), t((y - mean) / scale), cfg)
    assert err.item() == pytest.approx(softmax_kl(y, y_hat, temperature=2.0), rel=1e-10)
    cfg.faithfulness = "mse"
    cfg.output_weights = t(np.full(4, 0.25))
    err = faithfulness_error(t(y_hat), t(y), cfg)
    assert err.item() == pytest.approx(np.mean((y_hat - y) ** 2), rel=1e-10)


def test_the_pullaway_over_a_subset_of_outputs_estimates_the_sum_without_bias():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 4, generator=gen, dtype=torch.float64)
    W = torch.randn(100, 4, generator=gen, dtype=torch.float64)
    assert losses.epoch_subsets(64, 0, 3, gen, "cpu", _supervised_cfg())[0] == (
        None,
        None,
    )  # few: all of them
    subsets = torch.stack(
        [o for o, _ in losses.epoch_subsets(100, 0, 4000, gen, "cpu", _supervised_cfg())]
    )
    assert subsets.shape == (4000, losses.PULLAWAY_OUTPUTS)
    assert all(len(set(row.tolist())) == losses.PULLAWAY_OUTPUTS for row in subsets[:50])
    full = float(pullaway_loss(x, W))
    per_output = torch.stack([pullaway_loss(x, W[[c]]) for c in range(100)])
    estimates = per_output[subsets].sum(1) * (100 / losses.PULLAWAY_OUTPUTS)
    assert float(per_output.sum()) == pytest.approx(full, rel=1e-9)
    # the mean of 4,000 draws is within 4 standard errors of the full sum
    se = float(estimates.std()) / np.sqrt(4000)
    assert abs(float(estimates.mean()) - full) < 4 * se


@pytest.mark.parametrize("kind", ["log", "mse"])
def test_the_reconstruction_over_a_subset_of_units_estimates_it_without_bias(kind):
    from sklearn_xnn._nn.modules import MLP

    gen = torch.Generator().manual_seed(1)
    n_units = losses.RECONSTRUCTION_UNITS + 44
    decoder = MLP([4, 8, n_units], nonnegative_output=True).double()
    with torch.no_grad():
        for p in decoder.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.rand(30, 4, generator=gen, dtype=torch.float64)
    z = torch.rand(30, n_units, generator=gen, dtype=torch.float64)
    state = gen.get_state()
    few = losses.epoch_subsets(64, losses.RECONSTRUCTION_UNITS, 2, gen, "cpu", _supervised_cfg())
    assert few == [(None, None)] * 2  # few units and outputs: all of them, nothing drawn
    assert torch.equal(gen.get_state(), state)
    with_head = _supervised_cfg(network_head=torch.nn.Identity())  # its term reads every unit
    assert losses.epoch_subsets(0, n_units, 2, gen, "cpu", with_head) == [(None, None)] * 2
    subsets = [u for _, u in losses.epoch_subsets(0, n_units, 2000, gen, "cpu", _supervised_cfg())]
    with torch.no_grad():
        full = decoder(x)
        # the decoder rebuilds the columns asked for (to rounding: another matrix product)
        torch.testing.assert_close(
            decoder(x, units=subsets[0]), full[:, subsets[0]], rtol=1e-12, atol=0
        )
        whole = float(reconstruction_loss(full, z, kind))
        estimates = torch.stack(
            [reconstruction_loss(decoder(x, units=u), z[:, u], kind) for u in subsets]
        )
    se = float(estimates.std()) / np.sqrt(len(subsets))
    assert abs(float(estimates.mean()) - whole) < 4 * se
