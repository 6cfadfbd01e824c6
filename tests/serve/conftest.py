"""Fixtures for the serving tests: really exported tiny models, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.serving import MULTI_LABELS, SINGLE_LABELS, export_serving_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A single-label, 3-class INT8 model directory (export: PyTorch -> ONNX -> INT8 -> manifest)."""
    return export_serving_model(tmp_path_factory.mktemp("serve-models"), "single", SINGLE_LABELS)


@pytest.fixture(scope="session")
def pair_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multi-label model of text pairs (4 labels)."""
    return export_serving_model(
        tmp_path_factory.mktemp("serve-models-pair"), "pair", MULTI_LABELS, text_pair=True, multi_label=True
    )
