"""The reproduction ledger: every claim the book makes about a paper, the paper's value beside ours.

A :class:`Claim` is computed, never typed: a paper module's ``claims(result)`` builds them from an experiment's
result, and ``holds`` is a real test (a bound, a tolerance band, a sign), stated in ``criterion``.
The ledger chapter gathers them all; each chapter shows its own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

NOT_REPORTED = "not reported"
"""Paper value for a claim whose number the paper does not give, or that could not be consulted."""

_ID = re.compile(r"^[a-z][a-z0-9]*/[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Claim:
    """One checked statement about a paper.

    ``paper_value`` is the paper's number (float), a short text such as ``"99.46 ± 0.55"`` or a bound
    ``"<= 87.5"``, or :data:`NOT_REPORTED`. ``reproduced`` is our measured or derived value.
    ``criterion`` says in words what ``holds`` tested; ``source`` where the paper value comes from.
    """

    id: str
    statement: str
    paper_value: float | str
    reproduced: float | str | bool
    holds: bool
    criterion: str = ""
    source: str = ""

    def __post_init__(self):
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise ValueError(f"claim id must look like '<paper>/<slug>' (lower case, digits, '-'); got {self.id!r}")
        if self.paper_value is None:
            raise ValueError(f"{self.id}: paper_value is required; pass ledger.NOT_REPORTED when there is none")
        holds = _plain(self.holds)
        if not isinstance(holds, bool):
            raise ValueError(f"{self.id}: holds must be a bool; got {type(self.holds).__name__}")
        object.__setattr__(self, "holds", holds)
        object.__setattr__(self, "reproduced", _plain(self.reproduced))
        object.__setattr__(self, "paper_value", _plain(self.paper_value))

    @property
    def paper(self) -> str:
        return self.id.split("/", 1)[0]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Claim:
        return cls(**{k: data[k] for k in ("id", "statement", "paper_value", "reproduced", "holds")},
                   criterion=data.get("criterion", ""), source=data.get("source", ""))


def _plain(value):
    """numpy/torch scalars to plain Python so that JSON and printing are stable across releases."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    return value


def fmt(value, digits: int = 3) -> str:
    """Format a value for tables: floats to ``digits`` significant digits, booleans and text as they are."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 10**digits or abs(value) < 10**-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


class Ledger(Sequence):
    """An ordered collection of claims; renders as a table in notebooks and as JSON for the CLI."""

    columns = ("claim", "statement", "paper", "ours", "criterion", "holds")

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
        return all(c.holds for c in self._claims)

    def frame(self) -> pd.DataFrame:
        """A pandas table, one row a claim, values formatted for reading."""
        rows = [
            (c.id, c.statement, fmt(c.paper_value), fmt(c.reproduced), c.criterion, c.holds) for c in self._claims
        ]
        return pd.DataFrame(rows, columns=list(self.columns)).set_index("claim")

    def to_json(self) -> list[dict]:
        return [c.to_dict() for c in self._claims]

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            return self.frame().drop(columns=["statement"]).to_string()

    def _repr_html_(self) -> str:
        return self.frame().to_html(escape=True)


def beside(quick: Ledger, recorded: Ledger | None, label: str = "paper scale") -> pd.DataFrame:
    """The claims of a quick run beside a recorded (e.g. paper-scale) run: one row per claim id."""
    table = quick.frame()[["paper", "ours", "holds"]].rename(columns={"ours": "ours (quick)", "holds": "holds (quick)"})
    if recorded is None:
        table[f"ours ({label})"] = "not run"
        table[f"holds ({label})"] = "not run"
        return table
    rec = recorded.frame()[["ours", "holds"]]
    table[f"ours ({label})"] = rec["ours"].reindex(table.index).fillna("absent")
    table[f"holds ({label})"] = rec["holds"].reindex(table.index).astype(object).fillna("absent")
    return table


def load_claims(path: str | Path) -> Ledger:
    """Read the claims of a results file written by ``moetheory reproduce --out``."""
    data = json.loads(Path(path).read_text())
    return Ledger(Claim.from_dict(c) for c in data["claims"])
