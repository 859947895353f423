"""Property tests of the MoE core: sort-based dispatch + combine equals the dense masked computation."""

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moetheory.experts import BatchedMLP, count_parameters, get_activation
from moetheory.moe import DenseMLP, MoELayer
from moetheory.routing import Router, _noise_like, combine, dense_combine, dispatch, plan_dispatch

shapes = st.tuples(
    st.integers(1, 3),  # seeds
    st.integers(1, 40),  # tokens
    st.integers(1, 6),  # experts
    st.integers(1, 5),  # d_in
    st.integers(1, 3),  # d_out
)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes, data=st.data())
def test_sparse_equals_dense_for_random_shapes_and_k(shapes, data):
    s, n, e, d, o = shapes
    k = data.draw(st.integers(1, e), label="k")
    noise = data.draw(st.sampled_from(["none", "uniform", "gaussian"]), label="noise")
    combine_rule = data.draw(st.sampled_from(["softmax", "raw"]), label="combine")
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    layer = MoELayer(d, o, e, (4,), k=k, n_seeds=s, noise=noise, combine=combine_rule, router_init_std=1.0).double()
    x = torch.randn(s, n, d, dtype=torch.float64)
    gen = data.draw(st.integers(0, 2**16), label="noise seed")
    sparse = layer(x, torch.Generator().manual_seed(gen))
    dense = layer.forward_dense(x, torch.Generator().manual_seed(gen))
    torch.testing.assert_close(sparse, dense, rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(s=st.integers(1, 3), n=st.integers(0, 30), e=st.integers(1, 5), data=st.data())
def test_plan_puts_every_assignment_in_its_own_slot(s, n, e, data):
    k = data.draw(st.integers(1, e))
    index = torch.stack([torch.stack([torch.randperm(e)[:k] for _ in range(n)]) if n else
                         torch.zeros(0, k, dtype=torch.long) for _ in range(s)])
    plan = plan_dispatch(index, e)
    assert plan.counts.sum() == s * n * k
    assert torch.equal(plan.counts, torch.stack([torch.bincount(index[i].reshape(-1), minlength=e)
                                                 for i in range(s)]))
    slots = set(zip(plan.seed.tolist(), plan.expert.tolist(), plan.slot.tolist()))
    assert len(slots) == s * n * k  # no two assignments share a buffer row
    assert all(sl < plan.capacity for sl in plan.slot.tolist())
    # The chosen expert of each (seed, token) assignment matches the index it came from.
    flat = index.reshape(-1)[plan.order]
    assert torch.equal(flat, plan.expert)


@pytest.mark.parametrize("k", [1, 2])
def test_gradients_reach_router_and_every_expert(k):
    torch.manual_seed(0)
    layer = MoELayer(3, 2, 4, (5,), k=k, n_seeds=2, router_init_std=0.1)
    x = torch.randn(2, 400, 3)
    layer(x).pow(2).sum().backward()
    assert layer.router.weight.grad.abs().sum() > 0
    for p in layer.experts.parameters():
        per_expert = p.grad.abs().flatten(2).sum(-1)  # (S, E)
        assert (per_expert > 0).all(), "an expert received no gradient"


def test_expert_computes_only_routed_rows():
    torch.manual_seed(1)
    n, e = 1000, 8
    index = torch.randint(0, e, (1, n, 1))
    plan = plan_dispatch(index, e)
    buffer = dispatch(torch.randn(1, n, 3), plan)
    assert buffer.shape[2] == plan.capacity < n  # far fewer rows per expert than the dense E x n
    y = combine(torch.ones(1, e, plan.capacity, 1), plan, torch.ones(1, n, 1))
    assert torch.equal(y, torch.ones(1, n, 1))  # every token gets exactly its own expert's row


def test_dense_combine_matches_manual_sum():
    out = torch.arange(2 * 3 * 4, dtype=torch.float64).view(1, 3, 4, 2)  # (S, E, n, o)
    idx = torch.tensor([[[2, 0], [1, 2], [0, 1], [2, 1]]])
    w = torch.tensor([[[0.7, 0.3], [0.5, 0.5], [1.0, 0.0], [0.2, 0.8]]], dtype=torch.float64)
    from moetheory.routing import Routing

    got = dense_combine(out, Routing(idx, w, torch.zeros(1, 4, 3)))
    want = torch.stack([sum(w[0, t, j] * out[0, idx[0, t, j], t] for j in range(2)) for t in range(4)])
    torch.testing.assert_close(got[0], want)


def test_validation_names_parameters():
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 4\]; got 5"):
        Router(3, 4, k=5)
    with pytest.raises(ValueError, match="noise must be one of 'none', 'uniform', 'gaussian'"):
        Router(3, 4, noise="laplace")
    with pytest.raises(ValueError, match="activation must be one of"):
        get_activation("swish")
    with pytest.raises(ValueError, match="index must have shape"):
        plan_dispatch(torch.zeros(3, dtype=torch.long), 2)


