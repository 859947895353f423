"""Exact linear pieces of a ReLU network or MoE of one input, and its supremum error over an interval (chapter
wang2025, the jump separation).

The J/2 bound is about the supremum over the continuum: a continuous g has ``sup |f - g| >= J/2`` near a jump of size
J of f. A grid cannot check it: a continuous ReLU net can ramp by J between two neighbouring grid points and match f
at every grid point. A ReLU net of one input is piecewise linear, and so is a top-1 MoE with linear gates and
combine weight 1 (``"hard"``, ``"straight"``), which jumps where its routing switches. Here the pieces are found
exactly, layer by layer: on each interval the state is affine in x, ``h = A x + B``; a ReLU layer splits an
interval where a unit's pre-activation changes sign (at ``-B / A``: for one hidden layer, the kinks ``-b_j / w_j``),
a linear gate where two logits cross. :func:`sup_error` then evaluates the error at every breakpoint from both
sides, at the target's jumps from both sides, and on a uniform grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from moetheory.checks import check_float, check_int
from moetheory.papers.wang2025.deep_moe import DenseNet, StackedMoE

__all__ = ["breakpoints", "routing_switches", "sup_error"]


def _split(lo, hi, cuts, owner):
    """Intervals ``[lo, hi]`` cut at ``cuts`` (each strictly inside interval ``owner``): new lo, hi and parent."""
    ids = np.concatenate([np.arange(len(lo)), owner])
    starts = np.concatenate([lo, cuts])
    order = np.lexsort((starts, ids))  # by interval, then position
    ids, starts = ids[order], starts[order]
    last = np.append(ids[1:] != ids[:-1], True)  # the last piece of each interval ends at its hi
    ends = np.where(last, hi[ids], np.append(starts[1:], 0.0))
    keep = ends > starts  # a cut shared by two units gives one piece
    return starts[keep], ends[keep], ids[keep]


def _sign_changes(lo, hi, A, B):
    """Where the affine columns ``A x + B`` ``(K, m)`` vanish strictly inside their interval: points and owners."""
    with np.errstate(divide="ignore", invalid="ignore"):
        root = -B / A
    inside = (A != 0) & (root > lo[:, None]) & (root < hi[:, None])
    return root[inside], np.nonzero(inside)[0]


def _mlp(lo, hi, A, B, mlp, slot: int, expert: int):
    """A ReLU MLP on affine pieces of its input: its output's pieces ``(lo, hi, A, B)`` and each piece's parent."""
    if mlp.act is not torch.relu:
        raise ValueError("breakpoints need ReLU experts")
    parent = np.arange(len(lo))
    for i, layer in enumerate(mlp.layers):
        W = layer.weight[slot, expert].detach().cpu().double().numpy()  # (d_in, d_out)
        b = layer.bias[slot, expert, 0].detach().cpu().double().numpy()  # (d_out,)
        A, B = A @ W, B @ W + b
        if i < len(mlp.layers) - 1:  # ReLU: cut where a unit changes sign, then keep the units that are on
            lo, hi, ids = _split(lo, hi, *_sign_changes(lo, hi, A, B))
            A, B, parent = A[ids], B[ids], parent[ids]
            on = A * ((lo + hi) / 2)[:, None] + B > 0
            A, B = A * on, B * on
    return lo, hi, A, B, parent


def _moe_layer(lo, hi, A, B, layer, slot: int):
    """One routed layer on affine state pieces: ``(lo, hi, A, B, parent)`` of the increment u, and the switches."""
    if layer.gate != "linear" or layer.k != 1:
        raise ValueError("breakpoints need top-1 routing with a linear gate")
    W = layer.router.weight[slot].detach().cpu().double().numpy().T  # (p, E)
    i, j = np.triu_indices(layer.n_experts, 1)
    diff = W[:, i] - W[:, j]  # logit differences of every pair: the gate can switch only where one vanishes
    lo, hi, ids = _split(lo, hi, *_sign_changes(lo, hi, A @ diff, B @ diff))
    A, B = A[ids], B[ids]
    chosen = ((A * ((lo + hi) / 2)[:, None] + B) @ W).argmax(1)  # (K,)
    switches = lo[1:][chosen[1:] != chosen[:-1]]
    parts = []
    for e in range(layer.n_experts):  # each expert on the pieces routed to it
        if len(sel := np.flatnonzero(chosen == e)):
            e_lo, e_hi, e_A, e_B, e_parent = _mlp(lo[sel], hi[sel], A[sel], B[sel], layer.experts, slot, e)
            parts.append((e_lo, e_hi, e_A, e_B, ids[sel][e_parent]))  # parent: the layer's input piece
    lo, hi, dA, dB, parent = (np.concatenate(z) for z in zip(*parts, strict=True))
    order = np.argsort(lo)
    return lo[order], hi[order], dA[order], dB[order], parent[order], switches


def _pieces(model, slot: int, a: float, b: float):
    """Interval ends of the model's pieces on [a, b] (``(K + 1,)``) and each layer's routing switches."""
    lo, hi = np.array([a]), np.array([b])
    if isinstance(model, DenseNet):
        if model.net.layers[0].weight.shape[-2] != 1 or model.net.layers[0].weight.shape[1] != 1 or model.d_out != 1:
            raise ValueError("breakpoints need a model of one input and one output")
        lo, hi, *_ = _mlp(lo, hi, np.ones((1, 1)), np.zeros((1, 1)), model.net, slot, 0)
        return np.append(lo, b), []
    if not isinstance(model, StackedMoE) or model.d_in != 1 or model.d_out != 1:
        raise ValueError(f"breakpoints need a DenseNet or a StackedMoE of one input and one output; "
                         f"got {type(model).__name__}")
    h0 = (np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))  # the state (x, 1, u = 0) = A x + B
    A, B = h0
    serial, switches = bool(model.serial[slot]), []
    for n, layer in enumerate(model.layers):
        if n < len(model.layers) - 1 and layer.weight == "softmax":
            raise ValueError("breakpoints need combine weight 1 ('hard', 'straight') before the last layer")
        state = (A, B) if serial else (np.repeat(h0[0], len(lo), 0), np.repeat(h0[1], len(lo), 0))
        lo, hi, dA, dB, parent, cut = _moe_layer(lo, hi, *state, layer, slot)
        A, B = A[parent].copy(), B[parent].copy()
        A[:, -1:] += dA
        B[:, -1:] += dB
        switches.append(cut)
    return np.append(lo, b), switches


def _check_interval(a, b) -> tuple[float, float]:
    a = check_float("a", a)
    return a, check_float("b", b, a, low_open=True)


def breakpoints(model, a: float, b: float) -> list[np.ndarray]:
    """Per slot, the sorted points of ``(a, b)`` where a 1-D ``DenseNet`` or ``StackedMoE`` may fail to be affine.

    ReLU kinks and routing switches, found exactly (a superset: a unit that turns on where another turns off may
    leave the function straight). Between consecutive points the model is affine, or smooth when the last layer
    multiplies its expert by the softmax probability.
    """
    a, b = _check_interval(a, b)
    return [_pieces(model, s, a, b)[0][1:-1] for s in range(next(model.parameters()).shape[0])]


def routing_switches(model: StackedMoE, a: float, b: float, layer: int = 0) -> list[np.ndarray]:
    """Per slot, the points of ``(a, b)`` where the expert chosen by routed layer ``layer`` changes (exact)."""
    a, b = _check_interval(a, b)
    check_int("layer", layer, 0, len(getattr(model, "layers", ())) - 1)
    return [_pieces(model, s, a, b)[1][layer] for s in range(next(model.parameters()).shape[0])]


@torch.no_grad()
def sup_error(model, target: Callable, a: float, b: float, *, jumps: Sequence[float] = (),
              points: int = 4097) -> np.ndarray:
    """``sup over [a, b] of |model(x) - target(x)|`` per slot ``(S,)``, for a 1-D ``DenseNet`` or ``StackedMoE``.

    Evaluated at a uniform grid of ``points``, at every breakpoint (:func:`breakpoints`) and at every target jump in
    ``jumps``, each also one unit in the last place to either side (the one-sided limits, in the model's dtype).
    ``target`` maps x ``(n,)`` to ``(n,)``. Between consecutive nodes the model is affine, so what a node set can
    miss is the target's curvature: at most ``sup |target''| delta^2 / 8`` for the largest gap delta (with a
    softmax-weighted last layer, the model's own curvature too). A steep ramp between grid points cannot hide.
    """
    a, b = _check_interval(a, b)
    check_int("points", points, 2)
    param = next(model.parameters())
    marks = np.concatenate([*breakpoints(model, a, b), [check_float("jump", j) for j in jumps]])
    marks = torch.as_tensor(marks[(marks >= a) & (marks <= b)], dtype=param.dtype)
    around = [marks, torch.nextafter(marks, torch.tensor(-np.inf, dtype=param.dtype)),
              torch.nextafter(marks, torch.tensor(np.inf, dtype=param.dtype))]
    x = torch.cat([torch.linspace(a, b, points, dtype=param.dtype), *around]).clamp(a, b).unique()  # (n,)
    err = (model(x[None, :, None].expand(param.shape[0], -1, -1).to(param.device)).cpu() - target(x)).abs()
    return err.amax(1).numpy()
