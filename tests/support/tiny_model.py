"""Tiny BERT models and WordPiece tokenizers built from a config, for tests that cannot reach a model hub.

A model from ``make_tiny_model`` is a real Hugging Face directory (``config.json``,
``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``) with random weights: right
for plumbing tests (training, export, serving), useless for accuracy unless fine-tuned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DEFAULT_WORDS = (
    "the a an is was this that movie film plot acting story great good fine bad awful boring "
    "and or but not very really quite of to in on it its with for as i you we they"
).split()


def words_of(texts: Iterable[str]) -> list[str]:
    """The distinct lower-cased words and punctuation marks of ``texts``, in order of first use."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            seen.setdefault(word, None)
    return list(seen)


def make_vocab(words: Iterable[str] = DEFAULT_WORDS) -> dict[str, int]:
    """A WordPiece vocabulary: the BERT special tokens (``[PAD]`` = 0), then ``words`` (deduplicated)."""
    vocab: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *words):
        vocab.setdefault(token, len(vocab))
    return vocab


def make_tokenizer(directory: str | Path, words: Iterable[str] = DEFAULT_WORDS):  # -> transformers.BertTokenizer
    """Save a fast, uncased BERT WordPiece tokenizer over ``words`` into ``directory``; return it."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer(vocab=make_vocab(words), do_lower_case=True)
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def make_tiny_model(
    directory: str | Path,
    labels: Sequence[str] | None = ("negative", "positive"),
    words: Iterable[str] = DEFAULT_WORDS,
    **shape: Any,
) -> Path:
    """Write a tiny random BERT and its tokenizer over ``words`` as a Hugging Face directory;
    ``labels`` and ``shape`` (hidden_size, seed, dropout, ...) as ``save_tiny_bert`` takes them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return save_tiny_bert(directory, make_tokenizer(directory, words), labels, **shape)


def save_tiny_bert(
    directory: str | Path,
    tokenizer: Any,
    labels: Sequence[str] | None = ("negative", "positive"),
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_position_embeddings: int = 128,
    problem_type: str = "single_label",
    seed: int = 0,
    dropout: float = 0.1,
) -> Path:
    """Write a tiny random BERT over ``tokenizer`` (a transformers tokenizer already saved in
    ``directory``) into ``directory``; returns it.

    With ``labels``, a ``BertForSequenceClassification`` whose config carries ``id2label``/
    ``label2id`` and ``problem_type`` (``"single_label"`` or ``"multi_label"``); with
    ``labels=None``, a bare ``BertModel`` encoder, like a hub checkpoint before fine-tuning.
    ``dropout=0`` makes training deterministic across process layouts.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    directory = Path(directory)
    config = BertConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    if labels is None:
        model = BertModel(config)
    else:
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
        config.problem_type = (
            "multi_label_classification" if problem_type == "multi_label" else "single_label_classification"
        )
        model = BertForSequenceClassification(config)
    model.save_pretrained(str(directory))
    # transformers writes the weights through a temporary file, mode 600: readable by everyone, as
    # the files of a SageMaker channel are (the image reads its channels as an unprivileged user).
    for path in directory.iterdir():
        path.chmod(path.stat().st_mode | 0o444)
    return directory
