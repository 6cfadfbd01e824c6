"""Fixtures of the family matrix: one tiny encoder per family, built once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from support.families import build_encoder


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``encoder_dir(model_type)``: the tiny random encoder of that family and its tokenizer (built on first use)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    built: dict[str, Path] = {}

    def get(model_type: str) -> Path:
        if model_type not in built:
            built[model_type] = build_encoder(model_type, tmp_path_factory.mktemp("encoders") / model_type)
        return built[model_type]

    return get
