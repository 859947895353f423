import json

import pytest

from moetheory.ledger import (
    NOT_REPORTED,
    NOT_RUN,
    PROVENANCES,
    Claim,
    Ledger,
    beside,
    fmt,
    provenance_entry,
    side_by_side,
)


def make(id_="p/a", holds=True, ours=0.5, statement="a statement"):
    return Claim(id_, statement, 1.0, ours, holds, criterion="ours < 1", source="Table 1", provenance="paper")


NOT_READ = {"provenance": "not read"}


def test_claim_validates_id_and_paper_value():
    with pytest.raises(ValueError, match="claim id must look like '<paper>/<slug>'"):
        Claim("NoSlash", "s", 1.0, 1.0, True, **NOT_READ)
    with pytest.raises(ValueError, match="paper_value is required; pass ledger.NOT_REPORTED"):
        Claim("p/a", "s", None, 1.0, True, **NOT_READ)
    with pytest.raises(ValueError, match="holds must be a bool"):
        Claim("p/a", "s", 1.0, 1.0, "yes", **NOT_READ)
    assert Claim("p/a", "s", NOT_REPORTED, 1.0, True, **NOT_READ).paper == "p"


@pytest.mark.parametrize("provenance", ["", "the paper", "Paper"])
def test_claim_refuses_a_missing_or_unknown_provenance(provenance):
    with pytest.raises(ValueError) as err:
        Claim("p/a", "s", 1.0, 1.0, True, source="Table 1", provenance=provenance)
    message = str(err.value)
    assert "\n" not in message and message.startswith("p/a: provenance must be one of")
    assert all(repr(p) in message for p in PROVENANCES) and f"got {provenance!r}" in message


def test_claim_needs_a_source_unless_nothing_was_read():
    with pytest.raises(ValueError, match="p/a: provenance 'paper' needs a source"):
        Claim("p/a", "s", 1.0, 1.0, True, provenance="paper")
    for provenance in ("abstract", "not read", "not reported"):
        assert Claim("p/a", "s", NOT_REPORTED, 1.0, True, provenance=provenance).source == ""


def test_provenance_entry_reads_a_table():
    table = {"p/a": ("third party", "a summary")}
    assert provenance_entry(table, "p/a") == {"provenance": "third party", "source": "a summary"}
    with pytest.raises(KeyError, match="no provenance recorded for claim 'p/b'"):
        provenance_entry(table, "p/b")


def test_numpy_and_torch_scalars_become_plain():
    import numpy as np
    import torch

    c = Claim("p/a", "s", np.float64(1.5), torch.tensor(2.0), np.bool_(True), **NOT_READ)
    assert type(c.paper_value) is float and type(c.reproduced) is float and c.holds is True


def test_ledger_all_hold_lookup_and_duplicates():
    led = Ledger([make("p/a"), make("p/b", holds=False)])
    assert not led.all_hold and Ledger([make("p/a")]).all_hold
    assert led["p/b"].holds is False
    with pytest.raises(KeyError, match="no claim 'p/c'; have: p/a, p/b"):
        led["p/c"]
    with pytest.raises(ValueError, match="duplicate claim ids: p/a"):
        Ledger([make("p/a"), make("p/a")])


def test_json_round_trip(tmp_path):
    led = Ledger([make("p/a"), make("p/b", holds=False, ours="text")])
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"claims": led.to_json()}))
    back = Ledger(Claim.from_dict(c) for c in json.loads(path.read_text())["claims"])
    assert back.to_json() == led.to_json()


def test_table_rendering_is_rounded_and_stable():
    led = Ledger([make("p/a", ours=0.123456), make("p/b", ours=12345.678)])
    text = repr(led)
    assert "0.123" in text and "0.123456" not in text and "1.23e+04" in text
    assert "<table" in led._repr_html_()
    assert fmt(True) == "yes" and fmt(3) == "3" and fmt(99.456, 3) == "99.5" and fmt(1e-5) == "1.00e-05"
    assert fmt(56000.0) == "56000" and fmt(2.0) == "2" and fmt(2.5e6) == "2.50e+06"
    assert fmt(float("inf")) == "∞" and fmt(float("-inf")) == "−∞" and fmt(float("nan")) == "nan"