def test_parameter_counts_and_dense_baseline():
    moe = MoELayer(2, 1, 4, (8,), n_seeds=3)
    per_seed = count_parameters(moe, per=3)
    assert per_seed == 4 * 2 + 4 * ((2 * 8 + 8) + (8 * 1 + 1))  # router + 4 experts
    dense = DenseMLP(2, 1, (8,), n_seeds=3)
    assert dense(torch.randn(3, 5, 2)).shape == (3, 5, 1)
    assert BatchedMLP(3, 4, 2, (8,), 1)(torch.randn(3, 4, 5, 2)).shape == (3, 4, 5, 1)


@given(s=st.integers(2, 4), n=st.integers(1, 30), e=st.integers(1, 6), seed=st.integers(0, 99))
@settings(max_examples=20, deadline=None)
def test_router_on_inputs_shared_by_seeds_matches_per_seed_inputs(s, n, e, seed):
    """The one-product path for ``x.expand(S, n, d)`` and the top-1 path (max) give the same routing, gradients too."""
    g = torch.Generator().manual_seed(seed)
    router = Router(5, e, 1, n_seeds=s, noise="uniform", combine="raw", init_std=1.0)
    x = torch.randn(n, 5, generator=g)
    shared = router(x.expand(s, n, 5), generator=torch.Generator().manual_seed(seed))
    copied = router(x.expand(s, n, 5).contiguous(), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(shared.logits, copied.logits)
    assert torch.equal(shared.index, copied.index)
    noisy = copied.logits + torch.rand(s, n, e, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(copied.index, torch.topk(noisy, 1, dim=-1).indices)
    (grad,) = torch.autograd.grad(shared.weight.sum(), router.weight)
    (expected,) = torch.autograd.grad(copied.weight.sum(), router.weight)
    torch.testing.assert_close(grad, expected)


class _FakeCudaGenerator:
    """What ``torch.Generator(device="cuda")`` looks like to routing: its device carries no index."""

    device = torch.device("cuda")


@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
def test_noise_is_drawn_on_the_tensor_device_with_an_unindexed_cuda_generator(monkeypatch, kind):
    """A CUDA generator reports ``cuda`` while tensors sit on ``cuda:0``: that is the same device, so the noise is
    drawn there directly (comparing with ``!=`` drew it on the CPU with the CUDA generator, which torch rejects)."""
    calls = []

    def fake_draw(shape, generator=None, device=None, dtype=None):
        calls.append({"generator": generator, "device": device, "dtype": dtype})
        return torch.zeros(shape, dtype=dtype)

    monkeypatch.setattr(torch, "rand", fake_draw)
    monkeypatch.setattr(torch, "randn", fake_draw)
    t = SimpleNamespace(shape=(2, 3, 4), device=torch.device("cuda", 0), dtype=torch.float32)  # a cuda:0 tensor
    gen = _FakeCudaGenerator()
    out = _noise_like(t, kind, gen)
    assert calls == [{"generator": gen, "device": torch.device("cuda", 0), "dtype": torch.float32}]
    assert out.shape == (2, 3, 4)


def test_noise_from_a_generator_on_another_device_is_drawn_there_and_moved():
    x = torch.zeros(2, 5, dtype=torch.float64, device="meta")  # a device other than the generator's
    noise = _noise_like(x, "uniform", torch.Generator())
    assert noise.device.type == "meta" and noise.dtype == torch.float64


def _routing(index, logits):
    from moetheory.routing import Routing

    index = torch.tensor(index).view(1, len(index), -1)  # (1, n, k)
    logits = torch.tensor(logits, dtype=torch.float64).expand(1, index.shape[1], -1)  # same logits for every token
    return Routing(index, torch.ones(index.shape, dtype=torch.float64), logits)


def test_load_balancing_loss_is_one_at_perfect_balance():
    """E sum_e f_e P_e with f_e = 1/E is sum_e P_e = 1 whatever the router probabilities; with uniform probabilities
    it is 1 whatever the counts."""
    from moetheory.routing import Routing, load_balancing_loss

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 8, 4, generator=gen, dtype=torch.float64)  # (S, n, E): three seeds, random router
    balanced = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0]).view(1, 8, 1).expand(3, 8, 1)
    ones = torch.ones(3, 8, 1, dtype=torch.float64)
    torch.testing.assert_close(load_balancing_loss(Routing(balanced, ones, logits)),
                               torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-15)
    top2 = torch.tensor([[0, 1], [2, 3], [1, 0], [3, 2]]).view(1, 4, 2)  # each expert twice among 8 assignments
    top2_loss = load_balancing_loss(Routing(top2, ones[:1, :4].expand(1, 4, 2), logits[:1, :4]))
    assert float(top2_loss[0]) == pytest.approx(1.0)
    skewed = torch.zeros(1, 8, 1, dtype=torch.long)  # every token on expert 0, uniform probabilities
    uniform = torch.zeros(1, 8, 4, dtype=torch.float64)
    assert float(load_balancing_loss(Routing(skewed, ones[:1], uniform))[0]) == pytest.approx(1.0)


