"""Generators for each paper's synthetic distribution, one submodule per setting.

The names below are importable from here (``from moetheory.data import sample_gated_moe``); each comes from the
submodule that :data:`EXPORTS` names, imported on first use, so that a submodule is imported only when one of its
names is asked for. Everything else is imported from its submodule (``from moetheory.data import manifolds``).
Generators are deterministic for a seed.
"""

from __future__ import annotations

import importlib

EXPORTS = {
    "sample_gated_moe": "gated_moe",
    "CHEN_SETTINGS": "chen_clusters",
    "ChenClusters": "chen_clusters",
    "ChenSetting": "chen_clusters",
    "make_chen_clusters": "chen_clusters",
    "ClusterSingleIndex": "cluster_single_index",
    "hermite_series": "cluster_single_index",
    "make_cluster_problem": "cluster_single_index",
    "sample_clusters": "cluster_single_index",
}
"""Public name -> the submodule of this package that defines it."""

__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
