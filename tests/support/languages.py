"""Texts in many scripts, tokenizers and tiny models for them, and a learnable Chinese sentiment set.

- ``SCRIPT_TEXTS``: mixed-script, right-to-left (Arabic, Hebrew, with and without bidirectional
  marks), emoji (skin tones, ZWJ sequences, flags), combining characters (the same words in NFC and
  NFD), full-width punctuation and letters, Devanagari, Thai, Korean: the texts the language tests
  send through training's tokenizer and the real serving stack.
- ``make_chinese_tokenizer``: a fast BERT WordPiece tokenizer over the real ``bert-base-chinese``
  vocabulary (``../shared/data/vocab``, 21,128 tokens), set up as that model's is: Chinese
  characters split one per token, and ``do_lower_case=False`` (so accents are not stripped either;
  transformers' ``PRETRAINED_INIT_CONFIGURATION`` for ``bert-base-chinese``).
- ``make_script_tokenizer``: a BERT WordPiece tokenizer whose vocabulary is every word of some
  texts as the tokenizer itself splits them, so that texts in any script map to real tokens (and
  distinct texts to distinct inputs), not to ``[UNK]``; cased or uncased.
- tiny models over these tokenizers: ``support.tiny_model.save_tiny_bert``.
- ``chinese_rows``: "keywords -> sentiment" reviews in Chinese with labels 正面 / 负面, learnable by a
  tiny BERT in a few hundred steps.
"""

from __future__ import annotations

import os
import random
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# ../shared/data beside the repository (TEXTCLF_SHARED_DATA moves it; a fresh clone has none)
SHARED_DATA = Path(
    os.environ.get("TEXTCLF_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data"
)
CHINESE_VOCAB = SHARED_DATA / "vocab" / "bert-base-chinese-vocab.txt"
NO_SHARED_DATA = (
    f"needs the bert-base-chinese vocabulary {CHINESE_VOCAB}: the shared data folder beside the repository "
    "(../shared/data, or TEXTCLF_SHARED_DATA), which a fresh clone does not have"
)
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

_LATIN = "Crème brûlée, naïve café in São Paulo; Ångström résumé"
_VIETNAMESE = "Phim này thật tuyệt vời"
_HANGUL = "정말 좋은 영화"
SCRIPT_TEXTS: dict[str, str] = {
    "mixed-script": "我爱 New York, Москва и Αθήνα 2024",
    "mixed-chinese-english": "这部movie真的很good，推荐给friends",
    "arabic": "كان الفيلم رائعا جدا",
    "hebrew": "הסרט היה נהדר מאוד",
    "rtl-with-marks": "\u200fالفيلم\u200f was \u202bמצוין\u202c and \u2067شكرا\u2069!",
    "rtl-digits": "السعر ١٢٣ ريال و 45 شيكل",
    "emoji": "great film 👍🏽🎬🍿 loved it 😀",
    "emoji-zwj": "family night 👨\u200d👩\u200d👧\u200d👦 with 🏳️\u200d🌈 and 🧑🏾\u200d💻",
    "emoji-flags-keycaps": "🇨🇳🇮🇱🇸🇦 #️⃣ 1️⃣",
    "latin-nfc": unicodedata.normalize("NFC", _LATIN),
    "latin-nfd": unicodedata.normalize("NFD", _LATIN),
    "vietnamese-nfc": unicodedata.normalize("NFC", _VIETNAMESE),
    "vietnamese-nfd": unicodedata.normalize("NFD", _VIETNAMESE),
    "hangul-nfc": unicodedata.normalize("NFC", _HANGUL),
    "hangul-nfd": unicodedata.normalize("NFD", _HANGUL),  # conjoining jamo
    "lone-combining-mark": "\u0301",
    "full-width": "这部电影很好！（真的）：ＯＫ？　ｈｅｌｌｏ，世界。",
    "devanagari": "यह फ़िल्म बहुत अच्छी थी",
    "thai": "หนังเรื่องนี้ดีมาก",
    "invisible-among-visible": "zero\u200bwidth\u00adsoft\ufeffmark a\x00b",
    "line-separator": "first\u2028second\u2029third",
}
NFC_NFD_PAIRS = [("latin-nfc", "latin-nfd"), ("vietnamese-nfc", "vietnamese-nfd"), ("hangul-nfc", "hangul-nfd")]


# -- tokenizers -------------------------------------------------------------------------------------
def make_chinese_tokenizer(directory: str | Path, vocab_file: Path = CHINESE_VOCAB) -> Any:
    """The ``bert-base-chinese`` tokenizer (fast; ``tokenizer.json`` included) saved into ``directory``."""
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=False, tokenize_chinese_chars=True)
    if len(tokenizer.get_vocab()) != 21128:
        raise AssertionError(f"{vocab_file} gave {len(tokenizer.get_vocab())} tokens, not bert-base-chinese's 21,128")
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def words_as_tokenized(texts: Iterable[str], lowercase: bool) -> list[str]:
    """The words of ``texts`` as a BERT tokenizer of that case splits them (its normalizer, then its
    pre-tokenizer), in order of first use."""
    from transformers import BertTokenizerFast

    probe = BertTokenizerFast(vocab=dict(zip(SPECIAL_TOKENS, range(5), strict=True)), do_lower_case=lowercase)
    backend = probe.backend_tokenizer
    seen: dict[str, None] = {}
    for text in texts:
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text)):
            seen.setdefault(word, None)
    return list(seen)


def make_script_tokenizer(directory: str | Path, texts: Iterable[str], lowercase: bool = False) -> Any:
    """A BERT WordPiece tokenizer whose vocabulary holds every word of ``texts`` (see the module docstring)."""
    from transformers import BertTokenizerFast

    vocab: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *words_as_tokenized(texts, lowercase)):
        vocab.setdefault(token, len(vocab))
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=lowercase, tokenize_chinese_chars=True)
    tokenizer.save_pretrained(str(directory))
    return tokenizer


# -- models -----------------------------------------------------------------------------------------
# -- Chinese sentiment data -------------------------------------------------------------------------
POSITIVE, NEGATIVE = "正面", "负面"
CHINESE_KEYWORDS = {
    POSITIVE: ["精彩", "喜欢", "感人", "推荐", "好棒", "满意"],
    NEGATIVE: ["无聊", "讨厌", "失望", "糟糕", "太差", "难受"],
}
CHINESE_FILLER = "这部 电影 的 剧情 演员 表演 音乐 画面 我 觉得 真的 非常 有点 今天 和 朋友 一起 看了".split()
FULL_WIDTH_PUNCTUATION = "，。！？；："


def chinese_rows(count: int, seed: int) -> list[dict[str, str]]:
    """``count`` reviews (``text``, ``label``), half of each label: filler words, one or two keywords
    of the label and full-width punctuation; no spaces, as Chinese is written."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = (POSITIVE, NEGATIVE)[i % 2]
        words = rng.choices(CHINESE_FILLER, k=rng.randint(3, 8))
        for keyword in rng.sample(CHINESE_KEYWORDS[label], k=rng.randint(1, 2)):
            words.insert(rng.randint(0, len(words)), keyword)
        text = "".join(word + (rng.choice(FULL_WIDTH_PUNCTUATION) if rng.random() < 0.2 else "") for word in words)
        rows.append({"text": text + rng.choice("。！"), "label": label})
    rng.shuffle(rows)
    return rows
