"""Tests for the Kawata et al. (2025) chapter: generator, derivations (checked by quadrature / Monte Carlo),
training invariants and the tiny preset end to end."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import hermite_e

from moetheory import hermite, runtime
from moetheory.activations import hermite_activation, hermite_value
from moetheory.data import ClusterSingleIndex, hermite_series, make_cluster_problem, sample_clusters
from moetheory.papers import kawata2025 as K
from moetheory.papers.kawata2025 import model as SIM
from moetheory.papers.kawata2025.model import chance_level, prune

runtime.set_threads(1)
IDS = {"kawata2025/global-exponent-rises", "kawata2025/moe-global-overlap",
       "kawata2025/vanilla-global-overlap", "kawata2025/router-alignment", "kawata2025/expert-specialisation",
       "kawata2025/moe-beats-vanilla"}
IDS_C4 = {f"{i}-c4" for i in IDS}


# ----------------------------------------------------------------------------------------------- generator
def test_generator_is_deterministic_for_a_seed():
    p = make_cluster_problem(16, seed=3)
    a = sample_clusters(p, 50, 2, generator=torch.Generator().manual_seed(1))
    b = sample_clusters(p, 50, 2, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert np.allclose(make_cluster_problem(16, seed=3).global_dir, p.global_dir)


@pytest.mark.parametrize("layout,c", [("antipodal", 2), ("orthogonal", 3), ("orthogonal", 4)])
def test_directions_orthonormal_and_s_sums_to_zero(layout, c):
    p = make_cluster_problem(16, c, layout=layout, seed=0)
    dirs = np.vstack([p.local_dirs, p.global_dir])
    assert np.allclose(dirs @ dirs.T, np.eye(c + 1)) and np.allclose(dirs @ p.means.T, 0)
    assert abs(sum(p.s)) < 1e-12 and p.k_star == 3


def test_generator_law_by_monte_carlo():
    p = make_cluster_problem(12, rho=2.0, noise_std=0.1, seed=0)
    n = 200_000
    x, y, c = (t[0].double() for t in sample_clusters(p, n, 1, generator=torch.Generator().manual_seed(0)))
    tol = 6 / math.sqrt(n / 2) * 4  # 6 sigma, std of y * h3 is below 4
    for cl in range(2):
        rows = c == cl
        xc = x[rows]
        assert np.allclose(xc.mean(0).numpy(), p.rho * p.means[cl], atol=6 / math.sqrt(rows.sum().item()))
        h3 = lambda t: (t**3 - 3 * t) / math.sqrt(6)  # noqa: E731
        local = (y[rows] * h3(xc @ torch.tensor(p.local_dirs[cl]))).mean().item()
        glob = (y[rows] * h3(xc @ torch.tensor(p.global_dir))).mean().item()
        assert abs(local - 1.0) < tol and abs(glob - p.s[cl]) < tol


def test_validation_errors_name_the_parameter():
    p = make_cluster_problem(8, seed=0)
    fields = dict(means=p.means, local_dirs=p.local_dirs, global_dir=p.global_dir, rho=1.0,
                  local_coeffs=p.local_coeffs, global_coeffs=p.global_coeffs, s=p.s, noise_std=0.1)
    with pytest.raises(ValueError, match="s must sum to zero"):
        ClusterSingleIndex(**{**fields, "s": (1.0, -0.5)})
    with pytest.raises(ValueError, match="k\\* must be > 2"):
        ClusterSingleIndex(**{**fields, "global_coeffs": (0, 0, 1, 1)})
    with pytest.raises(ValueError, match="orthonormal"):
        ClusterSingleIndex(**{**fields, "global_dir": p.local_dirs[0]})
    with pytest.raises(ValueError, match="n_clusters"):
        make_cluster_problem(4, 5)
    with pytest.raises(ValueError, match="d must be >= 9"):
        make_cluster_problem(8, 4, layout="orthogonal")
    with pytest.raises(ValueError, match="antipodal"):
        make_cluster_problem(16, 3, layout="antipodal")
    with pytest.raises(ValueError, match="vanilla_width"):
        K.Config(vanilla_width=0)
    with pytest.raises(ValueError, match="activation"):
        K.Config(activation="tanh")
    with pytest.raises(ValueError, match=r"variants\[0\]"):
        K.Config(variants=("tanh",))
    with pytest.raises(ValueError, match=r"stage1_ablations\[1\]"):
        K.Config(stage1_ablations=("clip5", "no-such"))
    with pytest.raises(ValueError, match="ablation_runs must be a tuple"):
        K.Config(ablation_runs="no-centring")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-2, 2), min_size=1, max_size=7), st.floats(-3, 3))
def test_hermite_series_matches_numpy(coeffs, z):
    he_coeffs = [c / math.sqrt(math.factorial(k)) for k, c in enumerate(coeffs)]
    value, deriv = hermite_series(torch.tensor([z], dtype=torch.float64), coeffs, derivative=True)
    assert value.item() == pytest.approx(hermite_e.hermeval(z, he_coeffs), abs=1e-9)
    assert deriv.item() == pytest.approx(hermite_e.hermeval(z, hermite_e.hermeder(he_coeffs)), abs=1e-9)


# ----------------------------------------------------------------------------------------------- derivations
def _quadrature_correlation(sigma_coeffs, m, mu, n=40):
    """E[h3(Z1) sigma(m Z1 + sqrt(1 - m^2) Z2 + mu)] by a 2-D Gauss-Hermite rule."""
    t, w = hermite_e.hermegauss(n)
    w = w / math.sqrt(2 * math.pi)
    z1, z2 = np.meshgrid(t, t, indexing="ij")
    s = hermite_e.hermeval(m * z1 + math.sqrt(1 - m * m) * z2 + mu,
                           [c / math.sqrt(math.factorial(k)) for k, c in enumerate(sigma_coeffs)])
    return float((np.outer(w, w) * (z1**3 - 3 * z1) / math.sqrt(6) * s).sum())


@pytest.mark.parametrize("coeffs", [(0, 0, 0, 1, 1), (0, 0, 0, 1, 0, 1), (0, 1, 0.5, 1, -1)])
def test_global_correlation_matches_quadrature(coeffs):
    z, m, a = sp.symbols("z m a", real=True)
    sigma = sum(c * hermite.h(k, z) for k, c in enumerate(coeffs))
    poly = K.global_correlation(sigma, z, (0, 0, 0, 1), (1, -1), (a, -a), 3, m)
    for mv, av in [(0.3, 0.2), (-0.6, 0.1), (0.9, -0.15)]:
        want = sum(sc * _quadrature_correlation(coeffs, mv, 3 * sc * av) for sc in (1, -1))
        assert float(poly.subs({m: mv, a: av})) == pytest.approx(want, abs=1e-9)


def test_effective_exponents():
    z, m, a, b = sp.symbols("z m a b", real=True)
    he3_he5 = hermite.he(3, z) + hermite.he(5, z)
    he3_he4 = hermite.he(3, z) + hermite.he(4, z)
    g = (0, 0, 0, 1)
    exact = K.global_correlation(he3_he5, z, g, (1, -1), (a, -a), 3, m)
    assert exact == 0 and K.effective_exponent(exact, (m, a)) == sp.oo
    assert K.effective_exponent(K.global_correlation(he3_he4, z, g, (1, -1), (a, -a), 3, m), (m, a)) == 4
    assert K.effective_exponent(K.global_correlation(he3_he5, z, g, (1, -1), (a, b), 3, m), (m, a, b)) == 5
    inside = sp.expand(K.global_correlation(he3_he4, z, g, (1,), (a,), 3, m))  # one cluster: no cancellation
    assert K.effective_exponent(inside, (m, a)) == 3


@pytest.mark.parametrize(("n_clusters", "layout"), [(2, "antipodal"), (3, "orthogonal")])
def test_task_correlations_by_monte_carlo_on_the_sampler(n_clusters, layout):
    """Every exact E[y m] for the monomials m of degree <= 4 in (<e_j, x>, <w_g, x>) against the sample mean of
    y m on :func:`sample_clusters`, to 5 standard errors (tolerance ~ n^-1/2); the task exponent is k* + 1 = 4."""
    problem = make_cluster_problem(10, n_clusters, layout=layout, rho=1.5, seed=3)
    exact = K.task_correlations(problem, 4)
    assert K.task_exponent(problem) == 4 == problem.k_star + 1
    assert {p for p, v in exact.items() if v != 0 and p[-1] > 0 and sum(p) == 4} != set()
    x, y, _ = sample_clusters(problem, 400_000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    basis = torch.tensor(np.vstack([K.mean_basis(problem), problem.global_dir]))
    coords = x[0] @ basis.T  # (n, r + 1): along the means' span, then w_g
    for powers, value in exact.items():
        prod = y[0] * torch.prod(coords ** torch.tensor(powers, dtype=torch.float64), 1)
        se = float(prod.std()) / math.sqrt(len(prod))
        assert float(prod.mean()) == pytest.approx(float(value), abs=5 * se), powers


def test_task_exponent_is_finite_where_a_vanilla_h3_neuron_sees_nothing():
    """sigma = h_3 is the special instance: the neuron-level exponent is infinite, the task's is k* + 1."""
    problem = make_cluster_problem(16, 2)
    assert K.mixture_exponent("h3", 2, "antipodal", 3.0, 16) == (sp.oo, 3)
    assert K.task_exponent(problem) == 4
    assert K.task_correlations(problem, 3) == {p: 0 for p in K.task_correlations(problem, 3)}


