"""Fixtures for ``train`` tests (helpers live in ``support.training``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.tiny_model import make_tiny_model
from support.training import ALL_WORDS, FAST_HYPERPARAMETERS, SageMakerTree, keyword_rows, new_tree, write_csv


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT encoder (no classification head) with a vocabulary covering the keyword data."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-encoder"), labels=None, words=ALL_WORDS)


@pytest.fixture
def sm(tmp_path: Path, tiny_encoder_dir: Path) -> SageMakerTree:
    """An /opt/ml tree with keyword data in ``train`` / ``validation`` / ``test`` and the tiny model
    in ``pretrained``, plus fast hyperparameters."""
    tree = new_tree(tmp_path / "opt_ml")
    write_csv(tree.channel("train") / "train.csv", keyword_rows(240, seed=1))
    write_csv(tree.channel("validation") / "validation.csv", keyword_rows(60, seed=2))
    write_csv(tree.channel("test") / "test.csv", keyword_rows(60, seed=3))
    pretrained = tree.channel("pretrained")
    for f in tiny_encoder_dir.iterdir():
        (pretrained / f.name).write_bytes(f.read_bytes())
    tree.hyperparameters({**FAST_HYPERPARAMETERS, "epochs": "4"})
    return tree
