"""Sphinx extension for the book's reader-facing details (loaded through ``sphinx: local_extensions`` in _config.yml).

- ``bibtex_default_style: moetheory``: pybtex's ``plain`` style with author-year labels in the reference list
  ("Chen et al., 2022", as the text cites them, instead of [1]-[25]), ``$^k$`` in a title rendered as a
  superscript, and web addresses in a note (the official code) rendered as links.
- Figures whose image has no alt text get the first sentence of their caption (myst-nb's ``{glue:figure}`` images
  otherwise carry their file name, a hash, as alt text).
- Every chapter ends with a "Cite this chapter" block (BibTeX with the chapter's title and the book's version, from
  ``moetheory.__version__`` and the release date in CITATION.cff; a ``url`` only when ``html_baseurl`` is configured),
  and every page's footer names the version and the commit the book was built from.
"""

from __future__ import annotations

import codecs
import re
import subprocess
import unicodedata
from collections import Counter
from pathlib import Path

import latexcodec  # noqa: F401  (registers the "ulatex" codec)
from docutils import nodes
from pybtex.plugin import register_plugin
from pybtex.richtext import HRef, String, Tag, Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle

SUPERSCRIPT = re.compile(r"\$\^\{?([^${}]+)\}?\$")
WEB_ADDRESS = re.compile(r"https?://[^\s,;)]+[^\s,;).]")


def _plain(latex: str) -> str:
    """LaTeX as a reader sees it: accents decoded, braces dropped ("G{\\'e}rard" -> "Gérard")."""
    return codecs.decode(latex, "ulatex").replace("{", "").replace("}", "")


class AuthorYearLabels(BaseLabelStyle):
    """Labels as the text cites: "Barron, 1993", "Wang and E, 2025", "Chen et al., 2022" (a, b, ... on a tie)."""

    def format_labels(self, sorted_entries):
        labels = [self.format_label(entry) for entry in sorted_entries]
        ties, seen = Counter(labels), Counter()
        for label in labels:
            if ties[label] > 1:
                seen[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label

    @staticmethod
    def format_label(entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_plain(" ".join(p.prelast_names + p.last_names)) for p in persons]
        if not names:
            who = _plain(entry.fields.get("title", entry.key))[:30]
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        return f"{who}, {entry.fields.get('year', 'n.d.')}"


def _enrich(text):
    """Rich text with $^x$ as a superscript and bare web addresses as links (recursively through the parts)."""
    if isinstance(text, String):
        value, parts, last = text.value, [], 0
        for m in re.finditer(f"{SUPERSCRIPT.pattern}|{WEB_ADDRESS.pattern}", value):
            parts.append(String(value[last : m.start()]))
            if m.group(1) is not None:
                parts.append(Tag("sup", m.group(1)))
            else:
                parts.append(HRef(m.group(0), m.group(0)))
            last = m.end()
        if not parts:
            return text
        parts.append(String(value[last:]))
        return Text(*parts)
    if hasattr(text, "parts"):
        text.parts = [_enrich(part) for part in text.parts]
    return text


class Style(PlainStyle):
    default_label_style = "moetheory-author-year"

    def format_entry(self, label, entry, bib_data=None):
        formatted = super().format_entry(label, entry, bib_data=bib_data)
        formatted.text = _enrich(formatted.text)
        return formatted


SYMBOLS = {"infty": "∞", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "propto": "∝", "pm": "±", "times": "×",
           "cdot": "·", "star": "*", "to": "→", "in": "∈", "approx": "≈", "sim": "~", "ne": "≠", "neq": "≠"}


def _greek(name: str) -> str | None:
    try:
        return unicodedata.lookup(f"GREEK {'CAPITAL' if name[0].isupper() else 'SMALL'} LETTER {name.upper()}")
    except KeyError:
        return None


def speakable(latex: str) -> str:
    """Inline LaTeX as plain text for alt text: "\\mathbb{R}^{64}" -> "R^64", "L^\\infty" -> "L^∞"."""
    text = re.sub(r"\\(?:mathbb|mathrm|mathcal|mathbf|text|operatorname)\s*\{([^{}]*)\}", r"\1", latex)
    text = re.sub(r"\\([A-Za-z]+)", lambda m: SYMBOLS.get(m[1]) or _greek(m[1]) or m[1], text)
    return " ".join(text.replace("{", "").replace("}", "").replace("\\", "").split())


def _plain_text(node) -> str:
    if isinstance(node, nodes.math):
        return speakable(node.astext())
    if isinstance(node, nodes.Text):
        return str(node)
    return "".join(_plain_text(child) for child in node.children)


def alt_from_caption(app, doctree, docname) -> None:
    for figure in doctree.findall(nodes.figure):
        caption = next(iter(figure.findall(nodes.caption)), None)
        if caption is None:
            continue
        text = " ".join(_plain_text(caption).split())
        first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
        for image in figure.findall(nodes.image):
            if not image.get("alt"):
                image["alt"] = first


ROOT = Path(__file__).resolve().parent.parent
NOT_CHAPTERS = ("book/intro", "book/references")


def _release() -> tuple[str, str]:
    """(version, release date) of the book: the package's version, CITATION.cff's date-released."""
    import moetheory

    found = re.search(r'^date-released:\s*"?([0-9-]+)', (ROOT / "CITATION.cff").read_text(), re.M)
    return moetheory.__version__, found.group(1) if found else ""


def _built_from() -> str:
    """``<short commit> (<commit date>)`` of the checkout being built, or "" outside a git checkout."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h (%cs)"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return out


def footer(app, config) -> None:
    version, released = _release()
    built = _built_from()
    text = f"moetheory {version}, released {released}" + (f"; built from commit {built}" if built else "")
    config.html_theme_options = {**config.html_theme_options, "extra_footer": f"<p>{text}</p>"}


def cite_block(app, doctree) -> None:
    docname = app.env.docname
    if not docname.startswith("book/") or docname in NOT_CHAPTERS:
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    title = section.next_node(nodes.title).astext()
    version, released = _release()
    key = "moetheory-" + docname.split("/", 1)[1]
    fields = [f"  title     = {{{title}}},",
              "  booktitle = {moetheory: Mixture-of-Experts theory you can run},",
              "  author    = {{The moetheory contributors}},",
              f"  year      = {{{released[:4]}}},",
              f"  note      = {{version {version}}},"]
    if app.config.html_baseurl:
        fields.append(f"  url       = {{{app.config.html_baseurl.rstrip('/')}/{docname}.html}},")
    bibtex = "@incollection{" + key + ",\n" + "\n".join(fields) + "\n}"
    section += nodes.rubric(text="Cite this chapter")
    section += nodes.paragraph(text="Cite the chapter (and, in a paper's chapter, the paper it accompanies):")
    section += nodes.literal_block(bibtex, bibtex, language="bibtex")


def setup(app):
    register_plugin("pybtex.style.labels", "moetheory-author-year", AuthorYearLabels, force=True)
    register_plugin("pybtex.style.formatting", "moetheory", Style, force=True)
    app.connect("doctree-resolved", alt_from_caption)
    app.connect("doctree-read", cite_block)
    app.connect("config-inited", footer)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
