"""Fixtures of the language tests: a Chinese model trained by the real ``train`` job (skipped without
the shared ``bert-base-chinese`` vocabulary), a tiny model whose vocabulary covers every test script,
and the real serving stack on each."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.languages import (
    CHINESE_VOCAB,
    NO_SHARED_DATA,
    SCRIPT_TEXTS,
    chinese_rows,
    make_chinese_tokenizer,
    make_script_tokenizer,
)
from support.serving import ServeProcess, make_sm_root, sharpen_head
from support.tiny_model import save_tiny_bert
from support.training import FAST_HYPERPARAMETERS, SageMakerTree, new_tree, write_csv
from textclf.model.predictor import Classifier

CHINESE_HYPERPARAMETERS = {
    **FAST_HYPERPARAMETERS,
    "epochs": "4",
    # 60 validation rows: one row that INT8 flips is 1.7 points, over the default gate of 1; what is
    # tested here is the Chinese path, not quantization
    "max_accuracy_drop": "10",
    "keep_full_precision": "false",
}


@dataclass
class TrainedJob:
    sm: SageMakerTree
    result: subprocess.CompletedProcess[str]
    pretrained: Path  # the pretrained channel: the tokenizer training used

    @property
    def model_dir(self) -> Path:
        return self.sm.model_dir


@pytest.fixture(scope="session")
def chinese_vocab() -> Path:
    if not CHINESE_VOCAB.is_file():
        pytest.skip(NO_SHARED_DATA)
    return CHINESE_VOCAB


def write_utf8(path: Path, text: str, bom: bool) -> Path:
    """``text`` as UTF-8, with a byte-order mark first if ``bom`` (what Excel and Notepad write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def json_lines(rows: list[dict[str, str]], ensure_ascii: bool) -> str:
    import json

    return "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows)


@pytest.fixture(scope="session")
def chinese_job(chinese_vocab: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedJob:
    """``textclf train`` on Chinese reviews (labels 正面 / 负面) in four files of the train channel,
    CSV and JSON Lines, each with and without a UTF-8 byte-order mark, and JSON Lines validation;
    the pretrained channel holds a tiny random BERT over the bert-base-chinese vocabulary."""
    sm = new_tree(tmp_path_factory.mktemp("chinese-job") / "opt_ml")
    pretrained = sm.channel("pretrained")
    save_tiny_bert(pretrained, make_chinese_tokenizer(pretrained, chinese_vocab), labels=None)
    rows = chinese_rows(320, seed=1)
    train = sm.channel("train")
    write_csv(train / "a-reviews-bom.csv", rows[:80])
    csv_text = (train / "a-reviews-bom.csv").read_text(encoding="utf-8")
    write_utf8(train / "a-reviews-bom.csv", csv_text, bom=True)
    write_csv(train / "b-reviews.csv", rows[80:160])
    write_utf8(train / "c-reviews-bom.jsonl", json_lines(rows[160:240], ensure_ascii=False), bom=True)
    write_utf8(train / "d-reviews.json", json_lines(rows[240:], ensure_ascii=True), bom=False)  # \u escapes
    write_utf8(sm.channel("validation") / "validation.jsonl", json_lines(chinese_rows(60, seed=2), False), bom=True)
    sm.hyperparameters(CHINESE_HYPERPARAMETERS)
    result = sm.run(timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return TrainedJob(sm, result, pretrained)


@pytest.fixture(scope="session")
def chinese_classifier(chinese_job: TrainedJob) -> Classifier:
    return Classifier.load(chinese_job.model_dir, threads=1)


@pytest.fixture(scope="session")
def chinese_stack(chinese_job: TrainedJob, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    yield from _serve(chinese_job.model_dir, tmp_path_factory.mktemp("chinese-serve"))


def _serve(model_dir: Path, work: Path) -> Iterator[ServeProcess]:
    """The real stack on ``model_dir`` with one worker, once it answers /ping."""
    with ServeProcess(make_sm_root(model_dir, work / "opt-ml"), work / "logs", workers=1) as serve:
        serve.wait_ready()
        yield serve


@dataclass
class ExportedModel:
    hf_dir: Path  # the fine-tuned-style HF directory (its tokenizer is what training would use)
    model_dir: Path


SCRIPT_LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="session")
def script_model(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    """A tiny cased BERT whose vocabulary holds every word of ``SCRIPT_TEXTS`` (NFC and NFD forms are
    different tokens to a cased tokenizer), exported to INT8 as ``train`` would."""
    from textclf.export.options import ExportOptions
    from textclf.export.pipeline import export_model_dir

    work = tmp_path_factory.mktemp("script-model")
    hf = work / "hf"
    save_tiny_bert(hf, make_script_tokenizer(hf, SCRIPT_TEXTS.values(), lowercase=False), SCRIPT_LABELS, seed=3)
    sharpen_head(hf)
    export_model_dir(hf, work / "model", ExportOptions(keep_full_precision=False, max_seq_length=64))
    return ExportedModel(hf, work / "model")


@pytest.fixture(scope="session")
def script_stack(script_model: ExportedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    yield from _serve(script_model.model_dir, tmp_path_factory.mktemp("script-serve"))
