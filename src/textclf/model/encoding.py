"""Texts -> token ids, truncation and padding, shared by training and serving.

Training and serving call the very same code, so a model never sees at serving time an input
shaped differently from what it learned on. Only the ``tokenizers`` library is used (no
transformers, no torch): the slim serving image has neither.

Special tokens are added from a template probed from the tokenizer's own post-processor, which
keeps BERT (``[CLS] a [SEP] b [SEP]``), RoBERTa-style (``<s> a </s></s> b </s>``) and others right
without knowing their names, and lets truncation work on plain id lists (head, tail, head+tail).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from textclf.contract.model_dir import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, Truncation

_PROBE_A, _PROBE_B = "a", "b"


@dataclass(frozen=True)
class Encoded:
    """One example's ids with special tokens, ready to pad."""

    ids: list[int]
    type_ids: list[int]


@dataclass(frozen=True)
class _Template:
    """Where content goes between special tokens, as probed from the post-processor."""

    prefix: list[int]
    middle: list[int]  # between the two texts of a pair
    suffix: list[int]
    single_suffix: list[int]
    prefix_type: int
    middle_type: int
    suffix_type: int
    single_suffix_type: int
    a_type: int
    b_type: int


def _probe_template(tokenizer: Tokenizer) -> _Template:
    a = tokenizer.encode(_PROBE_A, add_special_tokens=False).ids
    b = tokenizer.encode(_PROBE_B, add_special_tokens=False).ids
    single = tokenizer.encode(_PROBE_A, add_special_tokens=True)
    pair = tokenizer.encode(_PROBE_A, _PROBE_B, add_special_tokens=True)

    def find(seq: list[int], sub: list[int], start: int = 0) -> int:
        for i in range(start, len(seq) - len(sub) + 1):
            if seq[i : i + len(sub)] == sub:
                return i
        raise ValueError("tokenizer post-processor drops or rewrites content tokens")

    ia = find(pair.ids, a)
    ib = find(pair.ids, b, ia + len(a))
    sa = find(single.ids, a)
    prefix = pair.ids[:ia]
    if single.ids[:sa] != prefix:
        raise ValueError("tokenizer uses different prefixes for single texts and pairs")
    types = pair.type_ids
    return _Template(
        prefix=prefix,
        middle=pair.ids[ia + len(a) : ib],
        suffix=pair.ids[ib + len(b) :],
        single_suffix=single.ids[sa + len(a) :],
        prefix_type=types[0] if prefix else 0,
        middle_type=types[ia + len(a)] if ib > ia + len(a) else types[ia],
        suffix_type=types[ib + len(b)] if len(pair.ids) > ib + len(b) else types[ib],
        single_suffix_type=single.type_ids[-1] if single.ids[sa + len(a) :] else 0,
        a_type=types[ia],
        b_type=types[ib],
    )


def _pad_token_id(tokenizer: Tokenizer, config: dict) -> int:
    pad = config.get("pad_token")
    if isinstance(pad, dict):
        pad = pad.get("content")
    for token in (pad, "[PAD]", "<pad>"):
        if token and (token_id := tokenizer.token_to_id(token)) is not None:
            return token_id
    return 0


