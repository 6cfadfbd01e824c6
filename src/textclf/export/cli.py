"""``textclf export SRC DST [...]``: a fine-tuned Hugging Face directory -> a model directory.

The arguments are declared in ``textclf.cli`` (which must not import torch to build its parser).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from textclf.contract.model_dir import MODEL_FILE
from textclf.errors import EXIT_OK, EXIT_USER_ERROR, ConfigError, DataError, ModelLoadError, UserError
from textclf.export.gate import EvalSet
from textclf.export.hf_model import MULTI_LABEL, model_max_length, read_config
from textclf.export.options import ExportOptions
from textclf.export.pipeline import export_model_dir
from textclf.train.data import Columns, LabelMap, read_file


def read_eval_set(path: Path, labels: list[str], multi_label: bool, columns: Columns) -> EvalSet:
    """A validation file (CSV / TSV / JSON Lines, read as training data is) as an ``EvalSet``.

    Label names are matched to the model's labels; integer labels are taken as ids when no name
    matches (``LabelMap.encode(numeric_ids=True)``).
    """
    if not path.is_file():
        raise DataError(f"validation file {path} does not exist")
    data = read_file(path, columns, multi_label=multi_label)
    return EvalSet(data.texts, data.pairs, LabelMap(tuple(labels), multi_label).encode(data, numeric_ids=True))


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
            config = read_config(src)
            names = [str(v) for _, v in sorted((int(k), v) for k, v in (config.get("id2label") or {}).items())]
            if not names:
                raise ModelLoadError(f"{src}/config.json names no labels (id2label)")
            if text_pair and not args.text_pair_column:
                raise ConfigError("--text-pair needs --text-pair-column to read pairs from the validation file")
            columns = Columns(text=args.text_column, pair=args.text_pair_column, label=args.label_column)
            eval_set = read_eval_set(Path(args.validation), names, config.get("problem_type") == MULTI_LABEL, columns)
        manifest = export_model_dir(src, dst, options, eval_set, source_model=str(src))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
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
    return EXIT_OK
