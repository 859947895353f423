"""The MoE layer: a router, batched experts, and sort-based top-k dispatch (the MoE primer chapter).

``y(x) = sum over the top-k experts e of weight_e(x) * f_e(x)``; every expert computes only on the rows routed to
it. Parameters carry a leading seed dimension, so ``n_seeds`` independent models train in one step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from moetheory.experts import BatchedMLP
from moetheory.routing import Router, Routing, combine, dense_combine, dispatch, plan_dispatch


class MoELayer(nn.Module):
    """Top-k MoE with MLP experts: ``(S, n, d_in) -> (S, n, d_out)``; ``(n, d_in)`` is accepted when S = 1.

    After a forward pass, ``last_routing`` holds the :class:`~moetheory.routing.Routing` (index, weight, logits).
    """

    def __init__(self, d_in: int, d_out: int, n_experts: int, hidden: Sequence[int] = (16,), *, k: int = 1,
                 n_seeds: int = 1, activation: str = "relu", noise: str = "none", combine: str = "softmax",
                 router_init_std: float = 0.0):
        super().__init__()
        self.router = Router(d_in, n_experts, k, n_seeds=n_seeds, noise=noise, combine=combine,
                             init_std=router_init_std)
        self.experts = BatchedMLP(n_seeds, n_experts, d_in, hidden, d_out, activation=activation)
        self.last_routing: Routing | None = None

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        squeeze = x.dim() == 2
        if squeeze:
            x = x.unsqueeze(0)
        routing = self.router(x, generator)
        plan = plan_dispatch(routing.index, self.router.n_experts)
        out = combine(self.experts(dispatch(x, plan)), plan, routing.weight)
        self.last_routing = routing
        return out.squeeze(0) if squeeze else out

    def forward_dense(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reference path: every expert on every row, then masked. Same result, E/k times the expert work."""
        routing = self.router(x, generator)
        all_outputs = self.experts(x.unsqueeze(1).expand(-1, self.router.n_experts, -1, -1))
        return dense_combine(all_outputs, routing)


class DenseMLP(nn.Module):
    """A dense MLP baseline with the same seed batching: ``(S, n, d_in) -> (S, n, d_out)``."""

    def __init__(self, d_in: int, d_out: int, hidden: Sequence[int], *, n_seeds: int = 1, activation: str = "relu"):
        super().__init__()
        self.net = BatchedMLP(n_seeds, 1, d_in, hidden, d_out, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 2
        if squeeze:
            x = x.unsqueeze(0)
        out = self.net(x.unsqueeze(1)).squeeze(1)
        return out.squeeze(0) if squeeze else out
