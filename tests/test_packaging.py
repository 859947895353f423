"""Packaging facts that drift silently: the version is written once, and the metadata tell the truth."""

import re
import sys
import tomllib
from pathlib import Path

import moetheory

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_written_once_and_citation_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    cff = re.search(r"^version:\s*(\S+)\s*$", (ROOT / "CITATION.cff").read_text(), re.M)
    assert cff is not None and cff[1] == moetheory.__version__


def test_requires_python_admits_this_interpreter_and_the_pins():
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(p) for p in re.fullmatch(r">=\s*(\d+)\.(\d+)", spec).groups())
    assert sys.version_info[:2] >= minimum
    assert minimum >= (3, 11)  # the pinned numpy in requirements.txt needs Python 3.11


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-cff.txt"):
        lines = [ln.split("#")[0].strip() for ln in (ROOT / name).read_text().splitlines()]
        reqs = [ln for ln in lines if ln and not ln.startswith("-")]
        assert reqs and all("==" in r for r in reqs), f"{name}: every requirement pinned with =="


def test_mathjax_is_committed_not_ignored():
    assert (ROOT / "_mathjax/_static/mathjax/tex-mml-chtml.js").is_file()
    assert "_mathjax" not in (ROOT / ".gitignore").read_text()


def test_modules_stay_small():
    """STYLE.md: modules under about 400 lines (a module that grows past it is split by what it holds)."""
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in (ROOT / "moetheory").rglob("*.py")}
    assert not {p: n for p, n in sizes.items() if n > 400}


def test_public_contract_is_importable():
    """The names ../shared/DESIGN.md promises, whatever the package's layout."""
    from moetheory import hermite
    from moetheory.data import make_chen_clusters, make_cluster_problem, sample_clusters, sample_gated_moe
    from moetheory.estimators import TensorEM
    from moetheory.metrics import dispatch_entropy

    assert callable(hermite.hermite_coefficients) and callable(hermite.information_exponent)
    assert callable(hermite.hermite_coefficients_numeric)
    assert all(callable(f) for f in (make_chen_clusters, make_cluster_problem, sample_clusters, sample_gated_moe,
                                     dispatch_entropy))
    assert hasattr(TensorEM, "fit") and hasattr(TensorEM, "predict")
