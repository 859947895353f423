// Injected by check_pages.py into a scratch copy of every page: waits for MathJax to typeset, measures what a reader
// at this window width sees, and writes the result as JSON into <script id="moetheory-layout"> for --dump-dom.
(function () {
  "use strict";
  // ?width=N: lay the page out N px wide (headless Chromium keeps its window at least 500 px wide; below the
  // theme's 576 px breakpoint the layout is the same, so a narrower <html> stands in for a phone's viewport)
  var want = /[?&]width=(\d+)/.exec(location.search);
  if (want && window.innerWidth > +want[1]) {
    document.documentElement.style.width = want[1] + "px";
  }
  function describe(el) {
    var math = el.closest("div.math");
    if (math) {
      var eqno = math.querySelector(".eqno");
      var name = math.id || (el.closest(".cell_output") ? "math in a cell output" : "unlabelled display math");
      return name + (eqno ? " " + eqno.textContent.replace("#", "").trim() : "");
    }
    if (el.tagName === "MJX-CONTAINER") return el.closest(".cell_output") ? "math in a cell output" : "display math";
    var text = (el.textContent || "").replace(/\s+/g, " ").trim();
    return text.slice(0, 80);
  }
  function section(el) {
    var s = el.closest("section[id]");
    return s ? s.id : "";
  }
  function measure(typeset) {
    var column = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
    var col = column.getBoundingClientRect();
    var report = {window: want ? Math.min(window.innerWidth, +want[1]) : window.innerWidth, column: Math.round(col.width), typeset: typeset, wide: [],
                  code_blocks: 0, code_blocks_scrolling: 0, height: document.documentElement.scrollHeight};
    // a box past the column's edges, or content wider than its own box (the theme may make a table or an equation
    // a scrolling or clipping block: the box then fits the column while its content scrolls or is cut inside it)
    function check(kind, el, box, scrollers) {
      var r = box.getBoundingClientRect();
      if (r.width === 0) return;  // hidden (a closed dropdown): measured when opened, not here
      var cut = scrollers.reduce(function (most, s) {  // content wider than its own box: scrolled or cut
        return s ? Math.max(most, s.scrollWidth - s.clientWidth) : most;
      }, 0);
      var right = Math.max(r.right - col.right, cut);
      if (r.left < col.left - 1 || right > 1) {
        report.wide.push({kind: kind, what: describe(el), section: section(el), width: Math.round(r.width + cut),
                          column: Math.round(col.width), left: Math.round(r.left - col.left),
                          right: Math.round(right)});
      }
    }
    column.querySelectorAll('mjx-container[display="true"]').forEach(function (el) {
      check("equation", el, el.querySelector("mjx-math") || el, [el, el.closest("div.math")]);
    });
    column.querySelectorAll("table").forEach(function (el) { check("table", el, el, [el]); });
    column.querySelectorAll("div.highlight pre").forEach(function (el) {
      if (el.getBoundingClientRect().width === 0) return;
      report.code_blocks += 1;
      if (el.scrollWidth > el.clientWidth + 1) report.code_blocks_scrolling += 1;
    });
    var out = document.createElement("script");
    out.type = "application/json";
    out.id = "moetheory-layout";
    out.textContent = JSON.stringify(report);
    document.body.appendChild(out);
  }
  function start() {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) {
      mj.startup.promise.then(function () { measure(true); }, function () { measure(false); });
    } else if (document.querySelector('script[src*="mathjax"]') && !(mj && mj.version)) {
      setTimeout(start, 50);  // MathJax is deferred: wait for it to set itself up (virtual time, so this is cheap)
    } else {
      measure(null);  // a page without math
    }
  }
  window.addEventListener("load", start);
})();
