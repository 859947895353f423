import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moetheory import metrics, optim


def test_dispatch_entropy_extremes():
    pairs = torch.arange(32 * 3) % 32
    cluster = pairs // 8  # every (cluster, expert) pair three times
    pure = cluster * 2  # each cluster to its own expert
    mixed = pairs % 8  # every expert sees every cluster equally
    assert metrics.dispatch_entropy(cluster, pure, 4, 8).item() == 0.0
    assert metrics.dispatch_entropy(cluster, mixed, 4, 8).item() == pytest.approx(math.log(4))


def test_dispatch_entropy_matches_formula_per_seed():
    g = torch.Generator().manual_seed(0)
    cluster = torch.randint(0, 3, (2, 200), generator=g)
    expert = torch.randint(0, 5, (2, 200), generator=g)
    got = metrics.dispatch_entropy(cluster, expert, 3, 5)
    for s in range(2):
        total = 0.0
        for m in range(5):
            rows = cluster[s][expert[s] == m]
            if len(rows):
                p = np.bincount(rows.numpy(), minlength=3) / len(rows)
                total += len(rows) / 200 * -sum(q * math.log(q) for q in p if q > 0)
        assert got[s].item() == pytest.approx(total)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 6), d=st.integers(1, 5), seed=st.integers(0, 1000), sign=st.booleans())
def test_permutation_error_is_zero_on_permuted_truth(k, d, seed, sign):
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal((k, d))
    perm = rng.permutation(k)
    flips = rng.choice([-1.0, 1.0], size=(k, 1)) if sign else 1.0
    assert metrics.permutation_error(truth[perm] * flips, truth, sign_invariant=sign) == pytest.approx(0, abs=1e-9)
    noisy = truth[perm] + 0.1
    assert metrics.permutation_error(noisy, truth) <= np.linalg.norm(noisy - truth) + 1e-12


def test_permutation_match_returns_the_matching_rows():
    truth = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    perm = np.array([2, 0, 1])
    estimate = np.empty_like(truth)
    estimate[perm] = truth  # estimated row perm[i] is true row i
    error, matched = metrics.permutation_match(estimate + 0.01, truth)
    assert list(matched) == list(perm)
    assert error == pytest.approx(np.linalg.norm(estimate[matched] + 0.01 - truth))
    with pytest.raises(ValueError, match="must both be"):
        metrics.permutation_match(truth[:2], truth)


def test_unit_cosines_and_overlaps_are_scale_free():
    u = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    w = torch.tensor([[0.0, -2.0], [5.0, 0.0]])
    expected = torch.tensor([[-0.8, 0.6], [0.0, 1.0], [0.0, 0.0]])  # a zero row has cosine 0
    torch.testing.assert_close(metrics.cosines(u, w), expected)
    torch.testing.assert_close(metrics.unit(u) @ metrics.unit(w).T, expected)
    torch.testing.assert_close(metrics.overlaps(metrics.unit(u), metrics.unit(w)), expected.abs())
    assert torch.equal(metrics.unit(u)[2], torch.zeros(2))


def test_loglog_slope_recovers_a_power_and_flags_censored_values():
    x = np.array([8.0, 16.0, 32.0, 64.0])
    assert metrics.loglog_slope(x, 3 * x**-1.5) == pytest.approx(-1.5)
    assert metrics.loglog_slope([1, 2, 4], [1.0, 4.0, 16.0]) == pytest.approx(2.0)
    assert np.isnan(metrics.loglog_slope(x, [1.0, 2.0, np.inf, 4.0]))


@pytest.mark.parametrize("true_slope", [1.0, 2.0])
def test_slope_band_covers_the_true_slope_and_excludes_a_wrong_one(true_slope):
    """Synthetic recovery times n = d^slope x lognormal noise: the 90% band holds the true slope (positive control)
    and not one 0.5 away (the case that must fail); with 16x more seeds it is about 4x narrower (n^-1/2)."""
    dims = (32, 64, 128, 256)
    rng = np.random.default_rng(3)
    widths = []
    for n_seeds in (32, 512):
        samples = np.array([d**true_slope * rng.lognormal(0.0, 0.8, n_seeds) for d in dims])
        slope, low, high = metrics.slope_band(dims, samples)
        assert slope == pytest.approx(metrics.loglog_slope(dims, np.median(samples, 1)))
        assert low <= true_slope <= high
        assert not low <= true_slope + 0.5 <= high
        widths.append(high - low)
    assert 2.5 < widths[0] / widths[1] < 6.5


def test_slope_band_counts_censored_runs_above_the_median():
    dims = (32, 64, 128)
    samples = np.array([[d**2.0] * 20 for d in dims])
    censored = samples.copy()
    censored[-1, :4] = np.nan  # 20% censored at the largest d: the median is unchanged
    assert metrics.slope_band(dims, censored) == pytest.approx((2.0, 2.0, 2.0))
    censored[-1, :10] = np.inf  # half the runs censored (inf, as nan) at the largest d: the median is censored
    slope, low, high = metrics.slope_band(dims, censored)  # (resamples with fewer censored runs: a finite slope)
    assert slope == high == np.inf and low == pytest.approx(2.0)
    censored[-1, :] = np.inf  # every run censored at the largest d: an unbounded slope, no evidence of a gap
    assert metrics.slope_band(dims, censored) == (np.inf, np.inf, np.inf)
    assert metrics.slope_band(dims, samples, minus=censored) == (-np.inf, -np.inf, -np.inf)
    assert metrics.slope_band(dims, censored, minus=samples) == (np.inf, np.inf, np.inf)
    assert metrics.slope_band(dims, samples**1.5, minus=samples) == pytest.approx((1.0, 1.0, 1.0))


def test_slope_band_rejects_bad_input():
    dims = (8, 16, 32)
    with pytest.raises(ValueError, match="level"):
        metrics.slope_band(dims, np.ones((3, 4)), level=1.5)
    with pytest.raises(ValueError, match="samples must be"):
        metrics.slope_band([8], np.ones((1, 3)))
    with pytest.raises(ValueError, match="samples must be"):
        metrics.slope_band(dims, np.ones((3, 3)), minus=np.ones((2, 3)))


def test_spherical_sgd_stays_on_sphere_and_descends():
    torch.manual_seed(0)
    target = torch.nn.functional.normalize(torch.randn(16), dim=0)
    w = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    before = (w @ target).clone()
    for _ in range(50):
        optim.spherical_sgd_(w, -target.expand_as(w), lr=0.1, clip=1.0)  # gradient of -<w, target>
    torch.testing.assert_close(w.norm(dim=-1), torch.ones(5))
    assert ((w @ target) > before).all() and ((w @ target) > 0.99).all()


def test_normalized_gd_takes_steps_of_length_lr_per_block():
    w = torch.zeros(2, 3, 4, requires_grad=True)  # (seed, expert, d)
    b = torch.zeros(2, 3, requires_grad=True)
    w.grad = torch.randn(2, 3, 4) * torch.tensor([1.0, 10.0, 100.0]).view(1, 3, 1)
    b.grad = torch.zeros(2, 3)
    optim.normalized_gd_([w, b], lr=0.01)
    torch.testing.assert_close(w.detach().norm(dim=-1), torch.full((2, 3), 0.01))
    with pytest.raises(ValueError, match="lr must be a finite number > 0.0"):
        optim.normalized_gd_([w, b], lr=0)
