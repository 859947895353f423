"""The gated mixture of experts of Makkuva et al. (2019), derived in ``book/makkuva2019.ipynb``.

x ~ N(0, I_d); the expert is z ~ softmax(W x) with the last row of W zero; y = g(a_z^T x) + sigma * noise,
g linear, sigmoid or ReLU. ``sample_gated_moe`` is the public NumPy generator; ``sample_batch`` draws a leading seed
dimension at once with torch (CPU or CUDA) for the chapter's experiments.
"""

from __future__ import annotations

import numpy as np
import torch

from moetheory.activations import LINKS, link, numpy_link
from moetheory.checks import check_float, check_int

__all__ = ["sample_gated_moe"]

NONLINEARITIES = LINKS  # the expert links g (:mod:`moetheory.activations`)


def check_parameters(regressors, gating) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``regressors`` (k, d) and ``gating`` (k, d): finite, same shape, 2 <= k < d, last gating row zero.

    k < d, not k <= d: the model's gating rows must be orthogonal to span(A), which leaves them no room when k = d.
    """
    a = np.asarray(regressors, dtype=float)
    w = np.asarray(gating, dtype=float)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"regressors must be a (k, d) array with k >= 2 experts; got shape {a.shape}")
    if w.shape != a.shape:
        raise ValueError(f"gating must have the shape of regressors {a.shape}; got {w.shape}")
    k, d = a.shape
    if k >= d:
        raise ValueError(f"regressors: the number of experts k must be in [2, d - 1] = [2, {d - 1}] (gating "
                         f"orthogonal to span(A) needs k < d); got k={k}, d={d}")
    for name, arr in (("regressors", a), ("gating", w)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must contain only finite values")
    if np.any(w[-1] != 0):
        raise ValueError("gating: the last row must be zero (the reference expert)")
    return a, w


def sample_gated_moe(n, regressors, gating, nonlinearity="linear", noise_std=0.1, random_state=None):
    """Draw ``n`` samples ``(X, y)`` of the gated MoE; ``X`` is ``(n, d)``, ``y`` is ``(n,)``.

    ``regressors`` and ``gating`` are ``(k, d)`` (last gating row zero); ``nonlinearity`` in linear / sigmoid / relu;
    ``noise_std`` > 0; ``random_state`` an int, ``None`` or a ``numpy.random.Generator``.
    """
    n = check_int("n", n, 1)
    a, w = check_parameters(regressors, gating)
    g = numpy_link(nonlinearity)
    noise_std = check_float("noise_std", noise_std, 0.0, low_open=True)
    rng = np.random.default_rng(random_state)
    x = rng.standard_normal((n, a.shape[1]))
    logits = x @ w.T  # (n, k)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    z = (prob.cumsum(1) < rng.random((n, 1))).sum(1).clip(max=a.shape[0] - 1)  # inverse-CDF draw of the expert
    t = np.einsum("nd,nd->n", x, a[z])
    y = g(t) + noise_std * rng.standard_normal(n)
    return x, y


def sample_batch(n: int, regressors: torch.Tensor, gating: torch.Tensor, nonlinearity: str, noise_std: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched draw: ``regressors``, ``gating`` ``(S, k, d)`` on one device -> ``X (S, n, d)``, ``y (S, n)``."""
    seeds, k, d = regressors.shape
    dev, dt = regressors.device, regressors.dtype
    x = torch.randn(seeds, n, d, generator=generator, dtype=dt).to(dev)
    u = torch.rand(seeds, n, 1, generator=generator, dtype=dt).to(dev)
    e = torch.randn(seeds, n, generator=generator, dtype=dt).to(dev)
    prob = torch.softmax(x @ gating.transpose(1, 2), -1)  # (S, n, k)
    z = (prob.cumsum(-1) < u).sum(-1).clamp(max=k - 1)  # (S, n)
    t = (x @ regressors.transpose(1, 2)).gather(-1, z.unsqueeze(-1)).squeeze(-1)
    return x, link(nonlinearity)(t) + noise_std * e


def random_parameters(seeds: int, d: int, k: int, gating_norm: float, generator: torch.Generator,
                      overlap: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random unit regressors ``(S, k, d)`` and gating ``(S, k, d)`` (last row zero).

    Gating row i is a random vector orthogonal to span(A) of norm ``gating_norm`` (the paper's assumption) plus
    ``overlap * a_i``: ``overlap = 0`` satisfies the assumption, ``overlap > 0`` breaks it by a known amount.
    Needs 2 <= k < d: with k = d no direction is orthogonal to span(A) (a ``ValueError`` names the range).
    """
    check_int("d", d, 3)
    check_int("k", k, 2, d - 1)  # k = d would normalise rounding noise into the "orthogonal" gating rows
    a = torch.randn(seeds, k, d, generator=generator, dtype=torch.float64)
    a = a / a.norm(dim=-1, keepdim=True)
    w = torch.randn(seeds, k, d, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(a.transpose(1, 2))  # (S, d, k) orthonormal basis of span(A)
    w = w - (w @ q) @ q.transpose(1, 2)
    w = gating_norm * w / w.norm(dim=-1, keepdim=True) + overlap * a
    w[:, -1] = 0.0
    return a, w
