# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NPM    := $(shell command -v npm 2>/dev/null)

.PHONY: demo test lint install interop clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# One stamp per install: the server alone (.installed), with the demo extra (.installed-demo),
# with the test and demo extras (.installed-test, which covers the other two).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,demo]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-demo

install: $(VENV)/.installed

# The Node packages of the openid-client interop test (tests/interop), again when the lock file
# changes; without npm nothing is installed and `make test` skips that test.
tests/interop/node_modules/.package-lock.json: tests/interop/package-lock.json
	$(NPM) ci --prefix tests/interop --no-audit --no-fund
	touch $@

interop: $(if $(NPM),tests/interop/node_modules/.package-lock.json)

#: `make demo PORT=9000`: the server on PORT, its two demo apps on PORT+1 and PORT+2.
PORT ?= 8000

demo: $(VENV)/.installed-demo
	$(BIN)/iam demo --port $(PORT)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check iam tests migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two workers, a test file stays on one (module fixtures); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: $(VENV)/.installed-test lint interop
	$(BIN)/pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

clean:
	rm -rf $(VENV) var .pytest_cache tests/interop/node_modules
