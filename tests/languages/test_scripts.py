"""Texts in many scripts: mixed-script, right-to-left, emoji (ZWJ sequences included), combining
characters in NFC and NFD, full-width punctuation.

Two promises: training and serving tokenize every such text identically (the tokenizer training
loads with transformers, and the ``tokenizer.json`` the model directory carries, read by the
``tokenizers``-only serving code); and the real stack answers each text, in every request format,
with the Python predictor's labels and scores (the bytes of a text survive HTTP, JSON escapes, CSV
quoting and line splitting). Normalisation is the tokenizer's own: an uncased BERT reads NFC and NFD
alike, a cased one does not, and textclf adds none of its own in either job.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from support.languages import NFC_NFD_PAIRS, SCRIPT_TEXTS, make_script_tokenizer
from support.serving import ServeProcess
from support.tiny_model import save_tiny_bert
from textclf.model.encoding import TextEncoder
from textclf.model.predictor import Classifier

CA = {"X-Amzn-SageMaker-Custom-Attributes": "top_k=all"}
PAIRS = [
    (SCRIPT_TEXTS["arabic"], SCRIPT_TEXTS["hebrew"]),
    (SCRIPT_TEXTS["emoji-zwj"], SCRIPT_TEXTS["latin-nfd"]),
    (SCRIPT_TEXTS["full-width"], SCRIPT_TEXTS["mixed-script"]),
]


@dataclass
class Tokenizers:
    """The tokenizer training uses (transformers, from the pretrained directory) and the one serving
    uses (``TextEncoder`` over the model directory's ``tokenizer.json``)."""

    training: object
    serving: TextEncoder


def load_pair(hf_dir: Path, model_dir: Path) -> Tokenizers:
    from transformers import AutoTokenizer

    return Tokenizers(AutoTokenizer.from_pretrained(str(hf_dir)), TextEncoder.from_dir(model_dir, 512))


@pytest.fixture(scope="module")
def uncased_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uncased tiny model over the same words, exported: the tokenizer strips accents (NFD first)."""
    from textclf.export.options import ExportOptions
    from textclf.export.pipeline import export_model_dir

    work = tmp_path_factory.mktemp("uncased")
    hf = work / "hf"
    save_tiny_bert(hf, make_script_tokenizer(hf, SCRIPT_TEXTS.values(), lowercase=True), ["a", "b"])
    export_model_dir(hf, work / "model", ExportOptions(keep_full_precision=False, max_seq_length=64, precision="fp32"))
    return hf, work / "model"


@pytest.fixture(params=["cased", "uncased", "chinese"])
def tokenizers(request: pytest.FixtureRequest) -> tuple[str, Tokenizers]:
    if request.param == "cased":
        model = request.getfixturevalue("script_model")
        return "cased", load_pair(model.hf_dir, model.model_dir)
    if request.param == "uncased":
        return "uncased", load_pair(*request.getfixturevalue("uncased_dirs"))
    job = request.getfixturevalue("chinese_job")  # skips without the shared vocabulary
    return "chinese", load_pair(job.pretrained, job.model_dir)


def test_training_and_serving_tokenize_every_script_identically(tokenizers: tuple[str, Tokenizers]) -> None:
    name, tok = tokenizers
    texts = list(SCRIPT_TEXTS.values())
    want = tok.training(texts)  # type: ignore[operator]
    got = tok.serving.encode(texts)
    for key, text, ids, encoded in zip(SCRIPT_TEXTS, texts, want["input_ids"], got, strict=True):
        assert encoded.ids == ids, f"{name}: {key} {text!r}"
    unk = tok.serving.tokenizer.token_to_id("[UNK]")
    if name != "chinese":  # the vocabulary was built from these texts: nothing is unknown
        assert not any(unk in e.ids for e in got)
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    want_pairs = tok.training(firsts, seconds)  # type: ignore[operator]
    for ids, types, encoded in zip(
        want_pairs["input_ids"], want_pairs["token_type_ids"], tok.serving.encode(firsts, seconds), strict=True
    ):
        assert (encoded.ids, encoded.type_ids) == (ids, types)


def test_normalisation_is_the_tokenizers_own(tokenizers: tuple[str, Tokenizers]) -> None:
    """An uncased BERT decomposes and strips accents, so NFC and NFD texts are one input; a cased
    one keeps what it is given, so they are two (bert-base-chinese's vocabulary knows no accented
    Latin word in either form, but it has the conjoining jamo of NFD Hangul). textclf normalises
    nothing itself: it cannot change what a model learned on."""
    name, tok = tokenizers
    for nfc, nfd in NFC_NFD_PAIRS:
        same = tok.serving.content_ids([SCRIPT_TEXTS[nfc]]) == tok.serving.content_ids([SCRIPT_TEXTS[nfd]])
        if name == "uncased":
            assert same, nfc
        elif name == "cased" or nfc == "hangul-nfc":
            assert not same, nfc


# -- the real stack --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(script_model) -> Classifier:
    return Classifier.load(script_model.model_dir, threads=1)


def post(stack: ServeProcess, body: bytes, content_type: str, **headers: str) -> requests.Response:
    response = requests.post(
        stack.url("/invocations"), data=body, headers={"Content-Type": content_type, **CA, **headers}, timeout=60
    )
    assert response.status_code == 200, response.text
    return response


def csv_body(texts: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([t] for t in texts)
    return out.getvalue().encode("utf-8")


def assert_same(http: list, python: list, what: str) -> None:
    assert len(http) == len(python), what
    for got, want in zip(http, python, strict=True):
        assert [e["label"] for e in got] == [e["label"] for e in want], what
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-4), what


@pytest.mark.parametrize("key", list(SCRIPT_TEXTS))
def test_each_script_is_served_as_the_python_predictor_answers(
    script_stack: ServeProcess, reference: Classifier, key: str
) -> None:
    """One text alone and among others, in every request format, against the predictor on the same batch."""
    text = SCRIPT_TEXTS[key]
    single = reference.predict([text], top_k=None)
    batch = [text, "great film", text[::-1] if text.strip() else "x"]
    want = reference.predict(batch, top_k=None)
    answers = {
        "json-utf8": post(script_stack, json.dumps({"inputs": text}, ensure_ascii=False).encode(), "application/json"),
        "json-escaped": post(script_stack, json.dumps({"inputs": text}).encode(), "application/json"),
    }
    for what, response in answers.items():
        assert_same([response.json()], single, f"{key} {what}")
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in batch).encode()
    as_jsonl = post(script_stack, lines, "application/jsonlines")
    assert_same([json.loads(x) for x in as_jsonl.content.decode().split("\n") if x], want, f"{key} jsonlines")
    as_csv = post(script_stack, csv_body(batch), "text/csv", Accept="application/json")
    assert_same(as_csv.json(), want, f"{key} csv")
    if "\n" not in text:
        as_plain = post(script_stack, "\n".join(batch).encode(), "text/plain", Accept="application/json")
        assert_same(as_plain.json(), want, f"{key} text/plain")


def test_all_scripts_in_one_request(script_stack: ServeProcess, reference: Classifier) -> None:
    texts = list(SCRIPT_TEXTS.values())
    response = post(script_stack, json.dumps({"inputs": texts}, ensure_ascii=False).encode(), "application/json")
    assert_same(response.json(), reference.predict(texts, top_k=None), "all")
    # distinct texts are distinct inputs: the comparison is not between constants
    assert len({round(r[0]["score"], 5) for r in response.json()}) > len(texts) // 2
