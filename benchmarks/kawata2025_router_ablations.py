"""Why ``kawata2025/router-alignment-c4`` failed under its old measure (the ``kawata2025`` chapter, section "Why the
router missed 0.8 at C = 4").

Writes ``benchmarks/kawata2025_router_ablations.json``: for the quick preset at C = 4 (orthogonal means, d = 32,
three seeds; stage 3 cut to one step, since the router is fixed when stage 2 ends), and for each variant below, per
seed: the old measure (min over clusters of max over kept experts of cos(W_m, v_c)), the claim's measure (min over
pairs of clusters of cos(W_m_c - W_m_c', v_c - v_c'), :func:`moetheory.papers.kawata2025.model.boundary_alignment`),
the routing purity and the experts kept. One cause at a time, then all together:

- ``default``: the quick preset;
- ``long-stage2``: stage 2 four times longer at the same total router step (router_lr): a quarter of the step, so
  SGD noise in the 32 - 4 directions off the means averages out;
- ``no-router-clip``: the per-row clip of the router's batch gradient removed (it breaks the rows' zero sum);
- ``no-pruning``: every expert kept (``prune_cos = 1``);
- ``all``: the three together.

The ideal router's value of the old measure (rows rho v_c written with rows summing to zero, as a softmax router
trained from zero keeps them) is ``router_ideal_alignment``: sqrt(3/4) = 0.866 at C = 4.

    python benchmarks/kawata2025_router_ablations.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from moetheory import runtime
from moetheory.papers import kawata2025 as K

OUT = Path(__file__).with_suffix(".json")
C = 4


def variants(cfg: K.Config) -> dict[str, K.Config]:
    long = dict(stage2_steps=4 * cfg.stage2_steps)
    no_clip = dict(router_clip=1e12)
    no_prune = dict(prune_cos=1.0)
    return {name: runtime.replace_config(cfg, **fields) for name, fields in (
        ("default", {}), ("long-stage2", long), ("no-router-clip", no_clip), ("no-pruning", no_prune),
        ("all", {**long, **no_clip, **no_prune}))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    dev = runtime.setup("cpu", threads=args.threads)
    base = runtime.replace_config(K.cluster_config(K.config("quick"), C), stage3_steps=1, n_checkpoints=2,
                                  variants=(), ablation_runs=(), cluster_ablation_runs=(), stage1_ablations=())
    out = {"script": "benchmarks/kawata2025_router_ablations.py", "git_revision": runtime.git_revision(),
           "versions": runtime.versions(), "threads": args.threads, "n_clusters": C, "d": base.d, "runs": {}}
    start = time.perf_counter()
    for name, cfg in variants(base).items():
        t0 = time.perf_counter()
        m = K.run(cfg, dev).metrics()
        boundary = np.asarray(m["router_boundary_alignment"])  # (S, C, C), 1 on the diagonal
        out["runs"][name] = {
            "old_measure": np.min(m["router_alignment"], 1).round(4).tolist(),
            "boundary": boundary.min((1, 2)).round(4).tolist(),
            "routing_purity": m["routing_purity"], "experts_kept": m["experts_kept"],
            "router_ideal_alignment": m["router_ideal_alignment"],
            "stage2_steps": cfg.stage2_steps, "router_clip": cfg.router_clip, "prune_cos": cfg.prune_cos,
            "seconds": round(time.perf_counter() - t0, 1)}
        print(name, json.dumps(out["runs"][name]), flush=True)
    out["seconds"] = round(time.perf_counter() - start, 1)
    runtime.write_json_atomic(OUT, out)


if __name__ == "__main__":
    main()
