"""Start-up time of the command line: ``moetheory --help`` and ``moetheory list`` against a bare interpreter.

Prints one JSON line: the median wall time over ``--runs`` fresh processes of ``python -c pass`` (the reference:
what any Python command costs), ``python -m moetheory --help`` and ``python -m moetheory list``, and each command's
ratio to the reference. The goal is under 0.5 s for both commands (issue 12): neither may import torch, numpy or
pandas (tests/test_cli.py checks that structurally; this only measures).

    python benchmarks/cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "pass": ["-c", "pass"],
    "help": ["-m", "moetheory", "--help"],
    "list": ["-m", "moetheory", "list"],
}


def wall_s(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (default 5)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    times = {name: [] for name in COMMANDS}
    for _ in range(args.runs):  # in turns, so that a busy moment of a shared machine hits every command alike
        for name, command in COMMANDS.items():
            times[name].append(wall_s(command, env))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(json.dumps({
        "pass_s": round(median["pass"], 3),
        "help_s": round(median["help"], 3),
        "list_s": round(median["list"], 3),
        "help_ratio": round(median["help"] / median["pass"], 1),
        "list_ratio": round(median["list"] / median["pass"], 1),
        "runs": args.runs,
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