@pytest.mark.parametrize(("index", "logits", "want"), [
    ([0, 0, 0, 1], [math.log(3), 0.0], 5 / 4),  # f = P = (3/4, 1/4): 2 (9/16 + 1/16)
    ([[0, 1], [0, 2]], [math.log(2), 0.0, 0.0], 9 / 8),  # top-2: f = P = (1/2, 1/4, 1/4): 3 (1/4 + 2/16)
    ([0, 0, 0, 0], [math.log(7), 0.0, 0.0, 0.0], 4 * 7 / 10),  # collapse: f = e_0, P_0 = 7/10: 4 x 7/10
    ([0, 0, 0, 0], [40.0, 0.0, 0.0, 0.0], 4.0),  # full collapse: the maximum, E
])
def test_load_balancing_loss_hand_computed_imbalance(index, logits, want):
    from moetheory.routing import load_balancing_loss

    assert float(load_balancing_loss(_routing(index, logits))[0]) == pytest.approx(want, rel=1e-12)


def test_load_balancing_loss_grows_as_routing_collapses():
    """Send q of 12 tokens to expert 0 (the rest spread evenly) with the router's probability of expert 0 rising
    alongside: the loss rises from 1 to E = 4."""
    from moetheory.routing import load_balancing_loss

    values = []
    for q in (3, 6, 9, 12):
        rest = [1 + i % 3 for i in range(12 - q)]
        p0 = q / 12  # P_0 = f_0, the other experts share the rest evenly
        logits = [math.log(p0), *[math.log((1 - p0) / 3) if p0 < 1 else -50.0] * 3]
        values.append(float(load_balancing_loss(_routing([0] * q + rest, logits))[0]))
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(4.0)
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
