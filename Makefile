# lmops developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE ?= examples/tiny.yaml

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

.PHONY: install
install: $(STAMP) ## Create the virtualenv and install lmops with every extra

.PHONY: binaries
binaries: ## Build the pinned Kubernetes binaries, etcd and helm (cached per user, keyed by the pins)
	bash hack/build-binaries.sh

.PHONY: coredns
coredns: ## Build CoreDNS for the single-node cluster (cached)
	bash hack/build-coredns.sh

.PHONY: ray-operator
ray-operator: ## Build KubeRay's operator for the single-node cluster (cached)
	bash hack/build-ray-operator.sh

.PHONY: images
images: coredns ray-operator ## Build the node's images without Docker (root; cached per user, keyed by content)
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
test: ## Install and build everything, then run lint and every test tier (kind skips where no Docker runs)
	$(MAKE) -j4 $(STAMP) binaries images
	$(MAKE) lint
	$(BIN)/pytest tests

.PHONY: bench
bench: $(STAMP) binaries ## Run the benchmarks and write docs/benchmarks.md
	$(BIN)/python bench/run_all.py

.PHONY: kind-up
kind-up: ## Create a kind cluster with KubeRay and lmops, apply the tiny example and call it (needs Docker)
	bash hack/kind-up.sh
