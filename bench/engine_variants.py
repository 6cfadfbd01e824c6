"""Engine variants at one thread: which INT8 build and session options run a fine-tuned model fastest,
at what accuracy (issue 17, part 3).

From one fine-tuned Hugging Face classifier (default: the SST-2 MiniLM of ``bench/quality.py``),
these model builds run the same single-text calls, taking turns call by call (who goes first
rotates), at one ORT thread, tokenization included:

- ``torch``: PyTorch FP32 eager, the fast tokenizer (what a plain transformers user runs): the baseline;
- ``ort-fp32``: the product's FP32 ONNX export;
- ``int8``: the product's export today (dynamic INT8, per-channel signed weights, ORT's own
  session-time fusions only);
- ``int8-fused``: ``onnxruntime.transformers.optimizer`` BERT fusions (Attention,
  SkipLayerNormalization, BiasGelu, EmbedLayerNormalization) offline, then the same dynamic INT8;
- ``int8-static``: static INT8 (QDQ, per-channel weights, activations calibrated with MinMax on
  ``--calibration`` training sentences, the data a training job already has);
- ``int8-fused-static``: the fused graph, statically quantized the same way;
- ``int8 +no-arena`` / ``int8 +no-mem-pattern``: the ``int8`` model with ORT's CPU memory arena, or
  its memory-pattern planning, off (session options; at one thread there is no pool to spin).

Inputs: SST-2 dev sentences (their natural length), and IMDB test-subset reviews cut at 128 and at
256 tokens. Every build is also scored on all of SST-2 dev: the product's accuracy gate allows INT8
to lose at most 1 point against PyTorch FP32.

    .venv/bin/python bench/engine_variants.py
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib as bl
import numpy as np
import server_load as sl

MAX_LENGTH = 256
INPUTS = {"sst2": None, "imdb128": 128, "imdb256": 256}  # truncation length (None: the export's)


def build_dirs(hf_dir: Path, work: Path, calibration: list[str], rebuild: bool) -> dict[str, Path]:
    """Model directories of every build (cached under ``work``)."""
    from textclf.export.options import ExportOptions
    from textclf.export.pipeline import export_model_dir

    out: dict[str, Path] = {}
    for name, options in {
        "ort-fp32": ExportOptions(precision="fp32", max_seq_length=MAX_LENGTH, keep_full_precision=False),
        "int8": ExportOptions(precision="int8", max_seq_length=MAX_LENGTH, keep_full_precision=False),
        "int8-fused": ExportOptions(
            precision="int8", optimize=True, max_seq_length=MAX_LENGTH, keep_full_precision=False
        ),
    }.items():
        d = work / name
        if rebuild or not (d / "model.onnx").is_file():
            shutil.rmtree(d, ignore_errors=True)
            t = time.perf_counter()
            export_model_dir(hf_dir, d, options)
            print(f"built {name} in {time.perf_counter() - t:.0f} s", flush=True)
        out[name] = d
    fused_fp32 = work / "fused-fp32.onnx"
    if rebuild or not fused_fp32.is_file():
        from textclf.export.quantization import optimize_graph

        cfg = _config(hf_dir)
        optimize_graph(out["ort-fp32"] / "model.onnx", fused_fp32, cfg["num_attention_heads"], cfg["hidden_size"])
    for name, source in (("int8-static", out["ort-fp32"] / "model.onnx"), ("int8-fused-static", fused_fp32)):
        d = work / name
        if rebuild or not (d / "model.onnx").is_file():
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(out["ort-fp32"], d)
            t = time.perf_counter()
            quantize_static_int8(source, d / "model.onnx", out["ort-fp32"], calibration)
            print(f"built {name} in {time.perf_counter() - t:.0f} s", flush=True)
        out[name] = d
    return out


def _config(hf_dir: Path) -> dict[str, Any]:
    import json

    return json.loads((hf_dir / "config.json").read_text())


def quantize_static_int8(src: Path, dst: Path, model_dir: Path, texts: list[str]) -> None:
    """Static QDQ INT8: MatMul weights per channel, activations from MinMax over ``texts`` (batches of 16)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from textclf.model.encoding import TextEncoder

    enc = TextEncoder.from_dir(model_dir, MAX_LENGTH, "head")
    names = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            batches = [texts[i : i + 16] for i in range(0, len(texts), 16)]
            self.items = iter([{k: v for k, v in enc.pad(enc.encode(b)).items() if k in names} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul", "Attention"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
    )


class Build:
    """One build's call: classify ``texts`` (tokenization included), cut at ``length`` tokens."""

    def __init__(self, name: str, hf_dir: Path, model_dir: Path | None, session_options: dict[str, Any]) -> None:
        self.name = name
        if name == "torch":
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            torch.set_num_threads(1)
            self.torch = torch
            self.tok = AutoTokenizer.from_pretrained(str(hf_dir))
            self.model = AutoModelForSequenceClassification.from_pretrained(str(hf_dir)).eval()
            return
        import onnxruntime as ort

        from textclf.model.encoding import TextEncoder

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        for key, value in session_options.items():
            setattr(options, key, value)
        assert model_dir is not None
        self.session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.encoders = {n: TextEncoder.from_dir(model_dir, n, "head") for n in (128, 256)}

    def fn(self, length: int) -> Callable[[list[str]], np.ndarray]:
        if self.name == "torch":
            torch, tok, model = self.torch, self.tok, self.model

            def run_torch(texts: list[str]) -> np.ndarray:
                with torch.inference_mode():
                    batch = tok(texts, padding=True, truncation=True, max_length=length, return_tensors="pt")
                    return model(**batch).logits.numpy()

            return run_torch
        enc, session, names = self.encoders[length], self.session, self.names

        def run_ort(texts: list[str]) -> np.ndarray:
            arrays = enc.pad(enc.encode(texts))
            return session.run(None, {k: arrays[k] for k in names})[0]

        return run_ort


def accuracy(build: Build, texts: list[str], labels: list[int]) -> float:
    fn = build.fn(128)
    hits = 0
    for i in range(0, len(texts), 32):
        logits = fn(texts[i : i + 32])
        hits += int((logits.argmax(-1) == np.array(labels[i : i + 32])).sum())
    return hits / len(texts)


def timed(builds: dict[str, Build], texts: list[str], length: int, seconds: float, max_calls: int) -> dict:
    fns = {n: b.fn(length) for n, b in builds.items()}
    for f in fns.values():
        f(texts[:1])
    times: dict[str, list[float]] = {n: [] for n in fns}
    order = list(fns)
    deadline = time.perf_counter() + seconds * len(fns)
    i = 0
    while time.perf_counter() < deadline and i < max_calls:
        text = [texts[i % len(texts)]]
        for n in order[i % len(order) :] + order[: i % len(order)]:
            t = time.perf_counter()
            fns[n](text)
            times[n].append(time.perf_counter() - t)
        i += 1
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf-dir", help="fine-tuned HF classifier (default: the SST-2 MiniLM of bench/quality.py)")
    ap.add_argument("--builds", default="torch,ort-fp32,int8,int8-fused,int8-static,int8-fused-static,"
                    "int8 +no-arena,int8 +no-mem-pattern")  # fmt: skip
    ap.add_argument("--calibration", type=int, default=512, help="SST-2 training sentences for static INT8")
    ap.add_argument("--seconds", type=float, default=20.0, help="per build per input")
    ap.add_argument("--max-calls", type=int, default=2000)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--name", default="engine-variants")
    args = ap.parse_args()

    run = bl.Run(args.name)
    hf_dir, hf_what = sl.pick_hf_dir(args.hf_dir, bl.WORK_DIR)
    work = bl.WORK_DIR / "engine-variants"
    work.mkdir(parents=True, exist_ok=True)
    train = bl.read_rows(bl.require_data("sst2", "train.tsv"))
    calibration = bl.sample([r["sentence"] for r in train], args.calibration, seed=7)
    dirs = build_dirs(hf_dir, work, calibration, args.rebuild)
    session_variants = {"+no-arena": {"enable_cpu_mem_arena": False}, "+no-mem-pattern": {"enable_mem_pattern": False}}
    builds: dict[str, Build] = {}
    for spec in args.builds.split(","):
        base, _, variant = spec.partition(" ")
        builds[spec] = Build(base, hf_dir, dirs.get(base), session_variants.get(variant, {}))
    dev = bl.read_rows(bl.require_data("sst2", "dev.tsv"))
    dev_texts, dev_labels = [r["sentence"] for r in dev], [int(r["label"]) for r in dev]
    acc = {n: accuracy(b, dev_texts, dev_labels) for n, b in builds.items()}
    print("SST-2 dev accuracy:", {n: round(100 * a, 2) for n, a in acc.items()}, flush=True)

    pools = {"sst2": bl.sample(bl.sst2_dev(), 872), "imdb": bl.sample(bl.imdb_test_subset(), 1000)}
    rows: list[dict[str, Any]] = []
    for kind, cut in INPUTS.items():
        length = cut or 128
        texts = pools["sst2" if kind == "sst2" else "imdb"]
        if cut:  # only texts that fill the length, so that the row is about that many tokens
            enc = builds["int8"].encoders[cut] if "int8" in builds else None
            if enc is not None:
                texts = [t for t, e in zip(texts, enc.encode(texts), strict=True) if len(e.ids) == cut]
        times = timed(builds, texts, length, args.seconds, args.max_calls)
        base = statistics.median(times["torch"]) if "torch" in times else None
        for n, ts in times.items():
            s = bl.summarize_ms(ts)
            rows.append(
                {
                    "input": kind,
                    "build": n,
                    "calls": len(ts),
                    "p50_ms": s["p50_ms"],
                    "p99_ms": s["p99_ms"],
                    "x_torch_p50": base / statistics.median(ts) if base else None,
                    "sst2_dev_acc": 100 * acc[n],
                    "drop_vs_torch_pts": 100 * (acc["torch"] - acc[n]) if "torch" in acc else None,
                }
            )
        print(kind, " ".join(f"{r['build']}={r['p50_ms']:.2f}ms" for r in rows if r["input"] == kind), flush=True)
    table = bl.md_table(
        rows,
        ["input", "build", "calls", "p50_ms", "p99_ms", "x_torch_p50", "sst2_dev_acc", "drop_vs_torch_pts"],
        ["input", "build", "calls", "p50 ms", "p99 ms", "x PyTorch (p50)", "SST-2 dev acc %", "drop vs PyTorch (pts)"],
    )
    notes = [
        f"Model: {hf_dir} ({hf_what}). One ORT thread and torch.set_num_threads(1); batch 1; tokenization "
        "inside every timed call. Builds took turns call by call on the same texts.",
        "imdb128 / imdb256: IMDB test-subset reviews that fill 128 / 256 tokens after truncation.",
        f"Static INT8: QDQ, MatMul (and Attention) weights per channel QInt8, activations QUInt8 from MinMax "
        f"calibration on {args.calibration} SST-2 training sentences.",
        f"CPU SIMD features seen by the OS: {' '.join(bl.cpu_features()) or 'unknown'}.",
    ]
    run.finish({"hf_dir": str(hf_dir), "accuracy": acc, "rows": rows}, table, notes)


if __name__ == "__main__":
    main()
