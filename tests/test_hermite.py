"""Tests of moetheory.hermite (exact vs independent routes) and of the Hermite chapter's SGD experiment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from moetheory import hermite, runtime
from moetheory.papers import hermite as paper

runtime.set_threads(1)
z = sp.Symbol("z", real=True)
mu = sp.Symbol("mu", real=True)

LINKS = {  # sympy expression, breakpoints for scipy.quad
    "relu": (sp.Max(z, 0), [0.0]),
    "abs": (sp.Abs(z), [0.0]),
    "sign": (sp.sign(z), [0.0]),
    "heaviside": (sp.Heaviside(z), [0.0]),
    "clip": (sp.Min(sp.Max(z, -1), 1), [-1.0, 1.0]),
    "shifted-relu": (sp.Piecewise((z - 1, z > 1), (0, True)), [1.0]),
    "sign-square": (sp.sign(z) * z**2, [0.0]),
    "sin": (sp.sin(z), []),
    "cos": (sp.cos(2 * z), []),
    "gauss": (sp.exp(-(z**2)), []),
    "cubic": (z**3 - 2 * z + 1, []),
}


def quad_coefficient(fn, k: int, points) -> float:
    """c_k by adaptive quadrature on (-12, 12), split at the link's breakpoints (an independent route)."""
    he_k = np.polynomial.hermite_e.HermiteE.basis(k)
    integrand = lambda t: fn(t) * he_k(t) * math.exp(-t * t / 2) / math.sqrt(2 * math.pi * math.factorial(k))
    edges = [-12.0, *points, 12.0]
    pieces = zip(edges, edges[1:], strict=False)
    return sum(integrate.quad(integrand, a, b, epsabs=1e-13, epsrel=1e-12)[0] for a, b in pieces)


def test_orthonormality_exact():
    gram = [[hermite.gaussian_expectation(hermite.h(j, z) * hermite.h(k, z), z) for k in range(7)]
            for j in range(7)]
    assert sp.Matrix(gram) == sp.eye(7)


@pytest.mark.parametrize("name", list(LINKS))
def test_exact_coefficients_match_quadrature(name):
    f, points = LINKS[name]
    exact = hermite.hermite_coefficients(f, z, 6)
    fn = sp.lambdify(z, f, "math")
    for k, c in enumerate(exact):
        assert float(c) == pytest.approx(quad_coefficient(fn, k, points), abs=1e-9), (name, k)


@pytest.mark.parametrize("name", ["sin", "cos", "gauss", "cubic"])
def test_gauss_hermite_numeric_matches_exact_for_smooth_links(name):
    f, _ = LINKS[name]
    fn = sp.lambdify(z, f, "numpy")
    numeric = hermite.hermite_coefficients_numeric(lambda x: fn(x) + 0 * x, 8)
    exact = np.array([float(c) for c in hermite.hermite_coefficients(f, z, 8)])
    np.testing.assert_allclose(numeric, exact, atol=1e-10)


SIGMOID = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
GELU = lambda x: x / (1 + np.exp(-1.702 * x))  # noqa: E731  (sigmoid approximation of GELU)


@pytest.mark.parametrize("fn", [np.tanh, SIGMOID, GELU])
def test_gauss_hermite_numeric_matches_adaptive_quadrature(fn):
    numeric = hermite.hermite_coefficients_numeric(fn, 6)
    ref = [quad_coefficient(lambda t: float(fn(np.array(t))), k, []) for k in range(7)]
    np.testing.assert_allclose(numeric, ref, atol=1e-9)