def test_mixture_exponent_needs_a_polynomial_activation():
    assert K.mixture_exponent("h3+h4", 2, "antipodal", 3.0, 16) == (4, 3)
    with pytest.raises(ValueError, match="activation must be a polynomial one .*got 'relu'"):
        K.mixture_exponent("relu", 2, "antipodal", 3.0, 16)


@pytest.mark.parametrize(("width", "d", "n"), [(1, 2, 20000), (20, 32, 4000), (68, 32, 4000), (8, 128, 4000)])
def test_chance_level_by_monte_carlo(width, d, n):
    """The exact law (<u, w>^2 ~ Beta(1/2, (d-1)/2)) against simulated uniform unit neurons, to 5 standard errors
    (tolerance ~ n^-1/2, nothing added); d = 2, width 1 is E|cos theta| = 2 / pi."""
    rng = np.random.default_rng(width * 1000 + d)
    u = rng.standard_normal((n, width, d))
    mc = (np.abs(u[..., 0]) / np.linalg.norm(u, axis=-1)).max(-1)
    assert chance_level(width, d) == pytest.approx(mc.mean(), abs=5 * mc.std() / math.sqrt(n))
    if d == 2:
        assert chance_level(width, d) == pytest.approx(2 / math.pi, rel=1e-9)


