"""Likelihood-based estimation of the gated MoE (Makkuva et al. 2019; Jordan & Jacobs 1994): gating EM with the
regressors fixed (step 3 of the paper's algorithm), joint EM over regressors and gating, and maximum likelihood by
Adam and by plain gradient descent. Compared in ``book/makkuva2019.ipynb``.

The M-steps are ours, not the paper's: each takes ONE damped Newton (gating) or Gauss-Newton (regressors) step on the
expected complete-data log-likelihood instead of maximising it, so the EMs here are generalised EMs (Dempster, Laird
& Rubin 1977): each iteration increases the expected log-likelihood (the step is backtracked until it does), which
is all the monotone-likelihood argument needs; iterated to the tolerance, the fixed points are those of exact EM.
The paper's text, which would say how its M-step is solved, could not be read.

Everything is batched over a leading seed axis: ``X (S, n, d)``, ``y (S, n)``, regressors ``A (S, k, d)`` and gating
``W (S, k, d)`` with the last row zero (the reference expert). Same code on CPU and CUDA.
"""

from __future__ import annotations

import math

import torch

from moetheory.activations import link, link_derivative

CHUNK = 8192  # rows per block when accumulating (k d) x (k d) curvature matrices


def log_joint(x, y, a, w, nonlinearity: str, noise_std: float) -> torch.Tensor:
    """log softmax_i(W x_n) + log N(y_n; g(a_i^T x_n), sigma^2): ``(S, n, k)``."""
    mean = link(nonlinearity)(x @ a.transpose(-1, -2))
    log_lik = -0.5 * ((y.unsqueeze(-1) - mean) / noise_std) ** 2 - math.log(noise_std * math.sqrt(2 * math.pi))
    return torch.log_softmax(x @ w.transpose(-1, -2), -1) + log_lik


def log_likelihood(x, y, a, w, nonlinearity: str, noise_std: float) -> torch.Tensor:
    """Mean log-likelihood per seed ``(S,)``."""
    return torch.logsumexp(log_joint(x, y, a, w, nonlinearity, noise_std), -1).mean(-1)


def responsibilities(x, y, a, w, nonlinearity: str, noise_std: float) -> torch.Tensor:
    """E-step: posterior expert probabilities r_ni ``(S, n, k)``."""
    return torch.softmax(log_joint(x, y, a, w, nonlinearity, noise_std), -1)


def _gating_objective(x, r, w, l2):
    """Q(W) = mean_n sum_i r_ni log softmax_i(W x_n) - l2/2 ||W||^2 per seed."""
    return (r * torch.log_softmax(x @ w.transpose(-1, -2), -1)).sum(-1).mean(-1) - 0.5 * l2 * w.square().sum((-1, -2))


