"""The method of moments of Makkuva et al. (2019): output transforms, whitening, the whitened third-order tensor and
the robust symmetric tensor power method. Derived step by step in ``book/makkuva2019.ipynb``.

For x ~ N(0, I_d) and an expert output y, Stein's identity gives (when every gating row is orthogonal to every
regressor)

    T_3 = E[S_3(y) S_3(x)] = c_3 sum_i p_i a_i^(x)3,      T_2 = E[S_2(y) S_2(x)] = c_2 sum_i p_i a_i a_i^T,

with S_3(y) = y^3 + alpha y^2 + beta y and S_2(y) = y^2 + gamma y. The constants depend on g and sigma only.
All array functions take a leading seed axis: ``X (S, n, d)``, ``y (S, n)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
import torch
from scipy import integrate

from moetheory.activations import LINKS, numpy_link
from moetheory.checks import check_choice, check_float, check_int

NONLINEARITIES = LINKS  # the expert links g (:mod:`moetheory.activations`)
CONSTANTS = ("alpha", "beta", "gamma", "c3", "c2")


def conditional_moments(g, sigma):
    """m_1, m_2, m_3 = E[y^j | a^T x = Z] for y = g(Z) + sigma * noise (works on SymPy and NumPy values)."""
    return g, g**2 + sigma**2, g**3 + 3 * sigma**2 * g


def _solve_constants(e):
    """Constants from the expectations ``e[(p, j)] = E[He_p(Z) m_j(Z)]`` (p = 1, 2, 3; j = 1, 2, 3).

    alpha, beta make E[phi'] = E[phi''] = 0 for phi = m_3 + alpha m_2 + beta m_1 (Stein: E[phi^(p)] = E[He_p phi]);
    gamma makes E[He_1 (m_2 + gamma m_1)] = 0; c_3 = E[phi'''] and c_2 = E[(m_2 + gamma m_1)''].
    """
    det = e[1, 2] * e[2, 1] - e[1, 1] * e[2, 2]
    alpha = (e[1, 1] * e[2, 3] - e[2, 1] * e[1, 3]) / det
    beta = (e[2, 2] * e[1, 3] - e[1, 2] * e[2, 3]) / det
    gamma = -e[1, 2] / e[1, 1]
    c3 = e[3, 3] + alpha * e[3, 2] + beta * e[3, 1]
    c2 = e[2, 2] + gamma * e[2, 1]
    return {"alpha": alpha, "beta": beta, "gamma": gamma, "c3": c3, "c2": c2}


def _gaussian_expectation(poly_expr: sp.Expr, z: sp.Symbol) -> sp.Expr:
    """E[p(Z)] for a polynomial in ``z`` with symbolic coefficients: sum_n coeff_n (n - 1)!! over even n."""
    poly = sp.Poly(sp.expand(poly_expr), z)
    return sp.expand(sum(c * (sp.factorial2(n - 1) if n % 2 == 0 else 0) for (n,), c in poly.terms()))


def symbolic_constants(nonlinearity: str = "linear", sigma=None) -> dict[str, sp.Expr]:
    """Exact constants as SymPy expressions in ``sigma`` for the linear and ReLU links (sigmoid has no closed form);
    pass a number as ``sigma`` to substitute it."""
    check_choice("nonlinearity", nonlinearity, ("linear", "relu"))
    exact = _symbolic_constants(nonlinearity)
    if sigma is None:
        return dict(exact)
    symbol = sp.Symbol("sigma", positive=True)
    return {k: sp.simplify(v.subs(symbol, sp.sympify(sigma))) for k, v in exact.items()}


@lru_cache(maxsize=4)
def _symbolic_constants(nonlinearity: str) -> dict[str, sp.Expr]:
    sigma = sp.Symbol("sigma", positive=True)
    z = sp.Symbol("z", real=True)
    he = {p: sp.hermite_prob(p, z) for p in (1, 2, 3)}
    if nonlinearity == "linear":
        m = conditional_moments(z, sigma)
        e = {(p, j + 1): _gaussian_expectation(he[p] * m[j], z) for p in he for j in range(3)}
    else:  # ReLU: m_j = m_j(0) + [m_j(z) - m_j(0)] 1{z > 0}, integrated exactly over the half line
        dens = sp.exp(-(z**2) / 2) / sp.sqrt(2 * sp.pi)
        pos, zero = conditional_moments(z, sigma), conditional_moments(sp.Integer(0), sigma)
        e = {}
        for p in he:
            for j in range(3):
                half = sp.integrate(sp.expand(he[p] * (pos[j] - zero[j])) * dens, (z, 0, sp.oo))
                e[p, j + 1] = sp.simplify(half + zero[j] * _gaussian_expectation(he[p], z))
    return {k: sp.simplify(v) for k, v in _solve_constants(e).items()}


@lru_cache(maxsize=64)
def transform_constants(nonlinearity: str = "linear", noise_std: float = 0.1, method: str = "auto") -> dict:
    """alpha, beta, gamma, c3, c2 as floats.

    ``method``: ``"exact"`` (SymPy; linear and ReLU), ``"quad"`` (scipy adaptive quadrature split at the kink
    z = 0), ``"gauss-hermite"`` (numpy.polynomial.hermite_e, 200 nodes; inaccurate at ReLU's kink) or ``"auto"``
    (exact for linear, quad otherwise).
    """
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    sigma = check_float("noise_std", noise_std, 0.0, low_open=True)
    check_choice("method", method, ("auto", "exact", "quad", "gauss-hermite"))
    if method == "auto":
        method = "exact" if nonlinearity == "linear" else "quad"
    if method == "exact":
        exact = symbolic_constants(nonlinearity, sp.Rational(str(sigma)))
        return {k: float(v) for k, v in exact.items()}
    g = numpy_link(nonlinearity)
    he = {1: lambda t: t, 2: lambda t: t**2 - 1, 3: lambda t: t**3 - 3 * t}

    def mom(j):
        return lambda t: conditional_moments(g(t), sigma)[j - 1]

    if method == "quad":
        def integrand(t, p, j):
            return he[p](t) * mom(j)(t) * np.exp(-t * t / 2) / np.sqrt(2 * np.pi)

        e = {(p, j): sum(integrate.quad(integrand, lo, hi, args=(p, j), epsabs=1e-13, epsrel=1e-12, limit=200)[0]
                         for lo, hi in ((-np.inf, 0), (0, np.inf)))
             for p in he for j in (1, 2, 3)}
    else:
        nodes, weights = np.polynomial.hermite_e.hermegauss(200)
        weights = weights / np.sqrt(2 * np.pi)
        e = {(p, j): float(weights @ (he[p](nodes) * mom(j)(nodes))) for p in he for j in (1, 2, 3)}
    return {k: float(v) for k, v in _solve_constants(e).items()}


@lru_cache(maxsize=64)
def output_second_moment(nonlinearity: str = "linear", noise_std: float = 0.1) -> float:
    """E[y^2] = E[g(Z)^2] + sigma^2 for one expert with a unit-norm regressor, Z ~ N(0, 1): the output's second
    moment under the model (every expert alike when the gating is orthogonal to the regressors). Quadrature split
    at z = 0 (ReLU's kink); the linear value is 1 + sigma^2 and the ReLU one 1/2 + sigma^2."""
    g = numpy_link(check_choice("nonlinearity", nonlinearity, NONLINEARITIES))
    sigma = check_float("noise_std", noise_std, 0.0, low_open=True)

    def integrand(t):
        return g(t) ** 2 * np.exp(-t * t / 2) / np.sqrt(2 * np.pi)

    mean_g2 = sum(integrate.quad(integrand, lo, hi, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
                  for lo, hi in ((-np.inf, 0), (0, np.inf)))
    return float(mean_g2 + sigma**2)


def output_transforms(y: torch.Tensor, constants: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """S_3(y) = y^3 + alpha y^2 + beta y and S_2(y) = y^2 + gamma y, elementwise."""
    s3 = y * (y * (y + constants["alpha"]) + constants["beta"])
    s2 = y * (y + constants["gamma"])
    return s3, s2


def second_moment(x: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """Empirical T_2 = mean_n S_2(y_n) (x_n x_n^T - I): ``(S, d, d)`` in O(n d^2)."""
    n, d = x.shape[-2:]
    t2 = (x * s2.unsqueeze(-1)).transpose(-1, -2) @ x / n
    return t2 - s2.mean(-1)[..., None, None] * torch.eye(d, dtype=x.dtype, device=x.device)


def whitening(t2: torch.Tensor, k: int, c2: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs (U, D) of sign(c2) T_2 and the whitening matrix M = U D^(-1/2): ``(S, d, k)`` each."""
    evals, evecs = torch.linalg.eigh(np.sign(c2) * t2)  # ascending
    d_top = evals[..., -k:].clamp_min(1e-12 * evals[..., -1:].abs().clamp_min(1e-300))
    u_top = evecs[..., -k:]
    return u_top, d_top, u_top / d_top.sqrt().unsqueeze(-2)


def whitened_third_moment(x: torch.Tensor, s3: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """T_3(M, M, M) = mean_n S_3(y_n) [z^(x)3 - sym(z (x) M^T M)], z = M^T x: ``(S, k, k, k)`` in O(n k^3).

    S_3(x) = x^(x)3 - sum_j (x e_j e_j + e_j x e_j + e_j e_j x) becomes, after multiplying each mode by M^T,
    z^(x)3 - (z (x) B + perms) with B = M^T M; the d^3 tensor is never formed.
    """
    n = x.shape[-2]
    z = x @ m  # (S, n, k)
    k = z.shape[-1]
    zz = (z.unsqueeze(-1) * z.unsqueeze(-2)).flatten(-2)  # (S, n, k*k)
    cube = ((zz * s3.unsqueeze(-1)).transpose(-1, -2) @ z / n).unflatten(-2, (k, k))  # (S, k, k, k)
    mean = (z * s3.unsqueeze(-1)).mean(-2)  # (S, k)
    b = m.transpose(-1, -2) @ m  # (S, k, k)
    sym = (mean[..., :, None, None] * b[..., None, :, :] + mean[..., None, :, None] * b[..., :, None, :]
           + mean[..., None, None, :] * b[..., :, :, None])
    return cube - sym


def tensor_apply(t: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """T(I, theta, theta) for ``t (S, k, k, k)`` and a batch of vectors ``theta (S, R, k)`` -> ``(S, R, k)``."""
    return torch.einsum("sijl,srj,srl->sri", t, theta, theta)


def power_method(t: torch.Tensor, n_components: int | None = None, *, n_restarts: int = 10, n_iter: int = 30,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust symmetric tensor power method (Anandkumar et al. 2014, Alg. 1) with restarts and deflation.

    For each component: ``n_restarts`` random unit starts iterate theta <- T(I, theta, theta) / ||.|| for ``n_iter``
    steps; the start with the largest |T(theta, theta, theta)| is refined ``n_iter`` more steps; then
    T <- T - lambda theta^(x)3. Returns eigenvalues ``(S, k)`` and eigenvectors ``(S, k, k)`` (rows).
    Odd order: (lambda, v) and (-lambda, -v) are the same component; the caller fixes the sign.
    """
    seeds, k = t.shape[0], t.shape[-1]
    n_components = k if n_components is None else check_int("n_components", n_components, 1, k)
    check_int("n_restarts", n_restarts, 1)
    check_int("n_iter", n_iter, 1)
    t = t.clone()
    lams, vecs = [], []
    for _ in range(n_components):  # deflation is sequential by nature
        theta = torch.randn(seeds, n_restarts, k, generator=generator, dtype=t.dtype).to(t.device)
        theta = theta / theta.norm(dim=-1, keepdim=True)
        for _ in range(n_iter):
            theta = tensor_apply(t, theta)
            theta = theta / theta.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        value = (tensor_apply(t, theta) * theta).sum(-1)  # (S, R)
        best = value.abs().argmax(-1)
        theta = theta[torch.arange(seeds, device=t.device), best].unsqueeze(1)  # (S, 1, k)
        for _ in range(n_iter):
            theta = tensor_apply(t, theta)
            theta = theta / theta.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        lam = (tensor_apply(t, theta) * theta).sum(-1)[:, 0]  # (S,)
        v = theta[:, 0]
        t = t - lam[:, None, None, None] * torch.einsum("si,sj,sl->sijl", v, v, v)
        lams.append(lam)
        vecs.append(v)
    return torch.stack(lams, -1), torch.stack(vecs, -2)


def estimate_regressors(x: torch.Tensor, y: torch.Tensor, n_experts: int, nonlinearity: str, noise_std: float, *,
                        n_restarts: int = 10, n_iter: int = 30, generator: torch.Generator | None = None) -> dict:
    """The tensor method end to end: ``X (S, n, d)``, ``y (S, n)`` -> unit regressors ``(S, k, d)``.

    Returns a dict with ``regressors``, ``eigenvalues`` and the implied mixing weights ``p_i = E[softmax_i(W x)]``
    (from lambda_i = c_3 |c_2|^(-3/2) p_i^(-1/2)).
    """
    const = transform_constants(nonlinearity, noise_std)
    s3, s2 = output_transforms(y, const)
    u, dvals, m = whitening(second_moment(x, s2), n_experts, const["c2"])
    t3 = whitened_third_moment(x, s3, m)
    lam, v = power_method(t3, n_restarts=n_restarts, n_iter=n_iter, generator=generator)
    sign = torch.sign(lam) * np.sign(const["c3"])  # make sign(lambda) = sign(c3)
    a = (v * sign.unsqueeze(-1)) @ (u * dvals.sqrt().unsqueeze(-2)).transpose(-1, -2)  # rows U D^(1/2) v_i
    a = a / a.norm(dim=-1, keepdim=True)
    mixing = (const["c3"] / (abs(const["c2"]) ** 1.5 * lam.abs().clamp_min(1e-300))) ** 2
    return {"regressors": a, "eigenvalues": lam.abs() * np.sign(const["c3"]), "mixing": mixing}