class TextEncoder:
    """Encodes single texts or pairs to at most ``max_length`` ids, and pads batches."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, truncation: Truncation = "head", pad_id: int = 0) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation: Truncation = truncation
        self.pad_id = pad_id
        self._t = _probe_template(tokenizer)
        self._single_budget = max_length - len(self._t.prefix) - len(self._t.single_suffix)
        self._pair_budget = max_length - len(self._t.prefix) - len(self._t.middle) - len(self._t.suffix)
        if self._pair_budget < 2:
            raise ValueError(f"max_length {max_length} leaves no room for text after special tokens")

    @classmethod
    def from_dir(cls, directory: str | Path, max_length: int, truncation: Truncation = "head") -> TextEncoder:
        """Load ``tokenizer.json`` (and the pad token from ``tokenizer_config.json``) from a directory."""
        directory = Path(directory)
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        config_file = directory / TOKENIZER_CONFIG_FILE
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        return cls(tokenizer, max_length, truncation, _pad_token_id(tokenizer, config))

    # -- truncation -------------------------------------------------------------------------------
    def _cut(self, ids: list[int], budget: int) -> list[int]:
        if len(ids) <= budget:
            return ids
        if self.truncation == "head":
            return ids[:budget]
        if self.truncation == "tail":
            return ids[len(ids) - budget :]
        head = budget // 4  # Sun et al. 2019 kept 128 head + 382 tail tokens of 510
        return ids[:head] + ids[len(ids) - (budget - head) :]

    def _single(self, ids: list[int]) -> Encoded:
        t = self._t
        ids = self._cut(ids, self._single_budget)
        return Encoded(
            t.prefix + ids + t.single_suffix,
            [t.prefix_type] * len(t.prefix) + [t.a_type] * len(ids) + [t.single_suffix_type] * len(t.single_suffix),
        )

    def _pair(self, a: list[int], b: list[int]) -> Encoded:
        t, budget = self._t, self._pair_budget
        if len(a) + len(b) > budget:  # longest first, as transformers does
            if len(a) >= len(b):
                keep_b = min(len(b), budget // 2)
                a, b = self._cut(a, budget - keep_b), self._cut(b, keep_b)
            else:
                keep_a = min(len(a), budget // 2)
                a, b = self._cut(a, keep_a), self._cut(b, budget - keep_a)
        ids = t.prefix + a + t.middle + b + t.suffix
        types = (
            [t.prefix_type] * len(t.prefix)
            + [t.a_type] * len(a)
            + [t.middle_type] * len(t.middle)
            + [t.b_type] * len(b)
            + [t.suffix_type] * len(t.suffix)
        )
        return Encoded(ids, types)

    # -- public -----------------------------------------------------------------------------------
    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without special tokens, batch-tokenized in Rust."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[Encoded]:
        first = self.content_ids(texts)
        if pairs is None:
            return [self._single(ids) for ids in first]
        if len(pairs) != len(texts):
            raise ValueError("texts and pairs differ in length")
        second = self.content_ids(pairs)
        return [self._pair(a, b) for a, b in zip(first, second, strict=True)]

    # -- sliding windows ----------------------------------------------------------------------------
    # A window is only a start offset into a text's content ids until it is padded for a model run:
    # how many windows a request makes is arithmetic on token counts, so a request that would make
    # too many is refused before any is built, and the windows of an accepted one cost no memory
    # beyond the ids of the chunk being run.
    @property
    def window_size(self) -> int:
        """Content tokens per window: ``max_length`` less the special tokens (the longest gapless stride)."""
        return self._single_budget

    def window_step(self, stride: int | None = None) -> int:
        """The stride windows are taken with: ``stride``, or half a window when it is not given."""
        return max(1, stride if stride else self._single_budget // 2)

    def window_starts(self, length: int, stride: int | None = None) -> range:
        """Where the windows over ``length`` content tokens start; its ``len()`` is their number.

        At least one window (an empty or short text is one window, exactly its plain encoding).
        """
        step = self.window_step(stride)
        return range(0, max(1, length - self._single_budget + step), step)

    def window(self, ids: list[int], start: int) -> Encoded:
        """The window of content ``ids`` that starts at ``start``, with special tokens (never truncated)."""
        return self._single(ids[start : start + self._single_budget])

    def windows(self, text: str, stride: int | None = None) -> list[Encoded]:
        """Overlapping windows covering a long text (each ``max_length`` ids with special tokens)."""
        ids = self.content_ids([text])[0]
        return [self.window(ids, start) for start in self.window_starts(len(ids), stride)]

    def pad(self, batch: Sequence[Encoded]) -> dict[str, np.ndarray]:
        """Pad to the longest example in the batch (dynamic padding); int64 arrays."""
        width = max(len(e.ids) for e in batch)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, e in enumerate(batch):
            n = len(e.ids)
            ids[row, :n] = e.ids
            types[row, :n] = e.type_ids
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
