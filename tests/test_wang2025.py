"""Tests of the Wang & E (2025) chapter: data, stacked MoE, the construction, the paper module."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moetheory import runtime
from moetheory.metrics import loglog_slope
from moetheory.papers import wang2025
from moetheory.papers.wang2025 import manifolds
from moetheory.papers.wang2025.deep_moe import (
    DenseNet,
    StackedMoE,
    circle_state,
    construct_circle_moe,
    evaluate,
    train_regression,
)

runtime.set_threads(1)
CLAIM_IDS = {"wang2025/ambient-dimension-free", "wang2025/deep-moe-width-slope", "wang2025/shallow-plateau",
             "wang2025/jump-separation", "wang2025/cube-depth"}


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), st.integers(4, 40), st.integers(0, 1000))
def test_embedding_is_orthonormal_and_dense(k, D, seed):
    Q = manifolds.random_embedding(k, D, seed)
    assert torch.allclose(Q @ Q.T, torch.eye(k), atol=1e-5)
    assert torch.equal(Q, manifolds.random_embedding(k, D, seed))


def test_circle_is_isometric_and_not_padded():
    X, y, theta = manifolds.sample_circle(500, 32, seed=3)
    assert torch.allclose(X.norm(dim=1), torch.ones(500), atol=1e-5)
    assert (X.abs().amax(0) > 1e-3).all()  # every ambient coordinate varies (zero padding would not)
    assert torch.allclose(y, torch.sin(5 * theta.cos()) + torch.cos(3 * theta.sin()))
    X2, y2, _ = manifolds.sample_circle(500, 32, seed=3)
    assert torch.equal(X, X2) and torch.equal(y, y2)


def test_cube_target_cells_and_kinds():
    coef = manifolds.piece_coefficients(3, 2, seed=0)
    x = torch.tensor([[0.25, 2.5], [1.5, 0.75]])
    a, w, b = coef.unbind(-1)
    f = lambda l, i, t: float(a[l, i] * torch.sin(w[l, i] * t + b[l, i]))
    expect_sum = [f(0, 0, 0.25) + f(1, 2, 0.5), f(0, 1, 0.5) + f(1, 0, 0.75)]
    expect_prod = [f(0, 0, 0.25) * f(1, 2, 0.5), f(0, 1, 0.5) * f(1, 0, 0.75)]
    assert manifolds.cube_target(x, coef, "sum").tolist() == pytest.approx(expect_sum, rel=1e-5)
    assert manifolds.cube_target(x, coef, "product").tolist() == pytest.approx(expect_prod, rel=1e-5)
    xg, _ = manifolds.cube_grid(12, 3, 2)
    assert xg.shape == (144, 2) and len(torch.unique(xg.floor(), dim=0)) == 9  # E^L cells
    with pytest.raises(ValueError, match="kind"):
        manifolds.cube_target(x, coef, "max")


def test_jump_and_spiral():
    x, y = manifolds.sample_jump(1000, 2.0, grid=True)
    gap = y[x[:, 0] >= 0].min() - y[x[:, 0] < 0].max()
    assert float(gap) > 1.9
    with pytest.raises(ValueError, match="jump"):
        manifolds.sample_jump(10, 0.0)
    pts, _, t = manifolds.sample_spiral(200, 4, seed=0)
    assert torch.allclose(pts.norm(dim=1), t, atol=1e-5)


@pytest.mark.parametrize("n_experts", [4, 8])
def test_construction_matches_interpolation_and_rate(n_experts):
    emb = manifolds.random_embedding(2, 24, seed=1)
    X, y, theta = manifolds.sample_circle(4000, 24, grid=True, embedding_seed=1)
    errs = []
    for m in (16, 32, 64):
        layer = construct_circle_moe(n_experts, m, emb, manifolds.circle_target)
        with torch.no_grad():
            out = layer(circle_state(X))[0, :, 0]
        chart = layer.last_routing.index[0, :, 0]
        centre = chart * (2 * math.pi / n_experts)
        offset = torch.remainder(theta - centre + math.pi, 2 * math.pi) - math.pi
        assert offset.abs().max() <= math.pi / n_experts + 1e-4  # routed to the nearest chart centre
        # independent route: numpy interpolation in the chart coordinate s = sin(theta - centre)
        a = math.sin(math.pi / n_experts)
        s = torch.sin(theta - centre).double().numpy()
        knots = np.linspace(-a, a, m + 1)
        ref = np.empty_like(s)
        for i in range(n_experts):
            sel = chart.numpy() == i
            vals = manifolds.circle_target(torch.tensor(2 * math.pi * i / n_experts + np.arcsin(knots))).numpy()
            ref[sel] = np.interp(s[sel], knots, vals)
        assert np.abs(out.double().numpy() - ref).max() < 1e-4
        errs.append(float((out - y).abs().max()))
    slope = loglog_slope([16, 32, 64], errs)
    assert -2.3 < slope < -1.7  # piecewise-linear interpolation of a smooth function: O(m^-2)


def test_width_masking_is_exact_and_stays_exact():
    runtime.seed_everything(0)
    model = StackedMoE(2, 3, [3, 8], n_layers=2)
    hidden = model.layers[0].experts.layers[0]
    X, y = manifolds.sample_cube(256, 3, 2)
    train_regression(model, X, y, iterations=20, generator=torch.Generator().manual_seed(0))
    assert hidden.weight[0, ..., 3:].abs().max() == 0 and hidden.bias[0, ..., 3:].abs().max() == 0
    assert hidden.weight[1, ..., 3:].abs().max() > 0
    dense = DenseNet(2, [2, 5], separable=True)
    assert dense(X[None].expand(2, -1, -1)).shape == (2, 256)


def test_parallel_slots_ignore_composition_and_slots_are_independent():
    runtime.seed_everything(1)
    model = StackedMoE(2, 3, [4, 4], n_layers=2, stack=["serial", "parallel"])
    X = torch.rand(2, 50, 2) * 3
    out = model(X)
    h0 = torch.cat([X, torch.ones_like(X[..., :1]), torch.zeros_like(X[..., :1])], -1)
    par = sum(layer(h0) for layer in model.layers)[1, :, 0]
    assert torch.allclose(out[1], par, atol=1e-6)
    X2 = X.clone()
    X2[0] += 1.0  # changing slot 0's input leaves slot 1 alone
    assert torch.allclose(model(X2)[1], out[1])
    with pytest.raises(ValueError, match="stack"):
        StackedMoE(2, 3, [4, 4], stack=["serial"])


def test_training_reduces_error():
    runtime.seed_everything(2)
    X, y, _ = manifolds.sample_circle(1024, 8, seed=1)
    model = StackedMoE(8, 4, [10, 10])
    before = evaluate(model, X, y).mse
    train_regression(model, X, y, iterations=300, lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert (evaluate(model, X, y).mse < 0.5 * before).all()


def test_config_validation():
    with pytest.raises(ValueError, match="n_seeds"):
        wang2025.Config(n_seeds=0)
    with pytest.raises(ValueError, match="seed"):
        wang2025.Config(seed=wang2025.MAX_RUN_SEED + 1)  # step seeds seed * 5 + i must stay valid seeds
    with pytest.raises(ValueError, match="exp2_widths"):
        wang2025.Config(exp2_widths=(16,))
    with pytest.raises(ValueError, match="scale"):
        wang2025.config("huge")
    with pytest.raises(ValueError, match="gate"):
        StackedMoE(2, 3, [4], gate="attention")


def test_tiny_end_to_end():
    result = wang2025.run(wang2025.config("tiny"), device="cpu")
    got = wang2025.claims(result)
    assert {c.id for c in got} == CLAIM_IDS
    assert all(isinstance(c.holds, bool) for c in got)
    metrics = result.metrics()
    assert set(metrics["exp2"]) == {"tuple", "sum", "product", "jump"}
    assert set(metrics["exp2"]["tuple"]) == {"deep", "shallow", "dense"}
    assert set(metrics["exp2"]["product"]) == {"deep", "parallel", "dense"}
    budgets, widths = len(result.config.exp2_budgets), len(result.config.exp2_widths)
    assert np.asarray(metrics["exp2"]["tuple"]["deep"]["rmse"]).shape == (budgets, widths, 2)
    assert set(metrics["exp2_construction"]) == {"tuple", "sum"}
    assert np.asarray(metrics["exp1"]["moe"]["mse"]).shape == (3, 2)
    # the chapter's second arm is seeded as run() seeds Experiment I: the record's arm comes out identical
    again = wang2025.run_exp1_embedding(result.config, result.config.exp1_embedding, device="cpu")
    assert np.array_equal(again["moe"]["mse"], result.exp1["moe"]["mse"])
    assert np.array_equal(again["dense_total"]["linf"], result.exp1["dense_total"]["linf"])
    claimed = next(c.reproduced for c in got if c.id == "wang2025/ambient-dimension-free")
    assert claimed == "growth {:.2g} ({:.2g}-{:.2g})".format(*wang2025.dimension_growth(result.config.exp1_dims,
                                                                                        again["moe"]["mse"]))
    # run() records the other embedding too, seeded as the chapter's call would seed it
    pad = wang2025.run_exp1_embedding(result.config, "zero-pad", device="cpu")
    assert np.array_equal(pad["moe"]["mse"], result.exp1_arms["zero-pad"]["moe"]["mse"])
    # the chapter reads a record's metrics back (result_from_metrics): the same claims through a JSON round trip
    back = wang2025.result_from_metrics(result.config, json.loads(json.dumps(metrics)))
    assert [c.to_dict() for c in wang2025.claims(back)] == [c.to_dict() for c in got]
    with pytest.raises(ValueError, match="exp1_arms"):
        wang2025.result_from_metrics(result.config, {k: v for k, v in metrics.items() if k != "exp1_arms"})


# --- the paper's Figure 3 target --------------------------------------------------------------------------------------
Z = sp.Symbol("z")
FIGURE3_PIECES = [i * (Z - i + 1) ** 2 * (Z - i) ** 2 for i in (1, 2, 3)]  # Figure 3: i (i - 1 - z)^2 (z - i)^2


def _figure3_by_hand(z: float) -> float:
    i = min(int(math.floor(z)) + 1, 3)
    return float(FIGURE3_PIECES[i - 1].subs(Z, sp.Rational(str(z))))


@pytest.mark.parametrize("face", [0, 1, 2, 3])
def test_figure3_pieces_vanish_with_their_slope_at_the_faces(face):
    """Value and one-sided slopes at z = 0..3: zero by sympy (each piece touching the face) and by finite differences
    of the package's target, whose one-sided difference quotients shrink like h (a double root)."""
    for i in (1, 2, 3):
        if face in (i - 1, i):
            assert FIGURE3_PIECES[i - 1].subs(Z, face) == 0
            assert sp.diff(FIGURE3_PIECES[i - 1], Z).subs(Z, face) == 0
    x = torch.tensor([[face, face]], dtype=torch.float64)
    assert manifolds.figure3_target(x).abs().max() == 0
    for h in (1e-3, 1e-4):
        for side in (-1, 1):
            z = face + side * h
            if 0 <= z <= 3:
                step = torch.tensor([[z, 0.0]], dtype=torch.float64)
                quotient = float(manifolds.figure3_target(step)[0, 0]) / (side * h)
                assert abs(quotient) <= 3 * h * 1.01  # |f_i(face +- h)| <= i h^2 (1 + h)^2


