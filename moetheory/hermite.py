"""Hermite analysis: exact and numeric Hermite coefficients, information exponents, the shift identity, and
Hermite polynomials evaluated on torch tensors (the experiments' links and students).

Derived and displayed in the Hermite chapter (``book/hermite.ipynb``). Conventions: ``Z ~ N(0, 1)``,
``He_k`` the probabilists' Hermite polynomials, ``h_k = He_k / sqrt(k!)`` (orthonormal), and
``c_k = E[f(Z) h_k(Z)]`` so that ``f = sum_k c_k h_k`` in L^2(N(0, 1)).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache, lru_cache
from math import factorial, sqrt

import numpy as np
import sympy as sp
import torch
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
    "hermite_torch",
    "hermite_series",
]


def he(k: int, z: sp.Symbol) -> sp.Expr:
    """The probabilists' Hermite polynomial ``He_k(z)`` (exact)."""
    return sp.hermite_prob(check_int("k", k, 0), z)


def h(k: int, z: sp.Symbol) -> sp.Expr:
    """The normalised Hermite polynomial ``h_k(z) = He_k(z) / sqrt(k!)``."""
    return he(k, z) / sp.sqrt(sp.factorial(k))


def _prepare(f, z) -> tuple[sp.Expr, sp.Symbol]:
    """Validate ``f`` as a SymPy expression in ``z`` only; return it in the module's integration variable."""
    if not isinstance(z, sp.Symbol):
        raise ValueError(f"z must be a sympy Symbol; got {z!r}")
    try:
        f = sp.sympify(f)
    except (sp.SympifyError, TypeError) as err:
        raise ValueError(f"f must be a sympy expression in {z}; got {f!r}") from err
    if not isinstance(f, sp.Expr):
        raise ValueError(f"f must be a sympy expression in {z}; got {f!r}")
    extra = f.free_symbols - {z}
    if extra:
        names = ", ".join(sorted(str(s) for s in extra))
        raise ValueError(f"f must depend on {z} only; it also depends on {names}")
    return f.subs(z, _T), _T


_T = sp.Dummy("t", real=True)  # one integration variable for the whole module, so that caches hit
_PHI = 1 / sp.sqrt(2 * sp.pi)  # the standard normal density at 0


@cache
def _moment(n: int) -> sp.Integer:
    """E[Z^n] = (n - 1)!! for even n, 0 for odd n."""
    return sp.Integer(0) if n % 2 else sp.factorial2(n - 1)


def _pow_density(x, m: int) -> sp.Expr:
    """x^m phi(x), which vanishes at +-oo."""
    return sp.Integer(0) if x in (sp.oo, -sp.oo) else x**m * _PHI * sp.exp(-(x**2) / 2)


def _cdf(x) -> sp.Expr:
    return {sp.oo: sp.Integer(1), -sp.oo: sp.Integer(0)}.get(x, (1 + sp.erf(x / sp.sqrt(2))) / 2)


def _truncated_moments(a, b, n: int) -> list[sp.Expr]:
    """``[int_a^b s^m phi(s) ds for m = 0..n]`` exactly, by integration by parts:

    ``T_m = (m - 1) T_(m-2) + a^(m-1) phi(a) - b^(m-1) phi(b)``, ``T_0 = Phi(b) - Phi(a)``.
    """
    out = [_cdf(b) - _cdf(a), _pow_density(a, 0) - _pow_density(b, 0)]
    for m in range(2, n + 1):
        out.append((m - 1) * out[m - 2] + _pow_density(a, m - 1) - _pow_density(b, m - 1))
    return out[: n + 1]


def _pieces(g: sp.Expr, t: sp.Symbol) -> list[tuple[sp.Expr, sp.Expr, sp.Expr]] | None:
    """``[(expression, a, b)]`` with ``g = expression`` on ``(a, b)`` when ``g`` is piecewise; ``None`` if
    smooth.

    ``Max``, ``Min``, ``Abs``, ``sign``, ``Heaviside`` are rewritten as ``Piecewise``; points (measure zero)
    dropped.
    """
    folded = sp.piecewise_fold(g.rewrite(sp.Piecewise))
    if not isinstance(folded, sp.Piecewise):
        return None
    pieces = []
    for expr, where in folded.as_expr_set_pairs(sp.Interval(-sp.oo, sp.oo)):
        for part in where.args if isinstance(where, sp.Union) else (where,):
            if isinstance(part, sp.Interval):
                pieces.append((expr, part.start, part.end))
            elif not (part.is_FiniteSet or part is sp.S.EmptySet):
                raise ValueError(f"cannot split f into pieces on intervals (piece {expr} on {part})")
    return pieces


