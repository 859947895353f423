"""Sort-based top-k dispatch against the dense masked reference (every expert on every row), forward + backward.

Prints one JSON line: median milliseconds per training step of both paths over repeats, their ratio, and the
settings. The two paths compute the same function (tests/test_moe_core.py checks it); this measures only speed.

    python benchmarks/moe_dispatch.py [--experts 8] [--k 1] [--tokens 8192] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from moetheory import runtime
from moetheory.moe import MoELayer


def step_ms(layer: MoELayer, x: torch.Tensor, dense: bool, repeats: int) -> float:
    forward = layer.forward_dense if dense else layer.forward
    times = []
    for _ in range(repeats + 2):  # two warm-up steps
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        forward(x).pow(2).mean().backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
        layer.zero_grad(set_to_none=True)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=runtime.DEVICES)
    args = parser.parse_args()
    runtime.set_threads(args.threads)
    device = runtime.resolve_device(args.device)
    torch.manual_seed(0)
    layer = MoELayer(args.d, args.d, args.experts, (args.hidden,), k=args.k, n_seeds=args.seeds,
                     router_init_std=1.0).to(device)
    x = torch.randn(args.seeds, args.tokens, args.d, device=device)
    ours = step_ms(layer, x, dense=False, repeats=args.repeats)
    reference = step_ms(layer, x, dense=True, repeats=args.repeats)
    print(json.dumps({"sorted_ms_per_step": round(ours, 2), "dense_ms_per_step": round(reference, 2),
                      "ratio": round(reference / ours, 2), "experts": args.experts, "k": args.k,
                      "tokens": args.tokens, "seeds": args.seeds, "threads": args.threads,
                      "device": runtime.device_description(device)}))


if __name__ == "__main__":
    main()
