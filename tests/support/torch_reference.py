"""PyTorch FP32 reference outputs on exactly the inputs the predictor builds (the shared encoder)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch

from textclf.export.onnx_graph import model_input_names
from textclf.model.encoding import Encoded, TextEncoder
from textclf.model.prediction import probabilities


@cache
def hf_model(hf_dir: Path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(hf_dir, attn_implementation="eager").eval()


def torch_probs(hf_dir: Path, encoded: list[Encoded], encoder: TextEncoder, problem_type: str) -> np.ndarray:
    """One input at a time (no padding at all): the plainest possible reference."""
    model = hf_model(hf_dir)
    names = model_input_names(model)
    rows = []
    with torch.inference_mode():
        for enc in encoded:
            arrays = encoder.pad([enc])
            logits = model(**{n: torch.from_numpy(arrays[n]) for n in names}).logits.numpy()
            rows.append(probabilities(logits, problem_type)[0])
    return np.stack(rows)
