"""The three SRAE loss terms (:func:`srae_terms`, weighed by :func:`weighted_loss`) and the
errors of the constraints training holds. Each is a pure function of tensors with one
signature style.

Notation: ``N`` rows in the batch, ``D`` activation units, ``C`` outputs, ``K`` x-features.
"""

import torch

from sklearn_xnn.metrics._geometry import PULLAWAY_EPS


def faithfulness_loss(y_hat, y):
    """``(1 / (N C)) sum_i sum_c (y_hat_ic - y_ic)^2``: mean squared error of the logits."""
    return torch.mean((y_hat - y) ** 2)


def softmax_kl(y_hat, y, temperature=1.0):
    """``(1 / N) sum_i KL(softmax(y_i / T) || softmax(y_hat_i / T))`` in nats.

    The divergence of the rebuilt decision distribution from the network's, row by row.
    """
    log_p = torch.log_softmax(y / temperature, dim=-1)
    log_q = torch.log_softmax(y_hat / temperature, dim=-1)
    return torch.sum(log_p.exp() * (log_p - log_q), dim=-1).mean()


def logits(y, cfg):
    """Training-unit outputs ``y`` back in the caller's units, ``y_mean + y_scale * y``."""
    out = y * cfg.y_scale + cfg.y_mean
    return out if cfg.logit_unit == 1.0 else out * cfg.logit_unit


def top_outputs(y, cfg):
    """Each row's top output: its largest logit in the caller's units (``y`` itself when
    ``cfg`` holds no logit scale), found on the logits over ``cfg.logit_unit`` (positive:
    the same order, and representable in float32 whatever the logits' magnitude)."""
    return (y if cfg.y_scale is None else y * cfg.y_scale + cfg.y_mean).argmax(-1)


def faithfulness_error(y_hat, y, cfg):
    """The error the faithfulness constraint bounds, for ``cfg.faithfulness``.

    ``"mse"``: ``sum_c w_c (1 / N) sum_i (y_hat_ic - y_ic)^2`` with the output weights
    ``w_c = cfg.output_weights``: with ``w_c = 1 / (C' var_c)`` (``C'`` outputs that vary,
    ``w_c = 0`` for a constant one) that is ``1 - R²`` averaged uniformly over the outputs.
    ``"kl"``: :func:`softmax_kl` of the logits in the caller's units at
    ``cfg.temperature`` (a softmax is not invariant to the per-output standardisation
    used in training).
    """
    if cfg.faithfulness == "kl":
        return softmax_kl(logits(y_hat, cfg), logits(y, cfg), cfg.temperature)
    return torch.sum(torch.mean((y_hat - y) ** 2, dim=0) * cfg.output_weights)


def network_decision_error(z_hat, y, cfg):
    """The faithfulness error of the rest of the network on the decoded activations.

    ``cfg.network_head`` maps activations in the caller's units to logits; it runs on
    ``z_scale * z_hat`` and its logits, standardised as in training, are compared with
    ``y`` by :func:`faithfulness_error`: the decoder must keep the network's decision.
    """
    out = cfg.network_head(z_hat * cfg.z_scale)
    out = out if cfg.logit_unit == 1.0 else out / cfg.logit_unit
    return faithfulness_error((out - cfg.y_mean) / cfg.y_scale, y, cfg)


def uncovered(h, weight, top):
    """How far the rows are from explaining their top output: ``(distance, share)``.

    A row explains its top output ``t`` (``top``, one per row) when one of its x-features
    ``relu(h_k)`` (``h``: their pre-activations) is active and has a positive head weight
    ``W_tk`` (``weight``, ``C x K``): its contribution to the decision is positive.
    ``share`` (detached) is the share of rows that do not. ``distance`` is the mean over
    the rows of how far each unexplained row is from being explained (0 for the others):
    how far below its threshold the nearest x-feature with a positive weight is, ``-max_{k:
    W_tk > 0} h_k / s_k`` with ``s_k`` the root mean square of ``h_k`` over the rows; or,
    when ``t`` has no positive weight at all, how far its largest weight is below zero,
    ``-max_k W_tk / s_W`` with ``s_W`` the root mean square of the weights. Its gradient
    moves only those rows' nearest pre-activation toward its threshold, or their top
    output's largest weight toward zero: explained rows cost nothing, and an output that
    lost every positive weight is not lost for good.
    """
    w_top = weight.index_select(0, top)  # (N, K), with its graph
    positive = w_top.detach() > 0
    scale = h.detach().square().mean(0).sqrt().clamp_min(1e-6)
    nearest = torch.where(positive, h / scale, -torch.inf).amax(-1)
    unexplained = nearest <= 0  # rows without a positive weight too (-inf)
    w_scale = weight.detach().square().mean().sqrt().clamp_min(1e-12)
    no_weight = -w_top.amax(-1) / w_scale  # how far the largest weight is below zero
    distance = torch.where(nearest.isfinite(), torch.where(unexplained, -nearest, 0.0), no_weight)
    return distance.mean(), unexplained.to(h.dtype).mean()