def test_html_shows_full_statements_marks_and_the_test_behind_a_fold():
    long = "a statement " * 20  # far past any column width: shown whole, never cut with an ellipsis
    led = Ledger([make("p/a", statement=long), make("p/b", holds=False), make("p/c", holds=None, ours="not run")])
    html = led._repr_html_()
    assert long.strip() in html and "…" not in html and "..." not in html
    assert html.count("<tr>") == 4  # a header and one row per claim
    for word in ("holds", "fails", "not run"):
        assert word in html
    assert "✓" in html and "✗" in html and "<details>" in html
    table = beside(led, Ledger([make("p/a", ours=0.25)]))
    assert table._repr_html_().count("<tr>") == 4 and "absent" in table._repr_html_()
    # selecting rows keeps a claims table whose rendering shows only those claims
    picked = table[table.index != "p/b"]
    assert picked._repr_html_().count("<tr>") == 3 and "p/b" not in picked._repr_html_()


def test_beside_marks_missing_recorded_runs():
    quick = Ledger([make("p/a"), make("p/b")])
    table = beside(quick, None)
    assert list(table["ours (paper scale)"]) == ["not run", "not run"]
    table = beside(quick, Ledger([make("p/a", ours=0.25)]))
    assert list(table["ours (paper scale)"]) == ["0.25", "absent"]


def test_side_by_side_lists_every_claim_of_every_run():
    quick = Ledger([make("p/a", ours=0.5), make("p/b", holds=False)])
    paper = Ledger([make("p/b", ours=2.0), make("p/c", ours=NOT_RUN, holds=None)])
    table = side_by_side({"quick": quick, "paper": paper, "gpu": None})
    assert list(table.index) == ["p/a", "p/b", "p/c"] and table.index.name == "claim"
    assert list(table.columns) == ["paper", "ours (quick)", "holds (quick)", "ours (paper)", "holds (paper)",
                                   "ours (gpu)", "holds (gpu)"]
    assert list(table["holds (quick)"]) == ["holds", "fails", "absent"]
    assert list(table["ours (paper)"]) == ["absent", "2", "not run"] and table.loc["p/c", "holds (paper)"] == NOT_RUN
    assert set(table["ours (gpu)"]) == {NOT_RUN}
    flags = side_by_side({"quick": quick, "paper": paper}, verdicts=False, absent=NOT_RUN)
    assert list(flags["holds (quick)"]) == [True, False, NOT_RUN] and flags.loc["p/c", "holds (paper)"] == NOT_RUN


def test_with_outcomes_keeps_the_claims_and_takes_another_runs_values():
    quick = Ledger([make("p/a", ours=0.5), make("p/b", holds=False, ours=2.0), make("p/c")])
    other = quick.with_outcomes([{"id": "p/a", "reproduced": 0.75, "holds": False},
                                 {"id": "p/b", "reproduced": 0.25, "holds": True}])
    assert [(c.reproduced, c.holds) for c in other] == [(0.75, False), (0.25, True), (NOT_RUN, None)]
    assert [c.criterion for c in other] == [c.criterion for c in quick] and other[0].paper_value == 1.0
    assert [(c.reproduced, c.holds) for c in quick] == [(0.5, True), (2.0, False), (0.5, True)]  # unchanged
    with pytest.raises(KeyError, match="p/z"):
        quick.with_outcomes([{"id": "p/z", "reproduced": 1.0, "holds": True}])
    ten = quick.with_outcomes([{"id": "p/a", "reproduced": 0.75, "holds": True, "criterion": "ten seeds"}])
    assert [c.criterion for c in ten] == ["ten seeds", "ours < 1", "ours < 1"]  # that run's test where it gives one
