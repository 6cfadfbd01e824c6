# textclf: the commands the README and CI use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu" for the CPU torch
# that requirements-dev.txt pins (torch==2.13.0+cpu; PyPI has only the CUDA build).
PIP_ARGS ?=
# Arguments for scripts/lock.py, e.g. LOCK_ARGS=--upgrade (newest within pyproject.toml's ranges), LOCK_ARGS="-P onnx".
LOCK_ARGS ?=
APT_PACKAGES := nginx-light docker.io docker-compose docker-registry debootstrap curl ca-certificates
# only for bench/: the C load generator and the JVM of the Hugging Face toolkit's model server (the peer)
BENCH_APT_PACKAGES := wrk default-jre-headless

.PHONY: help system-deps bench-deps setup lock lint test test-fast demo bench readme-tables image-gpu clean

help:
	@echo "make system-deps   install nginx, docker, debootstrap (apt, needs root)"
	@echo "make setup         create $(VENV) from requirements-dev.txt (every package pinned, hash-checked) + the package"
	@echo "make lock          resolve pyproject.toml's extras into the locks requirements*.txt (scripts/lock.py)"
	@echo "make test          ruff, mypy + the whole test suite (real nginx, gunicorn, torch, onnxruntime, dockerd)"
	@echo "make test-fast     the suite without the container build"
	@echo "make demo          fetch MiniLM, train on the demo data, serve, send sample requests, stop"
	@echo "make bench-deps    what the benchmarks need besides the venv: wrk, a JRE and the HF toolkit's venv (the peer)"
	@echo "make bench         run the benchmarks in bench/ and refresh the tables in bench/README.md"
	@echo "make readme-tables regenerate the README blocks: hyperparameters, bench/README.md results"
	@echo "make image-gpu     build the GPU (CUDA torch) image, run its train on this CPU, record size and torch;"
	@echo "                   downloads several GB from PyPI, so not part of make test or CI"

system-deps:
	@if command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	else echo "install $(APT_PACKAGES) with your package manager"; fi

bench-deps:
	@if command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_APT_PACKAGES); \
	else echo "install $(BENCH_APT_PACKAGES) with your package manager"; fi
	bash bench/peers/install-hf-peer.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The venv is exactly the dev lock: every package pinned and hash-checked (pip-sync also removes what the
# lock no longer holds), then the package itself, built by the locked setuptools.
setup: $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes $(PIP_ARGS) -r requirements-dev.txt
	$(BIN)/pip-sync -q $(if $(PIP_ARGS),--pip-args "$(PIP_ARGS)") requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .

# Rewrites requirements*.txt from pyproject.toml (needs PyPI). `scripts/lock.py --check`, run by the tests, says
# when they are stale.
lock:
	$(BIN)/python scripts/lock.py $(LOCK_ARGS)

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
