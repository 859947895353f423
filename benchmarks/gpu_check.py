"""Every registered paper's presets on CUDA: timings, claim outcomes, and agreement with the CPU records.

    python benchmarks/gpu_check.py [--scales tiny quick paper] [--papers NAME ...] [--budget-s 480]
                                   [--out benchmarks/gpu-timings.json] [--results results] [--threads 1]

``make gpu-check`` runs it. Runs go scale by scale: every paper's ``tiny``, then ``quick``, then ``paper`` (the
cheapest predicted first). The budget bounds the whole script: no run starts once it is spent, a paper-scale run
predicted to outlast what is left is skipped (prediction: this GPU's quick time times the paper/quick ratio of
the CPU records), and a run still going when it ends is abandoned. The JSON file is rewritten (atomically) after
every run, so what finished is kept whatever happens. Each run's claims are compared with the CPU record
``results/<paper>-<scale>.json`` where one exists: do the verdicts agree, how far apart are the values.

Exit status: 0 when every run that started finished (claims may hold or fail: that is recorded, not judged),
1 when a run raised or was abandoned, 2 without CUDA (one line) or on bad usage. ``--device cpu`` is a dry run of
this script itself on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import torch

from moetheory import papers, runtime
from moetheory.reproduce import RESULTS_DIR, compare_claims, load_report, reproduce

DEFAULT_OUT = runtime.REPO_ROOT / "benchmarks" / "gpu-timings.json"
TORCH_NOTE = ("The GPU machine runs its own torch, which can differ from the pin in requirements.txt (2.11 was seen "
              "there); the package must not use torch APIs newer than that.")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", choices=(*runtime.SCALES, *papers.EXTRA_SCALES),
                        default=list(runtime.SCALES),
                        help="presets to run, in this order (default: tiny quick paper; paper-extras: the papers "
                             "that define it, chen2022)")
    parser.add_argument("--papers", nargs="+", metavar="NAME", help="registered papers (default: all)")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="wall-clock seconds for all runs; later runs are skipped, a late one abandoned")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the JSON file (default {DEFAULT_OUT.name})")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder of the CPU records to compare")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the CLI)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a dry run of this script without a GPU (the file then says cpu)")
    parser.add_argument("--digest", action="store_true",
                        help="print the code digest a run records (code_sha256) and exit: compare a checkout with it")
    args = parser.parse_args(argv)
    if args.digest:
        print(code_digest())
        parser.exit()
    registered = papers.registry()
    unknown = sorted(set(args.papers or ()) - set(registered))
    if unknown:
        parser.error(f"unknown paper(s) {', '.join(unknown)}; registered: {', '.join(registered)}")
    args.papers = args.papers or list(registered)
    if args.budget_s <= 0:
        parser.error("--budget-s must be > 0")
    return args


def pinned_torch() -> str | None:
    """The torch version requirements.txt pins (``None`` when it pins none)."""
    path = runtime.REPO_ROOT / "requirements.txt"
    match = re.search(r"^torch==(\S+)", path.read_text(), re.M) if path.exists() else None
    return match.group(1) if match else None


def code_digest(root: Path = runtime.REPO_ROOT) -> str:
    """The sha256 of the package's and this script's Python sources (path and content, in path order).

    A device machine may receive the working tree with stale git metadata (seen: a run at one commit reported an
    older one, ``+dirty``), so the revision alone cannot say which code ran; this digest can be recomputed from any
    checkout (``python benchmarks/gpu_check.py --digest``)."""
    digest = hashlib.sha256()
    for path in sorted([*root.joinpath("moetheory").rglob("*.py"), root / "benchmarks" / "gpu_check.py"]):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def environment(dev: torch.device, args) -> dict:
    """What ran: GPU, torch (beside the pinned one), the package's versions and revision, the settings."""
    pin = pinned_torch()
    return {
        "script": "benchmarks/gpu_check.py",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": runtime.device_description(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "torch": {"version": torch.__version__, "cuda": torch.version.cuda, "pinned": pin,
                  "matches_pin": pin is not None and torch.__version__.split("+")[0] == pin, "note": TORCH_NOTE},
        "versions": runtime.versions(),
        "git_revision": runtime.git_revision(),
        "code_sha256": code_digest(),
        "dtype_override": os.environ.get(runtime.ENV_DTYPE) or None,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),  # "highest": no TF32 in matmuls
        "budget_s": args.budget_s,
        "scales": args.scales,
        "papers": args.papers,
        "threads": args.threads,
    }


