"""Beyond the paper (ours): Experiment II on a larger cube, and the product target at convergence (chapter wang2025).

The paper's Experiment II has one cube, [0, 3]^2 with 9 cells and 2 x 3 = 6 subfunctions. Its counting argument
(Section 5: an L-layer MoE with E experts per layer represents E^L pieces from L E subfunctions, Theorems 5.2-5.3)
says depth should matter more as E^L outgrows L E. Here: the Figure 3 pieces extended to i = 1..E on [0, E]^L
(:func:`manifolds.figure3_pieces` with ``n_cells = E``), E = 4, L = 3 by default: 64 cells against 12 subfunctions,
the tuple output (eq. (4), f_out = id) and the sum. Models, all with the recipe at one stated budget: a deep (L x E,
serial) MoE, a shallow (1 x L E) MoE, dense nets matched on the deep MoE's total and on its active parameters (per
input: L experts of width m plus the L routers), and a block-separable dense net (one univariate net per coordinate,
total parameters matched). The exactly routed construction (:func:`construct_figure3_moe` with ``(L, E)``) is the
approximation-limited reference. The paper has no such experiment.

The product reading of the paper's 2-D target (ours, :data:`experiment2.SCALAR_TARGETS`) at convergence: deep
(serial), parallel and dense at one width, trained with a cosine decay of the step size, evaluated at fractions of
the run so that the last tenth's change shows whether the loss has settled.
"""

from __future__ import annotations

import numpy as np
import torch

from moetheory.checks import check_choice, check_int
from moetheory.metrics import loglog_slope, slope_band
from moetheory.papers.wang2025 import manifolds
from moetheory.papers.wang2025.bounds import moe_parameters
from moetheory.papers.wang2025.deep_moe import DenseNet, StackedMoE, evaluate
from moetheory.papers.wang2025.experiment2 import _figure3_problem, _train, construct_figure3_moe

__all__ = ["OUTPUTS", "MODELS", "PRODUCT_MODELS", "PRODUCT_FRACTIONS", "cube_target", "cube_problem",
           "cube_parameters", "run_cube", "run_cube_construction", "cube_slopes", "product_steps", "run_product",
           "product_change"]

OUTPUTS = ("tuple", "sum")
MODELS = ("deep", "shallow", "dense_total", "dense_active", "separable")
PRODUCT_MODELS = ("deep", "parallel", "dense")
PRODUCT_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)  # of the product run's steps, where it is evaluated


def cube_target(x, n_experts: int, output: str = "tuple") -> torch.Tensor:
    """The Figure 3 pieces extended to ``[0, E]^L``: ``x (n, L)``; ``"tuple"``: ``(n, L)``, ``"sum"``: ``(n,)``."""
    check_choice("output", output, OUTPUTS)
    x = torch.as_tensor(x)
    if x.dim() != 2 or not ((x >= 0) & (x <= n_experts)).all():
        raise ValueError(f"x must be (n, L) in [0, {n_experts}]^L; got shape {tuple(x.shape)}")
    f = manifolds.figure3_pieces(x, n_experts)
    return f if output == "tuple" else f.sum(-1)


