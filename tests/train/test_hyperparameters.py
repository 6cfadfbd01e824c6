"""Hyperparameters arrive as strings, shaped differently by each SageMaker SDK."""

from __future__ import annotations

import pytest

from textclf.errors import ConfigError
from textclf.train.hyperparameters import Hyperparameters, markdown_table, parse


def test_defaults_without_any_hyperparameter() -> None:
    hp = parse({})
    assert hp == Hyperparameters()
    assert hp.objective_metric == "validation_accuracy"


def test_numbers_from_strings() -> None:
    hp = parse({"epochs": "5", "learning_rate": "2e-5", "batch_size": " 16 ", "warmup_ratio": "0.1"})
    assert (hp.epochs, hp.learning_rate, hp.batch_size, hp.warmup_ratio) == (5, 2e-5, 16, 0.1)


@pytest.mark.parametrize(("raw", "expected"), [("True", True), ("true", True), ("1", True), ("False", False),
                                               ("false", False), ("0", False)])  # fmt: skip
def test_booleans_from_every_sdk(raw: str, expected: bool) -> None:
    assert parse({"keep_full_precision": raw}).keep_full_precision is expected


def test_lists_as_json_or_comma_separated() -> None:
    assert parse({"labels": '["neg", "pos"]'}).labels == ["neg", "pos"]
    assert parse({"labels": "neg, pos"}).labels == ["neg", "pos"]


def test_string_quoted_twice_by_sdk_v3() -> None:
    assert parse({"text_column": '"sentence"'}).text_column == "sentence"


def test_platform_keys_are_tolerated() -> None:
    raw = {
        "_tuning_objective_metric": "validation_accuracy",
        "sagemaker_estimator_class_name": '"Estimator"',
        "sagemaker_estimator_module": '"sagemaker.estimator"',
        "epochs": "2",
    }
    assert parse(raw).epochs == 2


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown hyperparameter 'epoch'; valid names: .*epochs"):
        parse({"epoch": "3"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"epochs": "three"}, r"hyperparameter epochs: .*got 'three'"),
        ({"epochs": "0"}, r"hyperparameter epochs: .*greater than or equal to 1"),
        ({"truncation": "middle"}, r"hyperparameter truncation: .*'head'"),
        ({"keep_full_precision": "maybe"}, r"hyperparameter keep_full_precision"),
        ({"validation_split": "0.9"}, r"hyperparameter validation_split"),
        ({"text_column": "a", "text_pair_column": "a"}, r"text_pair_column must differ"),
        ({"device": "gpu"}, r"hyperparameter device: .*'auto', 'cpu' or 'cuda'.*got 'gpu'"),
    ],
)
def test_bad_values_name_the_hyperparameter(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(raw)


def test_readme_table_lists_every_hyperparameter() -> None:
    table = markdown_table()
    for name in Hyperparameters.model_fields:
        assert f"| `{name}` |" in table
