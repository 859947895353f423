"""Tests of the larger cube (the Figure 3 pieces on [0, E]^L, the (L, E) construction, the matched models) and of the
product run at convergence (the cosine step-size schedule)."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from moetheory import runtime
from moetheory.metrics import loglog_slope
from moetheory.papers import wang2025
from moetheory.papers.wang2025 import cube, manifolds
from moetheory.papers.wang2025.deep_moe import DenseNet, StackedMoE, lr_factor, train_regression
from moetheory.papers.wang2025.experiment2 import construct_figure3_moe

runtime.set_threads(1)
TINY = wang2025.config("tiny")


def test_extended_pieces_equal_figure3_for_three_cells_and_vanish_with_their_slope_at_every_face():
    z = torch.linspace(0, 3, 3001, dtype=torch.float64)
    assert torch.equal(manifolds.figure3_pieces(z, 3), manifolds.figure3_pieces(z))
    assert torch.equal(manifolds.figure3_pieces(z, 4), manifolds.figure3_pieces(z))  # cells 1..3 are Figure 3's
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    np.testing.assert_allclose(manifolds.figure3_pieces(3 + t, 4), 4 * t**2 * (t - 1) ** 2, atol=1e-15)
    h = 1e-6
    for face in range(5):
        for side in (-1, 1):
            if 0 <= face + side * h <= 4:
                value = float(manifolds.figure3_pieces(torch.tensor(face + side * h, dtype=torch.float64), 4))
                assert abs(value) < 4 * h**2 * 1.01  # value O(h^2): the piece and its slope vanish at the face
    x = torch.rand(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    for output in ("tuple", "sum"):
        assert torch.equal(cube.cube_target(x, 3, output), manifolds.figure3_target(x, output))
    x3 = torch.rand(100, 3, dtype=torch.float64) * 4
    assert cube.cube_target(x3, 4).shape == (100, 3)
    assert torch.allclose(cube.cube_target(x3, 4, "sum"), cube.cube_target(x3, 4).sum(1))
    with pytest.raises(ValueError, match=r"^x must be \(n, L\) in \[0, 4\]\^L"):
        cube.cube_target(x3 + 1, 4)
    with pytest.raises(ValueError, match="^n_cells must be an integer >= 1; got 0$"):
        manifolds.figure3_pieces(z, 0)


@pytest.mark.parametrize("output", ["tuple", "sum"])
def test_cube_construction_routes_exactly_and_interpolates_at_rate_two(output):
    L, E = 3, 4
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4000, L, generator=gen, dtype=torch.float64) * E
    errs = []
    for m in (8, 16, 32):
        moe = construct_figure3_moe(m, output, n_layers=L, n_experts=E)
        with torch.no_grad():
            out = moe(x[None])[0]
        for layer_index, layer in enumerate(moe.layers):  # cell interiors: the gate picks floor(x_l)
            assert torch.equal(layer.last_routing.index[0, :, 0], x[:, layer_index].floor().long())
        knots = np.linspace(0, E, E * m + 1)
        piece = manifolds.figure3_pieces(torch.tensor(knots), E).numpy()
        ref = np.stack([np.interp(x[:, i].numpy(), knots, piece) for i in range(L)], 1)
        np.testing.assert_allclose(out.numpy(), ref if output == "tuple" else ref.sum(1), atol=1e-12)
        errs.append(float((out - cube.cube_target(x, E, output)).abs().max()))
    assert -2.3 < loglog_slope([8, 16, 32], errs) < -1.7
    # per coordinate max |f''| h^2 / 8 with |f''| <= 2 E on cell E
    assert errs[-1] <= (1 if output == "tuple" else L) * 2 * E / 8 / 32**2
    # the paper's 2 x 3 is the default: same parameters as before the generalisation
    a, b = construct_figure3_moe(8), construct_figure3_moe(8, n_layers=2, n_experts=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("c", [3, 1])
@pytest.mark.parametrize("m", [8, 32])
def test_parameter_matching_is_exact_to_rounding(m, c):
    """Every count of cube_parameters is the count of a real one-slot model, and each matched width is the one whose
    count is nearest to its target (a width one off is further away)."""
    L, E = 3, 4
    p = cube.cube_parameters(L, E, m, c)
    deep = StackedMoE(L, E, [m], n_layers=L, d_out=c)
    assert _count(deep) == p["deep"]
    assert _count(StackedMoE(L, L * E, [m], d_out=c)) == p["shallow"]
    active = sum(layer.router.weight.numel() + _count(layer.experts) // E for layer in deep.layers)
    assert active == p["deep_active"]  # per input: L routers and one expert per layer
    for name, target in (("dense_total", p["deep"]), ("dense_active", p["deep_active"]),
                         ("separable", p["deep"])):
        w = p[f"{name}_width"]
        make = (lambda w_: DenseNet(L, [w_], separable=True, d_out=c)) if name == "separable" else (
            lambda w_: DenseNet(L, [w_], d_out=c))
        assert _count(make(w)) == p[name]
        assert all(abs(_count(make(v)) - target) >= abs(p[name] - target) for v in (w - 1, w + 1))


def test_separable_tuple_head_gives_each_coordinate_its_own_output():
    net = DenseNet(3, [4, 6], separable=True, d_out=3)
    x = torch.rand(2, 50, 3)
    out = net(x)
    assert out.shape == (2, 50, 3)
    x2 = x.clone()
    x2[..., 1] += 0.5  # moving x_2 changes output 2 only
    diff = (net(x2) - out).abs().amax((0, 1))
    assert diff[0] == 0 and diff[2] == 0 and diff[1] > 0
    summed = DenseNet(3, [4, 6], separable=True)
    summed.load_state_dict(net.state_dict())
    assert torch.allclose(summed(x), out.sum(-1))
    with pytest.raises(ValueError, match=r"^d_out of a separable net must be 1 \(blocks summed\) or d_in = 3"):
        DenseNet(3, [4], separable=True, d_out=2)


def test_lr_factor_values_and_errors():
    n = 101
    f = [lr_factor(t, n, "cosine", 0.01) for t in range(1, n + 1)]
    assert f[0] == 1.0 and math.isclose(f[-1], 0.01) and math.isclose(f[50], (1 + 0.01) / 2)
    assert all(a > b for a, b in zip(f, f[1:], strict=False))
    assert all(lr_factor(t, n) == 1.0 for t in (1, 50, n))
    with pytest.raises(ValueError, match="^schedule must be one of"):
        lr_factor(1, 10, "linear")
    with pytest.raises(ValueError, match=r"^final must be"):
        lr_factor(1, 10, "cosine", 0.0)
    with pytest.raises(ValueError, match=r"^final_lr must be"):
        train_regression(DenseNet(1, [2]), torch.zeros(4, 1), torch.zeros(4), iterations=1, schedule="cosine",
                         final_lr=2.0)


class _Constant(nn.Module):
    """One parameter per slot, the prediction for every input."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1, 1, dtype=torch.float64))

    def forward(self, x):
        return self.p.expand(x.shape[0], x.shape[1])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_training_takes_the_scheduled_step_sizes(schedule):
    """Far from a constant target Adam's step is the step size (the gradient's sign never changes and its size
    barely does), so the parameter's moves are the schedule: lr at the start, lr / 100 at the end for cosine."""
    model, n, lr = _Constant(), 60, 1e-3
    seen = []
    train_regression(model, torch.zeros(8, 1, dtype=torch.float64), torch.full((8,), 1e6, dtype=torch.float64),
                     iterations=n, lr=lr, checkpoints=range(1, n + 1), schedule=schedule, final_lr=0.01,
                     on_checkpoint=lambda _: seen.append(float(model.p.detach())))
    moves = np.diff([0.0, *seen])
    expected = [lr * lr_factor(t, n, schedule, 0.01) for t in range(1, n + 1)]
    np.testing.assert_allclose(moves, expected, rtol=1e-6)


