"""The recorded reproductions in results/ stay consistent with the registered papers' claims and with the code."""

import json
import re
from pathlib import Path

import pytest

from moetheory import codehash, papers, runtime
from moetheory.ledger import NOT_RUN
from moetheory.reproduce import (
    CONFIG_ADDED,
    CONFIG_RENAMES,
    GPU_RUNS_DIR,
    RESULTS_DIR,
    Report,
    current_config,
    gpu_run,
    load_claims,
    load_report,
    reproduce,
    summary_table,
)

FILES = sorted(Path(RESULTS_DIR).glob("*.json"))
CHAPTER_THREADS = 1  # every chapter runs runtime.setup(threads=1), and `moetheory reproduce` defaults to one thread


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_results_file_is_a_complete_report_of_a_registered_paper(path):
    report = Report.from_json(json.loads(path.read_text()))
    assert path.name == f"{report.paper}-{report.scale}.json"
    assert report.paper in papers.registry()
    assert report.scale in papers.get(report.paper).scales
    assert all(c.id.startswith(f"{report.paper}/") for c in report.claims)
    assert report.versions["torch"] and report.git_revision and report.config
    assert report.elapsed_s > 0
    assert report.cpu_s is None or report.cpu_s > 0  # None: recorded before the field


@pytest.mark.parametrize("busy", [True, False])
def test_a_report_records_cpu_time_apart_from_wall_time(register, tmp_path, busy):
    """A run that computes has CPU time about its wall time; one that waits (as on a loaded machine) does not.
    The busy run spins until it has used 0.3 CPU-s (a wall-clock spin gets less on a loaded machine)."""
    import time
    from dataclasses import replace

    from conftest import TOY, toy_run

    def run(config, device="auto", progress=False):
        end = time.process_time() + 0.3
        while busy and time.process_time() < end:
            pass
        time.sleep(0 if busy else 0.3)
        return toy_run(config, device, progress)

    register(replace(TOY, run=run))
    report = reproduce("toy", "tiny", "cpu")
    assert report.elapsed_s >= 0.3
    assert (report.cpu_s > 0.25) if busy else (report.cpu_s < 0.15)
    again = Report.from_json(json.loads(report.write(tmp_path).read_text()))
    assert again.cpu_s == pytest.approx(report.cpu_s, abs=0.01)


def record_problems(data: dict) -> list[str]:
    """What makes a recorded report differ from what the code at its scale would record: one line per field."""
    problems = []
    revision = data.get("git_revision", "")
    if revision.endswith("+dirty") or revision in ("", "unknown"):
        problems.append(f"git_revision {revision!r}: recorded from a tree with uncommitted changes (or outside git)")
    preset = runtime.config_dict(papers.get(data["paper"]).config(data["scale"]))
    recorded = current_config(data["paper"], data.get("config", {}))  # the record's fields in today's names
    for key in sorted(set(preset) | set(recorded)):
        if recorded.get(key, "<absent>") != preset.get(key, "<absent>"):
            problems.append(f"config.{key}: recorded {recorded.get(key, '<absent>')!r}, "
                            f"preset {data['scale']!r} has {preset.get(key, '<absent>')!r}")
    threads = re.search(r"(\d+) threads", data.get("device", ""))
    if data.get("device", "").startswith("cpu") and (threads is None or int(threads[1]) != CHAPTER_THREADS):
        problems.append(f"device {data.get('device')!r}: the chapters run on {CHAPTER_THREADS} thread")
    return problems


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_record_was_made_by_the_committed_code_with_its_preset(path):
    problems = record_problems(json.loads(path.read_text()))
    assert not problems, f"results/{path.name} differs from the code; re-record it:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_record_was_made_by_todays_code(path):
    """A record is stale when a definition its paper's code had when it was made has since been edited or removed
    (docstrings, comments, additions, moves and presentation excepted: :mod:`moetheory.codehash`)."""
    data = json.loads(path.read_text())
    try:
        changed = codehash.changed_definitions(data["paper"], data["git_revision"])
    except ValueError as err:  # not a git checkout, a shallow one, or a dirty record (the test above says so)
        pytest.skip(str(err))
    assert not changed, (f"results/{path.name} was made at {data['git_revision'][:10]}; since then its code changed "
                         f"in {', '.join(changed)}: re-record it")


