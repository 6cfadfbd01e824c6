"""What an export does: precision, the accuracy gate's policy, and how the model reads its inputs.

``train`` builds these from its hyperparameters (``ExportOptions.from_hyperparameters``, the one
place the names are mapped) and ``textclf export`` from its command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from textclf.contract.model_dir import PRECISIONS, TRUNCATIONS, Precision, Truncation
from textclf.errors import ConfigError

if TYPE_CHECKING:
    from textclf.train.hyperparameters import Hyperparameters

OnAccuracyDrop = Literal["fail", "fp32"]  # fail the export, or ship FP32 ONNX when INT8 loses too much
ON_ACCURACY_DROP: tuple[OnAccuracyDrop, ...] = get_args(OnAccuracyDrop)


@dataclass
class ExportOptions:
    precision: Precision = "int8"
    # Per-channel weight scales: MiniLM on SST-2 lost 0.34 points instead of 0.80 for ~3% more latency
    # (bench/results/export.md).
    per_channel: bool = True
    max_accuracy_drop: float = 1.0  # points of accuracy INT8 may lose against PyTorch FP32
    on_accuracy_drop: OnAccuracyDrop = "fail"
    keep_full_precision: bool = True  # copy the HF weights (safetensors) + config + tokenizer to hf/
    max_seq_length: int = 128
    truncation: Truncation = "head"
    text_pair: bool = False
    multi_label_threshold: float = 0.5
    optimize: bool = False  # offline ORT BERT fusions before quantizing; no consistent gain measured
    eval_batch_size: int = 32

    @classmethod
    def from_hyperparameters(cls, hp: Hyperparameters) -> ExportOptions:
        """The export ``train`` runs after fine-tuning."""
        return cls(
            precision=hp.export_format,
            per_channel=hp.quantize_per_channel,
            max_accuracy_drop=hp.max_accuracy_drop,
            on_accuracy_drop=hp.on_accuracy_drop,
            keep_full_precision=hp.keep_full_precision,
            max_seq_length=hp.max_seq_length,
            truncation=hp.truncation,
            text_pair=bool(hp.text_pair_column),
            multi_label_threshold=hp.multi_label_threshold,
        )

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.on_accuracy_drop not in ON_ACCURACY_DROP:
            raise ConfigError(f"on_accuracy_drop must be one of {ON_ACCURACY_DROP}, got {self.on_accuracy_drop!r}")
        if not 0.0 <= self.max_accuracy_drop <= 100.0:
            raise ConfigError(f"max_accuracy_drop is in points, from 0 to 100; got {self.max_accuracy_drop!r}")
        if self.truncation not in TRUNCATIONS:
            raise ConfigError(f"truncation must be one of {TRUNCATIONS}, got {self.truncation!r}")
        if not 0.0 < self.multi_label_threshold < 1.0:
            raise ConfigError(f"multi_label_threshold must be between 0 and 1, got {self.multi_label_threshold!r}")
        if self.max_seq_length < 8:
            raise ConfigError(f"max_seq_length must be at least 8, got {self.max_seq_length}")
