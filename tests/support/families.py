"""Tiny random encoders of every family in ``textclf.train.families``, each with a tokenizer of its real kind.

No model hub is reachable in tests, so each family's tokenizer is trained here with the ``tokenizers``
library on a few hundred generated sentences (WordPiece, byte-level BPE or SentencePiece-style
Unigram, with the family's own special tokens, normalizer and pre-tokenizer), then wrapped in the
family's own transformers tokenizer class (given the trained vocabulary and merges, the class
installs the normalizer, pre-tokenizer and post-processor its real checkpoints load with) and saved
with ``save_pretrained``, next to a tiny config (2 layers, hidden 32) and random weights saved from
``AutoModel.from_config``: a Hugging Face directory such as the ``pretrained`` channel holds.

``build_encoder(model_type, directory)`` writes one; ``BUILDERS`` names the families it can build.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.training import (
    FAST_HYPERPARAMETERS,
    FILLER,
    KEYWORDS,
    SageMakerTree,
    keyword_rows,
    new_tree,
    write_csv,
)

LABELS = sorted(KEYWORDS)
# Words beyond the task's, so that the tokenizers learn real sub-words, and texts that exercise the
# normalizers (case, accents, punctuation, digits, CJK, emoji, runs of spaces).
EXTRA = (
    "restaurant reservation wonderful terrible afternoon yesterday tomorrow quickly slowly happily "
    "café naïve résumé Zürich coöperate über straße 東京 北京 数据 🙂 👍 — … 2024 3.14 don't it's"
).split()
HIDDEN, LAYERS, HEADS, POSITIONS = 32, 2, 2, 64
VOCAB_SIZE = 400


def corpus(count: int = 400, seed: int = 0) -> list[str]:
    """Generated sentences over the keyword task's words and ``EXTRA``: what each tokenizer is trained on."""
    rng = random.Random(seed)
    words = FILLER + [w for ws in KEYWORDS.values() for w in ws] + EXTRA
    lines = []
    for _ in range(count):
        sentence = " ".join(rng.choices(words, k=rng.randint(4, 14)))
        if rng.random() < 0.3:
            sentence = sentence.capitalize() + rng.choice([".", "!", "?", ","])
        lines.append(sentence)
    return lines


def keyword_sentence(rng: random.Random, label: str, low: int = 4, high: int = 10) -> str:
    words = rng.choices(FILLER, k=rng.randint(low, high))
    words.insert(rng.randint(0, len(words)), rng.choice(KEYWORDS[label]))
    return " ".join(words)


def pair_rows(count: int, seed: int, labels: Sequence[str] = LABELS) -> list[dict[str, str]]:
    """Text pairs labelled with the class of the keyword in the second text; the first holds a keyword
    of a class that is not a label (noise), or filler only."""
    rng = random.Random(seed)
    noise = [x for x in LABELS if x not in labels]
    rows = []
    for i in range(count):
        label = labels[i % len(labels)]
        first = keyword_sentence(rng, rng.choice(noise), 2, 6) if noise else " ".join(rng.choices(FILLER, k=4))
        rows.append({"text": first, "pair": keyword_sentence(rng, label, 2, 6), "label": label})
    rng.shuffle(rows)
    return rows


# -- tokenizers ---------------------------------------------------------------------------------------


def _train(tokenizer: Any, trainer: Any, lines: Sequence[str]) -> dict[str, Any]:
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return json.loads(tokenizer.to_str())["model"]


