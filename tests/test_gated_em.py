"""Tests of moetheory.papers.makkuva2019.gated_em (the makkuva2019 chapter's EM and Adam): each step against an
independent route.

The gating step's gradient and Hessian against torch.autograd of the objective written out here; EM's likelihood
never decreasing on a sampled gated MoE; the linear regressor step against weighted least squares by
numpy.linalg.lstsq; EM's fixed point a stationary point of the likelihood (autograd gradient zero).
"""

import math

import numpy as np
import pytest
import torch

from moetheory import runtime
from moetheory.papers.makkuva2019 import gated_em
from moetheory.papers.makkuva2019.gated_moe import random_parameters, sample_batch

runtime.set_threads(1)
F64 = torch.float64


def _problem(seeds=2, n=400, d=4, k=3, seed=0):
    """A sampled gated MoE (linear link) and a random start: ``x, y, a_true, w_true, a0, w0``."""
    gen = torch.Generator().manual_seed(seed)
    a, w = random_parameters(seeds, d, k, 2.0, gen)
    x, y = sample_batch(n, a, w, "linear", 0.1, gen)
    a0, w0 = gated_em.random_start(seeds, k, d, gen)
    return x, y, a, w, a0, w0


def _soft_labels(seeds, n, k, gen):
    return torch.softmax(torch.randn(seeds, n, k, generator=gen, dtype=F64), -1)


def _q(x, r, w_free, l2):
    """Q(W) = (1/n) sum_n sum_i r_ni log softmax_i(W x_n) - l2/2 ||W||^2 for one seed, W = [w_free; 0]."""
    logits = torch.cat([x @ w_free.T, torch.zeros(x.shape[0], 1, dtype=x.dtype)], 1)  # (n, k)
    log_p = logits - torch.logsumexp(logits, 1, keepdim=True)
    return (r * log_p).sum() / x.shape[0] - 0.5 * l2 * (w_free**2).sum()


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_gating_gradient_and_hessian_match_autograd(l2):
    gen = torch.Generator().manual_seed(1)
    seeds, n, d, k = 2, 60, 3, 4
    x = torch.randn(seeds, n, d, generator=gen, dtype=F64)
    r = _soft_labels(seeds, n, k, gen)
    w = torch.randn(seeds, k, d, generator=gen, dtype=F64)
    w[:, -1] = 0
    grad, neg_hess = gated_em.gating_gradient_hessian(x, r, w, l2)
    for s in range(seeds):
        f = lambda v, s=s: _q(x[s], r[s], v.view(k - 1, d), l2)  # noqa: E731
        v = w[s, :-1].reshape(-1).clone()
        want_grad = torch.autograd.functional.jacobian(f, v)
        want_hess = torch.autograd.functional.hessian(f, v)
        torch.testing.assert_close(grad[s].reshape(-1), want_grad, rtol=0, atol=1e-13)
        torch.testing.assert_close(neg_hess[s], -want_hess, rtol=0, atol=1e-13)


def test_gating_newton_step_is_the_newton_step_and_never_lowers_q():
    """Near the optimum the full Newton step W + H^-1 g (autograd's g and H) is taken; far from it the step is damped
    but Q never decreases."""
    gen = torch.Generator().manual_seed(2)
    seeds, n, d, k, l2 = 3, 200, 3, 3, 1e-6
    x = torch.randn(seeds, n, d, generator=gen, dtype=F64)
    r = _soft_labels(seeds, n, k, gen)
    w = 0.1 * torch.randn(seeds, k, d, generator=gen, dtype=F64)
    w[:, -1] = 0
    new = gated_em.gating_newton_step(x, r, w, l2)
    for s in range(seeds):
        f = lambda v, s=s: _q(x[s], r[s], v.view(k - 1, d), l2)  # noqa: E731
        v = w[s, :-1].reshape(-1)
        g, h = torch.autograd.functional.jacobian(f, v), torch.autograd.functional.hessian(f, v)
        newton = v - torch.linalg.solve(h, g)
        torch.testing.assert_close(new[s, :-1].reshape(-1), newton, rtol=0, atol=1e-10)
        assert torch.all(new[s, -1] == 0)
    far = 30 * torch.randn(seeds, k, d, generator=gen, dtype=F64)
    far[:, -1] = 0
    for _ in range(5):
        step = gated_em.gating_newton_step(x, r, far, l2)
        before = [_q(x[s], r[s], far[s, :-1], l2) for s in range(seeds)]
        after = [_q(x[s], r[s], step[s, :-1], l2) for s in range(seeds)]
        assert all(b_ <= a_ + 1e-12 for b_, a_ in zip(before, after, strict=True))
        far = step


@pytest.mark.parametrize("seed", [0, 1])
def test_linear_regressor_step_is_weighted_least_squares(seed):
    gen = torch.Generator().manual_seed(seed)
    seeds, n, d, k = 2, 300, 4, 3
    x = torch.randn(seeds, n, d, generator=gen, dtype=F64)
    y = torch.randn(seeds, n, generator=gen, dtype=F64)
    r = _soft_labels(seeds, n, k, gen)
    start = torch.randn(seeds, k, d, generator=gen, dtype=F64)  # the exact solution does not depend on it
    got = gated_em.regressor_step(x, y, r, start, "linear").numpy()
    xs, ys, rs = x.numpy(), y.numpy(), r.numpy()
    for s in range(seeds):
        for i in range(k):
            sw = np.sqrt(rs[s, :, i])  # min_a sum_n r_ni (y_n - <a, x_n>)^2 = ||sqrt(r) y - diag(sqrt(r)) X a||^2
            want = np.linalg.lstsq(sw[:, None] * xs[s], sw * ys[s], rcond=None)[0]
            np.testing.assert_allclose(got[s, i], want, rtol=0, atol=1e-7)  # the step adds a 1e-9 ridge


