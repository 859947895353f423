"""Pieces of the vanilla network and the stagewise MoE of the ``kawata2025`` chapter (section "The experiment").

Neurons are unit vectors with leading (seed, group) axes, trained by online spherical SGD on the correlation loss
``-y sigma(<u, x>)`` with a per-neuron clip of the tangent gradient; output layers are ridge fits; the router is a
linear softmax trained with the experts frozen and read top-1. No Python loop over seeds, experts or samples.
Students ``act`` come from :func:`moetheory.activations.hermite_activation`; overlaps from
:func:`moetheory.metrics.overlaps`.
"""

from __future__ import annotations

import torch

from moetheory.metrics import unit
from moetheory.optim import spherical_sgd_

__all__ = ["sgd_step", "ridge_mse", "features", "random_unit", "prune", "chance_level", "route", "router_step",
           "alignment", "boundary_alignment", "zero_sum_ceiling"]


def sgd_step(u, x, y, act, lr, clip, weight=None):
    """One spherical SGD step of the correlation loss -y sigma(<u, x>) for neurons ``u (S, G, K, d)``.

    ``x (S, G, B, d)``, ``y (S, G, B)``; ``weight (S, G, B)`` (routing mask over the group's batch, rows
    summing to one) or ``None`` (uniform).
    """
    _, ds = act(torch.einsum("sgbd,sgkd->sgbk", x, u))
    yw = y / y.shape[-1] if weight is None else y * weight
    grad = -torch.einsum("sgb,sgbk,sgbd->sgkd", yw, ds, x)
    spherical_sgd_(u, grad, lr, clip)


def ridge_mse(feats, y, route, feats_test, y_test, route_test, ridge):
    """Ridge fit per group on its routed rows; test MSE per seed. ``feats (S, G, n, F)``, ``route`` 0/1."""
    f = feats * route.unsqueeze(-1)
    gram = f.transpose(-1, -2) @ f + ridge * feats.shape[2] * torch.eye(
        f.shape[-1], device=f.device, dtype=f.dtype
    )
    coef = torch.linalg.solve(gram, (f * y.unsqueeze(1).unsqueeze(-1)).sum(2))  # (S, G, F)
    pred = ((feats_test @ coef.unsqueeze(-1)).squeeze(-1) * route_test).sum(1)  # (S, n)
    return ((pred - y_test) ** 2).mean(-1)


def features(u, x, value, centre=None):
    """``[1, sigma(<u_k, x - centre_g>)]``: ``u (S, G, K, d)``, ``x (S, n, d)`` -> ``(S, G, n, K + 1)``;
    ``value``: ``z -> sigma(z)`` (:func:`moetheory.activations.hermite_value`).

    ``<u_k, x - centre_g>`` is computed as ``<u_k, x> - <u_k, centre_g>``: the centred inputs ``(S, G, n, d)``
    are never formed (4.3 GB in float64 for the paper preset's 16 experts and 32768 fit points)."""
    z = torch.einsum("snd,sgkd->sgnk", x, u)
    if centre is not None:
        z = z - torch.einsum("sgd,sgkd->sgk", centre, u).unsqueeze(2)
    val = value(z)
    return torch.cat([torch.ones_like(val[..., :1]), val], -1)


def random_unit(shape, d, gen, device):
    """Uniform unit vectors ``(*shape, d)``."""
    return unit(torch.randn(*shape, d, generator=gen, device=device))


def prune(router, load, threshold):
    """Keep mask ``(S, E)``: visiting experts by decreasing ``load`` (share of inputs routed to them), drop
    one whose router row has cosine above ``threshold`` with an expert already kept (a loop over the handful
    of experts, once)."""
    rows_unit = unit(router)
    cos = rows_unit @ rows_unit.transpose(-1, -2)  # (S, E, E)
    order = load.argsort(dim=-1, descending=True)
    keep = torch.zeros(router.shape[:2], dtype=torch.bool, device=router.device)
    rows = torch.arange(router.shape[0], device=router.device)
    for r in range(router.shape[1]):
        e = order[:, r]
        clash = ((cos[rows, e] > threshold) & keep).any(-1)
        keep[rows, e] = ~clash
    return keep


