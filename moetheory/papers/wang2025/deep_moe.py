"""Stacked MoE networks H^{L,E}_{l,m} of Wang & E (2025), their dense baselines, training, and the explicit
construction of Theorem 4.8 / Corollary 4.9 (chapter wang2025).

What a layer outputs. The state is ``h = (x, 1, u)``: the input x (passed forward unchanged, as the paper's
construction passes x on), a constant 1 (so a gate without bias can place its cell boundaries), and c accumulator
channels u (``d_out``: 1 for a scalar target, 2 for the paper's tuple output of eq. (4); u = 0 at the input).
A layer routes ``h`` top-1 and adds the chosen expert's output to u:
``u <- u + w(h) f^(e)(h)`` with ``f^(e)`` an l-layer width-m ReLU net ``R^p -> R^c``. The network's output is u after
L layers. ``stack="parallel"`` feeds every layer the input state instead (a sum of L shallow MoEs: routing
without composition), the control for the separability finding.

Combine weight for top-1: ``"softmax"`` (default for training) multiplies the expert by the top softmax
probability, so the gate receives gradients; the paper's renormalised top-1 weight is identically 1 (``"hard"``),
which gives the gate no gradient and is used for the untrained construction.

Slots. Every parameter has a leading slot axis; a slot is one (width, seed) pair. Different widths share one
tensor of the largest width: hidden units beyond a slot's width start at zero in and out, get zero gradient
(ReLU'(0) = 0), and so stay zero under Adam, which makes the slot exactly a width-m network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from moetheory.checks import check_choice, check_float, check_int
from moetheory.experts import BatchedMLP
from moetheory.moe import DenseMLP
from moetheory.routing import Router, Routing, combine, dispatch, plan_dispatch

GATES = ("linear", "mlp")
WEIGHTS = ("softmax", "hard", "straight")
STACKS = ("serial", "parallel")


def mask_widths_(mlp: BatchedMLP, widths: Sequence[int]) -> None:
    """In place: make slot s of ``mlp`` (``(S, E, ...)`` parameters) a net of hidden width ``widths[s]``.

    Units past the width get zero incoming weights, bias and outgoing weights; outgoing weights of the kept units
    are rescaled to ``nn.Linear``'s init at the true fan-in.
    """
    layers = mlp.layers
    m_max = layers[0].weight.shape[-1]
    if len(widths) != layers[0].weight.shape[0]:
        raise ValueError(f"widths must have one entry per slot ({layers[0].weight.shape[0]}); got {len(widths)}")
    with torch.no_grad():
        for s, w in enumerate(widths):
            check_int("width", w, 1, m_max)
            for i, layer in enumerate(layers):
                if i < len(layers) - 1:  # hidden layer: drop units >= w
                    layer.weight[s, ..., w:] = 0
                    layer.bias[s, ..., w:] = 0
                if i > 0:  # fan-in from a hidden layer: drop inputs >= w, rescale the rest
                    layer.weight[s, :, w:, :] = 0
                    layer.weight[s, :, :w, :] *= math.sqrt(m_max / w)
                    layer.bias[s] *= math.sqrt(m_max / w)


class RoutedLayer(nn.Module):
    """One top-1 (or top-k) MoE layer on the state: ``(S, n, p) -> (S, n, c)`` (the increment of u).

    The linear gate is :class:`moetheory.routing.Router` and the experts :class:`moetheory.experts.BatchedMLP`, as in
    :class:`moetheory.moe.MoELayer`; adds an MLP gate (which replaces the linear one) and the hard weight.
    """

    def __init__(self, state: int, d_out: int, n_experts: int, hidden: Sequence[int], *, n_slots: int = 1,
                 k: int = 1, gate: str = "linear", gate_hidden: int = 16, weight: str = "softmax",
                 router_init_std: float = 1.0):
        super().__init__()
        self.gate = check_choice("gate", gate, GATES)
        self.weight = check_choice("weight", weight, WEIGHTS)
        self.n_experts, self.k = check_int("n_experts", n_experts, 1), check_int("k", k, 1, n_experts)
        if gate == "linear":
            self.router = Router(state, n_experts, k, n_seeds=n_slots, combine="softmax", init_std=router_init_std)
        else:  # draw what a linear gate's initialisation draws: the experts start the same whichever the gate
            torch.randn(n_slots, n_experts, state)
        self.experts = BatchedMLP(n_slots, n_experts, state, hidden, d_out)
        if gate == "mlp":
            self.gate_mlp = BatchedMLP(n_slots, 1, state, (gate_hidden,), n_experts)
        self.last_routing: Routing | None = None

    def routing(self, h: torch.Tensor) -> Routing:
        if self.gate == "linear":
            r = self.router(h)
        else:
            logits = self.gate_mlp(h.unsqueeze(1)).squeeze(1)  # (S, n, E)
            value, index = torch.topk(logits, self.k, dim=-1)
            w = torch.softmax(logits, -1).gather(-1, index)
            r = Routing(index=index, weight=w / w.sum(-1, keepdim=True) if index.shape[-1] > 1 else w,
                        logits=logits)
        if self.weight == "hard":
            r = Routing(index=r.index, weight=torch.ones_like(r.weight) / r.index.shape[-1], logits=r.logits)
        elif self.weight == "straight":  # value 1 (the paper's renormalised top-1), gradient of log softmax
            r = Routing(index=r.index, weight=r.weight / r.weight.detach(), logits=r.logits)
        return r

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        r = self.routing(h)
        plan = plan_dispatch(r.index, self.n_experts)
        self.last_routing = r
        return combine(self.experts(dispatch(h, plan)), plan, r.weight)


class StackedMoE(nn.Module):
    """H^{L,E}_{l,m}: ``n_layers`` routed layers of ``n_experts`` experts with ``n_hidden`` hidden layers (l - 1)
    of width ``max(widths)``; ``(S, n, d_in) -> (S, n)`` (``(S, n, d_out)`` when ``d_out > 1``). ``widths`` gives
    each slot its width."""

    def __init__(self, d_in: int, n_experts: int, widths: Sequence[int], *, n_layers: int = 1, n_hidden: int = 1,
                 gate: str = "linear", gate_hidden: int = 16, weight: str = "softmax",
                 stack: str | Sequence[str] = "serial", k: int = 1, router_init_std: float = 1.0, d_out: int = 1):
        super().__init__()
        self.d_in = check_int("d_in", d_in, 1)
        self.d_out = check_int("d_out", d_out, 1)
        self.n_layers = check_int("n_layers", n_layers, 1)
        widths = [check_int("width", w, 1) for w in widths]
        stacks = [stack] * len(widths) if isinstance(stack, str) else list(stack)
        if len(stacks) != len(widths):
            raise ValueError(f"stack must be one value or one per slot ({len(widths)}); got {len(stacks)}")
        serial = [check_choice("stack", s, STACKS) == "serial" for s in stacks]
        self.register_buffer("serial", torch.tensor(serial).view(-1, 1, 1))  # (S, 1, 1)
        state = d_in + 1 + d_out
        self.layers = nn.ModuleList(
            RoutedLayer(state, d_out, n_experts, (max(widths),) * check_int("n_hidden", n_hidden, 1),
                        n_slots=len(widths), k=k, gate=gate, gate_hidden=gate_hidden, weight=weight,
                        router_init_std=router_init_std / math.sqrt(state))
            for _ in range(n_layers)
        )
        for layer in self.layers:
            mask_widths_(layer.experts, widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.d_out
        h0 = torch.cat([x, torch.ones_like(x[..., :1]), x.new_zeros(*x.shape[:-1], c)], -1)  # (S, n, p)
        h = h0
        for layer in self.layers:
            u = layer(torch.where(self.serial, h, h0))
            h = torch.cat([h[..., :-c], h[..., -c:] + u], -1)
        return h[..., -1] if c == 1 else h[..., -c:]


class DenseNet(nn.Module):
    """A dense ReLU baseline ``(S, n, d_in) -> (S, n)`` (``(S, n, d_out)`` when ``d_out > 1``) with per-slot
    hidden widths (masked like the experts).

    ``separable=True`` makes a block-structured net: one univariate net per input coordinate, outputs summed
    (the structure the eq. (4) sum target has), or with ``d_out = d_in`` block l giving output l (the tuple).
    """

    def __init__(self, d_in: int, widths: Sequence[int], *, n_hidden: int = 1, separable: bool = False,
                 d_out: int = 1):
        super().__init__()
        self.separable = bool(separable)
        self.d_out = check_int("d_out", d_out, 1)
        if separable and d_out not in (1, d_in):
            raise ValueError(f"d_out of a separable net must be 1 (blocks summed) or d_in = {d_in} (block l gives "
                             f"output l); got {d_out}")
        widths = [check_int("width", w, 1) for w in widths]
        hidden = (max(widths),) * check_int("n_hidden", n_hidden, 1)
        if separable:  # one expert slot per coordinate: (S, d_in, n, 1)
            self.net = BatchedMLP(len(widths), d_in, 1, hidden, 1)
        else:
            self.dense = DenseMLP(d_in, d_out, hidden, n_seeds=len(widths))
            self.net = self.dense.net
        mask_widths_(self.net, widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.separable:
            blocks = self.net(x.transpose(1, 2).unsqueeze(-1))[..., 0]  # (S, d_in, n)
            return blocks.sum(1) if self.d_out == 1 else blocks.transpose(1, 2)
        out = self.dense(x)
        return out.squeeze(-1) if self.d_out == 1 else out


@dataclass
class TrainResult:
    """Per-slot test errors after training: ``linf`` and ``mse`` are ``(S,)`` numpy arrays."""

    linf: np.ndarray
    mse: np.ndarray


def _targets(y: torch.Tensor, idx, per_slot: bool) -> torch.Tensor:
    """``y`` at rows ``idx`` ``(S, B)``: ``(S, B[, c])``; with ``per_slot``, y is ``(n, S)``, slot s reads column s."""
    return y[idx, torch.arange(idx.shape[0], device=y.device)[:, None]] if per_slot else y[idx]


SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, iterations: int, schedule: str = "constant", final: float = 0.01) -> float:
    """The step-size factor of step ``step`` (1-based) of ``iterations``: 1 for ``"constant"``; for ``"cosine"``
    ``final + (1 - final) (1 + cos(pi (step - 1) / (iterations - 1))) / 2``, 1 at the first step and ``final`` at the
    last (a decay to ``final`` times the initial step size)."""
    check_choice("schedule", schedule, SCHEDULES)
    iterations = check_int("iterations", iterations, 1)
    step = check_int("step", step, 1, iterations)
    final = check_float("final", final, 0.0, 1.0, low_open=True)
    if schedule == "constant" or iterations == 1:
        return 1.0
    return final + (1 - final) * (1 + math.cos(math.pi * (step - 1) / (iterations - 1))) / 2


def train_regression(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, iterations: int, lr: float = 1e-3,
                     batch_size: int = 128, generator: torch.Generator | None = None, per_slot: bool = False,
                     checkpoints: Sequence[int] = (), on_checkpoint: Callable[[int], None] | None = None,
                     schedule: str = "constant", final_lr: float = 0.01) -> nn.Module:
    """Adam on the squared loss, the paper's recipe; each slot draws its own minibatches from ``(X, y)``.

    ``y`` is ``(n,)``, ``(n, c)`` for a c-output model, or ``(n, S)`` with ``per_slot=True`` (slot s fits column s).
    The loss is the sum over slots of each slot's mean squared error, so slots do not interact.
    ``on_checkpoint(t)`` is called after step t for every t in ``checkpoints`` (one run, several budgets).
    Step t uses the step size ``lr * lr_factor(t, iterations, schedule, final_lr)`` (:func:`lr_factor`; the
    paper's recipe is ``"constant"``).
    """
    n_slots = next(model.parameters()).shape[0]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    marks = {check_int("checkpoint", t, 1, iterations) for t in checkpoints}
    check_choice("schedule", schedule, SCHEDULES)
    check_float("final_lr", final_lr, 0.0, 1.0, low_open=True)
    for step in range(1, check_int("iterations", iterations, 0) + 1):
        idx = torch.randint(X.shape[0], (n_slots, batch_size), generator=generator).to(X.device)
        err = model(X[idx]) - _targets(y, idx, per_slot)
        loss = (err**2).reshape(n_slots, -1).mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if schedule != "constant":
            for group in opt.param_groups:
                group["lr"] = lr * lr_factor(step, iterations, schedule, final_lr)
        opt.step()
        if step in marks and on_checkpoint is not None:
            on_checkpoint(step)
    return model


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, chunk: int = 16384,
             per_slot: bool = False) -> TrainResult:
    """L-infinity and mean squared test error per slot on ``X (n, d)`` and ``y`` as in :func:`train_regression`
    (over all outputs of a c-output model)."""
    n_slots = next(model.parameters()).shape[0]
    parts = []
    for i in range(0, X.shape[0], chunk):
        target = y[i:i + chunk].T if per_slot else y[i:i + chunk]
        parts.append((model(X[i:i + chunk].expand(n_slots, -1, -1)) - target).reshape(n_slots, -1))
    err = torch.cat(parts, 1)
    return TrainResult(linf=err.abs().amax(1).cpu().numpy(), mse=(err**2).mean(1).cpu().numpy())


def construct_circle_moe(n_experts: int, width: int, embedding: torch.Tensor, target) -> RoutedLayer:
    """Corollary 4.9 on the circle in R^D, untrained: an element of H^{2,E}_{2,m} with hard top-1 routing.

    - gate: ``g_i(x) = <c_i, x>`` with c_i the embedded centre of arc i, so argmax picks the nearest centre
      (the arcs of length 2 pi / E are the charts U_i);
    - chart i: ``s = <t_i, x>`` (t_i the embedded tangent at c_i), linear in x, ``s`` in [-a, a], a = sin(pi/E);
    - expert i: the piecewise-linear interpolant, on m equal pieces of [-a, a], of ``s -> target(theta_i +
      arcsin s)`` written as a width-m ReLU net of s (hidden unit j = relu(s - s_j)).

    ``target`` maps angles (tensor) to values. The returned layer maps states ``(1, n, D + 2)`` to ``(1, n, 1)``;
    use :func:`circle_state` to build them.
    """
    check_int("n_experts", n_experts, 2)
    check_int("width", width, 1)
    D = embedding.shape[1]
    layer = RoutedLayer(D + 2, 1, n_experts, (width,), weight="hard", router_init_std=0.0)
    centre = torch.arange(n_experts, dtype=torch.float64) * (2 * math.pi / n_experts)
    a = math.sin(math.pi / n_experts)
    knots = torch.linspace(-a, a, width + 1, dtype=torch.float64)  # (m + 1,)
    values = target(centre[:, None] + torch.arcsin(knots)[None, :])  # (E, m + 1)
    slopes = values.diff(dim=1) / knots.diff()  # (E, m)
    out_w = torch.cat([slopes[:, :1], slopes.diff(dim=1)], 1)  # slope changes at knots 0..m-1
    emb = embedding.double()
    c_vec = torch.stack([centre.cos(), centre.sin()], -1) @ emb  # (E, D)
    t_vec = torch.stack([-centre.sin(), centre.cos()], -1) @ emb  # (E, D)
    zeros = torch.zeros(n_experts, 2, dtype=torch.float64)
    with torch.no_grad():
        layer.router.weight.copy_(torch.cat([c_vec, zeros], 1)[None])
        hidden, output = layer.experts.layers
        w_in = torch.cat([t_vec, zeros], 1)  # (E, D + 2)
        hidden.weight.copy_(w_in[:, :, None].expand(-1, -1, width)[None])
        hidden.bias.copy_((-knots[:-1])[None, None, None, :].expand(1, n_experts, 1, width))
        output.weight.copy_(out_w[None, :, :, None])
        output.bias.copy_(values[:, :1][None, :, None, :])
    return layer


def circle_state(X: torch.Tensor) -> torch.Tensor:
    """The state ``(x, 1, 0)`` of points ``(n, D)`` as ``(1, n, D + 2)``."""
    return torch.cat([X, torch.ones_like(X[:, :1]), torch.zeros_like(X[:, :1])], -1)[None]
