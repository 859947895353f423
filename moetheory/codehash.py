"""Which code a recorded result depends on, and whether it has changed since the record was made.

A record in ``results/`` names the commit that made it (``git_revision``). The code that decides its numbers is the
paper's module and every module of this package it imports, directly or not (found statically, from the import
statements). :func:`code_digests` fingerprints each top-level definition of them (function, class, assignment) by
its syntax tree without docstrings, so that comments, docstrings and layout do not count as a change, and
:func:`changed_definitions` compares a revision's definitions with the working tree's: a definition that was edited
or removed counts; one that was added does not (the old code cannot call it; a caller that now does was edited), nor
one moved unchanged to another module, nor one that only shapes how results are shown (:data:`PRESENTATION`).
``tests/test_results.py`` uses it to call a record stale when the code that made it changed after it was made.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

from moetheory.runtime import REPO_ROOT

PACKAGE = "moetheory"

# definitions that shape how results are shown or listed, never what a run computes or decides: a change to them
# leaves a record valid (``*`` = every definition of the module; ``PAPER`` holds a paper's title and its functions;
# ``PROVENANCE`` tables are re-applied to a record without a re-run: :func:`moetheory.reproduce.annotate_provenance`)
PRESENTATION = {
    "moetheory/ledger.py": {"fmt", "Ledger", "side_by_side", "beside"},
    "moetheory/ledger_view.py": {"*"},
    "moetheory/papers/__init__.py": {"*"},
    "*": {"PAPER", "PROVENANCE"},
}

Reader = Callable[[str], "str | None"]  # a repository-relative path -> its text, or None when there is no such file


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []  # imports and bare expressions: what they bind is checked where it is defined


def definitions(source: str) -> dict[str, str]:
    """Name -> sha256 of the syntax tree (without docstrings; comments and layout never reach the tree) of each
    top-level function, class and assigned name of a module, ``__all__`` excepted."""
    out = {}
    for node in _strip_docstrings(ast.parse(source)).body:
        digest = hashlib.sha256(ast.dump(node).encode()).hexdigest()
        for name in _names(node):
            if name != "__all__":
                out[name] = digest
    return out


def _locate(module: str, read: Reader) -> tuple[str, str] | None:
    """(path, text) of a module of this package, trying ``a/b.py`` then ``a/b/__init__.py``."""
    base = module.replace(".", "/")
    for path in (f"{base}.py", f"{base}/__init__.py"):
        text = read(path)
        if text is not None:
            return path, text
    return None


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Names of this package's modules (or attributes of them) that a module imports."""
    names = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # may be a submodule: kept if it is one
    return {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}


def code_digests(paper: str, read: Reader) -> dict[str, dict[str, str]]:
    """Path -> :func:`definitions` of ``moetheory.papers.<paper>`` and of every module of the package it imports,
    transitively. Packages above an imported module (``moetheory/__init__.py``, ...) count only when imported."""
    found: dict[str, dict[str, str]] = {}
    todo, seen = [f"{PACKAGE}.papers.{paper}"], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        located = _locate(module, read)
        if located is None:  # an attribute (`from moetheory.x import name`), not a module
            continue
        path, text = located
        tree = ast.parse(text)
        found[path] = definitions(text)
        todo.extend(_imported(tree, module, path.endswith("__init__.py")) - seen)
    if not found:
        raise ValueError(f"paper {paper!r}: no module moetheory/papers/{paper}(.py|/__init__.py) to fingerprint")
    return found


def working_tree(root: Path = REPO_ROOT) -> Reader:
    """A :data:`Reader` of the files as they are on disk."""
    def read(path: str) -> str | None:
        file = root / path
        return file.read_text() if file.is_file() else None
    return read


def at_revision(revision: str, root: Path = REPO_ROOT) -> Reader:
    """A :data:`Reader` of the files as committed at ``revision`` (``+dirty`` is not accepted: such a record's
    code is unknown). ``ValueError`` when git or the revision is not available."""
    if revision.endswith("+dirty") or not revision or revision == "unknown":
        raise ValueError(f"revision {revision!r} names no committed code")
    try:
        subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=root, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise ValueError(f"revision {revision!r} is not in the repository at {root}") from err

    def read(path: str) -> str | None:
        out = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root, capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else None
    return read


def changed_definitions(paper: str, revision: str, root: Path = REPO_ROOT) -> list[str]:
    """``path:name`` of each definition the paper's code had at ``revision`` that is edited or gone in the working
    tree (one moved unchanged to another module of the paper's code does not count); ``[]`` when the code that made
    a record at ``revision`` is still today's."""
    return compare(code_digests(paper, at_revision(revision, root)), code_digests(paper, working_tree(root)))


def compare(then: dict[str, dict[str, str]], now: dict[str, dict[str, str]]) -> list[str]:
    """:func:`changed_definitions`' rule on two :func:`code_digests`: ``path:name`` of each definition of ``then``
    edited or gone in ``now``, unless moved unchanged or only presentation."""
    today = {(name, digest) for defs in now.values() for name, digest in defs.items()}
    return sorted(f"{path}:{name}" for path, defs in then.items() for name, digest in defs.items()
                  if now.get(path, {}).get(name) != digest and (name, digest) not in today
                  and not _presentation(path, name))


def _presentation(path: str, name: str) -> bool:
    shown = PRESENTATION.get(path, set()) | PRESENTATION["*"]
    return "*" in shown or name in shown
