"""Tests for the measured separation of the Kawata et al. (2025) chapter (``kawata2025.separation``): the grid does
not set the slope, and the slope criterion can pass and can fail."""

import math

import numpy as np
import pytest

from moetheory.metrics import slope_band
from moetheory.papers import kawata2025 as K
from moetheory.papers.kawata2025.separation import first_hit, geometric_grid, separation_verdict

DIMS = np.array([8, 12, 16, 24, 32])


def synthetic_times(power, n_seeds=8, spread=0.3, seed=0, scale=5.0):
    """``(D, S)`` recovery times ``scale d^power`` times a log-normal seed factor."""
    rng = np.random.default_rng(seed)
    return scale * DIMS[:, None] ** power * np.exp(spread * rng.standard_normal((len(DIMS), n_seeds)))


def measured(times, grid):
    """The first check of ``grid`` at which a run whose overlap jumps to 1 at ``times`` is seen above 0.8."""
    return np.stack([first_hit(grid[None, :] >= t[:, None], grid, 0.8) for t in times])


def test_geometric_grid_is_geometric_and_capped():
    grid = geometric_grid(10_000)
    assert grid[0] == 1 and grid[-1] <= 10_000 and np.all(np.diff(grid) > 0)
    big = grid[grid > 100]  # past rounding, consecutive checks are 2^(1/8) apart
    np.testing.assert_allclose(big[1:] / big[:-1], 2 ** (1 / 8), rtol=0.02)
    assert np.array_equal(geometric_grid(500), grid[grid <= 500])  # the cap only truncates


@pytest.mark.parametrize("power", [1.0, 2.0, 3.0])
def test_the_grid_does_not_set_the_slope(power):
    times = synthetic_times(power)
    cap = int(times.max()) + 1
    a = slope_band(DIMS, measured(times, geometric_grid(cap)))[0]
    b = slope_band(DIMS, measured(times, geometric_grid(cap, per_octave=5, offset=0.37)))[0]
    # a grid with ratio r moves each median up by less than a factor r: the slope by at most 2 log r / log(32 / 8)
    assert abs(a - b) <= 2 * math.log(2 ** (1 / 5)) / math.log(4)
    assert abs(a - slope_band(DIMS, times)[0]) <= 2 * math.log(2 ** (1 / 8)) / math.log(4)
    # the old way: a linear grid of 30 checks over a run of length ~ d^2 would give slope 2 whatever the power
    old = np.stack([first_hit(g[None, :] >= t[:, None], g, 0.8)
                    for t, g in zip(times, [np.linspace(0, 3e7 * (d / 32) ** 2, 30) for d in DIMS])])
    assert abs(slope_band(DIMS, old)[0] - 2.0) < 1e-9  # every run seen at the first check after 0


def test_slope_band_covers_the_true_slope_and_shrinks_with_seeds():
    """On the separation's five dimensions and eight seeds (the band of :func:`moetheory.metrics.slope_band`)."""
    bands = np.array([slope_band(DIMS, synthetic_times(2.0, n_seeds=8, seed=r), n_resamples=500)[1:]
                      for r in range(60)])
    covered = ((bands[:, 0] <= 2.0) & (2.0 <= bands[:, 1])).mean()
    assert covered >= 0.8  # a 90% band, over 60 synthetic experiments
    narrow = slope_band(DIMS, synthetic_times(2.0, n_seeds=64))
    assert narrow[2] - narrow[1] < np.median(bands[:, 1] - bands[:, 0])


def test_separation_criterion_positive_control_and_failures():
    van, moe = synthetic_times(3.0, seed=1), synthetic_times(2.0, seed=2)
    held = separation_verdict(DIMS, van, moe)
    assert held["holds"] and held["gap_low"] > K.SLOPE_GAP_MIN and abs(held["gap"] - 1.0) < 0.3
    same = separation_verdict(DIMS, synthetic_times(2.0, seed=1), moe)  # no separation
    assert not same["holds"] and same["gap_low"] < K.SLOPE_GAP_MIN
    censored = moe.copy()
    censored[-1] = np.inf  # the MoE never recovers w_g at the largest d: no evidence for it
    assert not separation_verdict(DIMS, van, censored)["holds"]


def test_separation_dims_validation_names_the_field():
    with pytest.raises(ValueError, match="separation_dims"):
        K.Config(separation_dims=(8,))
    with pytest.raises(ValueError, match="separation_dims"):
        K.Config(separation_dims=(2, 8))


