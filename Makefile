# `make demo` and `make test` each create .venv if it is missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean chromium notebook

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The checks of a kept codebase: lint and format (ruff), types (mypy), layering (import-linter).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint chromium
	$(BIN)/python -m pytest

# The browser test (tests/report/test_browser.py) renders the report pages in Debian's chromium,
# driven by Playwright, which never downloads a browser of its own. Installed when missing and
# apt-get can (as root); otherwise that test skips and says why. Nothing to do when it is there.
chromium:
	@test -x /usr/bin/chromium || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "make: could not install chromium; the browser test will skip"; \
	  else echo "make: no chromium and no apt-get as root; the browser test will skip"; fi; }

# JupyterLab on the notebooks (analysis of your runs: README "Notebooks"). Installs the
# `notebook` extra into .venv the first time.
notebook: $(STAMP)
	$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[notebook]'
	cd notebooks && ../$(BIN)/jupyter lab

demo: $(STAMP)
	$(BIN)/smsload demo

clean:
	rm -rf $(VENV) build *.egg-info
