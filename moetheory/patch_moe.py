"""Chen et al. (2022)'s models: a shared-filter CNN on patches, alone or as the experts of a top-1 MoE.

Derived and used in the chen2022 chapter. Everything carries a leading seed axis ``S`` (and an expert axis ``E``)
so that all seeds of one configuration train in one batched step. The MoE dispatches each example to its expert by
a sort (:func:`plan_tiles`), so an expert computes only its own rows; the patch CNN (:class:`PatchActivationSum`)
gathers, computes and reduces one block of tiles at a time so that the work stays in the CPU's cache. Linear
experts are linear models (one vector on the patch sum each) and are applied to every row instead.

Official code (uclaml/MoE) rather than the paper's equations where they differ:

- the expert output is multiplied by the raw noisy router logit ``h_m(x) + U[0, 1)`` (not a softmax probability),
- the MoE output goes through a softmax and then through ``cross_entropy`` (a second softmax), so the loss can
  never go below ``log(1 + e^-1)``,
- the router noise stays on at test time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from moetheory import metrics, routing
from moetheory.activations import ACTIVATIONS
from moetheory.checks import check_choice, check_float, check_int
from moetheory.optim import normalized_gd_

MIN_LOSS = math.log(1 + math.exp(-1))
"""The infimum of the official MoE loss: cross-entropy after a softmax of two probabilities."""


def init_filters(shape: tuple[int, ...], dim: int, scale: float, generator: torch.Generator, device) -> tuple:
    """Weights ``(*shape, dim, F)`` and biases ``(*shape, 1, F)`` like ``nn.Conv1d(1, F, dim)`` (U(+-1/sqrt(dim))),
    times ``scale``; ``shape`` holds the leading (seed[, expert]) axes and the filter count last."""
    *lead, n_filters = shape
    bound = scale / math.sqrt(dim)
    w = (torch.rand((*lead, dim, n_filters), generator=generator) * 2 - 1) * bound
    b = (torch.rand((*lead, 1, n_filters), generator=generator) * 2 - 1) * bound
    return w.to(device).requires_grad_(), b.to(device).requires_grad_()


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


ACTIVATE = {"cubic": _cubic, "relu": _relu, "tanh": _tanh, "gelu": _gelu, "sigmoid": _sigmoid}
"""Fused kernels of the nonlinear activations of :data:`moetheory.activations.ACTIVATIONS` for the patch CNNs,
``f(z, slope) -> sigma(z)`` in place on ``z``; when ``slope`` (a tensor like ``z``) is given,
``sigma'(z) / SLOPE_SCALE`` is written into it. A linear CNN needs no kernel (:func:`filter_sums`)."""
SLOPE_SCALE = {"cubic": 3.0}
CHUNK_FLOATS = 1 << 19
"""Floats in one block: its pre-activations, plus its rows when they are gathered (2 MiB of float32, the size of
the per-core L2 cache of the machine this was tuned on)."""


