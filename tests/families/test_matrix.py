"""Every supported family of ``textclf.train.families``, end to end: train -> ONNX -> INT8 gate -> serve.

For each family a tiny random encoder with a tokenizer of its real kind (tests/support/families.py)
is fine-tuned by the real train job on the keyword task (single texts, and text pairs), exported to
INT8 behind the accuracy gate, and served by the real stack (nginx -> gunicorn -> Flask ->
onnxruntime); what the server answers must be what the Python predictor answers on the same model
directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from support.families import TRAIN_LABELS, family_tree, train_in_process
from support.serving import ServeProcess, make_sm_root
from textclf.contract.model_dir import read_manifest
from textclf.model.predictor import Classifier
from textclf.train.families import BY_TYPE, SUPPORTED

TEXTS = [
    "the team scored a goal in the match",
    "this laptop runs the new software",
    "Café NAÏVE résumé: the COACH, the chip!",  # case, accents, punctuation: each normalizer differs
    "東京 数据 🙂 👍 code",  # CJK and emoji: unknown to WordPiece and Unigram, bytes to byte-level BPE
    "  spaced\tout   words\n about a   match  ",
    "it was very really quite " * 12 + "software",  # longer than max_seq_length (32): truncated
    "a",
]
PAIRS = [
    ("we had pasta", "the team scored a goal"),
    ("the soup was cold", "this laptop runs code"),
    ("Crème brûlée, BREAD?", "  the coach of the team  "),
    ("東京 🙂", "chip 数据"),
    ("the bread " * 20, "the match " * 20),  # both long: longest-first truncation of a pair
    ("a", "b"),
]


def served(server: ServeProcess, inputs: list) -> list[list[dict]]:
    response = requests.post(
        server.url("/invocations"), json={"inputs": inputs, "parameters": {"top_k": None}}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def assert_same_predictions(got: list[list[dict]], want: list) -> None:
    assert len(got) == len(want)
    for answer, expected in zip(got, want, strict=True):
        assert answer[0]["label"] == expected[0]["label"], (answer, expected)
        scores = {item["label"]: item["score"] for item in answer}
        assert set(scores) == {e["label"] for e in expected}
        for e in expected:
            assert scores[e["label"]] == pytest.approx(e["score"], abs=1e-4), (answer, expected)


@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pairs"])
@pytest.mark.parametrize("model_type", SUPPORTED)
def test_family_trains_exports_and_serves(
    model_type: str, pairs: bool, encoder_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    family = BY_TYPE[model_type]
    tree = family_tree(tmp_path / "opt_ml", encoder_dir(model_type), pairs)
    code, log = train_in_process(tree)
    assert code == 0, (tree.failure.read_text() if tree.failure.exists() else "") + log
    assert "warning: model_type" not in log  # a family of the table: no "untested family" warning

    # It learned (two classes, chance 1/2), and INT8 kept FP32's accuracy: the gate ran and passed.
    report = json.loads((tree.output_data / "metrics.json").read_text())
    assert report["final"]["validation"]["accuracy"] >= 0.8, report["final"]["validation"]
    manifest = read_manifest(tree.model_dir, verify=True)
    gate = manifest.metrics["quality_gate"]
    assert gate["ran"] and gate["passed"] and gate["shipped"] == "int8", gate
    assert manifest.precision == "int8" and manifest.text_pair is pairs
    assert manifest.labels == list(TRAIN_LABELS)
    # The model reads token_type_ids exactly when the family has segment embeddings.
    assert ("token_type_ids" in manifest.model_inputs) is family.segment_ids, manifest.model_inputs

    classifier = Classifier.load(tree.model_dir)
    if pairs:
        firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
        want = classifier.predict(firsts, seconds, top_k=None)
        inputs: list = [{"text": a, "text_pair": b} for a, b in PAIRS]
    else:
        want = classifier.predict(TEXTS, top_k=None)
        inputs = TEXTS
    root = make_sm_root(tree.model_dir, tmp_path / "serve_root")
    with ServeProcess(root, tmp_path / "serve_logs", workers=1) as server:
        server.wait_ready()
        assert_same_predictions(served(server, inputs), want)
