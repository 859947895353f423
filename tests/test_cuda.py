"""The CUDA path: the MoE core and every registered paper's ``tiny`` preset on a GPU (skipped without CUDA).

On a machine with a GPU: ``pytest -q -p no:xdist tests/test_cuda.py`` (a few minutes; not yet measured).
``make gpu-check`` (benchmarks/gpu_check.py) runs the larger presets and compares them with the CPU records in
``results/``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from moetheory import papers, runtime
from moetheory.moe import MoELayer
from moetheory.reproduce import RESULTS_DIR, reproduce
from moetheory.routing import Router, _noise_like, plan_dispatch

if not torch.cuda.is_available():
    pytest.skip("CUDA is not available here: tests/test_cuda.py exercises the GPU path and needs a CUDA device",
                allow_module_level=True)

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _auto_dtype(monkeypatch):
    monkeypatch.delenv(runtime.ENV_DTYPE, raising=False)  # the float32-on-CUDA default, whatever the shell says


@pytest.fixture
def dev() -> torch.device:
    return runtime.resolve_device("cuda")


def test_cuda_resolves_indexed_and_computes_in_float32(dev):
    assert dev.index == torch.cuda.current_device()
    assert runtime.compute_dtype(dev) == torch.float32
    with runtime.precision(dev):
        assert torch.randn(2, device=dev).dtype == torch.float32
    tensor_device = torch.zeros(1, device=dev).device
    assert torch.Generator(device=dev).device == tensor_device
    assert runtime.same_device(torch.Generator(device="cuda").device, tensor_device)  # reports plain "cuda"


@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
@pytest.mark.parametrize("where", ["cuda", "indexed"])
def test_noise_from_a_cuda_generator_is_drawn_on_the_gpu(dev, kind, where):
    t = torch.zeros(3, 40, 5, device=dev)
    generator = torch.Generator(device="cuda" if where == "cuda" else dev)
    a = _noise_like(t, kind, generator.manual_seed(0))
    b = _noise_like(t, kind, generator.manual_seed(0))
    assert a.device == t.device and a.dtype == torch.float32
    assert torch.equal(a, b)  # the same seed gives the same noise
    if kind == "uniform":
        assert 0 <= float(a.min()) and float(a.max()) < 1
    else:
        assert abs(float(a.mean())) < 0.3 and 0.7 < float(a.std()) < 1.3


def test_noisy_router_runs_with_an_unindexed_cuda_generator(dev):
    """The defect `moetheory reproduce chen2022 --device cuda` hit: a CUDA generator made from plain "cuda"."""
    router = Router(4, 3, 1, n_seeds=2, noise="uniform", combine="raw", noise_at_eval=True).to(dev)
    x = torch.randn(2, 50, 4, device=dev)
    routing = router(x, torch.Generator(device="cuda").manual_seed(1))
    assert routing.index.device == x.device and routing.index.shape == (2, 50, 1)


def _sparse_and_dense(layer: MoELayer, x: torch.Tensor, seed: int):
    """Outputs and parameter gradients of the sort-based path and of the dense masked reference."""
    results = []
    for forward in (layer.forward, layer.forward_dense):
        layer.zero_grad(set_to_none=True)
        out = forward(x, torch.Generator(device=x.device).manual_seed(seed))
        out.pow(2).mean().backward()
        results.append((out.detach(), [p.grad.clone() for p in layer.parameters() if p.grad is not None]))
    return results


@pytest.mark.parametrize(("k", "noise", "combine"), [(1, "none", "softmax"), (2, "gaussian", "softmax"),
                                                      (1, "uniform", "raw"), (3, "none", "softmax")])
def test_sparse_equals_dense_on_cuda_forward_and_backward(dev, k, noise, combine):
    torch.manual_seed(0)
    with runtime.precision(dev):
        layer = MoELayer(6, 3, 5, (16,), k=k, n_seeds=3, noise=noise, combine=combine, router_init_std=1.0).to(dev)
        x = torch.randn(3, 300, 6, device=dev)
    assert all(p.dtype == torch.float32 and p.device == x.device for p in layer.parameters())
    (sparse, sparse_grads), (dense, dense_grads) = _sparse_and_dense(layer, x, seed=7)
    assert sparse.dtype == torch.float32 and torch.isfinite(sparse).all()
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)
    assert len(sparse_grads) == len(dense_grads) >= 3  # the router and every expert layer
    for got, want in zip(sparse_grads, dense_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_cuda_float32_matches_cpu_float64_without_noise(dev):
    """The same parameters and inputs on both devices: same routing, outputs and gradients to float32 accuracy."""
    torch.manual_seed(1)
    cpu_layer = MoELayer(6, 2, 4, (8,), k=2, n_seeds=2, router_init_std=1.0).double()
    x = torch.randn(2, 64, 6, dtype=torch.float64)
    gpu_layer = MoELayer(6, 2, 4, (8,), k=2, n_seeds=2).to(dev)
    gpu_layer.load_state_dict({name: t.float() for name, t in cpu_layer.state_dict().items()})
    outputs, grads = [], []
    for layer, inputs in ((cpu_layer, x), (gpu_layer, x.float().to(dev))):
        out = layer(inputs)
        out.pow(2).mean().backward()
        outputs.append(out.detach().cpu().double())
        grads.append([p.grad.cpu().double() for p in layer.parameters()])
    assert torch.equal(gpu_layer.last_routing.index.cpu(), cpu_layer.last_routing.index)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)


def test_dispatch_plan_on_cuda_equals_the_cpu_plan(dev):
    """The plan is integer arithmetic and a stable sort: identical on both devices."""
    index = torch.randint(0, 6, (3, 500, 2), generator=torch.Generator().manual_seed(0))
    on_cpu, on_gpu = plan_dispatch(index, 6), plan_dispatch(index.to(dev), 6)
    for name in ("order", "seed", "expert", "slot", "token", "counts"):
        assert torch.equal(getattr(on_gpu, name).cpu(), getattr(on_cpu, name)), name
    assert (on_gpu.capacity, on_gpu.n_tokens) == (on_cpu.capacity, on_cpu.n_tokens)


# Metrics whose value may be infinite by definition: wang2025's gate offset when a gate never switches on [-1, 1]
# (papers/wang2025._boundary). Every other metric must be finite.
MAY_BE_INFINITE = {"offset"}


def _numbers(value, key=None):
    """Every float in a nested JSON-like value, with the name of the dict entry it sits under."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _numbers(item, name)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _numbers(item, key)
    elif isinstance(value, float):
        yield key, value


