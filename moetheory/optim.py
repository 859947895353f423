"""Optimisers that are part of the papers' algorithms, batched over leading (seed, expert) axes.

- :func:`normalized_gd_` : Chen et al.'s normalized gradient descent for experts (each expert's step divided by
  its gradient norm).
- :func:`spherical_sgd_` : online SGD on the unit sphere (Ben Arous et al.; the Hermite and Kawata chapters).
"""

from __future__ import annotations

import torch

from moetheory.checks import check_float, check_int


@torch.no_grad()
def normalized_gd_(params: list[torch.Tensor], lr: float, batch_dims: int = 2, eps: float = 1e-12) -> None:
    """In place: ``p -= lr * grad / (sum over params of ||grad||)``, the norm taken per leading index.

    ``batch_dims`` leading axes (e.g. seed and expert) index independent blocks; with the official Chen et al.
    code, ``params = [W, b]`` and the divisor is ``||grad W|| + ||grad b||`` per expert.
    """
    check_float("lr", lr, 0.0, low_open=True)
    check_int("batch_dims", batch_dims, 0)
    grads = [p.grad for p in params]
    if any(g is None for g in grads):
        raise ValueError("normalized_gd_: every parameter needs a gradient (call backward first)")
    norm = sum(_block_norm(g, batch_dims) for g in grads)
    for p, g in zip(params, grads):
        p -= lr * g / _expand(norm + eps, g)


def _block_norm(g: torch.Tensor, batch_dims: int) -> torch.Tensor:
    return g.reshape(*g.shape[:batch_dims], -1).norm(dim=-1)


def _expand(norm: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return norm.reshape(*norm.shape, *([1] * (like.dim() - norm.dim())))


@torch.no_grad()
def spherical_sgd_(w: torch.Tensor, grad: torch.Tensor, lr: float, clip: float | None = None) -> torch.Tensor:
    """One step of projected SGD on unit rows ``w`` ``(..., d)``, in place; returns ``w``.

    The Euclidean gradient is projected on the tangent space (``g - <g, w> w``), optionally clipped to norm
    ``clip`` per row, the step taken, and every row renormalised to unit length.
    """
    check_float("lr", lr, 0.0, low_open=True)
    tangent = grad - (grad * w).sum(-1, keepdim=True) * w
    if clip is not None:
        check_float("clip", clip, 0.0, low_open=True)
        scale = (clip / tangent.norm(dim=-1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)
        tangent = tangent * scale
    w -= lr * tangent
    w /= w.norm(dim=-1, keepdim=True)
    return w
