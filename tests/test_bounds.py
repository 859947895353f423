"""Tests of moetheory.bounds: each closed form against an independent numerical route."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from moetheory import bounds
from moetheory.runtime import set_threads

set_threads(1)


def test_routing_width_is_the_threshold():
    thr = bounds.routing_width()
    assert sp.simplify(thr - 4 * bounds.C**2 * bounds.E**2) == 0
    cond = bounds.routing_width_condition()
    vals = {bounds.C: 1.3, bounds.E: 5}
    m_star = float(thr.subs(vals))
    assert bool(cond.subs({**vals, bounds.m: m_star * 1.01}))
    assert not bool(cond.subs({**vals, bounds.m: m_star * 0.99}))


@settings(max_examples=25, deadline=None)
@given(st.floats(0.1, 10.0), st.floats(0.1, 10.0))
def test_linear_fit_error_matches_minimax_fit(length, shift):
    # brute-force minimax line for x^2 on [shift, shift + length] (translation does not change the error)
    xs = np.linspace(shift, shift + length, 2001)
    secant_slope = 2 * shift + length  # the optimal slope equals the secant's (Chebyshev)

    def err(b):
        return np.abs(xs**2 - secant_slope * xs - b).max()

    best = minimize_scalar(err, bracket=(-100, 100), tol=1e-12).fun
    assert best == pytest.approx(float(bounds.linear_fit_error(length)), rel=1e-4)


def test_pieces_lower_bound_and_piece_counts():
    assert bounds.pieces_lower_bound(2, 4).equals(sp.Rational(1, 32))
    assert bounds.relu_pieces(3, 2) == 16 and bounds.moe_pieces(3, 2) == 9
    # k equal pieces achieve the bound exactly: worst piece error on [0, 1] with 8 pieces
    xs = np.linspace(0, 1, 8001)
    knots = np.linspace(0, 1, 9)
    interp = np.interp(xs, knots, knots**2) - (1 / 8) ** 2 / 8  # shifted secants
    assert np.abs(xs**2 - interp).max() == pytest.approx(float(bounds.pieces_lower_bound(1, 8)), rel=1e-3)


def test_optimal_experts_against_numeric_minimum():
    e_star, active_star = bounds.optimal_experts()
    vals = {bounds.c: 2.0, bounds.eps: 1e-6, bounds.D: 16}
    active = bounds.construction_parameters()[0]
    width = sp.sqrt(vals[bounds.c] / vals[bounds.eps]) / bounds.E
    f = sp.lambdify(bounds.E, active.subs(bounds.m, width).subs(vals))
    res = minimize_scalar(f, bounds=(1, 1000), method="bounded", options={"xatol": 1e-8})
    assert res.x == pytest.approx(float(e_star.subs(vals)), rel=1e-4)
    assert res.fun == pytest.approx(float(active_star.subs(vals)), rel=1e-6)


def test_parameter_counts_match_models():
    from moetheory.deep_moe import DenseNet, StackedMoE
    from moetheory.experts import count_parameters

    model = StackedMoE(3, 4, [7], n_layers=2)
    assert count_parameters(model) == bounds.moe_parameters(5, 4, 7, n_layers=2)["total"]
    gated = StackedMoE(3, 4, [7], gate="mlp", gate_hidden=5)  # the MLP gate replaces the linear one
    assert count_parameters(gated) == bounds.moe_parameters(5, 4, 7, gate_hidden=5)["total"]
    assert count_parameters(DenseNet(3, [9])) == bounds.mlp_parameters([3, 9, 1])
    counts = bounds.moe_parameters(5, 4, 7)
    assert counts["total"] - counts["active"] == 3 * bounds.mlp_parameters([5, 7, 1])


def test_rates():
    assert bounds.dense_rate(2, 10).equals(bounds.m ** sp.Rational(-1, 5))
    assert bounds.dense_rate(20, 10).equals(bounds.m ** sp.Rational(-1, 2))
    assert bounds.manifold_rate(1, 1).equals(bounds.m ** sp.Rational(-1, 2))
    assert bounds.manifold_rate(1, 4).equals(bounds.m ** sp.Rational(-1, 4))
    assert bounds.jump_lower_bound(3) == sp.Rational(3, 2)