def test_chance_level_is_below_the_gaussian_approximation_at_d_32():
    """The old E max_j |N(0, 1/d)| (0.463 at width 68, d = 32) overstates it by several per cent: 0.4466."""
    assert chance_level(68, 32) == pytest.approx(0.4466, abs=5e-5)


# ----------------------------------------------------------------------------------------------- training
def test_prune_drops_near_parallel_rows():
    router = torch.tensor([[[1.0, 0, 0], [0.99, 0.05, 0], [-1, 0, 0], [0, 1, 0]]])
    keep = prune(router, torch.tensor([[0.2, 0.5, 0.2, 0.1]]), 0.9)
    assert keep.tolist() == [[False, True, True, True]]


@pytest.mark.parametrize("c,layout", [(2, "antipodal"), (4, "orthogonal"), (3, "orthogonal")])
def test_boundary_alignment_of_the_ideal_router_is_one_in_any_gauge(c, layout):
    # positive control: the Bayes router (rows rho v_c, one expert per cluster), shifted by a common vector (no
    # routing changes) and written with rows summing to zero, gives 1 on every pair; the per-row cosine of
    # SIM.alignment gives 1 only as rho v_c and zero_sum_ceiling (sqrt(1 - 1/C) for orthonormal means) once the
    # rows sum to zero
    d, gen = 12, torch.Generator().manual_seed(0)
    means = torch.tensor(make_cluster_problem(d, c, layout=layout, seed=1).means)
    counts = torch.eye(c).unsqueeze(0) * 10 + 1  # cluster c routed mostly to expert c
    ideal = 3.0 * means.unsqueeze(0)
    shift = torch.randn(1, 1, d, generator=gen, dtype=means.dtype)
    for router in (ideal, ideal + shift, ideal - ideal.mean(1, keepdim=True)):
        b = SIM.boundary_alignment(router, means, counts)[0]
        assert torch.isnan(b.diagonal()).all() and torch.allclose(b.nan_to_num(1.0), torch.ones(c, c, dtype=b.dtype))
    zero_sum = SIM.alignment(ideal - ideal.mean(1, keepdim=True), means)[0]
    ceiling = 1.0 if layout == "antipodal" else math.sqrt(1 - 1 / c)
    assert SIM.zero_sum_ceiling(means) == pytest.approx(ceiling)
    assert torch.allclose(zero_sum, torch.full((c,), ceiling, dtype=zero_sum.dtype))
    assert torch.allclose(SIM.alignment(ideal, means)[0], torch.ones(c, dtype=zero_sum.dtype))


