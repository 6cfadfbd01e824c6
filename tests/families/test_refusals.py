"""Families textclf cannot support stop ``train`` at its start, with the family named on the failure
file's first line; an encoder outside the table is allowed with a warning; position limits are the
family's own."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from support.families import build_unsupported, build_untested_encoder, family_tree, train_in_process
from textclf.contract.model_dir import read_manifest
from textclf.errors import EXIT_USER_ERROR, UnsupportedModelError
from textclf.export.hf_model import model_max_length
from textclf.train import families, pretrained
from textclf.train.families import BY_TYPE, REFUSED


@pytest.mark.parametrize("model_type", REFUSED)
def test_a_refused_family_fails_at_the_start_of_train(
    model_type: str, tmp_path: Path, encoder_dir: Callable[[str], Path]
) -> None:
    family = BY_TYPE[model_type]
    tree = family_tree(tmp_path / "opt_ml", encoder_dir("bert"), pairs=False)
    for f in tree.channel("pretrained").iterdir():
        f.unlink()
    build_unsupported(model_type, tree.channel("pretrained"))
    code, log = train_in_process(tree)
    assert code == EXIT_USER_ERROR, log
    first = tree.failure.read_text(encoding="utf-8").splitlines()[0]
    assert f"is a {family.name} (model_type {model_type!r}), which textclf does not support: " in first, first
    assert family.reason.split(";")[0] in first or "trust_remote_code" in first, first
    # Before the weights (there are none) or any training: nothing was loaded, nothing written.
    assert "model:" not in log and "training on" not in log, log
    assert not tree.model_dir.exists() or not any(tree.model_dir.iterdir())


def config_dir(tmp_path: Path, config: dict) -> pretrained.ModelSource:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return pretrained.ModelSource(str(tmp_path), True, "test")


def test_an_encoder_outside_the_table_is_allowed_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    verdict = pretrained.check_family(config_dir(tmp_path, {"model_type": "mobilebert"}))
    assert verdict.family is None and verdict.model_type == "mobilebert"
    out = capsys.readouterr().out
    assert out.startswith("warning: model_type 'mobilebert' is an encoder outside textclf's tested families"), out


def test_an_encoder_outside_the_table_trains_with_one_warning_in_the_log(tmp_path: Path) -> None:
    tree = family_tree(tmp_path / "opt_ml", build_untested_encoder(tmp_path / "ernie"), pairs=False)
    code, log = train_in_process(tree)
    assert code == 0, log
    warnings = [line for line in log.splitlines() if line.startswith("warning: ")]
    assert warnings == [warnings[0]] and "model_type 'ernie' is an encoder outside" in warnings[0], warnings
    assert read_manifest(tree.model_dir).metrics["quality_gate"]["passed"]


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"model_type": "mistral"}, "decoder-only"),  # causal LM only: a decoder
        ({"model_type": "pegasus", "is_encoder_decoder": True}, "encoder-decoder"),
        ({"model_type": "mt5"}, "encoder-decoder"),  # no is_encoder_decoder key: known from transformers
        ({"model_type": "vit"}, "has no sequence-classification model"),
        ({"model_type": "my-own-bert"}, "does not have it"),  # remote code, or a newer transformers
        ({"architectures": ["BertModel"]}, "has no model_type"),
    ],
    ids=["decoder", "encoder-decoder", "encoder-decoder-by-type", "not-a-text-classifier", "unknown", "no-type"],
)
def test_a_model_outside_the_table_that_is_no_encoder_is_refused(
    tmp_path: Path, config: dict, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UnsupportedModelError, match=reason) as caught:
        pretrained.check_family(config_dir(tmp_path, config))
    assert "\n" not in str(caught.value)
    assert capsys.readouterr().out == ""


def test_textclf_export_refuses_a_refused_family_too(tmp_path: Path) -> None:
    directory = build_unsupported("gpt2", tmp_path / "gpt2")
    with pytest.raises(UnsupportedModelError, match=r"is a GPT-2 \(model_type 'gpt2'\)"):
        model_max_length(directory)


@pytest.mark.parametrize("model_type", [f.model_type for f in families.FAMILIES if f.position_offset])
def test_positions_that_start_after_the_padding_id_limit_the_length(
    model_type: str, encoder_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """RoBERTa-style families number positions from padding id + 1: 66 position embeddings hold 64 tokens."""
    config = json.loads((encoder_dir(model_type) / "config.json").read_text(encoding="utf-8"))
    assert config["max_position_embeddings"] == 66
    assert families.max_tokens(config) == 64
    # `textclf export`'s default max_seq_length, from a fine-tuned directory's config.json
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["XForSequenceClassification"],
                                                      "id2label": {"0": "a", "1": "b"}}))  # fmt: skip
    assert model_max_length(tmp_path) == 64


def test_a_max_seq_length_beyond_the_positions_fails_before_training(
    tmp_path: Path, encoder_dir: Callable[[str], Path]
) -> None:
    tree = family_tree(tmp_path / "opt_ml", encoder_dir("roberta"), pairs=False)
    hp = json.loads((tree.root / "input" / "config" / "hyperparameters.json").read_text())
    tree.hyperparameters({**hp, "max_seq_length": "66"})
    code, log = train_in_process(tree)
    assert code == EXIT_USER_ERROR, log
    first = tree.failure.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("max_seq_length 66 exceeds the 64 tokens the model's positions allow"), first
    assert "training on" not in log
