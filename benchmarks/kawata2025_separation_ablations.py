"""Ablations of the failed separation of the ``kawata2025`` chapter (section "Why the separation fails here").

Writes ``benchmarks/kawata2025_separation_ablations.json``: samples to recover w_g (``None``: censored) per d and
seed for each variant below, with the quick preset's separation settings (eight seeds, student (h3+h4)/sqrt 2):

- ``vanilla``: the vanilla network of ``K.run_separation`` (same seeds, so the same counts as the quick record at
  d <= 32), at d up to 64, with the recovering neuron's ``|<u, v>|`` and ``max_c |<u, w_c>|`` at its first hit;
- ``vanilla-v-frozen``: the same, with every neuron's component along the cluster-mean direction v held at its
  random initial value (order d^-1/2, the assumption behind the exponent-4 count) after every step;
- ``vanilla-v-removed``: that component held at 0 (then the two clusters look alike to a neuron and the global
  signal cancels at every order: a negative control that must stay censored);
- ``moe-stage1-longer``: ``K.run_separation`` with stage 1 four times longer (its cap only: the counts it reads
  are unchanged, the censored ones may finish);
- ``moe-stage1-h3``: ``K.run_separation(stage1_activation="h3")``: stage 1 with the student h3 its schedule was
  set for, stage 3 with the generic student, at d up to 48;
- ``half-step``: ``K.run_separation`` with every SGD step halved and every cap doubled: a run whose count is set
  by the drift (the population gradient) takes twice the steps at every d, leaving the slopes as they are;
- ``vanilla-small-step``: the vanilla network with the step ``lr / d x (8 / d)`` (the quick step at d = 8, then
  shrinking as d^-2: the noise-sized step of an exponent-4 direction, ``eta d^(-k/2)`` as in the Hermite chapter,
  under which online SGD needs about d^(k-1) = d^3 samples), at d up to 64;
- ``moe-small-step``: ``K.run_separation(noise_step=("stage1", "stage3"))``: both MoE stages with the noise-sized
  step of their exponent k* = 3 (stage 1 finds the w_c, stage 3 finds w_g on routed, centred data), the quick step
  times ``(8 / d)^(1/2)``, i.e. ``eta d^(-3/2)`` (about d^(k*-1) = d^2 samples predicted), each cap (stage 1: its
  length) divided by the same factor, at d up to 64, to set against ``vanilla-small-step`` (its vanilla network
  is the quick one, so its counts are the record's at d <= 32); ``moe-small-step-h3``: the same with stage 1's
  student h3 (as ``moe-stage1-h3``), at d up to 48 (a censored stage 3 at d = 64 would run 181,000 steps).

    python benchmarks/kawata2025_separation_ablations.py [--threads 1] [--only RUN ...]

``--only`` re-runs the named runs alone and keeps the others of the JSON (each run records its git revision).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from moetheory import runtime
from moetheory.activations import hermite_activation
from moetheory.metrics import unit
from moetheory.papers import kawata2025 as K
from moetheory.papers.kawata2025.data import sample_clusters
from moetheory.papers.kawata2025.model import random_unit, sgd_step
from moetheory.papers.kawata2025.separation import separation_setting

OUT = Path(__file__).with_suffix(".json")


def hold_v(u, v, target):
    """Rows of ``u (..., d)`` with their component along the unit ``v`` set to ``target (...)``, unit again."""
    rest = unit(u - (u @ v)[..., None] * v)
    return target[..., None] * v + (1 - target**2).clamp_min(0).sqrt()[..., None] * rest


@torch.no_grad()
def vanilla(cfg, d, mode, dev, max_steps, step_power=1.0):
    """``(counts, v_overlap, wc_overlap)``, each ``(S,)``: samples until the best ``|<u, w_g>| >= K.STRONG`` and the
    recovering neuron's overlaps with v and the w_c at that check (``nan``/``inf``: censored). Seeding as in
    ``K.run_separation``'s vanilla network; the step is ``lr / d x (8 / d)^(step_power - 1)`` (1: the quick's)."""
    c, gen, problem = separation_setting(cfg, d, dev)
    real = dict(dtype=torch.get_default_dtype(), device=dev)
    w_g, w_c = torch.tensor(problem.global_dir, **real), torch.tensor(problem.local_dirs, **real)
    v = torch.tensor(problem.means[0], **real)
    act, clip, s = hermite_activation(c.activation), K.clip_norm(c), c.n_seeds
    u = random_unit((s, 1, c.separation_width), d, gen, dev)
    target = {"free": None, "v-frozen": (u @ v).clone(), "v-removed": torch.zeros_like(u[..., 0])}[mode]
    if target is not None:
        u.copy_(hold_v(u, v, target))
    cap = min(max_steps, max(64, round(c.separation_budget * (d / K.REFERENCE_D) ** 3)))
    checks = set(K.geometric_grid(cap).tolist())
    counts, ov_v, ov_c = np.full(s, np.inf), np.full(s, np.nan), np.full(s, np.nan)
    for t in range(1, cap + 1):
        x, y, _ = sample_clusters(problem, c.batch, s, generator=gen, device=dev)
        sgd_step(u, x.unsqueeze(1), y.unsqueeze(1), act, c.lr / d * (8 / d) ** (step_power - 1), clip)
        if target is not None:
            u.copy_(hold_v(u, v, target))
        if t in checks:
            g = (u[:, 0] @ w_g).abs()  # (S, N)
            best, j = g.max(-1)
            rec = u[torch.arange(s), 0, j]  # (S, d) the best neuron
            new = (best >= K.STRONG).cpu().numpy() & np.isinf(counts)
            counts[new] = t * c.batch
            ov_v[new] = (rec @ v).abs().cpu().numpy()[new]
            ov_c[new] = (rec @ w_c.T).abs().max(-1).values.cpu().numpy()[new]
            if np.isfinite(counts).all():
                break
    return counts, ov_v, ov_c


def as_json(a):
    return [None if not np.isfinite(x) else float(x) for x in np.asarray(a, dtype=float)]


VANILLA_RUNS = {  # run -> (mode, dims, step cap, step power)
    "vanilla": ("free", (8, 12, 16, 24, 32, 48, 64), 60_000, 1.0),
    "vanilla-v-frozen": ("v-frozen", (8, 12, 16, 24, 32, 48), 60_000, 1.0),
    "vanilla-v-removed": ("v-removed", (8, 12, 16, 24, 32), 16_000, 1.0),
    "vanilla-small-step": ("free", (8, 12, 16, 24, 32, 48, 64), 60_000, 2.0),
}


SMALL_STEP_DIMS = VANILLA_RUNS["vanilla-small-step"][1]


def separation_runs(cfg):
    """run -> (config, keyword arguments of ``K.run_separation``)."""
    wide = runtime.replace_config(cfg, separation_dims=SMALL_STEP_DIMS)
    return {"moe-stage1-longer": (runtime.replace_config(cfg, stage1_steps=4 * cfg.stage1_steps), {}),
            "moe-stage1-h3": (runtime.replace_config(cfg, separation_dims=(8, 12, 16, 24, 32, 48)),
                              {"stage1_activation": "h3"}),
            "half-step": (runtime.replace_config(cfg, lr=cfg.lr / 2, stage1_steps=2 * cfg.stage1_steps,
                                                 separation_budget=2 * cfg.separation_budget), {}),
            "moe-small-step": (wide, {"noise_step": ("stage1", "stage3")}),
            "moe-small-step-h3": (runtime.replace_config(cfg, separation_dims=SMALL_STEP_DIMS[:-1]),
                                  {"noise_step": ("stage1", "stage3"), "stage1_activation": "h3"})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    cfg = K.config("quick")
    names = [*VANILLA_RUNS, *separation_runs(cfg)]
    parser.add_argument("--only", nargs="+", choices=names, help="re-run these runs alone (default: all)")
    args = parser.parse_args()
    dev = runtime.setup("cpu", threads=args.threads)
    revision = runtime.git_revision()
    if args.only:
        out = json.loads(OUT.read_text())
    else:
        out = {"script": "benchmarks/kawata2025_separation_ablations.py", "git_revision": revision,
               "versions": runtime.versions(), "threads": args.threads, "runs": {}}
    start = time.perf_counter()
    for name in args.only or names:
        t0 = time.perf_counter()
        if name in VANILLA_RUNS:
            mode, dims, max_steps, power = VANILLA_RUNS[name]
            rows = [vanilla(cfg, d, mode, dev, max_steps, power) for d in dims]
            run = {"dims": list(dims), "counts": [as_json(r[0]) for r in rows],
                   "v_overlap": [as_json(r[1]) for r in rows], "wc_overlap": [as_json(r[2]) for r in rows]}
        else:
            c, kw = separation_runs(cfg)[name]
            sep = K.run_separation(c, dev, **kw)
            run = {"dims": sep["dims"], **{k: [as_json(r) for r in sep[k]] for k in ("vanilla", "stage1", "stage3")}}
        out["runs"][name] = {**run, "seconds": round(time.perf_counter() - t0, 1),
                             **({"git_revision": revision, "threads": args.threads} if args.only else {})}
        print(name, round(time.perf_counter() - t0, 1), "s", flush=True)
    if not args.only:
        out["seconds"] = round(time.perf_counter() - start, 1)
    runtime.write_json_atomic(OUT, out)
    print(json.dumps({k: v.get("seconds") for k, v in out["runs"].items()}))


if __name__ == "__main__":
    main()
