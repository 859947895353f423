"""The book as a reader sees it: every built page loaded in headless Chromium, offline, and checked.

Usage (``make browser-test`` runs it after the strict build)::

    python tests/browser/check_pages.py [--html _build/html] [--width 1400] [--screenshots _build/screenshots]

Each page of ``_build/html`` is copied into a scratch folder with ``layout.js`` injected (the rest of the site is
linked, not copied), loaded with ``chromium --headless --dump-dom`` at the given window width, and the DOM that
Chromium returns, after MathJax has typeset it, is checked by :func:`analyse_page` for

- ``mathjax``: a MathJax error (``mjx-merror``, ``data-mjx-error``), or math that was never typeset;
- ``markup``: literal MyST markup in the rendered text (``{prf:``, ``{glue``, a role such as ``{eq}`` or ``{cite:t}``
  left as text, a backtick or colon fence) outside code cells;
- ``raw-math``: ``$``, ``\\(``, ``\\[`` or a LaTeX command left as text outside math and code cells;
- ``alt``: an image with no alt text or with a file name or hash as its alt text;
- ``xref``: an unresolved cross-reference (``??``, a reference node without a link, an internal link whose page or
  anchor does not exist);
- ``wide``: a display equation or table wider than the content column at the window width, or whose content is
  wider than its own box (scrolled or cut inside it: the theme makes tables and equations such boxes), measured in
  the browser by ``layout.js``. ``make browser-test`` checks at 1400 px and at a phone's 412 px.

Defects that need a re-executed chapter to fix are listed in ``KNOWN_DEFECTS`` with the issue that tracks them:
reported, not failed on; one that is no longer found fails the run until it is taken off the list.

The page analysis is pure Python on an HTML string (``tests/test_browser_check.py`` runs it on small pages with no
browser). Where no Chromium is installed the script prints a notice and exits 0, unless ``--require`` (or
``MOETHEORY_REQUIRE_BROWSER=1``, as CI sets) makes a missing browser an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bs4 import BeautifulSoup, Comment

HERE = Path(__file__).resolve().parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--allow-file-access-from-files",
)
# Pages whose screenshots are kept: each whole page, in tiles of SHOT_TILE px from the top, at every checked width
SCREENSHOT_PAGES = ("book/intro.html", "book/chen2022.html", "book/wang2025.html", "book/ledger.html",
                    "book/references.html")
PHONE = 412  # px: screenshots are also taken at a phone's width
SHOT_TILE = {True: 1600, False: 900}  # px: a screenshot is cut into tiles this tall (a wide window, a phone)
SHOT_MAX = 64000  # px: the tallest window a screenshot is taken in (a taller page is cut there; the log says so)

# Defects the test finds today that need a re-executed chapter to fix, as (page, kind, section, the issue that tracks
# it): reported, not failed on. One that is no longer found fails the run, so that this list only shrinks. Empty
# since the claims tables render for readers (issue 17).
KNOWN_DEFECTS: tuple[tuple[str, str, str, str], ...] = ()

# MyST markup that should never reach a reader: a directive or role name in braces, or a fence
DIRECTIVE = re.compile(r"\{(?:prf|glue)[:}]|\{[a-z][\w-]*(?::[\w-]+)*\}`|```|^\s*:::", re.M)
# Bare roles that MyST would have consumed: {eq}, {numref}, {cite:t}, ... (with or without the backtick)
ROLE = re.compile(r"\{(?:eq|numref|ref|doc|cite(?::[a-z]+)?|term|download|math|prf:ref|glue:[a-z]+)\}")
RAW_MATH = re.compile(
    r"\$|\\\(|\\\)|\\\[|\\\]|\\(?:begin|end|frac|mathrm|mathbb|mathcal|sum|le|ge|sqrt|textsuperscript)\b"
)
REDIRECT = re.compile(r'<meta[^>]+http-equiv="refresh"', re.I)
HASHLIKE = re.compile(r"(?:^|/)[0-9a-f]{16,}(?:\.\w+)?$", re.I)
FILENAME = re.compile(r"\.(?:png|jpe?g|svg|gif|webp)$", re.I)
# Sphinx's text for an unresolved numbered reference, and sphinxcontrib-bibtex's for an unknown citation
UNRESOLVED_TEXT = re.compile(r"\?\?|\[\?\]")
# Where prose is not: code cell sources and outputs, MathJax's own nodes, scripts; the navigation is theme markup
NOT_PROSE = ("script", "style", "mjx-container", "mjx-assistive-mml", "noscript")
CODE_CELLS = ("div.cell_input", "div.cell_output", "div.highlight", "code", "pre.literal-block")
CHROME = ("nav", "header", "footer", "div.bd-sidebar-primary", "div.bd-sidebar-secondary", "div.bd-header-article",
          "div.prev-next-area", "#searchbox", "div.bd-search")


@dataclass(frozen=True)
class Finding:
    page: str
    kind: str  # mathjax, markup, raw-math, alt, xref, wide, load
    what: str

    def __str__(self) -> str:
        return f"{self.page}: [{self.kind}] {self.what}"


def _article(soup: BeautifulSoup):
    return soup.select_one("article.bd-article") or soup.select_one("main") or soup.body or soup


def _snippet(text: str, match: re.Match, width: int = 50) -> str:
    start, end = max(match.start() - width, 0), min(match.end() + width, len(text))
    return " ".join(text[start:end].split())


def _prose_text(article, drop_code: bool) -> str:
    """The article's text as a reader reads it, without math, scripts and (if drop_code) code cells."""
    soup = BeautifulSoup(str(article), "html.parser")
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for selector in NOT_PROSE + CHROME + (CODE_CELLS if drop_code else ()):
        for el in soup.select(selector):
            el.decompose()
    # a title attribute is not rendered text; a link's text is
    return soup.get_text(" ")


