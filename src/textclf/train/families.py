"""The encoder families textclf supports, refuses, and how it tells them apart: one table.

A pretrained model is known by its ``config.json`` ``model_type``. Every *supported* row is built in
tests as a tiny random model with a tokenizer of its real kind and goes through ``train`` (single
texts and text pairs), the ONNX export, the INT8 accuracy gate and ``serve``
(tests/families); every *refused* row is shown to stop ``train`` at its start. The README's family
table is generated from ``FAMILIES`` (``markdown_table``, via scripts/readme_tables.py).

A ``model_type`` that is not in the table is judged by what the pinned transformers knows of it:

- not in transformers at all (a model whose code ships with the checkpoint): refused, textclf runs
  no remote code;
- an encoder-decoder, or a causal language model without a masked-LM form (decoder-only), or a
  model with no sequence-classification head in transformers: refused, with the reason;
- any other encoder with a sequence-classification head (MobileBERT, Funnel, RoFormer, ...):
  **allowed, with a warning** in the log that it is untested. That is what a Hugging Face user
  expects of "any encoder" (``AutoModelForSequenceClassification`` loads it), and it is not a
  silent fallback: the export's ONNX-vs-PyTorch parity check and the INT8 accuracy gate still stop
  a model that does not come out right.

This module imports transformers only inside the functions that need what it knows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from textclf.errors import UnsupportedModelError

Status = Literal["supported", "refused"]

WORDPIECE = "WordPiece"
BYTE_BPE = "byte-level BPE"
UNIGRAM = "SentencePiece Unigram"

# What tests/families proves of each row (test_matrix, test_tokenizers, test_refusals).
TESTED = (
    "end to end: train (texts, and pairs) -> ONNX -> INT8 gate passed -> serve, answers = Python predictor's; "
    "ids = transformers' tokenizer's"
)
DECODER_ONLY = "a decoder-only (causal) language model; textclf fine-tunes and exports encoders only"
ENCODER_DECODER = "an encoder-decoder model; textclf fine-tunes and exports encoders only"
REFUSED_AT_START = "train refuses it at start (before any weights), naming it on the failure file's first line"


@dataclass(frozen=True)
class Family:
    """One row of the table."""

    model_type: str  # config.json "model_type"
    name: str
    status: Status
    tokenizer: str = ""  # the tokenizer model its checkpoints ship (WORDPIECE, BYTE_BPE, UNIGRAM)
    pair_template: str = ""  # how a text pair is laid out, with the family's own special tokens
    segment_ids: bool = False  # whether the model reads token_type_ids (one segment embedding per text)
    position_offset: int = 0  # positions taken before the first token (RoBERTa-style: padding id + 1)
    notes: str = ""
    reason: str = ""  # why a refused family is refused
    examples: tuple[str, ...] = ()  # hub ids of this family

    @property
    def supported(self) -> bool:
        return self.status == "supported"


FAMILIES: tuple[Family, ...] = (
    Family("bert", "BERT", "supported", WORDPIECE, "[CLS] a [SEP] b [SEP]", True,
           examples=("bert-base-uncased", "google-bert/bert-base-chinese", "sentence-transformers/all-MiniLM-L6-v2")),
    Family("distilbert", "DistilBERT", "supported", WORDPIECE, "[CLS] a [SEP] b [SEP]", False,
           notes="no token_type_ids: the two texts are told apart by [SEP] only",
           examples=("distilbert-base-uncased",)),
    Family("albert", "ALBERT", "supported", UNIGRAM, "[CLS] a [SEP] b [SEP]", True,
           notes="factorised embeddings, one layer shared by all", examples=("albert-base-v2",)),
    Family("roberta", "RoBERTa", "supported", BYTE_BPE, "<s> a </s></s> b </s>", False, position_offset=2,
           notes="positions start after the padding id: max_position_embeddings - 2 tokens (514 -> 512)",
           examples=("FacebookAI/roberta-base", "distilroberta-base")),
    Family("xlm-roberta", "XLM-RoBERTa", "supported", UNIGRAM, "<s> a </s></s> b </s>", False, position_offset=2,
           notes="multilingual; positions as RoBERTa's", examples=("FacebookAI/xlm-roberta-base",
                                                                  "intfloat/multilingual-e5-small")),
    Family("camembert", "CamemBERT", "supported", UNIGRAM, "<s> a </s></s> b </s>", False, position_offset=2,
           notes="French RoBERTa; positions as RoBERTa's", examples=("almanach/camembert-base",)),
    Family("deberta", "DeBERTa (v1)", "supported", BYTE_BPE, "[CLS] a [SEP][SEP] b [SEP]", False,
           notes="relative attention (content-to-position and back); type_vocab_size 0, so no token_type_ids",
           examples=("microsoft/deberta-base",)),
    Family("deberta-v2", "DeBERTa-v2 / v3", "supported", UNIGRAM, "[CLS] a [SEP] b [SEP]", False,
           notes="log-bucketed relative attention, exported by the TorchScript tracer and parity-checked; "
           "type_vocab_size 0 in v3, so no token_type_ids", examples=("microsoft/deberta-v3-base",
                                                                      "microsoft/deberta-v3-xsmall")),
    Family("electra", "ELECTRA", "supported", WORDPIECE, "[CLS] a [SEP] b [SEP]", True,
           notes="embedding size smaller than the hidden size", examples=("google/electra-small-discriminator",)),
    Family("mpnet", "MPNet", "supported", WORDPIECE, "<s> a </s></s> b </s>", False, position_offset=2,
           notes="relative position buckets; positions as RoBERTa's (514 -> 512)",
           examples=("microsoft/mpnet-base", "sentence-transformers/all-mpnet-base-v2")),
    Family("modernbert", "ModernBERT", "supported", BYTE_BPE, "[CLS] a [SEP] b [SEP]", False,
           notes="rotary positions; global and sliding-window layers; exported with eager attention",
           examples=("answerdotai/ModernBERT-base",)),
    Family("gpt2", "GPT-2", "refused", reason=DECODER_ONLY),
    Family("llama", "Llama", "refused", reason=DECODER_ONLY),
    Family("qwen2", "Qwen2", "refused", reason=DECODER_ONLY),
    Family("t5", "T5", "refused", reason=ENCODER_DECODER),
    Family("bart", "BART", "refused", reason=ENCODER_DECODER),
    Family("neobert", "NeoBERT", "refused", reason="its code ships with the checkpoint (trust_remote_code), "
           "and textclf runs no code from a model"),
)  # fmt: skip

BY_TYPE: dict[str, Family] = {f.model_type: f for f in FAMILIES}
SUPPORTED: tuple[str, ...] = tuple(f.model_type for f in FAMILIES if f.supported)
REFUSED: tuple[str, ...] = tuple(f.model_type for f in FAMILIES if not f.supported)


def position_offset(model_type: str | None) -> int:
    """How many of ``max_position_embeddings`` a family uses before its first token (0 when unknown)."""
    family = BY_TYPE.get(model_type or "")
    return family.position_offset if family else 0


def max_tokens(config: Mapping[str, Any]) -> int | None:
    """The longest input (special tokens included) the model's position embeddings allow, or None."""
    limit = config.get("max_position_embeddings")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        return None
    return limit - position_offset(config.get("model_type"))