class PatchActivationSum(torch.autograd.Function):
    """``h[g, r, f] = sum_p sigma(<x[g, r, p], w[g, :, f]> + b[g, 0, f])`` computed block by block.

    ``x`` ``(G|1, R, P, d)`` carries no gradient; ``w`` ``(G, d, F)``, ``b`` ``(G, 1, F)``. The pre-activations
    ``z`` are made one block of groups (or of rows, when one group is too big) at a time, so that ``z``, its
    activation and its sum over patches stay in cache; when a gradient is needed, ``sigma'(z)`` is kept (one
    tensor the size of all ``z``) for the backward pass, which then needs one matrix product per block.

    With ``readout`` ``(F, K)`` the output is ``h @ readout`` ``(G, R, K)`` instead of ``h``, one small product per
    block (the MoE reads out only the margin between the two class halves).

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
        if readout is not None:  # (F, K) -> (P F, K): the sum over patches and the read-out in one product
            readout_p = readout.repeat(n_patches, 1)
        out = x.new_empty(groups, rows, n_filters if readout is None else readout.shape[1])
        blocks = _blocks(groups, rows, _block_floats(x, n_filters, source))
        gathered, z_buffer = _buffers(x, source, blocks, n_patches * n_filters)
        slopes = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            size = groups * rows * n_patches * n_filters
            slopes = workspace[:size] if workspace is not None and workspace.numel() >= size else x.new_empty(size)
        done = 0
        for g0, g1, r0, r1 in blocks:
            shape = (g1 - g0, (r1 - r0) * n_patches, n_filters)
            z = z_buffer[:math.prod(shape)].view(shape)
            wb, bb = (w[g0:g1], b[g0:g1]) if group is None else (w[group[g0:g1]], b[group[g0:g1]])
            torch.baddbmm(bb, _x_block(x, source, rows, g0, g1, r0, r1, gathered), wb, out=z)
            slope = None if slopes is None else slopes[done:done + z.numel()].view(shape)
            done += z.numel()
            z = ACTIVATE[activation](z, slope)
            if readout is None:
                torch.sum(z.view(g1 - g0, r1 - r0, n_patches, -1), 2, out=out[g0:g1, r0:r1])
            else:
                torch.matmul(z.view(g1 - g0, r1 - r0, -1), readout_p, out=out[g0:g1, r0:r1])
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
            shape = (g1 - g0, r1 - r0, n_patches, n_filters)
            slope = slopes[done:done + math.prod(shape)].view(shape)
            done += slope.numel()
            dz = torch.mul(slope, gh.unsqueeze(2), out=dz_buffer[:slope.numel()].view(shape))
            dz = dz.view(g1 - g0, -1, n_filters)
            xb = _x_block(x, source, rows, g0, g1, r0, r1, gathered)
            if group is None:
                gw[g0:g1].baddbmm_(xb.transpose(1, 2), dz)
                gb[g0:g1] += dz.sum(1, keepdim=True)
            else:
                gw.index_add_(0, group[g0:g1], torch.bmm(xb.transpose(1, 2), dz))
                gb.index_add_(0, group[g0:g1], dz.sum(1, keepdim=True))
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


@dataclass
class MoEState:
    """A batch of Chen MoEs: router and expert parameters for ``S`` seeds."""

    router: routing.Router  # weight (S, E, d), zero init
    weight: torch.Tensor  # (S, E, d, F)
    bias: torch.Tensor  # (S, E, 1, F)
    activation: str
    generator: torch.Generator  # router noise
    workspace: torch.Tensor | None = None  # sigma'(z) of the last training forward pass (see PatchActivationSum)

    def inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(n, P, d)`` -> (the rows experts gather, ``x`` with a zero row appended ``(n + 1, P, d)``; the
        patch sums ``(n, d)``, which the router and linear experts read). Linear experts gather nothing: the
        first is then ``None``."""
        xsum = x.sum(-2)
        return (None if self.activation == "linear" else torch.cat([x, x.new_zeros(1, *x.shape[1:])])), xsum

    def forward(self, rows: torch.Tensor, xsum: torch.Tensor, n_patches: int):
        """Arguments from :meth:`inputs`; returns (the margin ``(S, n)``, the Routing).

        The margin is the class-1 minus the class-0 output of the MoE, ``sum_m g_m(x) (F_{m,1}(x) - F_{m,0}(x))``;
        the official model's output is its softmax, ``(1 - sigmoid(margin), sigmoid(margin))``.
        """
        n_seeds, n_experts, dim, n_filters = self.weight.shape
        route = self.router(xsum.expand(n_seeds, *xsum.shape), generator=self.generator)
        readout = torch.ones(n_filters, 1, device=xsum.device)
        readout[:n_filters // 2] = -1  # class 1 minus class 0
        if self.activation == "linear":
            # A linear expert is one vector (its filters read out, (d, F) @ (F, 1)) applied to the patch sum: all of
            # them on every row, one (n, d) x (d, S E) product, cost less than gathering the rows for dispatch.
            w = (self.weight @ readout).reshape(n_seeds * n_experts, dim)
            b = (self.bias @ readout).reshape(n_seeds * n_experts)
            every = (xsum @ w.T + n_patches * b).view(-1, n_seeds, n_experts).transpose(0, 1)  # (S, n, E)
            return (every.gather(-1, route.index) * route.weight).sum(-1), route
        tiles = plan_tiles(route.index, n_experts)
        workspace = None
        if torch.is_grad_enabled():  # sigma'(z) of every tile row, kept for the backward pass in reused memory
            need = tiles.source.numel() * rows[0].numel() // dim * n_filters
            if self.workspace is None or self.workspace.numel() < need:
                self.workspace = rows.new_empty(need + need // 8)
            workspace = self.workspace
        margin = PatchActivationSum.apply(rows, self.weight.view(-1, dim, n_filters), self.bias.view(-1, 1, n_filters),
                                          self.activation, tiles.source, readout, workspace, tiles.group)
        gate = route.weight.reshape(-1)[tiles.order]  # (A,) raw noisy logit (or softmax prob)
        out = margin.new_zeros(n_seeds * xsum.shape[0])
        out = out.index_add(0, tiles.row, margin.view(-1)[tiles.position] * gate)
        return out.view(n_seeds, -1), route


TILE_ROWS = 64
"""Rows per tile: each group of rows of one (token chunk, seed, expert) is padded to a multiple of this."""
CHUNK_TOKENS = 4096
"""Tokens per chunk. Tiles are laid out chunk by chunk, so the rows every seed and expert gather from one chunk
(3.2 MB at S1's 4 x 50 floats) stay in cache while the seeds' tiles of that chunk are computed."""


@dataclass
class Tiles:
    """Top-1 (or top-k) assignments sorted by (token chunk, seed, expert) and laid out in tiles of ``TILE_ROWS``
    rows; every tile holds rows of one (seed, expert) pair. ``A = S n k`` assignments."""

    group: torch.Tensor  # (n_tiles,) seed * E + expert of each tile
    order: torch.Tensor  # (A,) position in the flattened (S, n, k) choices of each sorted assignment
    row: torch.Tensor  # (A,) seed * n + token of each sorted assignment
    position: torch.Tensor  # (A,) tile row (tile * TILE_ROWS + offset) of each sorted assignment
    source: torch.Tensor  # (n_tiles * TILE_ROWS,) the token behind every tile row; n (a zero row) in the padding
    n_tiles: int


def plan_tiles(index: torch.Tensor, n_experts: int, chunk_tokens: int | None = None) -> Tiles:
    """Tiles for the choices ``index`` ``(S, n, k)``: a stable sort by (token chunk, seed, expert), each group
    padded to whole tiles.

    The shared :func:`moetheory.routing.dispatch` pads every expert to the largest expert's row count; once
    cubic experts specialise, half of them receive nothing and the other half twice their share, so that buffer
    doubles the work. Tiles pad each group only to a multiple of ``TILE_ROWS``.
    """
    n_seeds, n_tokens, k = index.shape
    chunk = check_int("chunk_tokens", chunk_tokens or CHUNK_TOKENS, 1)
    device = index.device
    part = (torch.arange(n_tokens, device=device) // chunk).view(1, -1, 1)
    seed = torch.arange(n_seeds, device=device).view(-1, 1, 1)
    key = ((part * n_seeds + seed) * n_experts + index).reshape(-1)  # (A,)
    # stable: tokens ascending within a group; slot j of a group sits at row j from the start of its first tile
    order, counts, slot = routing.sort_into_groups(key, -(-n_tokens // chunk) * n_seeds * n_experts)
    per_group = (counts + TILE_ROWS - 1) // TILE_ROWS
    first = torch.cumsum(per_group, 0) - per_group
    group = torch.repeat_interleave(torch.arange(counts.numel(), device=device), per_group) % (n_seeds * n_experts)
    position = torch.repeat_interleave(first * TILE_ROWS, counts) + slot
    row = order // k if k > 1 else order  # seed * n + token
    source = torch.full((group.numel() * TILE_ROWS,), n_tokens, device=device)
    source[position] = row % n_tokens
    return Tiles(group, order, row, position, source, int(group.numel()))


def make_moe(n_seeds: int, dim: int, *, n_experts: int = 8, n_filters: int = 16, activation: str = "cubic",
             combine: str = "raw", init_scale: float = 1e-3, seed: int = 0, device="cpu") -> MoEState:
    """``S`` independent MoEs as in the official code: zero router, U[0,1) noise (kept at test time), top-1."""
    check_choice("activation", activation, ACTIVATIONS)
    check_int("n_filters", n_filters, 2)
    if n_filters % 2:
        raise ValueError(f"n_filters must be even (half per class); got {n_filters}")
    gen = torch.Generator().manual_seed(seed)
    router = routing.Router(dim, n_experts, 1, n_seeds=n_seeds, noise="uniform", combine=combine,
                            noise_at_eval=True, init_std=0.0).to(device)
    w, b = init_filters((n_seeds, n_experts, n_filters), dim, init_scale, gen, device)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    return MoEState(router, w, b, activation, noise_gen)


def _per_seed_loss(margin: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The official loss per seed ``(S,)``: cross-entropy of the softmax output ``p = (1 - q, q)``,
    ``q = sigmoid(margin)``, averaged over examples.

    With two classes ``CE(p, y) = log(1 + exp(p_{1-y} - p_y)) = softplus(1 - 2 p_y)``, computed on ``(S, n)``
    margins rather than through two softmaxes on ``(S, n, 2)`` (the same function, several times cheaper).
    """
    p_true = torch.sigmoid(torch.where(y.bool(), margin, -margin))
    return F.softplus(1 - 2 * p_true).mean(-1)


@dataclass
class MoERecord:
    """What one batch of MoE runs produced (all tensors on the CPU)."""

    test_accuracy: torch.Tensor  # (S,) percent
    train_accuracy: torch.Tensor  # (S,) percent
    entropy: torch.Tensor  # (S,) dispatch entropy of the final training-set routing (official)
    entropy_history: torch.Tensor  # (T, S) per epoch (frozen after a seed stops)
    loss_history: torch.Tensor  # (T, S)
    router_center_cos: torch.Tensor  # (T, S, E, K) cos(theta_m, c_k) per epoch
    routing_matrix: torch.Tensor  # (S, K, E) final training-set routing counts
    expert_feature_cos: torch.Tensor  # (S, E, K) max over filters of |cos(w_mj, v_k)| at the end
    epochs: torch.Tensor  # (S,) epochs trained before early stopping


def train_moe(model: MoEState, data, *, epochs: int, expert_lr: float = 1e-3, router_lr: float = 0.1,
              stop_margin: float = 0.02, stop_loss: float = 0.314, progress=None) -> MoERecord:
    """Full-batch training as official: normalized GD on each expert, SGD on the router, early stopping.

    Per seed, training stops at the first epoch whose loss is not a new minimum and either exceeds the minimum by
    ``stop_margin`` or is at most ``stop_loss``; that seed's parameters then stay frozen.
    """
    check_int("epochs", epochs, 1)
    check_float("expert_lr", expert_lr, 0.0, low_open=True)
    check_float("router_lr", router_lr, 0.0, low_open=True)
    x, y = data.train_x, data.train_y
    rows, xsum = model.inputs(x)
    n_seeds, n_experts, n_clusters = model.weight.shape[0], model.router.n_experts, data.centers.shape[0]
    device = x.device
    active = torch.ones(n_seeds, dtype=torch.bool, device=device)
    best = torch.full((n_seeds,), float("inf"), device=device)
    final_index = torch.zeros(n_seeds, x.shape[0], dtype=torch.long, device=device)
    epochs_run = torch.zeros(n_seeds, dtype=torch.long, device=device)
    ent_hist, loss_hist, cos_hist = [], [], []
    last_ent = torch.zeros(n_seeds, dtype=torch.float64, device=device)
    last_loss = torch.zeros(n_seeds, device=device)
    for _ in progress(range(epochs)) if progress else range(epochs):
        cos_hist.append(metrics.cosines(model.router.weight.detach(), data.centers))
        margin, route = model.forward(rows, xsum, x.shape[1])
        loss = _per_seed_loss(margin, y)
        with torch.no_grad():
            lv = loss.detach()
            new_min = lv <= best
            stop = active & ~new_min & ((lv > best + stop_margin) | (lv <= stop_loss))
            best = torch.where(active & new_min, lv, best)
            final_index = torch.where(active.unsqueeze(-1), route.index[..., 0], final_index)
            ent = metrics.dispatch_entropy(data.train_cluster, route.index[..., 0], n_clusters, n_experts)
            last_ent = torch.where(active, ent, last_ent)
            last_loss = torch.where(active, lv, last_loss)
            ent_hist.append(last_ent)
            loss_hist.append(last_loss)
            active = active & ~stop
            epochs_run += active.long()
        if not bool(active.any()):
            break
        for p in (model.weight, model.bias, model.router.weight):
            p.grad = None
        (loss * active).sum().backward()
        normalized_gd_([model.weight, model.bias], expert_lr, batch_dims=2)
        with torch.no_grad():
            model.router.weight -= router_lr * model.router.weight.grad
    with torch.no_grad():
        test_acc = moe_accuracy(model, data.test_x, data.test_y)
        train_acc = moe_accuracy(model, data.train_x, data.train_y)
        w = model.weight.transpose(-1, -2)  # (S, E, F, d)
        feat = metrics.cosines(w, data.features).abs().amax(-2)  # (S, E, K)
        rm = metrics.routing_matrix(data.train_cluster, final_index, n_clusters, n_experts)
    return MoERecord(test_acc.cpu(), train_acc.cpu(), last_ent.float().cpu(), torch.stack(ent_hist).float().cpu(),
                     torch.stack(loss_hist).cpu(), torch.stack(cos_hist).cpu(), rm.cpu(), feat.cpu(),
                     epochs_run.cpu())


@torch.no_grad()
def moe_accuracy(model: MoEState, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Test accuracy in percent per seed ``(S,)``, with the router noise on as in the official ``test``."""
    margin, _ = model.forward(*model.inputs(x), x.shape[1])
    return ((margin > 0) == y.bool()).float().mean(-1) * 100  # argmax of the softmax; a tie picks class 0


@dataclass
class SingleRecord:
    """Results of a batch of single (non-MoE) CNNs."""

    test_accuracy: torch.Tensor  # (S,)
    train_accuracy: torch.Tensor  # (S,)
    loss_history: torch.Tensor  # (T, S)
    epochs: torch.Tensor  # (S,)


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


def train_single(data, *, n_seeds: int, n_filters: int = 80, activation: str = "cubic", lr: float = 0.01,
                 weight_decay: float = 5e-4, epochs: int = 801, patience_after: int = 500, stop_margin: float = 0.02,
                 init_scale: float = 1.0, seed: int = 0, progress=None) -> SingleRecord:
    """Single CNNs trained as official: Adam on the full batch, early stop after ``patience_after`` epochs.

    Adam and its L2 weight decay act coordinate by coordinate, so one Adam over the stacked ``(S, ...)``
    parameters is exactly ``S`` independent Adams; a stopped seed's parameters are restored after each step.
    """
    check_choice("activation", activation, ACTIVATIONS)
    check_int("epochs", epochs, 1)
    x, y = data.train_x, data.train_y
    device = x.device
    gen = torch.Generator().manual_seed(seed)
    w, b = init_filters((n_seeds, n_filters), x.shape[-1], init_scale, gen, device)  # (S, d, F), (S, 1, F)
    n_patches = x.shape[1]
    workspace = None  # sigma'(z) of every epoch in the same memory
    if activation == "linear":
        x = x.sum(1, keepdim=True)  # a linear CNN needs only the patch sums
    else:
        workspace = x.new_empty(x.shape[0] * n_patches * n_seeds * n_filters)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    active = torch.ones(n_seeds, dtype=torch.bool, device=device)
    best = torch.full((n_seeds,), float("inf"), device=device)
    epochs_run = torch.zeros(n_seeds, dtype=torch.long, device=device)
    hist = []
    for epoch in progress(range(epochs)) if progress else range(epochs):
        logits = single_logits(x, w, b, activation, n_patches, workspace)  # (S, n, 2)
        loss = F.cross_entropy(logits.transpose(1, 2), y.expand(n_seeds, -1), reduction="none").mean(-1)
        with torch.no_grad():
            lv = loss.detach()
            new_min = lv <= best
            stop = active & ~new_min & (lv > best + stop_margin) & (epoch > patience_after)
            best = torch.where(active & new_min, lv, best)
            hist.append(torch.where(active, lv, hist[-1] if hist else lv))
            active = active & ~stop
            epochs_run += active.long()
        if not bool(active.any()):
            break
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        keep = [p.detach().clone() for p in (w, b)] if not bool(active.all()) else None
        opt.step()
        if keep is not None:
            with torch.no_grad():
                for p, old in zip((w, b), keep, strict=True):
                    p.copy_(torch.where(active.view(-1, 1, 1), p, old))
    with torch.no_grad():
        def acc(xx, yy):
            return ((single_logits(xx, w, b, activation).argmax(-1) == yy).float().mean(-1) * 100).cpu()
        return SingleRecord(acc(data.test_x, data.test_y), acc(data.train_x, y), torch.stack(hist).cpu(),
                            epochs_run.cpu())
