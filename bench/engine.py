"""Engine benchmark: PyTorch FP32 eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 on the same model and inputs.

For each model (the real MiniLM-L6 with a random 2-label head; DistilBERT- and BERT-base-shaped
models with random weights), thread count, input set and batch size, the three runtimes classify
exactly the same calls (the same texts in the same batches), taking turns call by call so that the
noise of this shared machine falls on all of them alike.

- ``torch``: what a plain transformers user runs: the fast tokenizer + ``AutoModelForSequenceClassification``
  in FP32, ``torch.inference_mode``; padding to the longest text of the call (dynamic inputs) or to
  128 (``pad128``).
- ``ort-fp32`` / ``ort-int8``: the product: a model directory written by ``textclf.export.pipeline`` and run by
  ``textclf.model.predictor.Classifier`` (dynamic padding, length-sorted micro-batches). For ``pad128`` the
  product's encoder output is padded to 128 and fed to the Classifier's session.

Tokenization is inside the timed call for every runtime. Inputs: ``sst2`` (SST-2 dev sentences,
~25 tokens), ``imdb`` (IMDB test-subset reviews truncated at ``--imdb-max-length``), ``pad128``
(SST-2 sentences, everything padded to 128 tokens, as the seed servers do), ``builtin`` (a few
sentences, for smoke tests without the shared data).

Throughput is compared with this CPU's INT8 ceiling: the INT8 GOP/s that ``peak.py`` measures for
one big MatMul at the same thread count, divided by the FLOPs per text from the formula in
performance.md (useful tokens only: padding is waste, not work).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib as bl
import numpy as np
import peak as peak_mod

RUNTIMES = ("torch", "ort-fp32", "ort-int8")
BUILTIN = bl.BUILTIN


@dataclass
class Model:
    name: str
    hf_dir: Path
    shape: bl.Shape


def text_pool(kind: str, pad_source: str) -> list[str]:
    if kind == "pad128":
        kind = pad_source
    if kind == "sst2":
        return bl.sst2_dev()
    if kind == "imdb":
        return bl.imdb_test_subset()
    if kind == "builtin":
        return list(BUILTIN)
    raise SystemExit(f"unknown input {kind!r}: sst2, imdb, pad128, builtin")


class Runner:
    """One runtime at one thread count: ``call(texts)`` classifies a batch, tokenization included."""

    def __init__(self, runtime: str, model: Model, threads: int, model_dirs: dict[str, Path]) -> None:
        self.runtime = runtime
        self.threads = threads
        if runtime == "torch":
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            self.torch = torch
            self.tok = AutoTokenizer.from_pretrained(str(model.hf_dir))
            self.model = AutoModelForSequenceClassification.from_pretrained(str(model.hf_dir)).eval()
        else:
            from textclf.model.encoding import TextEncoder
            from textclf.model.prediction import probabilities
            from textclf.model.predictor import Classifier

            self.clf = Classifier.load(model_dirs[runtime], threads=threads, verify=False)
            self.probabilities = probabilities
            self.enc128 = TextEncoder.from_dir(model_dirs[runtime], 128, "head")

    def fn(self, kind: str, max_length: int) -> Callable[[Sequence[str]], Any]:
        if self.runtime == "torch":
            torch, tok, model = self.torch, self.tok, self.model
            padding: Any = "max_length" if kind == "pad128" else True
            length = 128 if kind == "pad128" else max_length

            def run_torch(texts: Sequence[str]) -> Any:
                torch.set_num_threads(self.threads)
                with torch.inference_mode():
                    batch = tok(list(texts), padding=padding, truncation=True, max_length=length, return_tensors="pt")
                    return model(**batch).logits.softmax(-1).numpy()

            return run_torch
        clf = self.clf
        if kind != "pad128":
            return lambda texts: clf.scores(list(texts), batch_size=32)
        enc, session = self.enc128, clf.session
        names = [i.name for i in session.get_inputs()]
        output = session.get_outputs()[0].name

        def run_padded(texts: Sequence[str]) -> Any:
            encoded = enc.encode(list(texts))
            arrays = {k: np.pad(v, ((0, 0), (0, 128 - v.shape[1]))) for k, v in enc.pad(encoded).items()}
            logits = session.run([output], {n: arrays[n] for n in names})[0]
            return self.probabilities(logits, clf.problem_type)

        return run_padded


def token_lengths(texts: Sequence[str], model_dir: Path, max_length: int) -> list[int]:
    from textclf.model.encoding import TextEncoder

    enc = TextEncoder.from_dir(model_dir, max_length, "head")
    return [len(e.ids) for e in enc.encode(list(texts))]


def run_cell(
    runners: dict[str, Runner],
    calls: list[list[str]],
    kind: str,
    max_length: int,
    budget_s: float,
    max_iters: int,
) -> dict[str, list[float]]:
    """The runtimes take turns call by call (who goes first rotates) over whole passes of ``calls``, until
    about ``budget_s`` s per runtime are spent (at least one pass) or each made ``max_iters`` calls.

    Turn by turn, not runtime after runtime: the load of this shared machine changes from second to
    second, and every runtime should meet the same load on the same inputs."""
    fns = {rt: r.fn(kind, max_length) for rt, r in runners.items()}
    for f in fns.values():  # warm-up (ORT's lazy set-up, torch's allocator)
        f(calls[0])
    times: dict[str, list[float]] = {rt: [] for rt in fns}
    order = list(fns)
    deadline = time.perf_counter() + budget_s * len(fns)
    turn = 0
    while True:
        for call in calls:
            for rt in order[turn % len(order) :] + order[: turn % len(order)]:
                t = time.perf_counter()
                fns[rt](call)
                times[rt].append(time.perf_counter() - t)
            turn += 1
        if time.perf_counter() > deadline or len(times[order[0]]) >= max_iters:
            break
    return times


def plan_calls(texts: list[str], batch: int, n_calls: int) -> list[list[str]]:
    return [[texts[(i * batch + j) % len(texts)] for j in range(batch)] for i in range(n_calls)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm,distilbert,bert-base", help="names, or NAME=HF_DIR for any HF dir")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--inputs", default="sst2,imdb,pad128")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--imdb-max-length", type=int, default=256, help="tokens (256 or 512)")
    ap.add_argument("--pad-source", default="sst2", help="texts that pad128 pads (sst2 or builtin)")
    ap.add_argument("--calls", type=int, default=24, help="distinct calls per cell (bounded further by time)")
    ap.add_argument("--seconds", type=float, default=6.0, help="time budget per runtime per cell")
    ap.add_argument("--max-iters", type=int, default=400, help="hard cap on timed calls per runtime per cell")
    ap.add_argument("--peak-seconds", type=float, default=3.0)
    ap.add_argument("--work-dir", type=Path, default=bl.WORK_DIR)
    ap.add_argument("--out-dir", type=Path, default=bl.RESULTS_DIR)
    ap.add_argument("--name", default="engine")
    args = ap.parse_args()

    run = bl.Run(args.name)
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    inputs = args.inputs.split(",")
    runtimes = args.runtimes.split(",")

    print("measuring this CPU's matmul peak ...", flush=True)
    peak_rows = peak_mod.measure(tuple(threads), max_s=args.peak_seconds)
    peaks = peak_mod.peaks(peak_rows)
    print(peak_mod.table(peak_rows), flush=True)

    from textclf.export.hf_model import model_max_length

    rows: list[dict[str, Any]] = []
    models_meta: dict[str, Any] = {}
    for spec in args.models.split(","):
        name, _, path = spec.partition("=")
        hf_dir = Path(path) if path else bl.hf_classifier(name, args.work_dir)
        config = json.loads((hf_dir / "config.json").read_text())
        model = Model(name, hf_dir, bl.shape_of(config))
        max_len = min(args.imdb_max_length, model_max_length(hf_dir))
        dirs = {
            rt: bl.export_dir(hf_dir, rt.removeprefix("ort-"), args.work_dir, max_len)
            for rt in runtimes
            if rt != "torch"
        }
        models_meta[name] = {
            "hf_dir": str(hf_dir),
            "shape": vars(model.shape),
            "gflop_at_128": model.shape.flops(128) / 1e9,
            "onnx_mb": {rt: bl.file_mb(d / "model.onnx") for rt, d in dirs.items()},
            "max_length": max_len,
        }
        print(f"== {name}: {models_meta[name]}", flush=True)
        any_dir = next(iter(dirs.values()), None)
        for t in threads:
            runners = {rt: Runner(rt, model, t, dirs) for rt in runtimes}
            for kind in inputs:
                source = text_pool(kind, args.pad_source)
                pool = bl.sample(source, len(source))
                for batch in batches:
                    calls = plan_calls(pool, batch, args.calls)
                    texts = [x for c in calls for x in c]
                    if kind == "pad128":
                        lengths = [128] * len(texts)
                    elif any_dir is not None:
                        lengths = token_lengths(texts, any_dir, max_len)
                    else:
                        lengths = [
                            len(x)
                            for x in runners["torch"].tok(texts, truncation=True, max_length=max_len)["input_ids"]
                        ]
                    times = run_cell(runners, calls, kind, max_len, args.seconds, args.max_iters)
                    cell = dict(model=name, threads=t, input=kind, batch=batch, mean_tokens=statistics.fmean(lengths))
                    flops_per_text = statistics.fmean(model.shape.flops(n) for n in lengths)
                    for rt, ts in times.items():
                        s = bl.summarize_ms(ts)
                        tps = batch * len(ts) / sum(ts)
                        ceiling = peaks["int8"][t] * 1e9 / flops_per_text
                        rows.append(
                            cell
                            | {
                                "runtime": rt,
                                "calls": len(ts),
                                "p50_ms": s["p50_ms"],
                                "p99_ms": s["p99_ms"],
                                "texts_per_s": tps,
                                "gflop_per_text": flops_per_text / 1e9,
                                "achieved_gops": tps * flops_per_text / 1e9,
                                "int8_ceiling_texts_per_s": ceiling,
                                "pct_of_int8_ceiling": 100 * tps / ceiling,
                                "pct_of_ref_int8_ceiling": 100 * tps * flops_per_text / (bl.REF_INT8_GOPS * t * 1e9),
                            }
                        )
                    base = next((r for r in rows[-len(times) :] if r["runtime"] == "torch"), None)
                    for r in rows[-len(times) :]:
                        r["x_vs_torch"] = r["texts_per_s"] / base["texts_per_s"] if base else None
                    line = " ".join(f"{r['runtime']}={r['texts_per_s']:.1f}/s" for r in rows[-len(times) :])
                    print(f"{name} t={t} {kind} b={batch} tokens={cell['mean_tokens']:.0f}: {line}", flush=True)
            del runners
            gc.collect()

    summary = summarize(rows)
    cols = [
        "model", "threads", "input", "batch", "mean_tokens", "runtime", "p50_ms", "p99_ms", "texts_per_s",
        "x_vs_torch", "gflop_per_text", "pct_of_int8_ceiling",
    ]  # fmt: skip
    heads = [
        "model", "thr", "input", "batch", "tokens", "runtime", "p50 ms", "p99 ms", "texts/s",
        "x torch", "GFLOP/text", "% INT8 ceiling",
    ]  # fmt: skip
    table = bl.md_table(rows, cols, heads)
    table += "\n\nINT8 vs PyTorch FP32 (texts/s ratio, same calls):\n\n" + bl.md_table(
        summary["int8_vs_torch"], ["model", "threads", "input", "batch", "x_vs_torch"], None
    )
    table += "\n\nMatMul peak of this CPU (peak.py):\n\n" + peak_mod.table(peak_rows)
    notes = [
        f"INT8 / PyTorch FP32 throughput: median {summary['int8_vs_torch_median']:.2f}x over "
        f"{len(summary['int8_vs_torch'])} cells (min {summary['int8_vs_torch_min']:.2f}x, "
        f"max {summary['int8_vs_torch_max']:.2f}x).",
        "FLOPs per text from 2*L*(4H^2+2HF)*S + 4*L*S^2*H over the real (unpadded) token count; "
        "the INT8 ceiling is the peak INT8 GOP/s at the same thread count divided by that. On a busy shared "
        "machine the in-run peak is itself slowed, so the ceiling of the idle machine (performance.md: "
        f"{bl.REF_INT8_GOPS:.0f} GOP/s per core) is given too (pct_of_ref_int8_ceiling).",
        f"CPU SIMD features seen by the OS: {' '.join(bl.cpu_features()) or 'unknown'}.",
    ]
    run.finish(
        {"peak": {"rows": peak_rows, "gops": peaks}, "models": models_meta, "rows": rows, "summary": summary},
        table,
        notes,
        args.out_dir,
    )


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [
        {k: r[k] for k in ("model", "threads", "input", "batch", "x_vs_torch")}
        for r in rows
        if r["runtime"] == "ort-int8" and r.get("x_vs_torch")
    ]
    xs = [r["x_vs_torch"] for r in ratios] or [float("nan")]
    return {
        "int8_vs_torch": ratios,
        "int8_vs_torch_median": statistics.median(xs),
        "int8_vs_torch_min": min(xs),
        "int8_vs_torch_max": max(xs),
    }


if __name__ == "__main__":
    main()
