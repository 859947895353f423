"""The larger cube of the ``wang2025`` chapter (section "A larger cube") at longer budgets.

The quick record trains every cube model for 2000 Adam steps, where no routed model has left the target's mean.
This benchmark trains the quick preset's deep (3 x 4, serial) and shallow (1 x 12) MoEs on the tuple output of
``[0, 4]^3`` (the output of the claim ``wang2025/cube-depth``) once each to ``--iterations`` steps and evaluates
them at the ``--checkpoints`` on the cube's grid, as ``cube.run_cube`` does at its one budget (same data, grid,
models, parameter counts and recipe; the step ``lr`` constant, the paper's recipe). With ``--cosine N`` a second
arm runs N steps with the step size decayed along a cosine to ``product_final_lr`` times ``lr``
(``train_regression``'s ``schedule="cosine"``), evaluated at its last step only.
Seeds: ``runtime.seed_everything`` of the record's cube step for each arm; the initialisations are the record's
only with the record's widths (8, 16, 32): with other widths the slots draw other initial weights.

Writes ``benchmarks/wang2025_cube_budget.json``: per arm and model the test MSE ``(checkpoints, widths, seeds)``,
the widths, the target's variance per output, the git revision, versions and CPU seconds.

    nice python benchmarks/wang2025_cube_budget.py [--iterations 15000] [--widths 16 32] [--cosine 5000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from moetheory import runtime
from moetheory.papers import wang2025
from moetheory.papers.wang2025 import cube, manifolds
from moetheory.papers.wang2025.deep_moe import StackedMoE
from moetheory.papers.wang2025.experiment2 import _train

OUT = Path(__file__).with_suffix(".json")
MODELS = ("deep", "shallow")


def target_variance(cfg) -> float:
    """Variance of one output of the tuple target on ``[0, E]`` (as the chapter's figure divides by)."""
    z = torch.linspace(0, cfg.cube_experts, 400001, dtype=torch.float64)
    return float(manifolds.figure3_pieces(z, cfg.cube_experts).var())


def run_arm(cfg, dev, schedule: str, checkpoints: list[int]) -> dict:
    """``{"steps", model: {"mse": (checkpoints, widths, seeds), "cpu_s"}}`` for the deep and shallow MoEs on the
    tuple output, trained ``cfg.cube_iterations`` steps."""
    gen = runtime.seed_everything(cfg.seed * len(wang2025.STEPS) + wang2025.STEPS.index("cube"))
    L, E, s, widths = cfg.cube_layers, cfg.cube_experts, cfg.n_seeds, list(cfg.cube_widths)
    slots = [w for w in widths for _ in range(s)]
    X, y = (t.to(dev) for t in cube.cube_problem(cfg, grid=False))
    Xt, yt = (t.to(dev) for t in cube.cube_problem(cfg, grid=True))
    models = {"deep": StackedMoE(L, E, slots, n_layers=L, d_out=L), "shallow": StackedMoE(L, L * E, slots, d_out=L)}
    out = {"steps": checkpoints}
    for name in MODELS:
        t0 = time.process_time()
        run = _train(models[name], X, y, Xt, yt, cfg, dev, gen, iterations=cfg.cube_iterations,
                     checkpoints=checkpoints, schedule=schedule, final_lr=cfg.product_final_lr)
        out[name] = {"mse": run["mse"].reshape(len(checkpoints), len(widths), s).tolist(),
                     "cpu_s": round(time.process_time() - t0, 1)}
        print(f"{schedule} {name}: {out[name]['cpu_s']:.0f} CPU-s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=15000, help="steps of the constant arm")
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[2000, 5000, 10000, 15000])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--cosine", type=int, default=5000, help="steps of the cosine arm (0: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    checkpoints = sorted({t for t in args.checkpoints if t <= args.iterations} | {args.iterations})
    dev = runtime.setup("cpu", threads=args.threads)
    cfg = runtime.replace_config(wang2025.config("quick"), cube_widths=tuple(args.widths))
    t0 = time.process_time()
    out = {"script": "benchmarks/wang2025_cube_budget.py", "git_revision": runtime.git_revision(),
           "versions": runtime.versions(), "threads": args.threads, "device": str(dev),
           "dtype": str(torch.get_default_dtype()).removeprefix("torch."),
           "config": {"cube_experts": cfg.cube_experts, "cube_layers": cfg.cube_layers, "n_seeds": cfg.n_seeds,
                      "lr": cfg.lr, "batch_size": cfg.batch_size, "n_train": cfg.n_train, "cube_grid": cfg.cube_grid,
                      "final_lr": cfg.product_final_lr},
           "output": "tuple", "widths": list(cfg.cube_widths), "target_variance": target_variance(cfg), "arms": {}}
    arms = {"constant": (args.iterations, checkpoints), "cosine": (args.cosine, [args.cosine])}
    for schedule, (n, steps) in arms.items():
        if n:
            arm_cfg = runtime.replace_config(cfg, cube_iterations=n)
            out["arms"][schedule] = run_arm(arm_cfg, dev, schedule, steps)
    out["cpu_s"] = round(time.process_time() - t0, 1)
    runtime.write_json_atomic(args.out, out)
    print(f"wrote {args.out} ({out['cpu_s'] / 60:.1f} CPU-minutes)")


if __name__ == "__main__":
    main()
