# The two commands a new user types: `make demo` and `make test`.
# Both install into .venv first if needed (`make install` is that step alone).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.comptrust-installed

.PHONY: install demo test lint bench clean vllm-env llama-cpp

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found. Install Python 3.11 or run 'make PY=/path/to/python3.11'."; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,ray]'
	$(BIN)/pip install --quiet --no-deps $$(sed -n 's/^demo-model-package = "\(.*\)"/\1/p' pyproject.toml) \
	    $$(sed -n 's/^extra-model-packages = "\(.*\)"/\1/p' pyproject.toml)
	$(MAKE) llama-cpp
	touch $(STAMP)

# llama.cpp for GGUF (docs/compression.md): llama-cpp-python compiles it from source (~24 CPU-minutes,
# about 13 min on 2 idle cores) for this CPU's instruction sets without llama.cpp's AMX kernels, which
# crash on Xeon 6; the wheel is cached per CPU in ~/.cache/comptrust/llama-cpp-wheels, so a rebuild on
# the same machine is instant (tools/llama_cpp_build.py says why not pip's cache).  Its sdist
# also carries llama.cpp's converter, which the wheel lacks: extracted into the venv with the gguf-py
# it was written against.
LLAMA_CPP := $$(sed -n 's/^llama-cpp-package = "\(.*\)"/\1/p' pyproject.toml)
llama-cpp:
	$(BIN)/python tools/llama_cpp_build.py $(LLAMA_CPP)
	rm -rf $(VENV)/share/comptrust/llama.cpp $(VENV)/share/comptrust/sdist
	mkdir -p $(VENV)/share/comptrust/llama.cpp $(VENV)/share/comptrust/sdist
	$(BIN)/pip download --quiet --no-deps --no-binary :all: -d $(VENV)/share/comptrust/sdist $(LLAMA_CPP)
	tar -xzf $(VENV)/share/comptrust/sdist/llama_cpp_python-*.tar.gz -C $(VENV)/share/comptrust/llama.cpp \
	    --strip-components 3 --wildcards '*/vendor/llama.cpp/convert_hf_to_gguf.py' \
	    '*/vendor/llama.cpp/conversion' '*/vendor/llama.cpp/gguf-py'
	rm -rf $(VENV)/share/comptrust/sdist

demo: install
	$(BIN)/comptrust demo

# One pytest worker per core (pytest-xdist): the tests are independent (each has its own
# COMPTRUST_HOME), and many spend their time in single-threaded Python.
test: install
	$(BIN)/python -m pytest -q -n auto --durations=25

lint: install
	$(BIN)/ruff check src tests benchmarks tools

bench: install
	$(BIN)/python benchmarks/generation.py

# The vllm backend's own environment (CUDA machine; see requirements/vllm-env.txt for why it is separate).
vllm-env:
	test -x .venv-vllm/bin/python || $(PY) -m venv .venv-vllm
	.venv-vllm/bin/pip install --quiet -r requirements/vllm-env.txt
	.venv-vllm/bin/pip install --quiet --no-deps -e .
	@echo "vllm environment ready: .venv-vllm/bin/comptrust eval ARTIFACT --backend vllm ..."

clean:
	rm -rf $(VENV) .venv-vllm build *.egg-info src/*.egg-info