@pytest.mark.parametrize("name", sorted(papers.registry()))
def test_tiny_preset_on_cuda(name):
    default = torch.get_default_dtype()
    report = reproduce(name, "tiny", "cuda")
    assert torch.get_default_dtype() == default  # the float32 default was confined to the run
    assert report.dtype == "float32" and report.device.startswith("cuda (")
    claims = list(report.claims)
    assert claims and all(c.id.startswith(f"{name}/") for c in claims)
    on_cpu = reproduce(name, "tiny", "cpu").claims  # which experiments a preset runs does not depend on the device
    assert [c.id for c in claims if c.ran] == [c.id for c in on_cpu if c.ran] != []
    record = RESULTS_DIR / f"{name}-quick.json"
    if record.exists():  # tiny lists the same claims as the CPU record
        assert [c.id for c in claims] == [c["id"] for c in json.loads(record.read_text())["claims"]]
    values = [c.reproduced for c in claims if isinstance(c.reproduced, float)]
    assert all(math.isfinite(v) for v in values), values
    metrics = json.loads(json.dumps(report.to_json()["metrics"]))  # JSON-ready, as the CLI writes it
    numbers = list(_numbers(metrics))
    assert numbers
    bad = [(key, v) for key, v in numbers if not (math.isfinite(v) or (key in MAY_BE_INFINITE and v == math.inf))]
    assert not bad, bad
