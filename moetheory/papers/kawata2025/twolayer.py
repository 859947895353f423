"""Experts shaped as the public description of Kawata et al. has them, run beside the default pipeline (the
``kawata2025`` chapter, section "Two-layer experts"; ``benchmarks/kawata2025_two_layer.py``).

A review describes "a mixture of two-layer network experts" trained stagewise: first-layer neurons specialise to
the subtasks, the routing weights then point towards the relevant experts, the global task comes last; a
third-party summary adds top-k routing and convex optimisation. OUR reading of that (the paper's text was not read):
``n_experts`` experts, each with ``width`` first-layer neurons from the start, the same neurons through every stage,

1. every neuron of every expert trained on all data exactly as the default stage 1 (online spherical SGD on the
   correlation loss, ``stage1_schedule``, ``clip_norm``);
2. a linear softmax router from zero with the experts frozen, each expert's output the mean of its neurons' sigma;
3. each expert's neurons trained on the data routed to it (top-``top_k``), inputs centred by a running mean;
4. one ridge fit of the whole mixture's output layers (gates: the softmax renormalised over the chosen experts).

No pruning and no fresh neurons (the default pipeline's one-neuron stage-1 experts, thrown away after stage 2, and its
pruning are what this replaces). Everything else comes from the :class:`~moetheory.papers.kawata2025.Config`;
``width`` and ``top_k`` are arguments, not config fields.
"""

from __future__ import annotations

import types

import numpy as np
import torch

from moetheory import runtime
from moetheory.activations import hermite_activation, hermite_value
from moetheory.checks import check_float, check_int
from moetheory.metrics import overlaps, unit
from moetheory.papers.kawata2025 import Config, clip_norm, expert_specialisation, stage1_recovery, stage1_schedule
from moetheory.papers.kawata2025.data import sample_clusters
from moetheory.papers.kawata2025.model import boundary_alignment, features, prune, random_unit, sgd_step
from moetheory.papers.kawata2025.pipeline import setting

__all__ = ["top_k_gates", "mixture_ridge_mse", "expert_purity", "first_layers", "run_two_layer"]


def top_k_gates(x, router, k, keep=None):
    """``(S, n, M)`` gates of the linear softmax router ``(S, M, d)`` read top-k: the softmax renormalised over the
    ``k`` largest logits of each row, 0 elsewhere (top-1: one-hot); ``keep (S, M)``: only those experts compete."""
    logits = torch.einsum("snd,smd->snm", x, router)
    if keep is not None:
        logits = logits.masked_fill(~keep.unsqueeze(1), -torch.inf)
    top = logits.topk(k, dim=-1)
    return torch.zeros_like(logits).scatter_(-1, top.indices, torch.softmax(top.values, -1))


def mixture_ridge_mse(feats, gates, y, feats_test, gates_test, y_test, ridge):
    """One ridge fit of every expert's output layer at once, the prediction sum_m g_m(x) <a_m, phi_m(x)>; test MSE
    per seed. ``feats (S, M, n, F)``, ``gates (S, n, M)``. With one-hot gates it is the per-expert fit of
    :func:`~moetheory.papers.kawata2025.model.ridge_mse` (the design is block diagonal)."""

    def design(f, g):  # (S, n, M * F)
        return (f * g.transpose(1, 2).unsqueeze(-1)).permute(0, 2, 1, 3).flatten(2)

    phi, phi_test = design(feats, gates), design(feats_test, gates_test)
    eye = torch.eye(phi.shape[-1], device=phi.device, dtype=phi.dtype)
    gram = phi.transpose(1, 2) @ phi + ridge * phi.shape[1] * eye
    coef = torch.linalg.solve(gram, phi.transpose(1, 2) @ y[..., None])
    return ((phi_test @ coef).squeeze(-1) - y_test).pow(2).mean(-1)


def expert_purity(counts):
    """Per seed, the share of points sent to an expert whose majority cluster is theirs (``counts (S, C, M)``, points
    of cluster c routed to expert m). Unlike the routing purity it does not count several experts sharing a cluster
    as impure."""
    return counts.max(1).sum(-1) / counts.sum((1, 2))


