# pgvector-migration: every target installs what it needs into .venv first. `make demo` (and
# `make dev`, `make stop`) need only the migration and the local model; `make install`, `make
# test` and `make lint` add the test tools, pgcrypto for the embedded server and LibreOffice.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= .demo
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed
# Where torch's CPU build comes from on Linux x86_64 when pip's own indexes have none (see
# scripts/install_torch_cpu.sh); empty: PyPI's CUDA build.
export TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PIP := $(BIN)/python -m pip install --quiet
# A real Open WebUI 0.12.4, outside the repository (fidelity/install_openwebui.sh): `make test`
# runs the model switch against it (pgvector_migration_tests/test_switch_with_openwebui.py)
# and installs it first (about 2.5 min with a warm pip cache, 7 min without), unless
# PGVECTOR_MIGRATION_SKIP_OPENWEBUI=1 (the test is then skipped, not failed).
OPENWEBUI_VENV ?= $(HOME)/.cache/pgvector-migration/openwebui-0.12.4
OPENWEBUI_STAMP := $(OPENWEBUI_VENV)/.openwebui-0.12.4-installed
ifeq ($(PGVECTOR_MIGRATION_SKIP_OPENWEBUI),1)
TEST_OPENWEBUI :=
else
TEST_OPENWEBUI := $(OPENWEBUI_STAMP)
endif

.PHONY: install demo dev test lint stop clean

$(DEMO_STAMP): pyproject.toml scripts/install_torch_cpu.sh
	@echo "== creating $(VENV) with $(PYTHON) and installing what the demo needs" \
		"(the migration, Dagster and the local model: torch, sentence-transformers; about 3 GB," \
		"a few minutes the first time)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip
	@scripts/install_torch_cpu.sh $(BIN)/python
	@$(PIP) -e '.[local]'
	@$(BIN)/python -c 'import torch; print("== installed torch", torch.__version__, \
		"(CUDA build)" if torch.version.cuda else "(CPU build)")'
	@touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP) scripts/build_pgcrypto.sh scripts/install_system_packages.sh
	@echo "== installing the test and development tools (pytest, ruff, moto, chromadb)"
	@$(PIP) -e '.[local,dev]'
	@echo "== building pgcrypto for the embedded PostgreSQL (the PGVECTOR_PGCRYPTO tests)"
	@scripts/build_pgcrypto.sh $(BIN)/python
	@echo "== checking LibreOffice and libmagic (for .doc and .ppt uploads)"
	@scripts/install_system_packages.sh
	@touch $(STAMP)

install: $(STAMP)

## Migrate the bundled sample Open WebUI data into the embedded PostgreSQL+pgvector.
demo: $(DEMO_STAMP)
	@echo "== migrating the sample Open WebUI data under $(DEMO_DIR)"
	PGVECTOR_MIGRATION_DEMO_DIR=$(DEMO_DIR) $(BIN)/python -m pgvector_migration.demo run

## Open the Dagster UI (webserver + all daemons) on the demo data.
dev: $(DEMO_STAMP)
	eval "$$($(BIN)/python -m pgvector_migration.demo env --dir $(DEMO_DIR))" && \
	$(BIN)/dagster dev -w workspace.yaml

$(OPENWEBUI_STAMP):
	@echo "== installing Open WebUI 0.12.4 into $(OPENWEBUI_VENV) (the model switch's end-to-end test)"
	OPENWEBUI_VENV=$(OPENWEBUI_VENV) fidelity/install_openwebui.sh

## The test suite (real PostgreSQL+pgvector, SQLite and PostgreSQL sources, loopback HTTP, a
## real Open WebUI server for the model switch).
test: $(STAMP) $(TEST_OPENWEBUI)
	OPENWEBUI_VENV=$(OPENWEBUI_VENV) $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

## Stop the embedded PostgreSQL the demo left running.
stop: $(DEMO_STAMP)
	$(BIN)/python -m pgvector_migration.demo stop --dir $(DEMO_DIR)

clean: stop
	rm -rf $(DEMO_DIR)

## Benchmark in the realistic regime (not part of `make test`; bench/realistic.py): 1536
## dimensions, a 5.1M tokens/min provider with latency growing with the batch, a deployment
## of ~1,200 real documents uploaded once through a real Open WebUI 0.12.4 (cached under
## ~/.cache/pgvector-migration/bench-deployment-*). ARGS="--quick" for a smoke run.
.PHONY: bench bench-synthetic
bench: $(STAMP)
	OPENWEBUI_VENV=$(OPENWEBUI_VENV) fidelity/install_openwebui.sh
	fidelity/install_corpus_tools.sh
	$(BIN)/python -m bench.realistic --openwebui-venv $(OPENWEBUI_VENV) $(ARGS)

## The synthetic throughput benchmark (256 dimensions, generated files): bench/run_bench.py.
bench-synthetic: $(STAMP)
	$(BIN)/python -m bench.run_bench $(ARGS)

## Kill/fault scenarios at scale (not part of `make test`): kills, faults, rows vs a clean run.
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m chaos.run_chaos $(ARGS)

## Fidelity on real documents (not part of `make test`): a real Open WebUI 0.12.4 (installed
## outside the repository, OPENWEBUI_VENV) uploads a corpus made here; our migration is
## compared with its rows. ARGS are run_fidelity.py's (e.g. ARGS='--our-args ""').
FIDELITY_DIR ?= .fidelity
.PHONY: fidelity
fidelity: $(STAMP)
	OPENWEBUI_VENV=$(OPENWEBUI_VENV) fidelity/install_openwebui.sh
	fidelity/install_corpus_tools.sh
	$(OPENWEBUI_VENV)/bin/python fidelity/build_corpus.py --out $(FIDELITY_DIR)/corpus
	$(BIN)/python -m fidelity.run_fidelity --corpus $(FIDELITY_DIR)/corpus \
		--work $(FIDELITY_DIR)/run --openwebui-venv $(OPENWEBUI_VENV) $(ARGS)
