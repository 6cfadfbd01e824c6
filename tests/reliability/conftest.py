"""Fixtures of the reliability suites: a really exported tiny INT8 model, once per session.

The serve tests' helpers (``serve_helpers``: the real ``textclf serve`` as a child process) live in
tests/serve, which is on sys.path only when pytest has imported a test from there; put it there
explicitly so that this folder also runs on its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SERVE_TESTS = str(Path(__file__).resolve().parent.parent / "serve")
if SERVE_TESTS not in sys.path:
    sys.path.append(SERVE_TESTS)


@pytest.fixture(scope="session")
def reliability_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.reliability import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("reliability-model"))
