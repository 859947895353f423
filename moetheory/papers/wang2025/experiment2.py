"""Experiment II of Wang & E (2025) on the paper's Figure 3 target, with explicit training budgets and the exactly
routed construction as the approximation-limited reference (chapter wang2025).

What is the paper's (main text, Section 'Experimental Validation' and Figure 3): the domain [0, 3]^2 with 3^2 = 9 unit
cells, the pieces ``i (z - i + 1)^2 (z - i)^2`` on ``[i - 1, i]``, the "2-3-MoE" (2 routed layers of 3 experts) against
the "1-6-MoE" (comparable parameters), experts 2-layer ReLU nets of width m in {16, 32, 64, 128}, and eq. (4)'s tuple
output (``f_out = id``). What comes from third-party notes: the recipe (Adam 1e-3, batch 128, squared loss, 5000
iterations). What is ours: the scalar readings ``"sum"`` and ``"product"`` (the caption that would say how the two
coordinates combine is lost), the jump target (independent sine pieces, :func:`manifolds.cube_target`: a labelled
extension, not the paper's), the parallel and dense controls, the budget sweep (one run, evaluated at several step
counts) and :func:`construct_figure3_moe`.
"""

from __future__ import annotations

import numpy as np
import torch

from moetheory.checks import check_choice, check_float, check_int
from moetheory.metrics import loglog_slope
from moetheory.papers.wang2025 import manifolds
from moetheory.papers.wang2025.bounds import moe_parameters
from moetheory.papers.wang2025.deep_moe import DenseNet, StackedMoE, evaluate, train_regression

__all__ = ["SCALAR_TARGETS", "TARGETS", "METRICS", "PERTURBED_PARTS", "construct_figure3_moe", "perturbed_construction",
           "run_from_construction", "run_construction2", "run_exp2", "exp2_slopes", "exp2_seed_slopes"]

SCALAR_TARGETS = ("sum", "product", "jump")  # Figure 3 pieces summed / multiplied (ours); the jump extension (ours)
TARGETS = ("tuple", *SCALAR_TARGETS)  # what Config.exp2_targets may select ("tuple": the paper's)
METRICS = ("mse", "rmse", "linf")
# (target, stack) pairs of the scalar deep model: composition against none (parallel) on the non-separable product
_SCALAR_DEEP = (("sum", "serial"), ("product", "serial"), ("product", "parallel"), ("jump", "serial"))


def construct_figure3_moe(width: int, output: str = "tuple", *, n_layers: int = 2, n_experts: int = 3) -> StackedMoE:
    """An exactly routed ``n_layers``-layer, ``n_experts``-expert top-1 MoE (weight 1) with interpolating experts
    on the Figure 3 target (default: the paper's 2 x 3 on [0, 3]^2; else the pieces extended to [0, E]^L, ours).

    Layer l routes on x_l with the integer gate ``g_k(z) = k z - k (k + 1) / 2`` (``g_k - g_{k-1} = z - k``, so the
    argmax is the cell ``floor(z)``); its expert k is the piecewise-linear interpolant of the piece on cell k at m
    equal pieces, a width-m ReLU net (unit j = relu(x_l - k - j/m)). ``"tuple"`` writes layer l to output l (eq. (4)
    with f_out = id, a member of H^{L,E}_{2,m}), ``"sum"`` every layer to one output. A product needs a multiplying
    f_out, which this construction does not have. Ours, in the spirit of Theorem 5.3's proof (appendix not read).
    """
    width = check_int("width", width, 1)
    output = check_choice("output", output, ("tuple", "sum"))
    L, E = check_int("n_layers", n_layers, 1), check_int("n_experts", n_experts, 1)
    c = L if output == "tuple" else 1
    moe = StackedMoE(L, E, [width], n_layers=L, weight="hard", router_init_std=0.0, d_out=c).double()
    t = torch.linspace(0, 1, width + 1, dtype=torch.float64)  # knots in the cell
    k = torch.arange(E, dtype=torch.float64)
    values = manifolds.figure3_pieces(k[:, None] + t[None, :], E)  # (E, m + 1); zero at both faces
    slopes = values.diff(dim=1) * width  # (E, m)
    out_w = torch.cat([slopes[:, :1], slopes.diff(dim=1)], 1)  # slope changes at knots 0..m-1
    with torch.no_grad():
        for layer_index, layer in enumerate(moe.layers):
            gate = torch.zeros(E, L + 1 + c, dtype=torch.float64)  # state (x_1..x_L, 1, u)
            gate[:, layer_index], gate[:, L] = k, -k * (k + 1) / 2
            layer.router.weight.copy_(gate[None])
            hidden, out = layer.experts.layers
            hidden.weight.zero_()
            hidden.weight[0, :, layer_index, :] = 1.0
            hidden.bias.copy_(-(k[:, None] + t[None, :-1]).view(1, E, 1, width))
            out.weight.zero_()
            out.bias.zero_()
            out.weight[0, :, :, layer_index if output == "tuple" else 0] = out_w
    return moe


