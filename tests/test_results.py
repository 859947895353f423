"""The recorded reproductions in results/ stay consistent with the registered papers' claims."""

import json
from pathlib import Path

import pytest

from moetheory import papers
from moetheory.reproduce import RESULTS_DIR, Report

FILES = sorted(Path(RESULTS_DIR).glob("*.json"))


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_results_file_is_a_complete_report_of_a_registered_paper(path):
    report = Report.from_json(json.loads(path.read_text()))
    assert path.name == f"{report.paper}-{report.scale}.json"
    assert report.paper in papers.registry()
    assert report.scale in ("tiny", "quick", "paper")
    assert all(c.id.startswith(f"{report.paper}/") for c in report.claims)
    assert report.versions["torch"] and report.git_revision and report.config
    assert report.elapsed_s > 0


def test_every_registered_paper_has_a_quick_record():
    recorded = {p.name for p in FILES}
    missing = [name for name in papers.registry() if f"{name}-quick.json" not in recorded]
    assert not missing, f"no results/<paper>-quick.json for {missing}: run `make results`"


@pytest.mark.parametrize("name", sorted(papers.registry()))
def test_quick_and_paper_records_list_the_same_claims(name):
    quick, paper = (Path(RESULTS_DIR) / f"{name}-{scale}.json" for scale in ("quick", "paper"))
    if not (quick.exists() and paper.exists()):
        pytest.skip("paper scale not recorded")
    ids = [{c["id"] for c in json.loads(p.read_text())["claims"]} for p in (quick, paper)]
    assert ids[0] == ids[1]


def test_compare_claims_reports_verdicts_and_value_gaps():
    from dataclasses import replace

    from moetheory.ledger import NOT_RUN, Ledger
    from moetheory.reproduce import compare_claims

    record = Report.from_json(json.loads((Path(RESULTS_DIR) / "chen2022-quick.json").read_text()))
    assert all(r["agree"] and r["rel_diff"] == 0 for r in compare_claims(record, record))
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
