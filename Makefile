# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test test-fast lint format bench kuberay container-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

# serve_config.yaml on a private one-node Ray in Ray's high-throughput serving mode
# (HAProxy ingress), on 127.0.0.1:8000: `imagetagger serve` (imagetagger/cli/serve.py;
# its environment: imagetagger/serving/serving_env.py). `--host 0.0.0.0` opens the port.
run: $(STAMP)
	$(BIN)/imagetagger serve --config serve_config.yaml

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Installs the Debian packages the browser and hierarchy tests need when they are missing
# (as root), or says the one command to run (scripts/test_system_packages.sh).
test: lint
	scripts/test_system_packages.sh
	$(BIN)/python -m pytest -q

# The library's tests in under a minute: no Ray, no Serve, no real model (markers in
# tests/conftest.py, from the folders); four workers, as most of their time is spent
# waiting on loopback sockets and timers. `make test` runs everything, one at a time.
test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 4 -m "not service and not ray and not models"

# The service vs the one-process LiteRT server, the naive TensorFlow server and Ray's floor
# (benchmarks/README.md); `make bench BENCH_ARGS=--quick` for a short run.
bench: $(TEST_STAMP)
	$(BIN)/python -m benchmarks.bench_service $(BENCH_ARGS)

# Regenerate spec.serveConfigV2 of configs/kuberay/rayservice.yaml from configs/serve_gpu.yaml.
kuberay: $(STAMP)
	$(BIN)/python scripts/make_kuberay.py

# Build the image (podman or docker) and check the running container: docs/DEPLOY.md.
# Minutes and GBs, so not part of `make test`.
container-check:
	nice -n 19 scripts/container_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
