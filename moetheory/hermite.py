"""Hermite analysis: exact and numeric Hermite coefficients, information exponents, the shift identity.

Derived and displayed in the Hermite chapter (``book/hermite.ipynb``). Conventions: ``Z ~ N(0, 1)``,
``He_k`` the probabilists' Hermite polynomials, ``h_k = He_k / sqrt(k!)`` (orthonormal), and
``c_k = E[f(Z) h_k(Z)]`` so that ``f = sum_k c_k h_k`` in L^2(N(0, 1)).
"""

from __future__ import annotations

from functools import cache
from math import factorial

import numpy as np
import sympy as sp
from numpy.polynomial import hermite_e

from moetheory.checks import check_int

__all__ = [
    "he",
    "h",
    "gaussian_expectation",
    "hermite_coefficients",
    "information_exponent",
    "hermite_coefficients_numeric",
    "shifted_coefficients",
]


def he(k: int, z: sp.Symbol) -> sp.Expr:
    """The probabilists' Hermite polynomial ``He_k(z)`` (exact)."""
    return sp.hermite_prob(check_int("k", k, 0), z)


def h(k: int, z: sp.Symbol) -> sp.Expr:
    """The normalised Hermite polynomial ``h_k(z) = He_k(z) / sqrt(k!)``."""
    return he(k, z) / sp.sqrt(sp.factorial(k))


def _prepare(f, z) -> tuple[sp.Expr, sp.Symbol]:
    """Validate ``f`` as a SymPy expression in ``z`` only; return it in a real dummy variable."""
    if not isinstance(z, sp.Symbol):
        raise ValueError(f"z must be a sympy Symbol; got {z!r}")
    f = sp.sympify(f)
    if not isinstance(f, sp.Expr):
        raise ValueError(f"f must be a sympy expression in {z}; got {f!r}")
    extra = f.free_symbols - {z}
    if extra:
        names = ", ".join(sorted(str(s) for s in extra))
        raise ValueError(f"f must depend on {z} only; it also depends on {names}")
    t = sp.Dummy("t", real=True)
    return f.subs(z, t), t


@cache
def _moment(n: int) -> sp.Integer:
    """E[Z^n] = (n - 1)!! for even n, 0 for odd n."""
    return sp.Integer(0) if n % 2 else sp.factorial2(n - 1)


def gaussian_expectation(expr, z: sp.Symbol) -> sp.Expr:
    """Exact ``E[expr(Z)]`` for ``Z ~ N(0, 1)``; ``ValueError`` when the integral does not exist or SymPy fails."""
    expr, t = _prepare(expr, z)
    if expr.is_polynomial(t):
        poly = sp.Poly(sp.expand(expr), t)
        return sp.nsimplify(sum(c * _moment(m[0]) for m, c in zip(poly.monoms(), poly.coeffs())), rational=False)
    integrand = expr.rewrite(sp.Piecewise) * sp.exp(-(t**2) / 2) / sp.sqrt(2 * sp.pi)
    value = sp.simplify(sp.integrate(integrand, (t, -sp.oo, sp.oo)))
    if value.has(sp.Integral) or value.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
        raise ValueError(f"E[f(Z)] could not be computed exactly (not integrable, or beyond SymPy): {expr}")
    return value


