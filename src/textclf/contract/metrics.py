"""The metric lines ``train`` prints and the regexes SageMaker uses to read them.

One source for both sides: ``train`` prints through ``format_metric`` and ``ops/`` passes
``METRIC_DEFINITIONS`` to CreateTrainingJob / CreateHyperParameterTuningJob, so a tuning job's
objective can never drift from what the container prints. The tuner keeps the *latest* value of
a metric, so ``train`` prints the best model's validation metrics last.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

# "\b" keeps "validation_accuracy" from matching inside "int8_validation_accuracy".
_VALUE = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

METRIC_NAMES: tuple[str, ...] = (
    "epoch",
    "train_loss",
    "learning_rate",
    "samples_per_second",
    "validation_loss",
    "validation_accuracy",
    "validation_macro_f1",
    "validation_micro_f1",
    "validation_weighted_f1",
    "test_loss",
    "test_accuracy",
    "test_macro_f1",
    "test_micro_f1",
    "int8_validation_accuracy",
    "int8_label_agreement",
)

# What picks the best weights (the ``eval_metric`` hyperparameter); ``validation_<metric>`` is the
# tuning objective, minimized for the loss and maximized for the rest.
EvalMetric = Literal["accuracy", "macro_f1", "micro_f1", "weighted_f1", "loss"]


def metric_regex(name: str) -> str:
    return rf"\b{re.escape(name)}={_VALUE};"


METRIC_DEFINITIONS: list[dict[str, str]] = [{"Name": name, "Regex": metric_regex(name)} for name in METRIC_NAMES]


def format_metric(name: str, value: float) -> str:
    """One metric line, ``name=value;``, the shape the regexes read (a NaN prints as ``nan``,
    which the regexes deliberately do not match, so a diverged run reports no value)."""
    if name not in METRIC_NAMES and not name.startswith(("validation_", "test_")):
        raise ValueError(f"unknown metric {name!r}")
    return f"{name}={value:.6g};" if isinstance(value, float) else f"{name}={value};"


def objective_name(eval_metric: str) -> str:
    """The tuning objective for an ``eval_metric`` hyperparameter value."""
    return f"validation_{eval_metric}"


# Objectives a tuning job can use, with their direction.
OBJECTIVES: dict[str, str] = {
    objective_name(m): "Minimize" if m == "loss" else "Maximize" for m in get_args(EvalMetric)
}
