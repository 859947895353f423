"""The two-layer-expert reading of Kawata et al. (:mod:`moetheory.papers.kawata2025.twolayer`): its gates, its joint
output fit and its router step against independent routes, and a tiny run end to end."""

import math

import numpy as np
import pytest
import torch

from moetheory import runtime
from moetheory.activations import hermite_activation
from moetheory.papers import kawata2025 as K
from moetheory.papers.kawata2025 import model as SIM
from moetheory.papers.kawata2025 import twolayer as TL

runtime.set_threads(1)
F64 = torch.float64


def _h3(z):  # written out: an independent route to activations.hermite_activation("h3")
    return (z**3 - 3 * z) / math.sqrt(6)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_gates_renormalise_the_softmax_over_the_k_largest_logits(k):
    gen = torch.Generator().manual_seed(0)
    s, n, m, d = 2, 50, 5, 4
    x, router = torch.randn(s, n, d, generator=gen, dtype=F64), torch.randn(s, m, d, generator=gen, dtype=F64)
    gates = TL.top_k_gates(x, router, k)
    logits = torch.einsum("snd,smd->snm", x, router)
    assert ((gates > 0).sum(-1) == k).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(s, n, dtype=F64))
    chosen = logits.argsort(-1, descending=True)[..., :k]
    assert (torch.gather(gates, -1, chosen) > 0).all()
    p = torch.softmax(logits, -1) * (gates > 0)  # softmax, then renormalised over the chosen experts
    torch.testing.assert_close(gates, p / p.sum(-1, keepdim=True))
    if k == 1:  # top-1: the expert of model.route with every expert kept
        one_hot = torch.nn.functional.one_hot(SIM.route(x, router, torch.ones(s, m, dtype=torch.bool)), m)
        torch.testing.assert_close(gates, one_hot.to(F64))


def test_top_k_gates_leave_out_experts_not_kept():
    gen = torch.Generator().manual_seed(3)
    x, router = torch.randn(2, 40, 4, generator=gen, dtype=F64), torch.randn(2, 5, 4, generator=gen, dtype=F64)
    keep = torch.tensor([[True, False, True, True, False], [False, True, True, True, True]])
    gates = TL.top_k_gates(x, router, 2, keep)
    assert (gates[~keep.unsqueeze(1).expand_as(gates)] == 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(2, 40, dtype=F64))
    loud = router.clone()
    loud[~keep] *= 1e3  # experts not kept cannot win, however large their logits
    assert torch.equal(TL.top_k_gates(x, loud, 2, keep), gates)


def test_expert_purity_counts_shared_experts_as_pure_and_merged_clusters_as_not():
    shared = np.array([[[30, 20, 0], [0, 0, 50]]])  # cluster 0 split over experts 0 and 1: pure
    merged = np.array([[[50, 0, 0], [50, 0, 0]]])  # both clusters on expert 0: half the points misrouted
    np.testing.assert_allclose(TL.expert_purity(shared), [1.0])
    np.testing.assert_allclose(TL.expert_purity(merged), [0.5])
    np.testing.assert_allclose(TL.expert_purity(np.array([[[40, 10], [5, 45]]])), [85 / 100])


def test_first_layers_shared_within_an_expert_only_when_asked():
    gen = torch.Generator().manual_seed(4)
    s, m, j, d = 2, 6, 8, 64

    def mean_cos(u):  # within each expert, and between the first neurons of different experts
        cos = torch.einsum("smjd,smkd->smjk", u, u)
        within = (cos.sum((-1, -2)) - j) / (j * (j - 1))
        across = torch.einsum("smd,snd->smn", u[:, :, 0], u[:, :, 0])
        return float(within.mean()), float((across.sum((-1, -2)) - m).mean() / (m * (m - 1)))

    for spread, low, high in ((None, -0.1, 0.1), (0.3, 0.85, 1.0), (1.0, 0.4, 0.6)):
        u = TL.first_layers((s, m, j), d, gen, "cpu", spread).to(F64)
        torch.testing.assert_close(u.norm(dim=-1), torch.ones(s, m, j, dtype=F64))
        within, across = mean_cos(u)
        assert low < within < high, (spread, within)  # r = 1: cos about 1 / (1 + 1) = 0.5
        assert abs(across) < 0.1


