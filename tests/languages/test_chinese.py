"""Chinese end to end: the real bert-base-chinese vocabulary, Chinese training files (UTF-8 with and
without a byte-order mark, CSV and JSON Lines), the real ``train`` job, and the real serving stack
answering Chinese requests with the Python predictor's scores and readable Chinese labels.

Needs ``../shared/data/vocab/bert-base-chinese-vocab.txt``: skipped, saying so, without it.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import requests

from support.languages import NEGATIVE, POSITIVE, SCRIPT_TEXTS, chinese_rows
from support.serving import ServeProcess
from textclf.contract.model_dir import read_manifest
from textclf.model.encoding import TextEncoder
from textclf.model.predictor import Classifier

pytestmark = pytest.mark.shared_data

HELD_OUT = chinese_rows(40, seed=9)
TEXTS = [row["text"] for row in HELD_OUT]


def post(stack: ServeProcess, body: bytes, content_type: str, **headers: str) -> requests.Response:
    return requests.post(
        stack.url("/invocations"), data=body, headers={"Content-Type": content_type, **headers}, timeout=60
    )


def assert_same(http: list, python: list) -> None:
    assert len(http) == len(python)
    for got, want in zip(http, python, strict=True):
        assert [e["label"] for e in got] == [e["label"] for e in want]
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-4)


def test_the_job_reads_every_file_with_or_without_a_byte_order_mark(chinese_job) -> None:
    stdout = chinese_job.result.stdout
    assert "data: train: 320 rows from 4 file(s); labels: 正面 160, 负面 160" in stdout, stdout
    assert "data: validation: 60 rows from 1 file(s)" in stdout
    assert "\ufeff" not in stdout


def test_chinese_labels_and_tokens_reach_the_model(chinese_job) -> None:
    manifest = read_manifest(chinese_job.model_dir)
    assert list(manifest.labels) == [POSITIVE, NEGATIVE]  # sorted by code point: 正 U+6B63 < 负 U+8D1F
    encoder = TextEncoder.from_dir(chinese_job.model_dir, 512)
    unk = encoder.tokenizer.token_to_id("[UNK]")
    ids = [i for text in TEXTS for i in encoder.content_ids([text])[0]]
    assert unk not in ids  # one token per character, every one in the real vocabulary
    assert sum(len(text) for text in TEXTS) == len(ids)


def test_it_learned_from_chinese_text(chinese_job, chinese_classifier: Classifier) -> None:
    """Keywords decide the label: accuracy far above chance is only possible if the characters were
    tokenized into distinct, known tokens in training and are so in serving."""
    report = json.loads((chinese_job.sm.output_data / "metrics.json").read_text(encoding="utf-8"))
    assert report["final"]["validation"]["accuracy"] >= 0.9
    predicted = [result[0]["label"] for result in chinese_classifier.predict(TEXTS)]
    accuracy = sum(p == row["label"] for p, row in zip(predicted, HELD_OUT, strict=True)) / len(HELD_OUT)
    assert accuracy >= 0.9, predicted


@pytest.mark.parametrize("ensure_ascii", [False, True], ids=["utf8", "escaped"])
def test_chinese_json_requests_get_the_python_scores(
    chinese_stack: ServeProcess, chinese_classifier: Classifier, ensure_ascii: bool
) -> None:
    """Chinese sent as UTF-8 or as \\u escapes is the same text; answers equal the predictor's."""
    body = json.dumps({"inputs": TEXTS, "parameters": {"top_k": None}}, ensure_ascii=ensure_ascii).encode()
    response = post(chinese_stack, body, "application/json")
    assert response.status_code == 200, response.text
    assert_same(json.loads(response.content.decode("utf-8")), chinese_classifier.predict(TEXTS, top_k=None))


def test_json_answers_carry_chinese_labels_as_utf8(chinese_stack: ServeProcess) -> None:
    """The raw bytes: labels are UTF-8 characters, never \\u escapes, and the type is plain
    application/json (JSON is UTF-8 by RFC 8259, which defines no charset parameter)."""
    response = post(
        chinese_stack, json.dumps({"inputs": TEXTS[:2], "parameters": {"top_k": 2}}).encode(), "application/json"
    )
    assert response.headers["Content-Type"] == "application/json"
    raw = response.content
    assert POSITIVE.encode("utf-8") in raw and NEGATIVE.encode("utf-8") in raw
    assert b"\\u" not in raw
    assert raw.decode("utf-8").count(POSITIVE) == 2
    for accept in ("application/jsonlines", "text/csv"):
        raw = post(chinese_stack, "\n".join(TEXTS[:2]).encode(), "text/plain", Accept=accept).content
        assert POSITIVE.encode("utf-8") in raw or NEGATIVE.encode("utf-8") in raw
        assert b"\\u" not in raw
    csv_answer = post(chinese_stack, "\n".join(TEXTS[:2]).encode(), "text/plain", Accept="text/csv")
    assert csv_answer.headers["Content-Type"] == "text/csv; charset=utf-8"


def test_chinese_in_every_request_format(chinese_stack: ServeProcess, chinese_classifier: Classifier) -> None:
    want = chinese_classifier.predict(TEXTS, top_k=None)
    header = {"X-Amzn-SageMaker-Custom-Attributes": "top_k=all"}
    lines = "\n".join(json.dumps({"text": t, "id": i}, ensure_ascii=False) for i, t in enumerate(TEXTS))
    answer = post(chinese_stack, lines.encode(), "application/jsonlines", **header)
    assert_same([json.loads(line) for line in answer.content.decode().splitlines()], want)
    # full-width commas (U+FF0C) are text, not CSV separators: no quoting needed
    assert any("，" in t for t in TEXTS)
    body = ("\ufeff" + "\n".join(TEXTS) + "\n").encode()  # a byte-order mark, as a file from Excel has
    for content_type in ("text/csv", "text/plain; charset=utf-8"):
        answer = post(chinese_stack, body, content_type, Accept="application/json", **header)
        assert answer.status_code == 200, answer.text
        assert_same(answer.json(), want)
    rows = list(csv.reader(io.StringIO(post(chinese_stack, body, "text/csv", **header).content.decode("utf-8"))))
    assert [row[0] for row in rows] == [result[0]["label"] for result in want]
    assert [float(row[1]) for row in rows] == pytest.approx([result[0]["score"] for result in want], abs=1e-4)


def test_other_scripts_through_the_chinese_model(chinese_stack: ServeProcess, chinese_classifier: Classifier) -> None:
    """Mixed scripts, right-to-left, emoji, combining and full-width text: unknown characters are
    [UNK] to this vocabulary, and served and Python answers still agree."""
    texts = list(SCRIPT_TEXTS.values())
    answer = post(
        chinese_stack, json.dumps({"inputs": texts, "parameters": {"top_k": None}}).encode(), "application/json"
    )
    assert answer.status_code == 200, answer.text
    assert_same(answer.json(), chinese_classifier.predict(texts, top_k=None))


def test_invalid_chinese_request_names_the_record(chinese_stack: ServeProcess) -> None:
    answer = post(chinese_stack, f"{TEXTS[0]}\n\u3000\u200b\n".encode(), "text/plain")
    assert answer.status_code == 400
    assert re.search(r"line 2 is empty \(only whitespace and invisible characters", answer.json()["error"]["message"])
