"""Fixtures for the serving tests: really exported tiny models, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.tiny_model import make_tiny_model
from serve_helpers import MULTI_LABELS, SINGLE_LABELS, WORDS


def _sharpen(hf_dir: Path, factor: float = 60.0) -> None:
    """Scale the random classifier head so that scores spread out (a fresh head gives near-uniform
    probabilities, where comparisons of labels and scores would prove little)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(hf_dir)
    with torch.no_grad():
        model.classifier.weight.mul_(factor)
        model.classifier.bias.normal_(0.0, 0.5)
    model.save_pretrained(hf_dir)


def _export(work: Path, name: str, labels: list[str], **options: object) -> Path:
    from textclf.export import ExportOptions, export_model_dir

    problem_type = "multi_label" if options.pop("multi_label", False) else "single_label"
    hf = make_tiny_model(work / f"hf-{name}", labels=labels, words=WORDS, problem_type=problem_type, seed=3)
    _sharpen(hf)
    out = work / name
    export_model_dir(hf, out, ExportOptions(keep_full_precision=False, max_seq_length=64, **options))  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A single-label, 3-class INT8 model directory (export: PyTorch -> ONNX -> INT8 -> manifest)."""
    return _export(tmp_path_factory.mktemp("serve-models"), "single", SINGLE_LABELS)


@pytest.fixture(scope="session")
def pair_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multi-label model of text pairs (4 labels)."""
    return _export(tmp_path_factory.mktemp("serve-models-pair"), "pair", MULTI_LABELS, text_pair=True, multi_label=True)