def _markup_blocks(article) -> list[str]:
    """Code boxes that are not code cells: a literal block in a markdown cell is where a failed fence lands."""
    blocks = []
    for el in article.select("div.highlight pre, pre.literal-block"):
        if el.find_parent("div", class_="cell_input") or el.find_parent("div", class_="cell_output"):
            continue
        blocks.append(el.get_text())
    return blocks


def check_markup(page: str, article) -> list[Finding]:
    findings = []
    text = _prose_text(article, drop_code=True)
    for pattern in (DIRECTIVE, ROLE):
        for m in pattern.finditer(text):
            findings.append(Finding(page, "markup", f"literal markup {m.group(0).strip()!r}: …{_snippet(text, m)}…"))
    for block in _markup_blocks(article):
        for m in DIRECTIVE.finditer(block):
            findings.append(Finding(page, "markup", f"markup in a code box: …{_snippet(block, m)}…"))
    for m in RAW_MATH.finditer(text):
        findings.append(Finding(page, "raw-math", f"raw math {m.group(0)!r}: …{_snippet(text, m)}…"))
    return findings


def check_mathjax(page: str, soup: BeautifulSoup, layout: dict | None) -> list[Finding]:
    findings = []
    for el in soup.select("mjx-merror, [data-mjx-error]"):
        error = el.get("data-mjx-error") or el.get_text(" ", strip=True)
        findings.append(Finding(page, "mathjax", f"MathJax error: {error[:120]}"))
    untypeset = [el for el in _article(soup).select("span.math, div.math") if not el.find("mjx-container")]
    if untypeset and layout is not None:  # only in a browser-rendered DOM: a static page has no MathJax output yet
        first = " ".join(untypeset[0].get_text().split())[:80]
        findings.append(Finding(page, "mathjax", f"{len(untypeset)} math nodes not typeset, first: {first!r}"))
    if layout is not None and layout.get("typeset") is False:
        findings.append(Finding(page, "mathjax", "MathJax failed to start"))
    return findings


def check_images(page: str, article) -> list[Finding]:
    findings = []
    for img in article.find_all("img"):
        alt = (img.get("alt") or "").strip()
        src = img.get("src", "")
        if img.get("role") == "presentation" or img.get("aria-hidden") == "true":
            continue
        if not alt:
            findings.append(Finding(page, "alt", f"image without alt text: {src}"))
        elif alt == src or FILENAME.search(alt) or HASHLIKE.search(alt):
            findings.append(Finding(page, "alt", f"image whose alt text is a file name: {alt[:90]}"))
    return findings


