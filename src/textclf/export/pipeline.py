"""A fine-tuned Hugging Face classifier -> a serve-ready model directory, behind an accuracy gate.

    HF directory -> FP32 ONNX (dynamic axes, parity-checked) -> INT8 dynamic quantization
                 -> tokenizer.json + manifest, sealed (sha256) -> accuracy gate on an eval set
                 -> moved into place (``model_dir.install_model_dir``: a ``code/`` already there is kept,
                    and its files stay sealed only if the previous manifest sealed them unchanged)

``train`` calls ``export_model_dir``; ``textclf export SRC DST`` (``textclf.export.cli``) too.
Reading the HF directory is ``hf_model``'s job, the graph ``onnx_graph``'s, INT8 ``quantization``'s
and the comparison with PyTorch ``gate``'s.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from textclf import __version__
from textclf.contract.model_dir import (
    FULL_PRECISION_DIR,
    MODEL_FILE,
    Manifest,
    install_model_dir,
    new_staging_dir,
    write_manifest,
)
from textclf.errors import ConfigError
from textclf.export.gate import AccuracyGate, EvalSet
from textclf.export.hf_model import (
    keep_full_precision,
    labels_and_problem_type,
    load_classifier,
    model_max_length,
    save_tokenizer,
)
from textclf.export.onnx_graph import export_onnx, model_input_names
from textclf.export.options import ExportOptions
from textclf.export.quantization import optimize_graph, quantize_int8
from textclf.model.encoding import TextEncoder

_SAMPLE = ("a short sample", "a somewhat longer sample text, so that the export batch holds padding")
# A batch of another size and length (one text as long as max_seq_length allows, one a single word):
# the traced graph must give PyTorch's logits beyond the shape it was traced with (relative-position
# families compute buckets from the sequence length, which a careless trace bakes in as a constant).
_PROBE = ("word", " ".join(_SAMPLE) * 64, _SAMPLE[0])


def library_versions() -> dict[str, str]:
    versions = {"textclf": __version__, "python": sys.version.split()[0]}
    for dist in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


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
            tokenizer_dir = save_tokenizer(tokenizer, staging, work)
            encoder = TextEncoder.from_dir(staging, options.max_seq_length, options.truncation)
            sample = encoder.pad(encoder.encode(list(_SAMPLE), list(reversed(_SAMPLE)) if options.text_pair else None))
            probe = encoder.pad(encoder.encode(list(_PROBE), list(reversed(_PROBE)) if options.text_pair else None))
            fp32_onnx = work / "model.fp32.onnx"
            names = export_onnx(model, fp32_onnx, sample, names, also=[probe])
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
                keep_full_precision(model, hf_dir, tokenizer_dir, staging / FULL_PRECISION_DIR)
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
                gate = AccuracyGate(model, names, encoder, eval_set, options, problem_type, threads)
                gate.apply(manifest, staging, fp32_onnx)
            write_manifest(staging, manifest)  # seal again: metrics (and maybe model.onnx) changed
        install_model_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
