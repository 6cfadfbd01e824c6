"""Shared tokenization: identical to transformers for head truncation, and correct for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertTokenizer

from textclf.model.encoding import TextEncoder

WORDS = "the a movie was great awful plot acting good bad not very really long short film story".split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def hf_tokenizer() -> BertTokenizer:
    return BertTokenizer(vocab={tok: i for i, tok in enumerate(SPECIALS + WORDS)})


def encoder(tok: BertTokenizer, max_length: int, truncation: str = "head") -> TextEncoder:
    return TextEncoder(tok.backend_tokenizer, max_length, truncation, tok.pad_token_id)  # type: ignore[arg-type]


TEXTS = ["the movie was great", "awful", "the plot was not very good and the acting was really bad " * 3]
PAIRS = ["a long film", "the story was short " * 4, "good"]


@pytest.mark.parametrize("max_length", [8, 16, 64])
def test_head_truncation_matches_transformers(hf_tokenizer: BertTokenizer, max_length: int) -> None:
    ours = encoder(hf_tokenizer, max_length).encode(TEXTS)
    ref = hf_tokenizer(TEXTS, truncation=True, max_length=max_length)
    assert [e.ids for e in ours] == ref["input_ids"]
    assert [e.type_ids for e in ours] == ref["token_type_ids"]


@pytest.mark.parametrize("max_length", [10, 16, 64])
def test_pairs_match_transformers_longest_first(hf_tokenizer: BertTokenizer, max_length: int) -> None:
    ours = encoder(hf_tokenizer, max_length).encode(TEXTS, PAIRS)
    ref = hf_tokenizer(TEXTS, PAIRS, truncation="longest_first", max_length=max_length)
    assert [len(e.ids) for e in ours] == [len(r) for r in ref["input_ids"]]
    assert [e.type_ids for e in ours] == ref["token_type_ids"]
    assert all(len(e.ids) <= max_length for e in ours)


def test_tail_and_head_tail_keep_the_right_ends(hf_tokenizer: BertTokenizer) -> None:
    text = " ".join(WORDS)  # one token per word
    n = 10
    budget = n - 2
    words = WORDS
    tail = encoder(hf_tokenizer, n, "tail").encode([text])[0]
    assert hf_tokenizer.convert_ids_to_tokens(tail.ids) == ["[CLS]", *words[-budget:], "[SEP]"]
    both = encoder(hf_tokenizer, n, "head+tail").encode([text])[0]
    head = budget // 4
    assert hf_tokenizer.convert_ids_to_tokens(both.ids) == ["[CLS]", *words[:head], *words[-(budget - head) :], "[SEP]"]


def test_short_texts_are_untouched_by_any_truncation(hf_tokenizer: BertTokenizer) -> None:
    for mode in ("head", "tail", "head+tail"):
        assert [e.ids for e in encoder(hf_tokenizer, 32, mode).encode(TEXTS[:2])] == hf_tokenizer(TEXTS[:2])[
            "input_ids"
        ]


def test_pad_is_dynamic_and_masks(hf_tokenizer: BertTokenizer) -> None:
    enc = encoder(hf_tokenizer, 64)
    batch = enc.pad(enc.encode(TEXTS[:2]))
    assert batch["input_ids"].shape == (2, 6)  # the longest example, not max_length
    assert batch["attention_mask"].sum(axis=1).tolist() == [6, 3]
    assert batch["input_ids"][1, 3:].tolist() == [hf_tokenizer.pad_token_id] * 3
    assert batch["input_ids"].dtype.name == "int64"


def test_windows_cover_a_long_text(hf_tokenizer: BertTokenizer) -> None:
    enc = encoder(hf_tokenizer, 8)
    text = " ".join(WORDS)
    content = enc.content_ids([text])[0]
    windows = enc.windows(text, stride=3)
    inner = [w.ids[1:-1] for w in windows]
    assert all(len(w.ids) <= 8 for w in windows)
    assert inner[0] == content[:6] and inner[-1][-1] == content[-1]
    covered = {i for k, _ in enumerate(inner) for i in range(k * 3, k * 3 + len(inner[k]))}
    assert covered == set(range(len(content)))


def test_roberta_style_template_is_probed() -> None:
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    enc = TextEncoder(tok, max_length=16, pad_id=1)
    pair = enc.encode(["good movie"], ["bad film"])[0]
    assert pair.ids == [0, vocab["good"], vocab["movie"], 2, 2, vocab["bad"], vocab["film"], 2]
    assert enc.encode(["good"])[0].ids == [0, vocab["good"], 2]


def test_from_dir_reads_pad_token(hf_tokenizer: BertTokenizer, tmp_path: Path) -> None:
    hf_tokenizer.save_pretrained(tmp_path)
    enc = TextEncoder.from_dir(tmp_path, 16)
    assert enc.pad_id == hf_tokenizer.pad_token_id
    assert enc.encode(["the movie"])[0].ids == hf_tokenizer(["the movie"])["input_ids"][0]


def test_max_length_too_small_is_refused(hf_tokenizer: BertTokenizer) -> None:
    with pytest.raises(ValueError, match="no room"):
        encoder(hf_tokenizer, 3)
