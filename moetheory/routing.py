"""Routers and sort-based top-k dispatch/combine (derived in the MoE primer chapter).

Shapes carry a leading seed dimension ``S`` so that many independent runs train in one batched step:
inputs ``(S, n, d)``, router logits ``(S, n, E)``, top-k choices ``(S, n, k)``.

Dispatch sorts the ``S * n * k`` (token, expert) assignments by (seed, expert) and packs them into a buffer
``(S, E, capacity, ...)``, where ``capacity`` is the largest number of rows any expert received: an expert computes
on its own rows (plus zero padding up to the capacity), never on every row as a dense masked MoE does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from moetheory.checks import check_choice, check_float, check_int
from moetheory.runtime import same_device

NOISES = ("none", "uniform", "gaussian")
COMBINES = ("softmax", "raw")


@dataclass
class Routing:
    """One routing decision: chosen experts, their combine weights, and the router's logits."""

    index: torch.Tensor  # (S, n, k) chosen experts, best first
    weight: torch.Tensor  # (S, n, k) combine weights
    logits: torch.Tensor  # (S, n, E) clean logits (before noise)


class Router(nn.Module):
    """A linear router ``h(x) = W x`` with optional noise and top-k selection.

    - ``noise="none"``: plain top-k of the logits. ``k = n_experts`` with ``combine="softmax"`` is the dense
      softmax gating of Jordan & Jacobs (used by Makkuva et al.).
    - ``noise="gaussian"``: noisy top-k gating (Shazeer et al. 2017): ``h + eps * softplus(W_noise x)`` while
      training.
    - ``noise="uniform"``: ``h + U[0, 1)`` as in Chen et al.'s official code (kept at test time there too:
      ``noise_at_eval=True``).

    ``combine="softmax"``: weights are softmax probabilities of the chosen experts (renormalised over the top-k
    when ``k > 1``; for ``k = 1`` the probability itself, as in the Switch Transformer, so gradients reach the
    router). ``combine="raw"``: the (noisy) logit itself multiplies the expert (Chen et al.'s official code).
    """

    def __init__(self, d_in: int, n_experts: int, k: int = 1, *, n_seeds: int = 1, noise: str = "none",
                 combine: str = "softmax", noise_at_eval: bool = False, init_std: float = 0.0):
        super().__init__()
        self.d_in = check_int("d_in", d_in, 1)
        self.n_experts = check_int("n_experts", n_experts, 1)
        self.k = check_int("k", k, 1, n_experts)
        self.n_seeds = check_int("n_seeds", n_seeds, 1)
        self.noise = check_choice("noise", noise, NOISES)
        self.combine = check_choice("combine", combine, COMBINES)
        self.noise_at_eval = bool(noise_at_eval)
        init_std = check_float("init_std", init_std, 0.0)
        self.weight = nn.Parameter(torch.randn(n_seeds, n_experts, d_in) * init_std)  # (S, E, d)
        if noise == "gaussian":
            self.noise_weight = nn.Parameter(torch.zeros(n_seeds, n_experts, d_in))  # (S, E, d)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(S, n, d) -> (S, n, E)``. Inputs shared by every seed (``x.expand(S, n, d)``, stride 0) take one
        ``(n, d) x (d, S E)`` product instead of ``S`` small ones."""
        if x.dim() == 3 and x.shape[0] > 1 and x.stride(0) == 0:
            n_seeds, n_experts = self.weight.shape[:2]
            flat = x[0] @ self.weight.reshape(n_seeds * n_experts, -1).T  # (n, S E)
            return flat.view(x.shape[1], n_seeds, n_experts).transpose(0, 1)
        return torch.einsum("snd,sed->sne", x, self.weight)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Routing:
        clean = self.logits(x)
        noisy = clean
        if self.noise != "none" and (self.training or self.noise_at_eval):
            eps = _noise_like(clean, self.noise, generator)
            if self.noise == "gaussian":
                eps = eps * nn.functional.softplus(torch.einsum("snd,sed->sne", x, self.noise_weight))
            noisy = clean + eps
        value, index = noisy.max(-1, keepdim=True) if self.k == 1 else torch.topk(noisy, self.k, dim=-1)
        if self.combine == "raw":
            weight = value
        else:
            weight = torch.softmax(noisy, dim=-1).gather(-1, index)
            if self.k > 1:
                weight = weight / weight.sum(-1, keepdim=True)
        return Routing(index=index, weight=weight, logits=clean)


def _noise_like(t: torch.Tensor, kind: str, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) or N(0, 1) noise shaped like ``t``, drawn from ``generator`` on the generator's own device."""
    if generator is not None and not same_device(generator.device, t.device):
        raw = torch.rand if kind == "uniform" else torch.randn
        return raw(t.shape, generator=generator, device=generator.device).to(t.device, t.dtype)
    if kind == "uniform":
        return torch.rand(t.shape, generator=generator, device=t.device, dtype=t.dtype)
    return torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype)