PERTURBED_PARTS = ("router", "experts")  # what a perturbation of the construction touches


def perturbed_construction(width: int, router_sigma, expert_sigma, generator: torch.Generator) -> StackedMoE:
    """Copies of :func:`construct_figure3_moe` ``(width, "tuple")``, one per slot, with the straight-through weight
    (forward value 1, as the construction's, but the router gets gradients). In slot s every router tensor gets
    Gaussian noise of standard deviation ``router_sigma[s]`` times that tensor's root mean square, and every expert
    weight and bias ``expert_sigma[s]`` times its own (a zero tensor stays zero), drawn from ``generator``."""
    check_int("width", width, 1)
    router_sigma, expert_sigma = (np.array([check_float(n, float(v), 0.0) for v in vs]) for n, vs in
                                  (("router_sigma", router_sigma), ("expert_sigma", expert_sigma)))
    if len(router_sigma) != len(expert_sigma) or not len(router_sigma):
        raise ValueError(f"router_sigma and expert_sigma must give one value per slot (the same number, >= 1); got "
                         f"{len(router_sigma)} and {len(expert_sigma)}")
    base = construct_figure3_moe(width, "tuple")
    moe = StackedMoE(2, 3, [width] * len(router_sigma), n_layers=2, weight="straight", router_init_std=0.0,
                     d_out=2).double()
    with torch.no_grad():
        for (name, p), q in zip(moe.named_parameters(), base.parameters(), strict=True):
            sigma = torch.tensor(router_sigma if "router" in name else expert_sigma, dtype=p.dtype)
            noise = torch.randn(p.shape, generator=generator, dtype=p.dtype)
            p.copy_(q.expand_as(p) + sigma.view(-1, *[1] * (p.dim() - 1)) * q.pow(2).mean().sqrt() * noise)
    return moe


def run_from_construction(cfg, width: int, sigmas, dev, gen) -> dict:
    """The construction perturbed in its router only or in its experts only (:func:`perturbed_construction`,
    ``cfg.n_seeds`` draws per setting), trained with the recipe for ``cfg.exp2_iterations`` steps on the tuple target
    in one batched run: ``{part: {"mse", "linf": (sigmas, 1 + budgets, seeds)}}`` for part in
    :data:`PERTURBED_PARTS`, index 0 of the second axis before training. Separates finding the routing (router
    perturbed, experts exact) from fitting the experts (the reverse)."""
    sigmas = [check_float("sigmas", float(v), 0.0) for v in sigmas]
    per_slot = np.repeat(sigmas, cfg.n_seeds)
    zeros = np.zeros_like(per_slot)
    moe = perturbed_construction(width, np.concatenate([per_slot, zeros]), np.concatenate([zeros, per_slot]), gen)
    X, y, _ = (t.to(dev) for t in _figure3_problem(cfg, grid=False))
    Xt, yt, _ = (t.to(dev) for t in _figure3_problem(cfg, grid=True))
    moe = moe.to(device=dev, dtype=X.dtype)
    start = evaluate(moe, Xt, yt)
    runs = _train(moe, X, y, Xt, yt, cfg, dev, gen)
    shape = (len(PERTURBED_PARTS), len(sigmas), cfg.n_seeds)
    out = {part: {} for part in PERTURBED_PARTS}
    for k in ("mse", "linf"):
        errs = np.concatenate([getattr(start, k)[None], runs[k]]).reshape(-1, *shape)  # (1 + budgets, parts, ...)
        for i, part in enumerate(PERTURBED_PARTS):
            out[part][k] = errs[:, i].transpose(1, 0, 2)
    return out


