"""The patch CNN of Chen et al. (2022) as fused CPU/GPU kernels: ``sum_p sigma(<w, x_p> + b)`` per filter.

Derived and used in the chen2022 chapter; :mod:`moetheory.papers.chen2022.patch_moe` builds the single CNNs and
the MoE's experts from it. :class:`PatchActivationSum` gathers, computes and reduces one block of rows at a time,
so that the work stays in the CPU's cache, and keeps ``sigma'`` from the forward pass for the backward pass.
Checked against ``torch.nn.functional.conv1d`` in ``tests/test_chen2022.py``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def _cubic(z, slope):  # z^3 = z * z^2 keeping z^2: the 3 of 3 z^2 goes on the upstream gradient (scale 3)
    return z.pow_(3) if slope is None else z.mul_(torch.mul(z, z, out=slope))


def _tanh(z, slope):
    z = z.tanh_()
    if slope is not None:
        torch.mul(z, z, out=slope).neg_().add_(1)
    return z


def _sigmoid(z, slope):
    z = z.sigmoid_()
    if slope is not None:
        torch.mul(z, z, out=slope).neg_().add_(z)  # s (1 - s)
    return z


def _relu(z, slope):
    if slope is not None:
        slope.copy_(z > 0)
    return z.clamp_min_(0)


def _gelu(z, slope):
    if slope is None:
        return F.gelu(z)
    cdf = torch.erf(z * (1 / math.sqrt(2))).add_(1).mul_(0.5)  # Phi(z)
    torch.mul(z, z, out=slope).mul_(-0.5).exp_().mul_(z).mul_(1 / math.sqrt(2 * math.pi)).add_(cdf)  # + z phi(z)
    return z.mul_(cdf)


def _celu(z, slope):  # alpha = 1: z for z > 0, e^z - 1 below; slope 1 above, e^z below (e^min(z, 0) both)
    if slope is not None:
        torch.clamp(z, max=0, out=slope).exp_()
    return F.celu(z, inplace=True)


ACTIVATE = {"cubic": _cubic, "relu": _relu, "tanh": _tanh, "gelu": _gelu, "sigmoid": _sigmoid, "celu": _celu}
"""Fused kernels of the nonlinear activations of :data:`moetheory.activations.ACTIVATIONS` for the patch CNNs,
``f(z, slope) -> sigma(z)`` in place on ``z``; when ``slope`` (a tensor like ``z``) is given,
``sigma'(z) / SLOPE_SCALE`` is written into it. A linear CNN needs no kernel (:func:`filter_sums`)."""
SLOPE_SCALE = {"cubic": 3.0}
CHUNK_FLOATS = 1 << 19
"""Floats in one block: its pre-activations, plus its rows when they are gathered (2 MiB of float32, the size of
the per-core L2 cache of the machine this was tuned on; 4 MiB in the chapters' float64, which measured as fast as
1-2 MiB blocks on a host with 1 MiB of L2: per-block overhead and cache misses roughly balance)."""


