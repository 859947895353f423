"""moetheory.codehash: which definitions a record's code had, and which of them changed since."""

import subprocess

import pytest

from moetheory import codehash

BASE = {
    "moetheory/papers/toy/__init__.py": '"""Toy paper."""\nfrom moetheory.papers.toy import model\n'
                                        "from moetheory import helpers\n\ndef run():\n    return model.fit(1)\n",
    "moetheory/papers/toy/model.py": "def fit(x):\n    '''Fit.'''\n    return x + 1  # one step\n",
    "moetheory/helpers.py": "SCALE = 2\n\ndef unused():\n    return 0\n",
    "moetheory/other.py": "def f():\n    return 3\n",
}


def reader(files):
    return lambda path: files.get(path)


def diff(then, now):
    return codehash.compare(*(codehash.code_digests("toy", reader(f)) for f in (then, now)))


def test_imports_are_followed_transitively_and_only_within_the_package():
    found = codehash.code_digests("toy", reader(BASE))
    assert set(found) == {"moetheory/papers/toy/__init__.py", "moetheory/papers/toy/model.py", "moetheory/helpers.py"}
    assert set(found["moetheory/helpers.py"]) == {"SCALE", "unused"}


def test_docstrings_comments_and_layout_do_not_count_but_code_does():
    quiet = {**BASE, "moetheory/papers/toy/model.py": "def fit(x):\n    '''Fit x (reworded).'''\n\n    return x+1\n"}
    assert diff(BASE, quiet) == []
    edited = {**BASE, "moetheory/papers/toy/model.py": "def fit(x):\n    return x + 2\n"}
    assert diff(BASE, edited) == ["moetheory/papers/toy/model.py:fit"]


def test_additions_and_moves_do_not_count_edits_and_removals_do():
    added = {**BASE, "moetheory/helpers.py": BASE["moetheory/helpers.py"] + "\ndef new():\n    return 1\n"}
    assert diff(BASE, added) == []
    moved = {**BASE, "moetheory/helpers.py": "SCALE = 2\n",
             "moetheory/papers/toy/model.py": BASE["moetheory/papers/toy/model.py"] + "\ndef unused():\n    return 0\n"}
    assert diff(BASE, moved) == []
    removed = {**BASE, "moetheory/helpers.py": "SCALE = 2\n"}
    assert diff(BASE, removed) == ["moetheory/helpers.py:unused"]
    rescaled = {**BASE, "moetheory/helpers.py": "SCALE = 3\n\ndef unused():\n    return 0\n"}
    assert diff(BASE, rescaled) == ["moetheory/helpers.py:SCALE"]


def test_a_module_outside_the_import_graph_never_counts():
    assert diff(BASE, {**BASE, "moetheory/other.py": "def f():\n    return 4\n"}) == []


def test_git_revisions_are_read_and_bad_ones_refused(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    git("init", "-q")
    for path, text in BASE.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert codehash.changed_definitions("toy", head, tmp_path) == []
    (tmp_path / "moetheory/papers/toy/model.py").write_text("def fit(x):\n    return 2 * x\n")
    assert codehash.changed_definitions("toy", head, tmp_path) == ["moetheory/papers/toy/model.py:fit"]
    for bad in (head + "+dirty", "unknown", "0" * 40):
        with pytest.raises(ValueError, match="revision"):
            codehash.at_revision(bad, tmp_path)