def chance_level(width: int, d: int) -> float:
    """E max over ``width`` independent uniform unit neurons ``u_j`` of ``|<u_j, w>|``, exactly: ``<u, w>^2`` is
    Beta(1/2, (d - 1)/2), so ``P(max_j |<u_j, w>| <= t) = F(t^2)^width`` and ``E max = int_0^1 1 - F(t^2)^width dt``
    (by quadrature)."""
    from scipy import integrate, stats

    law = stats.beta(0.5, (d - 1) / 2)
    return integrate.quad(lambda t: 1.0 - law.cdf(t * t) ** width, 0.0, 1.0, limit=200)[0]


def route(x, router, keep):
    """Top-1 expert ``(S, n)`` of the linear router over kept experts."""
    logits = torch.einsum("snd,sed->sne", x, router).masked_fill(~keep.unsqueeze(1), -torch.inf)
    return logits.argmax(-1)


def router_step(router, u1, x, y, act, lr, clip):
    """Ascend E[y sum_m pi_m(x) sigma(<u_m, x>)], pi = softmax(<W_m, x>), in the router rows ``W (S, M, d)``
    (SGD from zero with a small step, the batch gradient clipped per row; experts ``u1`` frozen)."""
    sig, _ = act(torch.einsum("sbd,smd->sbm", x, u1))
    pi = torch.softmax(torch.einsum("sbd,smd->sbm", x, router), -1)
    adv = pi * (sig - (pi * sig).sum(-1, keepdim=True))  # d/dlogit_m of the mixture output
    grad = torch.einsum("sb,sbm,sbd->smd", y, adv, x) / x.shape[1]
    router += lr * grad * (clip / grad.norm(dim=-1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)


def boundary_alignment(router, means, counts):
    """cos(W_(m_c) - W_(m_c'), v_c - v_c') for every pair of clusters ``(S, C, C)`` (NaN on the diagonal), where
    m_c is the expert that receives most of cluster c (``counts (S, C, M)``, test points of c routed to m).

    Top-1 softmax routing between two experts depends only on the difference of their rows, so this is the
    router's decision boundary between clusters c and c' against the Bayes boundary (equal priors, identity
    covariance: the difference of the means). It does not change when a common vector is added to every row,
    which :func:`alignment` does: the ideal router has 1 here (:func:`zero_sum_ceiling` for ``alignment``); two
    clusters sent to the same expert have 0."""
    top = counts.argmax(-1)  # (S, C)
    rows = torch.gather(router, 1, top.unsqueeze(-1).expand(-1, -1, router.shape[-1]))  # (S, C, d)
    diff_w = rows.unsqueeze(2) - rows.unsqueeze(1)  # (S, C, C, d)
    diff_v = (means.unsqueeze(1) - means.unsqueeze(0)).expand_as(diff_w)
    cos = (unit(diff_w) * unit(diff_v)).sum(-1)
    same = top.unsqueeze(2) == top.unsqueeze(1)
    eye = torch.eye(means.shape[0], dtype=torch.bool, device=router.device)
    return cos.masked_fill(same, 0.0).masked_fill(eye, torch.nan)


def zero_sum_ceiling(means) -> float:
    """min over c of cos(v_c - v_bar, v_c): what :func:`alignment` gives for the ideal router (rows rho v_c)
    written with rows summing to zero, as a softmax router trained from zero keeps them (the gradients of the
    rows sum to zero). 1 for antipodal means; sqrt(1 - 1/C) for C orthonormal means."""
    centred = means - means.mean(0, keepdim=True)
    return float((unit(centred) * unit(means)).sum(-1).min())


def alignment(router, means, keep=None):
    """max over (kept) experts of cos(router row, v_c): ``(S, C)``."""
    cos = unit(router) @ means.T  # (S, E, C)
    if keep is not None:
        cos = cos.masked_fill(~keep.unsqueeze(-1), -1.0)
    return cos.max(1).values
