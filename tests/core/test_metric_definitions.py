"""The metric lines train prints must be read back by the regexes ops sends to SageMaker."""

from __future__ import annotations

import re

import pytest

from textclf.contract.metrics import METRIC_DEFINITIONS, METRIC_NAMES, OBJECTIVES, format_metric


@pytest.mark.parametrize("value", [0.9123, 1e-5, 3, 0.0, 12345.678])
def test_every_definition_reads_its_own_line(value: float) -> None:
    for definition in METRIC_DEFINITIONS:
        line = format_metric(definition["Name"], value)
        match = re.search(definition["Regex"], f"[1,mdx]<stdout>:{line}")
        assert match, (definition, line)
        assert float(match.group(1)) == pytest.approx(float(value), rel=1e-5)


def test_prefixed_names_do_not_collide() -> None:
    regex = next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == "validation_accuracy")
    assert re.search(regex, format_metric("int8_validation_accuracy", 0.5)) is None


def test_nan_is_not_reported() -> None:
    regex = next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == "validation_loss")
    assert re.search(regex, format_metric("validation_loss", float("nan"))) is None


def test_objectives_are_defined_metrics_within_sagemaker_limits() -> None:
    assert set(OBJECTIVES) <= set(METRIC_NAMES)
    assert len(METRIC_DEFINITIONS) <= 20  # tuning jobs allow 20 (the API says 40)
    assert all(len(d["Regex"]) <= 500 and len(d["Name"]) <= 255 for d in METRIC_DEFINITIONS)


def test_unknown_metric_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        format_metric("acuracy", 1.0)
