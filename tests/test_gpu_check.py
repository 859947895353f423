"""benchmarks/gpu_check.py's bookkeeping, on the CPU with the toy paper (``--device cpu``, its dry run): the GPU
lease is short, so the planning, budget, comparison and file writing are checked here beforehand."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import pytest
import torch

from moetheory import runtime
from moetheory.reproduce import reproduce

spec = importlib.util.spec_from_file_location("gpu_check", runtime.REPO_ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


@pytest.fixture
def records(tmp_path, toy_registry):
    """CPU records of the toy paper: quick fails its claim (the dry run's holds), paper took 10x quick's time."""
    folder = tmp_path / "results"
    quick = reproduce("toy", "quick", "cpu", overrides={"fail": True})
    replace(quick, elapsed_s=2.0).write(folder)
    replace(reproduce("toy", "paper", "cpu"), elapsed_s=20.0).write(folder)
    return folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_one_line_and_exit_2(capsys, tmp_path):
    assert gpu_check.main(["--out", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CUDA is not available" in err
    assert not (tmp_path / "t.json").exists()


def test_dry_run_records_every_run_and_compares_with_the_records(capsys, tmp_path, records):
    out = tmp_path / "timings.json"
    argv = ["--device", "cpu", "--papers", "toy", "--results", str(records), "--out", str(out)]
    assert gpu_check.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["torch"]["version"] == torch.__version__ and doc["torch"]["pinned"]
    runs = {r["scale"]: r for r in doc["runs"]}
    assert list(runs) == ["tiny", "quick", "paper"] and all(r["status"] == "ok" for r in runs.values())
    assert runs["tiny"]["cpu_record"] is None  # no tiny record
    assert all(c["criterion"] for r in runs.values() for c in r["claims"])  # each run's own test, for display
    quick = runs["quick"]["cpu_record"]
    assert quick["record_elapsed_s"] == 2.0 and quick["record_dtype"] == "float64"
    assert (quick["verdicts_agree"], quick["verdicts_compared"], quick["disagree"]) == (0, 1, ["toy/mean-above"])
    assert quick["max_rel_diff"] > 0  # the failing record's mean is 1 lower
    assert runs["paper"]["cpu_record"]["disagree"] == []
    table = capsys.readouterr().out
    assert "toy" in table and "verdicts differ: ['toy/mean-above']" in table


def test_paper_scale_predicted_from_quick_and_skipped_when_it_cannot_fit(tmp_path, records):
    runs = [{"paper": "toy", "scale": "quick", "status": "ok", "elapsed_s": 3.0}]
    assert gpu_check.predicted_s("toy", runs, records) == pytest.approx(30.0)  # 3 s x (20 s / 2 s)
    assert gpu_check.predicted_s("toy", [], records) is None
    args = gpu_check.parse_args(["--device", "cpu", "--papers", "toy", "--budget-s", "10", "--results",
                                 str(records), "--out", str(tmp_path / "t.json")])
    check = gpu_check.Check(args, torch.device("cpu"))
    check.doc["runs"] += runs
    assert check.plan("paper") == [("toy", pytest.approx(30.0))]
    check.step("toy", "paper", 30.0)
    (skipped,) = json.loads(args.out.read_text())["runs"][1:]
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("predicted 30 s >")


def test_abandoning_at_the_budget_keeps_what_finished(monkeypatch, tmp_path, toy_registry):
    args = gpu_check.parse_args(["--device", "cpu", "--papers", "toy", "--out", str(tmp_path / "t.json")])
    check = gpu_check.Check(args, torch.device("cpu"))
    check.step("toy", "tiny", None)
    check.current = gpu_check.entry("toy", "quick", _start=0.0)
    codes = []
    monkeypatch.setattr(gpu_check.os, "_exit", codes.append)
    check.abandon()
    assert codes == [1]
    runs = json.loads(args.out.read_text())["runs"]
    assert [(r["scale"], r["status"]) for r in runs] == [("tiny", "ok"), ("quick", "abandoned"), ("paper", "skipped")]


def test_usage_errors_name_the_problem(capsys, toy_registry):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.parse_args(["--papers", "nope"])
    assert exit_info.value.code == 2 and "unknown paper(s) nope" in capsys.readouterr().err


def test_quick_runs_go_cheapest_first_by_their_cpu_record(tmp_path, monkeypatch):
    """One long quick run (chen2022's: 37 CPU-minutes) must not starve the others of the budget."""
    args = gpu_check.parse_args(["--device", "cpu", "--results", str(tmp_path), "--out", str(tmp_path / "t.json")])
    args.papers = ["slow", "unrecorded", "fast"]
    times = {"slow": 500.0, "fast": 5.0}
    monkeypatch.setattr(gpu_check, "load_report", lambda name, scale, folder: (
        replace_elapsed(times[name]) if name in times else None))
    check = gpu_check.Check(args, torch.device("cpu"))
    assert [name for name, _ in check.plan("quick")] == ["fast", "slow", "unrecorded"]
    assert [name for name, _ in check.plan("tiny")] == ["slow", "unrecorded", "fast"]  # tiny: as registered


def test_a_scale_only_some_papers_define_runs_for_those_alone(tmp_path):
    args = gpu_check.parse_args(["--device", "cpu", "--results", str(tmp_path), "--out", str(tmp_path / "t.json"),
                                 "--scales", "paper-extras"])
    check = gpu_check.Check(args, torch.device("cpu"))
    assert check.plan("paper-extras") == [("chen2022", None)]  # no quick GPU run yet: no prediction
    assert len(check.plan("paper")) == len(args.papers)


def replace_elapsed(seconds: float):
    return type("Record", (), {"elapsed_s": seconds})()


def test_code_digest_follows_the_package_source(tmp_path):
    for name in ("moetheory/a.py", "benchmarks/gpu_check.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    before = gpu_check.code_digest(tmp_path)
    assert before == gpu_check.code_digest(tmp_path) and len(before) == 64
    (tmp_path / "moetheory" / "a.py").write_text("x = 2\n")
    assert gpu_check.code_digest(tmp_path) != before
    (tmp_path / "moetheory" / "a.py").write_text("x = 1\n")
    (tmp_path / "moetheory" / "a.py").rename(tmp_path / "moetheory" / "b.py")  # same content, another file
    assert gpu_check.code_digest(tmp_path) != before