def first_layers(shape, d, gen, dev, init_spread=None):
    """Unit neurons ``(S, M, J, d)``: uniform and independent (``init_spread=None``), or the neurons of each expert
    at ``unit(c_m + init_spread g / sqrt(d))`` around one uniform direction ``c_m`` per expert."""
    u = random_unit(shape, d, gen, dev)
    if init_spread is None:
        return u
    centre = random_unit((*shape[:-1], 1), d, gen, dev)
    return unit(centre + init_spread / d**0.5 * torch.randn(*shape, d, generator=gen, dtype=u.dtype, device=dev))


@torch.no_grad()
def run_two_layer(cfg: Config, dev: torch.device, *, width: int = 16, top_k: int = 1, init_spread: float | None = None,
                  prune_cos: float | None = None, fresh: bool = False, progress: bool = False) -> dict:
    """Stages 1-4 above in the setting of ``cfg`` (``n_experts`` experts of ``width`` neurons, routing top-``top_k``);
    per-seed metrics at the end of each stage, JSON-safe. Seeds are batched; the only loop is over SGD steps.

    ``init_spread``: ``None`` starts every neuron uniformly and independently; a number ``r`` starts the neurons of
    expert m at ``unit(c_m + r g / sqrt(d))`` around one uniform direction ``c_m`` per expert (``g`` standard normal;
    ``r = 1``: about 45 degrees from ``c_m``), an initialisation shared within each expert. Two more ablations move
    towards the default pipeline: ``prune_cos`` prunes after stage 2 as it does (``Config.prune_cos``; top-k then
    among the kept experts, k at most their number), ``fresh`` re-draws every neuron when stage 3 starts."""
    width, top_k = check_int("width", width, 1), check_int("top_k", top_k, 1, cfg.n_experts)
    if init_spread is not None:
        check_float("init_spread", init_spread, 0.0)
    if prune_cos is not None:
        check_float("prune_cos", prune_cos, 0.0, 1.0)
    gen, problem, dirs, means = setting(cfg, dev)
    real = dict(dtype=dirs.dtype, device=dev)
    act, value, s, m = hermite_activation(cfg.activation), hermite_value(cfg.activation), cfg.n_seeds, cfg.n_experts
    lr1, t1 = stage1_schedule(cfg)
    clip = clip_norm(cfg)

    def draw(n):
        return sample_clusters(problem, n, s, generator=gen, device=dev)

    x_fit, y_fit, _ = draw(cfg.n_fit)
    x_te, y_te, c_te = draw(cfg.n_test)
    u = first_layers((s, m, width), cfg.d, gen, dev, init_spread)  # (S, M, J, d): every expert's first layer
    router, keep = torch.zeros(s, m, cfg.d, **real), torch.ones(s, m, dtype=torch.bool, device=dev)
    sums, counts = torch.zeros(s, m, cfg.d, **real), torch.zeros(s, m, **real)
    out = {"width": width, "top_k": top_k, "init_spread": init_spread, "prune_cos": prune_cos, "fresh": fresh,
           "n_experts": m, "n_clusters": cfg.n_clusters, "d": cfg.d}
    steps = [("stage 1", t1), ("stage 2", cfg.stage2_steps), ("stage 3", cfg.stage3_steps)]
    bar = runtime.progress(total=sum(n for _, n in steps), desc=f"kawata2025 two-layer C={cfg.n_clusters}",
                           enabled=progress)
    for stage, n_steps in steps:
        for _ in range(n_steps):
            x, y, _ = draw(cfg.batch)
            if stage == "stage 1":  # all M x J neurons on all data, as one group
                sgd_step(u.view(s, 1, m * width, cfg.d), x.unsqueeze(1), y.unsqueeze(1), act, lr1, clip)
            elif stage == "stage 2":
                _router_step(router, u, x, y, act, cfg.router_lr / cfg.stage2_steps, cfg.router_clip)
            else:
                mask = (top_k_gates(x, router, top_k, keep) > 0).transpose(1, 2).to(x.dtype)  # (S, M, B)
                n_rows = mask.sum(-1)
                if cfg.centre:
                    sums += torch.einsum("smb,sbd->smd", mask, x)
                    counts += n_rows
                xc = x.unsqueeze(1) - (sums / counts.clamp_min(1).unsqueeze(-1)).unsqueeze(2)
                sgd_step(u, xc, y.unsqueeze(1).expand(-1, m, -1), act, cfg.lr / cfg.d, clip,
                         mask / n_rows.clamp_min(1).unsqueeze(-1))
            bar.update()
        if stage == "stage 1":
            ov = overlaps(u.flatten(1, 2), dirs).cpu().numpy()  # (S, M * J, C + 1)
            nearest = ov[..., :-1].argmax(-1).reshape(s, m, width)  # each neuron's best cluster direction
            share = np.stack([(nearest == c).mean(-1) for c in range(cfg.n_clusters)], -1).max(-1)  # (S, M)
            out["stage1_recovered"] = stage1_recovery(ov[..., :-1]).mean(1).round(4).tolist()
            out["stage1_expert_majority"] = np.median(share, 1).round(4).tolist()
        elif stage == "stage 2":
            if prune_cos is not None:  # as the default: by load, dropping rows near-parallel to a kept one
                load = torch.nn.functional.one_hot(top_k_gates(x_fit, router, 1).argmax(-1), m).to(x_fit.dtype)
                keep = prune(router, load.mean(1), prune_cos)
                top_k = min(top_k, int(keep.sum(-1).min()))
            if fresh:
                u = random_unit((s, m, width), cfg.d, gen, dev)
    bar.close()
    out.update(top_k_used=top_k, experts_kept=keep.sum(-1).cpu().tolist())
    gates_te = top_k_gates(x_te, router, top_k, keep)
    first = gates_te.argmax(-1)  # the top-1 expert of each test point
    counts_ce = torch.zeros(s, cfg.n_clusters, m, **real).index_put_(
        (torch.arange(s, device=dev).unsqueeze(1).expand_as(c_te), c_te, first), torch.ones_like(y_te), accumulate=True
    )
    final = overlaps(u.flatten(1, 2), dirs).cpu().numpy()  # (S, M * J, C + 1)
    view = types.SimpleNamespace(moe_overlap=final[:, None], routing_counts=counts_ce.cpu().numpy())
    centre = sums / counts.clamp_min(1).unsqueeze(-1)
    mse = mixture_ridge_mse(features(u, x_fit, value, centre), top_k_gates(x_fit, router, top_k, keep), y_fit,
                            features(u, x_te, value, centre), gates_te, y_te, cfg.ridge)
    out.update(
        routing_purity=(counts_ce.max(-1).values.sum(-1) / cfg.n_test).round(decimals=4).cpu().tolist(),
        expert_purity=expert_purity(counts_ce.cpu().numpy()).round(4).tolist(),
        router_boundary_alignment=np.nanmin(boundary_alignment(router, means, counts_ce).cpu().numpy(), (1, 2))
        .round(4).tolist(),
        expert_specialisation=expert_specialisation(view).mean(1).round(4).tolist(),
        moe_best_global_overlap=final[..., -1].max(-1).round(4).tolist(),
        moe_mse=mse.cpu().numpy().round(4).tolist(),
        label_variance=round(float(problem.label_variance), 4),
        noise_floor=cfg.noise_std**2,
    )
    return out


def _router_step(router, u, x, y, act, lr, clip):
    """:func:`~moetheory.papers.kawata2025.model.router_step` for experts of several neurons: each expert's output
    is the mean of its neurons' sigma (``u (S, M, J, d)``)."""
    sig = act(torch.einsum("sbd,smjd->sbmj", x, u))[0].mean(-1)  # (S, B, M)
    pi = torch.softmax(torch.einsum("sbd,smd->sbm", x, router), -1)
    grad = torch.einsum("sb,sbm,sbd->smd", y, pi * (sig - (pi * sig).sum(-1, keepdim=True)), x) / x.shape[1]
    router += lr * grad * (clip / grad.norm(dim=-1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)