def check_xrefs(page: str, article, targets: dict[str, set[str]] | None = None) -> list[Finding]:
    """Unresolved references; with ``targets`` (page -> its ids), also internal links to a missing page or anchor."""
    findings = []
    text = _prose_text(article, drop_code=True)
    for m in UNRESOLVED_TEXT.finditer(text):
        findings.append(Finding(page, "xref", f"unresolved reference text {m.group(0)!r}: …{_snippet(text, m)}…"))
    for el in article.select("span.xref, code.xref, span.std-ref, span.std-numref"):
        if not el.find_parent("a"):
            findings.append(Finding(page, "xref", f"reference without a link: {el.get_text(strip=True)[:80]!r}"))
    if targets is None:
        return findings
    for a in article.find_all("a", href=True):
        href = a["href"]
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:")):
            continue
        base = page if not parts.path else os.path.normpath(os.path.join(os.path.dirname(page), unquote(parts.path)))
        if base not in targets:
            if base.endswith(".html"):
                findings.append(Finding(page, "xref", f"link to a missing page: {href}"))
            continue
        if parts.fragment and unquote(parts.fragment) not in targets[base]:
            findings.append(Finding(page, "xref", f"link to a missing anchor: {href}"))
    return findings


def check_layout(page: str, layout: dict | None) -> list[Finding]:
    if layout is None:
        return []
    return [
        Finding(page, "wide", f"{w['kind']} {w['what']!r} in #{w['section']}: {w['width']} px in a {w['column']} px "
                f"column at {layout['window']} px (past its left edge by {max(-w.get('left', 0), 0)} px, its right "
                f"edge or its own box by {max(w.get('right', 0), 0)} px)")
        for w in layout.get("wide", [])
    ]


def layout_report(soup: BeautifulSoup) -> dict | None:
    el = soup.find("script", id="moetheory-layout")
    return json.loads(el.string) if el is not None and el.string else None


def check_exercises(page: str, article) -> list[Finding]:
    """Answers stay folded: every solution is a dropdown, and every code cell of an Exercises section (its input
    and its output) sits inside one."""
    findings = []
    for sol in article.select(".solution"):
        if "dropdown" not in sol.get("class", []):
            findings.append(Finding(page, "exercise", f"solution shown without a click: {sol.get('id', '?')}"))
    for section in article.select("section#exercises"):
        for cell in section.select("div.cell"):
            if not any("dropdown" in p.get("class", []) for p in cell.find_parents(class_="solution")):
                code = cell.get_text(" ", strip=True)[:60]
                what = f"exercise code or output outside a folded solution: {code!r}"
                findings.append(Finding(page, "exercise", what))
    return findings


def analyse_page(
    page: str, html: str, targets: dict[str, set[str]] | None = None, rendered: bool = False
) -> list[Finding]:
    """Every check on one page's HTML (a DOM dumped by Chromium when ``rendered``, else any HTML string)."""
    soup = BeautifulSoup(html, "html.parser")
    layout = layout_report(soup)
    if rendered and layout is None:
        return [Finding(page, "load", "no layout report: the page did not finish loading within the time budget")]
    article = _article(soup)
    return (check_mathjax(page, soup, layout) + check_markup(page, article) + check_images(page, article)
            + check_xrefs(page, article, targets) + check_exercises(page, article) + check_layout(page, layout))


# ---- the browser side -------------------------------------------------------------------------------------------


def find_browser() -> str | None:
    wanted = os.environ.get("CHROMIUM")
    if wanted:
        return shutil.which(wanted) or (wanted if Path(wanted).is_file() else None)
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def pages_of(html_root: Path) -> list[str]:
    """The site's pages, without redirects (jupyter-book's index.html only forwards to the root chapter)."""
    pages = []
    for path in sorted(html_root.rglob("*.html")):
        rel = path.relative_to(html_root)
        if rel.parts[0].startswith("_") or REDIRECT.search(path.read_text(encoding="utf-8", errors="replace")[:2000]):
            continue
        pages.append(str(rel))
    return pages


def page_ids(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html)) | set(re.findall(r'\bname="([^"]+)"', html))


