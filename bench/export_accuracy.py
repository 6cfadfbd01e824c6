"""Export: what INT8 costs and buys for a real fine-tuned model (FP32 PyTorch vs INT8 ONNX Runtime).

Takes a Hugging Face sequence-classification directory — by default the MiniLM that
``bench/quality.py --datasets sst2`` fine-tuned on SST-2 (its ``/opt/ml/model/hf``) — and, through
the product's own exporter (``textclf.export.pipeline.export_model_dir``, the code ``train`` runs):

- exports it to INT8 and to FP32 ONNX model directories, each behind the accuracy gate, on
  SST-2 dev (872 sentences, ``max_seq_length`` 128, head truncation) and on the IMDB test subset
  (1,000 reviews, ``--imdb-max-length`` tokens, head+tail truncation): the gate runs PyTorch FP32
  and the served ONNX model on the same rows and records both accuracies and the label agreement;
- reports file sizes: the FP32 safetensors, the FP32 ONNX and the INT8 ONNX;
- times single-text latency (batch 1, one thread and two threads) of PyTorch FP32 eager and of
  the INT8 predictor on the same SST-2 dev sentences, interleaved in one run.

Usage::

    .venv/bin/python bench/export_accuracy.py
    .venv/bin/python bench/export_accuracy.py --hf-dir PATH/TO/HF_DIR --latency-texts 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import benchlib as bl

DEFAULT_HF = bl.WORK_DIR / "quality" / "sst2" / "opt_ml" / "model" / "hf"


def labelled(path: Path, text_key: str) -> tuple[list[str], list[int]]:
    rows = bl.read_rows(path)
    return [r[text_key] for r in rows], [int(r["label"]) for r in rows]


def export_with_gate(hf: Path, out: Path, precision: str, texts: list[str], labels: list[int], **opts: Any) -> dict:
    from textclf.export.gate import EvalSet
    from textclf.export.options import ExportOptions
    from textclf.export.pipeline import export_model_dir

    options = ExportOptions(precision=precision, keep_full_precision=False, max_accuracy_drop=100.0, **opts)
    manifest = export_model_dir(hf, out, options, eval_set=EvalSet(texts, None, labels))
    m = manifest.metrics
    prefix = "int8" if precision == "int8" else "onnx_fp32"
    return {
        "fp32_pytorch_accuracy": round(100 * m["fp32_validation_accuracy"], 2),
        f"{precision}_onnx_accuracy": round(100 * m[f"{prefix}_validation_accuracy"], 2),
        "label_agreement": round(100 * m[f"{prefix}_label_agreement"], 2),
        "drop_points": m["quality_gate"]["accuracy_drop_points"],
        "examples": m["quality_gate"]["examples"],
        "model_mb": bl.file_mb(out / "model.onnx"),
    }


def single_text_latency(hf: Path, model_dir: Path, texts: list[str], threads: int) -> dict[str, dict[str, float]]:
    """Batch-1 latency of PyTorch FP32 and of the INT8 predictor, alternating text by text."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from textclf.export.onnx_graph import model_input_names
    from textclf.model.encoding import TextEncoder
    from textclf.model.predictor import Classifier

    torch.set_num_threads(threads)
    model = AutoModelForSequenceClassification.from_pretrained(hf).eval()
    names = model_input_names(model)
    encoder = TextEncoder.from_dir(model_dir, 128)
    classifier = Classifier.load(model_dir, threads=threads)
    times: dict[str, list[float]] = {"pytorch_fp32": [], "ort_int8": []}

    def run_torch(text: str) -> None:
        arrays = encoder.pad(encoder.encode([text]))
        with torch.inference_mode():
            model(**{n: torch.from_numpy(arrays[n]) for n in names})

    def run_ort(text: str) -> None:
        classifier.predict([text])

    for text in texts[:10]:  # warm-up
        run_torch(text)
        run_ort(text)
    for text in texts:
        for name, fn in (("pytorch_fp32", run_torch), ("ort_int8", run_ort)):
            t0 = time.perf_counter()
            fn(text)
            times[name].append(time.perf_counter() - t0)
    return {name: bl.summarize_ms(samples) for name, samples in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf-dir", type=Path, default=DEFAULT_HF, help="a fine-tuned HF classification directory")
    ap.add_argument("--imdb-max-length", type=int, default=256)
    ap.add_argument("--latency-texts", type=int, default=300)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--variants", default="int8,int8 per-channel", help="INT8 weight scales to compare")
    ap.add_argument("--limit", type=int, default=0, help="evaluate only the first N rows of each set (0: all)")
    ap.add_argument("--work-dir", type=Path, default=bl.WORK_DIR / "export")
    ap.add_argument("--out-dir", type=Path, default=bl.RESULTS_DIR)
    args = ap.parse_args()
    if not (args.hf_dir / "config.json").is_file():
        raise SystemExit(f"{args.hf_dir}: no fine-tuned model; run bench/quality.py --datasets sst2 or pass --hf-dir")
    run = bl.Run("export")
    sst2_texts, sst2_labels = labelled(bl.require_data("sst2", "dev.tsv"), "sentence")
    imdb_texts, imdb_labels = labelled(bl.require_data("imdb", "test_subset_1000.csv"), "text")
    if args.limit:
        sst2_texts, sst2_labels = sst2_texts[: args.limit], sst2_labels[: args.limit]
        imdb_texts, imdb_labels = imdb_texts[: args.limit], imdb_labels[: args.limit]
    work = args.work_dir

    rows, results = [], {"hf_dir": str(args.hf_dir), "accuracy": {}, "sizes_mb": {}, "latency_ms": {}}
    sst2 = {"max_seq_length": 128, "truncation": "head"}
    imdb = {"max_seq_length": args.imdb_max_length, "truncation": "head+tail"}
    variants = {"int8": {}, "int8 per-channel": {"per_channel": True}}
    for name, texts, labels, opts in (
        ("sst2_dev", sst2_texts, sst2_labels, sst2),
        ("imdb_test_1000", imdb_texts, imdb_labels, imdb),
    ):
        for variant, extra in variants.items():
            if variant not in args.variants.split(","):
                continue
            out = work / f"{name}-{variant.replace(' ', '-')}"
            int8 = export_with_gate(args.hf_dir, out, "int8", texts, labels, **opts, **extra)
            results["accuracy"][name if variant == "int8" else f"{name} ({variant})"] = int8 | {
                "settings": opts | extra
            }
            rows.append(
                {
                    "what": f"accuracy {name}, {variant} (%)",
                    "fp32": int8["fp32_pytorch_accuracy"],
                    "int8": int8["int8_onnx_accuracy"],
                    "ratio": f"drop {int8['drop_points']:.2f} pt, agree {int8['label_agreement']:.1f}%",
                }
            )
    fp32 = export_with_gate(args.hf_dir, work / "sst2_dev-fp32", "fp32", sst2_texts, sst2_labels, **sst2)
    results["accuracy"]["sst2_dev_onnx_fp32"] = fp32
    weights = sum(p.stat().st_size for p in args.hf_dir.glob("*.safetensors")) / 1e6
    int8_mb = results["accuracy"]["sst2_dev"]["model_mb"]
    results["sizes_mb"] = {"safetensors_fp32": round(weights, 1), "onnx_fp32": fp32["model_mb"], "onnx_int8": int8_mb}
    rows.append(
        {
            "what": "model file (MB)",
            "fp32": f"{fp32['model_mb']} (safetensors {weights:.1f})",
            "int8": int8_mb,
            "ratio": f"{fp32['model_mb'] / int8_mb:.2f}x smaller",
        }
    )
    sample = bl.sample(sst2_texts, args.latency_texts, seed=1)
    for threads in (int(t) for t in args.threads.split(",")):
        lat = single_text_latency(args.hf_dir, work / "sst2_dev-int8", sample, threads)
        results["latency_ms"][f"{threads}_threads"] = lat
        p50_t, p50_o = lat["pytorch_fp32"]["p50_ms"], lat["ort_int8"]["p50_ms"]
        rows.append(
            {
                "what": f"single-text p50 latency, {threads} thread(s) (ms)",
                "fp32": f"{p50_t:.2f} (p99 {lat['pytorch_fp32']['p99_ms']:.2f})",
                "int8": f"{p50_o:.2f} (p99 {lat['ort_int8']['p99_ms']:.2f})",
                "ratio": f"{p50_t / p50_o:.2f}x faster",
            }
        )
    notes = [
        "fp32 = PyTorch FP32 eager (accuracy from the export gate, the same rows); int8 = the served ONNX INT8 model.",
        "IMDB: a model fine-tuned on SST-2 sentences, evaluated out of domain on full reviews (head+tail).",
        f"latency: {len(sample)} SST-2 dev sentences, batch 1, the two runtimes alternating text by text; "
        f"median over texts {statistics.median(len(t) for t in sample)} characters.",
    ]
    table = bl.md_table(rows, ["what", "fp32", "int8", "ratio"], ["", "FP32 (PyTorch)", "INT8 (ORT)", "INT8 vs FP32"])
    run.finish(results, table, notes, out_dir=args.out_dir)
    print(json.dumps(results["sizes_mb"]))


if __name__ == "__main__":
    main()