class PatchActivationSum(torch.autograd.Function):
    """``h[g, r, f] = sum_p sigma(<x[g, r, p], w[g, :, f]> + b[g, 0, f])`` computed block by block.

    ``x`` ``(G|1, R, P, d)`` carries no gradient; ``w`` ``(G, d, F)``, ``b`` ``(G, 1, F)``. The pre-activations
    ``z`` are made one block of groups (or of rows, when one group is too big) at a time, so that ``z``, its
    activation and its sum over patches stay in cache; when a gradient is needed, ``sigma'(z)`` is kept (one
    tensor the size of all ``z``) for the backward pass, which then needs one matrix product per block.

    With ``readout`` ``(F, K)`` the output is ``h @ readout`` ``(G, R, K)`` instead of ``h``, one small product per
    block (the MoE reads out only the margin between the two class halves). ``z`` is then laid out filter-major,
    ``(G', F, R' P)``, made as ``w^T x^T`` and its weight gradient as ``dz^T x``: with the MoE's few filters per
    expert (16) BLAS runs these long, narrow products about twice as fast in that layout as ``x w`` and ``x^T dz``
    (``benchmarks/chen2022.py``).

    With ``group`` ``(G,)``, ``w`` and ``b`` hold one filter bank per expert and group ``g`` uses bank
    ``group[g]`` (gathered block by block; the gradients are summed per bank).

    With ``source`` ``(G * R,)``, ``x`` is instead one shared table of rows ``(n, P, d)`` and group ``g``'s row
    ``r`` is ``x[source[g * R + r]]``: the MoE gathers each block of tiles just before it computes on it, so the
    gathered rows stay in cache instead of going through a buffer of every seed's rows in memory.

    ``workspace`` (a 1-D tensor, grown as needed) holds ``sigma'(z)`` when given, so that repeated calls reuse the
    same memory (fresh tensors of many megabytes cost page faults and zeroing); autograd's version check then
    refuses a backward pass through an older call whose slopes a later call has overwritten.
    """

    @staticmethod
    def forward(ctx, x, w, b, activation, source=None, readout=None, workspace=None, group=None):
        groups, n_patches, n_filters = w.shape[0] if group is None else group.numel(), x.shape[-2], w.shape[-1]
        rows = x.shape[1] if source is None else source.numel() // groups
        out = x.new_empty(groups, rows, n_filters if readout is None else readout.shape[1])
        blocks = _blocks(groups, rows, _block_floats(x, n_filters, source))
        gathered, z_buffer = _buffers(x, source, blocks, n_patches * n_filters)
        slopes = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            size = groups * rows * n_patches * n_filters
            slopes = workspace[:size] if workspace is not None and workspace.numel() >= size else x.new_empty(size)
        if readout is not None:
            readout_t = readout.T.unsqueeze(0)  # (1, K, F)
        wt, bt = (w, b) if readout is None else (w.transpose(-1, -2), b.transpose(-1, -2))  # (G, F, d), (G, F, 1)
        done = 0
        for g0, g1, r0, r1 in blocks:
            wb, bb = (wt[g0:g1], bt[g0:g1]) if group is None else (wt[group[g0:g1]], bt[group[g0:g1]])
            xb = _x_block(x, source, rows, g0, g1, r0, r1, gathered)
            # with a read-out, z is laid out filter-major, (G', F, R' P) = w^T x^T: with few filters, BLAS is
            # twice as fast making a long, narrow (R' P) x F product in that layout as in the row-major one
            shape = (g1 - g0, n_filters, (r1 - r0) * n_patches) if readout is not None else \
                (g1 - g0, (r1 - r0) * n_patches, n_filters)
            z = z_buffer[:math.prod(shape)].view(shape)
            if readout is not None:
                torch.baddbmm(bb, wb, xb.transpose(1, 2), out=z)
            else:
                torch.baddbmm(bb, xb, wb, out=z)
            slope = None if slopes is None else slopes[done:done + z.numel()].view(shape)
            done += z.numel()
            z = ACTIVATE[activation](z, slope)
            if readout is None:
                torch.sum(z.view(g1 - g0, r1 - r0, n_patches, -1), 2, out=out[g0:g1, r0:r1])
            else:  # (1, K, F) @ (G', F, R' P), summed over the patches -> (G', R', K)
                h = torch.matmul(readout_t, z).view(g1 - g0, -1, r1 - r0, n_patches).sum(-1)
                out[g0:g1, r0:r1] = h.transpose(1, 2)
        ctx.save_for_backward(x, source, readout, slopes, group)
        ctx.scale, ctx.shape = SLOPE_SCALE.get(activation, 1.0), (groups, n_patches, w.shape[-2:])
        ctx.n_weights = w.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad):
        x, source, readout, slopes, group = ctx.saved_tensors
        (groups, n_patches, (dim, n_filters)), rows = ctx.shape, grad.shape[1]
        n_weights = groups if group is None else ctx.n_weights
        gw, gb = grad.new_zeros(n_weights, dim, n_filters), grad.new_zeros(n_weights, 1, n_filters)
        if readout is not None:
            readout = readout.T * ctx.scale  # (K, F)
        else:
            grad = grad * ctx.scale
        blocks = _blocks(groups, rows, _block_floats(x, n_filters, source))
        gathered, dz_buffer = _buffers(x, source, blocks, n_patches * n_filters)
        done = 0
        for g0, g1, r0, r1 in blocks:
            gh = grad[g0:g1, r0:r1]  # upstream gradient of h for this block (G', R', F)
            if readout is not None:  # an outer product when K = 1 (a matrix product with K = 1 is slow on CPUs)
                gh = gh * readout[0] if readout.shape[0] == 1 else gh @ readout
            xb = _x_block(x, source, rows, g0, g1, r0, r1, gathered)
            if readout is None:
                shape = (g1 - g0, r1 - r0, n_patches, n_filters)
                gh = gh.unsqueeze(2)
            else:  # filter-major as in the forward pass: (G', F, R', P)
                shape = (g1 - g0, n_filters, r1 - r0, n_patches)
                gh = gh.transpose(1, 2).unsqueeze(-1)
            slope = slopes[done:done + math.prod(shape)].view(shape)
            done += slope.numel()
            dz = torch.mul(slope, gh, out=dz_buffer[:slope.numel()].view(shape))
            if readout is None:
                dz = dz.view(g1 - g0, -1, n_filters)
                dw, db = torch.bmm(xb.transpose(1, 2), dz), dz.sum(1, keepdim=True)
            else:  # (G', F, R' P) @ (G', R' P, d): the fast layout again
                dz = dz.view(g1 - g0, n_filters, -1)
                dw, db = torch.bmm(dz, xb).transpose(1, 2), dz.sum(2).unsqueeze(1)
            if group is None:
                gw[g0:g1] += dw
                gb[g0:g1] += db
            else:
                gw.index_add_(0, group[g0:g1], dw)
                gb.index_add_(0, group[g0:g1], db)
        return None, gw, gb, None, None, None, None, None


