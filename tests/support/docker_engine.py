"""Docker engine helpers for the container tests (the fixtures are in tests/container/conftest.py):
scripts/docker_images.py's engine, base image and build context, with the tests' image tags.

See scripts/docker_images.py for how and why, and for the environment knobs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from docker_images import (  # scripts/ is on pytest's pythonpath
    BASE_DESCRIPTION,
    BASE_IMAGE,
    CACHE_DIR,
    REPO_ROOT,
    RESULTS_FILE,
    Docker,
    EngineError,
    base_image,
    build_context,
    engine,
    record_images,
    sagemaker_tree,
    system_env,
)

FULL_IMAGE = "textclf:test"
SERVE_IMAGE = "textclf:test-serve"

__all__ = [
    "BASE_DESCRIPTION",
    "BASE_IMAGE",
    "CACHE_DIR",
    "FULL_IMAGE",
    "REPO_ROOT",
    "RESULTS_FILE",
    "SERVE_IMAGE",
    "Docker",
    "EngineError",
    "base_image",
    "build_context",
    "engine",
    "engine_failures_fail",
    "record_images",
    "sagemaker_tree",
    "system_env",
]


@contextlib.contextmanager
def engine_failures_fail() -> Iterator[None]:
    """An engine, base image or build failure fails the test with its message (no traceback)."""
    try:
        yield
    except EngineError as exc:
        pytest.fail(str(exc), pytrace=False)