def test_record_problems_names_each_field_that_differs():
    data = {"paper": "hermite", "scale": "tiny", "git_revision": "abc+dirty", "device": "cpu (x86_64, 2 threads)",
            "config": {**runtime.config_dict(papers.get("hermite").config("tiny")), "n_seeds": 99}}
    problems = record_problems(data)
    assert len(problems) == 3
    assert "git_revision 'abc+dirty'" in problems[0]
    assert problems[1].startswith("config.n_seeds: recorded 99") and "'tiny'" in problems[1]
    assert "2 threads" in problems[2]
    clean = {**data, "git_revision": "abc", "device": "cpu (x86_64, 1 threads)",
             "config": runtime.config_dict(papers.get("hermite").config("tiny"))}
    assert record_problems(clean) == []


def test_legacy_config_names_are_read_in_todays_names():
    old = {"seeds": 2, "lr": 0.001}
    assert current_config("wang2025", old) == {"n_seeds": 2, "lr": 0.001, "seed": 0, "exp1_embedding": "random",
                                               "exp2_arms": []}
    assert old == {"seeds": 2, "lr": 0.001}  # the record itself is not changed
    assert current_config("makkuva2019", {"seeds": 5, "seed": 3}) == {"n_seeds": 5, "seed": 3}
    assert current_config("hermite", {"n_seeds": 4}) == {"n_seeds": 4}  # nothing renamed there
    today = {"n_seeds": 2, "seed": 5, "exp1_embedding": "zero-pad", "exp2_arms": ["hard"]}
    assert current_config("wang2025", today) == today  # today's names, every field present: nothing filled in
    with pytest.raises(ValueError, match="both 'seeds' and its new name 'n_seeds'"):
        current_config("wang2025", {"seeds": 2, "n_seeds": 2})
    data = json.loads((Path(RESULTS_DIR) / "wang2025-quick.json").read_text())
    legacy = {("seeds" if k == "n_seeds" else k): v for k, v in data["config"].items()
              if k not in ("seed", "exp1_embedding")}  # as a record made before the rename spells it
    report = Report.from_json({**data, "config": legacy})  # read through the map
    assert report.config == runtime.config_dict(papers.get("wang2025").config("quick"))


def test_legacy_map_names_real_fields_with_their_values_today():
    for name, renames in CONFIG_RENAMES.items():
        fields = runtime.config_dict(papers.get(name).config("quick"))
        assert set(renames.values()) <= set(fields) and not set(renames) & set(fields)
    for name, added in CONFIG_ADDED.items():
        defaults = runtime.config_dict(papers.get(name).config("quick"))
        assert all(defaults[key] == value for key, value in added.items())


def test_every_registered_paper_has_a_quick_record():
    recorded = {p.name for p in FILES}
    missing = [name for name in papers.registry() if f"{name}-quick.json" not in recorded]
    assert not missing, f"no results/<paper>-quick.json for {missing}: run `make results`"


@pytest.mark.parametrize("name", sorted(papers.registry()))
def test_every_record_of_a_paper_lists_the_same_claims(name):
    paths = [Path(RESULTS_DIR) / f"{name}-{scale}.json" for scale in papers.get(name).scales if scale != "tiny"]
    found = [p for p in paths if p.exists()]
    if len(found) < 2:
        pytest.skip("one scale recorded")
    ids = [{c["id"] for c in json.loads(p.read_text())["claims"]} for p in found]
    assert all(i == ids[0] for i in ids)


def test_a_split_paper_scale_shows_each_claim_from_the_record_that_ran_it(tmp_path):
    data = json.loads((Path(RESULTS_DIR) / "hermite-quick.json").read_text())
    ids = [c["id"] for c in data["claims"]]
    first, second = json.loads(json.dumps(data)), json.loads(json.dumps(data))
    for i, claim in enumerate(first["claims"]):  # the paper preset runs the even claims ...
        if i % 2:
            claim.update(reproduced=NOT_RUN, holds=None)
    for i, claim in enumerate(second["claims"]):  # ... paper-extras the odd ones, and one of them fails there
        if i % 2 == 0:
            claim.update(reproduced=NOT_RUN, holds=None)
    second["claims"][1].update(reproduced=-1.0, holds=False)
    assert load_claims("hermite", "paper", tmp_path) is None  # nothing recorded
    (tmp_path / "hermite-paper.json").write_text(json.dumps(first))
    alone = load_claims("hermite", "paper", tmp_path)
    assert [c.id for c in alone] == ids and sum(c.ran for c in alone) == (len(ids) + 1) // 2
    (tmp_path / "hermite-paper-extras.json").write_text(json.dumps(second))
    merged = {c.id: c for c in load_claims("hermite", "paper", tmp_path)}
    assert list(merged) == ids and all(c.ran for c in merged.values())
    assert merged[ids[1]].holds is False and merged[ids[1]].reproduced == -1.0  # from paper-extras
    assert merged[ids[0]].reproduced == data["claims"][0]["reproduced"]  # from paper
    held = sum(c["holds"] is True for c in data["claims"]) - (data["claims"][1]["holds"] is True)
    assert summary_table(tmp_path).loc["hermite", "paper scale"] == f"{held} of {len(ids)} hold"
    assert load_claims("hermite", "quick", tmp_path) is None  # a column reads only its own scales


