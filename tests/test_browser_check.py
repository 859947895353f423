"""The browser test's page analysis (tests/browser/check_pages.py) on small pages, and the book's Sphinx extension.

The analysis is pure Python, so each defect the browser test looks for is shown here to be caught (and a clean page
to pass) without a browser; one test drives Chromium itself on a broken page and is skipped where none is installed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check_pages = _load("check_pages", ROOT / "tests" / "browser" / "check_pages.py")


def page(body: str, layout: dict | None = None) -> str:
    report = "" if layout is None else f'<script type="application/json" id="moetheory-layout">{json.dumps(layout)}'
    report += "" if layout is None else "</script>"
    nav = "<nav>{glue} in the navigation is not prose</nav>"
    return f'<html><body>{nav}<article class="bd-article">{body}</article>{report}</body></html>'


def kinds(html: str, **kwargs) -> list[str]:
    return [f.kind for f in check_pages.analyse_page("book/x.html", html, **kwargs)]


CLEAN = (
    '<section id="s"><h1>Title</h1><p>Text with <span class="math"><mjx-container>x</mjx-container></span> and a '
    '<a class="reference internal" href="#s">link</a>.</p>'
    '<div class="cell_input"><div class="highlight"><pre>price = "$5"  # {glue} in code is fine</pre></div></div>'
    '<div class="cell_output"><pre>cost: $3</pre></div>'
    '<img alt="Training loss of the three models" src="../_images/0123456789abcdef0123.png"/></section>'
)


def test_a_clean_page_passes():
    assert kinds(page(CLEAN), targets={"book/x.html": {"s"}}) == []


@pytest.mark.parametrize(
    "body",
    [
        "<p>{prf:theorem} Vanilla networks</p>",  # a directive printed as text
        # what a backtick fence that cannot hold {cite:t}`...` in its title renders as: a code box in a markdown cell
        '<div class="highlight-default"><div class="highlight"><pre>```{prf:theorem} Vanilla networks (as stated in '
        "the abstract of {cite:t}`kawata2025`)</pre></div></div>",
        "<p>see {eq}`eq-moe` above</p>",  # a role left as text
        "<p>the value is {glue:text}`k-samples`</p>",
        "<p>:::{admonition} Solution</p>",
    ],
)
def test_literal_markup_is_caught(body):
    assert "markup" in kinds(page(body))


@pytest.mark.parametrize(
    "body",
    [
        "<p>Optimal rates of approximation by shallow ReLU$^k$ neural networks</p>",  # the bibliography's defect
        "<p>some satisfies $|f - \\Psi|_{L^\\infty} \\le \\max_i$</p>",  # Wang's Theorem 7 defect
        "<p>inline \\(x\\) left untypeset</p>",
    ],
)
def test_raw_math_is_caught(body):
    assert "raw-math" in kinds(page(body))


@pytest.mark.parametrize(
    "img",
    [
        '<img src="../_images/ab.png"/>',
        '<img alt="" src="../_images/ab.png"/>',
        '<img alt="../_images/ce6ba0adf18e7b1effd56ffc7e42df27b91a51e4de213d519fa13675149b5ab9.png" src="x.png"/>',
        '<img alt="figure.png" src="figure.png"/>',
    ],
)
def test_images_without_meaningful_alt_text_are_caught(img):
    assert kinds(page(img)) == ["alt"]


def test_unresolved_references_are_caught():
    assert kinds(page("<p>as in Fig. ?? above</p>")) == ["xref"]
    assert kinds(page('<p><span class="xref std std-ref">chap-missing</span></p>')) == ["xref"]
    targets = {"book/x.html": {"s"}, "book/y.html": {"top"}}
    html = page('<p><a href="y.html#nowhere">a</a> <a href="z.html">b</a> <a href="#s">c</a></p>')
    assert kinds(html, targets=targets) == ["xref", "xref"]


def test_mathjax_errors_and_untypeset_math_are_caught():
    error = '<p><mjx-container><mjx-merror data-mjx-error="Missing close brace">x</mjx-merror></mjx-container></p>'
    assert "mathjax" in kinds(page(error, layout={"typeset": True, "wide": [], "window": 1400}), rendered=True)
    raw = '<p><span class="math notranslate nohighlight">\\(x\\)</span></p>'
    assert "mathjax" in kinds(page(raw, layout={"typeset": True, "wide": [], "window": 1400}), rendered=True)


def test_wide_equations_and_tables_are_caught():
    wide = {"kind": "equation", "what": "equation-eq-moe (1.1)", "section": "notation", "width": 873, "column": 848,
            "left": 0, "right": 25}
    findings = check_pages.analyse_page(
        "book/x.html", page("<p>ok</p>", layout={"typeset": True, "wide": [wide], "window": 1400}), rendered=True
    )
    assert [f.kind for f in findings] == ["wide"]
    assert "873 px in a 848 px column at 1400 px" in findings[0].what


def test_a_page_that_never_reported_its_layout_is_caught():
    assert kinds(page("<p>ok</p>"), rendered=True) == ["load"]


def test_known_defects_are_reported_and_must_stay_real(monkeypatch):
    why = "issue 17, the ledger tables"
    monkeypatch.setattr(check_pages, "KNOWN_DEFECTS", (
        ("book/ledger.html", "wide", "chen-et-al-2022", why), ("book/ledger.html", "wide", "wang-e-2025", why),
        ("book/makkuva2019.html", "wide", "claims", why)))
    ledger = check_pages.Finding("book/ledger.html", "wide", "table 'x' in #chen-et-al-2022: 963 px in a 848 px")
    other = check_pages.Finding("book/ledger.html", "wide", "table 'y' in #summary: 900 px in a 848 px")
    new, known, gone = check_pages.split_known([ledger, other], ["book/ledger.html", "book/makkuva2019.html"])
    assert new == [other]
    assert len(known) == 1 and "issue 17" in known[0]
    assert len(gone) == len(check_pages.KNOWN_DEFECTS) - 1  # the others were not found on the pages checked
    assert check_pages.split_known([], ["book/intro.html"])[2] == []  # pages not checked: nothing to say


def test_redirect_pages_are_skipped(tmp_path):
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.html").write_text(page("<p>hello</p>"))
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "x.html").write_text("theme asset")
    assert check_pages.pages_of(tmp_path) == ["book/intro.html"]


def test_no_browser_means_a_notice_and_success_unless_required(monkeypatch, capsys):
    monkeypatch.setattr(check_pages, "find_browser", lambda: None)
    monkeypatch.delenv("MOETHEORY_REQUIRE_BROWSER", raising=False)  # CI sets it
    assert check_pages.main(["--html", "nowhere"]) == 0
    assert "NOT checked" in capsys.readouterr().err
    assert check_pages.main(["--html", "nowhere", "--require"]) == 1
    monkeypatch.setenv("MOETHEORY_REQUIRE_BROWSER", "1")
    assert check_pages.main(["--html", "nowhere"]) == 1


def one_page_site(tmp_path, article: str):
    """A built site of one page, book/page.html, whose 600 px content column holds ``article``."""
    site = tmp_path / "html"
    (site / "book").mkdir(parents=True)
    (site / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/page.html" />')
    body = f'<div style="width: 600px"><article class="bd-article">{article}</article></div>'
    (site / "book" / "page.html").write_text(f"<html><body>{body}</body></html>")
    return site


@pytest.mark.skipif(check_pages.find_browser() is None, reason="no Chromium installed: the browser run is not tested")
def test_chromium_run_fails_on_a_broken_page(tmp_path):
    """End to end: a page with a literal directive and a table wider than the column, loaded in Chromium."""
    site = one_page_site(
        tmp_path,
        '<p>```{prf:theorem} Vanilla networks</p><table style="width: 900px"><tr><td>wide</td></tr></table>',
    )
    findings, notes, info = check_pages.check_site(check_pages.find_browser(), site, [1400], [], 5000, None)
    assert info["pages"] == 1 and notes == []
    assert sorted({f.kind for f in findings}) == ["markup", "wide"], findings


@pytest.mark.skipif(check_pages.find_browser() is None, reason="no Chromium installed: the browser run is not tested")
@pytest.mark.parametrize("content_px, wide", [(900, True), (300, False)])
def test_a_table_scrolling_inside_its_own_box_is_caught(tmp_path, content_px, wide):
    """A table made a scrolling block (as the theme does) fits the column while its rows scroll inside it: that is
    found as wide; the same block with rows that fit is not (the control)."""
    site = one_page_site(
        tmp_path,
        '<p>text</p><table style="display: block; max-width: 100%; overflow-x: auto">'
        f'<tr><td><div style="width: {content_px}px">cells</div></td></tr></table>',
    )
    findings, _, _ = check_pages.check_site(check_pages.find_browser(), site, [1400], [], 5000, None)
    assert [f.kind for f in findings] == (["wide"] if wide else []), findings
    if wide:
        assert "its own box by" in findings[0].what


# ---- the book's Sphinx extension (_ext/moetheory_book.py) -------------------------------------------------------

book_ext = _load("moetheory_book", ROOT / "_ext" / "moetheory_book.py")


def test_reference_list_labels_are_author_year():
    from pybtex.database import parse_string

    bib = parse_string(
        r"""
        @article{a, author = {Barron, Andrew R.}, title = {T}, year = {1993}}
        @article{b, author = {Wang, Mingze and E, Weinan}, title = {T}, year = {2025}}
        @article{c, author = {Ben Arous, G{\'e}rard and Gheissari, Reza and Jagannath, Aukosh}, title = {T},
                    year = {2021}}
        @article{d, author = {Chen, Zixiang and Deng, Yihe and Wu, Yue}, title = {T}, year = {2022}}
        @article{e, author = {Chen, Minshuo and Jiang, Haoming and Liao, Wenjing}, title = {T}, year = {2022}}
        """,
        "bibtex",
    )
    labels = list(book_ext.AuthorYearLabels().format_labels(bib.entries.values()))
    assert labels == ["Barron, 1993", "Wang and E, 2025", "Ben Arous et al., 2021", "Chen et al., 2022a",
                      "Chen et al., 2022b"]


def test_bibliography_renders_superscripts_and_links():
    from pybtex.richtext import Text

    html = book_ext._enrich(Text.from_latex(r"Shallow {ReLU}$^k$ networks")).render_as("html")
    assert "<sup>k</sup>" in html and "$" not in html
    html = book_ext._enrich(Text.from_latex("Official code: https://github.com/uclaml/MoE.")).render_as("html")
    assert '<a href="https://github.com/uclaml/MoE">https://github.com/uclaml/MoE</a>.' in html


def test_alt_text_math_is_spoken_as_plain_text():
    assert book_ext.speakable(r"\mathbb{R}^{64}") == "R^64"
    assert book_ext.speakable(r"L^\infty") == "L^∞"
    assert book_ext.speakable(r"\max_k \cos(\theta_m, c_k)") == "max_k cos(θ_m, c_k)"


FOLDED = ('<div class="solution dropdown admonition" id="s1"><p class="admonition-title">Solution</p>'
          '<div class="cell"><div class="cell_input">x = 1</div><div class="cell_output">1</div></div></div>')


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (f'<section id="exercises"><div class="exercise admonition">Ex</div>{FOLDED}</section>', []),
        # the defect this check exists for: a hidden solution cell whose output shows under the closed dropdown
        ('<section id="exercises"><div class="dropdown admonition">Solution</div>'
         '<div class="cell tag_hide-input"><div class="cell_output">0.448</div></div></section>', ["exercise"]),
        # a solution that is not folded at all
        ('<section id="exercises"><div class="solution admonition" id="s2">answer</div></section>', ["exercise"]),
    ],
)
def test_exercise_answers_must_stay_folded(body, found):
    assert kinds(page(body)) == found
