"""Experiment II of the ``wang2025`` chapter (the Figure 3 target, tuple output) at longer budgets.

The records train every Experiment II model for at most 2000 (quick) or 5000 (paper) Adam steps, and at both the
errors still fall with the budget: they measure optimisation, not approximation. This benchmark trains the quick
preset's deep (2 x 3, serial), shallow (1 x 6) and total-matched dense models on the tuple output once each to
``--iterations`` constant-step Adam steps (the third-party recipe's step ``lr``), evaluated at the
``--checkpoints`` on the chapter's grid, as ``experiment2.run_exp2`` does at its budgets (same data, grid, widths,
seeds, parameter counts and recipe). With ``--cosine N`` a second arm runs N steps with the step size decayed along
a cosine to ``product_final_lr`` times ``lr`` (``train_regression``'s ``schedule="cosine"``), evaluated at its last
step: an answer to "is the constant step what stalls it?".
Seeds: ``runtime.seed_everything`` of the record's Experiment II step for each arm, so the deep MoE of the constant
arm starts from the quick record's initialisation and sees its minibatches: its MSE at step 2000 equals the
record's (the script checks and says so); the later models draw after a longer first run, so theirs differ.

Writes ``benchmarks/wang2025_exp2_budget.json``: per arm and model the test MSE and L-infinity error
``(checkpoints, widths, seeds)``, the widths, the target's variance per output, the git revision, versions and
CPU seconds.

    nice python benchmarks/wang2025_exp2_budget.py [--iterations 20000] [--cosine 10000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from moetheory import runtime
from moetheory.papers import wang2025
from moetheory.papers.wang2025 import experiment2, manifolds
from moetheory.papers.wang2025.bounds import moe_parameters
from moetheory.papers.wang2025.deep_moe import DenseNet, StackedMoE

OUT = Path(__file__).with_suffix(".json")
MODELS = ("deep", "shallow", "dense")


def target_variance() -> float:
    """Variance of one output of the tuple target on ``[0, 3]`` (2/675; the chapter's figure divides by it)."""
    z = torch.linspace(0, 3, 300001, dtype=torch.float64)
    return float(manifolds.figure3_pieces(z, 3).var())


def models(widths: list[int], seeds: int) -> dict:
    """The tuple-output models of ``experiment2.run_exp2``, built in its order (so from its initial draws)."""
    slots = [w for w in widths for _ in range(seeds)]
    dense = [max(1, round((moe_parameters(5, 3, w, n_layers=2, d_out=2)["total"] - 2) / 5)) for w in widths]
    return {"deep": StackedMoE(2, 3, slots, n_layers=2, d_out=2), "shallow": StackedMoE(2, 6, slots, d_out=2),
            "dense": DenseNet(2, [w for w in dense for _ in range(seeds)], d_out=2)}


def run_arm(cfg, dev, iterations: int, checkpoints: list[int], **schedule) -> dict:
    """``{"steps", model: {"mse", "linf": (checkpoints, widths, seeds), "cpu_s"}}``."""
    gen = runtime.seed_everything(cfg.seed * len(wang2025.STEPS) + wang2025.STEPS.index("exp2"))
    widths, s = list(cfg.exp2_widths), cfg.n_seeds
    X, y, _ = (t.to(dev) for t in experiment2._figure3_problem(cfg, grid=False))
    Xt, yt, _ = (t.to(dev) for t in experiment2._figure3_problem(cfg, grid=True))
    out = {"steps": checkpoints}
    for name, model in models(widths, s).items():
        t0 = time.process_time()
        errs = experiment2._train(model, X, y, Xt, yt, cfg, dev, gen, iterations=iterations,
                                  checkpoints=checkpoints, **schedule)
        out[name] = {k: errs[k].reshape(len(checkpoints), len(widths), s).tolist() for k in ("mse", "linf")}
        out[name]["cpu_s"] = round(time.process_time() - t0, 1)
        print(f"{schedule.get('schedule', 'constant')} {name}: {out[name]['cpu_s']:.0f} CPU-s", flush=True)
    return out


def record_check(arm: dict, cfg) -> str:
    """Whether the constant arm's deep MoE at the quick record's last budget equals the record's (to 1e-9)."""
    path = runtime.REPO_ROOT / "results" / "wang2025-quick.json"
    last = cfg.exp2_iterations
    if not path.exists() or last not in arm["steps"]:
        return "not checked"
    recorded = np.asarray(json.loads(path.read_text())["metrics"]["exp2"]["tuple"]["deep"]["mse"])[-1]
    ours = np.asarray(arm["deep"]["mse"])[arm["steps"].index(last)]
    gap = float(np.max(np.abs(ours - recorded) / recorded))
    return f"deep MoE at {last} steps vs the quick record: largest relative gap {gap:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20000, help="steps of the constant arm")
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[2000, 5000, 10000, 20000])
    parser.add_argument("--cosine", type=int, default=10000, help="steps of the cosine arm (0: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for name in ("iterations", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1; got {getattr(args, name)}")
    if args.cosine < 0 or min(args.checkpoints) < 1:
        parser.error("--cosine must be >= 0 and every --checkpoints >= 1")
    checkpoints = sorted({t for t in args.checkpoints if t <= args.iterations} | {args.iterations})
    dev = runtime.setup("cpu", threads=args.threads)
    cfg = wang2025.config("quick")
    t0 = time.process_time()
    out = {"script": "benchmarks/wang2025_exp2_budget.py", "git_revision": runtime.git_revision(),
           "versions": runtime.versions(), "threads": args.threads, "device": str(dev),
           "dtype": str(torch.get_default_dtype()).removeprefix("torch."),
           "config": {"n_seeds": cfg.n_seeds, "lr": cfg.lr, "batch_size": cfg.batch_size, "n_train": cfg.n_train,
                      "exp2_grid": cfg.exp2_grid, "final_lr": cfg.product_final_lr},
           "output": "tuple", "widths": list(cfg.exp2_widths), "target_variance": target_variance(), "arms": {}}
    out["arms"]["constant"] = run_arm(cfg, dev, args.iterations, checkpoints)
    out["record_check"] = record_check(out["arms"]["constant"], cfg)
    print(out["record_check"], flush=True)
    if args.cosine:
        out["arms"]["cosine"] = run_arm(cfg, dev, args.cosine, [args.cosine], schedule="cosine",
                                        final_lr=cfg.product_final_lr)
    out["cpu_s"] = round(time.process_time() - t0, 1)
    runtime.write_json_atomic(args.out, out)
    print(f"wrote {args.out} ({out['cpu_s'] / 60:.1f} CPU-minutes)")


if __name__ == "__main__":
    main()
