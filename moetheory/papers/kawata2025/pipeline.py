"""The stagewise pipeline of one setting: stage 1 (one-neuron experts find the cluster directions), stage 2 (the
router, experts frozen) and stage 3 (the global task), beside the vanilla network on the same online stream.
:func:`moetheory.papers.kawata2025.run` calls it once per setting."""

from __future__ import annotations

import time

import numpy as np
import torch

from moetheory import runtime
from moetheory.activations import HERMITE_ACTIVATIONS, hermite_activation, hermite_value
from moetheory.metrics import overlaps, unit
from moetheory.papers.kawata2025 import Config, Result, clip_norm, stage1_schedule
from moetheory.papers.kawata2025.data import make_cluster_problem, sample_clusters
from moetheory.papers.kawata2025.exponents import setting_exponent, task_exponent
from moetheory.papers.kawata2025.model import (
    alignment,
    boundary_alignment,
    chance_level,
    features,
    prune,
    random_unit,
    ridge_mse,
    route,
    router_step,
    sgd_step,
    zero_sum_ceiling,
)


def setting(cfg: Config, dev: torch.device):
    """``(generator, problem, directions, means)`` of ``cfg``'s setting, everything seeded by ``cfg.seed``:
    directions ``(C + 1, d)`` (every w_c, then w_g) and means ``(C, d)`` as tensors on ``dev``. Shared by
    :func:`run_setting` and :func:`~moetheory.papers.kawata2025.twolayer.run_two_layer`."""
    runtime.seed_everything(cfg.seed)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    problem = make_cluster_problem(
        cfg.d, cfg.n_clusters, rho=cfg.rho, layout=cfg.layout, noise_std=cfg.noise_std, seed=cfg.seed
    )
    real = dict(dtype=torch.get_default_dtype(), device=dev)
    dirs = torch.tensor(np.vstack([problem.local_dirs, problem.global_dir]), **real)
    return gen, problem, dirs, torch.tensor(problem.means, **real)


