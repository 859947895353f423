"""Global convergence of the gating EM, the central algorithmic claim of Makkuva et al. (2019): with the regressors
known, EM for the gating (step 3 of the algorithm, :func:`.gated_em.gating_em`) converges to the true parameters
from any start. Tested in ``book/makkuva2019.ipynb`` (claim ``makkuva2019/gating-em-global``).

With the TRUE regressors, EM is run on one sample from many starts of very different norms (0.01x to 100x the true
gating's norm, random directions): if the claim holds, every start ends at the same W, the maximiser of the
likelihood given A, whose distance to the truth shrinks like n^(-1/2). Our M-step is one damped Newton step, so this
is a generalised EM; the spread across starts is limited by the stopping tolerance.
"""

from __future__ import annotations

import torch

from moetheory.checks import check_float, check_int
from moetheory.papers.makkuva2019.gated_em import gating_em
from moetheory.papers.makkuva2019.gated_moe import random_parameters, sample_batch


def start_grid(w_true: torch.Tensor, norms, n_directions: int, generator: torch.Generator) -> torch.Tensor:
    """Gating starts ``(R, k, d)``, R = len(norms) * n_directions, for one true gating ``w_true (k, d)``: random
    Gaussian directions (last row zero) scaled to Frobenius norm ``norm * ||w_true||_F``, norm by norm."""
    k, d = w_true.shape
    dirs = torch.randn(n_directions, k, d, generator=generator, dtype=w_true.dtype)
    dirs[:, -1] = 0.0
    dirs = dirs / dirs.flatten(1).norm(dim=-1)[:, None, None]
    scale = torch.tensor(norms, dtype=w_true.dtype)[:, None, None, None] * w_true.norm().cpu()
    return (scale * dirs[None]).reshape(-1, k, d).to(w_true.device)


def gating_em_from_starts(x, y, a, starts, nonlinearity: str, noise_std: float, *, max_iter: int = 200,
                          tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Gating EM on one instance (``x (n, d)``, ``y (n,)``, regressors ``a (k, d)``) from every start of
    ``starts (R, k, d)`` at once (batched over starts). Returns the final ``W (R, k, d)`` and ``n_iter (R,)``."""
    r = starts.shape[0]
    return gating_em(x.expand(r, *x.shape), y.expand(r, *y.shape), a.expand(r, *a.shape), starts, nonlinearity,
                     noise_std, max_iter=max_iter, tol=tol)


def diameter(w: torch.Tensor) -> float:
    """Largest Frobenius distance between two of the final gatings ``w (R, k, d)``."""
    flat = w.flatten(1)
    return float(torch.cdist(flat[None], flat[None])[0].max())


def global_convergence(d: int, k: int, n: int, n_instances: int, norms, n_directions: int, *, gating_norm: float,
                       noise_std: float, generator: torch.Generator, device="cpu", nonlinearity: str = "linear",
                       max_iter: int = 200, tol: float = 1e-6) -> dict:
    """Gating EM with the true regressors from ``len(norms) * n_directions`` starts on each of ``n_instances``
    fresh instances (d, k, n; gating orthogonal to the regressors, rows of norm ``gating_norm``).

    Returns lists over instances: ``spread`` (the diameter of the final W across starts), ``error`` (per start,
    ``||W_final - W_true||_F``), ``n_iter`` (per start), and ``converged`` (every run stopped before ``max_iter``),
    with ``norms`` (the start norms in units of ``||W_true||_F``, one per start).
    """
    check_int("k", k, 2, d - 1)
    check_int("n", n, 2 * d)
    check_int("n_instances", n_instances, 1)
    check_int("n_directions", n_directions, 1)
    for norm in norms:
        check_float("norms", norm, 0.0, low_open=True)
    out = {"norms": [float(v) for v in norms for _ in range(n_directions)], "spread": [], "error": [], "n_iter": []}
    a, w = (t.to(device) for t in random_parameters(n_instances, d, k, gating_norm, generator))
    x, y = sample_batch(n, a, w, nonlinearity, noise_std, generator)
    for s in range(n_instances):  # one instance at a time: memory R n d, not S R n d
        starts = start_grid(w[s], norms, n_directions, generator)
        w_hat, n_iter = gating_em_from_starts(x[s], y[s], a[s], starts, nonlinearity, noise_std, max_iter=max_iter,
                                              tol=tol)
        out["spread"].append(diameter(w_hat))
        out["error"].append((w_hat - w[s]).flatten(1).norm(dim=-1).tolist())
        out["n_iter"].append(n_iter.tolist())
    out["converged"] = all(i < max_iter for row in out["n_iter"] for i in row)
    return out