def _figure3_problem(cfg, grid: bool):
    """Inputs on [0, 3]^2 and every target: ``x``, the tuple ``(n, 2)`` and the scalar targets ``(n, 3)``."""
    if grid:
        x, tup = manifolds.figure3_grid(cfg.exp2_grid, "tuple")
    else:
        x, tup = manifolds.sample_figure3(cfg.n_train, "tuple", seed=cfg.seed + 1)
    jump = manifolds.cube_target(x, manifolds.piece_coefficients(3, 2, cfg.seed), "sum")
    return x, tup, torch.stack([tup.sum(1), tup.prod(1), jump], 1)


def run_construction2(cfg) -> dict:
    """The construction's errors on the Figure 3 grid, ``{output: {"linf", "mse": (widths,)}}`` (CPU, float64)."""
    x, tup, scalar = _figure3_problem(cfg, grid=True)
    out = {}
    for output, y in (("tuple", tup), ("sum", scalar[:, 0])):
        res = [evaluate(construct_figure3_moe(w, output), x.double(), y.double()) for w in cfg.exp2_widths]
        out[output] = {"linf": np.array([r.linf[0] for r in res]), "mse": np.array([r.mse[0] for r in res])}
    return out


def _train(model, X, y, Xt, yt, cfg, dev, gen, per_slot=False, *, iterations=None, checkpoints=None,
           **schedule) -> dict:
    """Train once to ``iterations`` steps (default ``cfg.exp2_iterations``), evaluating at every checkpoint (default
    ``cfg.exp2_budgets``): ``{"linf", "mse": (B, S)}``; ``schedule``: :func:`train_regression`'s step-size options."""
    model = model.to(dev)
    seen = []
    train_regression(model, X, y, iterations=cfg.exp2_iterations if iterations is None else iterations, lr=cfg.lr,
                     batch_size=cfg.batch_size, generator=gen, per_slot=per_slot,
                     checkpoints=cfg.exp2_budgets if checkpoints is None else checkpoints,
                     on_checkpoint=lambda _: seen.append(evaluate(model, Xt, yt, per_slot=per_slot)), **schedule)
    return {"linf": np.stack([r.linf for r in seen]), "mse": np.stack([r.mse for r in seen])}


def _split(errs: dict, groups: int, n_widths: int) -> list[dict]:
    """``(B, groups * widths * seeds)`` -> per group ``(B, widths, seeds)``, with RMSE added."""
    out = []
    for g in range(groups):
        part = {k: v.reshape(v.shape[0], groups, n_widths, -1)[:, g] for k, v in errs.items()}
        out.append({**part, "rmse": np.sqrt(part["mse"])})
    return out


