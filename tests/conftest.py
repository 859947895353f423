"""Shared test set-up: one torch thread (2-core machines), CPU device, a toy registered paper for CLI tests."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest
import torch

from moetheory import papers
from moetheory.checks import check_float, check_int
from moetheory.ledger import NOT_REPORTED, Claim, provenance_entry

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _default_dtype_restored():
    """A test that calls ``runtime.setup`` makes float64 torch's default for its process; the next test in the same
    xdist worker must not inherit it (a float32 comparison then fails for an unrelated reason)."""
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)


@dataclass(frozen=True)
class ToyConfig:
    n: int = 100  # samples
    threshold: float = 0.2  # claim holds when the sample mean is above it
    fail: bool = False  # force the claim to fail

    def __post_init__(self):
        check_int("n", self.n, 1)
        check_float("threshold", self.threshold)


@dataclass
class ToyResult:
    mean: float
    config: ToyConfig

    def metrics(self):
        return {"mean": self.mean}


def toy_config(scale):
    return {"tiny": ToyConfig(n=10), "quick": ToyConfig(), "paper": ToyConfig(n=1000)}[scale]


def toy_run(config, device="auto", progress=False):
    g = torch.Generator().manual_seed(0)
    return ToyResult(mean=float(torch.rand(config.n, generator=g).mean()) + (0.0 if not config.fail else -1.0),
                     config=config)


TOY_PROVENANCE = {"toy/mean-above": ("not reported", "a toy paper: there is no such number")}


def toy_provenance(claim_id, config=None):
    return provenance_entry(TOY_PROVENANCE, claim_id)


def toy_claims(result):
    return [Claim("toy/mean-above", "mean of U[0,1) samples exceeds the threshold", NOT_REPORTED,
                  result.mean, result.mean > result.config.threshold, criterion="mean > threshold",
                  **toy_provenance("toy/mean-above"))]


TOY = papers.Paper(name="toy", title="A toy paper for tests", config=toy_config, run=toy_run,
                   claims=toy_claims, provenance=toy_provenance)


def register_paper(monkeypatch, paper: papers.Paper) -> None:
    """Register ``paper`` for one test, as a module ``moetheory.papers.<name>`` would be: its title in the registry,
    and a module defining ``PAPER`` where :func:`moetheory.papers.get` imports it from."""
    module = types.ModuleType(f"moetheory.papers.{paper.name}")
    module.PAPER = paper
    monkeypatch.setitem(papers.TITLES, paper.name, paper.title)
    monkeypatch.setitem(sys.modules, module.__name__, module)


@pytest.fixture
def register(monkeypatch):
    """``register(paper, ...)`` registers papers for one test (a frozen Paper cannot be patched: register a changed
    copy under the same name to replace it)."""
    def add(*extra: papers.Paper) -> None:
        for paper in extra:
            register_paper(monkeypatch, paper)

    return add


@pytest.fixture
def toy_registry(register):
    register(TOY)
    return TOY