def test_boundary_alignment_fails_for_shared_experts_and_random_rows():
    # cases that must fail: clusters 0 and 1 routed to the same expert give 0; random rows at d = 400 give
    # |cos| of order d^-1/2
    d, c = 400, 4
    means = torch.tensor(make_cluster_problem(d, c, layout="orthogonal", seed=1).means)
    counts = torch.eye(c).unsqueeze(0) * 10 + 1
    counts[0, 1] = counts[0, 0]  # cluster 1 now goes mostly to expert 0
    b = SIM.boundary_alignment(3.0 * means.unsqueeze(0), means, counts)[0]
    assert b[0, 1] == 0 and b[1, 0] == 0 and b[2, 3] == pytest.approx(1.0)
    rows = torch.randn(1, c, d, generator=torch.Generator().manual_seed(2), dtype=means.dtype)
    off = SIM.boundary_alignment(rows, means, torch.eye(c).unsqueeze(0) + 0.1)[0].nan_to_num(0.0)
    assert off.abs().max() < 6 / math.sqrt(d)


def test_features_with_a_centre_match_the_centred_inputs():
    gen = torch.Generator().manual_seed(0)
    u, x, centre = (torch.randn(*shape, generator=gen, dtype=torch.float64)
                    for shape in ((2, 3, 4, 5), (2, 7, 5), (2, 3, 5)))
    for name in ("h3+h4", "relu"):
        direct = hermite_activation(name)(torch.einsum("sgnd,sgkd->sgnk", x.unsqueeze(1) - centre.unsqueeze(2), u))[0]
        got = SIM.features(u, x, hermite_value(name), centre)
        assert torch.allclose(got[..., 1:], direct, rtol=1e-12, atol=1e-12) and (got[..., 0] == 1).all()


def test_tiny_preset_end_to_end():
    cfg = K.config("tiny")
    result = K.run(cfg)
    s, t = cfg.n_seeds, len(result.samples)
    assert result.vanilla_overlap.shape == (s, t, cfg.vanilla_width, cfg.n_clusters + 1)
    assert result.moe_overlap.shape == (s, t, cfg.n_experts * cfg.expert_width, cfg.n_clusters + 1)
    assert np.all(np.nan_to_num(result.vanilla_overlap) <= 1 + 1e-5)
    assert result.samples[-1] == cfg.total_steps * cfg.batch
    claims = K.claims(result)
    assert [c.id for c in claims[: len(IDS)]] == sorted(IDS, key=[c.id for c in claims].index)
    assert {c.id for c in claims} == IDS | IDS_C4 | {"kawata2025/separation-slope"}
    sep = result.metrics()["separation"]  # (D, S) sample counts per network, None where censored
    assert sep["dims"] == list(cfg.separation_dims)
    for key in ("vanilla", "stage1", "stage3"):
        assert np.array(sep[key], dtype=float).shape == (len(cfg.separation_dims), cfg.separation_seeds)
    assert claims[0].holds  # exact cancellation with an h3 neuron and antipodal means
    metrics = result.metrics()
    assert len(metrics["moe_test_mse"]) == s and 1 <= min(metrics["experts_kept"])
    assert np.array(metrics["stage1_best_local_overlap"]).shape == (s, cfg.n_clusters)
    assert np.array(metrics["expert_specialised"]).shape == (s, cfg.n_clusters)
    counts = np.array(metrics["routing_counts"])  # every test point routed to one expert
    assert counts.shape == (s, cfg.n_clusters, cfg.n_experts) and (counts.sum((1, 2)) == cfg.n_test).all()
    # the chapter's variants and ablations, recorded with the run
    assert set(metrics["variants"]) == set(cfg.variants)
    assert set(metrics["ablation_runs"]) == {f"{n}-c{cfg.n_clusters}" for n in cfg.ablation_runs}
    stage1 = metrics["stage1_ablations"]
    assert set(stage1) == {"c2", "c4"} and set(stage1["c4"]) == {"default", *cfg.stage1_ablations}
    assert np.array(stage1["c4"]["default"]).shape == (cfg.stage1_seeds, 4)


