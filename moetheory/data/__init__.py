"""Each paper's synthetic distribution, importable from one place.

The generators live with their paper (``moetheory/papers/<paper>/``); the names below are importable from here too
(``from moetheory.data import sample_gated_moe``), each from the module that :data:`EXPORTS` names, imported on
first use, so that asking for one paper's generator imports no other paper. Everything else is imported from its
paper's module (``from moetheory.papers.wang2025 import manifolds``). Generators are deterministic for a seed.
"""

from __future__ import annotations

import importlib

EXPORTS = {
    "sample_gated_moe": "moetheory.papers.makkuva2019.gated_moe",
    "CHEN_SETTINGS": "moetheory.papers.chen2022.data",
    "ChenClusters": "moetheory.papers.chen2022.data",
    "ChenSetting": "moetheory.papers.chen2022.data",
    "make_chen_clusters": "moetheory.papers.chen2022.data",
    "ClusterSingleIndex": "moetheory.papers.kawata2025.data",
    "hermite_series": "moetheory.hermite",
    "make_cluster_problem": "moetheory.papers.kawata2025.data",
    "sample_clusters": "moetheory.papers.kawata2025.data",
    "figure3_target": "moetheory.papers.wang2025.manifolds",
}
"""Public name -> the module that defines it."""

__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
