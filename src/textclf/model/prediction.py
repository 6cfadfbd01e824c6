"""What a prediction is: scores from logits, labels from scores, and the shape of one answer.

Numpy only: the exporter's accuracy gate, the predictor, the business rules and the codecs all
speak these types, and the serving master process (which never loads ONNX Runtime) reads them too.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from textclf.contract.model_dir import ProblemType


class LabelScore(TypedDict):
    label: str
    score: float


Prediction = list[LabelScore]  # one input's answer: labels with their scores, best first


def probabilities(logits: np.ndarray, problem_type: ProblemType) -> np.ndarray:
    """Softmax over labels (single_label) or independent sigmoids (multi_label), as float32."""
    logits = np.asarray(logits, dtype=np.float32)
    if problem_type == "multi_label":
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def decide(probs: np.ndarray, problem_type: ProblemType, threshold: float = 0.5) -> np.ndarray:
    """Predicted label ids (N,) for single_label, or a boolean label matrix (N, L) for multi_label."""
    if problem_type == "multi_label":
        return probs >= threshold
    return probs.argmax(axis=-1)