def wordpiece_vocab(special: Sequence[str], lowercase: bool = True) -> dict[str, int]:
    """A WordPiece vocabulary (special tokens first, in ``special``'s order) trained as BERT's was:
    BERT normalizer and pre-tokenizer, ``##`` continuation."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]" if "[UNK]" in special else special[3]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(special), min_frequency=1)
    return dict(_train(tok, trainer, corpus())["vocab"])


def byte_bpe(special: Sequence[str], add_prefix_space: bool = False) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE (GPT-2 / RoBERTa style: every byte is in the alphabet, no unknown tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=list(special), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    model = _train(tok, trainer, corpus())
    pairs = [m.split(" ", 1) if isinstance(m, str) else m for m in model["merges"]]  # "a b" or ["a", "b"]
    return dict(model["vocab"]), [(a, b) for a, b in pairs]


def unigram_vocab(
    special: Sequence[str], unk: str, normalizer: Any = None, pre_tokenizer: Any = None
) -> list[tuple[str, float]]:
    """A SentencePiece-style Unigram vocabulary (``▁`` marks a word start), trained with the family's
    normalizer and Metaspace pre-tokenizer; special tokens first, in ``special``'s order."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer or pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=list(special), unk_token=unk, shrinking_factor=0.75, max_piece_length=12
    )
    vocab = [(str(piece), float(score)) for piece, score in _train(tok, trainer, corpus())["vocab"]]
    order = {token: i for i, token in enumerate(special)}
    head = sorted((v for v in vocab if v[0] in order), key=lambda v: order[v[0]])
    return [(piece, 0.0) for piece, _ in head] + [v for v in vocab if v[0] not in order]


def bert_tokenizer() -> Any:
    from transformers import BertTokenizer

    return BertTokenizer(vocab=wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]), do_lower_case=True)


def albert_tokenizer() -> Any:
    from tokenizers import normalizers
    from transformers import AlbertTokenizer

    norm = normalizers.Sequence([normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(),
                                 normalizers.StripAccents(), normalizers.Lowercase()])  # fmt: skip
    vocab = unigram_vocab(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], "<unk>", norm)
    return AlbertTokenizer(vocab=vocab)


def roberta_tokenizer(cls_name: str = "RobertaTokenizer") -> Any:
    import transformers

    vocab, merges = byte_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return getattr(transformers, cls_name)(vocab=vocab, merges=merges)


def xlm_roberta_tokenizer() -> Any:
    from tokenizers import normalizers
    from transformers import XLMRobertaTokenizer

    # XLM-R's real normalizer is SentencePiece's precompiled NFKC map; NFKC is its plain equivalent here.
    vocab = unigram_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>", normalizers.NFKC())
    return XLMRobertaTokenizer(vocab=vocab)


def camembert_tokenizer() -> Any:
    from tokenizers import normalizers
    from transformers import CamembertTokenizer

    special = ["<s>NOTUSED", "<pad>", "</s>NOTUSED", "<unk>", "<unk>NOTUSED", "<s>", "</s>", "<mask>"]
    return CamembertTokenizer(vocab=unigram_vocab(special, "<unk>", normalizers.NFKC()))


def deberta_tokenizer() -> Any:
    from transformers import DebertaTokenizer

    vocab, merges = byte_bpe(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"])
    return DebertaTokenizer(vocab=vocab, merges=merges)


def deberta_v3_tokenizer() -> Any:
    from tokenizers import Regex, normalizers, pre_tokenizers
    from transformers import DebertaV2Tokenizer

    norm = normalizers.Sequence([normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(),
                                 normalizers.Strip(left=False, right=True)])  # fmt: skip
    pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    vocab = unigram_vocab(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], "[UNK]", norm, pre)
    return DebertaV2Tokenizer(vocab=vocab, unk_id=3)


def mpnet_tokenizer() -> Any:
    from transformers import MPNetTokenizer

    return MPNetTokenizer(vocab=wordpiece_vocab(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]))


