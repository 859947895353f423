"""Every claim says where its paper value comes from, from one table per paper; old records can be annotated."""

import importlib
import json
import re
import shutil

import pytest

from moetheory import papers, runtime
from moetheory.ledger import PROVENANCES, Claim
from moetheory.reproduce import RESULTS_DIR, annotate_provenance, claims_table, load_report, provenance_counts

NAMES = sorted(papers.registry())


def recorded(name):
    """The claims (dicts) of paper ``name``'s quick record, with the record's config."""
    data = json.loads((RESULTS_DIR / f"{name}-quick.json").read_text())
    return data["claims"], data["config"]


@pytest.mark.parametrize("name", ["hermite", "kawata2025"])  # the two whose tiny runs take seconds
def test_tiny_claims_carry_the_tables_provenance(name):
    paper = papers.get(name)
    cfg = paper.config("tiny")
    claims = paper.claims(paper.run(cfg, device="cpu"))
    for claim in claims:
        entry = paper.provenance(claim.id, runtime.config_dict(cfg))
        assert (claim.provenance, claim.source) == (entry["provenance"], entry["source"]), claim.id


@pytest.mark.parametrize("name", NAMES)
def test_every_claim_has_a_valid_table_entry_and_no_entry_is_stale(name):
    paper = papers.get(name)
    assert paper.provenance is not None
    claims, config = recorded(name)
    for c in claims:
        entry = paper.provenance(c["id"], config)
        assert entry["provenance"] in PROVENANCES and entry["source"]
        Claim(c["id"], c["statement"], c["paper_value"], c["reproduced"], c["holds"], **entry)  # validates
    table = importlib.import_module(f"moetheory.papers.{name}").PROVENANCE
    base_ids = {re.sub(r"-c\d+$", "", c["id"]) for c in claims}
    assert set(table) <= base_ids, f"entries for claims that do not exist: {sorted(set(table) - base_ids)}"


def test_paper_numbers_are_never_ours_or_unread():
    """A claim whose paper value is ours (derived) says so in its source; `not read`, `abstract` and `not reported`
    claims carry no paper number (an `abstract` claim may quote the abstract's words, with no digit in them)."""
    for name in NAMES:
        for c in load_report(name, "quick").claims:
            if c.provenance == "abstract" and c.paper_value != "not reported":
                assert c.paper_value.startswith("'") and not re.search(r"\d", c.paper_value), c.id
            elif c.provenance in ("not read", "abstract", "not reported"):
                assert c.paper_value == "not reported", c.id
            if c.provenance == "derived":
                assert "derived" in c.source and "not" in c.source, c.id


def test_chen_table1_provenance_follows_the_setting():
    chen = papers.get("chen2022")
    s1 = chen.provenance("chen2022/moe-nonlinear-accuracy", {"settings": ["S2"]})  # the setting is in the id
    s2 = chen.provenance("chen2022/s2-moe-nonlinear-accuracy", None)
    s3 = chen.provenance("chen2022/s3-moe-nonlinear-accuracy", {"settings": ["S3", "S4"]})
    assert s1["provenance"] == "official code" and "synthetic_demo_s1.ipynb" in s1["source"]
    assert s2["provenance"] == "third party" and "prints 98.1 ± 1.56" in s2["source"]
    assert s3["provenance"] == "official code" and "synthetic_demo_s3.ipynb" in s3["source"]
    control = chen.provenance("chen2022/bound-positive-control", None)
    assert control["provenance"] == "derived" and "not a paper number" in control["source"]
    with pytest.raises(KeyError, match="no provenance recorded for claim 'chen2022/nope'"):
        chen.provenance("chen2022/nope", None)


def test_claims_tables_show_provenance_and_source():
    for name in NAMES:
        table = claims_table(name)
        assert table["provenance"].isin(list(PROVENANCES)).all() and (table["source"] != "").all()


def test_provenance_counts_sum_to_the_number_of_claims():
    table = provenance_counts()
    assert list(table.columns) == [*PROVENANCES, "total"]
    assert (table.drop(columns="total").sum(axis=1) == table["total"]).all()
    for name in NAMES:
        ids = set()
        for scale in papers.get(name).scales:
            report = load_report(name, scale)
            ids |= {c.id for c in report.claims} if report else set()
        assert table.loc[name, "total"] == len(ids)


def test_annotation_fills_provenance_and_keeps_everything_else(tmp_path):
    path = tmp_path / "hermite-paper.json"
    shutil.copy(RESULTS_DIR / "hermite-paper.json", path)
    old = json.loads(path.read_text())
    for c in old["claims"]:  # as a record made before provenance existed
        c.pop("provenance", None)
        c["source"] = "an old source"
    old.pop("provenance_annotated", None)
    runtime.write_json_atomic(path, old)

    annotate_provenance(path, revision="abc123")
    new = json.loads(path.read_text())
    assert list(new) == [*list(old)[:list(old).index("git_revision") + 1], "provenance_annotated",
                         *list(old)[list(old).index("git_revision") + 1:]]
    assert new["provenance_annotated"] == "abc123"
    assert {k: v for k, v in new.items() if k not in ("claims", "provenance_annotated")} == \
        {k: v for k, v in old.items() if k != "claims"}
    paper = papers.get("hermite")
    for before, after in zip(old["claims"], new["claims"], strict=True):
        assert {k: v for k, v in after.items() if k not in ("provenance", "source")} == \
            {k: v for k, v in before.items() if k != "source"}
        entry = paper.provenance(after["id"], old["config"])
        assert (after["provenance"], after["source"]) == (entry["provenance"], entry["source"])
    text = path.read_text()
    annotate_provenance(path, revision="abc123")  # idempotent, same formatting
    assert path.read_text() == text == json.dumps(new, indent=2) + "\n"


def test_a_chapter_downloaded_alone_finds_no_record_and_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    from moetheory import reproduce

    monkeypatch.setattr(reproduce, "RESULTS_DIR", tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOETHEORY_RESULTS", raising=False)
    assert reproduce.recorded("hermite", "quick") is None
    notice = capsys.readouterr().out
    assert notice.count("\n") == 1 and "MOETHEORY_RESULTS" in notice and "--scale quick --out results" in notice
    # pointed at a results folder, it reads the record there and says nothing
    shutil.copy(RESULTS_DIR / "hermite-quick.json", tmp_path / "hermite-quick.json")
    monkeypatch.setenv("MOETHEORY_RESULTS", str(tmp_path))
    assert reproduce.recorded("hermite", "quick").claims and capsys.readouterr().out == ""
