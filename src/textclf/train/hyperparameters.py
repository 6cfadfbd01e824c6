"""Training hyperparameters: one typed, documented set, parsed from SageMaker's strings.

SageMaker passes every value as a string, and the SDKs disagree on booleans (``"True"`` from v2
and the v3 tuner, ``"true"`` from v3 ``ModelTrainer``), so parsing goes through pydantic's lax
mode (``"3"`` -> 3, ``"True"``/``"true"``/``"1"`` -> True) and JSON for lists. Unknown names fail
with the list of valid ones; keys the platform adds (``_tuning_objective_metric``,
``sagemaker_*``) are tolerated. The README table is generated from this class.
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from textclf.contract.metrics import EvalMetric, objective_name
from textclf.contract.model_dir import Precision, ProblemType, Truncation
from textclf.errors import ConfigError
from textclf.export.options import OnAccuracyDrop

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
Device = Literal["auto", "cpu", "cuda"]
MixedPrecision = Literal["auto", "no", "fp16", "bf16"]


class Hyperparameters(BaseModel):
    """Every knob of ``train``. Defaults are right for a SageMaker GPU job and work on CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Model
    model_name_or_path: str = Field(
        DEFAULT_MODEL,
        description="Hugging Face hub id or local path of the pretrained encoder; the `pretrained` "
        "channel, when present, takes precedence.",
    )
    max_seq_length: int = Field(128, ge=8, le=8192, description="Tokens per example, special tokens included.")
    truncation: Truncation = Field(
        "head",
        description="Which tokens of a long text to keep: the first, the last, or the first quarter "
        "plus the last three quarters (Sun et al. 2019; good for long reviews).",
    )
    freeze_layers: int = Field(
        0, ge=-1, description="Freeze the embeddings and the first N encoder layers (-1: the whole encoder)."
    )

    # Data
    text_column: str = Field("text", description="Column (CSV/TSV header or JSON key) holding the text.")
    text_pair_column: str = Field("", description="Column with the second text of a pair; empty for single texts.")
    label_column: str = Field("label", description="Column holding the label (string or integer).")
    problem_type: ProblemType = Field(
        "single_label", description="One label per text, or any number of labels per text."
    )
    labels: list[str] = Field(
        default_factory=list,
        description='Label names in id order as a JSON list (`["neg","pos"]`); empty: sorted labels of `train`.',
    )
    label_delimiter: str = Field(
        "|", min_length=1, description="Separator of several labels in one CSV/TSV cell (multi_label)."
    )
    validation_split: float = Field(
        0.1, gt=0.0, lt=0.5, description="Stratified share of `train` held out when there is no `validation` channel."
    )
    max_train_samples: int = Field(0, ge=0, description="Use at most this many training rows (0: all).")

    # Optimisation
    epochs: int = Field(3, ge=1, description="Passes over the training data.")
    max_steps: int = Field(0, ge=0, description="Stop after this many optimizer steps (0: run all epochs).")
    learning_rate: float = Field(5e-5, gt=0.0, lt=1.0, description="Peak AdamW learning rate.")
    batch_size: int = Field(32, ge=1, description="Examples per device per forward pass.")
    eval_batch_size: int = Field(64, ge=1, description="Examples per forward pass when evaluating.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Forward passes per optimizer step.")
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0, description="Share of steps with linear warmup.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay (not on biases and LayerNorm).")
    max_grad_norm: float = Field(1.0, ge=0.0, description="Gradient clipping norm (0: off).")
    device: Device = Field(
        "auto",
        description="`auto`: the GPUs when torch can use them, and a failure (not a silent CPU run) when the host "
        "has GPUs it cannot use; `cuda`: GPUs or fail; `cpu`: the CPU even on a GPU host.",
    )
    mixed_precision: MixedPrecision = Field(
        "auto",
        description="GPU autocast: `auto` takes bf16 where the GPU has it natively (A10G, A100, H100...), "
        "else fp16 with loss scaling (T4); `no`: FP32 (TF32 matmuls on Ampere+); always off on CPU.",
    )
    seed: int = Field(42, description="Seed for data order, splits and initialisation.")
    num_threads: int = Field(0, ge=0, description="CPU threads for torch (0: the CPUs this container may use).")

    # Evaluation and early stopping
    eval_metric: EvalMetric = Field(
        "accuracy", description="Metric that picks the best weights; printed last as `validation_<metric>`."
    )
    eval_steps: int = Field(0, ge=0, description="Also evaluate every N optimizer steps (0: only at epoch end).")
    early_stopping_patience: int = Field(
        0, ge=0, description="Stop after N evaluations without improvement (0: never)."
    )
    multi_label_threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="Score above which a label is set (multi_label)."
    )

    # Checkpoints and logs
    checkpoint_every_steps: int = Field(
        200, ge=0, description="Save a resumable checkpoint every N optimizer steps (0: only at epoch end)."
    )
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep.")
    log_every_steps: int = Field(20, ge=1, description="Print a progress line every N optimizer steps.")

    # Export
    export_format: Precision = Field("int8", description="Serve INT8 (dynamic quantization) or FP32 ONNX.")
    quantize_per_channel: bool = Field(
        True,
        description="Per-channel INT8 weight scales (false: one scale per tensor, ~3% faster, less accurate).",
    )
    max_accuracy_drop: float = Field(
        1.0, ge=0.0, le=100.0, description="Largest allowed validation accuracy drop of INT8 vs FP32, in points."
    )
    on_accuracy_drop: OnAccuracyDrop = Field(
        "fail", description="When INT8 loses more than allowed: fail the job, or ship FP32 ONNX instead."
    )
    keep_full_precision: bool = Field(
        True, description="Also save the fine-tuned Hugging Face weights (safetensors) under `hf/` for re-training."
    )

    @model_validator(mode="after")
    def _check_combinations(self) -> Hyperparameters:
        if self.text_pair_column and self.text_pair_column == self.text_column:
            raise ValueError("text_pair_column must differ from text_column")
        return self

    @property
    def objective_metric(self) -> str:
        return objective_name(self.eval_metric)