def cube_problem(cfg, grid: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (n, L), tuple target (n, L))``: ``cfg.n_train`` uniform points (seed ``cfg.seed + 1``) or the
    cell-centred grid of ``cfg.cube_grid`` points per axis."""
    E, L = cfg.cube_experts, cfg.cube_layers
    if grid:
        axis = (torch.arange(cfg.cube_grid, dtype=torch.get_default_dtype()) + 0.5) * (E / cfg.cube_grid)
        x = torch.cartesian_prod(*([axis] * L)).reshape(-1, L)
    else:
        x = torch.rand(cfg.n_train, L, generator=torch.Generator().manual_seed(cfg.seed + 1)) * E
    return x, cube_target(x, E, "tuple")


def cube_parameters(n_layers: int, n_experts: int, width: int, d_out: int) -> dict:
    """Parameters of every cube model at expert width ``width`` and the dense widths that match them.

    ``{model: count}`` for :data:`MODELS` plus ``"deep_active"`` and ``"<model>_width"`` for the dense ones. The
    dense net ``L -> w -> c`` has ``(L + 1 + c) w + c``; the block-separable one, L blocks ``1 -> w -> 1``,
    ``L (3 w + 1)``; each width is the rounding of the solution to its target count.
    """
    L, E, c = n_layers, n_experts, d_out
    state = L + 1 + c
    deep = moe_parameters(state, E, width, n_layers=L, d_out=c)
    out = {"deep": deep["total"], "deep_active": deep["active"],
           "shallow": moe_parameters(state, L * E, width, d_out=c)["total"]}
    for name, target in (("dense_total", deep["total"]), ("dense_active", deep["active"])):
        w = max(1, round((target - c) / state))
        out[name], out[f"{name}_width"] = state * w + c, w
    w = max(1, round((deep["total"] / L - 1) / 3))
    out["separable"], out["separable_width"] = L * (3 * w + 1), w
    return out


def _repeat(values, n: int) -> list[int]:
    return [v for v in values for _ in range(n)]


def run_cube(cfg, dev, gen) -> tuple[dict, dict]:
    """``{output: {model: {"mse", "rmse", "linf": (widths, seeds)}}}`` after ``cfg.cube_iterations`` steps, and
    ``{output: {key: per width}}`` of :func:`cube_parameters`. One training run per model kind and output (the two
    matched dense nets share one, their slots side by side)."""
    L, E, s, widths = cfg.cube_layers, cfg.cube_experts, cfg.n_seeds, list(cfg.cube_widths)
    slots = _repeat(widths, s)
    X, Y = (t.to(dev) for t in cube_problem(cfg, grid=False))
    Xt, Yt = (t.to(dev) for t in cube_problem(cfg, grid=True))
    errors, params = {}, {}
    for output in OUTPUTS:
        c = L if output == "tuple" else 1
        y, yt = (Y, Yt) if output == "tuple" else (Y.sum(1), Yt.sum(1))
        counts = [cube_parameters(L, E, w, c) for w in widths]
        params[output] = {k: [p[k] for p in counts] for k in counts[0]}
        dense_w = _repeat(params[output]["dense_total_width"], s) + _repeat(params[output]["dense_active_width"], s)
        models = {"deep": StackedMoE(L, E, slots, n_layers=L, d_out=c),
                  "shallow": StackedMoE(L, L * E, slots, d_out=c),
                  "dense": DenseNet(L, dense_w, d_out=c),
                  "separable": DenseNet(L, _repeat(params[output]["separable_width"], s), separable=True, d_out=c)}
        out = {}
        for name, model in models.items():
            run = _train(model, X, y, Xt, yt, cfg, dev, gen, iterations=cfg.cube_iterations,
                         checkpoints=(cfg.cube_iterations,))
            groups = ("dense_total", "dense_active") if name == "dense" else (name,)
            for g, group in enumerate(groups):
                part = {k: v[-1].reshape(len(groups), len(widths), s)[g] for k, v in run.items()}
                out[group] = {**part, "rmse": np.sqrt(part["mse"])}
        errors[output] = {m: out[m] for m in MODELS}
    return errors, params


def run_cube_construction(cfg) -> dict:
    """The (L, E) construction's errors on the cube's grid, ``{output: {"linf", "mse": (widths,)}}`` (float64)."""
    x, y = cube_problem(cfg, grid=True)
    out = {}
    for output in OUTPUTS:
        target = (y if output == "tuple" else y.sum(1)).double()
        res = [evaluate(construct_figure3_moe(w, output, n_layers=cfg.cube_layers, n_experts=cfg.cube_experts),
                        x.double(), target) for w in cfg.cube_widths]
        out[output] = {"linf": np.array([r.linf[0] for r in res]), "mse": np.array([r.mse[0] for r in res])}
    return out


def cube_slopes(result, output: str = "tuple", metric: str = "mse") -> dict:
    """Per model, ``(slope, low, high)``: the log-log slope of the seed-median error against m with its 90%
    bootstrap band (:func:`moetheory.metrics.slope_band`); ``"construction"`` (untrained) as ``(slope,) * 3``."""
    check_choice("output", output, OUTPUTS)
    check_choice("metric", metric, ("mse", "rmse", "linf"))
    widths = result.config.cube_widths
    out = {m: slope_band(widths, errs[metric]) for m, errs in result.cube[output].items()}
    ref = result.cube_construction[output]
    slope = loglog_slope(widths, np.sqrt(ref["mse"]) if metric == "rmse" else ref[metric])
    out["construction"] = (slope, slope, slope)
    return out


def product_steps(iterations: int) -> list[int]:
    """The steps at which the product run is evaluated: :data:`PRODUCT_FRACTIONS` of ``iterations``."""
    iterations = check_int("iterations", iterations, 10)
    return sorted({round(f * iterations) for f in PRODUCT_FRACTIONS})


def run_product(cfg, dev, gen) -> dict:
    """The product reading on [0, 3]^2 at width ``cfg.product_width`` to ``cfg.product_iterations`` steps with a
    cosine decay to ``cfg.product_final_lr`` times the step size: ``{"steps", "dense_width", model: {"mse", "linf":
    (steps, seeds)}}`` for model in :data:`PRODUCT_MODELS` (deep and parallel in one batched model)."""
    m, s, n = cfg.product_width, cfg.n_seeds, cfg.product_iterations
    X, _, y = (t.to(dev) for t in _figure3_problem(cfg, grid=False))
    Xt, _, yt = (t.to(dev) for t in _figure3_problem(cfg, grid=True))
    y, yt = y[:, 1], yt[:, 1]  # the product column of experiment2.SCALAR_TARGETS
    steps = product_steps(n)
    dense_w = max(1, round((moe_parameters(4, 3, m, n_layers=2)["total"] - 1) / 4))  # dense 2 -> w -> 1: 4 w + 1
    models = {"moe": StackedMoE(2, 3, [m] * 2 * s, n_layers=2, stack=["serial"] * s + ["parallel"] * s),
              "dense": DenseNet(2, [dense_w] * s)}
    out = {"steps": steps, "dense_width": dense_w}
    for name, model in models.items():
        run = _train(model, X, y, Xt, yt, cfg, dev, gen, iterations=n, checkpoints=steps, schedule="cosine",
                     final_lr=cfg.product_final_lr)
        groups = ("deep", "parallel") if name == "moe" else ("dense",)
        for g, group in enumerate(groups):
            out[group] = {k: v.reshape(len(steps), len(groups), s)[:, g] for k, v in run.items()}
    return out


def product_change(product: dict, model: str, metric: str = "mse") -> float:
    """Relative change of the seed-median test error over the last tenth of the product run (from 0.9 N to N
    steps): ``median(N) / median(0.9 N) - 1``."""
    check_choice("model", model, PRODUCT_MODELS)
    errs = np.median(product[model][metric], -1)
    return float(errs[-1] / errs[list(product["steps"]).index(round(0.9 * product["steps"][-1]))] - 1)
