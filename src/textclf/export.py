"""A fine-tuned Hugging Face classifier -> a serve-ready model directory, behind an accuracy gate.

    HF directory -> FP32 ONNX (dynamic axes, parity-checked) -> INT8 dynamic quantization
                 -> tokenizer.json + manifest, sealed (sha256) -> accuracy gate on an eval set
                 -> moved into place (``artifact.install_model_dir``)

The gate evaluates the sealed directory through ``Classifier.load``, exactly as ``serve`` will load
it, against PyTorch FP32 on the same encoded inputs. Labels and the problem type come from the HF
config. ``train`` calls ``export_model_dir``; ``textclf export SRC DST`` calls ``main``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from textclf import __version__
from textclf.artifact import (
    FULL_PRECISION_DIR,
    MODEL_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    TRUNCATIONS,
    Manifest,
    install_model_dir,
    new_staging_dir,
    write_manifest,
)
from textclf.encoding import Encoded, TextEncoder
from textclf.errors import ConfigError, DataError, ModelLoadError, QualityGateError, UserError
from textclf.predictor import Classifier, decide, probabilities

log = logging.getLogger(__name__)

MULTI_LABEL = "multi_label_classification"  # config.problem_type of a multi-label HF model
_SAMPLE = ("a short sample", "a somewhat longer sample text, so that the export batch holds padding")


@dataclass
class EvalSet:
    """Held-out examples for the accuracy gate. ``labels``: ids, or multi-hot rows for multi_label."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[int] | list[list[int]]


@dataclass
class ExportOptions:
    precision: str = "int8"  # "int8" or "fp32"
    # Per-channel weight scales: MiniLM on SST-2 lost 0.34 points instead of 0.80 for ~3% more latency
    # (bench/results/export.md).
    per_channel: bool = True
    max_accuracy_drop: float = 1.0  # points of accuracy INT8 may lose against PyTorch FP32
    on_accuracy_drop: str = "fail"  # "fail", or "fp32": ship FP32 ONNX when INT8 loses too much
    keep_full_precision: bool = True  # copy the HF weights (safetensors) + config + tokenizer to hf/
    max_seq_length: int = 128
    truncation: str = "head"
    text_pair: bool = False
    multi_label_threshold: float = 0.5
    optimize: bool = False  # offline ORT BERT fusions before quantizing; no consistent gain measured
    eval_batch_size: int = 32

    def check(self) -> None:
        if self.precision not in ("int8", "fp32"):
            raise ConfigError(f"precision must be int8 or fp32, got {self.precision!r}")
        if self.on_accuracy_drop not in ("fail", "fp32"):
            raise ConfigError(f"on_accuracy_drop must be fail or fp32, got {self.on_accuracy_drop!r}")
        if not 0.0 <= self.max_accuracy_drop <= 100.0:
            raise ConfigError(f"max_accuracy_drop is in points, from 0 to 100; got {self.max_accuracy_drop!r}")
        if self.truncation not in TRUNCATIONS:
            raise ConfigError(f"truncation must be one of {TRUNCATIONS}, got {self.truncation!r}")
        if not 0.0 < self.multi_label_threshold < 1.0:
            raise ConfigError(f"multi_label_threshold must be between 0 and 1, got {self.multi_label_threshold!r}")
        if self.max_seq_length < 8:
            raise ConfigError(f"max_seq_length must be at least 8, got {self.max_seq_length}")


# -- the Hugging Face side ---------------------------------------------------------------------------
def _read_config(hf_dir: Path) -> dict[str, Any]:
    if not hf_dir.exists():
        raise ModelLoadError(f"{hf_dir} does not exist: expected a fine-tuned Hugging Face model directory")
    if not hf_dir.is_dir():
        raise ModelLoadError(f"{hf_dir} is not a directory: expected a fine-tuned Hugging Face model directory")
    config_file = hf_dir / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{hf_dir} is not a Hugging Face model directory: it has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config_file} is not readable JSON: {exc}") from exc
    architectures = config.get("architectures") or []
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelLoadError(
            f"{hf_dir} holds a {', '.join(architectures)}, not a sequence-classification model; "
            "fine-tune it first (textclf train)"
        )
    single_output = len(config.get("id2label") or {}) == 1 and config.get("problem_type") != MULTI_LABEL
    if config.get("problem_type") == "regression" or single_output:
        raise ModelLoadError(f"{hf_dir} is a regression model; textclf exports classifiers only")
    return config


