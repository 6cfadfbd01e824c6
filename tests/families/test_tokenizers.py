"""Each family's tokenizer, as textclf encodes with it, against transformers' own encoding.

Training and serving encode with ``textclf.model.encoding.TextEncoder`` (the ``tokenizers`` library
alone; special tokens from a template probed from the post-processor). For every family it must give
the ids (and, where the model reads them, the segment ids) that the family's transformers tokenizer
gives, for single texts and pairs, and lay a pair out as the family table says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from support.families import BUILDERS
from textclf.model.encoding import TextEncoder
from textclf.train.families import BY_TYPE, BYTE_BPE, SUPPORTED, UNIGRAM, WORDPIECE

SAMPLES = [
    ("the team scored a goal", "this laptop runs the new software"),
    ("Café NAÏVE résumé: the COACH, the chip!", "東京 数据 🙂 👍"),
    ("  spaced\tout   words\n", "it's 3.14 — don't…"),
    ("a", "b"),
]


def test_every_supported_family_has_a_builder() -> None:
    """A family cannot enter the table as supported without a tiny model in the matrix."""
    assert set(BUILDERS) == set(SUPPORTED)


def tokenizer_kind(tokenizer_json: dict) -> str:
    model = tokenizer_json["model"]["type"]
    if model == "BPE":
        pre = json.dumps(tokenizer_json.get("pre_tokenizer"))
        assert '"ByteLevel"' in pre, pre
        return BYTE_BPE
    return {"WordPiece": WORDPIECE, "Unigram": UNIGRAM}[model]


def rendered_pair(encoder: TextEncoder) -> str:
    """The pair template as the family table writes it: ``<s> a </s></s> b </s>``."""
    t = encoder._t
    token = encoder.tokenizer.id_to_token
    parts = [" ".join(token(i) for i in t.prefix), "a", "".join(token(i) for i in t.middle), "b",
             "".join(token(i) for i in t.suffix)]  # fmt: skip
    return " ".join(p for p in parts if p)


@pytest.mark.parametrize("model_type", SUPPORTED)
def test_textclf_encodes_as_transformers_does(model_type: str, encoder_dir: Callable[[str], Path]) -> None:
    from transformers import AutoTokenizer

    family = BY_TYPE[model_type]
    directory = encoder_dir(model_type)
    reference = AutoTokenizer.from_pretrained(directory)
    assert reference.is_fast
    assert tokenizer_kind(json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))) == family.tokenizer

    encoder = TextEncoder.from_dir(directory, max_length=512)  # as serve loads it: tokenizer.json alone
    assert encoder.pad_id == reference.pad_token_id
    assert rendered_pair(encoder) == family.pair_template
    texts, pairs = [a for a, _ in SAMPLES], [b for _, b in SAMPLES]
    for got, text in zip(encoder.encode(texts), texts, strict=True):
        assert got.ids == reference(text)["input_ids"], text
    for got, text, pair in zip(encoder.encode(texts, pairs), texts, pairs, strict=True):
        want = reference(text, pair, return_token_type_ids=True)
        assert got.ids == want["input_ids"], (text, pair)
        if family.segment_ids:
            assert got.type_ids == want["token_type_ids"], (text, pair)
            assert set(got.type_ids) == {0, 1}, "the second text of a pair is segment 1"