def scratch_site(html_root: Path, pages: list[str], scratch: Path) -> None:
    """A copy of the site whose pages carry layout.js; everything else is a link into the real build."""
    script = "<script>\n" + (HERE / "layout.js").read_text() + "\n</script>\n"
    for entry in html_root.iterdir():
        if not any(p.split("/")[0] == entry.name for p in pages):
            (scratch / entry.name).symlink_to(entry.resolve())
    for page in pages:
        source = (html_root / page).read_text(encoding="utf-8")
        target = scratch / page
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.replace("</body>", script + "</body>", 1), encoding="utf-8")
    for folder in {Path(p).parent for p in pages if "/" in p}:  # sibling non-html files of nested pages
        for entry in (html_root / folder).iterdir():
            if not entry.name.endswith(".html") and not (scratch / folder / entry.name).exists():
                (scratch / folder / entry.name).symlink_to(entry.resolve())


def page_url(scratch: Path, page: str, width: int) -> str:
    """The scratch page, told the width to emulate (headless Chromium will not make a window narrower than 500 px)."""
    return f"{(scratch / page).as_uri()}?width={width}"


def run_browser(browser: str, url: str, width: int, height: int, budget_ms: int, extra: list[str],
                timeout_s: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="moetheory-chromium-") as profile:
        cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--virtual-time-budget={budget_ms}", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)


def check_site(browser: str, html_root: Path, widths: list[int], report_widths: list[int], budget_ms: int,
               screenshots: Path | None, only: list[str] | None = None,
               keep_dom: Path | None = None) -> tuple[list[Finding], list[Finding], dict]:
    """Every check at ``widths`` (findings), the width checks alone at ``report_widths`` (notes, not failures)."""
    pages = [p for p in pages_of(html_root) if not only or p in only]
    targets = {p: page_ids((html_root / p).read_text(encoding="utf-8")) for p in pages_of(html_root)}
    findings: list[Finding] = []
    notes: list[Finding] = []
    info: dict = {"pages": len(pages), "checked": pages, "code_blocks": 0, "code_blocks_scrolling": 0}
    with tempfile.TemporaryDirectory(prefix="moetheory-pages-") as tmp:
        scratch = Path(tmp)
        scratch_site(html_root, pages, scratch)
        for width in widths + report_widths:
            for page in pages:
                started = time.monotonic()
                proc = run_browser(browser, page_url(scratch, page, width), width, 1000, budget_ms, ["--dump-dom"],
                                   timeout_s=120)
                if proc.returncode != 0 or "<html" not in proc.stdout:
                    findings.append(Finding(page, "load", f"chromium exited {proc.returncode}: {proc.stderr[-300:]}"))
                    continue
                if keep_dom is not None:
                    out = keep_dom / f"{width}" / page
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(proc.stdout, encoding="utf-8")
                page_findings = analyse_page(page, proc.stdout, targets, rendered=True)
                if width in widths:
                    findings += page_findings
                    layout = layout_report(BeautifulSoup(proc.stdout, "html.parser")) or {}
                    info["code_blocks"] += layout.get("code_blocks", 0)
                    info["code_blocks_scrolling"] += layout.get("code_blocks_scrolling", 0)
                else:
                    notes += [f for f in page_findings if f.kind == "wide"]
                print(f"  {width} px {page}: {len(page_findings)} findings ({time.monotonic() - started:.1f} s)",
                      flush=True)
        if screenshots is not None:
            shot_widths = sorted(set(widths + report_widths + [PHONE]))
            info["screenshots"] = take_screenshots(browser, scratch, pages, shot_widths, budget_ms, screenshots)
    return findings, notes, info


