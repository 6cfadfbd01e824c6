"""The metric regexes sent to SageMaker read the lines ``train`` really prints (via format_metric)."""

from __future__ import annotations

import math
import re

import pytest

from ops.training import MAX_METRICS, metric_definitions
from textclf.contract.metrics import METRIC_NAMES, OBJECTIVES, format_metric

VALUES = [0.91234567, 1.0, 0.0, 2e-05, -0.5, 1234.5678, 3, 120]


def _first_value(regex: str, log: str) -> float | None:
    """What SageMaker does: the first capture group of the last match in the log."""
    matches = list(re.finditer(regex, log))
    return float(matches[-1].group(1)) if matches else None


@pytest.mark.parametrize("value", VALUES)
def test_every_definition_reads_its_printed_line(value: float) -> None:
    for d in metric_definitions():
        line = format_metric(d["Name"], value)
        got = _first_value(d["Regex"], f"[2026-11-22 06:00:00] INFO {line}\n")
        assert got is not None, (d, line)
        # format_metric rounds floats to 6 significant digits; the regex must give that value back.
        assert math.isclose(got, float(line.split("=")[1].rstrip(";")), rel_tol=0, abs_tol=0)


def test_the_tuner_sees_the_last_value_and_no_lookalike() -> None:
    regex = {d["Name"]: d["Regex"] for d in metric_definitions()}["validation_accuracy"]
    log = "\n".join(
        [
            format_metric("validation_accuracy", 0.80),
            format_metric("int8_validation_accuracy", 0.10),
            format_metric("validation_accuracy", 0.91),
            format_metric("int8_validation_accuracy", 0.20),
        ]
    )
    assert _first_value(regex, log) == pytest.approx(0.91)


def test_nan_is_not_reported() -> None:
    regex = {d["Name"]: d["Regex"] for d in metric_definitions()}["validation_loss"]
    assert _first_value(regex, format_metric("validation_loss", float("nan"))) is None


def test_definitions_cover_the_objectives_within_limits() -> None:
    defs = metric_definitions()
    names = [d["Name"] for d in defs]
    assert names == list(METRIC_NAMES)
    assert set(OBJECTIVES) <= set(names)
    assert len(defs) <= MAX_METRICS
    assert all(len(d["Regex"]) <= 500 for d in defs)