def modernbert_tokenizer() -> Any:
    """ModernBERT's tokenizer is a plain ``PreTrainedTokenizerFast`` around a tokenizer.json: byte-level
    BPE (OLMo's), ``[CLS] a [SEP] b [SEP]`` with no segment ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    vocab, merges = byte_bpe(special)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(special)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"],
    )  # fmt: skip


# -- configs ------------------------------------------------------------------------------------------

COMMON = {"hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
          "intermediate_size": HIDDEN * 2, "max_position_embeddings": POSITIONS}  # fmt: skip


def _ids(tokenizer: Any) -> dict[str, int]:
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.cls_token_id,
            "eos_token_id": tokenizer.sep_token_id}  # fmt: skip


def bert_config(tok: Any) -> Any:
    from transformers import BertConfig

    return BertConfig(**COMMON, pad_token_id=tok.pad_token_id)


def distilbert_config(tok: Any) -> Any:
    from transformers import DistilBertConfig

    return DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=HIDDEN * 2,
                            max_position_embeddings=POSITIONS, pad_token_id=tok.pad_token_id)  # fmt: skip


def albert_config(tok: Any) -> Any:
    from transformers import AlbertConfig

    return AlbertConfig(**COMMON, embedding_size=16, **_ids(tok))


def roberta_config(tok: Any, cls_name: str = "RobertaConfig") -> Any:
    import transformers

    # Positions start after the padding id: 2 more than the longest input, as roberta-base's 514.
    common = {**COMMON, "max_position_embeddings": POSITIONS + tok.pad_token_id + 1}
    return getattr(transformers, cls_name)(**common, type_vocab_size=1, **_ids(tok))


def deberta_config(tok: Any) -> Any:
    from transformers import DebertaConfig

    # deberta-base: relative attention, content->position and position->content, no absolute positions.
    return DebertaConfig(**COMMON, relative_attention=True, pos_att_type=["c2p", "p2c"], position_biased_input=False,
                         max_relative_positions=-1, type_vocab_size=0, pad_token_id=tok.pad_token_id)  # fmt: skip


def deberta_v3_config(tok: Any) -> Any:
    from transformers import DebertaV2Config

    # deberta-v3-*: log-bucketed relative positions with a shared key, layer-normed relative embeddings.
    return DebertaV2Config(**COMMON, relative_attention=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                           max_relative_positions=-1, position_buckets=16, norm_rel_ebd="layer_norm",
                           share_att_key=True, type_vocab_size=0, pad_token_id=tok.pad_token_id)  # fmt: skip


def electra_config(tok: Any) -> Any:
    from transformers import ElectraConfig

    return ElectraConfig(**COMMON, embedding_size=16, pad_token_id=tok.pad_token_id)


def mpnet_config(tok: Any) -> Any:
    from transformers import MPNetConfig

    common = {**COMMON, "max_position_embeddings": POSITIONS + tok.pad_token_id + 1}
    return MPNetConfig(**common, relative_attention_num_buckets=32, **_ids(tok))


def modernbert_config(tok: Any) -> Any:
    from transformers import ModernBertConfig

    # Alternating global and sliding-window layers; a window (16) shorter than the inputs (32), so the
    # local attention mask is really used; mean pooling over the attention mask, as ModernBERT-base.
    return ModernBertConfig(
        **COMMON, global_attn_every_n_layers=2, local_attention=16, classifier_pooling="mean",
        cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id, **_ids(tok),
    )  # fmt: skip


@dataclass(frozen=True)
class Builder:
    tokenizer: Callable[[], Any]
    config: Callable[[Any], Any]


BUILDERS: dict[str, Builder] = {
    "bert": Builder(bert_tokenizer, bert_config),
    "distilbert": Builder(bert_tokenizer, distilbert_config),
    "albert": Builder(albert_tokenizer, albert_config),
    "roberta": Builder(roberta_tokenizer, roberta_config),
    "xlm-roberta": Builder(xlm_roberta_tokenizer, lambda tok: roberta_config(tok, "XLMRobertaConfig")),
    "camembert": Builder(camembert_tokenizer, lambda tok: roberta_config(tok, "CamembertConfig")),
    "deberta": Builder(deberta_tokenizer, deberta_config),
    "deberta-v2": Builder(deberta_v3_tokenizer, deberta_v3_config),
    "electra": Builder(bert_tokenizer, electra_config),
    "mpnet": Builder(mpnet_tokenizer, mpnet_config),
    "modernbert": Builder(modernbert_tokenizer, modernbert_config),
}


def build_encoder(model_type: str, directory: Path, seed: int = 0) -> Path:
    """A tiny random ``model_type`` encoder (no classification head, as a hub checkpoint before
    fine-tuning) and its tokenizer, saved into ``directory``, files readable by all."""
    import torch
    from transformers import AutoModel

    builder = BUILDERS[model_type]
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = builder.tokenizer()
    config = builder.config(tokenizer)
    config.vocab_size = len(tokenizer)
    assert config.model_type == model_type, (config.model_type, model_type)
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    for path in directory.iterdir():
        path.chmod(path.stat().st_mode | 0o444)
    return directory


def build_unsupported(model_type: str, directory: Path) -> Path:
    """A Hugging Face directory of a family ``train`` refuses: only what the check reads (config.json),
    plus a tokenizer, so that nothing but the family check can stop the job."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    directory.mkdir(parents=True, exist_ok=True)
    if model_type in CONFIG_MAPPING:
        CONFIG_MAPPING[model_type]().save_pretrained(str(directory))
    else:  # a family the pinned transformers lacks: the config.json its checkpoints ship
        config = {"model_type": model_type, "architectures": ["CustomForSequenceClassification"],
                  "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}}  # fmt: skip
        (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    bert_tokenizer().save_pretrained(str(directory))
    return directory


# -- the train job, run in this process -----------------------------------------------------------------

TRAIN_LABELS = ("sports", "tech")  # two classes: a tiny model learns them in 90 steps with wide margins
HYPERPARAMETERS = {**FAST_HYPERPARAMETERS, "epochs": "6", "checkpoint_every_steps": "0", "keep_full_precision": "false"}


def family_tree(root: Path, encoder_dir: Path, pairs: bool) -> SageMakerTree:
    """An /opt/ml tree: 240 training and 60 validation rows of the keyword task (as text pairs with
    ``pairs``), ``encoder_dir`` in the ``pretrained`` channel, ``HYPERPARAMETERS``."""
    tree = new_tree(root)
    if pairs:
        train, validation = pair_rows(240, 1, TRAIN_LABELS), pair_rows(60, 2, TRAIN_LABELS)
    else:
        train, validation = keyword_rows(240, 1, TRAIN_LABELS), keyword_rows(60, 2, TRAIN_LABELS)
    write_csv(tree.channel("train") / "train.csv", train)
    write_csv(tree.channel("validation") / "validation.csv", validation)
    shutil.copytree(encoder_dir, tree.channel("pretrained"), dirs_exist_ok=True)
    tree.hyperparameters({**HYPERPARAMETERS, **({"text_pair_column": "pair"} if pairs else {})})
    return tree


def train_in_process(tree: SageMakerTree) -> tuple[int, str]:
    """``textclf train`` (``textclf.train.job.main``, what the CLI runs) on ``tree`` in this process:
    the exit code and what it printed. In-process, because importing torch and transformers in a
    fresh interpreter costs more than training a tiny model; the CLI wrapper is tested in tests/train."""
    import torch

    from textclf.train import job

    threads, handler = torch.get_num_threads(), signal.getsignal(signal.SIGTERM)
    env = {"SM_ROOT": str(tree.root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = job.main()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        signal.signal(signal.SIGTERM, handler)
        torch.set_num_threads(threads)
    return code, out.getvalue()


def build_untested_encoder(directory: Path, config_class: str = "ErnieConfig") -> Path:
    """A tiny encoder of a family outside the table (ERNIE by default: BERT-shaped, WordPiece)."""
    import torch
    import transformers

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = bert_tokenizer()
    config = getattr(transformers, config_class)(
        **COMMON, pad_token_id=tokenizer.pad_token_id, vocab_size=len(tokenizer)
    )
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