def test_joint_em_log_likelihood_never_decreases():
    """Joint EM is a generalised EM (exact regressor M-step, a Q-increasing gating step): the likelihood, written
    independently as a logsumexp over experts, never decreases from iteration to iteration."""
    x, y, _, _, a, w = _problem(seeds=3, n=800, seed=3)
    history = [_objective(x, y, a, w)]
    for _ in range(25):
        a, w, _ = gated_em.joint_em(x, y, a, w, "linear", 0.1, max_iter=1)
        history.append(_objective(x, y, a, w))
    history = np.array(history)  # (iterations + 1, S)
    steps = np.diff(history, axis=0)
    assert steps.min() >= -1e-9, steps.min()
    assert np.all(history[-1] - history[0] > 0.1)  # and it does climb from the random start


def _likelihood_by_hand(x, y, a, w, noise_std=0.1):
    """(1/n) sum_n log sum_i softmax_i(W x_n) N(y_n; <a_i, x_n>, sigma^2), in NumPy, per seed."""
    x, y, a, w = (t.numpy() for t in (x, y, a, w))
    logits = np.einsum("snd,skd->snk", x, w)
    gate = np.exp(logits - logits.max(-1, keepdims=True))
    gate /= gate.sum(-1, keepdims=True)
    resid = y[..., None] - np.einsum("snd,skd->snk", x, a)
    dens = np.exp(-0.5 * (resid / noise_std) ** 2) / (noise_std * math.sqrt(2 * math.pi))
    return np.log((gate * dens).sum(-1)).mean(-1)


def _objective(x, y, a, w, l2=1e-6):
    """What EM climbs: the log-likelihood minus the gating step's l2/2 ||W||^2 (the regressor step's 1e-9 ridge
    is below the tolerance), per seed."""
    return _likelihood_by_hand(x, y, a, w) - 0.5 * l2 * w.square().sum((-1, -2)).numpy()


def test_gating_em_log_likelihood_never_decreases_and_ends_stationary():
    """EM for the gating with the true regressors: the likelihood never decreases, and where EM stops the
    likelihood's autograd gradient in the gating is zero (an EM fixed point is a stationary point)."""
    x, y, a, _, _, w = _problem(seeds=2, n=1000, seed=4)
    history = [_objective(x, y, a, w)]
    for _ in range(15):
        w, _ = gated_em.gating_em(x, y, a, w, "linear", 0.1, max_iter=1)
        history.append(_objective(x, y, a, w))
    assert np.diff(np.array(history), axis=0).min() >= -1e-9
    w_end, n_iter = gated_em.gating_em(x, y, a, w, "linear", 0.1, max_iter=200, tol=1e-10)
    assert torch.all(n_iter < 200)
    free = w_end[:, :-1].clone().requires_grad_(True)
    full = torch.cat([free, torch.zeros_like(free[:, :1])], 1)
    gated_em.log_likelihood(x, y, a, full, "linear", 0.1).sum().backward()
    assert free.grad.abs().max() < 1e-5  # the l2 = 1e-6 penalty's gradient is 1e-6 ||W||


def test_em_log_likelihood_agrees_with_the_package():
    """The hand-written likelihood above is the package's ``log_likelihood`` (so the monotonicity tests speak of
    the package's objective)."""
    x, y, a, w, _, _ = _problem(seed=5)
    np.testing.assert_allclose(gated_em.log_likelihood(x, y, a, w, "linear", 0.1).numpy(),
                               _likelihood_by_hand(x, y, a, w), rtol=1e-12)


def test_scale_step_is_weighted_least_squares_for_the_linear_link():
    # s_i = argmin_s sum_n r_ni (y_n - s u_i^T x_n)^2, by numpy.linalg.lstsq on sqrt(r)-weighted rows
    gen = torch.Generator().manual_seed(6)
    x, y, _, _, u, _ = _problem(seeds=2, n=300, seed=6)
    r = _soft_labels(2, 300, 3, gen)
    start = torch.rand(2, 3, generator=gen, dtype=F64) + 0.5
    got = gated_em.scale_step(x, y, r, u, start, "linear")
    for s in range(2):
        for i in range(3):
            sw = r[s, :, i].sqrt().numpy()
            t = (x[s] @ u[s, i]).numpy()
            want = np.linalg.lstsq((sw * t)[:, None], sw * y[s].numpy(), rcond=None)[0][0]
            assert float(got[s, i]) == pytest.approx(want, rel=1e-12)


def test_gating_scale_em_recovers_common_scale():
    # regressors 3x longer, true directions given: the fitted scales approach 3 (tolerance ~ n^(-1/2))
    gen = torch.Generator().manual_seed(7)
    n = 4000
    a, w = random_parameters(2, 5, 2, 2.0, gen)
    x, y = sample_batch(n, 3 * a, w, "linear", 0.1, gen)
    _, w0 = gated_em.random_start(2, 2, 5, gen)
    _, scale, n_iter = gated_em.gating_scale_em(x, y, a, w0, "linear", 0.1, max_iter=100)
    assert bool((n_iter < 100).all())
    assert float((scale - 3).abs().max()) < 5 / math.sqrt(n)
