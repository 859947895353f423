"""The papers, one package each (``moetheory/papers/<paper>/``: the experiment in ``__init__.py``, the paper's
data and models in its modules), the Hermite chapter's experiment (``hermite.py``), and their registry.

:data:`TITLES` is the registry: every paper module of this package by name, with the one-line title that
``moetheory list`` shows. It is a plain list, so that listing the papers imports none of them (no torch), and
:func:`get` imports only the module asked for: a module that fails to import breaks itself, never the list nor the
other papers. A new paper module is added to :data:`TITLES` by hand (a test checks each title against the module's
``PAPER.title``). A paper module ``moetheory.papers.<name>`` defines ``PAPER = Paper(name="<name>", ...)`` and
provides

- ``Config``: a ``@dataclass`` with a comment on every default, validating itself in ``__post_init__``;
- ``config(scale)``: the ``tiny`` / ``quick`` / ``paper`` presets (and any further scale the paper lists in
  ``Paper.scales``: chen2022's ``paper-extras``);
- ``run(config, device="auto", progress=False)``: the experiment, returning a result object with ``metrics()``
  (a JSON-ready dict);
- ``claims(result)``: a list of :class:`moetheory.ledger.Claim`;
- ``provenance_of(claim_id, config)``: the ``provenance`` and ``source`` of each claim, from one module-level table
  that ``claims`` also reads, so that recorded results can be annotated without rerunning
  (:func:`moetheory.reproduce.annotate_provenance`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moetheory.checks import SCALES, check_choice

TITLES: dict[str, str] = {
    "chen2022": "Chen et al. 2022: Towards Understanding the Mixture-of-Experts Layer in Deep Learning",
    "hermite": "Hermite analysis: information exponents and online-SGD sample complexity",
    "kawata2025": "Kawata et al. 2025: MoE detect and learn latent cluster structure",
    "makkuva2019": "Makkuva et al. 2019: consistent tensor + EM estimation of a gated MoE",
    "wang2025": "Wang & E (2025): expressive power of MoE on manifolds and with depth",
}
"""The registered papers, by name (the module ``moetheory.papers.<name>`` and the claim-id prefix), in alphabetical
order, with the title each module's ``PAPER`` carries."""

EXTRA_SCALES: dict[str, str] = {"paper-extras": "paper"}
"""Scales beyond the common three (:data:`moetheory.checks.SCALES`) that some papers define (``Paper.scales``), each
with the ledger column its records join: chen2022's ``paper-extras`` runs what its ``paper`` preset leaves out, so
that Table 1 alone fits 20 CPU-minutes."""


@dataclass(frozen=True)
class Paper:
    """What the registry knows of one paper (or chapter) module."""

    name: str  # registry name and claim-id prefix, e.g. "chen2022"
    title: str  # one line, shown by `moetheory list`
    config: Callable[[str], Any]  # scale -> Config
    run: Callable[..., Any]  # run(config, device="auto", progress=False) -> result with .metrics()
    claims: Callable[[Any], list]  # claims(result) -> list[Claim]
    # provenance_of(claim_id, config dict of the run) -> {"provenance": ..., "source": ...}, as claims() gives them
    provenance: Callable[[str, dict], dict] | None = None
    # the scales config() accepts: the common three, and where one run at paper scale would take too long, more
    # (chen2022: paper-extras, the parts its paper preset leaves out; the ledger merges it into the paper column)
    scales: tuple[str, ...] = SCALES


class PaperImportError(ImportError):
    """A registered paper whose module cannot be imported or defines no matching ``PAPER``; the original exception
    is the ``__cause__``."""


def get(name: str) -> Paper:
    """The registered paper called ``name``, importing its module (and only it).

    ``ValueError`` listing the registered names for an unknown name; :class:`PaperImportError` naming the paper and
    the cause when its module cannot be imported.
    """
    check_choice("paper", name, TITLES)
    module_name = f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # a syntax error, a missing dependency, a failing check at import time, ...
        cause = " ".join(f"{type(err).__name__}: {err}".split())
        raise PaperImportError(f"cannot import paper {name!r} (module {module_name}): {cause}") from err
    paper = getattr(module, "PAPER", None)
    if not isinstance(paper, Paper) or paper.name != name:
        raise PaperImportError(f"cannot import paper {name!r}: module {module_name} defines no "
                               f"PAPER = Paper(name={name!r}, ...)")
    return paper


def registry() -> dict[str, Paper]:
    """Every registered paper, by name, in alphabetical order: imports every paper module (to list the papers
    without importing them, read :data:`TITLES`)."""
    return {name: get(name) for name in sorted(TITLES)}
