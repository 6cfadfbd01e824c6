"""The exporter's parity check covers batches of other sizes and lengths than the one traced.

A family whose forward turns a tensor's shape into a Python number (relative-position buckets are
the usual place) gets that number baked into the traced graph as a constant: right at the traced
length, wrong at every other. The export must refuse such a graph, not ship it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from support.tiny_model import make_tiny_model
from textclf.export.onnx_graph import export_onnx, model_input_names


class LengthBaked(torch.nn.Module):
    """A classifier whose logits depend on the sequence length through a Python float."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                return_dict: bool = True) -> Any:  # fmt: skip
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        out.logits = out.logits + float(input_ids.shape[1])  # a constant once traced
        return out


def batch(rows: int, length: int) -> dict[str, np.ndarray]:
    ids = np.full((rows, length), 7, dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def test_a_graph_right_only_at_the_traced_length_is_refused(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(make_tiny_model(tmp_path / "hf")).eval()
    names = model_input_names(model)
    assert export_onnx(model, tmp_path / "ok.onnx", batch(2, 6), names, also=[batch(3, 11)]) == names
    baked = LengthBaked(model).eval()
    with pytest.raises(RuntimeError, match=r"logits differ from PyTorch by 5 on a 3x11 batch"):
        export_onnx(baked, tmp_path / "baked.onnx", batch(2, 6), names, also=[batch(3, 11)])