def _x_block(x: torch.Tensor, source: torch.Tensor | None, rows: int, g0: int, g1: int, r0: int, r1: int,
             buffer: torch.Tensor | None = None):
    """Rows ``r0:r1`` of groups ``g0:g1`` as ``(g1 - g0, (r1 - r0) P, d)``: sliced from ``x`` ``(G|1, R, P, d)``,
    or gathered from the shared rows ``x`` ``(n, P, d)`` through ``source`` (see :class:`PatchActivationSum`),
    into ``buffer`` when given (reused from block to block: fresh megabyte tensors cost page faults)."""
    if source is not None:
        flat = x.view(x.shape[0], -1)  # a 2-D gather: ~10x faster than index_select on (n, P, d)
        index = source[g0 * rows + r0:(g1 - 1) * rows + r1]
        out = None if buffer is None else buffer[:index.numel() * flat.shape[1]].view(-1, flat.shape[1])
        return torch.index_select(flat, 0, index, out=out).view(g1 - g0, -1, x.shape[-1])
    xb = x[g0:g1, r0:r1] if x.shape[0] > 1 else x[:, r0:r1].expand(g1 - g0, -1, -1, -1)
    return xb.reshape(g1 - g0, -1, x.shape[-1])


def _buffers(x: torch.Tensor, source: torch.Tensor | None, blocks: list, floats_per_row: int) -> tuple:
    """Buffers reused from block to block: for the gathered rows (``None`` when nothing is gathered) and for one
    block of pre-activations."""
    largest = max((g1 - g0) * (r1 - r0) for g0, g1, r0, r1 in blocks)
    gathered = None if source is None else x.new_empty(largest * x[0].numel())
    return gathered, x.new_empty(largest * floats_per_row)


