"""Tests of moetheory.papers.wang2025.bounds: each closed form against an independent numerical route."""

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq, linprog, minimize_scalar

from moetheory.papers.wang2025 import bounds
from moetheory.runtime import set_threads

set_threads(1)


@pytest.mark.parametrize(("c_val", "e_val"), [(1.3, 5), (0.2, 2), (4.0, 16)])
def test_routing_width_is_the_root_of_the_condition(c_val, e_val):
    """The threshold solves C m^(-1/2) = 1/(2E), found here by bracketing (brentq); the strict condition holds just
    above it and fails just below."""
    vals = {bounds.C: c_val, bounds.E: e_val}
    gap = lambda width: c_val / math.sqrt(width) - 1 / (2 * e_val)  # noqa: E731
    root = brentq(gap, 1e-12, 1e12, xtol=1e-14, rtol=1e-14)
    m_star = float(bounds.routing_width().subs(vals))
    assert m_star == pytest.approx(root, rel=1e-12)
    cond = bounds.routing_width_condition()
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


def _minimax_line(xs, ys) -> float:
    """The best uniform error of a line a x + b on the points (xs, ys): the linear program
    min t s.t. -t <= y_i - a x_i - b <= t (scipy.optimize.linprog)."""
    ones = np.ones_like(xs)
    a_ub = np.vstack([np.column_stack([-xs, -ones, -ones]), np.column_stack([xs, ones, -ones])])
    b_ub = np.concatenate([-ys, ys])
    res = linprog([0, 0, 1], A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * 3, method="highs")
    assert res.status == 0
    return res.fun


def _pieces_error(edges) -> float:
    """Worst piece of the best piecewise-linear (one free line per piece) uniform fit to x^2 on ``edges``."""
    errs = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        xs = np.linspace(lo, hi, 401)  # holds both ends and the midpoint, where the error equioscillates
        errs.append(_minimax_line(xs, xs**2))
    return max(errs)


@pytest.mark.parametrize(("length", "pieces"), [(1.0, 8), (2.0, 4), (3.0, 5)])
def test_pieces_lower_bound_by_minimax_fits(length, pieces):
    """k equal pieces reach l^2 / (8 k^2) (each piece fitted by a linear program); random splits of [0, l] into k
    pieces never beat it."""
    bound = float(bounds.pieces_lower_bound(length, pieces))
    assert _pieces_error(np.linspace(0, length, pieces + 1)) == pytest.approx(bound, rel=1e-9)
    rng = np.random.default_rng(pieces)
    for _ in range(5):
        cuts = np.sort(rng.uniform(0, length, pieces - 1))
        assert _pieces_error(np.concatenate([[0], cuts, [length]])) >= bound * (1 - 1e-9)


def _count_pieces(fn, lo=-20.0, hi=20.0, n=400_001) -> int:
    """Linear pieces of a continuous piecewise-linear ``fn`` on [lo, hi]: runs of equal slope on a fine grid
    (a kink inside a grid cell gives one odd slope between two runs; it is merged into the knot)."""
    xs = np.linspace(lo, hi, n)
    slope = np.diff(fn(xs)) / np.diff(xs)
    kink = np.abs(np.diff(slope)) > 1e-6 * (1 + np.abs(slope[1:]))  # (n - 2,) slope changes between cells
    starts = kink & ~np.concatenate([[False], kink[:-1]])  # first of each run of changes: one knot
    return int(starts.sum()) + 1


def _relu_net(widths, rng):
    layers = [(rng.normal(size=(w_out, w_in)), rng.normal(size=w_out) * 2)
              for w_in, w_out in zip([1, *widths], widths, strict=False)]
    readout = rng.normal(size=widths[-1])

    def fn(xs):
        h = xs[None]
        for w, b in layers:
            h = np.maximum(w @ h + b[:, None], 0)
        return readout @ h

    return fn


@pytest.mark.parametrize(("width", "depth"), [(3, 1), (5, 1), (2, 2), (3, 2), (2, 3)])
def test_relu_pieces_bound_holds_for_random_nets_and_is_reached_by_one_layer(width, depth):
    """Counted pieces of random univariate ReLU nets never exceed (m + 1)^L; one hidden layer with its m knots in
    distinct places reaches m + 1."""
    rng = np.random.default_rng(10 * width + depth)
    bound = int(bounds.relu_pieces(width, depth))
    counts = [_count_pieces(_relu_net([width] * depth, rng)) for _ in range(6)]
    assert max(counts) <= bound, counts
    if depth == 1:
        knots = np.linspace(-5, 5, width)  # m units x -> relu(x - t_j), output weights of one sign: no two knots merge
        assert _count_pieces(lambda xs: np.maximum(xs[None] - knots[:, None], 0).sum(0)) == bound
    if width == 2:  # the tent map 2 relu(x) - 4 relu(x - 1/2) composed L times: 2^L teeth on [0, 1], two rays outside
        def sawtooth(xs):
            for _ in range(depth):
                xs = 2 * np.maximum(xs, 0) - 4 * np.maximum(xs - 0.5, 0)
            return xs

        assert _count_pieces(sawtooth, -3.0, 3.0) == 2**depth + 2 <= bound


