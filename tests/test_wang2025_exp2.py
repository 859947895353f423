"""Tests of Experiment II on the paper's Figure 3 target: the exactly routed construction, the two-output head,
per-slot targets, and one training run evaluated at several budgets."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from moetheory import runtime
from moetheory.metrics import loglog_slope
from moetheory.papers import wang2025
from moetheory.papers.wang2025 import manifolds
from moetheory.papers.wang2025.deep_moe import DenseNet, StackedMoE, evaluate, train_regression
from moetheory.papers.wang2025.experiment2 import (
    construct_figure3_moe,
    exp2_seed_slopes,
    exp2_slopes,
    perturbed_construction,
    run_construction2,
    run_from_construction,
)

runtime.set_threads(1)


@pytest.mark.parametrize("output", ["tuple", "sum"])
def test_construction_routes_to_the_cell_and_interpolates(output):
    """Each layer's integer gate picks floor(x_l); the output equals numpy's piecewise-linear interpolation of the
    pieces at m knots per cell (an independent route); its error falls like m^-2 in L-infinity."""
    x = torch.rand(3000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    errs = []
    for m in (8, 16, 32):
        moe = construct_figure3_moe(m, output)
        with torch.no_grad():
            out = moe(x[None])[0]
        for layer_index, layer in enumerate(moe.layers):
            assert torch.equal(layer.last_routing.index[0, :, 0], x[:, layer_index].floor().long())
        knots = np.linspace(0, 3, 3 * m + 1)
        piece = manifolds.figure3_pieces(torch.tensor(knots)).numpy()
        ref = np.stack([np.interp(x[:, i].numpy(), knots, piece) for i in (0, 1)], 1)
        ref = ref if output == "tuple" else ref.sum(1)
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
        errs.append(float((out - manifolds.figure3_target(x, output)).abs().max()))
    assert -2.3 < loglog_slope([8, 16, 32], errs) < -1.7
    assert errs[-1] <= (1 if output == "tuple" else 2) * 6 / 8 / 32**2  # per coordinate max |f''| h^2 / 8, |f''| <= 6
    with pytest.raises(ValueError, match="^output must be one of 'tuple', 'sum'; got 'product'$"):
        construct_figure3_moe(8, "product")


def test_construction_reference_in_the_experiment():
    cfg = replace(wang2025.config("tiny"), exp2_widths=(8, 16, 32), exp2_grid=60)
    ref = run_construction2(cfg)
    assert set(ref) == {"tuple", "sum"}
    assert loglog_slope(cfg.exp2_widths, ref["tuple"]["mse"]) < -3.5  # interpolation: MSE ~ m^-4
    # the sum's error is the two coordinates' errors added: between 1x and 2x the larger one in L-infinity
    assert (ref["sum"]["linf"] <= 2 * ref["tuple"]["linf"] + 1e-15).all()


def test_two_output_head_shapes_and_training():
    runtime.seed_everything(0)
    x, y = manifolds.sample_figure3(512, "tuple", seed=1)
    moe, dense = StackedMoE(2, 3, [4, 8], n_layers=2, d_out=2), DenseNet(2, [4, 8], d_out=2)
    assert moe(x[None].expand(2, -1, -1)).shape == (2, 512, 2) and dense(x[None].expand(2, -1, -1)).shape == (2, 512, 2)
    assert StackedMoE(2, 3, [4], n_layers=2)(x[None]).shape == (1, 512)  # scalar head: unchanged
    before = evaluate(moe, x, y).mse
    train_regression(moe, x, y, iterations=200, lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert (evaluate(moe, x, y).mse < 0.5 * before).all()
    with pytest.raises(ValueError, match="d_out"):
        DenseNet(2, [4], separable=True, d_out=3)  # 1 (summed) or d_in (one output per coordinate)


def test_per_slot_targets_are_fitted_by_their_own_slot():
    """Slot 0 fits 0 and slot 1 fits 5: each ends near its own constant (shared targets would meet at 2.5)."""
    runtime.seed_everything(1)
    x = torch.rand(256, 2, generator=torch.Generator().manual_seed(2)) * 3
    y = torch.stack([torch.zeros(256), torch.full((256,), 5.0)], 1)  # (n, S)
    net = DenseNet(2, [8, 8])
    train_regression(net, x, y, iterations=400, lr=3e-2, per_slot=True, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        means = net(x[None].expand(2, -1, -1)).mean(1)
    assert abs(float(means[0])) < 0.3 and abs(float(means[1]) - 5) < 0.3
    res = evaluate(net, x, y, per_slot=True)
    assert (res.mse < 0.1).all()
    assert evaluate(net, x, y.flip(1), per_slot=True).mse.min() > 10  # swapped targets: far off


def test_checkpoints_equal_shorter_runs():
    """Evaluating one run at budgets b1 < b2 gives what separate runs of b1 and b2 steps give (same streams)."""
    x, y = manifolds.sample_figure3(256, "sum", seed=1)
    seen = []

    def make():
        runtime.seed_everything(3)
        return StackedMoE(2, 3, [4, 6], n_layers=2)

    model = make()
    train_regression(model, x, y, iterations=12, generator=torch.Generator().manual_seed(0), checkpoints=(5, 12),
                     on_checkpoint=lambda t: seen.append((t, evaluate(model, x, y).mse)))
    assert [t for t, _ in seen] == [5, 12]
    for t, mse in seen:
        short = make()
        train_regression(short, x, y, iterations=t, generator=torch.Generator().manual_seed(0))
        np.testing.assert_allclose(evaluate(short, x, y).mse, mse, rtol=1e-10)
    assert not np.allclose(seen[0][1], seen[1][1])
    with pytest.raises(ValueError, match="checkpoint"):
        train_regression(model, x, y, iterations=3, checkpoints=(4,))


def test_budgets_validation_and_slopes_at_a_budget():
    with pytest.raises(ValueError, match="^exp2_budgets must be increasing"):
        wang2025.Config(exp2_budgets=(500, 1000))  # does not end at exp2_iterations (2000)
    with pytest.raises(ValueError, match="^exp2_budgets must be increasing"):
        wang2025.Config(exp2_budgets=(1000, 500, 2000))
    cfg = replace(wang2025.config("tiny"), exp2_widths=(4, 8))
    mse = np.stack([np.repeat(np.array([4.0**-r, 8.0**-r])[:, None], 2, 1) for r in (1, 2)])  # (budgets, widths, 2)
    res = wang2025.Result(cfg, np.zeros(0), exp2={"tuple": {"deep": {"mse": mse, "rmse": np.sqrt(mse)}}},
                          exp2_construction={"tuple": {"mse": np.array([4.0**-4, 8.0**-4])}})
    assert exp2_slopes(res, "tuple", "mse", cfg.exp2_budgets[0])["deep"] == pytest.approx(-1)
    assert exp2_slopes(res, "tuple")["deep"] == pytest.approx(-2)  # the last budget by default
    assert exp2_slopes(res, "tuple", "rmse")["construction"] == pytest.approx(-2)
    with pytest.raises(ValueError, match="metric"):
        exp2_slopes(res, "tuple", "mae")
    # the seed band: seed 1 falls like m^-3 at the last budget, seed 0 like m^-2
    mse[-1, :, 1] = np.array([4.0, 8.0]) ** -3
    np.testing.assert_allclose(exp2_seed_slopes(res, "tuple")["deep"], [-2, -3])
    np.testing.assert_allclose(exp2_seed_slopes(res, "tuple", "mse", cfg.exp2_budgets[0])["deep"], [-1, -1])


def test_paper_literal_arms_on_the_tuple_target():
    """exp2_arms adds deep MoEs with the paper's top-1 weight 1: "hard" leaves the random router where it started
    (no gradient reaches it), "straight" moves it (straight-through gradients) while its forward weight stays 1."""
    from moetheory.papers.wang2025 import experiment2

    cfg = replace(wang2025.config("tiny"), exp2_arms=("hard", "straight"))
    made = {}
    original = experiment2.StackedMoE

    class Spy(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if kwargs.get("weight") in ("hard", "straight"):
                made[kwargs["weight"]] = (self, self.layers[0].router.weight.detach().clone())

    experiment2.StackedMoE = Spy
    try:
        out, _ = experiment2.run_exp2(cfg, torch.device("cpu"), runtime.seed_everything(0))
    finally:
        experiment2.StackedMoE = original
    assert set(out["tuple"]) == {"deep", "shallow", "dense", "deep-hard", "deep-straight"}
    assert out["tuple"]["deep-hard"]["mse"].shape == (len(cfg.exp2_budgets), len(cfg.exp2_widths), cfg.n_seeds)
    hard, start = made["hard"]
    assert torch.equal(hard.layers[0].router.weight, start)  # frozen
    straight, start = made["straight"]
    assert not torch.equal(straight.layers[0].router.weight, start)  # trained through the straight-through weight
    x = torch.rand(1, 50, 2) * 3
    straight(x.expand(len(straight.serial), -1, -1))
    assert torch.equal(straight.layers[0].last_routing.weight, torch.ones_like(straight.layers[0].last_routing.weight))
    with pytest.raises(ValueError, match="^exp2_arms must be one of 'hard', 'straight'; got 'softmax'$"):
        wang2025.Config(exp2_arms=("softmax",))
    with pytest.raises(ValueError, match="^exp2_arms must not repeat"):
        wang2025.Config(exp2_arms=("hard", "hard"))


def test_perturbed_construction_touches_only_its_part_and_trains_the_router():
    """sigma 0 is the construction (straight-through: the same forward pass); router noise leaves every expert tensor
    at the construction's and moves the gates; the router of the straight-through copy gets a gradient."""
    x, y = manifolds.figure3_grid(40, "tuple")
    base = construct_figure3_moe(8)
    moe = perturbed_construction(8, [0.0, 0.3, 0.0], [0.0, 0.0, 0.3], torch.Generator().manual_seed(0))
    xs = x.double().expand(3, -1, -1)
    out, ref = moe(xs), base(xs[:1])
    torch.testing.assert_close(out[0], ref[0], rtol=0, atol=1e-12)
    assert not torch.allclose(out[1], ref[0]) and not torch.allclose(out[2], ref[0])
    for (name, p), q in zip(moe.named_parameters(), base.parameters(), strict=True):
        touched = [not torch.equal(p[s], q[0]) for s in range(3)]
        assert touched[0] is False
        assert touched[1] == ("router" in name) and (touched[2] == ("router" not in name) or not q.any())
    loss = ((moe(xs) - y.double()) ** 2).mean()
    loss.backward()
    assert moe.layers[0].router.weight.grad[1].abs().sum() > 0
    with pytest.raises(ValueError, match="router_sigma"):
        perturbed_construction(8, [-0.1], [0.0], torch.Generator())
    with pytest.raises(ValueError, match="one value per slot"):
        perturbed_construction(8, [0.1, 0.2], [0.0], torch.Generator())


def test_run_from_construction_shapes_and_start():
    cfg = wang2025.config("tiny")
    out = run_from_construction(cfg, 8, (0.0, 0.5), "cpu", torch.Generator().manual_seed(0))
    assert set(out) == {"router", "experts"}
    exact = run_construction2(replace(cfg, exp2_widths=(8, 16)))["tuple"]["mse"][0]
    for part in out:
        assert out[part]["mse"].shape == (2, 1 + len(cfg.exp2_budgets), cfg.n_seeds)
        np.testing.assert_allclose(out[part]["mse"][0, 0], exact, rtol=1e-5)  # sigma 0, before training (float32)
        assert (out[part]["mse"][1, 0] > 10 * exact).all()  # sigma 0.5 moves it off the construction
