"""Chen et al. (2022)'s models: a shared-filter CNN on patches, alone or as the experts of a top-1 MoE.

Derived and used in the chen2022 chapter. Everything carries a leading seed axis ``S`` (and an expert axis ``E``)
so that all seeds of one configuration train in one batched step. The MoE dispatches each example to its expert by
a sort (:func:`plan_tiles`), so an expert computes only its own rows; the patch CNN
(:mod:`moetheory.papers.chen2022.patch_cnn`) gathers, computes and reduces one block of tiles at a time so that the
work stays in the CPU's cache. Linear
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
from moetheory.papers.chen2022.patch_cnn import PatchActivationSum, single_logits

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
              stop_margin: float = 0.02, stop_loss: float = 0.314, progress=None, extra_loss=None,
              early_stopping: bool = True, per_tensor: bool = False) -> MoERecord:
    """Full-batch training as official: normalized GD on each expert, SGD on the router, early stopping.

    Per seed, training stops at the first epoch whose loss is not a new minimum and either exceeds the minimum by
    ``stop_margin`` or is at most ``stop_loss``; that seed's parameters then stay frozen. ``extra_loss(route)``
    ``(S,)``, if given, is added to the loss (the load-balancing ablation, :mod:`.extras`);
    ``early_stopping=False`` trains every epoch; ``per_tensor`` normalises the expert weight and bias gradients
    separately (the official entropy notebooks) instead of by ``||grad W|| + ||grad b||``.
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
        if extra_loss is not None:
            loss = loss + extra_loss(route)
        with torch.no_grad():
            lv = loss.detach()
            new_min = lv <= best
            stop = active & ~new_min & ((lv > best + stop_margin) | (lv <= stop_loss)) & early_stopping
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
        for group in ([model.weight], [model.bias]) if per_tensor else ([model.weight, model.bias],):
            normalized_gd_(group, expert_lr, batch_dims=2)
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
    weight: torch.Tensor | None = None  # (S, d, F) trained filters (class 0 first half), detached
    bias: torch.Tensor | None = None  # (S, 1, F)


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
                            epochs_run.cpu(), w.detach().cpu(), b.detach().cpu())