def _check_no_poles(g: sp.Expr, t: sp.Symbol) -> None:
    """``ValueError`` when ``g`` has a real singularity that is not removable (1/z, log|z|, ...)."""
    try:
        points = sp.calculus.singularities(g, t, sp.S.Reals)
    except (NotImplementedError, TypeError, ValueError):
        return
    if not points.is_FiniteSet:
        raise ValueError(f"f = {g} has infinitely many real singularities; not integrable against N(0, 1)")
    for p in points:
        for side in ("+", "-"):
            if not sp.limit(g, t, p, side).is_finite:
                raise ValueError(f"f = {g} is not integrable against N(0, 1): it is singular at z = {p}")


def _integrate(expr: sp.Expr, t: sp.Symbol, a, b) -> sp.Expr:
    """``int_a^b expr(s) phi(s) ds``: exact truncated moments for polynomials, SymPy otherwise."""
    if expr.is_zero:
        return sp.Integer(0)
    if expr.is_polynomial(t):
        poly = sp.Poly(sp.expand(expr), t)
        moments = _truncated_moments(a, b, poly.degree())
        return sum(c * moments[m] for (m,), c in zip(poly.monoms(), poly.coeffs(), strict=True))
    value = sp.integrate(expr * _PHI * sp.exp(-(t**2) / 2), (t, a, b))
    if value.has(sp.Integral) or value.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
        raise ValueError(
            f"E[f(Z) ...] could not be computed exactly for {expr} on ({a}, {b}): "
            "not integrable against N(0, 1), "
            "or beyond SymPy (use hermite_coefficients_numeric)")
    return value


def _expectation(g: sp.Expr, t: sp.Symbol, shift=0) -> sp.Expr:
    """Exact ``E[g(Z + shift)]``; piecewise ``g`` is split at its breakpoints (shifted by ``shift``)."""
    pieces = _pieces(g, t)
    if pieces is None:
        _check_no_poles(g, t)
        pieces = [(g, -sp.oo, sp.oo)]
    total = sp.Integer(0)
    for expr, a, b in pieces:
        a, b = (x if x in (sp.oo, -sp.oo) else x - shift for x in (a, b))
        total += _integrate(sp.expand(expr.subs(t, t + shift)), t, a, b)
    return total


def _tidy(value: sp.Expr) -> sp.Expr:
    return sp.simplify(sp.expand(value))


def gaussian_expectation(expr, z: sp.Symbol) -> sp.Expr:
    """Exact ``E[expr(Z)]`` for ``Z ~ N(0, 1)``; ``ValueError`` when the integral does not exist or SymPy
    fails.

    Polynomials use the moments ``(n - 1)!!``; piecewise expressions (``Max``, ``Abs``, ``sign``,
    ``Piecewise``) are
    split at their breakpoints and each polynomial piece uses exact truncated Gaussian moments; anything
    else is
    integrated by SymPy.
    """
    expr, t = _prepare(expr, z)
    if expr.is_polynomial(t):
        poly = sp.Poly(sp.expand(expr), t)
        value = sum(c * _moment(m[0]) for m, c in zip(poly.monoms(), poly.coeffs(), strict=True))
        return sp.expand(value)
    return _cached_expectation(expr)


@lru_cache(maxsize=4096)
def _cached_expectation(expr: sp.Expr) -> sp.Expr:
    return _tidy(_expectation(expr, _T))


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
    for (n,), c in zip(poly.monoms(), poly.coeffs(), strict=True):
        for j, a in _monomial_to_he(n).items():
            if j <= max_degree:
                he_coeffs[j] += c * a
    return [sp.expand(a * sp.sqrt(sp.factorial(k))) for k, a in enumerate(he_coeffs)]


def _coefficient(g: sp.Expr, t: sp.Symbol, k: int, smooth: bool) -> sp.Expr:
    """c_k of a non-polynomial ``g``.

    Smooth ``g``: Stein's identity ``E[g He_k] = E[g^(k)]`` (k Gaussian integrations by parts), which keeps
    SymPy's integrals small. Piecewise ``g``: split at the breakpoints and integrate ``g h_k`` piece by piece.
    """
    if smooth:
        return _tidy(_cached_expectation(sp.diff(g, t, k)) / sp.sqrt(sp.factorial(k)))
    return _cached_expectation(sp.expand(g * h(k, t)))


def _coefficients(f, z, max_degree: int):
    """Yield c_0, ..., c_max_degree lazily (the information exponent stops at the first nonzero)."""
    max_degree = check_int("max_degree", max_degree, 0)
    g, t = _prepare(f, z)
    if g.is_polynomial(t):
        yield from _polynomial_coefficients(sp.Poly(sp.expand(g), t), max_degree)
        return
    smooth = _pieces(g, t) is None
    if smooth:
        _check_no_poles(g, t)
    for k in range(max_degree + 1):
        yield _coefficient(g, t, k, smooth)


