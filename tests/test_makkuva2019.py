"""Makkuva et al. (2019): transforms and constants against independent routes, the tensor machinery, the paper
module's presets and claims."""

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moetheory import runtime
from moetheory.data import sample_gated_moe
from moetheory.papers import makkuva2019 as paper
from moetheory.papers.makkuva2019 import global_em, moments
from moetheory.papers.makkuva2019.gated_moe import random_parameters, sample_batch

runtime.set_threads(1)


@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_linear_constants_are_exact(sigma):
    exact = moments.symbolic_constants("linear")
    s = sp.Symbol("sigma", positive=True)
    assert exact["alpha"] == 0 and exact["gamma"] == 0 and exact["c3"] == 6 and exact["c2"] == 2
    assert sp.simplify(exact["beta"] + 3 * (1 + s**2)) == 0
    quad = moments.transform_constants("linear", sigma, "quad")
    assert quad["beta"] == pytest.approx(-3 * (1 + sigma**2), abs=1e-9)


@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_relu_exact_matches_quadrature_and_sigmoid_routes_agree(sigma):
    exact = moments.transform_constants("relu", sigma, "exact")
    quad = moments.transform_constants("relu", sigma, "quad")
    assert all(exact[k] == pytest.approx(quad[k], rel=1e-8, abs=1e-10) for k in moments.CONSTANTS)
    assert exact["gamma"] == pytest.approx(-2 * math.sqrt(2 / math.pi))
    gh = moments.transform_constants("sigmoid", sigma, "gauss-hermite")
    quad = moments.transform_constants("sigmoid", sigma, "quad")
    assert all(gh[k] == pytest.approx(quad[k], rel=1e-8, abs=1e-10) for k in moments.CONSTANTS)


@pytest.mark.parametrize("g", ["linear", "sigmoid", "relu"])
def test_transform_kills_low_order_terms_monte_carlo(g):
    # E[S_3(y) He_1(Z)] = E[S_3(y) He_2(Z)] = 0 and E[S_3(y) He_3(Z)] = c3 for a single expert, by Monte Carlo
    rng = np.random.default_rng(1)
    n, sigma = 400_000, 0.5
    z = rng.standard_normal(n)
    link = {"linear": lambda t: t, "sigmoid": lambda t: 1 / (1 + np.exp(-t)),
            "relu": lambda t: np.maximum(t, 0)}[g]
    y = link(z) + sigma * rng.standard_normal(n)
    c = moments.transform_constants(g, sigma)
    s3, s2 = (t.numpy() for t in moments.output_transforms(torch.from_numpy(y), c))
    for values, target in ((s3 * z, 0.0), (s3 * (z**2 - 1), 0.0), (s3 * (z**3 - 3 * z), c["c3"]),
                           (s2 * z, 0.0), (s2 * (z**2 - 1), c["c2"])):
        assert abs(values.mean() - target) < 5 * values.std() / math.sqrt(n)


SIGMA_FREE = ("alpha", "gamma", "c3", "c2")  # constants that do not depend on sigma; beta = beta_0 - 3 sigma^2


def test_sigma_invariance_symbolically_for_any_link():
    # E[He_p(Z) m_j(Z)] with m_j the conditional moments of y = g(Z) + sigma * noise and g an arbitrary link: write
    # E[He_p g^j] as free symbols G_pj (E[He_p] = 0 for p >= 1 removes the constant terms), solve, and read off
    # which constants involve sigma
    sigma, g = sp.symbols("sigma g", positive=True)
    G = {(p, j): sp.Symbol(f"G{p}{j}") for p in (1, 2, 3) for j in (1, 2, 3)}
    m = moments.conditional_moments(g, sigma)
    e = {(p, j + 1): sum(c * (G[p, deg] if deg else 0) for (deg,), c in sp.Poly(m[j], g).terms())
         for p in (1, 2, 3) for j in range(3)}
    const = moments._solve_constants(e)
    assert all(sigma not in sp.simplify(const[k]).free_symbols for k in SIGMA_FREE)
    assert sp.simplify(const["beta"] + 3 * sigma**2).free_symbols.isdisjoint({sigma})
    exact = {g: moments.symbolic_constants(g) for g in ("linear", "relu")}  # the closed forms agree
    for c in exact.values():
        s = sp.Symbol("sigma", positive=True)
        assert all(s not in c[k].free_symbols for k in SIGMA_FREE)
        assert s not in sp.simplify(c["beta"] + 3 * s**2).free_symbols