def test_chapter_runs_are_the_runs_the_chapter_made_and_are_read_back_only_for_their_config():
    cfg = runtime.replace_config(K.config("tiny"), more_clusters=(), separation_dims=(), variants=("relu",),
                                 ablation_runs=("no-centring",), stage1_ablations=())
    runs = K.run_extras(cfg, "cpu")
    alone = K.run_settings(runtime.replace_config(cfg, activation="relu"), "cpu")
    assert runs["variants"]["relu"] == alone.metrics()  # as if the chapter had run the variant itself
    plain = K.run_settings(K.ablation(cfg, "no-centring"), "cpu").metrics()
    assert runs["ablation_runs"]["no-centring-c2"] == plain
    assert runs["variants"]["relu"] != plain
    default = K.stage1_recovery(K.train_stage1(runtime.replace_config(cfg, n_seeds=cfg.stage1_seeds), "cpu"))
    assert runs["stage1_ablations"] == {"c2": {"default": default.astype(int).tolist()}}
    report = SimpleNamespace(config=runtime.config_dict(cfg), metrics=runs)
    assert K.recorded_extras(cfg, report) == runs
    assert K.recorded_extras(runtime.replace_config(cfg, seed=1), report) is None  # another config
    assert K.recorded_extras(cfg, SimpleNamespace(config=report.config, metrics={})) is None  # not recorded
    assert K.recorded_extras(cfg, None) is None
    none = runtime.replace_config(cfg, variants=(), ablation_runs=(), cluster_ablation_runs=())
    assert K.run_extras(none, "cpu") == {}


def test_tiny_run_with_four_clusters_is_shaped_by_c():
    cfg = K.config("tiny")
    result = K.run(cfg)
    c4 = result.extra[4]
    m, s, t = 2 * cfg.n_experts, cfg.n_seeds, len(c4.samples)  # as many experts per cluster as with C = 2
    assert (c4.config.n_clusters, c4.config.layout, c4.config.n_experts) == (4, "orthogonal", m)
    assert c4.vanilla_overlap.shape == (s, t, cfg.vanilla_width, 5)
    assert c4.moe_overlap.shape == (s, t, m * cfg.expert_width, 5)
    assert c4.router_alignment_final.shape == (s, 4) and c4.stage1_mean_overlap.shape == (s, m, 4)
    assert c4.routing_purity.shape == (s,) and np.all((c4.routing_purity >= 0.25 - 1e-6) & (c4.routing_purity <= 1))
    assert K.claims(c4)[0].holds  # h3: exact cancellation for orthogonal means too
    assert np.array(result.metrics()["c4"]["router_alignment"]).shape == (s, 4)


@pytest.mark.parametrize("scale", ["quick", "paper"])
def test_presets_cover_four_clusters(scale):
    cfg = K.config(scale)
    assert 4 in cfg.more_clusters and cfg.n_clusters == 2
    c4 = K.cluster_config(cfg, 4)
    assert c4.n_clusters == 4 and c4.layout == "orthogonal" and c4.more_clusters == ()
    assert (c4.d, c4.n_seeds) == (cfg.d, cfg.n_seeds)
    s1, s1_c4 = K.stage1_schedule(cfg)[1], K.stage1_schedule(c4)[1]
    assert s1_c4 == 2 * s1 and c4.total_steps == cfg.total_steps + s1  # stage 1 twice as long at C = 4, no more
    assert K.config("paper").d == 128