def run_exp2(cfg, dev, gen) -> tuple[dict, dict]:
    """Experiment II: ``{target: {model: {"mse", "rmse", "linf": (budgets, widths, seeds)}}}`` and parameters.

    ``"tuple"`` (the paper's, a two-output head): deep (2 x 3, serial), shallow (1 x 6) and a dense net matched on
    the deep MoE's total parameters, the MoEs with the softmax-probability combine weight (ours: the gate learns),
    and for each of ``cfg.exp2_arms`` a deep MoE with a paper-literal weight (``"deep-hard"``, ``"deep-straight"``).
    Scalar targets (those of :data:`SCALAR_TARGETS` in ``cfg.exp2_targets``) share one model per kind, each slot
    fitting its own target: deep (plus a parallel control on the product) and dense (the 1-6-MoE is the paper's
    comparison on its own target and runs there only: each model costs one more training run).
    """
    widths, s, nw = list(cfg.exp2_widths), cfg.n_seeds, len(cfg.exp2_widths)
    slots = [w for w in widths for _ in range(s)]  # (widths x seeds)
    X, y_tup, y_sc = (t.to(dev) for t in _figure3_problem(cfg, grid=False))
    Xt, yt_tup, yt_sc = (t.to(dev) for t in _figure3_problem(cfg, grid=True))
    params, out = {}, {}
    for c, name in ((2, "tuple"), (1, "scalar")):
        deep = [moe_parameters(3 + c, 3, w, n_layers=2, d_out=c)["total"] for w in widths]
        dense_w = [max(1, round((t - c) / (3 + c))) for t in deep]  # dense 2 -> w -> c: (3 + c) w + c
        params[name] = {"deep": deep, "shallow": [moe_parameters(3 + c, 6, w, d_out=c)["total"] for w in widths],
                        "dense": [(3 + c) * w + c for w in dense_w], "dense_width": dense_w}
    dw = params["tuple"]["dense_width"]
    tup = {"deep": StackedMoE(2, 3, slots, n_layers=2, d_out=2), "shallow": StackedMoE(2, 6, slots, d_out=2),
           "dense": DenseNet(2, [w for w in dw for _ in range(s)], d_out=2)}
    for arm in cfg.exp2_arms:  # the paper's top-1 weight 1: frozen random router, or straight-through gradients
        tup[f"deep-{arm}"] = StackedMoE(2, 3, slots, n_layers=2, d_out=2, weight=arm)
    out["tuple"] = {k: _split(_train(m, X, y_tup, Xt, yt_tup, cfg, dev, gen), 1, nw)[0] for k, m in tup.items()}
    targets = [t for t in SCALAR_TARGETS if t in cfg.exp2_targets]
    if not targets:
        return out, params
    col = {t: i for i, t in enumerate(SCALAR_TARGETS)}
    pairs = [(t, st) for t, st in _SCALAR_DEEP if t in targets]
    deep_cols = [col[t] for t, _ in pairs]
    deep = StackedMoE(2, 3, slots * len(pairs), n_layers=2, stack=[st for _, st in pairs for _ in slots])
    errs = _split(_train(deep, X, y_sc[:, _rep(deep_cols, len(slots))], Xt, yt_sc[:, _rep(deep_cols, len(slots))],
                         cfg, dev, gen, per_slot=True), len(pairs), nw)
    out.update({t: {} for t in targets})
    for (t, st), e in zip(pairs, errs, strict=True):
        out[t]["deep" if st == "serial" else "parallel"] = e
    cols = _rep([col[t] for t in targets], len(slots))
    dw = params["scalar"]["dense_width"]
    dense = DenseNet(2, [w for w in dw for _ in range(s)] * len(targets))
    errs = _split(_train(dense, X, y_sc[:, cols], Xt, yt_sc[:, cols], cfg, dev, gen, per_slot=True),
                  len(targets), nw)
    for t, e in zip(targets, errs, strict=True):
        out[t]["dense"] = e
    return out, params


def _rep(columns, n: int) -> list[int]:
    """Each column index repeated n times (one per (width, seed) slot of its group)."""
    return [c for c in columns for _ in range(n)]


def exp2_slopes(result, target: str = "tuple", metric: str = "mse", budget: int | None = None) -> dict:
    """Least-squares slope of log seed-median error against log width, per model, at a budget (default: the last).

    The construction's slope (no budget: it is not trained) is included under ``"construction"`` where it exists.
    """
    cfg = result.config
    check_choice("metric", metric, METRICS)
    b = cfg.exp2_budgets.index(budget) if budget is not None else -1
    out = {model: loglog_slope(cfg.exp2_widths, np.median(errs[metric][b], -1))
           for model, errs in result.exp2[target].items()}
    if target in result.exp2_construction:
        ref = result.exp2_construction[target]
        errs = np.sqrt(ref["mse"]) if metric == "rmse" else ref[metric]
        out["construction"] = loglog_slope(cfg.exp2_widths, errs)
    return out


def exp2_seed_slopes(result, target: str = "tuple", metric: str = "mse", budget: int | None = None) -> dict:
    """Per model, the slopes of log error against log width fitted to each seed index's curve ``(seeds,)``: the seed
    band of :func:`exp2_slopes` (seed s of every width is one draw; pairing them by index is arbitrary but fair)."""
    cfg = result.config
    check_choice("metric", metric, METRICS)
    b = cfg.exp2_budgets.index(budget) if budget is not None else -1
    return {model: np.array([loglog_slope(cfg.exp2_widths, errs[metric][b][:, s]) for s in range(cfg.n_seeds)])
            for model, errs in result.exp2[target].items()}
