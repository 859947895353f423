"""Metrics shared by the chapters, each in one place: dispatch entropy and routing matrices (Chen et al.), unit
vectors, cosines and overlaps (Chen et al., Kawata et al., Makkuva et al.), permutation-matched parameter errors
(Makkuva et al.), log-log slope fits (every rate a chapter measures) and their bootstrap bands over seeds (Hermite,
Kawata et al.). Batched over a leading seed axis."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import stats
from scipy.optimize import linear_sum_assignment

from moetheory.checks import check_float, check_int


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


def unit(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``v / |v|`` along the last axis; a row of norm below ``eps`` is divided by ``eps`` (a zero row stays zero)."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def cosines(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """``(..., m, d)`` x ``(k, d)`` -> ``(..., m, k)`` cosines ``<a_i, b_j> / (|a_i| |b_j|)`` (0 for a zero row)."""
    return (a @ b.T) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1)).clamp_min(eps)


def overlaps(u: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``|<u, w>|`` of unit vectors ``u (..., d)`` with unit ``directions (k, d)``: ``(..., k)``."""
    return (u @ directions.T).abs()


def permutation_match(estimate, truth, *, sign_invariant: bool = False) -> tuple[float, np.ndarray]:
    """``(min over permutations pi of ||estimate[pi] - truth||_F, pi)`` for row sets ``(k, d)``; ``pi[i]`` is the
    estimated row matched to true row ``i``.

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
    return float(np.sqrt(cost[rows, cols].sum())), rows[np.argsort(cols)]


def permutation_error(estimate, truth, *, sign_invariant: bool = False) -> float:
    """min over permutations pi of the Frobenius norm ||estimate[pi] - truth|| for row sets ``(k, d)``
    (:func:`permutation_match` without the permutation)."""
    return permutation_match(estimate, truth, sign_invariant=sign_invariant)[0]


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x``; ``nan`` when some ``y`` is not finite (a censored
    median, a diverged run)."""
    y = np.asarray(y, dtype=float)
    if not np.all(np.isfinite(y)):
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(x, dtype=float)), np.log(y), 1)[0])


def slope_band(dims, samples, level: float = 0.9, *, minus=None, n_resamples: int = 2000,
               seed: int = 0) -> tuple[float, float, float]:
    """``(slope, low, high)``: the log-log slope of the median over seeds of ``samples (D, S)`` against ``dims``
    and its percentile bootstrap band (``scipy.stats.bootstrap``; every d's seeds resampled on their own;
    ``n_resamples``, fixed ``seed``). A censored run (``nan`` or ``inf``) counts as +inf, above the median; a
    median that is censored makes the slope +inf. With ``minus (D, S')`` (resampled on its own too): the slope of
    ``samples`` minus that of ``minus``, ``-inf`` when ``minus``'s is censored (no evidence of a gap)."""
    check_float("level", level, 0.0, 1.0, low_open=True, high_open=True)
    check_int("n_resamples", n_resamples, 1)
    logx = np.log(np.asarray(dims, dtype=float))
    groups = [np.nan_to_num(np.asarray(s, dtype=float), nan=np.inf, posinf=np.inf) for s in (samples, minus)
              if s is not None]
    if logx.size < 2 or any(g.ndim != 2 or g.shape[0] != logx.size for g in groups):
        raise ValueError(f"samples must be (len(dims) >= 2, seeds); got dims {logx.shape}, samples "
                         f"{[g.shape for g in groups]}")
    centred = (logx - logx.mean()) / ((logx - logx.mean()) ** 2).sum()  # slope = centred @ log(medians)

    def slope(*rows, axis=-1):
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf where a median is censored
            logm = np.stack([np.log(np.median(r, axis=axis)) for r in rows])
            fitted = np.tensordot(centred, logm, axes=1)
        return np.where(np.isfinite(logm).all(0), fitted, np.inf)

    def statistic(*rows, axis=-1):
        d = len(logx)
        if len(rows) == d:
            return slope(*rows, axis=axis)
        gap = slope(*rows[:d], axis=axis) - slope(*rows[d:], axis=axis)
        return np.where(np.isnan(gap), -np.inf, gap)  # both censored: no evidence of a gap

    rows = [r for g in groups for r in g]
    with np.errstate(all="ignore"), warnings.catch_warnings():  # scipy's interval is nan where both
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # neighbours of a percentile are infinite
        res = stats.bootstrap(rows, statistic, n_resamples=n_resamples, confidence_level=level,
                              method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    alpha = (1 - level) / 2
    band = [_infinite_percentile(res.bootstrap_distribution, q) if np.isnan(v) else float(v)
            for v, q in zip((res.confidence_interval.low, res.confidence_interval.high), (alpha, 1 - alpha))]
    return float(statistic(*rows)), *band


def _infinite_percentile(values: np.ndarray, q: float) -> float:
    """The ``q``-quantile of ``values`` where one of its two neighbours is infinite (a linear quantile gives
    ``nan`` there, inf - inf): that infinity, or the lower neighbour when the quantile falls on it."""
    ordered = np.sort(values)
    pos = q * (ordered.size - 1)
    below, above = ordered[int(np.floor(pos))], ordered[int(np.ceil(pos))]
    return float(below if pos == np.floor(pos) or below == -np.inf else above)
