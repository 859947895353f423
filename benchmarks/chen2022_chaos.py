"""How chaotic is the single cubic CNN of Chen et al.'s Table 1? The same quick-preset training (S1, 3 seeds, float64,
one thread) under the host's native SIMD dispatch and under the generic one of `make nbval-generic`; prints the first
epoch at which the two loss histories differ by more than each threshold, and the per-seed test accuracies.

Not a speed benchmark: it measures why the chen2022 chapter shows the single CNNs from the committed record.
    python benchmarks/chen2022_chaos.py [--activation cubic|linear]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

GENERIC = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41",
           "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"}  # as the Makefile's GENERIC_DISPATCH
THRESHOLDS = (1e-12, 1e-9, 1e-6, 1e-3, 1e-2)


def train(activation: str, out: str) -> None:
    """One run in this process: the quick preset's single CNNs on S1, saved to ``out``."""
    import torch

    from moetheory import runtime
    from moetheory.data import make_chen_clusters
    from moetheory.papers import chen2022

    device = runtime.setup()
    cfg = chen2022.config("quick")
    data = make_chen_clusters("S1", cfg.n_train, cfg.n_test).to(device)
    runtime.seed_everything(cfg.seed)
    rec = chen2022._train_single(cfg, data, activation, cfg.n_seeds, cfg.single_epochs, None)
    torch.save({"acc": rec.test_accuracy, "hist": rec.loss_history}, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activation", default="cubic", choices=("cubic", "linear"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: train and save to this file
    args = parser.parse_args()
    if args.worker:
        return train(args.activation, args.worker)
    import torch

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("native", {}), ("generic", GENERIC)):
            out = str(Path(tmp) / f"{name}.pt")
            env = {**os.environ, "MOETHEORY_DEVICE": "cpu", **extra}
            subprocess.run([sys.executable, __file__, "--activation", args.activation, "--worker", out], env=env,
                           check=True)
            runs[name] = torch.load(out)
    a, b = runs["native"]["hist"], runs["generic"]["hist"]
    steps = min(len(a), len(b))
    gap = (a[:steps] - b[:steps]).abs()  # (T, S)
    first = {f"{t:g}": [next((int(e) for e in range(steps) if gap[e, s] > t), None) for s in range(gap.shape[1])]
             for t in THRESHOLDS}
    print(json.dumps({"activation": args.activation, "first epoch with loss gap above": first,
                      "test accuracy %": {k: [round(v, 2) for v in r["acc"].tolist()] for k, r in runs.items()}}))


if __name__ == "__main__":
    main()