def test_stage1_schedule_scales_step_with_c_and_steps_with_d():
    """Stage 1: step lr / d x 2 / C, steps stage1_steps x (d / 32)^(k* - 1) x C / 2 (k* = 3); "fixed": as given."""
    quick, paper = K.config("quick"), K.config("paper")
    assert K.stage1_schedule(quick) == (0.5 / 32, 3000)
    assert K.stage1_schedule(paper) == (0.5 / 128, 48000)  # (128 / 32)^2 = 16 times the d = 32 count
    assert K.stage1_schedule(K.cluster_config(paper, 4)) == (0.25 / 128, 96000)
    old = K.ablation(K.cluster_config(paper, 4), "old-stage1")
    assert K.stage1_schedule(old) == (0.5 / 128, 3000) and K.clip_norm(old) == 5.0
    assert K.clip_norm(quick) == 10.0 and K.clip_norm(paper) == 20.0  # 10 sqrt(d / batch)
    assert K.clip_norm(K.ablation(paper, "no-clip")) is None
    with pytest.raises(ValueError, match="ablation must be one of"):
        K.ablation(quick, "clip6")
    with pytest.raises(ValueError, match="schedule must be one of"):
        K.Config(schedule="linear")


def test_stage1_recovers_every_cluster_direction_without_the_clip():
    """A tiny problem (d = 16, C = 2, 3 seeds, 8 one-neuron experts, 3000 steps) with no clip at all and the step
    0.1 / d (at 0.5 / d one heavy-tailed batch can throw every neuron onto one sample): some stage-1 neuron reaches
    |<u, w_c>| >= 0.5 for every (seed, cluster)."""
    cfg = runtime.replace_config(K.config("tiny"), d=16, n_seeds=3, schedule="fixed", stage1_steps=3000, clip=0.0,
                                 lr=0.1)
    overlap = K.train_stage1(cfg, "cpu")
    assert overlap.shape == (3, cfg.n_experts, 2)
    assert K.stage1_recovery(overlap).all(), overlap.max(1)


def test_more_clusters_validation_names_field_and_range():
    with pytest.raises(ValueError, match=r"more_clusters\[0\] must be an integer in \[2, 5\]; got 6"):
        K.Config(d=12, more_clusters=(6,))
    with pytest.raises(ValueError, match="more_clusters must be distinct and differ from n_clusters = 2"):
        K.Config(more_clusters=(2,))
    with pytest.raises(ValueError, match="more_clusters must be a tuple"):
        K.Config(more_clusters=[4])


# ------------------------------------------------------------------------------------ pieces (single_index_moe)
F64 = torch.float64
SIGMA = {  # the student activations written out, an independent route to activations.hermite_activation
    "h3": lambda z: (z**3 - 3 * z) / math.sqrt(6),
    "h3+h4": lambda z: ((z**3 - 3 * z) / math.sqrt(6) + (z**4 - 6 * z**2 + 3) / math.sqrt(24)) / math.sqrt(2),
    "relu": torch.relu,
}