def test_config_validation_of_the_new_fields():
    cases = {"cube_widths": ((8,), "^cube_widths must hold at least two distinct integers >= 2"),
             "cube_experts": (1, "^cube_experts must be an integer in \\[2, 8\\]; got 1$"),
             "cube_iterations": (0, "^cube_iterations must be an integer >= 1; got 0$"),
             "product_iterations": (5, r"^product_iterations must be 0 \(the step off\) or an integer >= 10; got 5$"),
             "product_final_lr": (0.0, "^product_final_lr must be"),
             "exp2_targets": (("sum",), "^exp2_targets must include 'tuple'"),
             }
    for name, (value, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            wang2025.Config(**{name: value})
    with pytest.raises(ValueError, match="^exp2_targets must be one of 'tuple', 'sum', 'product', 'jump'; got 'x'$"):
        wang2025.Config(exp2_targets=("tuple", "x"))
    assert wang2025.Config(cube_widths=(), product_iterations=0).cube_widths == ()  # both steps off


def test_new_steps_are_deterministic_and_round_trip_through_metrics():
    cfg = replace(TINY, exp2_targets=("tuple",))
    a, b = (wang2025.run(cfg, device="cpu") for _ in range(2))
    assert set(a.exp2) == {"tuple"}  # the scalar readings are off
    for r in (a.cube, a.cube_params, a.product):
        assert r
    assert set(a.cube) == {"tuple", "sum"} and set(a.cube["tuple"]) == set(cube.MODELS)
    assert a.cube["tuple"]["deep"]["mse"].shape == (len(cfg.cube_widths), cfg.n_seeds)
    assert a.product["deep"]["mse"].shape == (len(cube.product_steps(cfg.product_iterations)), cfg.n_seeds)
    for output in cube.OUTPUTS:
        for model in cube.MODELS:
            assert np.array_equal(a.cube[output][model]["mse"], b.cube[output][model]["mse"])
    for model in cube.PRODUCT_MODELS:
        assert np.array_equal(a.product[model]["mse"], b.product[model]["mse"])
        assert math.isfinite(cube.product_change(a.product, model))
    metrics = json.loads(json.dumps(a.metrics()))
    back = wang2025.result_from_metrics(cfg, metrics)
    assert np.array_equal(back.cube["sum"]["separable"]["linf"], a.cube["sum"]["separable"]["linf"])
    assert back.product["steps"].tolist() == a.product["steps"]
    assert [c.to_dict() for c in wang2025.claims(back)] == [c.to_dict() for c in wang2025.claims(a)]
    assert metrics["slopes"]["cube"]["tuple"]["deep"] == list(cube.cube_slopes(a, "tuple")["deep"])
    for key in ("cube", "product"):  # a record made before these fields cannot be read back
        with pytest.raises(ValueError, match=f"^metrics lack \\['{key}'\\]: a record made before them"):
            wang2025.result_from_metrics(cfg, {k: v for k, v in metrics.items() if k != key})
    # both steps off: empty results and the cube claim not run
    off = wang2025.run(replace(cfg, cube_widths=(), product_iterations=0, exp1_dims=(4, 8)), device="cpu")
    assert off.cube == {} and off.product == {}
    claim = {c.id: c for c in wang2025.claims(off)}["wang2025/cube-depth"]
    assert claim.holds is None and claim.provenance == "derived"