@torch.no_grad()
def run_setting(cfg: Config, dev: torch.device, progress: bool) -> Result:
    start = time.perf_counter()
    gen, problem, dirs, means = setting(cfg, dev)
    act, s, m, k, lr = (
        hermite_activation(cfg.activation),
        cfg.n_seeds,
        cfg.n_experts,
        cfg.expert_width,
        cfg.lr / cfg.d,
    )
    value = hermite_value(cfg.activation)  # sigma alone, for the output-layer fits
    lr1, t1 = stage1_schedule(cfg)
    clip = clip_norm(cfg)
    t12, total = t1 + cfg.stage2_steps, cfg.total_steps

    def draw(n):
        return sample_clusters(problem, n, s, generator=gen, device=dev)

    x_fit, y_fit, _ = draw(cfg.n_fit)
    x_te, y_te, c_te = draw(cfg.n_test)
    u_van = random_unit((s, 1, cfg.vanilla_width), cfg.d, gen, dev)  # (S, 1, N, d)
    u1 = random_unit((s, 1, m), cfg.d, gen, dev)  # stage 1: M one-neuron experts
    u3 = random_unit((s, m, k), cfg.d, gen, dev)  # stage 3: K fresh neurons per expert
    router = torch.zeros(s, m, cfg.d, device=dev)  # (S, M, d) router rows, from zero
    keep = torch.ones(s, m, dtype=torch.bool, device=dev)
    sums, counts = torch.zeros(s, m, cfg.d, device=dev), torch.zeros(s, m, device=dev)
    checks = sorted(set(np.linspace(0, total, cfg.n_checkpoints).round().astype(int).tolist()) | {t1, t12})
    every2 = max(1, cfg.stage2_steps // 25)
    log = {key: [] for key in ("van_ov", "van_mse", "moe_ov", "moe_mse", "stage", "align", "align_at")}
    ones_fit, ones_te = torch.ones(s, 1, cfg.n_fit, device=dev), torch.ones(s, 1, cfg.n_test, device=dev)

    def record(step):
        log["van_ov"].append(overlaps(u_van[:, 0], dirs))
        log["van_mse"].append(ridge_mse(features(u_van, x_fit, value), y_fit, ones_fit, features(u_van, x_te, value),
                                        y_te, ones_te, cfg.ridge))
        pad = torch.full((s, m * k, dirs.shape[0]), torch.nan, device=dev)
        if step <= t12:  # the stage-1 experts (one neuron each) are the model so far
            pad[:, :m] = overlaps(u1[:, 0], dirs)
            mse = ridge_mse(
                features(u1, x_fit, value), y_fit, ones_fit, features(u1, x_te, value), y_te, ones_te, cfg.ridge
            )
        else:
            pad = overlaps(u3, dirs).masked_fill(~keep[..., None, None], torch.nan).flatten(1, 2)
            centre = sums / counts.clamp_min(1).unsqueeze(-1)
            onehot = lambda e: torch.nn.functional.one_hot(e, m).transpose(1, 2).to(torch.get_default_dtype())  # noqa: E731
            mse = ridge_mse(features(u3, x_fit, value, centre), y_fit, onehot(route(x_fit, router, keep)),
                            features(u3, x_te, value, centre), y_te, onehot(route(x_te, router, keep)), cfg.ridge)
        log["moe_ov"].append(pad)
        log["moe_mse"].append(mse)
        log["stage"].append(1 if step <= t1 else 2 if step <= t12 else 3)

    desc = f"kawata2025 C={cfg.n_clusters}"
    for step in runtime.progress(range(total + 1), desc=desc, enabled=progress):
        if step in checks:
            record(step)
        if t1 <= step <= t12 and (step - t1) % every2 == 0:
            log["align"].append(alignment(router, means))
            log["align_at"].append(step)
        if step == total:
            break
        x, y, _ = draw(cfg.batch)
        sgd_step(u_van, x.unsqueeze(1), y.unsqueeze(1), act, lr, clip)
        if step < t1:
            sgd_step(u1, x.unsqueeze(1), y.unsqueeze(1), act, lr1, clip)
            if step == t1 - 1:  # what stage 1 hands to the router
                stage1 = (overlaps(u1[:, 0], dirs), (u1[:, 0] @ means.T).abs())
        elif step < t12:
            router_step(router, u1[:, 0], x, y, act, cfg.router_lr / cfg.stage2_steps, cfg.router_clip)
            if step == t12 - 1:
                load = torch.nn.functional.one_hot(route(x_fit, router, keep), m).to(x_fit.dtype).mean(1)  # (S, M)
                keep = prune(router, load, cfg.prune_cos)
        else:
            mask = (
                torch.nn.functional.one_hot(route(x, router, keep), m).transpose(1, 2).to(torch.get_default_dtype())
            )  # (S, M, B)
            n_rows = mask.sum(-1)
            if cfg.centre:
                sums += torch.einsum("smb,sbd->smd", mask, x)
                counts += n_rows
            xc = x.unsqueeze(1) - (sums / counts.clamp_min(1).unsqueeze(-1)).unsqueeze(2)  # (S, M, B, d)
            sgd_step(
                u3,
                xc,
                y.unsqueeze(1).expand(-1, m, -1),
                act,
                lr,
                clip,
                mask / n_rows.clamp_min(1).unsqueeze(-1),
            )

    route_te = route(x_te, router, keep)
    counts_ce = torch.zeros(s, cfg.n_clusters, m, device=dev).index_put_(
        (torch.arange(s, device=dev).unsqueeze(1).expand_as(c_te), c_te, route_te),
        torch.ones_like(y_te),
        accumulate=True,
    )
    stack = lambda key: torch.stack(log[key], 1).cpu().numpy()  # noqa: E731
    exponent = setting_exponent(cfg)[0] if HERMITE_ACTIVATIONS[cfg.activation] is not None else None
    return Result(
        config=cfg,
        samples=np.array(checks) * cfg.batch,
        vanilla_overlap=stack("van_ov"),
        moe_overlap=stack("moe_ov"),
        moe_stage=np.array(log["stage"]),
        router_alignment=stack("align"),
        router_alignment_final=alignment(router, means, keep).cpu().numpy(),
        router_cos=(unit(router) @ means.T).masked_fill(~keep.unsqueeze(-1), torch.nan).cpu().numpy(),
        router_boundary=boundary_alignment(router, means, counts_ce).cpu().numpy(),
        router_ceiling=zero_sum_ceiling(means),
        vanilla_mse=stack("van_mse"),
        moe_mse=stack("moe_mse"),
        routing_purity=(counts_ce.max(-1).values.sum(-1) / cfg.n_test).cpu().numpy(),
        routing_counts=counts_ce.round().to(torch.int64).cpu().numpy(),
        n_kept=keep.sum(-1).cpu().numpy(),
        stage1_overlap=stage1[0].cpu().numpy(),
        stage1_mean_overlap=stage1[1].cpu().numpy(),
        chance_level=chance_level(cfg.vanilla_width, cfg.d),
        global_exponent=exponent,
        k_star=problem.k_star,
        task_exponent=task_exponent(problem),
        label_variance=problem.label_variance,
        elapsed_s=time.perf_counter() - start,
        device=runtime.device_description(dev),
    )