def covers_rows(cfg, n_outputs):
    """Whether training holds the rows to explain their top output: under the
    faithfulness constraint, with two outputs or more (with one, a row whose output gets
    no positive contribution is explained by the head's bias alone)."""
    return cfg.faith_target is not None and n_outputs >= 2


def constraint_terms(terms, cover):
    """The constraints' terms of a step's loss and their errors (detached), one per
    constraint as :class:`~sklearn_xnn._nn.config.Multiplier` orders them: the
    faithfulness error (term and error alike), then with ``cover`` (``(distance, share)``,
    :func:`uncovered`) the distance as the term, the share of
    rows that leave their top output unexplained as the error."""
    faith = terms[0].unsqueeze(-1)
    if cover is None:
        return faith, faith.detach()
    distance, share = cover
    return torch.cat([faith, distance.unsqueeze(-1)], -1), torch.cat(
        [faith.detach(), share.unsqueeze(-1)], -1
    )


def pullaway_term(s, over="samples", eps=PULLAWAY_EPS):
    """EBGAN pull-away of ``s`` (shape ``(..., N, K)``), averaged over ``m (m - 1)`` pairs.

    ``PT(S) = 1 / (m (m - 1)) sum_{a != b} (s_a . s_b / (|s_a| |s_b|))^2`` over the rows of
    ``S + eps`` (``over="samples"``, ``m = N``) or over its columns (``over="components"``,
    ``m = K``). Leading dimensions are summed, so ``s`` may stack one ``S`` per output.
    """
    s = s + eps
    if over == "components":
        s = s.transpose(-1, -2)
    m = s.shape[-2]
    if m < 2:
        return s.new_zeros(())
    unit = s * torch.rsqrt((s * s).sum(-1, keepdim=True))  # rows of unit length
    # sum_ab (u_a . u_b)^2 = ||U U^T||_F^2 = ||U^T U||_F^2: take the smaller Gram matrix, so
    # the "samples" variant costs O(N K^2) instead of O(N^2 K) (same value).
    small = unit.transpose(-1, -2) @ unit if m > unit.shape[-1] else unit @ unit.transpose(-1, -2)
    # the a == b terms are (u_a . u_a)^2 = 1 each (unit rows): m per matrix, and a
    # constant has no gradient, so subtracting them is exact up to rounding
    n_matrices = small[..., 0, 0].numel()
    return ((small * small).sum() - m * n_matrices) / (m * (m - 1))


def contributions(x, weight):
    """``S[c, i, k] = x_ik W_ck``: each x-feature's contribution to each output, ``(C, N, K)``."""
    return x.unsqueeze(0) * weight.unsqueeze(1)


def _pairs(k, like):
    """``(ea, eb, twice)``: one-hot ``(T, K)`` maps to the first and second x-feature of
    each pair ``k <= l`` and each pair's count in a symmetric sum (1 on the diagonal, 2
    off it)."""
    a, b = torch.triu_indices(k, k, device=like.device)
    eye = torch.eye(k, dtype=like.dtype, device=like.device)
    twice = torch.where(a == b, 1.0, 2.0).to(like.dtype).unsqueeze(-1)
    return eye[a], eye[b], twice


