"""Time one full-batch training epoch of Chen et al.'s cubic MoE on S1 (16,000 examples), one CPU thread.

ours: :mod:`moetheory.papers.chen2022.patch_moe` with ``--seeds`` runs batched in one step, top-1 dispatch by
sort, the patch CNN computed on blocks of tiles gathered just in time (reported per seed; one epoch of
``train_moe``, everything it does per epoch included, the final evaluation excluded).

reference: a plain implementation of the official maths for one run: eight
``Conv1d(1, 16, 50, stride=50)`` experts evaluated on every row in a Python loop, the linear router on the patch
sum plus U[0, 1) noise, top-1 mask, the raw noisy gate times the expert output, softmax + cross-entropy,
normalized GD on each expert and SGD on the router. The two are timed in turns (medians), so that both see the
same load on a shared machine. Both compute in the dtype the chapter computes in on a CPU (float64:
:func:`moetheory.runtime.compute_dtype`), unless ``--dtype`` says otherwise.

    python benchmarks/chen2022.py --json    # one JSON line
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from moetheory import runtime
from moetheory.data import make_chen_clusters
from moetheory.papers.chen2022 import patch_moe


class ReferenceMoE(nn.Module):
    """Every expert on every row (dense), as the official notebooks compute it."""

    def __init__(self, dim=50, n_patches=4, n_experts=8, n_filters=16):
        super().__init__()
        self.experts = nn.ModuleList(nn.Conv1d(1, n_filters, dim, dim) for _ in range(n_experts))
        with torch.no_grad():
            for conv in self.experts:
                conv.weight.mul_(1e-3)
                conv.bias.mul_(1e-3)
        self.router = nn.Conv1d(1, n_experts, dim, dim, bias=False)
        nn.init.zeros_(self.router.weight)
        self.half = n_filters // 2

    def forward(self, x):  # x (n, 1, P * d)
        h = self.router(x).sum(2)  # (n, E): <theta_m, sum_p x_p>
        gate, index = (h + torch.rand_like(h)).max(-1)
        mask = F.one_hot(index, len(self.experts)).to(x.dtype)  # (n, E)
        out = 0
        for m, conv in enumerate(self.experts):
            z = (conv(x) ** 3).sum(2)  # (n, F)
            logits = torch.stack([z[:, :self.half].sum(1), z[:, self.half:].sum(1)], 1)
            out = out + (gate * mask[:, m]).unsqueeze(1) * logits
        return torch.softmax(out, 1)


def reference_epoch(model, x, y, lr=1e-3, router_lr=0.1):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        for conv in model.experts:
            norm = conv.weight.grad.norm() + conv.bias.grad.norm()
            for p in (conv.weight, conv.bias):
                p -= lr * p.grad / norm
        model.router.weight -= router_lr * model.router.weight.grad


def epoch_times():
    """Wrap ``range(epochs)`` as ``train_moe``'s ``progress``: the seconds between the starts of successive epochs
    (one whole training epoch each: forward, loss, stopping rule, backward, updates) go into the returned list."""
    times = []

    def wrap(iterable):
        last = None
        for item in iterable:
            now = time.perf_counter()
            if last is not None:
                times.append(now - last)
            last = now
            yield item

    return wrap, times


def measure(data, seeds, repeats, epochs=4):
    """Medians (ms) of the reference epoch and of ours per seed, interleaved so both see the same machine load."""
    torch.manual_seed(0)
    reference = ReferenceMoE()
    x, y = data.train_x.reshape(len(data.train_x), 1, -1), data.train_y
    reference_epoch(reference, x, y)  # warm up
    model = patch_moe.make_moe(seeds, 50, activation="cubic", seed=0)
    patch_moe.train_moe(model, data, epochs=2, stop_margin=1e9, stop_loss=-1.0)  # warm up
    ref_times, our_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        reference_epoch(reference, x, y)
        ref_times.append(time.perf_counter() - start)
        wrap, times = epoch_times()
        patch_moe.train_moe(model, data, epochs=epochs + 1, stop_margin=1e9, stop_loss=-1.0, progress=wrap)
        our_times.extend(t / seeds for t in times)
    return statistics.median(our_times) * 1000, statistics.median(ref_times) * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds batched in our step (default 10, as paper)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=str(runtime.compute_dtype("cpu"))[6:],
                        help="floating type of both (default: the chapters' on a CPU, %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    threads = runtime.set_threads(1)
    torch.set_default_dtype(getattr(torch, args.dtype))  # data, models and the reference are made in it
    data = make_chen_clusters("S1")
    ours, ref = measure(data, args.seeds, args.repeats)
    out = {"ours_ms_per_epoch_per_seed": round(ours, 2), "reference_ms_per_epoch": round(ref, 2),
           "ratio": round(ref / ours, 1), "seeds": args.seeds, "threads": threads, "dtype": args.dtype}
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
