"""Tests of moetheory.papers.wang2025.pieces: exact breakpoints of 1-D ReLU nets and MoEs, and a supremum error that
a steep ramp between grid points cannot fool."""

import math

import numpy as np
import pytest
import torch

from moetheory import runtime
from moetheory.papers.wang2025 import bounds, manifolds, pieces
from moetheory.papers.wang2025.deep_moe import DenseNet, StackedMoE, evaluate

runtime.set_threads(1)
J = 1.0


def jump(x):
    return manifolds.jump_target(x, J)


def interpolant_net(knots, values) -> DenseNet:
    """A 1-hidden-layer ReLU net equal to the piecewise-linear interpolant of ``values`` at ``knots`` on
    ``[knots[0], knots[-1]]``: unit j is relu(x - knots[j]), its output weight the change of slope there."""
    knots, values = np.asarray(knots, float), np.asarray(values, float)
    slopes = np.diff(values) / np.diff(knots)
    width = len(slopes)
    net = DenseNet(1, [width]).double()
    hidden, output = net.net.layers
    with torch.no_grad():
        hidden.weight.fill_(1.0)
        hidden.bias.copy_(torch.tensor(-knots[:-1]).view(1, 1, 1, width))
        output.weight.copy_(torch.tensor(np.r_[slopes[0], np.diff(slopes)]).view(1, 1, width, 1))
        output.bias.fill_(values[0])
    return net


def test_a_steep_ramp_between_grid_points_fools_the_grid_but_not_the_supremum():
    """A continuous ReLU net that follows sin(3x) and climbs the jump between the two grid points around 0, at
    (0.3/n, 0.4/n): zero error at every grid point, yet sup |f - target| >= J/2 as any continuous f must have
    (here about J, on [0, 0.3/n] where the net still follows the left branch)."""
    n = 2048
    x_grid = manifolds.sample_jump(n, J, grid=True)[0].double()
    y_grid = jump(x_grid[:, 0])
    ramp = np.array([0.3, 0.4]) / n
    knots = np.sort(np.r_[-1.0, x_grid[:, 0].numpy(), ramp, 1.0])
    values = np.sin(3 * knots) + J * (knots >= ramp[1])  # the left branch up to 0.3/n, the right one from 0.4/n
    net = interpolant_net(knots, values)
    np.testing.assert_allclose(pieces.breakpoints(net, -1, 1)[0], knots[1:-1], rtol=0, atol=1e-15)
    grid_linf = evaluate(net, x_grid, y_grid).linf[0]
    assert grid_linf < 1e-8 < J / 2  # the grid check is fooled (rounding only): it reports the bound as beaten
    sup = pieces.sup_error(net, jump, -1, 1, jumps=(0.0,))[0]
    assert sup >= float(bounds.jump_lower_bound(J))
    assert sup == pytest.approx(J, abs=3 * 0.3 / n)  # f(0) = sin(0) = 0 against the target's J at 0


def test_centred_ramp_sits_exactly_at_the_bound():
    """Ramping across the grid gap around 0 symmetrically makes f(0) = J/2: the supremum is J/2 to rounding."""
    n = 64
    knots = np.r_[-1.0, manifolds.sample_jump(n, J, grid=True)[0][:, 0].double().numpy(), 1.0]  # +-1/n around 0
    net = interpolant_net(knots, np.sin(3 * knots) + J * (knots > 0))
    assert pieces.sup_error(net, jump, -1, 1, jumps=(0.0,))[0] == pytest.approx(J / 2, abs=1e-12)
    # told nothing of the jump, the nodes (an even grid, the kinks at +-1/n) stay 1/127 away from 0: the error there
    # is J/2 less the ramp's rise over 1/127 (slope about J n / 2): the caller must name the target's jumps
    assert pieces.sup_error(net, jump, -1, 1, points=2 * n)[0] < J / 2 - 0.2


def _kink_cells(model, a, b, n=200_001):
    """Independent route: the cells of a fine grid where the second difference of the model is not zero."""
    x = torch.linspace(a, b, n, dtype=torch.float64)
    with torch.no_grad():
        y = model(x[None, :, None].expand(next(model.parameters()).shape[0], -1, -1))
    second = (y[:, 2:] - 2 * y[:, 1:-1] + y[:, :-2]).abs()
    return [x[1:-1][row > 1e-9].numpy() for row in second], float(x[1] - x[0])


@pytest.mark.parametrize("model", [
    "dense-1", "dense-3", "moe-hard", "moe-straight-2-layers", "moe-parallel-2-layers", "moe-softmax"])
def test_breakpoints_account_for_every_kink_a_fine_grid_sees(model):
    runtime.seed_everything(4)
    models = {
        "dense-1": lambda: DenseNet(1, [5, 9]),
        "dense-3": lambda: DenseNet(1, [6, 6], n_hidden=3),
        "moe-hard": lambda: StackedMoE(1, 3, [4, 7], weight="hard", router_init_std=3.0),
        "moe-straight-2-layers": lambda: StackedMoE(1, 3, [4, 7], n_layers=2, weight="straight",
                                                    router_init_std=3.0),
        "moe-parallel-2-layers": lambda: StackedMoE(1, 3, [4, 7], n_layers=2, weight="hard", stack="parallel",
                                                    router_init_std=3.0),
        "moe-softmax": lambda: StackedMoE(1, 3, [4, 7], router_init_std=3.0),  # smooth between breakpoints
    }
    net = models[model]().double()
    found = pieces.breakpoints(net, -3, 3)
    cells, step = _kink_cells(net, -3, 3)
    for slot in range(2):
        assert len(cells[slot]) > 0
        gaps = np.abs(cells[slot][:, None] - found[slot][None, :]).min(1)
        assert gaps.max() <= 1.01 * step  # a kink the grid sees lies within one step of a computed breakpoint
    if model == "dense-1":  # one hidden layer: the kinks are -b_j / w_j
        w = net.net.layers[0].weight[:, 0, 0].detach()
        b = net.net.layers[0].bias[:, 0, 0].detach()
        for slot, width in enumerate([5, 9]):
            roots = np.sort((-b[slot, :width] / w[slot, :width]).numpy())
            np.testing.assert_allclose(found[slot], roots[(roots > -3) & (roots < 3)], rtol=1e-12)


