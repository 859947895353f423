"""Symbolic approximation bounds of Wang & E (2025) and the elementary separations around them (chapter wang2025).

Every function returns a SymPy expression (or a number computed from one), so the chapter can display the
derivation and the tests can check it by an independent numerical route. Symbols follow the paper: ``m`` width,
``E`` experts, ``L`` MoE layers, ``D`` ambient and ``d`` intrinsic dimension, ``K``/``kappa`` smoothness.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from moetheory.checks import check_choice, check_int

m, E, L, D, d, K, C, eps, c, h, J, x, ell, k = sp.symbols("m E L D d K C epsilon c h J x ell k", positive=True)
kappa = sp.Symbol("kappa", positive=True)

__all__ = [
    "dense_rate", "manifold_rate", "routing_width", "routing_width_condition", "mlp_parameters",
    "moe_parameters", "construction_parameters", "optimal_experts", "linear_fit_error", "pieces_lower_bound",
    "relu_pieces", "moe_pieces", "jump_lower_bound", "figure3_piece", "figure3_variance",
]


def dense_rate(smoothness=K, dim=D):
    """Theorem 3.1 (Mao & Zhou 2023; Yang & Zhou 2024): error of a 2-layer width-m ReLU net on C^K in R^D.

    ``m^(-K/D)`` when ``K < (D+3)/2``, else ``m^(-1/2)`` (up to constants and logarithms).
    """
    return sp.Piecewise((m ** (-smoothness / dim), smoothness < (dim + 3) / 2), (m ** sp.Rational(-1, 2), True))


def manifold_rate(smoothness=kappa, dim=d):
    """Theorem 4.8 / 5.2: the MoE rate ``m^(-min(kappa/d, 1/2))``, intrinsic d in place of the ambient D."""
    return m ** (-sp.Min(smoothness / dim, sp.Rational(1, 2)))


def routing_width_condition():
    """Exact routing in the construction of Theorem 4.8: the inequality ``C m^(-1/2) < 1/(2E)``.

    The partition of unity satisfies sum_i rho_i = 1, so max_i rho_i >= 1/E; if the first layer's estimate tau of
    rho is uniformly within 1/(2E), argmax tau picks a chart containing x. Width-m error C m^(-1/2) does this when
    the returned inequality holds.
    """
    return sp.StrictLessThan(C * m ** sp.Rational(-1, 2), 1 / (2 * E))


def routing_width():
    """The width threshold solving :func:`routing_width_condition` for m: ``4 C^2 E^2``."""
    sol = sp.solve(sp.Eq(C * m ** sp.Rational(-1, 2), 1 / (2 * E)), m)
    return sp.simplify(sol[0])


def mlp_parameters(sizes: Sequence[int]) -> int:
    """Weights and biases of a dense net with layer sizes ``[d_in, hidden..., d_out]``."""
    sizes = [check_int("layer size", s, 1) for s in sizes]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))


def moe_parameters(state: int, n_experts: int, width: int, n_hidden: int = 1, n_layers: int = 1,
                   d_out: int = 1, gate_hidden: int = 0) -> dict:
    """Active and total parameters of ``n_layers`` stacked top-1 MoE layers (this chapter's H^{L,E}_{l,m}).

    Each layer: a gate on the ``state`` (linear: ``E * state``, no bias since the state carries a constant 1; or
    an MLP with ``gate_hidden`` units) and E experts ``state -> width^n_hidden -> d_out``. Top-1 routing makes one
    expert per layer active.
    """
    check_int("n_experts", n_experts, 1)
    check_int("n_layers", n_layers, 1)
    expert = mlp_parameters([state, *([width] * n_hidden), d_out])
    gate = n_experts * state if gate_hidden == 0 else mlp_parameters([state, gate_hidden, n_experts])
    return {"active": n_layers * (gate + expert), "total": n_layers * (gate + n_experts * expert)}


def construction_parameters():
    """Active and total parameters of the linear-chart construction (Corollary 4.9) on a curve in R^D.

    Gate: E * D. Expert i: width m, hidden weights along one chart direction (D each), m biases, m output weights:
    ``m (D + 2)`` (output bias folded into one hidden unit). Returns (active, total) as SymPy expressions.
    """
    active = m * (D + 2) + E * D
    return active, E * m * (D + 2) + E * D


def optimal_experts():
    """Minimise active parameters at target error ``epsilon`` under the error model ``c (E m)^(-2)``.

    Returns ``(E_star, active_star)``: ``(c/eps)^(1/4) sqrt((D+2)/D)`` and ``2 sqrt(D (D+2)) (c/eps)^(1/4)``.
    """
    width = sp.solve(sp.Eq(c * (E * m) ** -2, eps), m)[0]  # m(E) at error eps
    active = construction_parameters()[0].subs(m, width)
    e_star = [s for s in sp.solve(sp.diff(active, E), E) if s.is_positive is not False][0]
    return sp.simplify(e_star), sp.simplify(sp.factor(active.subs(E, e_star)))


def linear_fit_error(length=h):
    """Best uniform (L-infinity) error of a line fitted to x^2 on an interval of this length: ``h^2/8``.

    Derivation: the secant's largest gap to x^2 on [0, h] is at the midpoint, h^2/4; shifting the secant down by
    half of it equioscillates at three points (Chebyshev), so the best error is half the gap.
    """
    gap = (length * x - x**2).subs(x, sp.solve(sp.diff(length * x - x**2, x), x)[0])
    return sp.simplify(gap / 2)


def pieces_lower_bound(length=ell, pieces=k):
    """Any k-piece linear function has L-infinity error >= l^2/(8 k^2) on x^2 over [0, l] (one piece >= l/k long)."""
    return linear_fit_error(length / pieces)


def relu_pieces(width=m, layers=L):
    """A univariate ReLU net with ``layers`` hidden layers of ``width`` units has at most ``(m+1)^L`` pieces."""
    return (width + 1) ** layers


def moe_pieces(n_experts=E, layers=L):
    """L routed MoE layers with E experts on a product domain: ``E^L`` cells (eq. 4)."""
    return n_experts**layers


def jump_lower_bound(jump=J):
    """Any continuous g (e.g. a ReLU MLP) has sup|f - g| >= J/2 near a jump of size J of f."""
    return sp.sympify(jump) / 2


def figure3_piece(i, z=x):
    """The subfunction ``i (z - i + 1)^2 (z - i)^2`` of the paper's Figure 3 on ``[i - 1, i]``, i = 1, 2, 3."""
    return i * (z - i + 1) ** 2 * (z - i) ** 2


def figure3_variance(output: str = "sum"):
    """Variance of the Figure 3 target under the uniform distribution on [0, 3]^2 (exact rationals).

    With ``g`` the pieces on one coordinate, ``E g = (1/3) sum_i int f_i`` and ``E g^2`` likewise; the two coordinates
    are independent, so ``"tuple"`` gives each output's variance ``Var g = 2/675``, ``"sum"`` ``2 Var g = 4/675`` and
    ``"product"`` ``(E g^2)^2 - (E g)^4 = 16/455625``. For the error normalised by the target's variance.
    """
    check_choice("output", output, ("tuple", "sum", "product"))
    mean = sum(sp.integrate(figure3_piece(i), (x, i - 1, i)) for i in (1, 2, 3)) / 3
    square = sum(sp.integrate(figure3_piece(i) ** 2, (x, i - 1, i)) for i in (1, 2, 3)) / 3
    var = square - mean**2
    return {"tuple": var, "sum": 2 * var, "product": square**2 - mean**4}[output]