def test_numeric_on_kinks_converges():
    """Gauss-Hermite on ReLU: error shrinks as nodes are added (kinks converge algebraically, not exactly)."""
    exact = np.array([float(c) for c in hermite.hermite_coefficients(sp.Max(z, 0), z, 4)])
    errors = [np.abs(hermite.hermite_coefficients_numeric(lambda x: np.maximum(x, 0), 4, n) - exact).max()
              for n in (21, 81, 301 - 1)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3


polys = st.lists(st.integers(-5, 5), min_size=1, max_size=8).map(
    lambda cs: sum(c * z**i for i, c in enumerate(cs)))


@settings(max_examples=40, deadline=None)
@given(polys)
def test_polynomial_round_trip(f):
    degree = max(sp.Poly(f, z).degree(), 0)
    coeffs = hermite.hermite_coefficients(f, z, degree + 2)
    assert sp.expand(sum(c * hermite.h(k, z) for k, c in enumerate(coeffs)) - f) == 0
    assert all(c == 0 for c in coeffs[degree + 1:])


@settings(max_examples=25, deadline=None)
@given(polys, st.fractions(-3, 3, max_denominator=7))
def test_shift_identity_matches_direct_expansion(f, shift):
    degree = max(sp.Poly(f, z).degree(), 0)
    shifted = hermite.shifted_coefficients(f, z, mu, degree)
    direct = hermite.hermite_coefficients(sp.expand(f.subs(z, z + sp.Rational(shift))), z, degree)
    pairs = zip(shifted, direct, strict=True)
    assert all(sp.expand(a.subs(mu, sp.Rational(shift)) - b) == 0 for a, b in pairs)


def test_shift_identity_for_relu_matches_quadrature():
    shifted = hermite.shifted_coefficients(sp.Max(z, 0), z, mu, 3)
    for m in (-0.8, 0.0, 1.3):
        for k, c in enumerate(shifted):
            ref = quad_coefficient(lambda t, m=m: max(t + m, 0.0), k, [-m])
            assert float(c.subs(mu, m)) == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize(("j", "k"), [(1, 1), (2, 2), (3, 3), (1, 2), (2, 4), (1, 3)])
def test_correlation_identity_monte_carlo(j, k):
    """E[h_j(<u, x>) h_k(<w, x>)] = delta_jk <u, w>^k, within 5 standard errors (~ 1 / sqrt(n))."""
    rng = np.random.default_rng(10 * j + k)
    d, n, rho = 6, 400_000, 0.7
    u = np.eye(d)[0]
    w = rho * u + math.sqrt(1 - rho**2) * np.eye(d)[1]
    x = rng.standard_normal((n, d))
    hj = np.polynomial.hermite_e.HermiteE.basis(j)(x @ u) / math.sqrt(math.factorial(j))
    hk = np.polynomial.hermite_e.HermiteE.basis(k)(x @ w) / math.sqrt(math.factorial(k))
    prod = hj * hk
    assert abs(prod.mean() - (rho**k if j == k else 0.0)) < 5 * prod.std() / math.sqrt(n)


@pytest.mark.parametrize(("f", "k"), [(sp.Max(z, 0), 1), (sp.Abs(z), 2), (sp.hermite_prob(3, z), 3),
                                      (sp.hermite_prob(4, z) + 2, 4), (sp.cos(z), 2), (z**2, 2)])
def test_information_exponent(f, k):
    assert hermite.information_exponent(f, z) == k


def test_validation_errors():
    y = sp.Symbol("y")
    with pytest.raises(ValueError, match="max_degree"):
        hermite.information_exponent(sp.Integer(3), z, max_degree=5)
    with pytest.raises(ValueError, match="depend on z only"):
        hermite.hermite_coefficients(z * y, z, 2)
    with pytest.raises(ValueError, match="max_degree"):
        hermite.hermite_coefficients(z, z, -1)
    with pytest.raises(ValueError, match="not integrable"):
        hermite.hermite_coefficients(1 / z, z, 2)
    with pytest.raises(ValueError, match="not integrable"):
        hermite.gaussian_expectation(sp.exp(z**2), z)
    with pytest.raises(ValueError, match="Symbol"):
        hermite.hermite_coefficients(z, "z", 2)
    with pytest.raises(ValueError, match="mu"):
        hermite.shifted_coefficients(z, z, z, 2)
    with pytest.raises(ValueError, match="n_points"):
        hermite.hermite_coefficients_numeric(np.tanh, 4, n_points=1000)
    with pytest.raises(ValueError, match="same shape"):
        hermite.hermite_coefficients_numeric(lambda x: 1.0, 4)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5])
def test_hermite_torch_matches_sympy(k):
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    ref = sp.lambdify(z, hermite.h(k, z), "numpy")(x.numpy()) + 0 * x.numpy()
    np.testing.assert_allclose(paper.hermite_torch(k, x).numpy(), ref, atol=1e-12)


