"""Property tests of the MoE core: sort-based dispatch + combine equals the dense masked computation."""

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
