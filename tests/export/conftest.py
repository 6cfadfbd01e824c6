"""Session fixtures: tiny fine-tuned classifiers (see tests/support/tiny_classifiers.py) and their exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.tiny_classifiers import Example, build_model, export_tiny, single_examples


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("hf") / "bert")


@pytest.fixture(scope="session")
def pair_dir(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("hf") / "pair", task="pair", steps=300, lr=2e-3)


@pytest.fixture(scope="session")
def distil_dir(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("hf") / "distil", kind="distilbert")


@pytest.fixture(scope="session")
def multi_dir(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("hf") / "multi", task="multi", steps=300, hidden=64)


@pytest.fixture(scope="session")
def bert_model_dir(bert_dir, tmp_path_factory) -> Path:
    """The single-label BERT exported to INT8 with the accuracy gate run on held-out examples."""
    return export_tiny(bert_dir, tmp_path_factory.mktemp("models") / "bert", single_examples(200, seed=7))


@pytest.fixture(scope="session")
def export_model(tmp_path_factory):
    """A function exporting an HF directory into a fresh model directory (options as keywords)."""

    def run(hf_dir: Path, examples: list[Example] | None = None, **options) -> Path:
        return export_tiny(hf_dir, tmp_path_factory.mktemp("models") / "m", examples, **options)

    return run
