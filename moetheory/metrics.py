"""Metrics shared by the chapters: dispatch entropy and routing matrices (Chen et al.), overlaps (Hermite,
Kawata et al.), and permutation-invariant parameter errors (Makkuva et al.). Batched over a leading seed axis."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from moetheory.checks import check_int


def routing_matrix(cluster: torch.Tensor, expert: torch.Tensor, n_clusters: int, n_experts: int) -> torch.Tensor:
    """Counts ``(S, K, E)``: how many examples of cluster k went to expert m. Inputs ``(S, n)`` or ``(n,)``."""
    check_int("n_clusters", n_clusters, 1)
    check_int("n_experts", n_experts, 1)
    cluster, expert = torch.atleast_2d(cluster), torch.atleast_2d(expert)
    if cluster.shape != expert.shape:
        cluster = cluster.expand_as(expert)
    seeds = expert.shape[0]
    flat = (torch.arange(seeds, device=expert.device).view(-1, 1) * n_clusters + cluster) * n_experts + expert
    counts = torch.bincount(flat.reshape(-1), minlength=seeds * n_clusters * n_experts)
    return counts.view(seeds, n_clusters, n_experts)


def dispatch_entropy(cluster: torch.Tensor, expert: torch.Tensor, n_clusters: int, n_experts: int) -> torch.Tensor:
    """Chen et al.'s dispatch entropy per seed ``(S,)``: sum_m (n_m/n) H(cluster | expert m), in nats.

    0 when every expert sees a single cluster; ln K when every expert sees all clusters equally.
    """
    counts = routing_matrix(cluster, expert, n_clusters, n_experts).double()  # (S, K, E)
    n_m = counts.sum(1, keepdim=True)  # (S, 1, E)
    p = counts / n_m.clamp_min(1)
    h = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)  # (S, E)
    return (n_m.squeeze(1) / counts.sum((1, 2)).unsqueeze(-1) * h).sum(-1)


def overlap(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Absolute cosine ``|<u, w>| / (|u| |w|)`` along the last axis, broadcasting the rest."""
    num = (u * w).sum(-1).abs()
    return num / (u.norm(dim=-1) * w.norm(dim=-1)).clamp_min(torch.finfo(u.dtype).tiny)


def permutation_error(estimate, truth, *, sign_invariant: bool = False) -> float:
    """min over permutations pi of the Frobenius norm ||estimate[pi] - truth|| for row sets ``(k, d)``.

    Solved exactly as an assignment problem (the squared error is a sum of per-row costs).
    With ``sign_invariant`` each row may also be negated.
    """
    est, tru = np.asarray(estimate, dtype=float), np.asarray(truth, dtype=float)
    if est.shape != tru.shape or est.ndim != 2:
        raise ValueError(f"estimate and truth must both be (k, d); got {est.shape} and {tru.shape}")
    cost = ((est[:, None, :] - tru[None, :, :]) ** 2).sum(-1)
    if sign_invariant:
        cost = np.minimum(cost, ((est[:, None, :] + tru[None, :, :]) ** 2).sum(-1))
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].sum()))