@pytest.mark.parametrize(("n_experts", "layers"), [(2, 2), (3, 2), (4, 1), (2, 3)])
def test_moe_pieces_counts_the_routing_cells_on_a_product_domain(n_experts, layers):
    """Layer l routes on coordinate l of [0, 1]^L by the argmax of E affine gates (at most E intervals, the upper
    envelope of E lines): the distinct routes on a grid number at most E^L, and exactly E^L with gates that each
    win an interval (tangent lines of a parabola)."""
    axis = np.linspace(0, 1, 101 if layers < 3 else 41)
    grid = np.stack(np.meshgrid(*[axis] * layers, indexing="ij"), -1).reshape(-1, layers)
    rng = np.random.default_rng(n_experts + layers)

    def cells(slopes, offsets) -> int:  # (L, E) gates: logit_i(x) = slope_i x_l + offset_i at layer l
        route = np.argmax(grid[:, :, None] * slopes[None] + offsets[None], -1)  # (points, L)
        return len(np.unique(route @ n_experts ** np.arange(layers)))  # one integer per route

    bound = int(bounds.moe_pieces(n_experts, layers))
    for _ in range(5):
        assert cells(rng.normal(size=(layers, n_experts)), rng.normal(size=(layers, n_experts))) <= bound
    centres = (np.arange(n_experts) + 0.5) / n_experts  # gate i: tangent of x^2 / 2 at its centre
    assert cells(np.tile(centres, (layers, 1)), np.tile(-centres**2 / 2, (layers, 1))) == bound


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
    from moetheory.experts import count_parameters
    from moetheory.papers.wang2025.deep_moe import DenseNet, StackedMoE

    model = StackedMoE(3, 4, [7], n_layers=2)
    assert count_parameters(model) == bounds.moe_parameters(5, 4, 7, n_layers=2)["total"]
    gated = StackedMoE(3, 4, [7], gate="mlp", gate_hidden=5)  # the MLP gate replaces the linear one
    assert count_parameters(gated) == bounds.moe_parameters(5, 4, 7, gate_hidden=5)["total"]
    assert count_parameters(DenseNet(3, [9])) == bounds.mlp_parameters([3, 9, 1])
    counts = bounds.moe_parameters(5, 4, 7)
    assert counts["total"] - counts["active"] == 3 * bounds.mlp_parameters([5, 7, 1])


def test_rates_follow_the_cited_theorems():
    """Transcriptions of Theorems 3.1 and 4.8 (nothing to derive): the dense rate switches to m^(-1/2) at
    K = (D + 3) / 2; the MoE rate depends on the intrinsic d only."""
    assert bounds.dense_rate(2, 10).equals(bounds.m ** sp.Rational(-1, 5))
    assert bounds.dense_rate(20, 10).equals(bounds.m ** sp.Rational(-1, 2))
    assert bounds.manifold_rate(1, 1).equals(bounds.m ** sp.Rational(-1, 2))
    assert bounds.manifold_rate(1, 4).equals(bounds.m ** sp.Rational(-1, 4))
    assert bounds.D not in bounds.manifold_rate().free_symbols


def _best_continuous_fit_to_a_jump(jump: float, knots: int, fine: int) -> float:
    """min over continuous piecewise-linear g (values at ``knots`` points of [-1, 1], linear in between) of
    max |f - g| on a finer grid, f = jump 1[x >= 0]: a linear program."""
    z = np.linspace(-1, 1, knots)  # 0 is a knot when knots is odd; it is not here
    xs = np.union1d(np.linspace(-1, 1, fine), [-1e-6, 0.0])  # the points either side of the jump
    interp = np.stack([np.interp(xs, z, np.eye(knots)[j]) for j in range(knots)], 1)  # (points, knots)
    f = jump * (xs >= 0)
    a_ub = np.vstack([np.column_stack([-interp, -np.ones(len(xs))]), np.column_stack([interp, -np.ones(len(xs))])])
    res = linprog(np.r_[np.zeros(knots), 1.0], A_ub=a_ub, b_ub=np.concatenate([-f, f]),
                  bounds=[(None, None)] * (knots + 1), method="highs")
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("jump", [0.5, 1.0, 3.0])
def test_jump_lower_bound_is_the_best_continuous_error(jump):
    """The best continuous piecewise-linear fit (a linear program) sits at J/2: never above (a continuous g through
    J/2 at the jump reaches it), and below only by the slope across the 1e-6 gap between the two points either side
    of the jump, relative to the knot spacing 2/19."""
    bound = float(bounds.jump_lower_bound(jump))
    error = _best_continuous_fit_to_a_jump(jump, 20, 2001)
    assert error <= bound + 1e-9
    # t >= (J - slope * 1e-6) / 2 with |slope| <= (J + 2t) / (2/19): t >= J/2 (1 - 2e-6 / (2/19)), with room
    assert error >= bound * (1 - 3e-6 / (2 / 19))


@pytest.mark.parametrize(("output", "value"), [("tuple", sp.Rational(2, 675)), ("sum", sp.Rational(4, 675)),
                                               ("product", sp.Rational(16, 455625))])
def test_figure3_variance_against_a_grid_of_the_target(output, value):
    """The SymPy integrals against their value by hand (Beta integrals: int t^2 (1-t)^2 = 1/30, int t^4 (1-t)^4 =
    1/630, so E g = 1/15 and E g^2 = 1/135) and against the midpoint rule on the package's target (error O(h^2))."""
    from moetheory.papers.wang2025 import manifolds

    assert bounds.figure3_variance(output) == value
    _, y = manifolds.figure3_grid(600, output)
    y = y.double()
    grid = (y.var(0, unbiased=False)[0] if output == "tuple" else y.var(unbiased=False)).item()
    assert grid == pytest.approx(float(value), rel=1e-4)
    with pytest.raises(ValueError, match="output"):
        bounds.figure3_variance("max")