def hermite_coefficients(f, z: sp.Symbol, max_degree: int) -> list[sp.Expr]:
    """Exact ``c_k = E[f(Z) h_k(Z)]`` for ``k = 0..max_degree``.

    Polynomials use the exact change of basis (no integration); piecewise links (``Max(z, 0)``, ``Abs``,
    ``sign``, ``Piecewise`` with polynomial pieces) use exact truncated Gaussian moments on each piece;
    smooth expressions (``sin``, ``exp(-z**2)``, ...) use Stein's identity ``c_k = E[f^(k)(Z)] / sqrt(k!)``
    and SymPy's integrator. ``ValueError`` for ``f`` not in ``z`` alone, a negative ``max_degree``, or an
    integral that does not exist.
    """
    return list(_coefficients(f, z, max_degree))


def information_exponent(f, z: sp.Symbol, max_degree: int = 16) -> int:
    """The smallest ``k >= 1`` with ``c_k != 0`` (exact); ``ValueError`` if none up to ``max_degree``."""
    max_degree = check_int("max_degree", max_degree, 1)
    for k, c in enumerate(_coefficients(f, z, max_degree)):
        if k >= 1 and sp.simplify(c) != 0:
            return k
    raise ValueError(f"no nonzero Hermite coefficient c_k with 1 <= k <= max_degree={max_degree} for f = {f}")


def hermite_coefficients_numeric(fn, max_degree: int, n_points: int = 160) -> np.ndarray:
    """``c_k = E[fn(Z) h_k(Z)]``, ``k = 0..max_degree``, by Gauss-Hermite quadrature (``hermite_e``).

    ``fn`` is any vectorised callable (``np.tanh``, a sigmoid, GELU, ...). Exact for polynomials of degree
    below ``2 n_points - max_degree``; for kinks (ReLU, |z|) the error decays algebraically in ``n_points``.
    """
    max_degree = check_int("max_degree", max_degree, 0)
    # numpy's weights overflow past ~300 nodes
    n_points = check_int("n_points", n_points, max_degree + 1, 300)
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

    The shift identity (Hermite chapter, ``eq-shift-identity``):
    ``He_j(t + mu) = sum_k C(j, k) mu^(j - k) He_k(t)``, so
    ``c_k(f(. + mu)) = sum_(j >= k) c_j sqrt(j! / k!) / (j - k)! mu^(j - k)``, exact for polynomial f.
    Piecewise f is integrated piece by piece on the shifted intervals; other f by SymPy with ``mu`` symbolic.
    """
    if not isinstance(mu, sp.Symbol):
        raise ValueError(f"mu must be a sympy Symbol; got {mu!r}")
    if mu == z:
        raise ValueError(f"mu must be a symbol other than z={z}")
    max_degree = check_int("max_degree", max_degree, 0)
    g, t = _prepare(f, z)
    if not g.is_polynomial(t):
        # E[g(Z + mu) h_k(Z)] = E[G(Z + mu)] with G(u) = g(u) h_k(u - mu): pieces keep their own breakpoints
        return [sp.simplify(_expectation(sp.expand(g * h(k, t - mu)), t, shift=mu))
                for k in range(max_degree + 1)]
    degree = max(sp.Poly(g, t).degree(), 0)
    c = hermite_coefficients(g, t, degree)
    out = []
    for k in range(max_degree + 1):
        terms = (c[j] * sp.sqrt(sp.factorial(j) / sp.factorial(k)) / sp.factorial(j - k) * mu ** (j - k)
                 for j in range(k, degree + 1))
        out.append(sp.expand(sum(terms, sp.Integer(0))))
    return out


def _he_torch(x: torch.Tensor) -> Iterator[torch.Tensor]:
    """``He_0(x), He_1(x), He_2(x), ...`` elementwise, by the recurrence ``He_(n+1) = x He_n - n He_(n-1)``."""
    prev, cur = torch.ones_like(x), x
    yield prev
    n = 1
    while True:
        yield cur
        prev, cur = cur, x * cur - n * prev
        n += 1


def hermite_torch(k: int, x: torch.Tensor) -> torch.Tensor:
    """``h_k(x) = He_k(x) / sqrt(k!)`` elementwise on a tensor."""
    values = _he_torch(x)
    for _ in range(check_int("k", k, 0)):
        next(values)
    return next(values) / sqrt(factorial(k))


def hermite_series(z: torch.Tensor, coeffs, derivative: bool = False):
    """``sum_k coeffs[k] h_k(z)`` elementwise on a tensor (and its derivative in z when ``derivative``, from
    ``d/dz He_k = k He_(k-1)``)."""
    coeffs = [float(c) for c in coeffs]
    values = _he_torch(z)
    he_prev, he = next(values), next(values)  # He_0, He_1
    value = coeffs[0] * he_prev + (coeffs[1] * he if len(coeffs) > 1 else 0.0)
    deriv = coeffs[1] * he_prev if len(coeffs) > 1 else torch.zeros_like(z)
    norm = 1.0
    for k in range(2, len(coeffs)):
        norm *= k
        he_prev, he = he, next(values)  # He_k
        if coeffs[k]:
            value = value + coeffs[k] / norm**0.5 * he
            deriv = deriv + coeffs[k] * k / norm**0.5 * he_prev
    return (value, deriv) if derivative else value
