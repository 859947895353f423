"""moetheory.data's explicit exports: every listed name comes from the submodule that defines it, and the
contract's names are among them."""

from __future__ import annotations

import importlib

import pytest

from moetheory import data

CONTRACT = ("sample_gated_moe", "make_chen_clusters", "make_cluster_problem", "sample_clusters")  # ../shared/DESIGN.md


@pytest.mark.parametrize("name", sorted(data.EXPORTS))
def test_each_export_is_its_submodules_public_name(name):
    module = importlib.import_module(data.EXPORTS[name])
    assert name in module.__all__
    assert getattr(data, name) is getattr(module, name)


def test_exports_hold_the_public_contract_and_nothing_else_is_invented():
    assert set(CONTRACT) <= set(data.__all__) == set(data.EXPORTS)
    namespace = {}
    exec("from moetheory.data import *", namespace)
    assert set(data.EXPORTS) <= set(namespace)
    with pytest.raises(ImportError, match="cannot import name 'no_such_generator'"):
        exec("from moetheory.data import no_such_generator", {})
