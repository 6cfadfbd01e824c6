"""Where the time goes: per-stage timing of the predictor and a sampling profile of the servers under load.

What the speed aims are limited by, measured two ways in one run:

- **stages** (in-process, 1 ORT thread, the same code path as ``Classifier.predict``): tokenize
  (``TextEncoder.encode``), pad, ``InferenceSession.run`` (the model), and the rest (softmax,
  sorting, building the answer), per request, for each model and request shape;
- **ORT operators**: ONNX Runtime's own profiler, % of kernel time per operator type (INT8
  matmuls, activation quantization, FP32 matmuls, the rest), INT8 against FP32 on the same inputs;
- **py-spy** (``bench/.work/.venv-tools/bin/py-spy``, if installed: ``pip install py-spy`` into any
  venv and pass ``--py-spy``): each gunicorn worker of a server is sampled at 100 Hz while ``wrk``
  keeps it saturated; every sample is charged to the innermost frame that falls in a category
  (the model, tokenizing, JSON codecs, request log, Flask/werkzeug, gunicorn, ...). Samples of
  threads waiting for work are not counted (py-spy without ``--idle``).

    .venv/bin/python bench/hotspots.py [--py-spy PATH] [--seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import benchlib as bl
import server_load as sl

# innermost match wins; the first pattern list that matches a frame names its category
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("model: onnxruntime session.run", ("onnxruntime_inference_collection.py",)),
    ("model: torch forward", ("torch/nn/", "transformers/models/")),
    ("tokenize", ("textclf/model/encoding.py", "tokenizers/", "transformers/tokenization")),
    ("predictor (pad, softmax, sort)", ("textclf/model/predictor.py", "textclf/model/prediction.py", "numpy/")),
    ("JSON codecs", ("textclf/serve/codecs.py", "json/")),
    ("request log", ("textclf/serve/request_log.py", "logging/")),
    ("service + rules", ("textclf/serve/service.py", "textclf/serve/rules.py")),
    ("Flask/werkzeug", ("flask/", "werkzeug/", "seed_flask_app.py", "textclf/serve/app.py", "textclf/serve/routes.py")),
    ("gunicorn (HTTP parse, socket I/O)", ("gunicorn/", "selectors.py", "socket.py")),
]


# -- stages ----------------------------------------------------------------------------------------
def stages(model_dir: Path, requests: list[list[str]], n: int) -> dict[str, Any]:
    """Per-request time in each stage of ``Classifier.predict`` (one ORT thread), over ``n`` requests."""
    import numpy as np

    from textclf.model.prediction import probabilities
    from textclf.model.predictor import Classifier

    clf = Classifier.load(model_dir, threads=1, verify=False)
    clf.warmup()
    enc, session = clf.encoder, clf.session
    names, output = [i.name for i in session.get_inputs()], session.get_outputs()[0].name
    acc: dict[str, list[float]] = {"tokenize": [], "pad": [], "model (session.run)": [], "rest": [], "total": []}
    tokens: list[int] = []
    for i in range(n + 3):
        texts = requests[i % len(requests)]
        t0 = time.perf_counter()
        encoded = enc.encode(texts)
        t1 = time.perf_counter()
        order = sorted(range(len(encoded)), key=lambda j: len(encoded[j].ids))
        arrays = enc.pad([encoded[j] for j in order])
        t2 = time.perf_counter()
        logits = session.run([output], {k: arrays[k] for k in names})[0]
        t3 = time.perf_counter()
        probs = probabilities(logits, clf.problem_type)
        out = [[{"label": clf.labels[int(np.argmax(p))], "score": float(p.max())}] for p in probs]
        t4 = time.perf_counter()
        assert len(out) == len(texts)
        if i < 3:  # warm-up
            continue
        tokens += [len(e.ids) for e in encoded]
        for k, v in zip(acc, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
            acc[k].append(v)
    total = sum(acc["total"])
    row: dict[str, Any] = {
        "requests": n,
        "texts_per_request": len(requests[0]),
        "mean_tokens": statistics.fmean(tokens),
    }
    for k, v in acc.items():
        row[f"{k} ms"] = 1000 * statistics.median(v)
        if k != "total":
            row[f"{k} %"] = 100 * sum(v) / total
    return row


# -- ORT operators ---------------------------------------------------------------------------------
OP_GROUPS = {
    "MatMulInteger": "INT8 matmul",
    "DynamicQuantizeMatMul": "INT8 matmul",
    "MatMulIntegerToFloat": "INT8 matmul",
    "QAttention": "INT8 matmul",
    "DynamicQuantizeLinear": "quantize activations",
    "MatMul": "FP32 matmul (attention scores/context, or unquantized)",
    "FusedMatMul": "FP32 matmul (attention scores/context, or unquantized)",
    "Gemm": "FP32 matmul (attention scores/context, or unquantized)",
}


def ort_ops(model_dir: Path, requests: list[list[str]], n: int, tmp: Path) -> dict[str, Any]:
    """ONNX Runtime's own profile (one thread) over ``n`` requests: % of kernel time per operator type,
    and grouped (INT8 matmuls, activation quantization, FP32 matmuls, everything else)."""
    import json

    import onnxruntime as ort

    from textclf.model.encoding import TextEncoder

    enc = TextEncoder.from_dir(model_dir, 128, "head")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / "ort")
    options.log_severity_level = 3
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    for i in range(n):
        arrays = enc.pad(enc.encode(requests[i % len(requests)]))
        sess.run(None, {k: arrays[k] for k in names})
    events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: Counter = Counter()
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            by_op[e.get("args", {}).get("op_name", "?")] += int(e.get("dur", 0))
    total = sum(by_op.values()) or 1
    groups: Counter = Counter()
    for op, us in by_op.items():
        groups[OP_GROUPS.get(op, "other ops (LayerNorm, Softmax, GELU, Add, Gather, ...)")] += us
    return {
        "requests": n,
        "ops_pct": {k: round(100 * v / total, 1) for k, v in by_op.most_common(12)},
        "groups_pct": {k: round(100 * v / total, 1) for k, v in groups.most_common()},
    }


# -- py-spy ----------------------------------------------------------------------------------------
def categorize(raw: str) -> Counter:
    """py-spy ``--format raw`` (``frame;frame;... count``, outermost first) -> samples per category."""
    out: Counter = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        name = "other"
        for frame in reversed(stack.split(";")):
            hit = next((cat for cat, pats in CATEGORIES if any(p in frame for p in pats)), None)
            if hit:
                name = hit
                break
        out[name] += int(count)
    return out


def spy(
    py_spy: Path, server: sl.Server, requests: list[list[str]], concurrency: int, seconds: float, tmp: Path
) -> dict[str, Any]:
    procs = server.processes()
    sl.label_gunicorn(procs)
    workers = [p["pid"] for p in procs if p["role"] == "gunicorn worker"]
    load: dict[str, Any] = {}

    def drive() -> None:
        load.update(sl.run_load("wrk", server.port, requests, concurrency, 10**9, seconds, 30))

    driver = threading.Thread(target=drive)
    driver.start()
    time.sleep(1.0)  # let the load settle
    spies = []
    for pid in workers:
        out = tmp / f"{pid}.txt"
        cmd = [str(py_spy), "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-d", str(max(1, int(seconds - 2)))]
        cmd += ["--nonblocking", "--full-filenames"]
        spies.append((out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    errors = []
    for _, p in spies:
        _, err = p.communicate(timeout=seconds + 60)
        if p.returncode != 0:
            errors.append(err[-500:])
    driver.join()
    total: Counter = Counter()
    for out, _ in spies:
        with contextlib.suppress(OSError):
            total += categorize(out.read_text())
    n = sum(total.values())
    shares = {k: round(100 * v / n, 1) for k, v in total.most_common()} if n else {}
    return {
        "workers": len(workers),
        "samples": n,
        "share_pct": shares,
        "load": {k: load.get(k) for k in ("completed", "elapsed_s", "p50_ms", "p99_ms", "errors")},
        "req_per_s": load["completed"] / load["elapsed_s"] if load.get("elapsed_s") else None,
        "py_spy_errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--py-spy", type=Path, default=bl.WORK_DIR / ".venv-tools" / "bin" / "py-spy")
    ap.add_argument("--servers", default="textclf,distilbert,seed", help="servers to sample with py-spy")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0, help="load per server (py-spy samples 2 s less)")
    ap.add_argument("--stage-requests", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work-dir", type=Path, default=bl.WORK_DIR)
    ap.add_argument("--out-dir", type=Path, default=bl.RESULTS_DIR)
    ap.add_argument("--name", default="hotspots")
    args = ap.parse_args()
    run = bl.Run(args.name)
    work = args.work_dir / "server"
    work.mkdir(parents=True, exist_ok=True)

    hf_dir, hf_what = sl.pick_hf_dir(None, args.work_dir)
    minilm = bl.export_dir(hf_dir, "int8", args.work_dir, 128)
    sst2 = bl.sample(bl.sst2_dev(), 872)
    dmodel, dshapes = sl.distilbert_inputs(args.work_dir)
    inputs = {
        ("minilm-int8", "sst2 single"): (minilm, sl.bodies_for(sst2, 1)),
        ("minilm-int8", "sst2 batch8"): (minilm, sl.bodies_for(sst2, 8)),
        ("distilbert-int8", "imdb128 single"): (dmodel, dshapes["imdb128-single"]),
    }
    stage_rows = []
    for (model, shape), (mdir, reqs) in inputs.items():
        per = len(reqs[0])
        row = {"model": model, "input": shape} | stages(mdir, reqs, max(20, args.stage_requests // per))
        stage_rows.append(row)
        print(f"stages {model} {shape}: " + ", ".join(f"{k} {bl.fmt(v)}" for k, v in row.items() if "%" in k))

    op_rows = []
    int8_256 = bl.export_dir(hf_dir, "int8", args.work_dir, 256)
    fp32_256 = bl.export_dir(hf_dir, "fp32", args.work_dir, 256)
    op_inputs = [
        ("minilm-int8", "sst2 single", int8_256, inputs[("minilm-int8", "sst2 single")][1]),
        ("minilm-fp32", "sst2 single", fp32_256, inputs[("minilm-int8", "sst2 single")][1]),
        ("minilm-int8", "imdb128 single", int8_256, dshapes["imdb128-single"]),
        ("minilm-fp32", "imdb128 single", fp32_256, dshapes["imdb128-single"]),
        ("distilbert-int8", "imdb128 single", dmodel, dshapes["imdb128-single"]),
    ]
    for model, shape, mdir, reqs in op_inputs:
        with tempfile.TemporaryDirectory() as tmp:
            ops = ort_ops(mdir, reqs, max(10, args.stage_requests // 4), Path(tmp))
        op_rows.append({"model": model, "input": shape} | ops)
        print(f"ORT ops {model} {shape}: {ops['groups_pct']}", flush=True)

    spies: dict[str, Any] = {}
    failures: dict[str, str] = {}
    if not args.py_spy.is_file():
        failures["py-spy"] = f"{args.py_spy} not found (pip install py-spy into bench/.work/.venv-tools)"
    else:
        for name in args.servers.split(","):
            port, log = sl.free_port(), work / f"profile-{name}.log"
            if name in ("textclf", "distilbert"):
                root = work / f"sm-profile-{name}"
                with contextlib.suppress(FileNotFoundError):
                    (root / "model").unlink()
                root.mkdir(parents=True, exist_ok=True)
                (root / "model").symlink_to((minilm if name == "textclf" else dmodel).resolve())
                server = sl.start_textclf(root, port, args.workers, log)
            elif name == "seed":
                server = sl.start_seed(hf_dir, port, args.workers, log)
            else:
                raise SystemExit(f"unknown server {name!r}: textclf, distilbert, seed")
            reqs = inputs[("distilbert-int8", "imdb128 single")][1] if name == "distilbert" else sl.bodies_for(sst2, 1)
            try:
                server.wait_ready(sl.body_json(reqs[0]))
                sl.run_load("wrk", server.port, reqs, 4, 40, 10, 30)  # warm-up
                with tempfile.TemporaryDirectory() as tmp:
                    spies[name] = spy(args.py_spy, server, reqs, args.concurrency, args.seconds, Path(tmp))
                print(f"py-spy {name}: {spies[name]['req_per_s']:.1f} req/s; {spies[name]['share_pct']}", flush=True)
            except Exception as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"
            finally:
                server.stop()

    table = "Stages of one request in the predictor (in-process, 1 ORT thread; medians in ms, shares of the sum):\n\n"
    cols = ["model", "input", "mean_tokens", "tokenize ms", "pad ms", "model (session.run) ms", "rest ms"]
    cols += ["total ms", "tokenize %", "pad %", "model (session.run) %", "rest %"]
    table += bl.md_table(stage_rows, cols)
    groups = list(dict.fromkeys([*OP_GROUPS.values(), "other ops (LayerNorm, Softmax, GELU, Add, Gather, ...)"]))
    table += "\n\nONNX Runtime's profile, % of kernel time (1 thread):\n\n" + bl.md_table(
        [{"model": r["model"], "input": r["input"]} | r["groups_pct"] for r in op_rows], ["model", "input", *groups]
    )
    if spies:
        cats = [c for c, _ in CATEGORIES] + ["other"]
        rows = [
            {"server": n, "req/s": d["req_per_s"], "samples": d["samples"]} | {c: d["share_pct"].get(c) for c in cats}
            for n, d in spies.items()
        ]
        table += f"\n\npy-spy: % of busy worker samples by category, at concurrency {args.concurrency}:\n\n"
        table += bl.md_table(rows, ["server", "req/s", "samples", *cats])
    notes = [f"{k}: {v}" for k, v in failures.items()]
    notes.append(f"model: {hf_dir} ({hf_what}); DistilBERT-shaped random weights for the distilbert rows.")
    results = {"stages": stage_rows, "ort_ops": op_rows, "py_spy": spies, "failures": failures}
    run.finish(results, table, notes, args.out_dir)


if __name__ == "__main__":
    main()