def gating_gradient_hessian(x, r, w, l2: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient ``(S, k-1, d)`` of Q(W) in the free rows W[:-1] and minus its Hessian ``(S, (k-1) d, (k-1) d)``
    (rows flattened as ``W[:-1].reshape(-1)``): ``mean_n (r_n - p_n) x_n^T - l2 W`` and
    ``mean_n (diag p_n - p_n p_n^T) (x) x_n x_n^T + l2 I``."""
    seeds, n, d = x.shape
    k = w.shape[-2]
    p = torch.softmax(x @ w.transpose(-1, -2), -1)[..., :-1]  # (S, n, k-1)
    grad = ((r[..., :-1] - p).transpose(-1, -2) @ x) / n - l2 * w[:, :-1]  # (S, k-1, d)
    hess = torch.zeros(seeds, k - 1, d, k - 1, d, dtype=x.dtype, device=x.device)
    for lo in range(0, n, CHUNK):  # -Hessian = mean_n (diag p - p p^T) (x) x x^T, accumulated in blocks
        pc, xc = p[:, lo:lo + CHUNK], x[:, lo:lo + CHUNK]
        cov = (torch.diag_embed(pc) - pc.unsqueeze(-1) * pc.unsqueeze(-2)).flatten(-2)  # (S, c, (k-1)^2)
        outer = (xc.unsqueeze(-1) * xc.unsqueeze(-2)).flatten(-2)  # (S, c, d^2)
        block = (cov.transpose(-1, -2) @ outer).view(seeds, k - 1, k - 1, d, d)  # one bmm
        hess += block.permute(0, 1, 3, 2, 4) / n
    size = (k - 1) * d
    return grad, hess.reshape(seeds, size, size) + l2 * torch.eye(size, dtype=x.dtype, device=x.device)


def gating_newton_step(x, r, w, l2: float = 1e-6, max_halvings: int = 20) -> torch.Tensor:
    """M-step for the gating: one damped Newton step on the concave soft-label multinomial logistic regression
    ``max_W mean_n sum_i r_ni log softmax_i(W x_n)`` with the last row of W held at zero. One step, not the
    maximiser: a generalised EM (see the module docstring); halved until the objective does not decrease."""
    grad, hess = gating_gradient_hessian(x, r, w, l2)
    step = torch.linalg.solve(hess, grad.flatten(1)).reshape(grad.shape)
    step = torch.cat([step, torch.zeros_like(step[:, :1])], 1)
    before = _gating_objective(x, r, w, l2)
    scale = torch.ones(w.shape[0], 1, 1, dtype=x.dtype, device=x.device)
    for _ in range(max_halvings):  # backtrack per seed until Q does not decrease
        worse = _gating_objective(x, r, w + scale * step, l2) < before - 1e-12
        if not bool(worse.any()):
            break
        scale = torch.where(worse[:, None, None], scale / 2, scale)
    return w + scale * step


def regressor_step(x, y, r, a, nonlinearity: str) -> torch.Tensor:
    """M-step for the regressors: one Gauss-Newton step of the weighted least squares per expert
    (exact weighted least squares for the linear link)."""
    seeds, n, d = x.shape
    t = x @ a.transpose(-1, -2)  # (S, n, k)
    deriv = link_derivative(nonlinearity)(t)
    resid = y.unsqueeze(-1) - link(nonlinearity)(t)
    rhs = ((r * deriv * resid).transpose(-1, -2) @ x) / n  # (S, k, d)
    weight = r * deriv**2
    gram = torch.zeros(seeds, a.shape[-2], d, d, dtype=x.dtype, device=x.device)
    for lo in range(0, n, CHUNK):
        xc = x[:, lo:lo + CHUNK]
        gram += torch.einsum("sci,scp,scq->sipq", weight[:, lo:lo + CHUNK], xc, xc) / n
    gram += 1e-9 * torch.eye(d, dtype=x.dtype, device=x.device)
    return a + torch.linalg.solve(gram, rhs.unsqueeze(-1)).squeeze(-1)


def _converged(old, new, tol):
    return (new - old).flatten(1).norm(dim=-1) <= tol * (1 + old.flatten(1).norm(dim=-1))


def gating_em(x, y, a, w, nonlinearity: str, noise_std: float, *, max_iter: int = 200, tol: float = 1e-6):
    """EM for the gating with the regressors fixed. Returns ``(W, n_iter)`` with ``n_iter (S,)`` per seed."""
    n_iter = torch.full((x.shape[0],), max_iter, dtype=torch.long, device=x.device)
    for it in range(1, max_iter + 1):
        new = gating_newton_step(x, responsibilities(x, y, a, w, nonlinearity, noise_std), w)
        done = _converged(w, new, tol)
        n_iter = torch.where(done & (n_iter == max_iter), torch.full_like(n_iter, it), n_iter)
        w = new
        if bool((n_iter < max_iter).all()):
            break
    return w, n_iter


def scale_step(x, y, r, u, scale, nonlinearity: str) -> torch.Tensor:
    """M-step for the expert scales: regressors ``a_i = s_i u_i`` with unit directions ``u (S, k, d)`` held fixed and
    scales ``s (S, k)``; one Gauss-Newton step of the weighted least squares
    ``min_s sum_n r_ni (y_n - g(s_i u_i^T x_n))^2`` per expert (exact for the linear link)."""
    t = x @ u.transpose(-1, -2)  # (S, n, k)
    st = scale.unsqueeze(-2) * t
    jac = link_derivative(nonlinearity)(st) * t  # d g(s t) / ds
    resid = y.unsqueeze(-1) - link(nonlinearity)(st)
    return scale + (r * jac * resid).sum(-2) / (r * jac**2).sum(-2).clamp_min(1e-300)


def gating_scale_em(x, y, u, w, nonlinearity: str, noise_std: float, *, scale=None, max_iter: int = 200,
                    tol: float = 1e-6):
    """EM for the gating and one scale per expert, the directions ``u`` held fixed: regressors ``a_i = s_i u_i``.
    Each iteration: E-step, then the gating M-step (:func:`gating_newton_step`) and the scale M-step
    (:func:`scale_step`) on the same responsibilities (the expected log-likelihood separates in W and s).
    ``scale`` ``(S, k)`` starts at ones unless given. Returns ``(W, scale, n_iter)``."""
    scale = torch.ones(u.shape[:-1], dtype=u.dtype, device=u.device) if scale is None else scale
    n_iter = torch.full((x.shape[0],), max_iter, dtype=torch.long, device=x.device)
    for it in range(1, max_iter + 1):
        r = responsibilities(x, y, u * scale.unsqueeze(-1), w, nonlinearity, noise_std)
        new_w, new_s = gating_newton_step(x, r, w), scale_step(x, y, r, u, scale, nonlinearity)
        done = _converged(torch.cat([w.flatten(1), scale], -1), torch.cat([new_w.flatten(1), new_s], -1), tol)
        n_iter = torch.where(done & (n_iter == max_iter), torch.full_like(n_iter, it), n_iter)
        w, scale = new_w, new_s
        if bool((n_iter < max_iter).all()):
            break
    return w, scale, n_iter


def joint_em(x, y, a, w, nonlinearity: str, noise_std: float, *, max_iter: int = 200, tol: float = 1e-6):
    """Joint EM over (A, W) (Jordan & Jacobs 1994): E-step, then a regressor and a gating M-step.
    Returns ``(A, W, n_iter)``; the regressors are not normalised (compare directions after normalising)."""
    n_iter = torch.full((x.shape[0],), max_iter, dtype=torch.long, device=x.device)
    for it in range(1, max_iter + 1):
        r = responsibilities(x, y, a, w, nonlinearity, noise_std)
        new_a, new_w = regressor_step(x, y, r, a, nonlinearity), gating_newton_step(x, r, w)
        done = _converged(torch.cat([a, w], -1), torch.cat([new_a, new_w], -1), tol)
        n_iter = torch.where(done & (n_iter == max_iter), torch.full_like(n_iter, it), n_iter)
        a, w = new_a, new_w
        if bool((n_iter < max_iter).all()):
            break
    return a, w, n_iter


def _likelihood_descent(x, y, a, w, nonlinearity: str, noise_std: float, steps: int, make_update):
    """``steps`` updates of (A, W[:-1]) on the mean negative log-likelihood, summed over the independent seeds;
    ``make_update(a, w_free)`` returns the function that takes one step given the loss. Returns ``(A, W)``."""
    a = a.detach().clone().requires_grad_(True)
    w_free = w[:, :-1].detach().clone().requires_grad_(True)
    update = make_update(a, w_free)
    for _ in range(steps):
        w_full = torch.cat([w_free, torch.zeros_like(w_free[:, :1])], 1)
        update(-log_likelihood(x, y, a, w_full, nonlinearity, noise_std).sum())
    w_full = torch.cat([w_free, torch.zeros_like(w_free[:, :1])], 1)
    return a.detach(), w_full.detach()


def adam_mle(x, y, a, w, nonlinearity: str, noise_std: float, *, steps: int = 1000, lr: float = 0.02):
    """Maximum likelihood by full-batch Adam on (A, W[:-1]) from the given start. Returns ``(A, W)``."""
    def make_update(a, w_free):
        opt = torch.optim.Adam([a, w_free], lr=lr)

        def update(loss):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return update

    return _likelihood_descent(x, y, a, w, nonlinearity, noise_std, steps, make_update)


def gd_mle(x, y, a, w, nonlinearity: str, noise_std: float, *, steps: int = 1000, step: float = 0.5):
    """Maximum likelihood by plain full-batch gradient descent (no momentum, no adaptive scaling) on (A, W[:-1]) from
    the given start: each step subtracts a fixed multiple of the gradient of the mean negative log-likelihood,
    ``step * sigma^2`` for the regressors (whose curvature is at most ``1/sigma^2`` for unit-covariance inputs) and
    ``step`` for the gating (curvature of order one). Returns ``(A, W)``."""
    def make_update(a, w_free):
        def update(loss):
            grad_a, grad_w = torch.autograd.grad(loss, [a, w_free])
            with torch.no_grad():
                a.sub_(step * noise_std**2 * grad_a)
                w_free.sub_(step * grad_w)
        return update

    return _likelihood_descent(x, y, a, w, nonlinearity, noise_std, steps, make_update)


def random_start(seeds: int, k: int, d: int, generator: torch.Generator, *, collapsed: bool = False,
                 dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Random initialisation: unit regressors and N(0, 1/d) gating rows (last row zero). ``collapsed``: every
    expert starts at one random direction plus 1e-3 noise (a start from which EM has to break symmetry)."""
    a = torch.randn(seeds, k, d, generator=generator, dtype=dtype)
    if collapsed:
        a = a[:, :1] + 1e-3 * a
    a = a / a.norm(dim=-1, keepdim=True)
    w = torch.randn(seeds, k, d, generator=generator, dtype=dtype) / math.sqrt(d)
    w[:, -1] = 0.0
    return a, w