def transformers_version() -> str:
    from importlib import metadata

    return metadata.version("transformers")


def in_transformers(model_type: str) -> bool:
    """Whether the pinned transformers has this model type (its configuration class)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES


@dataclass(frozen=True)
class Verdict:
    """What ``check`` decided for a config: its table row (None: not in the table), and a warning to log."""

    model_type: str
    family: Family | None
    warning: str = ""


def _refuse(model_type: str, name: str, why: str, where: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"the pretrained model {where} is a {name} (model_type {model_type!r}), which textclf does not support: {why}"
    )


def check(config: Mapping[str, Any], where: str) -> Verdict:
    """Refuse a model ``train`` cannot fine-tune, export and serve, before anything heavy is loaded.

    ``config``: the model's config.json as a dict; ``where``: how to name the model in messages.
    Raises ``UnsupportedModelError`` with a one-line reason naming the family; returns the verdict
    (with a warning for an encoder that is not in the table).
    """
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UnsupportedModelError(
            f"the pretrained model {where} has no model_type in its config.json, so its family is unknown"
        )
    family = BY_TYPE.get(model_type)
    if family is not None and not family.supported:
        raise _refuse(model_type, family.name, family.reason, where)
    if not in_transformers(model_type):
        name = family.name if family else model_type
        raise _refuse(
            model_type, name, f"transformers {transformers_version()} does not have it (textclf runs no code "
            "shipped with a model, so a model that needs trust_remote_code cannot be used)", where,
        )  # fmt: skip
    if family is not None:
        return Verdict(model_type, family)
    from transformers.models.auto import modeling_auto as auto

    if config.get("is_encoder_decoder") or model_type in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        raise _refuse(model_type, model_type, ENCODER_DECODER, where)
    if model_type not in auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise _refuse(model_type, model_type, f"transformers {transformers_version()} has no sequence-"
                      "classification model for it", where)  # fmt: skip
    if (
        model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ):
        raise _refuse(model_type, model_type, DECODER_ONLY, where)
    return Verdict(
        model_type,
        None,
        f"model_type {model_type!r} is an encoder outside textclf's tested families ({', '.join(SUPPORTED)}): "
        "it is trained and exported as they are, and the export's parity check and INT8 accuracy gate "
        "still guard the result, but no test has run this family end to end",
    )


def read_config(text: str, where: str) -> dict[str, Any]:
    """A config.json's text as a dict, or an ``UnsupportedModelError`` naming the file."""
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise UnsupportedModelError(f"the config.json of {where} is not readable JSON: {exc}") from None
    if not isinstance(config, dict):
        raise UnsupportedModelError(f"the config.json of {where} is not a JSON object")
    return config


# -- the README table -------------------------------------------------------------------------------


def markdown_table() -> str:
    """The README's family table: every row of ``FAMILIES``, and whether the pinned transformers has it."""
    version = transformers_version()
    lines = [
        f"| family | `model_type` | tokenizer | text pair | `token_type_ids` | longest input | in transformers "
        f"{version} | status | tested |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in FAMILIES:
        present = "yes" if in_transformers(f.model_type) else "**no**"
        if f.supported:
            longest = "max_position_embeddings" + (f" - {f.position_offset}" if f.position_offset else "")
            notes = "; ".join(x for x in (f.notes, "e.g. " + ", ".join(f"`{e}`" for e in f.examples)) if x)
            cells = [f.name, f"`{f.model_type}`", f.tokenizer, f"`{f.pair_template}`",
                     "yes" if f.segment_ids else "no", longest, present, f"supported: {notes}", TESTED]  # fmt: skip
        else:
            cells = [f.name, f"`{f.model_type}`", "", "", "", "", present, f"refused: {f.reason}", REFUSED_AT_START]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)
