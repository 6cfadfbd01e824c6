"""The accuracy gate: the sealed model directory, loaded as ``serve`` loads it, against PyTorch FP32.

Both sides score the same encoded held-out examples. INT8 may lose at most ``max_accuracy_drop``
points of accuracy; beyond that the export fails, or (``on_accuracy_drop=fp32``) ships FP32 ONNX,
which must then match PyTorch. What was measured goes into the manifest's metrics.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textclf.contract.model_dir import MODEL_FILE, Manifest, ProblemType, write_manifest
from textclf.errors import DataError, QualityGateError
from textclf.export.onnx_graph import torch_logits
from textclf.export.options import ExportOptions
from textclf.model.encoding import TextEncoder
from textclf.model.prediction import decide, probabilities
from textclf.model.predictor import Classifier

log = logging.getLogger(__name__)


@dataclass
class EvalSet:
    """Held-out examples for the accuracy gate. ``labels``: ids, or multi-hot rows for multi_label."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[int] | list[list[int]]


@dataclass
class GateResult:
    metrics: dict[str, Any]
    passed: bool
    message: str


def _check_eval_set(eval_set: EvalSet, num_labels: int, problem_type: ProblemType, text_pair: bool) -> np.ndarray:
    n = len(eval_set.texts)
    if n == 0:
        raise DataError("the evaluation set for the accuracy gate is empty")
    if len(eval_set.labels) != n or (eval_set.pairs is not None and len(eval_set.pairs) != n):
        raise DataError("the evaluation set's texts, pairs and labels differ in length")
    if text_pair != (eval_set.pairs is not None):
        raise DataError(
            "the model classifies text pairs but the evaluation set has none"
            if text_pair
            else "the evaluation set has text pairs but the model classifies single texts (set text_pair)"
        )
    labels = np.asarray(eval_set.labels)
    if problem_type == "multi_label":
        if labels.shape != (n, num_labels) or not np.isin(labels, (0, 1)).all():
            raise DataError(f"multi-label evaluation labels must be 0/1 rows of {num_labels} values")
        return labels.astype(bool)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise DataError("evaluation labels must be label ids (integers)")
    if labels.max() >= num_labels:
        raise DataError(f"evaluation label id {labels.max()} is out of range for {num_labels} labels")
    return labels


def _score(pred: np.ndarray, other: np.ndarray) -> float:
    """Share of rows where ``pred`` equals ``other`` (whole label sets for multi-label)."""
    same = pred == other
    return float((same.all(axis=1) if same.ndim == 2 else same).mean())


class AccuracyGate:
    """PyTorch FP32's answers on the evaluation set, computed once, and the comparisons against them."""

    def __init__(
        self,
        model: Any,
        input_names: list[str],
        encoder: TextEncoder,
        eval_set: EvalSet,
        options: ExportOptions,
        problem_type: ProblemType,
        threads: int,
    ) -> None:
        self.eval_set, self.options, self.problem_type, self.threads = eval_set, options, problem_type, threads
        self.labels = _check_eval_set(eval_set, model.config.num_labels, problem_type, options.text_pair)
        encoded = encoder.encode(eval_set.texts, eval_set.pairs)
        probs = np.empty((len(encoded), model.config.num_labels), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
        for start in range(0, len(order), options.eval_batch_size):
            chunk = order[start : start + options.eval_batch_size]
            logits = torch_logits(model, encoder.pad([encoded[i] for i in chunk]), input_names)
            probs[chunk] = probabilities(logits, problem_type)
        self.reference = decide(probs, problem_type, options.multi_label_threshold)
        self.fp32_accuracy = _score(self.reference, self.labels)

    def evaluate(self, prefix: str, model_dir: Path) -> GateResult:
        """Evaluate a sealed model directory as serve loads it; compare with PyTorch FP32."""
        classifier = Classifier.load(model_dir, threads=self.threads)
        probs = classifier.scores(self.eval_set.texts, self.eval_set.pairs, batch_size=self.options.eval_batch_size)
        pred = decide(probs, self.problem_type, self.options.multi_label_threshold)
        accuracy = _score(pred, self.labels)
        drop = round((self.fp32_accuracy - accuracy) * 100, 6)
        metrics = {f"{prefix}_validation_accuracy": accuracy, f"{prefix}_label_agreement": _score(pred, self.reference)}
        name = prefix.replace("_", " ").upper()
        message = (
            f"{name} accuracy {accuracy:.2%} is {drop:.2f} points below FP32 {self.fp32_accuracy:.2%}, "
            f"more than max_accuracy_drop={self.options.max_accuracy_drop:g}"
        )
        return GateResult(metrics, drop <= self.options.max_accuracy_drop, message)

    def apply(self, manifest: Manifest, staging: Path, fp32_onnx: Path) -> None:
        """Fill ``manifest.metrics`` (and switch to FP32 ONNX when allowed and needed), or raise."""
        options = self.options
        gate: dict[str, Any] = {
            "ran": True,
            "examples": len(self.eval_set.texts),
            "max_accuracy_drop": options.max_accuracy_drop,
            "on_accuracy_drop": options.on_accuracy_drop,
            "accuracy": "exact label-set match" if self.problem_type == "multi_label" else "top-1",
        }
        manifest.metrics["fp32_validation_accuracy"] = self.fp32_accuracy
        manifest.metrics["quality_gate"] = gate
        prefix = "int8" if options.precision == "int8" else "onnx_fp32"
        result = self.evaluate(prefix, staging)
        manifest.metrics.update(result.metrics)
        gate["passed"] = result.passed
        gate["accuracy_drop_points"] = round(
            (self.fp32_accuracy - result.metrics[f"{prefix}_validation_accuracy"]) * 100, 4
        )
        if result.passed:
            gate["shipped"] = options.precision
            return
        if options.precision == "fp32":  # ONNX FP32 should match PyTorch: an export problem, not INT8's
            raise QualityGateError(f"{result.message}; the FP32 ONNX export does not reproduce the PyTorch model")
        if options.on_accuracy_drop == "fail":
            raise QualityGateError(f"{result.message}; set on_accuracy_drop=fp32 to ship FP32 ONNX instead")
        log.warning("%s: shipping FP32 ONNX instead (on_accuracy_drop=fp32)", result.message)
        shutil.copy2(fp32_onnx, staging / MODEL_FILE)
        manifest.precision = "fp32"
        manifest.quantization = {"method": "none", "rejected": {**manifest.quantization, "reason": result.message}}
        write_manifest(staging, manifest)
        fallback = self.evaluate("onnx_fp32", staging)
        manifest.metrics.update(fallback.metrics)
        gate["shipped"] = "fp32"
        if not fallback.passed:
            raise QualityGateError(f"{fallback.message}; the FP32 ONNX export does not reproduce the PyTorch model")
