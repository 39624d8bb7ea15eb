# Everything installs into .venv from requirements.lock (the same pins the Docker image and CI use).
# `make run` and `make test` bootstrap it on a fresh machine; both are idempotent.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/penguins.yaml
TARGET ?= vertex
UV_VERSION := 0.13.9
# checkov's dependency tree clashes with requirements.lock, so lint tools get their own venv.
LINT_VENV := .venv-lint
LINT_BIN := $(LINT_VENV)/bin
LINT_STAMP := $(LINT_VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast test-image image compile lint format lock bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv from requirements.lock

$(LINT_STAMP): requirements-lint.lock | $(STAMP)
	test -x $(LINT_BIN)/python || $(PYTHON) -m venv $(LINT_VENV)
	$(BIN)/uv pip sync --python $(LINT_BIN)/python requirements-lint.lock
	touch $(LINT_STAMP)

run: $(STAMP) ## run the training pipeline locally (CONFIG=configs/penguins.yaml)
	$(BIN)/mlops run --config $(CONFIG)

# Two pytest workers (pytest-xdist), a test file per worker at a time: most tests wait on one
# single-threaded process (a step, TFT's Beam job, a TensorFlow import), so two cores run two.
test: $(STAMP) ## run the test suite (unit, component, pipeline, Vertex contract; the image: make test-image)
	$(BIN)/pytest -q -m "not image" -n 2 --dist loadfile

test-fast: $(STAMP) ## unit and contract tests only (skips whole-pipeline runs)
	$(BIN)/pytest -q -m "not slow and not image" -n 2 --dist loadfile

image: ## build the image (Docker, else buildah + a local Debian base; installs them as root)
	scripts/image.sh build

test-image: image $(STAMP) ## build the image, then serve a model and run a pipeline step in it
	$(BIN)/pytest -q -m image

compile: $(STAMP) ## compile the pipeline (CONFIG=..., TARGET=vertex|local)
	$(BIN)/mlops compile --config $(CONFIG) --target $(TARGET)

lint: $(STAMP) $(LINT_STAMP) ## ruff lint and format check, hadolint on the Dockerfile, checkov on infra/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
# checkov once per environment: resources behind count = 0 (CMEK, VPC) are invisible to it otherwise.
	for vars in infra/environments/*.tfvars; do \
		echo "checkov: infra with $$vars"; \
		$(LINT_BIN)/checkov -d infra --framework terraform --quiet --compact --skip-download --var-file $$vars || exit 1; \
	done

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: $(STAMP) ## re-resolve requirements*.in into their lock files
	$(BIN)/uv pip compile requirements.in --python-version 3.11 -o requirements.lock --custom-compile-command "make lock"
	$(BIN)/uv pip compile requirements-gpu.in --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements-gpu.lock --custom-compile-command "make lock"
	$(BIN)/uv pip compile requirements-lint.in --python-version 3.11 -o requirements-lint.lock --custom-compile-command "make lock"

bench: $(STAMP) ## time the pipeline (with/without KFP), serving, batch prediction, ingest+stats
	$(BIN)/python benchmarks/pipeline_timing.py
	$(BIN)/python benchmarks/serving_latency.py
	$(BIN)/python benchmarks/batch_throughput.py
	$(BIN)/python benchmarks/ingest_stats.py
	$(BIN)/python benchmarks/evaluation_throughput.py

clean: ## remove local runs, registry and compiled specs (keeps .venv)
	rm -rf .mlops