def test_figure3_target_is_continuous_and_matches_the_pieces_inside_the_cells():
    z = torch.linspace(0, 3, 30001, dtype=torch.float64)
    f = manifolds.figure3_target(torch.stack([z, z], 1))[:, 0]
    slope = max(float(sp.maximum(sp.diff(p, Z), Z, sp.Interval(i - 1, i))) for i, p in enumerate(FIGURE3_PIECES, 1))
    assert slope == pytest.approx(1 / math.sqrt(3))  # 3 max |d/dt t^2 (1 - t)^2| = 3 / (3 sqrt 3)
    assert f.diff().abs().max() <= slope * 1e-4 * (1 + 1e-9)  # no jump anywhere, faces included
    points = [(0.5, 1.5), (2.25, 0.75), (1.1, 2.9), (0.0, 3.0), (1.0, 2.0)]
    x = torch.tensor(points, dtype=torch.float64)
    hand = np.array([[_figure3_by_hand(a), _figure3_by_hand(b)] for a, b in points])
    assert hand[0].tolist() == [1 / 16, 2 / 16]  # the midpoints: i / 16
    np.testing.assert_allclose(manifolds.figure3_target(x, "tuple").numpy(), hand, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(manifolds.figure3_target(x, "sum").numpy(), hand.sum(1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(manifolds.figure3_target(x, "product").numpy(), hand.prod(1), rtol=1e-12, atol=1e-15)
    assert manifolds.figure3_target(x.numpy(), "sum").dtype == torch.float64  # numpy in, torch out
    from moetheory.data import figure3_target

    assert figure3_target is manifolds.figure3_target


def test_figure3_helpers_and_errors():
    x, y = manifolds.sample_figure3(500, "product", seed=4)
    assert x.shape == (500, 2) and y.shape == (500,) and 0 <= x.min() and x.max() <= 3
    assert torch.equal(y, manifolds.figure3_target(x, "product"))
    xg, yg = manifolds.figure3_grid(6, "tuple")
    assert xg.shape == (36, 2) and yg.shape == (36, 2) and len(torch.unique(xg.floor(), dim=0)) == 9
    with pytest.raises(ValueError, match=r"^x must have shape \(n, 2\); got \(3,\)$"):
        manifolds.figure3_target(torch.ones(3))
    with pytest.raises(ValueError, match=r"^x must have shape \(n, 2\); got \(4, 3\)$"):
        manifolds.figure3_target(torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"^x must lie in \[0, 3\]\^2; got values in \[-0.1, 1\]$"):
        manifolds.figure3_target(torch.tensor([[-0.1, 1.0]]))
    with pytest.raises(ValueError, match=r"^x must lie in \[0, 3\]\^2; got values in \[nan, nan\]$"):
        manifolds.figure3_target(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="^output must be one of 'tuple', 'sum', 'product'; got 'max'$"):
        manifolds.figure3_target(torch.ones(2, 2), "max")


# --- Experiment I with zero padding (the paper's circle) --------------------------------------------------------------
def test_zero_padding_leaves_the_padded_weights_inert():
    """With zero-padded inputs the padded coordinates' first-layer weights (gate and experts of the MoE, the dense
    net's first layer) get zero gradient, so Adam never moves them, and re-randomising them changes no prediction."""
    D = 12
    X, y, _ = manifolds.sample_circle(512, D, seed=1, embedding="zero-pad")
    Xt, _, theta = manifolds.sample_circle(300, D, grid=True, embedding="zero-pad")
    assert (X[:, 2:] == 0).all() and torch.allclose(Xt[:, :2], torch.stack([theta.cos(), theta.sin()], 1))
    runtime.seed_everything(3)
    moe, dense = StackedMoE(D, 4, [10, 10]), DenseNet(D, [10, 20])
    padded = {  # first-layer weights on the padded coordinates 2..D-1 (the MoE's state is (x, 1, u))
        "gate": (moe, lambda: moe.layers[0].router.weight[..., 2:D]),
        "experts": (moe, lambda: moe.layers[0].experts.layers[0].weight[:, :, 2:D]),
        "dense": (dense, lambda: dense.net.layers[0].weight[:, :, 2:D]),
    }
    start = {k: get().detach().clone() for k, (_, get) in padded.items()}
    kept = moe.layers[0].experts.layers[0].weight[:, :, :2].detach().clone()
    for model in (moe, dense):
        train_regression(model, X, y, iterations=40, lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(moe.layers[0].experts.layers[0].weight[:, :, :2], kept)  # the circle's weights moved
    before = {m: m(Xt.expand(2, -1, -1)).detach() for m in (moe, dense)}
    for name, (_, get) in padded.items():
        assert torch.equal(get(), start[name]), name
        with torch.no_grad():
            get().copy_(torch.randn_like(start[name]) * 5)
    for model, pred in before.items():
        assert torch.equal(model(Xt.expand(2, -1, -1)), pred)


def test_exp1_embedding_option():
    assert wang2025.Config().exp1_embedding == "random"
    with pytest.raises(ValueError, match="^exp1_embedding must be one of 'random', 'zero-pad'; got 'pad'$"):
        wang2025.Config(exp1_embedding="pad")
    with pytest.raises(ValueError, match="embedding"):
        manifolds.sample_circle(4, 8, embedding="pad")
    with pytest.raises(ValueError, match="^embedding must be one of 'random', 'zero-pad'; got 'pad'$"):
        wang2025.run_exp1_embedding(wang2025.config("tiny"), "pad", device="cpu")
    X, _, _ = manifolds.sample_circle(20, 8, embedding="zero-pad", embedding_seed=5)
    assert torch.equal(X, manifolds.sample_circle(20, 8, embedding="zero-pad")[0])  # no seed in zero padding
    cfg = replace(wang2025.config("tiny"), exp1_embedding="zero-pad", exp1_iterations=5)
    res = wang2025.run_exp1(cfg, torch.device("cpu"), runtime.seed_everything(0))
    assert res["moe"]["mse"].shape == (3, 2) and np.isfinite(res["moe"]["mse"]).all()
    claim = wang2025.claims(wang2025.Result(cfg, np.zeros((2, 2)), exp1=res, exp2={"tuple": {
        m: {"mse": np.ones((2, 2, 2))} for m in ("deep", "shallow")}}, exp2_construction={
        "tuple": {"mse": np.ones(2)}}, jump={
        "dense": {"sup": np.ones(2)}, "moe": {"outside": np.zeros(2), "offset": np.zeros(2)}}))[0]
    assert claim.criterion.endswith("(zero padding, the paper's: padded coordinates are inert)")


# --- the ambient-dimension claim's test: growth over D with a seed band -----------------------------------------------
DIMS = (16, 32, 64, 128)


def _synthetic_mse(rate: float, spread: float, seeds: int, rng) -> np.ndarray:
    """``(D, seeds)`` test MSEs ``1e-3 D^rate`` times a log-normal seed factor of scale ``spread``."""
    return 1e-3 * np.array(DIMS, float)[:, None] ** rate * np.exp(spread * rng.standard_normal((len(DIMS), seeds)))


def test_dimension_growth_holds_flat_fails_growing_and_underpowered():
    """Positive control: an error independent of D, seeds 1.35x apart (log-normal 0.3), must hold (band <= 3) in every
    draw; an error growing like D (8x over the range) must not, nor mostly a flat one whose seeds scatter 4x
    (log-normal 1.4, the scale seen at quick scale); the 90% band covers the true growth at its rate (binomial
    tolerance)."""
    rng = np.random.default_rng(0)
    n, covered = 200, 0
    for _ in range(n):
        flat = wang2025.dimension_growth(DIMS, _synthetic_mse(0.0, 0.3, 5, rng))
        assert flat[1] <= flat[0] <= flat[2] <= wang2025.GROWTH_MAX
        covered += flat[1] <= 1.0 <= flat[2]
        assert wang2025.dimension_growth(DIMS, _synthetic_mse(1.0, 0.3, 5, rng))[2] > wang2025.GROWTH_MAX
    assert abs(covered / n - wang2025.GROWTH_LEVEL) <= 4 * math.sqrt(0.09 / n)
    noisy = [wang2025.dimension_growth(DIMS, _synthetic_mse(0.0, 1.4, 5, rng))[2] for _ in range(n)]
    assert np.median(noisy) > wang2025.GROWTH_MAX  # five such seeds mostly cannot bound a growth (median about 4.3)
    assert wang2025.dimension_growth(DIMS, 1e-3 * np.array(DIMS, float)[:, None] ** 0.5 * [1.0, 1.0]) == \
        pytest.approx((8**0.5,) * 3)  # exact data: no band
    with pytest.raises(ValueError, match="mse must have shape"):
        wang2025.dimension_growth(DIMS, np.ones((3, 2)))
    with pytest.raises(ValueError, match="level"):
        wang2025.dimension_growth(DIMS, np.ones((4, 2)), level=1.0)