@dataclass
class DispatchPlan:
    """Where each (token, choice) assignment goes, sorted by (seed, expert). ``A = S * n * k`` assignments."""

    order: torch.Tensor  # (A,) position of each sorted assignment in the flattened (S, n, k) layout
    seed: torch.Tensor  # (A,)
    expert: torch.Tensor  # (A,)
    slot: torch.Tensor  # (A,) row within the expert's buffer
    token: torch.Tensor  # (A,) token index within its seed
    counts: torch.Tensor  # (S, E) rows per expert
    capacity: int  # max rows of any expert
    n_tokens: int


def sort_into_groups(key: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A stable sort of items by their group ``key`` ``(A,)`` (values in ``[0, n_groups)``): the sorted order
    ``(A,)``, the items per group ``(n_groups,)``, and each sorted item's rank within its group ``(A,)``."""
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(key, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(key.numel(), device=key.device) - torch.repeat_interleave(starts, counts)
    return order, counts, slot


def plan_dispatch(index: torch.Tensor, n_experts: int) -> DispatchPlan:
    """Sort the assignments ``index`` ``(S, n, k)`` by (seed, expert) into a :class:`DispatchPlan`."""
    if index.dim() != 3:
        raise ValueError(f"index must have shape (seeds, tokens, k); got {tuple(index.shape)}")
    n_seeds, n_tokens, k = index.shape
    seed_of = torch.arange(n_seeds, device=index.device).view(-1, 1, 1)
    group = (seed_of * n_experts + index).reshape(-1)  # (A,)
    order, counts, slot = sort_into_groups(group, n_seeds * n_experts)
    # Sorted by (seed, expert): each seed's n k assignments form one block, each group a run of counts[g] rows, so
    # seed and expert follow from repeats, with no gather or integer division over the assignments.
    seed = torch.arange(n_seeds, device=index.device).repeat_interleave(n_tokens * k)
    within = order - seed * (n_tokens * k)  # position in the seed's (n, k) block
    return DispatchPlan(
        order=order,
        seed=seed,
        expert=torch.arange(n_experts, device=index.device).repeat(n_seeds).repeat_interleave(counts),
        slot=slot,
        token=within // k if k > 1 else within,
        counts=counts.view(n_seeds, n_experts),
        capacity=int(counts.max()) if counts.numel() else 0,
        n_tokens=n_tokens,
    )


def dispatch(x: torch.Tensor, plan: DispatchPlan) -> torch.Tensor:
    """Pack rows ``x`` ``(S, n, *f)`` into expert buffers ``(S, E, capacity, *f)`` (zero padded)."""
    n_seeds, n_experts = plan.counts.shape
    buffer = x.new_zeros((n_seeds, n_experts, plan.capacity, *x.shape[2:]))
    return buffer.index_put((plan.seed, plan.expert, plan.slot), x[plan.seed, plan.token])


def combine(y: torch.Tensor, plan: DispatchPlan, weight: torch.Tensor) -> torch.Tensor:
    """Unpack expert outputs ``(S, E, capacity, *o)`` and sum them per token with ``weight`` ``(S, n, k)``."""
    n_seeds = plan.counts.shape[0]
    rows = y[plan.seed, plan.expert, plan.slot]  # (A, *o)
    w = weight.reshape(-1)[plan.order].reshape(-1, *([1] * (rows.dim() - 1)))
    out = rows.new_zeros((n_seeds * plan.n_tokens, *rows.shape[1:]))
    out = out.index_add(0, plan.seed * plan.n_tokens + plan.token, rows * w)
    return out.view(n_seeds, plan.n_tokens, *rows.shape[1:])


def dense_combine(all_outputs: torch.Tensor, routing: Routing) -> torch.Tensor:
    """Reference: every expert on every row ``(S, E, n, *o)``, masked to the chosen ones and weighted."""
    s, e, n = all_outputs.shape[:3]
    extra = all_outputs.shape[3:]
    mask = torch.zeros(s, n, e, dtype=all_outputs.dtype, device=all_outputs.device)
    mask = mask.scatter_add(-1, routing.index, routing.weight.to(all_outputs.dtype))  # (S, n, E)
    return torch.einsum("sne,sen...->sn...", mask, all_outputs).reshape(s, n, *extra)


def load_balancing_loss(routing: Routing) -> torch.Tensor:
    """Switch Transformer auxiliary loss per seed ``(S,)``: ``E * sum_e f_e P_e``.

    ``f_e`` is the fraction of assignments sent to expert e and ``P_e`` the mean router probability of e; it equals
    1 for perfectly balanced routing and grows as routing collapses onto few experts (Fedus et al. 2022).
    """
    n_experts = routing.logits.shape[-1]
    probs = torch.softmax(routing.logits, -1)  # (S, n, E)
    counts = torch.zeros_like(probs).scatter_add(-1, routing.index, torch.ones_like(routing.weight))
    fraction = counts.mean(1) / routing.index.shape[-1]  # (S, E)
    return n_experts * (fraction * probs.mean(1)).sum(-1)
