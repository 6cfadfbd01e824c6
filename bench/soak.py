"""Soak: the real stack (``textclf serve``: nginx -> gunicorn -> Flask -> onnxruntime) under bounded
load at each concurrency for a fixed time, with mixed valid bodies (one text, a JSON batch of 2-32,
JSON Lines of 2-16), every answer checked. Reports requests, errors, p50/p99 latency and the stack's
RSS (nginx + gunicorn master + workers) at the end of the warm-up and at the end of the run.

The long version of tests/reliability/test_soak.py (which runs 15 s per level in CI). A reliability
measure, not a speed one: the model is the tests' tiny random BERT (exported for real: ONNX, INT8),
so the numbers are the server's overhead under load, not a production model's latency.

    .venv/bin/python bench/soak.py --seconds 60 --concurrency 32 64
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "tests"), str(BENCH.parent / "tests" / "serve")]

import benchlib  # noqa: E402
from helpers.reliability import (  # noqa: E402
    export_tiny_model,
    mixed_bodies,
    percentile,
    process_group,
    rss_kib,
    run_load,
)
from serve_helpers import ServeProcess, make_sm_root  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per concurrency level")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (SAGEMAKER_MODEL_SERVER_WORKERS)")
    parser.add_argument("--max-rss-growth", type=float, default=0.10, help="fail above this RSS growth")
    args = parser.parse_args()
    run = benchlib.Run("soak")
    rows = []
    with tempfile.TemporaryDirectory(prefix="textclf-soak-") as tmp:
        work = Path(tmp)
        model = export_tiny_model(work / "model-build")
        root = make_sm_root(model, work / "opt-ml")
        env = {"TEXTCLF_INTRA_OP_THREADS": "1"}
        with ServeProcess(root, work / "logs", env, workers=args.workers) as serve:
            first_ping_s = serve.wait_ready()
            for concurrency in args.concurrency:
                rss: dict[str, int] = {}

                def warm(rss: dict[str, int] = rss) -> None:
                    rss["warm"] = rss_kib(process_group(serve.proc.pid))

                result = run_load(
                    serve.port,
                    concurrency,
                    args.seconds,
                    mixed_bodies(seed=concurrency),
                    warmup_s=args.warmup,
                    on_warm=warm,
                )
                rss["end"] = rss_kib(process_group(serve.proc.pid))
                lat = result.latencies_s
                rows.append(
                    {
                        "concurrency": concurrency,
                        "seconds": round(result.seconds, 1),
                        "requests": result.requests,
                        "errors": result.failed,
                        "rps": round(len(lat) / args.seconds, 1),
                        "p50_ms": round(percentile(lat, 50) * 1000, 1),
                        "p99_ms": round(percentile(lat, 99) * 1000, 1),
                        "rss_warm_mib": round(rss["warm"] / 1024, 1),
                        "rss_end_mib": round(rss["end"] / 1024, 1),
                        "rss_growth_pct": round((rss["end"] / rss["warm"] - 1) * 100, 2),
                        "by_kind": dict(result.by_kind),
                        "error_samples": result.errors,
                    }
                )
            alive = serve.proc.poll() is None
    columns = ["concurrency", "seconds", "requests", "errors", "rps", "p50_ms", "p99_ms", "rss_warm_mib", "rss_end_mib"]
    table = benchlib.md_table(rows, [*columns, "rss_growth_pct"])
    ok = alive and all(r["errors"] == 0 and r["rss_growth_pct"] < args.max_rss_growth * 100 for r in rows)
    notes = [
        f"{args.workers} gunicorn workers x 4 threads, 1 ORT thread each; tiny random BERT (INT8); "
        f"warm-up {args.warmup} s per level; time from start to the first /ping 200: {first_ping_s:.2f} s",
        "rps counts answered requests after the warm-up; a request is 1, 2-32 or 2-16 (JSON Lines) texts",
        f"verdict: {'PASS' if ok else 'FAIL'} (zero errors, RSS growth under {args.max_rss_growth:.0%}, stack alive)",
    ]
    run.finish(
        {"rows": rows, "first_ping_s": round(first_ping_s, 2), "workers": args.workers, "pass": ok}, table, notes
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