class _FactoredPullaway(torch.autograd.Function):
    """The pull-away of every output's contributions without forming them.

    Row ``i`` of ``S^(c)`` has squared norm ``n_ic = sum_k (x_ik W_ck + eps)^2``
    ``= (x^2 (W^2)^T)_ic + 2 eps (x W^T)_ic + K eps^2``. With ``r = 1 / n`` the Gram matrix
    of its unit rows is ``G^(c)_kl = W_ck W_cl A_ckl + eps (v_ck + v_cl) + eps^2 d_c``
    with ``A_ckl = sum_i r_ic x_ik x_il``, ``v_ck = W_ck u_ck``, ``u_ck = sum_i r_ic x_ik``
    and ``d_c = sum_i r_ic``; ``G`` is symmetric, so only its entries ``k <= l`` are
    formed. The value is the direct form's, which needs the ``(C, N, K)`` contributions.
    The gradient is written out so that every product has the outputs (or the rows) as
    its wide side: a matrix product with a narrow result runs several times slower.
    Any leading dimensions are summed, as in :func:`pullaway_term`.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, eps):
        n, k = x.shape[-2], x.shape[-1]
        xt, wt = x.transpose(-1, -2), weight.transpose(-1, -2)  # (..., K, N), (..., K, C)
        # n_ic as one product: [x^2, x] [W^2; 2 eps W]^T + K eps^2
        left = torch.cat([x * x, x], -1)
        right = torch.cat([wt * wt, (2 * eps) * wt], -2)
        r = (left @ right).add_(k * eps * eps).clamp_min_(eps * eps).reciprocal_()  # (..., N, C)
        ea, eb, twice = _pairs(k, x)
        Au = torch.cat([(ea @ xt) * (eb @ xt), xt], -2) @ r  # (..., T + K, C): A and u
        A, u = Au[..., : ea.shape[0], :], Au[..., ea.shape[0] :, :]
        d = r.sum(-2)  # (..., C)
        v = wt * u
        gram = (ea @ wt) * (eb @ wt) * A + eps * (ea @ v + eb @ v)
        gram = gram + (eps * eps) * d.unsqueeze(-2)
        value = ((twice * gram * gram).sum() - n * d.numel()) / (n * (n - 1))
        return value, gram, Au, r

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, ctx.eps = inputs
        _, gram, Au, r = output
        ctx.mark_non_differentiable(gram, Au, r)
        ctx.set_materialize_grads(False)  # no zero gradients for those
        ctx.save_for_backward(x, weight, gram, Au, r)

    @staticmethod
    def backward(ctx, g, *_):
        x, weight, gram, Au, r = ctx.saved_tensors
        eps, (n, k) = ctx.eps, x.shape[-2:]
        xt, wt = x.transpose(-1, -2), weight.transpose(-1, -2)
        ea, eb, twice = _pairs(k, x)
        t = ea.shape[0]
        A, u = Au[..., :t, :], Au[..., t:, :]
        wa, wb, xa, xb = ea @ wt, eb @ wt, ea @ xt, eb @ xt
        gG = (2 * g / (n * (n - 1))) * twice * gram  # (..., T, C)
        gv = eps * (ea.T @ gG + eb.T @ gG)  # (..., K, C)
        gwt = ea.T @ (gG * A * wb) + eb.T @ (gG * A * wa) + gv * u
        gAu = torch.cat([gG * wa * wb, gv * wt], -2)  # (..., T + K, C): the grads of A and u
        # r enters A = P r (P: pairs of rows of xt), u = xt r and d = sum_i r_i
        pairs = torch.cat([xa * xb, xt], -2)  # (..., T + K, N)
        gr = (pairs.transpose(-1, -2) @ gAu).add_((eps * eps) * gG.sum(-2, keepdim=True))
        gP = gAu @ r.transpose(-1, -2)  # (..., T + K, N)
        gxt = gP[..., t:, :] + ea.T @ (gP[..., :t, :] * xb) + eb.T @ (gP[..., :t, :] * xa)
        # r = 1 / max(n, eps^2): no gradient where the floor holds
        gn = gr.mul_(r).mul_(r).neg_().masked_fill_(r >= 1.0 / (eps * eps), 0.0)
        gnt = gn.transpose(-1, -2)
        g2 = torch.cat([wt * wt, wt], -2) @ gnt  # (..., 2K, N)
        gxt = gxt + 2 * xt * g2[..., :k, :] + (2 * eps) * g2[..., k:, :]
        g2 = torch.cat([xt * xt, xt], -2) @ gn  # (..., 2K, C)
        gwt = gwt + 2 * wt * g2[..., :k, :] + (2 * eps) * g2[..., k:, :]
        return gxt.transpose(-1, -2), gwt.transpose(-1, -2), None


#: The outputs a training step's pull-away reads at most (:func:`epoch_subsets`).
PULLAWAY_OUTPUTS = 64
#: The activation units a training step's reconstruction reads at most (:func:`epoch_subsets`).
RECONSTRUCTION_UNITS = 256


def epoch_subsets(n_outputs, n_units, n_steps, generator, device, cfg):
    """Every step's ``(outputs, units)`` of an epoch: the outputs its pull-away sums over
    (:data:`PULLAWAY_OUTPUTS` of ``n_outputs``) and the activation units its
    reconstruction reads (:data:`RECONSTRUCTION_UNITS` of ``n_units``; all of them with
    ``cfg.network_head``, whose term reads every unit), each a random subset drawn from
    ``generator`` (the outputs first), or None for all of them when there are no more
    than that many. A sum over the terms taken over a subset and scaled by ``n / size``
    (a mean: taken over the subset) estimates the whole without bias, as a minibatch
    estimates the sum over the rows, at a fixed cost however many terms there are.
    """
    n_units = n_units if cfg.network_head is None else 0
    drawn = []
    for n, size in ((n_outputs, PULLAWAY_OUTPUTS), (n_units, RECONSTRUCTION_UNITS)):
        if n <= size or not n_steps:  # all of them, and nothing drawn
            drawn.append(None)
            continue
        draws = [torch.randperm(n, generator=generator)[:size] for _ in range(n_steps)]
        drawn.append(torch.stack(draws).to(device))
    return [tuple(None if a is None else a[i] for a in drawn) for i in range(n_steps)]


def srae_terms(x, y_hat, z_hat, z, y, weight, cfg, pullaway=None, outputs=None):
    """The three terms ``(L_faith, L_rec, L_pt)`` of the SRAE loss ``alpha_f L_faith +
    alpha_r L_rec + alpha_p L_pt`` (:func:`weighted_loss`), with their graphs.

    ``weight`` is the head's ``W`` (``C x K``); ``cfg`` holds ``reconstruction, q,
    pullaway, faithfulness, faith_target, network_head, alpha_p``. ``L_faith`` is the
    logits' mean squared error (:func:`faithfulness_loss`); under the faithfulness
    constraint (``cfg.faith_target`` set) or with ``cfg.faithfulness == "kl"`` it is the
    error the constraint bounds, :func:`faithfulness_error`. Without a head (``y`` is
    None, the unsupervised SRAE) it is zero and the pull-away acts on ``x`` itself.

    ``L_rec`` penalises the decoder's errors ``e_j = (1 / N) sum_i (z_hat_ij - z_ij)^2``:
    ``(1 / D) sum_j log(1 + q e_j)`` for ``cfg.reconstruction == "log"``, concave in each
    unit's error, so the optimiser rebuilds part of the space well and gives up on the
    rest; ``(1 / D) sum_j e_j`` for ``"mse"``. The difference is squared as a product
    with itself and summed down the columns: on a CPU the fewest passes over the ``N x D``
    batch, forward and backward. With ``cfg.network_head`` ``L_rec`` also holds
    :func:`network_decision_error`.

    ``L_pt`` is ``sum_c PT(S^(c))`` (:func:`pullaway_term`, over ``cfg.pullaway``) with
    ``S^(c)_ik = x_ik W_ck + eps``, or ``PT(x + eps)`` without a head. Over the samples,
    with more rows than x-features and more outputs than x-features, the sum is taken
    without the ``(C, N, K)`` contributions (:class:`_FactoredPullaway`): ``O(N (C +
    K^2))`` memory. It is computed when ``pullaway`` is true (default: when
    ``cfg.alpha_p`` is nonzero), else it is zero. ``outputs`` (indices) sums it over
    those outputs only, scaled to estimate the sum over all of them
    (:func:`epoch_subsets`). ``x`` is ``(..., N, K)`` and ``weight`` ``(..., C, K)``.
    """
    faith = z.new_zeros(())
    if y is not None and (cfg.faithfulness == "kl" or cfg.faith_target is not None):
        faith = faithfulness_error(y_hat, y, cfg)  # the error the constraint bounds
    elif y is not None:
        faith = faithfulness_loss(y_hat, y)
    else:
        weight = None
    diff = z_hat - z
    sq = (diff * diff).sum(0) / max(z.shape[0], 1)  # e_j
    rec = torch.mean(sq) if cfg.reconstruction == "mse" else torch.mean(torch.log1p(cfg.q * sq))
    if cfg.network_head is not None and y is not None:
        rec = rec + network_decision_error(z_hat, y, cfg)
    pullaway = bool(cfg.alpha_p) if pullaway is None else pullaway
    pt = z.new_zeros(())
    if pullaway:
        w = weight if weight is None or outputs is None else weight.index_select(-2, outputs)
        n, k = x.shape[-2], x.shape[-1]
        if w is not None and cfg.pullaway == "samples" and n > k and w.shape[-2] > k:
            pt = _FactoredPullaway.apply(x, w, PULLAWAY_EPS)[0]
        else:
            pt = pullaway_term(x.unsqueeze(0) if w is None else contributions(x, w), cfg.pullaway)
        if w is not weight:  # over a subset of the outputs
            pt = pt * (weight.shape[-2] / outputs.shape[-1])
    return faith, rec, pt


def weighted_loss(terms, weights):
    """``(sum_t w_t term_t, detached terms)`` for ``terms = (L_faith, L_rec, L_pt)``.

    Weights and terms are floats or tensors of one shape (one value per network when
    several are trained stacked); the detached terms are stacked along a last axis. A
    term whose weight is the number 0 is left out of the sum (and of the graph: a
    training step runs no forward or backward operation for it).
    """
    pairs = zip(weights, terms, strict=True)
    weighted = [w * t for w, t in pairs if not (isinstance(w, (int, float)) and w == 0)]
    total = sum(weighted[1:], weighted[0]) if weighted else terms[1].new_zeros(())
    return total, torch.stack([t.detach() for t in terms], dim=-1)