def test_compare_claims_reports_verdicts_and_value_gaps():
    from dataclasses import replace

    from moetheory.ledger import NOT_RUN, Ledger
    from moetheory.reproduce import _is_number, compare_claims

    record = Report.from_json(json.loads((Path(RESULTS_DIR) / "chen2022-quick.json").read_text()))
    same = compare_claims(record, record)
    ran = [r for r in same if r["holds"] is not None]
    assert ran and all(r["agree"] for r in ran)
    numeric = {c.id for c in record.claims if _is_number(c.reproduced)}
    assert numeric and all(r["rel_diff"] == 0 for r in ran if r["id"] in numeric)
    assert all(r["rel_diff"] is None for r in ran if r["id"] not in numeric)  # a value in words: no difference
    assert all(r["agree"] is None for r in same if r["holds"] is None)  # a claim the record did not run (S2-S4)
    first, second, *rest = record.claims
    ours = replace(record, claims=Ledger([
        replace(first, reproduced=first.reproduced * 1.1, holds=not first.holds),  # 10 % off, other verdict
        replace(second, reproduced=NOT_RUN, holds=None),  # did not run
        *rest[1:],  # one claim missing
    ]))
    rows = {r["id"]: r for r in compare_claims(ours, record)}
    assert rows[first.id]["agree"] is False and rows[first.id]["rel_diff"] == pytest.approx(0.1)
    assert rows[second.id]["agree"] is None and rows[second.id]["rel_diff"] is None
    assert rows[rest[0].id] == {"id": rest[0].id, "holds": None, "record_holds": rest[0].holds, "agree": None,
                                "abs_diff": None, "rel_diff": None}
    assert list(rows)[-1] == rest[0].id  # the record's extra claims come last


def test_summary_counts_a_claim_that_did_not_run_as_not_holding(tmp_path):
    data = json.loads((Path(RESULTS_DIR) / "hermite-quick.json").read_text())
    data["claims"][0].update(reproduced=NOT_RUN, holds=None)
    (tmp_path / "hermite-quick.json").write_text(json.dumps(data))
    held = sum(c["holds"] is True for c in data["claims"])
    expected = f"{held} of {len(data['claims']) - 1} hold (1 not run)"
    assert summary_table(tmp_path).loc["hermite", "quick scale"] == expected


def test_gpu_run_takes_the_latest_finished_run_and_none_when_absent(tmp_path):
    def write(day, name, started, runs):
        (tmp_path / day).mkdir(exist_ok=True)
        doc = {"device": f"cuda ({day})", "torch": {"version": "2.11"}, "started": started, "runs": runs}
        (tmp_path / day / name).write_text(json.dumps(doc))

    ok = {"paper": "p", "scale": "paper", "status": "ok", "claims": [], "elapsed_s": 1.0}
    assert gpu_run("p", "paper", tmp_path) is None  # nothing recorded yet
    write("2026-01-01", "a.json", "2026-01-01T10:00:00+00:00", [ok])
    write("2026-02-01", "b.json", "2026-02-01T10:00:00+00:00",
          [{**ok, "elapsed_s": 2.0}, {**ok, "status": "abandoned", "elapsed_s": 9.0}])
    write("2026-03-01", "c.json", "2026-03-01T10:00:00+00:00", [{**ok, "status": "error"}, {**ok, "scale": "quick"}])
    run = gpu_run("p", "paper", tmp_path)
    assert (run["elapsed_s"], run["file"], run["device"]) == (2.0, "2026-02-01/b.json", "cuda (2026-02-01)")
    assert gpu_run("q", "paper", tmp_path) is None


def test_committed_gpu_runs_name_the_claims_of_the_quick_records():
    """A chapter shows a GPU run with the quick record's claims (Ledger.with_outcomes): every claim id a committed
    ``make gpu-check`` run gives must be one the record states."""
    files = sorted(GPU_RUNS_DIR.glob("*/*.json"))
    if not files:
        pytest.skip("no GPU run committed")
    checked = 0
    for path in files:
        for run in json.loads(path.read_text())["runs"]:
            record = load_report(run["paper"], "quick") if run["status"] == "ok" else None
            if record is not None:
                shown = record.claims.with_outcomes(run["claims"])
                ran = [c["id"] for c in run["claims"] if c["holds"] is not None]
                assert [c.id for c in shown if c.ran] == ran, (path.name, run["paper"], run["scale"])
                checked += 1
    assert checked
