"""Batched experts: parameters carry leading (seed, expert) dimensions; one ``matmul`` serves them all.

Inputs are expert buffers ``(S, E, rows, d)`` from :func:`moetheory.routing.dispatch` (or every row for a dense
reference). There is no Python loop over experts or seeds. The MoE primer chapter introduces them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from moetheory.activations import get_activation
from moetheory.checks import check_int


class BatchedLinear(nn.Module):
    """``(S, E, rows, d_in) -> (S, E, rows, d_out)`` with independent weights per (seed, expert).

    Initialised like ``nn.Linear`` (uniform in +-1/sqrt(d_in)), times ``init_scale``.
    """

    def __init__(self, n_seeds: int, n_experts: int, d_in: int, d_out: int, *, bias: bool = True,
                 init_scale: float = 1.0):
        super().__init__()
        for name, value in (("n_seeds", n_seeds), ("n_experts", n_experts), ("d_in", d_in), ("d_out", d_out)):
            check_int(name, value, 1)
        bound = init_scale / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n_seeds, n_experts, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_seeds, n_experts, 1, d_out).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.matmul(x, self.weight)  # (S, E, rows, d_out)
        return out if self.bias is None else out + self.bias


class BatchedMLP(nn.Module):
    """A ReLU (or other activation) MLP per (seed, expert): ``d_in -> hidden... -> d_out``."""

    def __init__(self, n_seeds: int, n_experts: int, d_in: int, hidden: Sequence[int], d_out: int, *,
                 activation: str = "relu", init_scale: float = 1.0):
        super().__init__()
        self.act = get_activation(activation)
        sizes = [d_in, *hidden, d_out]
        self.layers = nn.ModuleList(
            BatchedLinear(n_seeds, n_experts, a, b, init_scale=init_scale) for a, b in zip(sizes, sizes[1:])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


def count_parameters(module: nn.Module, per: int = 1) -> int:
    """Number of scalar parameters, divided by ``per`` (e.g. the number of seeds sharing the module)."""
    total = sum(p.numel() for p in module.parameters())
    return total // per