def comparison(report, results_dir: Path) -> dict | None:
    """The run's claims beside the CPU record of the same paper and scale; ``None`` when there is no record."""
    record = load_report(report.paper, report.scale, results_dir)
    if record is None:
        return None
    rows = compare_claims(report, record)
    judged = [r for r in rows if r["agree"] is not None]
    gaps = [r["rel_diff"] for r in rows if r["rel_diff"] is not None]
    return {
        "record": f"{results_dir.name}/{report.paper}-{report.scale}.json",
        "record_device": record.device,
        "record_dtype": record.dtype,
        "record_elapsed_s": record.elapsed_s,
        "speedup": round(record.elapsed_s / report.elapsed_s, 2) if report.elapsed_s > 0 else None,
        "verdicts_agree": sum(r["agree"] for r in judged),
        "verdicts_compared": len(judged),
        "disagree": [r["id"] for r in judged if not r["agree"]],
        "max_rel_diff": max(gaps) if gaps else None,
        "claims": rows,
    }


def run_one(name: str, scale: str, dev: torch.device, results_dir: Path) -> dict:
    """One preset on ``dev``: wall time (GPU synchronised), peak GPU memory, claims, metrics, CPU comparison."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    report = reproduce(name, scale, dev.type)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    report.elapsed_s = time.perf_counter() - start
    claims = list(report.claims)
    return {
        "status": "ok",
        "elapsed_s": round(report.elapsed_s, 2),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None,
        "dtype": report.dtype,
        "claims_hold": sum(c.holds is True for c in claims),
        "claims": [{"id": c.id, "holds": c.holds, "reproduced": c.reproduced, "criterion": c.criterion}
                   for c in claims],
        "metrics": report.metrics,
        "config": report.config,
        "cpu_record": comparison(report, results_dir),
    }


def predicted_s(name: str, runs: list[dict], results_dir: Path, scale: str = "paper") -> float | None:
    """A paper-scale time (``scale``: paper or paper-extras): this GPU's quick time times the CPU records'
    ``scale``/quick ratio (``None``: unknown)."""
    quick = next((r for r in runs if r["paper"] == name and r["scale"] == "quick" and r["status"] == "ok"), None)
    cpu = [load_report(name, s, results_dir) for s in ("quick", scale)]
    if quick is None or None in cpu or cpu[0].elapsed_s <= 0:
        return None
    return quick["elapsed_s"] * cpu[1].elapsed_s / cpu[0].elapsed_s


def entry(name: str, scale: str, guess: float | None = None, **fields) -> dict:
    """One run's line in the file: paper, scale, predicted seconds, then what happened."""
    return {"paper": name, "scale": scale, "predicted_s": None if guess is None else round(guess, 1), **fields}