@pytest.mark.parametrize("g", ["linear", "sigmoid", "relu"])
def test_sigma_invariance_by_quadrature(g):
    base = moments.transform_constants(g, 0.1, "quad")
    for sigma in (0.3, 1.0, 2.5):
        c = moments.transform_constants(g, sigma, "quad")
        assert all(c[k] == pytest.approx(base[k], rel=1e-9, abs=1e-12) for k in SIGMA_FREE)
        assert c["beta"] == pytest.approx(base["beta"] - 3 * (sigma**2 - 0.1**2), rel=1e-9, abs=1e-12)


def _moment_constants(e):
    """alpha, beta, gamma, c3, c2 from E[He_p(Z) y^j] (p, j = 1..3), solved here from the defining conditions."""
    alpha, beta = np.linalg.solve([[e[1, 2], e[1, 1]], [e[2, 2], e[2, 1]]], [-e[1, 3], -e[2, 3]])
    gamma = -e[1, 2] / e[1, 1]
    return {"alpha": alpha, "beta": beta, "gamma": gamma, "c3": e[3, 3] + alpha * e[3, 2] + beta * e[3, 1],
            "c2": e[2, 2] + gamma * e[2, 1]}


@pytest.mark.parametrize("g", ["linear", "sigmoid", "relu"])
def test_sigma_invariance_monte_carlo(g):
    # the constants estimated from simulated (Z, y) at sigma = 0.1 and 0.5 on the same draws: alpha, gamma, c3, c2
    # agree and beta shifts by -3 (0.5^2 - 0.1^2), within 5 jackknife standard errors (20 batches; the tolerance
    # shrinks like n^(-1/2)); each value also matches the package's at 5 standard errors
    rng = np.random.default_rng(0)
    link = {"linear": lambda t: t, "sigmoid": lambda t: 1 / (1 + np.exp(-t)), "relu": lambda t: np.maximum(t, 0)}[g]
    sigmas, n_batches, size = (0.1, 0.5), 20, 50_000
    batches = []
    for _ in range(n_batches):
        z, noise = rng.standard_normal(size), rng.standard_normal(size)
        he = {1: z, 2: z**2 - 1, 3: z**3 - 3 * z}
        ys = {s: link(z) + s * noise for s in sigmas}
        batches.append({(s, p, j): np.mean(he[p] * ys[s] ** j) for s in sigmas for p in he for j in (1, 2, 3)})

    def stats(keep):
        e = {key: np.mean([batches[b][key] for b in keep]) for key in batches[0]}
        lo, hi = (_moment_constants({(p, j): e[s, p, j] for p in (1, 2, 3) for j in (1, 2, 3)}) for s in sigmas)
        return {**{("diff", k): hi[k] - lo[k] for k in lo}, **{("value", s, k): c[k] for s, c in zip(sigmas, (lo, hi))
                                                               for k in c}}

    full = stats(range(n_batches))
    loo = [stats([b for b in range(n_batches) if b != j]) for j in range(n_batches)]
    se = {key: np.sqrt((n_batches - 1) * np.var([x[key] for x in loo])) for key in full}
    shift = {k: 0.0 for k in SIGMA_FREE} | {"beta": -3 * (sigmas[1] ** 2 - sigmas[0] ** 2)}
    for k in moments.CONSTANTS:
        assert abs(full["diff", k] - shift[k]) < 5 * se["diff", k], k
        for s in sigmas:
            assert abs(full["value", s, k] - moments.transform_constants(g, s)[k]) < 5 * se["value", s, k], (s, k)


