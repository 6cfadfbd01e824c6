"""Soak: the real stack (``textclf serve``: nginx -> gunicorn -> Flask -> onnxruntime) under bounded
load at each concurrency for a fixed time, with mixed valid bodies (one text, a JSON batch of 2-32,
JSON Lines of 2-16), every answer checked. Reports requests, errors, p50/p99 latency and the stack's
RSS (nginx + gunicorn master + workers) at the end of the warm-up and at the end of the run.

The long version of tests/reliability/test_soak.py (which runs 15 s per level in CI). A reliability
measure, not a speed one: by default the model is a tiny random BERT (``benchlib.tiny_bert``,
exported for real by the product: ONNX, INT8), so the numbers are the server's overhead under load,
not a production model's latency; ``--model-dir`` soaks any exported model directory instead.

    .venv/bin/python bench/soak.py --seconds 60 --concurrency 32 64
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import benchlib as bl
import server_load as sl

# the tiny model's vocabulary, and the words the load's sentences are drawn from
WORDS = sorted(set(re.findall(r"\w+", " ".join(bl.BUILTIN).lower())))
Body = tuple[str, str, bytes, int]  # kind, Content-Type, body, texts in it


def soak_bodies(seed: int, n: int = 60) -> list[Body]:
    """One text, a JSON batch of 2-32 texts and JSON Lines of 2-16 records, in turn; 3-24 random words a text."""
    rng = random.Random(seed)

    def texts(k: int) -> list[str]:
        return [" ".join(rng.choices(WORDS, k=rng.randint(3, 24))) for _ in range(k)]

    out: list[Body] = []
    for i in range(n):
        if i % 3 == 0:
            out.append(("single", "application/json", json.dumps({"inputs": texts(1)[0]}).encode(), 1))
        elif i % 3 == 1:
            batch = texts(rng.randint(2, 32))
            out.append(("batch", "application/json", json.dumps({"inputs": batch}).encode(), len(batch)))
        else:
            lines = [json.dumps({"text": t, "id": j}) for j, t in enumerate(texts(rng.randint(2, 16)))]
            out.append(("jsonlines", "application/jsonlines", "\n".join(lines).encode() + b"\n", len(lines)))
    return out


def verdict(kind: str, texts: int, status: int, data: bytes) -> str:
    """``ok`` when the answer holds one non-empty list of ``{label, score}`` per text; else what is wrong."""
    if status != 200:
        return f"HTTP {status}"
    try:
        answers = [json.loads(x) for x in data.splitlines()] if kind == "jsonlines" else json.loads(data)
    except ValueError:
        return "unparsable answer"
    answers = [answers] if kind == "single" else answers
    if len(answers) != texts:
        return f"{len(answers)} answers for {texts} texts"
    labelled = all(isinstance(a, list) and a and {"label", "score"} <= set(a[0]) for a in answers)
    return "ok" if labelled else "malformed answer"


def soak(port: int, concurrency: int, bodies: list[Body], warmup_s: float, seconds: float, at_warm: Any) -> dict:
    """``concurrency`` keep-alive clients post ``bodies`` in turn for ``warmup_s + seconds`` and check
    every answer; ``at_warm()`` runs when the warm-up ends, and latencies count from then on."""
    calls: list[tuple[float, float, str, str]] = []  # sent at, seconds, kind, verdict (list.append is atomic)
    start = time.monotonic()
    warm_at, stop_at = start + warmup_s, start + warmup_s + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # reconnects by itself after a close
        while (sent := time.monotonic()) < stop_at:
            kind, content_type, data, texts = bodies[i % len(bodies)]
            i += concurrency
            try:
                conn.request("POST", "/invocations", data, {"Content-Type": content_type})
                response = conn.getresponse()
                said = verdict(kind, texts, response.status, response.read())
            except (OSError, http.client.HTTPException) as exc:
                said = type(exc).__name__
                conn.close()
            calls.append((sent, time.monotonic() - sent, kind, said))
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, warm_at - time.monotonic()))
    at_warm()
    for thread in threads:
        thread.join()
    latencies = [s for sent, s, _, said in calls if said == "ok" and sent >= warm_at]
    failed = [f"{kind}: {said}" for _, _, kind, said in calls if said != "ok"]
    return {
        "seconds": round(time.monotonic() - start, 1),
        "requests": len(calls),
        "errors": len(failed),
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(bl.percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(bl.percentile(latencies, 99) * 1000, 1),
        "by_kind": dict(Counter(kind for _, _, kind, _ in calls)),
        "error_samples": failed[:20],
    }


def stack_rss_mib(server: sl.Server) -> float:
    """RSS of serve, nginx, the gunicorn master and its workers together."""
    return sum(p["rss_mb"] for p in server.processes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per concurrency level")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (SAGEMAKER_MODEL_SERVER_WORKERS)")
    parser.add_argument("--max-rss-growth", type=float, default=0.10, help="fail above this RSS growth")
    parser.add_argument("--model-dir", type=Path, help="an exported model directory (default: a tiny random BERT)")
    parser.add_argument("--work-dir", type=Path, default=bl.WORK_DIR, help="models, SM_ROOT and the serve log")
    parser.add_argument("--out-dir", type=Path, default=bl.RESULTS_DIR)
    parser.add_argument("--name", default="soak", help="result file name")
    args = parser.parse_args()
    run = bl.Run(args.name)
    work = args.work_dir / "soak"
    work.mkdir(parents=True, exist_ok=True)
    model = args.model_dir or bl.export_dir(bl.tiny_bert(work / "tiny-hf", WORDS), "int8", work, max_seq_length=64)
    root = sl.sm_root(model, work / "opt-ml")
    env = {"TEXTCLF_INTRA_OP_THREADS": "1"}
    server = sl.start_textclf(root, sl.free_port(), args.workers, work / "serve.log", "soak", extra_env=env)
    rows = []
    try:
        server.wait_ready(json.dumps({"inputs": "warm up"}))
        for concurrency in args.concurrency:
            rss: dict[str, float] = {}
            row = {"concurrency": concurrency}
            row |= soak(
                server.port,
                concurrency,
                soak_bodies(seed=concurrency),
                args.warmup,
                args.seconds,
                lambda rss=rss: rss.update(warm=stack_rss_mib(server)),
            )
            rss["end"] = stack_rss_mib(server)
            row |= {f"rss_{k}_mib": round(v, 1) for k, v in rss.items()}
            rows.append(row | {"rss_growth_pct": round((rss["end"] / rss["warm"] - 1) * 100, 2)})
        alive = server.proc.poll() is None
    finally:
        server.stop()
    columns = ["concurrency", "seconds", "requests", "errors", "rps", "p50_ms", "p99_ms", "rss_warm_mib", "rss_end_mib"]
    table = bl.md_table(rows, [*columns, "rss_growth_pct"])
    ok = alive and all(r["errors"] == 0 and r["rss_growth_pct"] < args.max_rss_growth * 100 for r in rows)
    notes = [
        f"{args.workers} gunicorn workers x 4 threads, 1 ORT thread each; model {args.model_dir or 'tiny BERT, INT8'}; "
        f"warm-up {args.warmup} s per level; time from start to the first /ping 200: {server.ping_s:.2f} s",
        "rps counts answered requests after the warm-up; a request is 1, 2-32 or 2-16 (JSON Lines) texts",
        f"verdict: {'PASS' if ok else 'FAIL'} (zero errors, RSS growth under {args.max_rss_growth:.0%}, stack alive)",
    ]
    results = {"rows": rows, "first_ping_s": round(server.ping_s or 0, 2), "workers": args.workers, "pass": ok}
    run.finish(results, table, notes, args.out_dir)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