class Check:
    """The runs so far, written to ``out`` after each; a watchdog abandons the run in progress at the budget."""

    def __init__(self, args, dev: torch.device):
        self.args, self.dev = args, dev
        self.start = time.perf_counter()
        self.lock = threading.Lock()
        self.doc = {**environment(dev, args), "runs": []}
        self.current: dict | None = None

    def remaining(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.start)

    def record(self, run: dict) -> None:
        with self.lock:
            self.doc["runs"].append(run)
            self._write()

    def _write(self) -> None:
        self.doc["wall_s"] = round(time.perf_counter() - self.start, 1)
        runtime.write_json_atomic(self.args.out, self.doc)

    def abandon(self) -> None:
        """The watchdog: record the run in progress as abandoned, write, print, and leave (exit status 1)."""
        with self.lock:
            if self.current is not None:
                elapsed = round(time.perf_counter() - self.current.pop("_start"), 1)
                self.doc["runs"].append({**self.current, "status": "abandoned", "elapsed_s": elapsed,
                                         "reason": f"still running when the {self.args.budget_s:.0f} s budget ended"})
            done = {(r["paper"], r["scale"]) for r in self.doc["runs"]}
            self.doc["runs"] += [entry(name, scale, status="skipped", reason="budget spent")
                                 for scale in self.args.scales for name in self.args.papers
                                 if (name, scale) not in done]
            self._write()
            print_table(self.doc)
            print(f"gpu_check: budget spent; wrote {self.args.out}", file=sys.stderr, flush=True)
            os._exit(1)

    def plan(self, scale: str) -> list[tuple[str, float | None]]:
        """The papers to run at ``scale``, with predicted seconds (paper scale only).

        Quick and paper runs go cheapest first, so that one long run cannot starve the others: quick by its CPU
        record's time, paper by its prediction; unknown last."""
        long = scale in ("paper", *papers.EXTRA_SCALES)
        items = [(name, predicted_s(name, self.doc["runs"], self.args.results, scale) if long else None)
                 for name in self.args.papers if scale in runtime.SCALES or scale in papers.get(name).scales]
        if long:
            items.sort(key=lambda item: (item[1] is None, item[1] or 0.0))
        elif scale == "quick":
            records = {name: load_report(name, scale, self.args.results) for name, _ in items}
            items.sort(key=lambda item: (records[item[0]] is None, getattr(records[item[0]], "elapsed_s", 0.0)))
        return items

    def run_all(self) -> int:
        watchdog = threading.Timer(max(self.remaining(), 0.0), self.abandon)
        watchdog.daemon = True
        watchdog.start()
        for scale in self.args.scales:
            for name, guess in self.plan(scale):
                self.step(name, scale, guess)
        watchdog.cancel()
        with self.lock:
            self._write()
        return 1 if any(r["status"] in ("error", "abandoned") for r in self.doc["runs"]) else 0

    def step(self, name: str, scale: str, guess: float | None) -> None:
        left = self.remaining()
        if left <= 0 or (guess is not None and guess > left):
            why = "budget spent" if left <= 0 else f"predicted {guess:.0f} s > {left:.0f} s left"
            self.record(entry(name, scale, guess, status="skipped", reason=why))
            return
        with self.lock:
            self.current = entry(name, scale, guess, _start=time.perf_counter())
        try:
            outcome = run_one(name, scale, self.dev, self.args.results)
        except Exception as err:  # one paper's failure must not hide the others' results
            detail = traceback.format_exc().strip().splitlines()[-6:]
            outcome = {"status": "error", "error": f"{type(err).__name__}: {err}"[:500], "traceback": detail}
        with self.lock:
            self.current = None
        self.record(entry(name, scale, guess, **outcome))
        print(f"gpu_check: {name} {scale}: {outcome['status']} ({outcome.get('elapsed_s', '-')} s)", flush=True)


def _cell(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def print_table(doc: dict) -> None:
    """One line per run: status, GPU and CPU-record seconds, claims holding, verdicts agreeing with the record."""
    header = ("paper", "scale", "status", "gpu s", "cpu s", "speedup", "holds", "agree cpu", "max rel diff")
    rows = []
    for run in doc["runs"]:
        cpu = run.get("cpu_record") or {}
        holds = f"{run['claims_hold']}/{len(run['claims'])}" if run["status"] == "ok" else "-"
        agree = f"{cpu['verdicts_agree']}/{cpu['verdicts_compared']}" if cpu else "-"
        rows.append((run["paper"], run["scale"], run["status"], _cell(run.get("elapsed_s")),
                     _cell(cpu.get("record_elapsed_s")), _cell(cpu.get("speedup")), holds, agree,
                     _cell(cpu.get("max_rel_diff"), 2)))
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    print(f"{doc['device']}, torch {doc['torch']['version']} (pinned {doc['torch']['pinned']})")
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    for run in doc["runs"]:
        if run.get("reason") or run.get("error") or (run.get("cpu_record") or {}).get("disagree"):
            detail = run.get("error") or run.get("reason") or f"verdicts differ: {run['cpu_record']['disagree']}"
            print(f"  {run['paper']} {run['scale']}: {detail}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available here (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}); run it on a machine with a GPU, or --device cpu for a dry run",
              file=sys.stderr)
        return 2
    runtime.set_threads(args.threads)
    dev = runtime.resolve_device(args.device)
    if dev.type == "cuda":
        torch.ones(64, 64, device=dev).matmul(torch.ones(64, 64, device=dev)).sum().item()  # context, cuBLAS
    check = Check(args, dev)
    status = check.run_all()
    print_table(check.doc)
    print(f"gpu_check: wrote {args.out}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
