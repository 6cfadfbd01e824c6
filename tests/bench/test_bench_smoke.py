"""Keeps bench/engine.py from rotting: the whole benchmark at minimal size on a tiny random BERT.

No timing is asserted (performance claims live in bench/results, produced by bench/run_all.sh);
only that the script runs end to end through the product's exporter and predictor and writes a
well-formed result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers.tiny_model import make_tiny_model

REPO = Path(__file__).resolve().parents[2]


def test_engine_benchmark_runs_at_minimal_size(tmp_path: Path) -> None:
    hf_dir = make_tiny_model(tmp_path / "tiny-hf")
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        str(REPO / "bench" / "engine.py"),
        f"--models=tiny={hf_dir}",
        "--inputs=builtin,pad128",
        "--pad-source=builtin",
        "--threads=1",
        "--batches=1,2",
        "--calls=2",
        "--seconds=0.05",
        "--max-iters=4",
        "--peak-seconds=0.05",
        f"--work-dir={tmp_path / 'work'}",
        f"--out-dir={out}",
        "--name=engine-smoke",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    result = json.loads((out / "engine-smoke.json").read_text())
    assert result["command"].startswith(".venv/bin/python bench/engine.py") or "engine.py" in result["command"]
    assert result["machine"]["cpus"] >= 1 and result["versions"]["onnxruntime"]
    rows = result["rows"]
    assert {r["runtime"] for r in rows} == {"torch", "ort-fp32", "ort-int8"}
    assert {(r["input"], r["batch"]) for r in rows} == {(i, b) for i in ("builtin", "pad128") for b in (1, 2)}
    for row in rows:
        assert row["texts_per_s"] > 0 and row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]
        assert row["pct_of_int8_ceiling"] > 0
    assert all(r["mean_tokens"] == 128 for r in rows if r["input"] == "pad128")
    assert {g["graph"] for g in result["peak"]["rows"]} == {"fp32", "int8_dynamic", "int8_kernel"}
    assert "| model |" in (out / "engine-smoke.md").read_text()