def test_routing_switches_give_the_moe_boundary_offset():
    """A hard 2-expert MoE that switches from 0 to J at s0 = 0.3/n > 0: the grid sees no error, the switch is found
    exactly, and the supremum is J (on [0, s0): a misrouted band, however thin)."""
    n, s0 = 2048, 0.3 / 2048
    moe = StackedMoE(1, 2, [3], weight="hard").double()
    with torch.no_grad():
        moe.layers[0].router.weight.copy_(torch.tensor([[[-1.0, s0, 0.0], [1.0, -s0, 0.0]]], dtype=torch.float64))
        for p in moe.layers[0].experts.parameters():
            p.zero_()
        moe.layers[0].experts.layers[-1].bias[0, 1].fill_(J)  # expert 0 outputs 0, expert 1 outputs J
    step = lambda x: J * (x >= 0).to(x.dtype)  # noqa: E731
    x_grid, _ = manifolds.sample_jump(n, J, grid=True)
    x_grid = x_grid.double()
    assert evaluate(moe, x_grid, step(x_grid[:, 0])).linf[0] == 0
    (switch,) = pieces.routing_switches(moe, -1, 1)
    assert switch.tolist() == [pytest.approx(s0, abs=1e-18)]
    assert pieces.sup_error(moe, step, -1, 1, jumps=(0.0,))[0] == J


def test_sup_error_against_a_fine_grid_on_a_smooth_target():
    """Against a 10^6-point grid (sin(3x), no jump). Between nodes the net is affine, so the nodes miss at most the
    target's curvature, 9 delta^2 / 8 for node gaps delta <= 4/256; the fine grid misses at most the error's
    Lipschitz constant times half its step."""
    runtime.seed_everything(5)
    net = DenseNet(1, [16, 16], n_hidden=2).double()
    target = lambda x: torch.sin(3 * x)  # noqa: E731
    sup = pieces.sup_error(net, target, -2, 2, points=257)
    x = torch.linspace(-2, 2, 1_000_001, dtype=torch.float64)
    with torch.no_grad():
        fine = (net(x[None, :, None].expand(2, -1, -1)) - target(x)).abs().amax(1).numpy()
        lipschitz = (net(x[None, :, None].expand(2, -1, -1)).diff(dim=1).abs().amax(1).numpy() / 4e-6 + 3)
    assert (sup >= fine - 9 * (4 / 256) ** 2 / 8).all()
    assert (sup <= fine + lipschitz * 2e-6).all()


def test_pieces_validation():
    with pytest.raises(ValueError, match="one input"):
        pieces.breakpoints(DenseNet(2, [4]), -1, 1)
    with pytest.raises(ValueError, match="linear gate"):
        pieces.breakpoints(StackedMoE(1, 2, [4], gate="mlp"), -1, 1)
    with pytest.raises(ValueError, match="combine weight 1"):
        pieces.breakpoints(StackedMoE(1, 2, [4], n_layers=2), -1, 1)
    with pytest.raises(ValueError, match="^b must be a finite number > 1.0; got 0$"):
        pieces.sup_error(DenseNet(1, [4]), jump, 1, 0)
    with pytest.raises(ValueError, match="layer"):
        pieces.routing_switches(StackedMoE(1, 2, [4]), -1, 1, layer=1)
    assert math.isfinite(pieces.sup_error(DenseNet(1, [4]), jump, -1, 1, jumps=(0.0, 5.0))[0])  # 5 is outside


def _step_moe(s0: float) -> StackedMoE:
    """A hard 2-expert MoE that outputs 0 left of s0 and J right of it."""
    moe = StackedMoE(1, 2, [3], weight="hard").double()
    with torch.no_grad():
        moe.layers[0].router.weight.copy_(torch.tensor([[[-1.0, s0, 0.0], [1.0, -s0, 0.0]]], dtype=torch.float64))
        for p in moe.layers[0].experts.parameters():
            p.zero_()
        moe.layers[0].experts.layers[-1].bias[0, 1].fill_(J)
    return moe


@pytest.mark.parametrize("s0", [0.3 / 2048, -0.01])
def test_boundary_offset_and_error_outside_the_misrouted_band(s0):
    """The jump claim's MoE side: the band between the gate switch and the jump is found exactly (either side of
    0); outside it the step MoE is exact, inside it the supremum is J."""
    from moetheory.papers.wang2025 import _boundary

    moe = _step_moe(s0)
    step = lambda x: J * (x >= 0).to(x.dtype)  # noqa: E731
    offset, outside = _boundary(moe, step)
    assert offset.tolist() == [pytest.approx(abs(s0), abs=1e-15)]
    assert outside.tolist() == [0.0]
    assert pieces.sup_error(moe, step, -1, 1, jumps=(0.0,))[0] == J
    # a gate that never switches on [-1, 1]: no band (offset inf), the error counted everywhere (J on [0, 1])
    offset, outside = _boundary(_step_moe(5.0), step)
    assert offset.tolist() == [np.inf] and outside.tolist() == [J]