def test_output_second_moment_closed_forms_and_monte_carlo():
    for sigma in (0.1, 0.5):
        assert moments.output_second_moment("linear", sigma) == pytest.approx(1 + sigma**2, rel=1e-12)
        assert moments.output_second_moment("relu", sigma) == pytest.approx(0.5 + sigma**2, rel=1e-12)
    z = np.random.default_rng(3).standard_normal(400_000)
    g2 = (1 / (1 + np.exp(-z))) ** 2
    assert abs(moments.output_second_moment("sigmoid", 0.2) - 0.04 - g2.mean()) < 5 * g2.std() / math.sqrt(len(z))


def test_population_moments_match_formula():
    # T_2 = c2 sum p_i a_i a_i^T under orthogonal gating (Monte Carlo, tolerance ~ 1/sqrt(n))
    gen = torch.Generator().manual_seed(3)
    a, w = random_parameters(1, 6, 3, 2.0, gen)
    x, y = sample_batch(400_000, a, w, "linear", 0.1, gen)
    c = moments.transform_constants("linear", 0.1)
    t2 = moments.second_moment(x, moments.output_transforms(y, c)[1])[0]
    p = torch.softmax(x @ w.transpose(1, 2), -1).mean(1)[0]
    expected = c["c2"] * (a[0].T * p) @ a[0]
    assert torch.linalg.norm(t2 - expected) < 0.05 * torch.linalg.norm(expected)


def test_power_method_matches_eigendecomposition_in_orthogonal_case():
    gen = torch.Generator().manual_seed(0)
    k = 5
    q, _ = torch.linalg.qr(torch.randn(k, k, generator=gen, dtype=torch.float64))
    lam = torch.tensor([3.0, 2.5, -2.0, 1.5, 1.0], dtype=torch.float64)
    t = torch.einsum("r,ri,rj,rl->ijl", lam, q, q, q)[None]
    got_lam, got_v = moments.power_method(t, generator=gen)
    # Jennrich: T(I, I, u) = Q diag(lam * Q u) Q^T has the components as eigenvectors
    u = torch.randn(k, generator=gen, dtype=torch.float64)
    _, evecs = torch.linalg.eigh(torch.einsum("ijl,l->ij", t[0], u))
    for v in got_v[0]:
        assert (evecs.T @ v).abs().max() == pytest.approx(1.0, abs=1e-8)
    assert sorted(got_lam[0].abs().tolist()) == pytest.approx(sorted(lam.abs().tolist()), abs=1e-8)


def test_whitened_tensor_equals_dense_contraction():
    # O(n k^3) route against forming the d^3 tensor S_3(x) explicitly (small d)
    gen = torch.Generator().manual_seed(2)
    n, d, k = 300, 4, 2
    x = torch.randn(1, n, d, generator=gen, dtype=torch.float64)
    s3 = torch.randn(1, n, generator=gen, dtype=torch.float64)
    m = torch.randn(1, d, k, generator=gen, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    x0 = x[0]
    cube = torch.einsum("ni,nj,nl->nijl", x0, x0, x0)
    sym = (torch.einsum("ni,jl->nijl", x0, eye) + torch.einsum("nj,il->nijl", x0, eye)
           + torch.einsum("nl,ij->nijl", x0, eye))
    dense = torch.einsum("n,nijl->ijl", s3[0], cube - sym) / n
    expected = torch.einsum("ijl,ia,jb,lc->abc", dense, m[0], m[0], m[0])
    assert torch.allclose(moments.whitened_third_moment(x, s3, m)[0], expected, atol=1e-10)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(2, 3), st.integers(0, 10_000))
def test_tensor_method_recovers_regressors(k, seed):
    # k <= 3 in d = 6: with k = 4 about 1 instance in 5 has an expert of tiny mixing weight and an
    # ill-conditioned A (sigma_min ~ 0.1); n = 60,000 is then not enough (error ~ 1): the constant in n^(-1/2)
    # depends on the instance
    gen = torch.Generator().manual_seed(seed)
    a, w = random_parameters(1, 6, k, 1.0, gen)
    x, y = sample_batch(60_000, a, w, "linear", 0.1, gen)
    est = moments.estimate_regressors(x, y, k, "linear", 0.1, generator=gen)["regressors"]
    err = paper.errors(est, None, a, w)[0][0]
    assert err < 0.6  # error ~ n^(-1/2) with a large constant; tight recovery is the slope claim's job


