# textclf: the commands the README and CI use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu" for a CPU torch.
PIP_ARGS ?=
APT_PACKAGES := nginx-light docker.io docker-compose docker-registry debootstrap curl ca-certificates

.PHONY: help system-deps setup lint test test-fast demo bench readme-tables image-gpu clean

help:
	@echo "make system-deps   install nginx, docker, debootstrap (apt, needs root)"
	@echo "make setup         create $(VENV) with pinned dependencies and the package"
	@echo "make test          ruff, mypy + the whole test suite (real nginx, gunicorn, torch, onnxruntime, dockerd)"
	@echo "make test-fast     the suite without the container build"
	@echo "make demo          fetch MiniLM, train on the demo data, serve, send sample requests, stop"
	@echo "make bench         run the benchmarks in bench/ and refresh the tables in bench/README.md"
	@echo "make readme-tables regenerate the README blocks: hyperparameters, bench/README.md results"
	@echo "make image-gpu     build the GPU (CUDA torch) image, run its train on this CPU, record size and torch;"
	@echo "                   downloads several GB from PyPI, so not part of make test or CI"

system-deps:
	@if command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	else echo "install $(APT_PACKAGES) with your package manager"; fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(PIP_ARGS) -r requirements-dev.txt $(if $(wildcard requirements-ops.txt),-r requirements-ops.txt)
	$(BIN)/pip install -q --no-deps -e .

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

test-fast: lint
	$(BIN)/pytest -m "not container"

demo:
	bash local_test/demo.sh

bench:
	bash bench/run_all.sh

readme-tables:
	$(BIN)/python scripts/readme_tables.py

# Not in `test`: PyPI's CUDA torch and its nvidia-* wheels are several GB. Writes bench/results/image-gpu.md
# and the gpu entry of bench/results/image-sizes.json.
image-gpu:
	$(BIN)/python scripts/docker_images.py --variant gpu --train --record

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
