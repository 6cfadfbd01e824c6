"""Fixtures of the reliability suites: a really exported tiny INT8 model, once per session.

The helpers these suites share with the serve tests are in tests/support (``support.reliability``,
``support.serving``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def reliability_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support.reliability import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("reliability-model"))
