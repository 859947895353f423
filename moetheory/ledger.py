"""The reproduction ledger: every claim the book makes about a paper, the paper's value beside ours.

A :class:`Claim` is computed, never typed: a paper module's ``claims(result)`` builds them from an experiment's
result, and ``holds`` is a real test (a bound, a tolerance band, a sign), stated in ``criterion``.
The ledger chapter gathers them all; each chapter shows its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import pandas as pd

from moetheory.ledger_view import ClaimsFrame, claims_html, claims_markdown

NOT_REPORTED = "not reported"
"""Paper value for a claim whose number the paper does not give, or that could not be consulted."""

NOT_RUN = "not run"
"""``reproduced`` of a claim whose experiment did not run (``holds`` is then ``None``): not a failure."""

PROVENANCES = {
    "paper": "read in the paper's own text; source names the table, figure, section, theorem or equation",
    "official code": "the authors' code or its printed outputs; source names the file",
    "third party": "a summary of the paper by others: unverified",
    "abstract": "a qualitative statement of the abstract, no number",
    "not read": "the paper's text on this point could not be consulted",
    "not reported": "the relevant text was read and gives no such number",
    "derived": "what the paper's theory implies, derived by us: never a paper number",
}
"""Where a claim's paper value comes from (the ``provenance`` of every :class:`Claim`), with what each means."""

