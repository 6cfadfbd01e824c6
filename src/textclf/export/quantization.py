"""FP32 ONNX -> INT8 ONNX by dynamic quantization (weights INT8 offline, activations per call).

Signed weights (``QuantType.QInt8``): unsigned weights ran 2-3x slower on the AVX-512 VNNI CPUs this
project targets. Graph fusion by ``onnxruntime.transformers.optimizer`` before quantizing is
available but off by default: it gave no consistent gain on top of INT8 here (ORT's own session-time
fusions already apply), see ``bench/``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model


@contextlib.contextmanager
def _quiet_preprocess_hint() -> Iterator[None]:
    """The quantizer logs a hint to run shape pre-processing on the root logger at every call; that
    step matters for static (calibrated) quantization of convolutional models, not here."""

    def drop(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def quantize_int8(src: Path, dst: Path, *, per_channel: bool = False) -> dict[str, Any]:
    """Write the dynamic-INT8 version of ``src`` to ``dst``; returns what the manifest records."""
    with _quiet_preprocess_hint():
        _quantize(src, dst, per_channel)
    return {"method": "dynamic", "weight_type": "QInt8", "per_channel": per_channel}


def _quantize(src: Path, dst: Path, per_channel: bool) -> None:
    quantize_dynamic(
        src,
        dst,
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        # A fused graph leaves some tensors without inferred types; they are all float here.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def optimize_graph(src: Path, dst: Path, num_heads: int, hidden_size: int) -> None:
    """Offline BERT fusions (Attention, SkipLayerNormalization, BiasGelu...) for CPU, FP32 in and out."""
    logging.getLogger("onnxruntime.transformers").setLevel(logging.WARNING)
    model = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, use_gpu=False)
    model.save_model_to_file(str(dst))