def test_stage1_activation_changes_stage1_alone():
    cfg = K.config("tiny")
    with pytest.raises(ValueError, match="stage1_activation"):
        K.run_separation(cfg, "cpu", stage1_activation="tanh")
    base = K.run_separation(cfg, "cpu")
    same = K.run_separation(cfg, "cpu", stage1_activation=cfg.separation_activation)  # the default, spelt out
    other = K.run_separation(cfg, "cpu", stage1_activation="h3")
    assert same == base
    assert other["vanilla"] == base["vanilla"]  # the vanilla network runs before stage 1, on the same stream
    assert other["stage1"] != base["stage1"] or other["stage3"] != base["stage3"]


def _steps_by_stage(monkeypatch, **kwargs):
    """``{d: {stage: [lr of each SGD step]}}`` of ``K.run_separation`` at the tiny preset, the stage read from the
    neurons' shape (vanilla ``(S, 1, width)``, stage 1 ``(S, 1, M)``, stage 3 ``(S, M, expert width)``)."""
    from moetheory.papers.kawata2025 import separation

    cfg, seen, real = K.config("tiny"), [], separation.sgd_step
    shapes = {(1, cfg.separation_width): "vanilla", (1, cfg.n_experts): "stage1",
              (cfg.n_experts, cfg.separation_expert_width): "stage3"}

    def spy(u, x, y, act, lr, clip, weight=None):
        seen.append((u.shape[-1], shapes[tuple(u.shape[1:3])], lr))
        real(u, x, y, act, lr, clip, weight)

    monkeypatch.setattr(separation, "sgd_step", spy)
    out = K.run_separation(cfg, "cpu", **kwargs)
    steps = {d: {key: [lr for dd, k, lr in seen if dd == d and k == key] for key in shapes.values()}
             for d in cfg.separation_dims}
    return cfg, out, steps


@pytest.mark.parametrize("stages", [("stage1",), ("stage3",), ("stage1", "stage3")])
def test_noise_step_shrinks_the_named_stages_as_stated(monkeypatch, stages):
    cfg, base, base_steps = _steps_by_stage(monkeypatch)
    _, out, steps = _steps_by_stage(monkeypatch, noise_step=stages)
    k = 3  # the per-cluster exponent k* that both MoE stages face
    assert K.noise_step_factor(12, k) == pytest.approx((8 / 12) ** 0.5)
    assert K.noise_step_factor(K.NOISE_STEP_D, k) == 1.0
    for key in ("vanilla", "stage1", "stage3"):
        lr0, lr = base_steps[12][key], steps[12][key]
        assert len(set(lr0)) == len(set(lr)) == 1  # one step size per stage and d
        f = K.noise_step_factor(12, k) if key in stages else 1.0
        assert lr[0] == pytest.approx(lr0[0] * f, rel=1e-12)
    # stage 1 runs its whole (longer) schedule: its length is divided by the same factor
    assert len(steps[12]["stage1"]) == round(len(base_steps[12]["stage1"]) / K.noise_step_factor(12, k)) \
        if "stage1" in stages else len(steps[12]["stage1"]) == len(base_steps[12]["stage1"])
    assert out["vanilla"] == base["vanilla"]  # the vanilla network runs first, on the same stream
    # at d = NOISE_STEP_D the noise-sized step is the quick one: the same counts, bit for bit
    i = cfg.separation_dims.index(K.NOISE_STEP_D)
    assert all(out[key][i] == base[key][i] for key in ("vanilla", "stage1", "stage3"))
    assert steps[K.NOISE_STEP_D] == base_steps[K.NOISE_STEP_D]


def test_noise_step_validation_names_the_keyword():
    cfg = K.config("tiny")
    with pytest.raises(ValueError, match=r"noise_step\[0\]"):
        K.run_separation(cfg, "cpu", noise_step=("vanilla",))
    with pytest.raises(ValueError, match="noise_step must be a tuple"):
        K.run_separation(cfg, "cpu", noise_step="stage1")
    with pytest.raises(ValueError, match="noise_step must be a tuple"):
        K.run_separation(cfg, "cpu", noise_step=("stage1", "stage1"))
    with pytest.raises(ValueError, match="k must be"):
        K.noise_step_factor(8, 0)
