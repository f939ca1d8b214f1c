# lmops developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The vLLM engine's own environment (its torch pin conflicts with the transformers engine's): see hack/.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
EXAMPLE ?= examples/tiny.yaml

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# A first run spends minutes here; each step says what it does, so a newcomer knows it is working.
$(STAMP): pyproject.toml
	@echo "[$$(date +%T)] Creating the virtualenv $(VENV) with $(PYTHON) ..."
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@echo "[$$(date +%T)] Installing lmops and its dependencies into $(VENV) (torch, transformers, Ray, kopf, ...;" \
		"about 2 GB, several minutes the first time) ..."
	@$(BIN)/pip install --quiet -e '.[test,bench]'
	@touch $@
	@echo "[$$(date +%T)] Installed."

.PHONY: install
install: $(STAMP) ## Create the virtualenv and install lmops with every extra

$(VLLM_STAMP): pyproject.toml hack/vllm-venv.sh
	PYTHON=$(PYTHON) bash hack/vllm-venv.sh $(VLLM_VENV)

.PHONY: install-vllm
install-vllm: $(VLLM_STAMP) ## Create the vLLM (CPU) virtualenv the vLLM test tier runs in (~8 min, ~6 GB)

.PHONY: binaries
binaries: ## Build the pinned Kubernetes binaries, etcd, helm and actionlint (cached per user, keyed by the pins)
	bash hack/build-binaries.sh
	bash hack/build-actionlint.sh

.PHONY: coredns
coredns: ## Build CoreDNS for the single-node cluster (cached)
	bash hack/build-coredns.sh

.PHONY: ray-operator
ray-operator: ## Build KubeRay's operator for the single-node cluster (cached)
	bash hack/build-ray-operator.sh

.PHONY: node-packages
node-packages: ## Install the cluster's Debian packages where missing (root on Debian; elsewhere says what is missing)
	bash hack/node/packages.sh

.PHONY: images
images: node-packages coredns ray-operator ## Build the node's images without Docker (root; cached per user, keyed by content)
	bash hack/images/all.sh

.PHONY: cluster-up
cluster-up: binaries images ## Start a single-node Kubernetes here with KubeRay (root, Linux, no Docker needed)
	bash hack/node/up.sh

.PHONY: cluster-down
cluster-down: ## Stop what `make cluster-up` started and remove it
	bash hack/node/down.sh

.PHONY: up
up: $(STAMP) ## Local mode: serve the tiny example LanguageModel on a local Ray and call it once
	$(BIN)/lmops up $(EXAMPLE) --smoke

.PHONY: down
down: $(STAMP) ## Stop what `make up` started
	$(BIN)/lmops down

.PHONY: fresh-home-smoke
fresh-home-smoke: $(STAMP) ## `make up` + `make down` with a new empty HOME and no caller environment (run by `make test`)
	bash hack/fresh-home-smoke.sh

.PHONY: crds
crds: $(STAMP) ## Regenerate crds/ and the chart's copy from the pydantic models
	$(BIN)/lmops crds

.PHONY: lint
lint: $(STAMP) ## ruff, mypy and the CRD drift check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lmops crds --check

.PHONY: test
test: ## Install and build everything, then lint, the fresh-home `make up` smoke and every tier (kind skips without Docker)
	$(MAKE) -j4 $(STAMP) binaries images $(VLLM_STAMP)
	$(MAKE) lint
	$(MAKE) fresh-home-smoke
	$(BIN)/pytest tests --ignore=tests/vllm
	$(MAKE) test-vllm

.PHONY: test-vllm
# The parity module runs again on vLLM (engine auto picks it there), but for its chunk-per-token check: vLLM's
# frontend merges tokens a slow reader has not taken yet (tests/vllm checks the chunk window instead).
test-vllm: $(VLLM_STAMP) ## The vLLM tier in its own venv: the OpenAI parity tests and tests/vllm on the vLLM engine
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/pytest tests/vllm tests/runtime/test_openai_parity.py \
	  --deselect tests/runtime/test_openai_parity.py::test_stream_interval_merges_tokens_into_fewer_chunks_with_the_same_text

.PHONY: bench
bench: $(STAMP) binaries $(VLLM_STAMP) ## Run the benchmarks and write docs/benchmarks.md
	$(BIN)/python bench/run_all.py

.PHONY: kind-up
kind-up: ## Create a kind cluster with KubeRay and lmops, apply the tiny example and call it (needs Docker)
	bash hack/kind-up.sh