def test_generator_deterministic_and_validates():
    a = np.eye(3)[:2]
    w = np.array([[0, 0, 1.0], [0, 0, 0]])
    x1, y1 = sample_gated_moe(50, a, w, "relu", 0.2, 7)
    x2, y2 = sample_gated_moe(50, a, w, "relu", 0.2, 7)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and x1.shape == (50, 3)
    with pytest.raises(ValueError, match="nonlinearity"):
        sample_gated_moe(10, a, w, "tanh", 0.1, 0)
    with pytest.raises(ValueError, match="noise_std"):
        sample_gated_moe(10, a, w, "linear", 0.0, 0)
    with pytest.raises(ValueError, match="gating"):
        sample_gated_moe(10, a, w[:1], "linear", 0.1, 0)
    with pytest.raises(ValueError, match="k must be in"):
        sample_gated_moe(10, np.ones((3, 2)), np.zeros((3, 2)), "linear", 0.1, 0)
    with pytest.raises(ValueError, match="last row"):
        sample_gated_moe(10, a, np.ones((2, 3)), "linear", 0.1, 0)
    with pytest.raises(ValueError, match="finite"):
        sample_gated_moe(10, a * np.nan, w, "linear", 0.1, 0)


@pytest.mark.parametrize("d", [3, 6])
def test_as_many_experts_as_dimensions_is_refused(d):
    # k = d leaves no direction orthogonal to span(A): random_parameters used to normalise rounding noise into
    # "orthogonal" gating rows (|W A^T| = 1.95 instead of ~1e-15); now every entry point refuses it in one line
    with pytest.raises(ValueError, match=rf"^k must be an integer in \[2, {d - 1}\]; got {d}$"):
        random_parameters(1, d, d, 2.0, torch.Generator().manual_seed(0))
    a, w = np.eye(d), np.zeros((d, d))
    with pytest.raises(ValueError, match=rf"k must be in \[2, d - 1\] = \[2, {d - 1}\] .*got k={d}, d={d}$"):
        sample_gated_moe(10, a, w, "linear", 0.1, 0)
    with pytest.raises(ValueError, match=rf"^n_experts must be an integer in \[2, {d - 1}\]; got {d}$"):
        paper.Config(d=d, n_experts=d)
    with pytest.raises(ValueError, match=rf"^regimes\[0\].n_experts must be an integer in \[2, {d - 1}\]"):
        paper.Config(regimes=(paper.Regime("k = d", d, d, 100),))
    a, w = random_parameters(2, d, d - 1, 2.0, torch.Generator().manual_seed(0))  # the largest k allowed
    assert float((w @ a.transpose(1, 2)).abs().max()) < 1e-12  # gating orthogonal to every regressor


def test_generator_gating_probabilities():
    # the fraction of samples from expert 0 matches E[softmax_0(W x)] (Monte Carlo over the same x)
    a = np.eye(4)[:2]
    w = np.array([[0, 0, 0, 1.5], [0, 0, 0, 0]])
    x, y = sample_gated_moe(100_000, a, w, "linear", 1e-6, 0)
    from_expert0 = np.isclose(y, x[:, 0], atol=1e-4) & ~np.isclose(y, x[:, 1], atol=1e-4)
    p0 = 1 / (1 + np.exp(-1.5 * x[:, 3]))
    both = np.isclose(x[:, 0], x[:, 1], atol=1e-4)
    assert abs(from_expert0.mean() - (p0 * ~both).mean()) < 5 / math.sqrt(len(y))