def test_mixture_ridge_is_the_per_expert_fit_for_one_hot_gates_and_lstsq_for_soft_ones():
    gen = torch.Generator().manual_seed(2)
    s, m, n, f, n_te, ridge = 2, 3, 60, 4, 30, 1e-2
    feats, feats_te = torch.randn(s, m, n, f, generator=gen, dtype=F64), torch.randn(s, m, n_te, f, generator=gen,
                                                                                      dtype=F64)
    y, y_te = torch.randn(s, n, generator=gen, dtype=F64), torch.randn(s, n_te, generator=gen, dtype=F64)
    x, x_te = torch.randn(s, n, 3, generator=gen, dtype=F64), torch.randn(s, n_te, 3, generator=gen, dtype=F64)
    router = torch.randn(s, m, 3, generator=gen, dtype=F64)
    hard, hard_te = TL.top_k_gates(x, router, 1), TL.top_k_gates(x_te, router, 1)
    torch.testing.assert_close(
        TL.mixture_ridge_mse(feats, hard, y, feats_te, hard_te, y_te, ridge),
        SIM.ridge_mse(feats, y, hard.transpose(1, 2), feats_te, y_te, hard_te.transpose(1, 2), ridge),
    )
    soft, soft_te = TL.top_k_gates(x, router, 2), TL.top_k_gates(x_te, router, 2)
    got = TL.mixture_ridge_mse(feats, soft, y, feats_te, soft_te, y_te, ridge).numpy()
    for seed in range(s):  # prediction sum_m g_m <a_m, phi_m>: least squares on [G*Phi; sqrt(lambda n) I]
        phi = np.hstack([soft[seed, :, e, None].numpy() * feats[seed, e].numpy() for e in range(m)])
        phi_te = np.hstack([soft_te[seed, :, e, None].numpy() * feats_te[seed, e].numpy() for e in range(m)])
        a = np.vstack([phi, math.sqrt(ridge * n) * np.eye(m * f)])
        coef = np.linalg.lstsq(a, np.concatenate([y[seed].numpy(), np.zeros(m * f)]), rcond=None)[0]
        assert got[seed] == pytest.approx(np.mean((phi_te @ coef - y_te[seed].numpy()) ** 2), rel=1e-9)


def test_router_step_of_two_layer_experts_ascends_the_mixture_output_by_autograd():
    gen = torch.Generator().manual_seed(1)
    s, m, j, b, d, lr = 2, 3, 4, 32, 5, 0.7
    u = torch.randn(s, m, j, d, generator=gen, dtype=F64)
    u /= u.norm(dim=-1, keepdim=True)
    x, y = torch.randn(s, b, d, generator=gen, dtype=F64), torch.randn(s, b, generator=gen, dtype=F64)
    router = 0.5 * torch.randn(s, m, d, generator=gen, dtype=F64)
    w = router.clone().requires_grad_(True)
    sig = _h3(torch.einsum("sbd,smjd->sbmj", x, u)).mean(-1)  # each expert: the mean of its neurons
    objective = (y.unsqueeze(-1) * torch.softmax(torch.einsum("sbd,smd->sbm", x, w), -1) * sig).sum() / b
    (grad,) = torch.autograd.grad(objective, w)
    free = router.clone()
    TL._router_step(free, u, x, y, hermite_activation("h3"), lr, clip=1e6)
    torch.testing.assert_close(free, router + lr * grad, rtol=0, atol=1e-12)
    one, reference = router.clone(), router.clone()  # one neuron per expert: the default pipeline's router step
    TL._router_step(one, u[:, :, :1], x, y, hermite_activation("h3"), lr, clip=0.1)
    SIM.router_step(reference, u[:, :, 0], x, y, hermite_activation("h3"), lr, clip=0.1)
    torch.testing.assert_close(one, reference, rtol=0, atol=1e-12)


def test_tiny_two_layer_run_recovers_the_cluster_directions_and_is_deterministic():
    cfg, dev = K.config("tiny"), torch.device("cpu")
    with runtime.precision(dev):  # float64, as `moetheory reproduce` and the chapters run it
        first = TL.run_two_layer(cfg, dev, width=4, top_k=2)
        assert first == TL.run_two_layer(cfg, dev, width=4, top_k=2)
    s = cfg.n_seeds
    assert first["stage1_recovered"] == [1.0] * s  # every w_c found by some neuron on every seed
    for key in ("routing_purity", "expert_purity", "router_boundary_alignment", "expert_specialisation",
                "moe_best_global_overlap"):
        assert len(first[key]) == s and all(-1.0 <= v <= 1.0 for v in first[key]), key
    assert all(v >= 0.5 for v in first["routing_purity"])  # at least the largest cluster's share (C = 2, equal)
    assert all(v > 0 for v in first["moe_mse"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=0), "width must be an integer >= 1"),
    (dict(top_k=9), "top_k must be an integer in [1, 8]"),
    (dict(top_k=1.5), "top_k must be an integer"),
])
def test_two_layer_validation_names_the_parameter_and_range(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TL.run_two_layer(K.config("tiny"), torch.device("cpu"), **kwargs)