@pytest.mark.parametrize("name", list(SIGMA))
def test_activation_value_and_derivative_match_autograd(name):
    z = torch.linspace(-3, 3, 40, dtype=F64).requires_grad_(True)  # 0 is not a grid point (ReLU's kink)
    value, slope = hermite_activation(name)(z.detach())
    want = SIGMA[name](z)
    (want_slope,) = torch.autograd.grad(want.sum(), z)
    torch.testing.assert_close(value, want.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(slope, want_slope, rtol=0, atol=1e-12)


def _unit(*shape, gen):
    u = torch.randn(*shape, generator=gen, dtype=F64)
    return u / u.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize(("clip", "weighted"), [(1e6, False), (1e6, True), (0.05, True)])
def test_sgd_step_is_a_riemannian_autograd_step(clip, weighted):
    """The step follows autograd's gradient of the correlation loss -sum_b w_b y_b sigma(<u/|u|, x_b>) in u (the
    gradient through the normalisation is the tangent one), clipped per neuron to ``clip``, then renormalised."""
    gen = torch.Generator().manual_seed(0)
    s, g, k, b, d, lr = 2, 3, 4, 16, 6, 0.3
    u = _unit(s, g, k, d, gen=gen)
    x = torch.randn(s, g, b, d, generator=gen, dtype=F64)
    y = torch.randn(s, g, b, generator=gen, dtype=F64)
    weight = torch.softmax(torch.randn(s, g, b, generator=gen, dtype=F64), -1) if weighted else None
    w_b = weight if weighted else torch.full((s, g, b), 1 / b, dtype=F64)
    v = u.clone().requires_grad_(True)
    unit = v / v.norm(dim=-1, keepdim=True)
    loss = -(w_b.unsqueeze(-1) * y.unsqueeze(-1) * SIGMA["h3"](torch.einsum("sgbd,sgkd->sgbk", x, unit))).sum()
    (tangent,) = torch.autograd.grad(loss, v)
    norm = tangent.norm(dim=-1, keepdim=True)
    want = u - lr * tangent * torch.clamp(clip / norm, max=1.0)
    want = want / want.norm(dim=-1, keepdim=True)
    got = u.clone()
    SIM.sgd_step(got, x, y, hermite_activation("h3"), lr, clip, weight)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    if clip < 1:  # every neuron's gradient is clipped here: each moved by exactly lr * clip before renormalising
        assert bool((norm > clip).all())


def test_router_step_ascends_the_mixture_output_by_autograd():
    """``router_step``'s hand-derived gradient is autograd's gradient of E_batch[y sum_m pi_m(x) sigma(<u_m, x>)]
    in the router rows (from a non-zero router, so the softmax is not uniform); with a small clip every row moves by
    exactly lr * clip along it."""
    gen = torch.Generator().manual_seed(1)
    s, m, b, d, lr = 2, 3, 32, 5, 0.7
    u1 = _unit(s, m, d, gen=gen)
    x = torch.randn(s, b, d, generator=gen, dtype=F64)
    y = torch.randn(s, b, generator=gen, dtype=F64)
    router = 0.5 * torch.randn(s, m, d, generator=gen, dtype=F64)
    w = router.clone().requires_grad_(True)
    sig = SIGMA["h3"](torch.einsum("sbd,smd->sbm", x, u1))
    objective = (y.unsqueeze(-1) * torch.softmax(torch.einsum("sbd,smd->sbm", x, w), -1) * sig).sum() / b
    (grad,) = torch.autograd.grad(objective, w)
    free = router.clone()
    SIM.router_step(free, u1, x, y, hermite_activation("h3"), lr, clip=1e6)
    torch.testing.assert_close(free, router + lr * grad, rtol=0, atol=1e-12)
    clip = 0.2 * float(grad.norm(dim=-1).min())
    clipped = router.clone()
    SIM.router_step(clipped, u1, x, y, hermite_activation("h3"), lr, clip=clip)
    move = clipped - router
    torch.testing.assert_close(move.norm(dim=-1), torch.full((s, m), lr * clip, dtype=F64), rtol=1e-12, atol=0)
    torch.testing.assert_close(move / move.norm(dim=-1, keepdim=True), grad / grad.norm(dim=-1, keepdim=True))


def test_ridge_mse_matches_lstsq_on_the_augmented_system():
    """Per group: ridge on the routed rows = least squares of [F_routed; sqrt(lambda n) I] c = [y; 0]; the test
    prediction sums each point's routed group; MSE per seed."""
    gen = torch.Generator().manual_seed(2)
    s, g, n, f, n_te, ridge = 2, 3, 40, 4, 30, 1e-2
    feats = torch.randn(s, g, n, f, generator=gen, dtype=F64)
    feats_te = torch.randn(s, g, n_te, f, generator=gen, dtype=F64)
    y, y_te = torch.randn(s, n, generator=gen, dtype=F64), torch.randn(s, n_te, generator=gen, dtype=F64)
    group, group_te = torch.randint(g, (s, n), generator=gen), torch.randint(g, (s, n_te), generator=gen)
    one_hot = lambda e: torch.nn.functional.one_hot(e, g).transpose(1, 2).to(F64)  # noqa: E731  (S, G, n)
    got = SIM.ridge_mse(feats, y, one_hot(group), feats_te, y_te, one_hot(group_te), ridge).numpy()
    for seed in range(s):
        pred = np.zeros(n_te)
        for grp in range(g):
            rows = (group[seed] == grp).numpy()
            a = np.vstack([feats[seed, grp].numpy()[rows], math.sqrt(ridge * n) * np.eye(f)])
            rhs = np.concatenate([y[seed].numpy()[rows], np.zeros(f)])
            coef = np.linalg.lstsq(a, rhs, rcond=None)[0]
            test_rows = (group_te[seed] == grp).numpy()
            pred[test_rows] = feats_te[seed, grp].numpy()[test_rows] @ coef
        assert got[seed] == pytest.approx(np.mean((pred - y_te[seed].numpy()) ** 2), rel=1e-10)


def test_route_is_the_best_kept_expert():
    gen = torch.Generator().manual_seed(3)
    s, n, e, d = 3, 50, 5, 4
    x = torch.randn(s, n, d, generator=gen, dtype=F64)
    router = torch.randn(s, e, d, generator=gen, dtype=F64)
    keep = torch.rand(s, e, generator=gen) < 0.6
    keep[:, 2] = True  # at least one kept expert per seed
    got = SIM.route(x, router, keep)
    for seed in range(s):
        kept = [j for j in range(e) if keep[seed, j]]
        for i in range(n):
            logits = [float(x[seed, i] @ router[seed, j]) for j in range(e)]
            assert int(got[seed, i]) == max(kept, key=lambda j: logits[j])
    everything = SIM.route(x, router, torch.ones(s, e, dtype=torch.bool))
    assert torch.equal(everything, torch.einsum("snd,sed->sne", x, router).argmax(-1))


# ----------------------------------------------------------------------------------------------- specialisation
def _routed(overlap, counts):
    """A run's end as the specialisation test reads it: ``overlap (S, M, K, C + 1)``, ``counts (S, C, M)``."""
    s, m, k, c1 = overlap.shape
    moe = np.zeros((s, 2, m * k, c1))
    moe[:, -1] = overlap.reshape(s, m * k, c1)
    return SimpleNamespace(moe_overlap=moe, routing_counts=np.asarray(counts))


def _specialised_state(s=3, c=2, m=4, k=3, d=32, seed=0):
    """Expert e receives mostly cluster e % C; its first neuron is w_{e % C} itself, the others random unit
    vectors in R^d (overlaps measured exactly, directions = the first C + 1 basis vectors)."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((s, m, k, d))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    u[:, np.arange(m), 0] = np.eye(d)[np.arange(m) % c]
    overlap = np.abs(u[..., : c + 1])  # |<u, w_1..w_C, w_g>|
    counts = np.full((s, c, m), 5)
    counts[:, np.arange(m) % c, np.arange(m)] = 100
    return overlap, counts


def test_expert_specialisation_positive_control_and_failures():
    overlap, counts = _specialised_state()
    assert K.expert_specialisation(_routed(overlap, counts)).all()  # fraction 1
    # routing shuffled against the neurons: the expert holding w_c now receives mostly the other cluster
    assert not K.expert_specialisation(_routed(overlap, counts[:, ::-1])).any()
    # unaligned: every neuron a random unit vector (the best of 12 in d = 32 is near 0.4, far below 0.8)
    rng = np.random.default_rng(1)
    u = rng.standard_normal((3, 4, 3, 32))
    random = np.abs(u[..., :3] / np.linalg.norm(u, axis=-1, keepdims=True))
    assert not K.expert_specialisation(_routed(random, counts)).any()
    # a tie is no majority, and an expert that receives nothing (pruned) belongs to no cluster
    even = counts.copy()
    even[:, :, 0::2] = 50  # both experts holding w_1 split evenly
    assert K.expert_specialisation(_routed(overlap, even)).tolist() == [[False, True]] * 3
    assert not K.expert_specialisation(_routed(overlap, np.zeros_like(counts))).any()


def test_purity_chance_is_the_largest_load_share():
    c = 4
    uniform = np.ones((2, c, c))  # every cluster spread evenly over C experts: purity and chance both 1/C
    assert np.allclose(K.purity_chance(uniform), 1 / c)
    one = np.zeros((1, c, 6))
    one[..., 2] = 7  # everything to one expert: the cluster-side purity is 1, and so is its chance level
    assert np.allclose(K.purity_chance(one), 1.0)


def test_label_variance_matches_monte_carlo():
    problem = make_cluster_problem(12, 2, local_coeffs=((0.5, 0, 0, 1), (0, 0, 0, 0.6, 0.8)),
                                   global_coeffs=(0.3, 0, 0, 1, 0.5), noise_std=0.4, seed=3)
    n = 400_000
    _, y, _ = sample_clusters(problem, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = y[0].numpy()
    tol = 6 * np.std((y - y.mean()) ** 2) / math.sqrt(n)  # the variance estimate's standard error, n^-1/2
    assert abs(y.var() - problem.label_variance) < tol
    assert make_cluster_problem(32).label_variance == pytest.approx(2 + 0.1**2)  # h3 links, zeta = 0.1