_ID = re.compile(r"^[a-z][a-z0-9]*/[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Claim:
    """One checked statement about a paper.

    ``paper_value`` is the paper's number (float), a short text such as ``"99.46 ± 0.55"`` or a bound
    ``"<= 87.5"``, or :data:`NOT_REPORTED`. ``reproduced`` is our measured or derived value.
    ``criterion`` says in words what ``holds`` tested; ``holds`` is ``None`` (and ``reproduced`` is
    :data:`NOT_RUN`) when the experiment behind the claim did not run. ``provenance`` (one of
    :data:`PROVENANCES`, required) says where the paper value comes from and ``source`` names the table, figure,
    section, file or summary.
    """

    id: str
    statement: str
    paper_value: float | str
    reproduced: float | str | bool
    holds: bool | None
    criterion: str = ""
    source: str = ""
    provenance: str = field(default="", kw_only=True)

    def __post_init__(self):
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise ValueError(f"claim id must look like '<paper>/<slug>' (lower case, digits, '-'); got {self.id!r}")
        if self.paper_value is None:
            raise ValueError(f"{self.id}: paper_value is required; pass ledger.NOT_REPORTED when there is none")
        if self.provenance not in PROVENANCES:
            raise ValueError(f"{self.id}: provenance must be one of {', '.join(map(repr, PROVENANCES))}; "
                             f"got {self.provenance!r}")
        if self.provenance not in ("abstract", "not read", "not reported") and not self.source:
            raise ValueError(f"{self.id}: provenance {self.provenance!r} needs a source naming where it comes from")
        holds = _plain(self.holds)
        if holds is not None and not isinstance(holds, bool):
            raise ValueError(f"{self.id}: holds must be a bool, or None when not run; got {type(self.holds).__name__}")
        if (holds is None) != (self.reproduced == NOT_RUN):
            raise ValueError(f"{self.id}: a claim that did not run has holds=None and reproduced={NOT_RUN!r}")
        object.__setattr__(self, "holds", holds)
        object.__setattr__(self, "reproduced", _plain(self.reproduced))
        object.__setattr__(self, "paper_value", _plain(self.paper_value))

    @property
    def paper(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def ran(self) -> bool:
        return self.holds is not None

    @property
    def verdict(self) -> str:
        """``holds``, ``fails`` or ``not run``: the outcome in words for tables."""
        return NOT_RUN if self.holds is None else ("holds" if self.holds else "fails")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Claim:
        return cls(**{k: data[k] for k in ("id", "statement", "paper_value", "reproduced", "holds")},
                   criterion=data.get("criterion", ""), source=data.get("source", ""),
                   provenance=data.get("provenance", ""))


def provenance_entry(table: Mapping[str, tuple[str, str]], claim_id: str) -> dict:
    """``{"provenance": ..., "source": ...}`` of ``claim_id`` from a paper module's ``PROVENANCE`` table
    (claim id -> (provenance, source)), ready to pass to :class:`Claim` as keywords."""
    if claim_id not in table:
        raise KeyError(f"no provenance recorded for claim {claim_id!r}; add it to its paper's PROVENANCE table")
    provenance, source = table[claim_id]
    return {"provenance": provenance, "source": source}


def _plain(value):
    """numpy/torch scalars to plain Python so that JSON and printing are stable across releases."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    return value


def fmt(value, digits: int = 3) -> str:
    """Format a value for tables: floats to ``digits`` significant digits, a whole float below a million as an
    integer (56000, not 5.6e+04 or 56000.0), infinity as ``∞``, booleans as ``yes``/``no``, text as it is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if math.isnan(value):
            return "nan"
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        if value != 0 and (abs(value) >= 10**digits or abs(value) < 10**-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


class Ledger(Sequence):
    """An ordered collection of claims; renders as a table in notebooks and as JSON for the CLI."""

    columns = ("claim", "statement", "paper", "provenance", "ours", "criterion", "holds")

    def __init__(self, claims: Iterable[Claim] = ()):
        self._claims = list(claims)
        ids = [c.id for c in self._claims]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate claim ids: {', '.join(dup)}")

    def __getitem__(self, item):
        if isinstance(item, str):
            for claim in self._claims:
                if claim.id == item:
                    return claim
            raise KeyError(f"no claim {item!r}; have: {', '.join(c.id for c in self._claims)}")
        return self._claims[item]

    def __len__(self) -> int:
        return len(self._claims)

    @property
    def all_hold(self) -> bool:
        """No claim that ran fails (claims that did not run are not failures)."""
        return not any(c.holds is False for c in self._claims)

    def with_outcomes(self, outcomes: Iterable[Mapping]) -> Ledger:
        """These claims (statements, paper values, provenance) with another run's outcomes: each of ``outcomes``
        gives ``id``, ``reproduced``, ``holds`` and optionally that run's ``criterion`` (as ``make gpu-check`` writes
        them; without it the claim keeps its own); a claim with no outcome is not run, an outcome for an unknown
        claim is an error."""
        given = {o["id"]: o for o in outcomes}
        unknown = sorted(set(given) - {c.id for c in self._claims})
        if unknown:
            raise KeyError(f"outcomes for claims this ledger does not have: {', '.join(unknown)}")
        return Ledger(replace(c, reproduced=given[c.id]["reproduced"], holds=given[c.id]["holds"],
                              criterion=given[c.id].get("criterion", c.criterion))
                      if c.id in given else replace(c, reproduced=NOT_RUN, holds=None) for c in self._claims)

    def frame(self) -> pd.DataFrame:
        """A pandas table, one row a claim, values formatted for reading."""
        rows = [
            (c.id, c.statement, fmt(c.paper_value), c.provenance, fmt(c.reproduced), c.criterion, c.verdict)
            for c in self._claims
        ]
        return pd.DataFrame(rows, columns=list(self.columns)).set_index("claim")

    def to_json(self) -> list[dict]:
        return [c.to_dict() for c in self._claims]

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            return self.frame().drop(columns=["statement"]).to_string()

    def _runs(self) -> dict:
        return {"ours": {c.id: (fmt(c.reproduced), c.verdict) for c in self._claims}}

    def _repr_html_(self) -> str:
        return claims_html(self._claims, self._runs())

    def _repr_markdown_(self) -> str:
        return claims_markdown(self._claims, self._runs())


def side_by_side(runs: Mapping[str, Ledger | None], *, verdicts: bool = True, absent: str = "absent") -> pd.DataFrame:
    """The claims of several runs of one paper side by side (the quick run beside the paper-scale one, say).

    One row per claim id, in the order the runs first give them; ``paper``, the paper's value (from that first
    claim); then per run label ``L``: ``ours (L)`` and ``holds (L)``, the verdict in words (``verdicts``) or the
    bool. A run that is ``None`` (not recorded) shows :data:`NOT_RUN` in its columns, a claim missing from a run
    ``absent``, a claim that did not run :data:`NOT_RUN`.
    """
    first: dict[str, Claim] = {}
    for ledger in runs.values():
        for claim in ledger or ():
            first.setdefault(claim.id, claim)
    table = ClaimsFrame({"paper": [fmt(c.paper_value) for c in first.values()]},
                        index=pd.Index(list(first), name="claim"))
    table.attrs["claims"], table.attrs["runs"] = first, {}
    for label, ledger in runs.items():
        mine = None if ledger is None else {c.id: c for c in ledger}
        cells, shown = [], {}  # the frame's (ours, holds) and the rendering's (ours, verdict word)
        for claim_id in first:
            claim = None if mine is None else mine.get(claim_id)
            if claim is None:
                missing = NOT_RUN if mine is None else absent
                cells.append((missing, missing))
                shown[claim_id] = (missing, missing)
            else:
                ours = fmt(claim.reproduced)
                cells.append((ours, claim.verdict if verdicts or claim.holds is None else claim.holds))
                shown[claim_id] = (ours, claim.verdict)
        table.attrs["runs"][label] = shown
        table[f"ours ({label})"] = [ours for ours, _ in cells]
        table[f"holds ({label})"] = [holds for _, holds in cells]
    return table


def beside(quick: Ledger, recorded: Ledger | None, label: str = "paper scale") -> pd.DataFrame:
    """The claims of a quick run beside a recorded (e.g. paper-scale) run (:func:`side_by_side`)."""
    return side_by_side({"quick": quick, label: recorded})
