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