def _block_floats(x: torch.Tensor, n_filters: int, source: torch.Tensor | None) -> int:
    """Floats per row of a block: ``P F`` pre-activations, and the ``P d`` gathered inputs when there is a
    ``source``."""
    return x.shape[-2] * (n_filters + (x.shape[-1] if source is not None else 0))


def _blocks(groups: int, rows: int, floats_per_row: int) -> list[tuple[int, int, int, int]]:
    """Blocks ``(g0, g1, r0, r1)`` of about :data:`CHUNK_FLOATS` pre-activations: whole groups when they fit."""
    per_group = rows * floats_per_row
    if per_group <= CHUNK_FLOATS:
        step = CHUNK_FLOATS // max(1, per_group)
        return [(g, min(g + step, groups), 0, rows) for g in range(0, groups, step)]
    step = max(1, CHUNK_FLOATS // max(1, floats_per_row))
    return [(g, g + 1, r, min(r + step, rows)) for g in range(groups) for r in range(0, rows, step)]


def filter_sums(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str,
                n_patches: int | None = None, workspace: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_p sigma(<w_f, x_p> + b_f)`` per filter: ``x`` ``(G|1, rows, P, d)``, ``weight`` ``(G, d, F)``,
    ``bias`` ``(G, 1, F)`` -> ``(G, rows, F)``. A linear CNN may get ``x`` already summed over patches
    ``(G|1, rows, d)`` (same values and gradients, ``P`` times cheaper) with ``n_patches`` given. ``workspace``:
    see :class:`PatchActivationSum`."""
    if activation == "linear":
        n_patches = n_patches or x.shape[-2]
        return torch.matmul(x if x.dim() == 3 else x.sum(-2), weight) + n_patches * bias
    return PatchActivationSum.apply(x, weight, bias, activation, None, None, workspace)


def cnn_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str,
               n_patches: int | None = None) -> torch.Tensor:
    """Class logits ``(G, rows, 2)`` of ``G`` shared-filter CNNs (arguments of :func:`filter_sums`): the first
    ``F/2`` filters vote for class 0, the rest for class 1 (the official ``Conv1d`` + split)."""
    return class_sums(filter_sums(x, weight, bias, activation, n_patches))


def class_sums(t: torch.Tensor) -> torch.Tensor:
    """``(..., F) -> (..., 2)``: the sums over the first and the second half of the filters (one class each)."""
    return t.reshape(*t.shape[:-1], 2, t.shape[-1] // 2).sum(-1)


def single_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str,
                  n_patches: int | None = None, workspace: torch.Tensor | None = None) -> torch.Tensor:
    """``S`` single CNNs on shared inputs ``x`` ``(n, P, d)``: ``weight`` ``(S, d, F)``, ``bias`` ``(S, 1, F)``.

    The seeds' filters are laid side by side, ``(d, S * F)``, so one matrix product serves every seed. A linear
    CNN is a linear model: its class logits are ``sum_p x_p`` times the filters summed over each class half (same
    values and gradients, ``F / 2`` times cheaper); ``x`` may then be given already summed, ``(n, 1, d)``, with
    the true ``n_patches``.
    """
    n_seeds, dim, n_filters = weight.shape
    if activation == "linear":
        w = class_sums(weight).permute(1, 0, 2).reshape(dim, 2 * n_seeds)
        b = class_sums(bias)  # (S, 1, 2)
        xs = x[..., 0, :] if x.shape[-2] == 1 else x.sum(-2)
        return (xs @ w).view(-1, n_seeds, 2).transpose(0, 1) + (n_patches or x.shape[-2]) * b
    w = weight.permute(1, 0, 2).reshape(1, dim, n_seeds * n_filters)
    b = bias.permute(1, 0, 2).reshape(1, 1, n_seeds * n_filters)
    h = filter_sums(x.unsqueeze(0), w, b, activation, workspace=workspace)  # (1, n, S * F)
    return class_sums(h.view(x.shape[0], n_seeds, n_filters)).transpose(0, 1)