def _is_platform_key(key: str) -> bool:
    return key.startswith(("_tuning_objective_metric", "sagemaker_", "_sagemaker"))


def _decode(name: str, raw: Any) -> Any:
    """Undo SageMaker's stringification where the field's type needs it (lists, JSON-quoted strings)."""
    if not isinstance(raw, str):
        return raw
    annotation = Hyperparameters.model_fields[name].annotation
    if get_origin(annotation) is list:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return [part.strip() for part in raw.split(",") if part.strip()]
    if annotation is str and len(raw) >= 2 and raw[0] == raw[-1] == '"':
        # v3 ModelTrainer json.dumps() non-strings; a string that went through it twice arrives quoted.
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw.strip() if annotation in (int, float, bool) else raw


def parse(raw: dict[str, Any]) -> Hyperparameters:
    """Parse ``hyperparameters.json`` content into typed hyperparameters, or raise ``ConfigError``."""
    valid = sorted(Hyperparameters.model_fields)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if _is_platform_key(key):
            continue
        if key not in Hyperparameters.model_fields:
            raise ConfigError(f"unknown hyperparameter {key!r}; valid names: {', '.join(valid)}")
        values[key] = _decode(key, value)
    try:
        return Hyperparameters(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(part) for part in err["loc"]) or "hyperparameters"
        got = f" (got {values[loc]!r})" if loc in values else ""
        raise ConfigError(f"hyperparameter {loc}: {err['msg']}{got}") from None


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def markdown_table() -> str:
    """The README's hyperparameter table, generated so it cannot drift from the code."""
    rows = ["| name | type | default | meaning |", "|---|---|---|---|"]
    for name, info in Hyperparameters.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = f"`{json.dumps(default) if not isinstance(default, str) else default}`" if default != "" else "(empty)"
        rows.append(f"| `{name}` | {_type_name(info.annotation)} | {shown} | {info.description} |")
    return "\n".join(rows)