def test_config_validation():
    with pytest.raises(ValueError, match="dims"):
        paper.Config(dims=(64,))
    with pytest.raises(ValueError, match="dims"):
        paper.Config(dims=(64, 32))
    with pytest.raises(ValueError, match="threshold"):
        paper.Config(threshold=1.5)
    with pytest.raises(ValueError, match="eta"):
        paper.Config(eta=(1.0,))
    with pytest.raises(ValueError, match="n_seeds"):
        paper.Config(n_seeds=0)
    with pytest.raises(ValueError, match="scale"):
        paper.config("huge")
    with pytest.raises(ValueError, match="stop_fraction"):
        paper.Config(stop_fraction=0.2)
    with pytest.raises(ValueError, match=r"exponents must be distinct; got \(2, 2\)"):
        paper.Config(exponents=(2, 2), eta=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"max_factor / eta \* d\^\(k-1\) .* must be <= 9.01e\+15; got .* k = 1"):
        paper.Config(eta=(1e-300, 0.5, 0.5))


def test_stop_fraction_censors_only_the_slowest_runs():
    gen = torch.Generator().manual_seed(1)
    out = paper.samples_to_recovery(3, (8, 16), 10, 0.5, 0.5, 40.0, gen, torch.device("cpu"),
                                    stop_fraction=0.6)
    crossed = ~np.isnan(out)
    assert np.all(crossed.mean(1) >= 0.6)
    assert np.all(np.isfinite(np.median(np.nan_to_num(out, nan=np.inf), axis=1)))


def test_no_recovery_is_recorded_past_its_own_rows_cap():
    """Every (dimension, seed) row stops at its own sample cap, although rows advance in chunks of up to 512 steps:
    with cap 128 at d = 8 the first chunk is 512 steps long. The capped run equals the uncapped one censored at the
    cap (the rows share one random stream, so the hits within the cap are the same samples)."""
    def go(max_factor):
        gen = torch.Generator().manual_seed(0)
        return paper.samples_to_recovery(3, (8, 16), 64, 0.5, 0.5, max_factor, gen, torch.device("cpu"))

    caps = np.array([paper.sample_cap(3, d, 0.5, 1.0) for d in (8, 16)])
    assert caps.tolist() == [128, 512] and paper._chunk_steps(128, 16) == 512
    capped, free = go(1.0), go(100.0)
    for row, cap in enumerate(caps):
        hits = capped[row][~np.isnan(capped[row])]
        assert np.all(hits <= cap), (row, cap, hits.max())
    late = free[0] > caps[0]  # d = 8 seeds that need more than 128 samples: censored under the cap
    assert late.sum() >= 10  # (the defect recorded 25 of these 64 as recovered, the latest at sample 510)
    np.testing.assert_array_equal(capped[0], np.where(late, np.nan, free[0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # float64: the CPU default of runtime.setup()
def test_samples_to_recovery_deterministic_and_in_range(dtype):
    def go():
        gen = torch.Generator().manual_seed(3)
        return paper.samples_to_recovery(1, (8, 16), 5, 1.0, 0.5, 20.0, gen, torch.device("cpu"))

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        a, b = go(), go()
    finally:
        torch.set_default_dtype(old)
    np.testing.assert_array_equal(a, b)
    caps = np.array([[paper.sample_cap(1, d, 1.0, 20.0)] for d in (8, 16)])  # each row's own cap
    assert a.shape == (2, 5) and np.all(a >= 1) and np.all(np.nan_to_num(a) <= caps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_samples_to_recovery_in_either_default_dtype(dtype):
    """``moetheory reproduce`` computes in float64 on the CPU: the sample counts must not assume float32."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        out = paper.samples_to_recovery(1, (8,), 3, 1.0, 0.5, 20.0, torch.Generator().manual_seed(0),
                                        torch.device("cpu"))
    finally:
        torch.set_default_dtype(old)
    assert out.shape == (1, 3) and np.all(out >= 1)


def test_learning_rate_rule():
    assert paper.learning_rate(1, 100, 1.0) == pytest.approx(1e-2)
    assert paper.learning_rate(3, 100, 0.5) == pytest.approx(0.5e-3)
    assert paper.d_log_d_slope((32, 64, 128)) > 1


def test_tiny_end_to_end():
    cfg = paper.config("tiny")
    result = paper.run(cfg, device="cpu")
    ids = {c.id for c in paper.claims(result)}
    expected = {f"hermite/exponent-{s}" for s in paper.STANDARD_LINKS}
    expected |= {"hermite/sgd-slope-k1", "hermite/sgd-slope-k2", "hermite/sgd-slope-k3"}
    assert ids == expected
    metrics = result.metrics()
    assert set(metrics["slopes"]) == {"1", "2", "3"} and metrics["dims"] == list(cfg.dims)
    assert all(c.holds for c in paper.claims(result) if "exponent" in c.id)