@cache
def _monomial_to_he(n: int) -> dict[int, sp.Rational]:
    """z^n = sum_j a_j He_j(z): a_j = n! / (j! ((n - j)/2)! 2^((n - j)/2)) for n - j even."""
    return {
        j: sp.Rational(factorial(n), factorial(j) * factorial((n - j) // 2) * 2 ** ((n - j) // 2))
        for j in range(n % 2, n + 1, 2)
    }


def _polynomial_coefficients(poly: sp.Poly, max_degree: int) -> list[sp.Expr]:
    """Exact change of basis from monomials to h_k (no integration)."""
    he_coeffs = [sp.Integer(0)] * (max_degree + 1)
    for (n,), c in zip(poly.monoms(), poly.coeffs()):
        for j, a in _monomial_to_he(n).items():
            if j <= max_degree:
                he_coeffs[j] += c * a
    return [sp.nsimplify(sp.expand(a * sp.sqrt(sp.factorial(k)))) for k, a in enumerate(he_coeffs)]


def hermite_coefficients(f, z: sp.Symbol, max_degree: int) -> list[sp.Expr]:
    """Exact ``c_k = E[f(Z) h_k(Z)]`` for ``k = 0..max_degree``.

    Polynomials use the exact change of basis (fast); other expressions (``Max(z, 0)``, ``Abs``, ``sign``,
    ``Piecewise``, ``sin``, ``exp(-z**2)``, ...) are integrated against the Gaussian by SymPy.
    """
    max_degree = check_int("max_degree", max_degree, 0)
    g, t = _prepare(f, z)
    if g.is_polynomial(t):
        return _polynomial_coefficients(sp.Poly(sp.expand(g), t), max_degree)
    return [gaussian_expectation(g * h(k, t), t) for k in range(max_degree + 1)]


def information_exponent(f, z: sp.Symbol, max_degree: int = 16) -> int:
    """The smallest ``k >= 1`` with ``c_k != 0`` (exact); ``ValueError`` if there is none up to ``max_degree``."""
    max_degree = check_int("max_degree", max_degree, 1)
    coeffs = hermite_coefficients(f, z, max_degree)
    for k in range(1, max_degree + 1):
        if sp.simplify(coeffs[k]) != 0:
            return k
    raise ValueError(f"no nonzero Hermite coefficient c_k with 1 <= k <= max_degree={max_degree} for f = {f}")


def hermite_coefficients_numeric(fn, max_degree: int, n_points: int = 160) -> np.ndarray:
    """``c_k = E[fn(Z) h_k(Z)]``, ``k = 0..max_degree``, by Gauss-Hermite quadrature (numpy.polynomial.hermite_e).

    ``fn`` is any vectorised callable (``np.tanh``, a sigmoid, GELU, ...). Exact for polynomials of degree
    below ``2 n_points - max_degree``; for kinks (ReLU, |z|) the error decays algebraically in ``n_points``.
    """
    max_degree = check_int("max_degree", max_degree, 0)
    n_points = check_int("n_points", n_points, max_degree + 1)
    nodes, weights = hermite_e.hermegauss(n_points)
    weights = weights / np.sqrt(2 * np.pi)
    values = np.asarray(fn(nodes), dtype=float)
    if values.shape != nodes.shape or not np.all(np.isfinite(values)):
        raise ValueError("fn must map an array of points to finite values of the same shape")
    basis = hermite_e.hermevander(nodes, max_degree)  # (n_points, max_degree + 1): He_k(x_i)
    norms = np.sqrt([float(factorial(k)) for k in range(max_degree + 1)])
    return (weights * values) @ basis / norms


def shifted_coefficients(f, z: sp.Symbol, mu: sp.Symbol, max_degree: int) -> list[sp.Expr]:
    """Hermite coefficients of ``f(z + mu)`` as exact expressions in ``mu`` (polynomials when f is one).

    For polynomial f this is the shift identity He_k(t + mu) = sum_j C(k, j) mu^(k - j) He_j(t) applied term by
    term; otherwise the Gaussian integral is taken with ``mu`` symbolic.
    """
    if not isinstance(mu, sp.Symbol):
        raise ValueError(f"mu must be a sympy Symbol; got {mu!r}")
    max_degree = check_int("max_degree", max_degree, 0)
    g, t = _prepare(f, z)
    if not g.is_polynomial(t):
        return [sp.simplify(sp.integrate(
            (g.subs(t, t + mu) * h(k, t)).rewrite(sp.Piecewise) * sp.exp(-(t**2) / 2) / sp.sqrt(2 * sp.pi),
            (t, -sp.oo, sp.oo))) for k in range(max_degree + 1)]
    degree = sp.Poly(g, t).degree()
    he_coeffs = [c / sp.sqrt(sp.factorial(j)) for j, c in enumerate(hermite_coefficients(g, t, degree))]
    out = []
    for k in range(max_degree + 1):
        a_k = sum(he_coeffs[j] * sp.binomial(j, k) * mu ** (j - k) for j in range(k, degree + 1))
        out.append(sp.expand(sp.sqrt(sp.factorial(k)) * a_k))
    return out
