"""Every registered paper speaks one vocabulary, and re-runs with another seed.

The shape (``moetheory.papers``): a frozen ``Config`` dataclass with ``n_seeds`` and ``seed``; ``config(scale)`` for
the ``tiny`` / ``quick`` / ``paper`` presets; ``run(config, device="auto", progress=False)`` returning a result with
``metrics()``, a JSON-ready dict that leaves the run's time and device to the report; ``claims(result)``, pure.
"""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from moetheory import papers, runtime
from moetheory.ledger import Claim

NAMES = sorted(papers.registry())
VOLATILE = {"elapsed_s", "device", "timings_s"}  # recorded once, by the report (moetheory.reproduce.Report)


def _run(name: str, **changes):
    paper = papers.get(name)
    config = runtime.replace_config(paper.config("tiny"), **changes) if changes else paper.config("tiny")
    with runtime.precision("cpu"):
        return paper.run(config, device="cpu")


@pytest.fixture(scope="module")
def runs():
    """Tiny runs, made once per (paper, seed offset) and shared by the tests below."""
    cache = {}

    def get(name: str, offset: int = 0, again: bool = False):
        key = (name, offset, again)
        if key not in cache:
            seed = papers.get(name).config("tiny").seed + offset
            cache[key] = _run(name, seed=seed)
        return cache[key]

    return get


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_the_registry_lists_the_papers():
    assert {"chen2022", "hermite", "kawata2025", "makkuva2019", "wang2025"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_functions_have_the_shared_signatures(name):
    paper = papers.get(name)
    assert list(inspect.signature(paper.config).parameters) == ["scale"]
    run = inspect.signature(paper.run).parameters
    assert list(run) == ["config", "device", "progress"]
    assert run["device"].default == "auto" and run["progress"].default is False
    assert len(inspect.signature(paper.claims).parameters) == 1


@pytest.mark.parametrize("name", NAMES)
def test_config_is_a_frozen_dataclass_with_n_seeds_and_seed(name):
    config = papers.get(name).config("quick")
    assert dataclasses.is_dataclass(config)
    fields = {f.name: f for f in dataclasses.fields(config)}
    assert {"n_seeds", "seed"} <= set(fields)
    assert "seeds" not in fields  # the old spelling
    assert isinstance(config.n_seeds, int) and isinstance(config.seed, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1
    with pytest.raises(ValueError, match="n_seeds"):
        runtime.replace_config(config, n_seeds=0)
    with pytest.raises(ValueError, match="seed"):
        runtime.replace_config(config, seed=-1)


@pytest.mark.parametrize("name", NAMES)
def test_presets_are_valid_configs_and_other_scales_are_refused(name):
    paper = papers.get(name)
    configs = {scale: paper.config(scale) for scale in runtime.SCALES}
    assert len({type(c) for c in configs.values()}) == 1
    for config in configs.values():
        assert dataclasses.replace(config) == config  # __post_init__ accepts it
        json.dumps(runtime.config_dict(config))
    assert configs["tiny"] != configs["quick"]
    with pytest.raises(ValueError, match="scale"):
        paper.config("huge")


@pytest.mark.parametrize("name", NAMES)
def test_tiny_run_gives_json_metrics_without_time_or_device(name, runs):
    metrics = runs(name).metrics()
    assert isinstance(metrics, dict) and metrics
    json.dumps(metrics)
    assert not _keys(metrics) & VOLATILE


@pytest.mark.parametrize("name", NAMES)
def test_claims_are_pure(name, runs):
    paper, result = papers.get(name), runs(name)
    metrics = json.dumps(result.metrics(), sort_keys=True)
    first, second = paper.claims(result), paper.claims(result)
    assert first and all(isinstance(c, Claim) for c in first)
    assert [c.to_dict() for c in first] == [c.to_dict() for c in second]
    assert json.dumps(result.metrics(), sort_keys=True) == metrics  # claims() left the result as it was
    assert all(c.id.startswith(f"{name}/") for c in first)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_metrics_and_another_seed_other_ones(name, runs):
    metrics = json.dumps(runs(name).metrics(), sort_keys=True)
    assert json.dumps(runs(name, again=True).metrics(), sort_keys=True) == metrics
    assert json.dumps(runs(name, offset=1).metrics(), sort_keys=True) != metrics
