"""Paper modules and their registry.

Each module in this package that defines ``PAPER = Paper(...)`` registers itself: the CLI's ``list`` and
``reproduce`` find it without any central list to edit. A paper module provides

- ``Config``: a ``@dataclass`` with a comment on every default, validating itself in ``__post_init__``;
- ``config(scale)``: the ``tiny`` / ``quick`` / ``paper`` presets;
- ``run(config, device="auto", progress=False)``: the experiment, returning a result object with ``metrics()``
  (a JSON-ready dict);
- ``claims(result)``: a list of :class:`moetheory.ledger.Claim`;
- ``provenance_of(claim_id, config)``: the ``provenance`` and ``source`` of each claim, from one module-level table
  that ``claims`` also reads, so that recorded results can be annotated without rerunning
  (:func:`moetheory.reproduce.annotate_provenance`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moetheory.checks import check_choice


@dataclass(frozen=True)
class Paper:
    """What the registry knows of one paper (or chapter) module."""

    name: str  # registry name and claim-id prefix, e.g. "chen2022"
    title: str  # one line, shown by `moetheory list`
    cite_key: str  # key in book/references.bib
    config: Callable[[str], Any]  # scale -> Config
    run: Callable[..., Any]  # run(config, device="auto", progress=False) -> result with .metrics()
    claims: Callable[[Any], list]  # claims(result) -> list[Claim]
    # provenance_of(claim_id, config dict of the run) -> {"provenance": ..., "source": ...}, as claims() gives them
    provenance: Callable[[str, dict], dict] | None = None


def registry() -> dict[str, Paper]:
    """All registered papers, by name, in alphabetical order."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        paper = getattr(module, "PAPER", None)
        if isinstance(paper, Paper):
            found[paper.name] = paper
    return dict(sorted(found.items()))


def get(name: str) -> Paper:
    """The registered paper called ``name``; ``ValueError`` listing the registered names otherwise."""
    papers = registry()
    check_choice("paper", name, papers)
    return papers[name]
