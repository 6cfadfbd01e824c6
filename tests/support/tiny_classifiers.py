"""Tiny fine-tuned classifiers for the export and predictor tests.

Agreement between INT8 and FP32 means nothing on a random-weight model (its logits are near ties),
so each fixture model is trained for a few dozen steps on a synthetic keyword task until it is
confident: a text's class is the class of the one keyword it holds among filler words. Models are
BERT-shaped (hidden 32, 2 layers) so that all of this takes seconds on one thread.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

torch.set_num_threads(1)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = (
    "the a an is was this that it of to in on with for as and or but not very quite really we they you "
    "then there here some many few day time way thing place people year work life world hand part case"
).split()
KEYWORDS = {
    "sports": ["football", "tennis", "goal", "match"],
    "politics": ["election", "senate", "vote", "minister"],
    "tech": ["software", "laptop", "robot", "internet"],
}
LABELS = list(KEYWORDS)
MAX_LEN = 32


@dataclass
class Example:
    text: str
    pair: str | None
    label: int | list[int]


def _filler(rng: random.Random, low: int = 3, high: int = 12) -> list[str]:
    return [rng.choice(FILLER) for _ in range(rng.randint(low, high))]


def _with(words: list[str], keyword: str, rng: random.Random) -> str:
    words.insert(rng.randint(0, len(words)), keyword)
    return " ".join(words)


def single_examples(n: int, seed: int, labels: list[str] = LABELS) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.randrange(len(labels))
        out.append(Example(_with(_filler(rng), rng.choice(KEYWORDS[labels[label]]), rng), None, label))
    return out


def pair_examples(n: int, seed: int) -> list[Example]:
    """The class of the keyword in the *second* text; the first holds a keyword of another class, so
    the model has to tell the segments apart (token_type_ids matter)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.randrange(len(LABELS))
        decoy = rng.choice([i for i in range(len(LABELS)) if i != label])
        first = _with(_filler(rng, 2, 6), rng.choice(KEYWORDS[LABELS[decoy]]), rng)
        second = _with(_filler(rng, 2, 6), rng.choice(KEYWORDS[LABELS[label]]), rng)
        out.append(Example(first, second, label))
    return out


def multi_label_examples(n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        hot = [int(rng.random() < 0.4) for _ in LABELS]
        words = _filler(rng)
        for i, on in enumerate(hot):
            if on:
                words.insert(rng.randint(0, len(words)), rng.choice(KEYWORDS[LABELS[i]]))
        out.append(Example(" ".join(words), None, hot))
    return out


def _tokenizer(directory: Path):
    from transformers import BertTokenizer

    words = SPECIAL + FILLER + [w for ws in KEYWORDS.values() for w in ws]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def _fine_tune(model, tokenizer, examples: list[Example], multi_label: bool, steps: int, lr: float, seed: int) -> None:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = rng.sample(examples, 32)
        texts = [e.text for e in batch]
        pairs = [e.pair for e in batch] if batch[0].pair is not None else None
        enc = tokenizer(texts, pairs, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
        if "token_type_ids" not in model.forward.__code__.co_varnames:
            enc.pop("token_type_ids", None)
        labels = torch.tensor([e.label for e in batch], dtype=torch.float32 if multi_label else torch.long)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def build_model(
    directory: Path,
    kind: str = "bert",
    task: str = "single",
    labels: list[str] = LABELS,
    *,
    steps: int = 120,
    lr: float = 1e-3,
    hidden: int = 32,
) -> Path:
    """Write a fine-tuned tiny classifier (``kind`` bert or distilbert; ``task`` single, pair or multi)."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(directory)
    common = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    if task == "multi":
        common["problem_type"] = "multi_label_classification"
    torch.manual_seed(0)
    vocab = len(tokenizer.get_vocab())
    if kind == "distilbert":
        config = DistilBertConfig(vocab_size=vocab, dim=hidden, n_layers=2, n_heads=2, hidden_dim=2 * hidden,
                                  max_position_embeddings=128, **common)  # fmt: skip
        model = DistilBertForSequenceClassification(config)
    else:
        config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=2 * hidden, max_position_embeddings=128, **common)  # fmt: skip
        model = BertForSequenceClassification(config)
    examples = {"single": single_examples, "pair": pair_examples, "multi": multi_label_examples}[task](2000, seed=1)
    _fine_tune(model, tokenizer, examples, task == "multi", steps, lr, seed=2)
    model.save_pretrained(str(directory))
    return directory


def eval_set_of(examples: list[Example]):
    from textclf.export.gate import EvalSet

    pairs = [e.pair for e in examples] if examples[0].pair is not None else None
    return EvalSet([e.text for e in examples], pairs, [e.label for e in examples])  # type: ignore[arg-type]


def export_tiny(hf_dir: Path, out: Path, examples: list[Example] | None, **options) -> Path:
    """Export with the tests' max_seq_length, the gate run on ``examples`` when given."""
    from textclf.export.options import ExportOptions
    from textclf.export.pipeline import export_model_dir

    opts = ExportOptions(max_seq_length=MAX_LEN, **options)
    export_model_dir(hf_dir, out, opts, eval_set_of(examples) if examples else None, source_model="tiny-test")
    return out