def take_screenshots(browser: str, scratch: Path, pages: list[str], widths: list[int], budget_ms: int,
                     folder: Path) -> int:
    """Whole-page screenshots of :data:`SCREENSHOT_PAGES` at each width: the page's height is measured first (the
    layout report), the page is shot in one window that tall (at most :data:`SHOT_MAX`), and the shot is cut into
    tiles of :data:`SHOT_TILE` px, ``<page>-<width>-<tile>.png``, small enough to look at one by one."""
    from PIL import Image  # matplotlib's dependency

    folder.mkdir(parents=True, exist_ok=True)
    taken = 0
    for width in widths:
        tile = SHOT_TILE[width > 800]
        for page in (p for p in SCREENSHOT_PAGES if p in pages):
            url = page_url(scratch, page, width)
            proc = run_browser(browser, url, width, tile, budget_ms, ["--dump-dom"], 120)
            height = (layout_report(BeautifulSoup(proc.stdout, "html.parser")) or {}).get("height") or tile
            if height > SHOT_MAX:
                print(f"  screenshots: {page} at {width} px is {height} px tall; shot down to {SHOT_MAX} px")
            stem, whole = page.replace("/", "-").removesuffix(".html"), folder / "whole.png"
            run_browser(browser, url, width, min(height, SHOT_MAX), budget_ms, [f"--screenshot={whole}"], 300)
            if not whole.is_file():
                continue
            with Image.open(whole) as shot:
                for i, top in enumerate(range(0, shot.height, tile)):
                    shot.crop((0, top, shot.width, min(top + tile, shot.height))).save(
                        folder / f"{stem}-{width}-{i + 1:02d}.png", optimize=True)
                    taken += 1
            whole.unlink()
    return taken


def split_known(findings: list[Finding], pages: list[str]) -> tuple[list[Finding], list[str], list[str]]:
    """(new findings, known defects seen, known defects of the checked pages no longer seen)."""
    new, seen = [], set()
    for f in findings:
        known = next((k for k in KNOWN_DEFECTS if (f.page, f.kind) == k[:2] and f"in #{k[2]}:" in f.what), None)
        if known is None:
            new.append(f)
        else:
            seen.add(known)
    known_seen = [f"{k[0]}: [{k[1]}] #{k[2]}: {k[3]}" for k in KNOWN_DEFECTS if k in seen]
    gone = [f"{k[0]}: [{k[1]}] #{k[2]}" for k in KNOWN_DEFECTS if k not in seen and k[0] in pages]
    return new, known_seen, gone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"), help="the built book")
    parser.add_argument("--width", type=int, action="append", help="window widths in px (repeatable; default 1400)")
    parser.add_argument("--report-width", type=int, action="append", default=[],
                        help="also measure equation and table widths at this width, as notes that do not fail")
    parser.add_argument("--budget-ms", type=int, default=10000, help="virtual time for each page to load and typeset")
    parser.add_argument("--screenshots", default="_build/screenshots", help="folder for screenshots; '' for none")
    parser.add_argument("--page", action="append", help="check only this page (relative to --html; repeatable)")
    parser.add_argument("--keep-dom", type=Path, help="write each rendered DOM under this folder")
    parser.add_argument("--require", action="store_true", default=os.environ.get("MOETHEORY_REQUIRE_BROWSER") == "1",
                        help="fail when no Chromium is installed (CI)")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        notice = ("browser-test: no Chromium found (tried $CHROMIUM, " + ", ".join(BROWSERS) + "); the rendered "
                  "pages were NOT checked. Install the Debian package `chromium` to run this test.")
        print(notice, file=sys.stderr)
        return 1 if args.require else 0
    if not (args.html / "index.html").is_file():
        print(f"browser-test: {args.html}/index.html is missing: build the book first (make book)", file=sys.stderr)
        return 1
    widths = args.width or [1400]
    screenshots = Path(args.screenshots) if args.screenshots else None
    print(f"browser-test: {browser}, widths {widths}, {args.html}", flush=True)
    started = time.monotonic()
    findings, notes, info = check_site(browser, args.html, widths, args.report_width, args.budget_ms, screenshots,
                                       args.page, args.keep_dom)
    findings, known, gone = split_known(findings, info["checked"])
    for note in notes:
        print(f"note (not a failure): {note}")
    for defect in known:
        print(f"known defect (not a failure): {defect}")
    for defect in gone:
        print(f"known defect no longer found: {defect}: remove it from KNOWN_DEFECTS in {Path(__file__).name}")
    for finding in findings:
        print(finding)
    print(f"browser-test: {info['pages']} pages, {len(findings)} findings, {len(known)} known defects, "
          f"{info['code_blocks_scrolling']} of "
          f"{info['code_blocks']} code blocks scroll sideways (not a failure), {time.monotonic() - started:.0f} s"
          + (f"; {info.get('screenshots', 0)} screenshots in {screenshots}" if screenshots else ""))
    return 1 if findings or gone else 0


if __name__ == "__main__":
    sys.exit(main())