def test_config_validation():
    with pytest.raises(ValueError, match="n_experts"):
        paper.Config(d=3, n_experts=4)
    with pytest.raises(ValueError, match="noise_std"):
        paper.Config(noise_std=0)
    with pytest.raises(ValueError, match="sample_sizes"):
        paper.Config(sample_sizes=(5_000, 1_000))
    with pytest.raises(ValueError, match="scale"):
        paper.config("huge")
    with pytest.raises(ValueError, match=r"^global_experts must be an integer in \[2, 9\]; got 10$"):
        paper.Config(global_experts=(2, 10))
    with pytest.raises(ValueError, match="global_norms"):
        paper.Config(global_norms=(0.0, 1.0))
    with pytest.raises(ValueError, match="global_n"):
        paper.Config(global_n=10)


def test_tiny_runs_end_to_end_with_every_claim():
    result = paper.run(paper.config("tiny"), device="cpu")
    got = {c.id for c in paper.claims(result)}
    assert got == {"makkuva2019/tensor-consistency", "makkuva2019/gating-em-recovery",
                   "makkuva2019/orthogonality-needed", "makkuva2019/gating-em-global",
                   "makkuva2019/transform-constants", "makkuva2019/beats-baselines", "makkuva2019/every-link",
                   "makkuva2019/orthogonality-needed-links", "makkuva2019/airfoil-analogue"}
    assert next(c for c in paper.claims(result) if c.id == "makkuva2019/gating-em-global").holds  # even at tiny
    metrics = result.metrics()
    methods = {"tensor", "tensor+EM", "EM given A", "joint EM", "tensor->joint EM", "Adam", "GD"}
    assert set(metrics["sweep"]) >= methods
    assert set(metrics["links"]) == {"relu", "sigmoid"}  # the panel for every other link
    for panel in metrics["links"].values():
        assert set(panel) == {"orthogonal", "not orthogonal"}
        assert np.shape(panel["orthogonal"]) == (len(result.config.panel_sizes), result.config.panel_seeds)
    for g, sweep in metrics["link_sweep"].items():  # error vs n for every other link, up to adam_max_n
        assert g in {"relu", "sigmoid"} and set(sweep) == {"tensor", "tensor+EM", "joint EM"}
        assert sweep["joint EM"]["n"] == [n for n in result.config.sample_sizes if n <= result.config.adam_max_n]
    assert metrics["airfoil"] is None  # tiny runs no Airfoil splits: its claim did not run
    assert next(c for c in paper.claims(result) if c.id == "makkuva2019/airfoil-analogue").holds is None
    low, high = metrics["gating_ratio"]["interval"]
    assert low <= metrics["gating_ratio"]["ratio"] <= high
    import json

    json.dumps(metrics)


def test_start_grid_norms_and_reference_row():
    gen = torch.Generator().manual_seed(0)
    _, w = random_parameters(1, 6, 3, 2.0, gen)
    starts = global_em.start_grid(w[0], (0.01, 1.0, 100.0), 2, gen)
    assert starts.shape == (6, 3, 6) and bool((starts[:, -1] == 0).all())
    want = torch.tensor([0.01, 0.01, 1.0, 1.0, 100.0, 100.0], dtype=torch.float64) * w[0].norm()
    torch.testing.assert_close(starts.flatten(1).norm(dim=-1), want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("k", [2, 3])
def test_gating_em_reaches_one_w_from_every_start(k):
    # the paper's claim with the true regressors: starts from 0.01x to 100x ||W|| all end at the same W (spread
    # set by the stopping tolerance, far below the statistical error), within ~ sqrt(k d / n) of the truth
    d, n = 6, 2_000
    out = global_em.global_convergence(d, k, n, 1, (0.01, 0.1, 1.0, 10.0, 100.0), 2, gating_norm=2.0,
                                       noise_std=0.1, generator=torch.Generator().manual_seed(k), max_iter=100,
                                       tol=1e-7)
    errors = np.array(out["error"][0])
    assert out["converged"] and len(errors) == 10
    assert out["spread"][0] < 1e-3 * math.sqrt(k * d / n)
    assert errors.max() < 6 * math.sqrt(k * d / n)
    with pytest.raises(ValueError, match=r"^k must be an integer in \[2, 5\]; got 6$"):
        global_em.global_convergence(d, d, n, 1, (1.0,), 1, gating_norm=2.0, noise_std=0.1,
                                     generator=torch.Generator())