def model_max_length(hf_dir: str | Path, cap: int = 512) -> int:
    """The longest input the model and its tokenizer accept (at most ``cap``), from their JSON configs."""
    hf_dir = Path(hf_dir)
    config = _read_config(hf_dir)
    limits = [cap, int(config.get("max_position_embeddings") or cap)]
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):  # positions start after the pad id
        limits.append(limits[1] - 2)
    with contextlib.suppress(OSError, ValueError, TypeError):
        tok = json.loads((hf_dir / TOKENIZER_CONFIG_FILE).read_text(encoding="utf-8"))
        if 0 < int(tok.get("model_max_length") or 0) < 1_000_000:
            limits.append(int(tok["model_max_length"]))
    return min(limits)


def load_classifier(hf_dir: Path) -> tuple[Any, Any]:
    """The PyTorch model (FP32, eager attention, eval mode) and its tokenizer, or a clear refusal."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _read_config(hf_dir)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the "newly initialized weights" warning is turned into an error below
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            hf_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
        )
        tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelLoadError(f"cannot load {hf_dir} as a sequence classifier with its tokenizer: {exc}") from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
    if missing := info.get("missing_keys"):
        shown = ", ".join(sorted(missing)[:4]) + (", ..." if len(missing) > 4 else "")
        raise ModelLoadError(
            f"{hf_dir} is not a fine-tuned classifier: its weights lack {shown}; fine-tune it first (textclf train)"
        )
    return model.eval(), tokenizer


def labels_and_problem_type(config: Any) -> tuple[list[str], str]:
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    if sorted(id2label) != list(range(config.num_labels)):
        raise ModelLoadError(f"config id2label {config.id2label} does not name labels 0..{config.num_labels - 1}")
    labels = [id2label[i] for i in range(config.num_labels)]
    if len(set(labels)) != len(labels):
        raise ModelLoadError(f"config id2label has duplicate label names: {labels}")
    return labels, "multi_label" if config.problem_type == MULTI_LABEL else "single_label"


def library_versions() -> dict[str, str]:
    versions = {"textclf": __version__, "python": sys.version.split()[0]}
    for dist in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def _save_tokenizer(tokenizer: Any, staging: Path, work: Path) -> Path:
    """tokenizer.json + tokenizer_config.json into ``staging``; the whole save stays in ``work``."""
    saved = work / "tokenizer"
    tokenizer.save_pretrained(saved)
    if not (saved / TOKENIZER_FILE).is_file():
        raise ModelLoadError(
            f"the tokenizer ({type(tokenizer).__name__}) cannot be saved as {TOKENIZER_FILE}: "
            "a fast (tokenizers-backed) tokenizer is needed"
        )
    for name in (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE):
        if (saved / name).is_file():
            shutil.copy2(saved / name, staging / name)
    return saved


def _keep_full_precision(model: Any, hf_dir: Path, tokenizer_dir: Path, dest: Path) -> None:
    """The fine-tuned weights as they are (safetensors copied byte for byte when present), config and tokenizer."""
    dest.mkdir()
    weights = sorted(hf_dir.glob("*.safetensors")) + sorted(hf_dir.glob("*.safetensors.index.json"))
    if weights:
        for file in [hf_dir / "config.json", *weights]:
            shutil.copy2(file, dest / file.name)
    else:  # e.g. pytorch_model.bin only: write safetensors
        model.save_pretrained(dest)
    for file in tokenizer_dir.iterdir():
        if file.is_file():
            shutil.copy2(file, dest / file.name)


# -- the accuracy gate -------------------------------------------------------------------------------
def _check_eval_set(eval_set: EvalSet, num_labels: int, problem_type: str, text_pair: bool) -> np.ndarray:
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


def _torch_probabilities(
    model: Any, names: list[str], encoded: list[Encoded], encoder: TextEncoder, problem_type: str, batch_size: int
) -> np.ndarray:
    from textclf.onnx_export import torch_logits

    out = np.empty((len(encoded), model.config.num_labels), dtype=np.float32)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        out[chunk] = probabilities(torch_logits(model, encoder.pad([encoded[i] for i in chunk]), names), problem_type)
    return out


def _score(pred: np.ndarray, other: np.ndarray) -> float:
    """Share of rows where ``pred`` equals ``other`` (whole label sets for multi-label)."""
    same = pred == other
    return float((same.all(axis=1) if same.ndim == 2 else same).mean())


@dataclass
class _GateResult:
    metrics: dict[str, Any]
    passed: bool
    message: str


def _run_gate(
    prefix: str,
    staging: Path,
    reference: np.ndarray,
    fp32_acc: float,
    labels: np.ndarray,
    eval_set: EvalSet,
    options: ExportOptions,
    problem_type: str,
    threads: int,
) -> _GateResult:
    """Evaluate the sealed staging directory as serve loads it; compare with PyTorch FP32."""
    classifier = Classifier.load(staging, threads=threads)
    probs = classifier.scores(eval_set.texts, eval_set.pairs, batch_size=options.eval_batch_size)
    pred = decide(probs, problem_type, options.multi_label_threshold)
    acc = _score(pred, labels)
    drop = round((fp32_acc - acc) * 100, 6)
    metrics = {f"{prefix}_validation_accuracy": acc, f"{prefix}_label_agreement": _score(pred, reference)}
    name = prefix.replace("_", " ").upper()
    message = (
        f"{name} accuracy {acc:.2%} is {drop:.2f} points below FP32 {fp32_acc:.2%}, "
        f"more than max_accuracy_drop={options.max_accuracy_drop:g}"
    )
    return _GateResult(metrics, drop <= options.max_accuracy_drop, message)


@contextlib.contextmanager
def _work_dir(near: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir=near, prefix=".textclf-export-work-") as work:
        yield Path(work)


def export_model_dir(
    hf_dir: Path,
    out_dir: Path,
    options: ExportOptions,
    eval_set: EvalSet | None = None,
    metrics: dict | None = None,
    source_model: str = "",
) -> Manifest:
    """Export ``hf_dir`` into the model directory ``out_dir``; returns the sealed manifest.

    Raises ``QualityGateError`` when INT8 loses more than ``max_accuracy_drop`` points of accuracy
    on ``eval_set`` (unless ``on_accuracy_drop="fp32"``), ``ModelLoadError`` for an unusable
    ``hf_dir``, ``ArtifactError`` when ``out_dir`` holds files that are not a model directory's.
    Nothing is left in ``out_dir`` unless the export succeeds.
    """
    import torch

    from textclf.onnx_export import export_onnx, model_input_names
    from textclf.quantization import optimize_graph, quantize_int8

    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    options.check()
    limit = model_max_length(hf_dir, cap=1 << 20)
    if options.max_seq_length > limit:
        raise ConfigError(f"max_seq_length {options.max_seq_length} exceeds what {hf_dir} accepts ({limit})")
    model, tokenizer = load_classifier(hf_dir)
    labels, problem_type = labels_and_problem_type(model.config)
    names = model_input_names(model)
    threads = max(1, torch.get_num_threads())
    staging = new_staging_dir(out_dir)
    try:
        with _work_dir(staging.parent) as work:
            tokenizer_dir = _save_tokenizer(tokenizer, staging, work)
            encoder = TextEncoder.from_dir(staging, options.max_seq_length, options.truncation)  # type: ignore[arg-type]
            sample = encoder.pad(encoder.encode(list(_SAMPLE), list(reversed(_SAMPLE)) if options.text_pair else None))
            fp32_onnx = work / "model.fp32.onnx"
            export_onnx(model, fp32_onnx, sample, names)
            quantization: dict[str, Any] = {"method": "none"}
            if options.precision == "int8":
                source = fp32_onnx
                if options.optimize:
                    source = work / "model.fused.onnx"
                    optimize_graph(fp32_onnx, source, model.config.num_attention_heads, model.config.hidden_size)
                quantization = quantize_int8(source, staging / MODEL_FILE, per_channel=options.per_channel)
                quantization["optimized"] = options.optimize
            else:
                shutil.copy2(fp32_onnx, staging / MODEL_FILE)
            if options.keep_full_precision:
                _keep_full_precision(model, hf_dir, tokenizer_dir, staging / FULL_PRECISION_DIR)
            manifest = Manifest(
                labels=labels,
                problem_type=problem_type,
                max_seq_length=options.max_seq_length,
                truncation=options.truncation,
                text_pair=options.text_pair,
                multi_label_threshold=options.multi_label_threshold,
                precision=options.precision,
                quantization=quantization,
                source_model=source_model or str(model.config.name_or_path or hf_dir),
                model_inputs=names,
                metrics=dict(metrics or {}),
                versions=library_versions(),
            )
            write_manifest(staging, manifest)
            if eval_set is None:
                manifest.metrics["quality_gate"] = {"ran": False, "reason": "no evaluation set was given"}
            else:
                _gate(manifest, staging, fp32_onnx, model, names, encoder, eval_set, options, threads)
            write_manifest(staging, manifest)  # seal again: metrics (and maybe model.onnx) changed
        install_model_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _gate(
    manifest: Manifest,
    staging: Path,
    fp32_onnx: Path,
    model: Any,
    names: list[str],
    encoder: TextEncoder,
    eval_set: EvalSet,
    options: ExportOptions,
    threads: int,
) -> None:
    """Fill ``manifest.metrics`` (and switch to FP32 ONNX when allowed and needed), or raise."""
    problem_type = manifest.problem_type
    labels = _check_eval_set(eval_set, manifest.num_labels, problem_type, options.text_pair)
    encoded = encoder.encode(eval_set.texts, eval_set.pairs)
    fp32_probs = _torch_probabilities(model, names, encoded, encoder, problem_type, options.eval_batch_size)
    reference = decide(fp32_probs, problem_type, options.multi_label_threshold)
    fp32_acc = _score(reference, labels)
    gate: dict[str, Any] = {
        "ran": True,
        "examples": len(eval_set.texts),
        "max_accuracy_drop": options.max_accuracy_drop,
        "on_accuracy_drop": options.on_accuracy_drop,
        "accuracy": "exact label-set match" if problem_type == "multi_label" else "top-1",
    }
    manifest.metrics["fp32_validation_accuracy"] = fp32_acc
    manifest.metrics["quality_gate"] = gate
    prefix = "int8" if options.precision == "int8" else "onnx_fp32"
    result = _run_gate(prefix, staging, reference, fp32_acc, labels, eval_set, options, problem_type, threads)
    manifest.metrics.update(result.metrics)
    gate["passed"] = result.passed
    gate["accuracy_drop_points"] = round((fp32_acc - result.metrics[f"{prefix}_validation_accuracy"]) * 100, 4)
    if result.passed:
        gate["shipped"] = options.precision
        return
    if options.precision == "fp32":  # ONNX FP32 should match PyTorch: this is an export problem, not INT8's
        raise QualityGateError(f"{result.message}; the FP32 ONNX export does not reproduce the PyTorch model")
    if options.on_accuracy_drop == "fail":
        raise QualityGateError(f"{result.message}; set on_accuracy_drop=fp32 to ship FP32 ONNX instead")
    log.warning("%s: shipping FP32 ONNX instead (on_accuracy_drop=fp32)", result.message)
    shutil.copy2(fp32_onnx, staging / MODEL_FILE)
    manifest.precision = "fp32"
    manifest.quantization = {"method": "none", "rejected": {**manifest.quantization, "reason": result.message}}
    write_manifest(staging, manifest)
    fallback = _run_gate("onnx_fp32", staging, reference, fp32_acc, labels, eval_set, options, problem_type, threads)
    manifest.metrics.update(fallback.metrics)
    gate["shipped"] = "fp32"
    if not fallback.passed:
        raise QualityGateError(f"{fallback.message}; the FP32 ONNX export does not reproduce the PyTorch model")


# -- textclf export SRC DST ----------------------------------------------------------------------------
def read_eval_set(path: Path, labels: list[str], multi_label: bool, columns: Any) -> EvalSet:
    """A validation file (CSV / TSV / JSON Lines, read by ``textclf.data``) as an ``EvalSet``.

    Label names are matched to the model's labels; integer labels are taken as ids when no name
    matches (GLUE files say ``0``/``1`` where a model may call its labels ``negative``/``positive``).
    """
    from textclf.data import read_file

    if not path.is_file():
        raise DataError(f"validation file {path} does not exist")
    data = read_file(path, columns, multi_label=multi_label)
    index = {name: i for i, name in enumerate(labels)}

    def label_id(name: str) -> int:
        if name in index:
            return index[name]
        if name.isdigit() and int(name) < len(labels):
            return int(name)
        raise DataError(f"{path}: label {name!r} is not one of the model's labels {labels}")

    if multi_label:
        rows = []
        for names in data.labels:
            hot = [0] * len(labels)
            for name in names:
                hot[label_id(name)] = 1
            rows.append(hot)
        return EvalSet(data.texts, data.pairs, rows)
    return EvalSet(data.texts, data.pairs, [label_id(names[0]) for names in data.labels])


def main(args: argparse.Namespace) -> int:
    """``textclf export SRC DST [...]``; exit 0, or 2 with a one-line reason."""
    try:
        src, dst = Path(args.src), Path(args.dst)
        text_pair = bool(args.text_pair or args.text_pair_column)
        options = ExportOptions(
            precision=args.precision,
            per_channel=args.per_channel,
            max_accuracy_drop=args.max_accuracy_drop,
            on_accuracy_drop=args.on_accuracy_drop,
            keep_full_precision=not args.no_full_precision,
            max_seq_length=args.max_seq_length or model_max_length(src),
            truncation=args.truncation,
            text_pair=text_pair,
        )
        eval_set = None
        if args.validation:
            config = _read_config(src)
            names = [str(v) for _, v in sorted((int(k), v) for k, v in (config.get("id2label") or {}).items())]
            if not names:
                raise ModelLoadError(f"{src}/config.json names no labels (id2label)")
            if text_pair and not args.text_pair_column:
                raise ConfigError("--text-pair needs --text-pair-column to read pairs from the validation file")
            from textclf.data import Columns

            columns = Columns(text=args.text_column, pair=args.text_pair_column, label=args.label_column)
            eval_set = read_eval_set(Path(args.validation), names, config.get("problem_type") == MULTI_LABEL, columns)
        manifest = export_model_dir(src, dst, options, eval_set, source_model=str(src))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = (dst / MODEL_FILE).stat().st_size / 1e6
    print(f"exported {src} -> {dst}: {manifest.precision} {MODEL_FILE} {size:.1f} MB, labels {manifest.labels}")
    m = manifest.metrics
    if m.get("quality_gate", {}).get("ran"):
        key = "int8" if manifest.precision == "int8" else "onnx_fp32"
        print(
            f"accuracy gate on {m['quality_gate']['examples']} examples: "
            f"PyTorch FP32 {m['fp32_validation_accuracy']:.2%}, {key} {m[f'{key}_validation_accuracy']:.2%}, "
            f"label agreement {m[f'{key}_label_agreement']:.2%}"
        )
    else:
        print("accuracy gate: not run (no --validation file)")
    return 0
