# The two README commands: `make book` and `make test`. Both set themselves up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
MATHJAX_VERSION := 3.2.2
MATHJAX := _mathjax/_static/mathjax/tex-mml-chtml.js
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))
# pytest-xdist workers for unit tests and nbval (2 cores on the project's machines)
JOBS ?= 2
# The second nbval pass: numerical libraries forced onto their generic (non-AVX2, non-AVX-512) code paths, so that
# one machine proves the committed outputs do not depend on the host's SIMD dispatch (README, "Reproducible").
GENERIC_DISPATCH := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41 \
	NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
NBVAL := MOETHEORY_DEVICE=cpu $(VENV)/bin/pytest -q -n $(JOBS) --dist loadfile --nbval --nbval-current-env \
	--nbval-sanitize-with tests/sanitize.cfg
JB_FLAGS ?=
# Data for the real-data sections (README): the targets that run tests or chapters use ../shared/data when
# MOETHEORY_DATA is unset (or empty) and that directory exists.
ifeq ($(MOETHEORY_DATA),)
ifneq ($(wildcard ../shared/data/.),)
unit nbval-native nbval-generic execute results: export MOETHEORY_DATA := $(abspath ../shared/data)
endif
endif

.PHONY: book test install mathjax unit nbval nbval-native nbval-generic lint citation book-strict browser-test \
	execute results gpu-check clean update-mathjax pdf

book: install mathjax ## build the HTML book (renders the committed notebook outputs)
	touch book/intro.md  # its ledger summary reads results/: never reuse a stale incremental build of it
	$(VENV)/bin/jupyter-book build . $(JB_FLAGS)
	@echo "The book is at $(CURDIR)/_build/html/index.html"

TEX_PACKAGES = texlive-xetex latexmk texlive-fonts-recommended texlive-latex-extra tex-gyre fonts-freefont-otf
pdf: install ## the book as a PDF (xelatex; about 1 minute): _build/latex/book.pdf
	@command -v xelatex >/dev/null && command -v latexmk >/dev/null || { \
		echo "make pdf needs xelatex and latexmk: apt-get install $(TEX_PACKAGES)"; exit 2; }
	$(VENV)/bin/jupyter-book build . --builder pdflatex
	@echo "The PDF is at $(CURDIR)/_build/latex/book.pdf"

test: install mathjax lint citation unit nbval-native nbval-generic book-strict browser-test ## everything CI checks
	@echo "[$$(date +%T)] make test: all checks passed"

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (moetheory)" >/dev/null
	touch $@
	@echo "[$$(date +%T)] install done"

mathjax: ## the local MathJax 3 (committed in _mathjax/, so math renders offline with no network and no npm)
	@test -f $(MATHJAX) || (echo "$(MATHJAX) is missing: git checkout -- _mathjax (or make update-mathjax)" >&2; exit 1)

update-mathjax: ## replace the committed MathJax by version MATHJAX_VERSION from the npm registry (needs npm)
	rm -rf _mathjax && mkdir -p _mathjax/_static/mathjax _mathjax/tmp
	cd _mathjax/tmp && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null && tar xzf mathjax-$(MATHJAX_VERSION).tgz
	cp -r _mathjax/tmp/package/es5/. _mathjax/_static/mathjax/
	rm -rf _mathjax/tmp

lint: install
	$(VENV)/bin/ruff check moetheory tests benchmarks book _ext
	@echo "[$$(date +%T)] lint done"

citation: ## validate CITATION.cff (cffconvert pins an old jsonschema: its own small venv)
	test -x .venv-cff/bin/cffconvert || ($(PYTHON) -m venv .venv-cff && \
		.venv-cff/bin/pip install --quiet -r requirements-cff.txt)
	.venv-cff/bin/cffconvert --validate -i CITATION.cff

unit: install ## unit and property tests
	MOETHEORY_DEVICE=cpu $(VENV)/bin/pytest -q -n $(JOBS) tests
	@echo "[$$(date +%T)] unit tests done"

nbval: nbval-native nbval-generic ## strict nbval twice: the host's SIMD dispatch, then a generic one

nbval-native: install ## strict nbval: every chapter re-executed, every output compared
	$(NBVAL) $(NOTEBOOKS)
	@echo "[$$(date +%T)] nbval (native dispatch) done"

nbval-generic: install ## the same committed outputs under generic SIMD code paths
	$(GENERIC_DISPATCH) $(NBVAL) $(NOTEBOOKS)
	@echo "[$$(date +%T)] nbval (generic dispatch) done"

book-strict: install mathjax ## the book with warnings as errors
	touch book/intro.md
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "[$$(date +%T)] strict book build done"

# Every built page in headless Chromium, offline: MathJax errors, raw markup, alt text, references, widths at 1400 px
# and at a phone's 412 px (tests/browser/check_pages.py; _static/phone.css fits tables and equations to a phone).
# Without Chromium it prints a notice and passes; MOETHEORY_REQUIRE_BROWSER=1 (CI) makes a missing browser an error.
# Whole-page screenshots (in tiles) of a few pages at 1400 and 412 px go to _build/screenshots/.
browser-test: install ## the built book checked in headless Chromium (after book-strict)
	$(PY) tests/browser/check_pages.py --html _build/html --width 1400 --width 412 --screenshots _build/screenshots
	@echo "[$$(date +%T)] browser test done"

execute: install ## re-execute notebooks in place (NB=book/x.ipynb for one), as nbval will run them
	MOETHEORY_DEVICE=cpu $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=1200 --ExecutePreprocessor.kernel_name=python3 $(or $(NB),$(NOTEBOOKS))

results: install ## record quick-scale results of every registered paper into results/
	$(VENV)/bin/moetheory reproduce $$($(VENV)/bin/moetheory list | cut -d' ' -f1) --scale quick --device cpu \
		--out results --no-progress > /dev/null || [ $$? -eq 1 ]  # 1 (a claim fails) is a result; 2, 3 stop make

# On a GPU machine: every paper's presets on CUDA, timed and compared with the CPU records (benchmarks/gpu_check.py).
# Uses the venv when there is one, else python3 (a GPU machine's own torch); no install step (it may be offline).
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_CHECK_ARGS ?=
gpu-check: ## CUDA runs of every preset -> benchmarks/gpu-timings.json (GPU_CHECK_ARGS="--budget-s 300 --scales tiny quick")
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf _build .venv-cff
