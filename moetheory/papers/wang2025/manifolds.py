"""Targets on low-dimensional structure in R^D for the Wang & E (2025) chapter.

- a circle embedded in R^D by a random map with orthonormal rows (so no coordinate is identically zero), or by
  zero padding (the paper's Experiment I);
- the paper's Figure 3 target on [0, 3]^2 (continuous: its pieces vanish with their slope at the cell faces);
- a piecewise target on [0, E]^L with E^L unit cells and independent sine pieces (it jumps across the faces: this
  chapter's extension, not the paper's target), separable (``f_out`` = sum) or not (product);
- a target with a jump, and a spiral whose arc-length pieces no linear gate can separate.

All generators are deterministic for a seed and return torch tensors on the CPU in the default
floating type (float64 under :func:`moetheory.runtime.setup` on the CPU).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from moetheory.checks import check_choice, check_float, check_int

__all__ = [
    "EMBEDDINGS", "random_embedding", "padding_embedding", "circle_points", "circle_target", "sample_circle",
    "piece_coefficients", "cube_target", "sample_cube", "cube_grid", "FIGURE3_OUTPUTS", "figure3_pieces",
    "figure3_target", "sample_figure3", "figure3_grid", "jump_target", "sample_jump", "spiral_points", "sample_spiral",
]

CUBE_KINDS = ("sum", "product")
EMBEDDINGS = ("random", "zero-pad")  # how Experiment I's circle sits in R^D: ours, the paper's
FIGURE3_OUTPUTS = ("tuple", "sum", "product")  # eq. (4) with f_out = id (the paper's), and two scalar variants


def random_embedding(k: int, D: int, seed: int = 0) -> torch.Tensor:
    """A ``(k, D)`` matrix with orthonormal rows (QR of a Gaussian matrix): ``x = u @ Q`` embeds R^k in R^D."""
    check_int("D", D, check_int("k", k, 1))
    rng = np.random.default_rng(check_int("seed", seed, 0))
    q, r = np.linalg.qr(rng.standard_normal((D, k)))
    q = q * np.sign(np.diag(r))  # unique QR: a deterministic function of the Gaussian draw
    return torch.tensor(q.T, dtype=torch.get_default_dtype())


def padding_embedding(k: int, D: int) -> torch.Tensor:
    """The ``(k, D)`` matrix ``[I_k, 0]``: ``x = u @ P`` pads u with D - k zeros (the paper's Experiment I)."""
    check_int("D", D, check_int("k", k, 1))
    return torch.eye(k, D, dtype=torch.get_default_dtype())


def circle_points(theta: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """Points ``(cos t, sin t) @ Q`` in R^D for angles ``theta`` ``(n,)``; ``embedding`` is ``(2, D)``."""
    return torch.stack([torch.cos(theta), torch.sin(theta)], -1) @ embedding


def circle_target(theta: torch.Tensor) -> torch.Tensor:
    """Experiment I's target ``sin(5 x1) + cos(3 x2)`` in the circle's own coordinates ``x1 = cos t, x2 = sin t``."""
    return torch.sin(5 * torch.cos(theta)) + torch.cos(3 * torch.sin(theta))


def sample_circle(n: int, D: int, *, seed: int = 0, embedding_seed: int = 0, grid: bool = False,
                  embedding: str = "random"):
    """``(X (n, D), y (n,), theta (n,))``: uniform angles (or an even grid) on the embedded circle.

    ``embedding="random"``: :func:`random_embedding` drawn with ``embedding_seed``; ``"zero-pad"``:
    :func:`padding_embedding` (the paper's circle ``{x1^2 + x2^2 = 1, x_i = 0 for i > 2}``; ``embedding_seed`` unused).
    """
    check_int("n", n, 1)
    check_choice("embedding", embedding, EMBEDDINGS)
    if grid:
        theta = torch.arange(n, dtype=torch.get_default_dtype()) * (2 * math.pi / n) - math.pi
    else:
        gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
        theta = (torch.rand(n, generator=gen) * 2 - 1) * math.pi
    Q = random_embedding(2, D, embedding_seed) if embedding == "random" else padding_embedding(2, D)
    X = circle_points(theta, Q)
    return X, circle_target(theta), theta


def piece_coefficients(n_experts: int, n_layers: int, seed: int = 0) -> torch.Tensor:
    """``(L, E, 3)`` amplitude, frequency and phase of the subfunctions f_{l,i}(t) = a sin(w t + b) of eq. (4)."""
    check_int("n_experts", n_experts, 1)
    check_int("n_layers", n_layers, 1)
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    u = torch.rand(n_layers, n_experts, 3, generator=gen)
    lo = torch.tensor([0.5, 1.0, 0.0])
    hi = torch.tensor([1.0, 4.0, 2 * math.pi])
    return lo + (hi - lo) * u


def cube_target(x: torch.Tensor, coefficients: torch.Tensor, kind: str = "sum") -> torch.Tensor:
    """Of the form of eq. (5): ``f(x) = f_out(f_{1,i_1}(x_1 - i_1), ..., f_{L,i_L}(x_L - i_L))``, ``i_l = floor(x_l)``.

    ``x`` is ``(n, L)`` in ``[0, E)^L``. ``kind="sum"`` (f_out = sum: separable by coordinate) or ``"product"``
    (f_out = product: not separable). Neighbouring subfunctions are independent, so f jumps across cell faces: this
    chapter's jump extension, not the paper's Figure 3 target (:func:`figure3_target`, continuous).
    """
    check_choice("kind", kind, CUBE_KINDS)
    n_layers, n_experts, _ = coefficients.shape
    cell = x.floor().clamp(0, n_experts - 1).long()  # (n, L)
    coef = coefficients[torch.arange(n_layers), cell]  # (n, L, 3)
    local = x - cell
    pieces = coef[..., 0] * torch.sin(coef[..., 1] * local + coef[..., 2])  # (n, L)
    return pieces.sum(-1) if kind == "sum" else pieces.prod(-1)


def sample_cube(n: int, n_experts: int = 3, n_layers: int = 2, kind: str = "sum", *, seed: int = 0,
                target_seed: int = 0):
    """``(x (n, L), y (n,))`` uniform on ``[0, E]^L`` with the eq. (4) target."""
    check_int("n", n, 1)
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    x = torch.rand(n, n_layers, generator=gen) * n_experts
    return x, cube_target(x, piece_coefficients(n_experts, n_layers, target_seed), kind)


def cube_grid(points_per_axis: int, n_experts: int = 3, n_layers: int = 2, kind: str = "sum", *,
              target_seed: int = 0):
    """A dense cell-centred grid on ``[0, E]^L`` (for L-infinity errors) with the eq. (4) target."""
    check_int("points_per_axis", points_per_axis, 1)
    axis = (torch.arange(points_per_axis, dtype=torch.get_default_dtype()) + 0.5) * (n_experts / points_per_axis)
    x = torch.cartesian_prod(*([axis] * n_layers)).reshape(-1, n_layers)
    return x, cube_target(x, piece_coefficients(n_experts, n_layers, target_seed), kind)


def figure3_pieces(z: torch.Tensor, n_cells: int = 3) -> torch.Tensor:
    """The paper's Figure 3 subfunctions on [0, 3]: ``f_i(z) = i (z - i + 1)^2 (z - i)^2`` on ``[i - 1, i]``.

    Each piece vanishes with its slope at both ends of its cell, so the result is C^1 at the faces, with the
    second derivative jumping there (the paper: "only 0-order continuous"). Elementwise; no validation of ``z``.
    ``n_cells`` > 3 extends the same formula to i = 1..n_cells on [0, n_cells] (ours: the larger cube).
    """
    n_cells = check_int("n_cells", n_cells, 1)
    i = (z.floor() + 1).clamp(1, n_cells)  # the cell [i - 1, i] (a face belongs to either: both pieces vanish)
    t = z - i + 1  # in [0, 1]
    return i * t**2 * (t - 1) ** 2


def figure3_target(x, output: str = "tuple") -> torch.Tensor:
    """The target of the paper's Figure 3 on [0, 3]^2: the pieces :func:`figure3_pieces` applied per coordinate.

    ``x``: ``(n, 2)`` points in ``[0, 3]^2``, a torch tensor like every generator here (an array is converted by
    ``torch.as_tensor``; integers become the default floating type). Returns a torch tensor:

    - ``"tuple"``: ``(f(x1), f(x2))``, shape ``(n, 2)``: eq. (4) with ``f_out = id`` (eq. (5)), paper-literal;
    - ``"sum"``: ``f(x1) + f(x2)``, shape ``(n,)`` (separable: a block-structured dense net fits it as well);
    - ``"product"``: ``f(x1) f(x2)``, shape ``(n,)`` (not separable).

    The caption of Figure 3 lost its beginning in the extraction of the main text that was read: the pieces and
    the domain are certain, how the two coordinates combine is not (``"sum"`` and ``"product"`` are our scalar
    readings; ``"tuple"`` follows eq. (4)). Both coordinates use the same pieces (the caption gives one formula).
    """
    check_choice("output", output, FIGURE3_OUTPUTS)
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (n, 2); got {tuple(x.shape)}")
    if not ((x >= 0) & (x <= 3)).all():
        raise ValueError(f"x must lie in [0, 3]^2; got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]")
    f = figure3_pieces(x)  # (n, 2)
    return f if output == "tuple" else f.sum(-1) if output == "sum" else f.prod(-1)


def sample_figure3(n: int, output: str = "tuple", *, seed: int = 0):
    """``(x (n, 2), y)`` with x uniform on ``[0, 3]^2`` and y = :func:`figure3_target` ``(x, output)``."""
    check_int("n", n, 1)
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(check_int("seed", seed, 0))) * 3
    return x, figure3_target(x, output)


def figure3_grid(points_per_axis: int, output: str = "tuple"):
    """A cell-centred grid of ``points_per_axis^2`` points on ``[0, 3]^2`` with :func:`figure3_target`."""
    check_int("points_per_axis", points_per_axis, 1)
    axis = (torch.arange(points_per_axis, dtype=torch.get_default_dtype()) + 0.5) * (3 / points_per_axis)
    x = torch.cartesian_prod(axis, axis)
    return x, figure3_target(x, output)


def jump_target(x: torch.Tensor, jump: float) -> torch.Tensor:
    """``sin(3 x) + J * 1[x >= 0]`` on [-1, 1]: smooth except a jump of size J at 0."""
    return torch.sin(3 * x) + jump * (x >= 0).to(x.dtype)


def sample_jump(n: int, jump: float = 1.0, *, seed: int = 0, grid: bool = False):
    """``(x (n, 1), y (n,))`` uniform (or on an even grid that avoids 0) in [-1, 1]."""
    check_int("n", n, 2)
    jump = check_float("jump", jump, 0.0, low_open=True)
    if grid:
        x = (torch.arange(n, dtype=torch.get_default_dtype()) + 0.5) * (2 / n) - 1
    else:
        x = torch.rand(n, generator=torch.Generator().manual_seed(check_int("seed", seed, 0))) * 2 - 1
    return x[:, None], jump_target(x, jump)


def spiral_points(t: torch.Tensor, turns: float = 1.5) -> torch.Tensor:
    """Archimedean spiral ``r = t``, angle ``2 pi turns t`` for ``t`` in [0.2, 1]: ``(n, 2)``."""
    angle = 2 * math.pi * turns * t
    return torch.stack([t * torch.cos(angle), t * torch.sin(angle)], -1)


def sample_spiral(n: int, n_pieces: int = 4, turns: float = 1.5, *, seed: int = 0, target_seed: int = 7,
                  grid: bool = False):
    """``(x (n, 2), y (n,), t (n,))`` on a spiral cut into ``n_pieces`` equal t-intervals with independent pieces.

    The pieces are arcs that wind around the origin, so no linear gate (convex cells) can route them; the target
    jumps between pieces (``cube_target`` on the 1-D cube [0, n_pieces), coefficients drawn with ``target_seed``).
    """
    check_int("n", n, 2)
    check_int("n_pieces", n_pieces, 1)
    check_float("turns", turns, 0.0, low_open=True)
    if grid:
        t = 0.2 + 0.8 * (torch.arange(n, dtype=torch.get_default_dtype()) + 0.5) / n
    else:
        t = 0.2 + 0.8 * torch.rand(n, generator=torch.Generator().manual_seed(check_int("seed", seed, 0)))
    s = (t - 0.2) / 0.8 * n_pieces  # position in [0, n_pieces)
    y = cube_target(s[:, None], piece_coefficients(n_pieces, 1, seed=target_seed))
    return spiral_points(t, turns), y, t
