"""Running a classifier over encoded examples, and the metrics of its predictions.

``EncodedSet`` holds a channel tokenized once by the shared ``TextEncoder`` (the same code serving
uses); ``model_inputs`` pads a batch of it into tensors; ``predict`` returns logits;
``compute_metrics`` turns logits and labels into the numbers ``train`` prints (scikit-learn does
the arithmetic), and ``metric_lines`` prints them through ``format_metric``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)
from transformers import PreTrainedModel

from textclf.contract.metrics import format_metric
from textclf.model.encoding import Encoded, TextEncoder
from textclf.train.data import LabelMap, TextDataset

AVERAGES = ("macro", "micro", "weighted")


@dataclass
class EncodedSet:
    """A dataset tokenized once: examples with special tokens, labels as ids or multi-hot rows."""

    examples: list[Encoded]
    labels: np.ndarray  # int64 [N] (single-label) or float32 [N, num_labels] (multi-label)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(e.ids) for e in self.examples), dtype=np.int64, count=len(self.examples))


def encode_dataset(encoder: TextEncoder, data: TextDataset, label_map: LabelMap) -> EncodedSet:
    ids = label_map.encode(data)
    labels = np.asarray(ids, dtype=np.float32 if label_map.multi_label else np.int64)
    return EncodedSet(encoder.encode(data.texts, data.pairs), labels)


def model_inputs(
    encoder: TextEncoder, data: EncodedSet, indices: Sequence[int], input_names: Sequence[str], device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A dynamically padded batch as the model's keyword arguments, and its labels.

    On a GPU the host tensors are pinned, so the copies are asynchronous: a caller that builds the
    next batch before running the current one overlaps the copy with compute.
    """
    padded = encoder.pad([data.examples[i] for i in indices])
    pin = device.type == "cuda"

    def to_device(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        return (tensor.pin_memory() if pin else tensor).to(device, non_blocking=True)

    inputs = {name: to_device(padded[name]) for name in input_names}
    return inputs, to_device(data.labels[np.asarray(indices)])


def loss_sum(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Summed loss of a batch (cross entropy, or BCE-with-logits averaged over labels), in fp32.

    Summing lets the caller divide by the examples of a whole accumulation group, so every example
    weighs the same however the group's micro-batches are sized.
    """
    logits = logits.float()
    if multi_label:
        per_label = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        return per_label.mean(dim=1).sum()
    return torch.nn.functional.cross_entropy(logits, labels, reduction="sum")


@torch.no_grad()
def predict(
    model: PreTrainedModel,
    encoder: TextEncoder,
    data: EncodedSet,
    indices: Sequence[int],
    input_names: Sequence[str],
    device: torch.device,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Logits (float32) for ``indices`` of ``data``, batched by length so padding stays small."""
    was_training = model.training
    model.eval()
    order = sorted(indices, key=lambda i: len(data.examples[i].ids))
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        inputs, _ = model_inputs(encoder, data, chunk, input_names, device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(**inputs).logits
        for i, row in zip(chunk, logits.float().cpu().numpy(), strict=True):
            out[i] = row
    model.train(was_training)
    if not out:  # this rank's shard is empty (fewer rows than ranks)
        return np.zeros((0, model.config.num_labels or 0), dtype=np.float32)
    return np.stack([out[i] for i in indices])


def predicted_labels(logits: np.ndarray, multi_label: bool, threshold: float) -> np.ndarray:
    if multi_label:
        return (1.0 / (1.0 + np.exp(-logits)) >= threshold).astype(np.int64)
    return logits.argmax(axis=1)


def compute_metrics(logits: np.ndarray, labels: np.ndarray, label_map: LabelMap, threshold: float = 0.5) -> dict:
    """loss, accuracy (subset accuracy for multi-label), macro/micro/weighted F1, per-class precision/recall."""
    multi = label_map.multi_label
    loss = float(loss_sum(torch.from_numpy(logits), torch.from_numpy(labels), multi)) / max(len(labels), 1)
    y_pred = predicted_labels(logits, multi, threshold)
    y_true = labels.astype(np.int64)
    metrics: dict[str, Any] = {"loss": loss, "accuracy": float(accuracy_score(y_true, y_pred))}
    for average in AVERAGES:
        metrics[f"{average}_f1"] = float(f1_score(y_true, y_pred, average=average, zero_division=0))
    everyone = list(range(len(label_map)))
    precision, recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=everyone, average=None, zero_division=0
    )
    metrics["precision"] = {name: float(v) for name, v in zip(label_map.names, precision, strict=True)}
    metrics["recall"] = {name: float(v) for name, v in zip(label_map.names, recall, strict=True)}
    return metrics


def confusion(logits: np.ndarray, labels: np.ndarray, label_map: LabelMap, threshold: float = 0.5) -> np.ndarray:
    """[L, L] (true x predicted) for single-label; [L, 2, 2] (per label: TN FP / FN TP) for multi-label."""
    y_pred = predicted_labels(logits, label_map.multi_label, threshold)
    if label_map.multi_label:
        return multilabel_confusion_matrix(labels.astype(np.int64), y_pred)
    return confusion_matrix(labels, y_pred, labels=list(range(len(label_map))))


def metric_name(label: str) -> str:
    """A label as it may appear in a metric name (the tuner's regexes need no spaces, '=' or ';')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


def metric_lines(prefix: str, metrics: dict, last: str | None = None) -> list[str]:
    """``prefix_name=value;`` lines, per-class ones included; the metric ``last`` (e.g. the tuning
    objective ``accuracy``) comes last, because a tuning job keeps the latest value it reads."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, float | int)}
    for kind in ("precision", "recall"):
        for label, value in metrics.get(kind, {}).items():
            scalars[f"{kind}_{metric_name(label)}"] = value
    names = [n for n in scalars if n != last] + ([last] if last in scalars else [])
    return [format_metric(f"{prefix}_{name}", float(scalars[name])) for name in names]
