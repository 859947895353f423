"""Experts shaped as the public description of Kawata et al. has them, beside the default pipeline (the ``kawata2025``
chapter, section "Two-layer experts"; :mod:`moetheory.papers.kawata2025.twolayer`).

Writes ``benchmarks/kawata2025_two_layer.json``: in the quick preset's setting at C = 2 (antipodal means) and C = 4
(orthogonal means, ``cluster_config``), three seeds, for each (width J, top-k) below, per seed: the fraction of
cluster directions some stage-1 neuron recovers (|<u, w_c>| >= 0.5), the median share of an expert's neurons that
go to its most common cluster after stage 1, the routing purity (points sent to their cluster's most used expert)
and the expert purity (points sent to an expert whose majority cluster is theirs: with no pruning several experts
may share a cluster, which lowers the first and not the second), the router's worst boundary cosine (the claim
``router-alignment``'s measure), the fraction of clusters with a specialised expert (the claim
``expert-specialisation``'s measure), the best |<u, w_g>| and the test MSE; and the CPU seconds of each run.

- ``J = 1, top-1``: one neuron per expert kept through the stages (the default's stage-1 experts, not replaced);
- ``J = 4`` and ``J = 16`` (the default's stage-3 width), top-1 and top-2;
- ``J = 16``, top-1, one change each: stage 2 four times longer at the same total router step (``router_lr``; less
  SGD noise in the router); stage 3 four times longer (more routed samples per expert); pruning after stage 2 as the
  default does; fresh neurons for stage 3 as the default has; the neurons of each expert started around one shared
  direction (``init_spread = 1``).

The default pipeline's values are those of ``results/kawata2025-quick.json`` (the chapter puts them beside these).

    python benchmarks/kawata2025_two_layer.py [--threads 1] [--scale quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from moetheory import runtime
from moetheory.papers import kawata2025 as K
from moetheory.papers.kawata2025.twolayer import run_two_layer

OUT = Path(__file__).with_suffix(".json")
ARMS = (  # (label, width J, top-k, Config fields multiplied, run_two_layer keywords)
    ("two-layer", 1, 1, {}, {}), ("two-layer", 4, 1, {}, {}), ("two-layer", 4, 2, {}, {}),
    ("two-layer", 16, 1, {}, {}), ("two-layer", 16, 2, {}, {}),
    ("two-layer, stage 2 x4", 16, 1, {"stage2_steps": 4}, {}),
    ("two-layer, stage 3 x4", 16, 1, {"stage3_steps": 4}, {}),
    ("two-layer, pruned", 16, 1, {}, {"prune_cos": 0.9}),
    ("two-layer, fresh stage 3", 16, 1, {}, {"fresh": True}),
    ("two-layer, shared init", 16, 1, {}, {"init_spread": 1.0}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", default="quick", choices=("tiny", "quick", "paper"))
    args = parser.parse_args()
    dev = runtime.setup("cpu", threads=args.threads)
    base = K.config(args.scale)
    out = {"script": "benchmarks/kawata2025_two_layer.py", "git_revision": runtime.git_revision(),
           "versions": runtime.versions(), "threads": args.threads, "scale": args.scale, "runs": []}
    start = time.process_time()
    for c in (base.n_clusters, *base.more_clusters):
        cfg = base if c == base.n_clusters else K.cluster_config(base, c)
        for label, width, top_k, longer, kwargs in ARMS:
            t0 = time.process_time()
            cfg_run = runtime.replace_config(cfg, **{key: x * getattr(cfg, key) for key, x in longer.items()})
            run = {"arm": label, **run_two_layer(cfg_run, dev, width=width, top_k=top_k, progress=True, **kwargs)}
            run.update(stage2_steps=cfg_run.stage2_steps, stage3_steps=cfg_run.stage3_steps)
            run["cpu_s"] = round(time.process_time() - t0, 1)
            out["runs"].append(run)
            print(json.dumps(run), flush=True)
            runtime.write_json_atomic(OUT, out)  # a run cut short keeps the finished ones
    out["cpu_s"] = round(time.process_time() - start, 1)
    runtime.write_json_atomic(OUT, out)


if __name__ == "__main__":
    main()
