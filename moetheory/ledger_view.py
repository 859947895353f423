"""Claims as readers see them: one row a claim, its full statement, the paper's value beside ours.

A ledger table has many columns (statement, paper value, provenance, ours and the verdict per run, criterion,
source); laid out flat they do not fit a book's column. Here each claim is one row of a narrow table: the claim's
id and full statement (with the test and the source of the paper's value in a collapsed ``<details>``), the
paper's value, and per run our value with its verdict as a mark and a word. It reads at 1400 px and on a phone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape

import pandas as pd

MARKS = {
    "holds": ("✓", "#1a7f37"),
    "fails": ("✗", "#cf222e"),
    "not run": ("–", "#6e7781"),
    "absent": ("–", "#6e7781"),
}
"""Verdict word -> (mark, colour) of its table cell."""

_STYLE = (
    "<style>.moetheory-claims table{width:100%;border-collapse:collapse;font-size:0.9em;line-height:1.35}"
    ".moetheory-claims th,.moetheory-claims td{vertical-align:top;padding:0.35em 0.5em;"
    "border-top:1px solid #d0d7de;text-align:left;overflow-wrap:break-word}"
    ".moetheory-claims .text{width:55%}"
    ".moetheory-claims summary{cursor:pointer;color:#57606a}"
    "@media (max-width:640px){.moetheory-claims thead{display:none}"
    ".moetheory-claims tr{display:block;border-top:1px solid #d0d7de;padding:0.3em 0}"
    ".moetheory-claims td{display:inline-block;border:0;vertical-align:top}"
    ".moetheory-claims .text{display:block;width:auto}"
    ".moetheory-claims td[data-label]::before{content:attr(data-label) ': ';color:#57606a}}</style>"
)
"""One style sheet per table (inline, so that a notebook renders the same outside the book)."""


def _verdict_cell(label: str, ours: str, verdict: str) -> str:
    mark, colour = MARKS.get(verdict, ("", "inherit"))
    value = "" if ours == verdict else f"{escape(ours)}<br>"
    return (f'<td data-label="{escape(label)}">{value}<span style="color:{colour};font-weight:600">{mark}</span> '
            f"{escape(verdict)}</td>")


def _claim_cell(claim) -> str:
    details = []
    if claim.criterion:
        details.append(f"<b>Holds when</b>: {escape(claim.criterion)}")
    source = f" ({escape(claim.source)})" if claim.source else ""
    details.append(f"<b>Paper value from</b>: {escape(claim.provenance)}{source}")
    more = "<br>".join(details)
    return (f'<td class="text"><code>{escape(claim.id)}</code><br>{escape(claim.statement)}'
            f"<details><summary>test and source</summary>{more}</details></td>")


def _paper_text(claim) -> str:
    """The paper column: the paper's value, or "not read" where the paper's text could not be consulted."""
    from moetheory.ledger import fmt

    return claim.provenance if claim.provenance == "not read" else fmt(claim.paper_value)


def claims_html(claims: Sequence, runs: Mapping[str, Mapping[str, tuple[str, str]]]) -> str:
    """HTML table of ``claims`` (each a :class:`~moetheory.ledger.Claim`, giving id, statement, paper value,
    criterion, provenance and source) and, per run label, ``{claim id: (ours, verdict word)}``."""
    head = "".join(f"<th>ours ({escape(label)})</th>" for label in runs)
    rows = []
    for claim in claims:
        paper = _paper_text(claim)
        cells = "".join(_verdict_cell(f"ours ({label})", *run[claim.id]) for label, run in runs.items())
        rows.append(f'<tr>{_claim_cell(claim)}<td data-label="paper">{escape(paper)}</td>{cells}</tr>')
    return (f'{_STYLE}<div class="moetheory-claims"><table>'
            f'<thead><tr><th class="text">claim</th><th>paper</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _md(text: str) -> str:
    """Text as literal Markdown in a table cell: its ``|``, emphasis and code characters escaped."""
    return re.sub(r"([|*_`\\\[\]<>])", r"\\\1", str(text)).replace("\n", " ")


def claims_markdown(claims: Sequence, runs: Mapping[str, Mapping[str, tuple[str, str]]]) -> str:
    """The same table in Markdown (what the PDF build renders: a table whose long column wraps)."""
    head = "| claim | paper | " + " | ".join(f"ours ({_md(label)})" for label in runs) + " |"
    rule = "|" + "---|" * (2 + len(runs))
    rows = [head, rule]
    for claim in claims:
        paper = _paper_text(claim)
        cells = [f"{MARKS.get(v, ('', ''))[0]} {v}" if o == v else f"{_md(o)} {MARKS.get(v, ('', ''))[0]} {v}"
                 for o, v in (run[claim.id] for run in runs.values())]
        rows.append(f"| `{claim.id}`: {_md(claim.statement)} | {_md(paper)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


class ClaimsFrame(pd.DataFrame):
    """A claims table: a plain pandas frame to compute with (one row a claim), rendered in notebooks as
    :func:`claims_html`. The claims behind it sit in ``attrs["claims"]`` (id -> claim, for the statement and the
    test) and ``attrs["runs"]`` (label -> {id: (ours, verdict)}); selecting rows keeps only their claims."""

    @property
    def _constructor(self):
        return ClaimsFrame

    def _view(self):
        """(the claims of the rows shown, runs), or None for a frame that carries no claims."""
        claims, runs = self.attrs.get("claims"), self.attrs.get("runs")
        return ([claims[i] for i in self.index if i in claims], runs) if claims and runs else None

    def _repr_html_(self) -> str:
        view = self._view()
        return claims_html(*view) if view else super()._repr_html_()

    def _repr_markdown_(self) -> str | None:
        view = self._view()
        return claims_markdown(*view) if view else None
