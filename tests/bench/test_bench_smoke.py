"""Keeps the benchmarks from rotting: bench/engine.py, bench/server_load.py (with the seed-style peer),
bench/make_readme_table.py, bench/soak.py and bench/gpu_check.py at minimal size on a tiny random BERT.

No timing is asserted (performance claims live in bench/results, produced by bench/run_all.sh);
only that the scripts run end to end through the product's exporter, predictor and server and write
well-formed results.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.tiny_model import make_tiny_model

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


def _have_nginx() -> bool:
    return bool(shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin"))


@pytest.mark.skipif(not _have_nginx(), reason="textclf serve needs nginx (apt-get install nginx-light)")
def test_server_benchmark_and_readme_table_at_minimal_size(tmp_path: Path) -> None:
    """bench/server_load.py against the real stack (nginx -> gunicorn -> Flask), the bare predictor, the
    floors (gunicorn + a bare WSGI predictor; the stack with a plain Flask route) and the seed-style
    Flask+PyTorch peer on a tiny model, then bench/make_readme_table.py over its result."""
    hf_dir = make_tiny_model(tmp_path / "tiny-hf")
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        str(REPO / "bench" / "server_load.py"),
        "--servers=textclf,bare,bare-wsgi,stack-floor,seed",
        "--concurrency=2",
        "--shapes=single,batch2",
        "--workers=1",
        "--max-requests=12",
        "--seconds=1",
        "--rounds=2",
        "--texts=builtin",
        f"--hf-dir={hf_dir}",
        f"--work-dir={tmp_path / 'work'}",
        f"--out-dir={out}",
        "--name=server-smoke",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]

    result = json.loads((out / "server-smoke.json").read_text())
    assert "server_load.py" in result["command"] and result["date"] and result["machine"]["cpus"] >= 1
    assert len(result["loadavg_start"]) == 3 and len(result["loadavg_end"]) == 3
    assert result["failures"] == {}, result["failures"]
    assert set(result["servers"]) == {"textclf", "bare", "bare-wsgi", "stack-floor", "seed"}
    for name in ("textclf", "bare-wsgi", "stack-floor", "seed"):
        runs = result["servers"][name]["runs"]
        assert {(r["shape"], r["concurrency"]) for r in runs} == {("single", 2), ("batch2", 2)}
        for r in runs:
            assert r["completed"] > 0 and r["errors"] == 0 and r["p99_ms"] >= r["p50_ms"] > 0
            # two rounds, merged into one row: the median of the two (their mean) and the sum of requests
            assert len(r["rounds"]) == 2
            assert r["req_per_s"] == pytest.approx(sum(x["req_per_s"] for x in r["rounds"]) / 2)
        startup = result["servers"][name]["startup"]
        assert 0 < startup["first_ping_s"] <= startup["first_prediction_s"]
        roles = {p["role"] for p in result["servers"][name]["processes"]["after_load"]}
        assert "gunicorn worker" in roles
    assert all(r["req_per_s"] > 0 for r in result["servers"]["bare"]["runs"])
    # where the CPU went per answered request, by process group, in every run and at saturation
    for r in result["servers"]["textclf"]["runs"]:
        assert r["cpu_ms_per_request"]["gunicorn"] > 0 and r["cpu_ms_per_request"]["nginx"] > 0
    assert all(r["cpu_ms_per_request"]["predictor"] > 0 for r in result["servers"]["bare"]["runs"])
    cpu_rows = {row["server"]: row for row in result["summary"]["cpu_at_saturation"]}
    assert {"textclf", "bare", "bare-wsgi", "stack-floor"} <= set(cpu_rows)
    assert cpu_rows["textclf"]["total"] >= cpu_rows["textclf"]["gunicorn"] > 0
    assert "CPU ms per request at saturation" in (out / "server-smoke.md").read_text()
    ratios = set(result["summary"]["ratios"])
    floors = {"bare-wsgi/bare single", "stack-floor/bare single"}
    assert {"textclf/bare single", "textclf/seed single (saturation throughput)", *floors} <= ratios
    roles = {p["role"] for p in result["servers"]["stack-floor"]["processes"]["after_load"]}
    assert {"stack-floor supervisor", "nginx worker", "gunicorn worker"} <= roles, roles
    assert "| server |" in (out / "server-smoke.md").read_text()
    assert "Every server ran 2 times at every level" in (out / "server-smoke.md").read_text()

    # the tables for bench/README.md (make readme-tables splices them in), with links into the results folder
    table = [sys.executable, str(REPO / "bench" / "make_readme_table.py"), f"--results={out}"]
    proc = subprocess.run(table, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "server_load.py" in proc.stdout and "| server |" in proc.stdout
    assert "[server-smoke.md](results/server-smoke.md)" in proc.stdout


@pytest.mark.skipif(not _have_nginx(), reason="textclf serve needs nginx (apt-get install nginx-light)")
def test_soak_runs_at_minimal_size(tmp_path: Path) -> None:
    """bench/soak.py: its own tiny model, the real stack, mixed checked load, RSS before and after."""
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "bench" / "soak.py"), "--seconds=1", "--warmup=0.5", "--concurrency", "2"]
    cmd += ["--workers=1", f"--work-dir={tmp_path / 'work'}", f"--out-dir={out}", "--name=soak-smoke"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]

    result = json.loads((out / "soak-smoke.json").read_text())
    assert "soak.py" in result["command"] and result["pass"] and result["first_ping_s"] > 0
    [row] = result["rows"]
    assert row["concurrency"] == 2 and row["errors"] == 0 and row["requests"] > 0
    assert set(row["by_kind"]) == {"single", "batch", "jsonlines"}
    assert row["p99_ms"] >= row["p50_ms"] > 0 and row["rss_warm_mib"] > 0
    assert "| concurrency |" in (out / "soak-smoke.md").read_text()


def test_gpu_check_runs_each_configuration_and_says_what_it_saw(tmp_path: Path) -> None:
    """bench/gpu_check.py on this GPU-less machine: device=cuda is refused with the reason, CPU trains."""
    pretrained = make_tiny_model(tmp_path / "tiny", labels=None, words=["order", "billing", "refund", "late"])
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--configs", "bf16", "cpu", "--steps=2"]
    cmd += [f"--pretrained={pretrained}", f"--out-dir={out}", "--name=gpu-smoke"]
    subprocess.run(cmd, check=True, cwd=REPO, timeout=600)
    rows = {row["config"]: row for row in json.loads((out / "gpu-smoke.json").read_text())["rows"]}
    assert rows["bf16"]["exit"] == 2 and rows["bf16"]["failure"].startswith("device=cuda: this host has no GPU")
    assert rows["cpu"]["exit"] == 0, rows["cpu"]
    assert rows["cpu"]["device line"].startswith("device: cpu; torch ") and rows["cpu"]["last train_loss"] > 0


def test_request_breakdown_runs_at_minimal_size(tmp_path: Path) -> None:
    """bench/request_breakdown.py: the in-process stages of a worker's app, then the real stack at
    each layer (nginx, gunicorn's socket with and without keep-alive), on a tiny model."""
    hf_dir = make_tiny_model(tmp_path / "tiny-hf")
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "bench" / "request_breakdown.py"), f"--hf-dir={hf_dir}", "--texts=builtin"]
    cmd += ["--stage-requests=60", "--rounds=3", "--per-round=10", "--workers=1", "--max-seq-length=64"]
    cmd += [f"--work-dir={tmp_path / 'work'}", f"--out-dir={out}", "--name=breakdown-smoke"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]

    result = json.loads((out / "breakdown-smoke.json").read_text())
    assert result["upstream_keepalive"] is True  # nginx.conf keeps its connections to gunicorn
    layers = result["layers"]
    floor = "gunicorn socket, keep-alive, bare WSGI predictor (no Flask)"
    in_process = [
        "in-process: the worker's app (app.wsgi_app)",
        "in-process: a plain Flask route around the predictor",
        "in-process: the bare predictor (Classifier.predict)",
    ]
    served = ["nginx (TCP, keep-alive)", "gunicorn socket, new connection", "gunicorn socket, keep-alive"]
    assert list(layers) == [*served, floor, *in_process]
    for name, r in layers.items():
        assert r["requests"] == 30 and r["p99_ms"] >= r["p50_ms"] > 0
        group = "bare WSGI gunicorn" if name == floor else "client" if name in in_process else "gunicorn"
        assert r["cpu_ms_per_request"][group] > 0, (name, r["cpu_ms_per_request"])
    assert layers["nginx (TCP, keep-alive)"]["cpu_ms_per_request"]["nginx"] > 0
    # every summary figure from the rounds pairs requests on the same texts: a NaN would mean no pairs
    summary = result["summary"]
    for key in (
        "overhead_over_idle_bare_p50_ms",
        "app_in_process_over_idle_bare_p50_ms",
        "plain_flask_floor_p50_ms",
        "gunicorn_floor_p50_ms",
        "app_over_bare_wsgi_p50_ms",
    ):
        assert math.isfinite(summary[key]), key
    assert summary["bare_wsgi_p50_ms"] > 0 and summary["bare_predict_after_idle_p50_ms"] > 0
    stages = result["stages"]["median_ms"]
    assert all(stages[k] > 0 for k in ("ORT session.run", "tokenizer", "predict", "wsgi total"))
    *_, flask_row, log_row = result["breakdown"]
    assert flask_row["layer"] == "Flask + hooks"
    # the log line is written after the answer: CPU time, no latency
    assert log_row["layer"].startswith("request log") and log_row["ms"] == 0 and log_row["cpu_ms"] > 0
    # the app timed after an idle gap too, in the stages: the gap has its own row
    assert result["stages"]["idle_ms"] == 1.0 and stages["wsgi total after idle"] > 0
    assert any(r["layer"].startswith("waking from idle: the app after 1 ms idle") for r in result["breakdown"])
    # the app's own request log lines were read back (every request of every layer went through it)
    assert result["summary"]["app_in_server"]["requests"] >= 90
    table = [sys.executable, str(REPO / "bench" / "make_readme_table.py"), f"--results={out}"]
    proc = subprocess.run(table, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0 and "layer or stage (outside in)" in proc.stdout, proc.stderr[-3000:]


def test_int8_ceiling_runs_at_minimal_size(tmp_path: Path) -> None:
    """bench/int8_ceiling.py: the model's linear layers alone in PyTorch, ORT FP32 and the product's INT8,
    and the whole models, at two lengths on a tiny model."""
    hf_dir = make_tiny_model(tmp_path / "tiny-hf")
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "bench" / "int8_ceiling.py"), f"--hf-dir={hf_dir}", "--lengths=16,8"]
    cmd += ["--seconds=0.05", "--max-rounds=4", f"--work-dir={tmp_path / 'work'}", f"--out-dir={out}", "--name=c"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]

    result = json.loads((out / "c.json").read_text())
    assert [r["tokens"] for r in result["lengths"]] == [8, 16]
    for r in result["lengths"]:
        assert r["torch_model_ms"] > 0 and r["int8_model_ms"] > 0 and r["ort_call_us"] > 0
        assert r["int8_linears_ms"] >= 0 and r["torch_linears_ms"] > 0
        # a tiny model's INT8 layers may take no longer than an empty session.run: then no ratio
        if r["int8_linears_ms"] > 0:
            assert r["ceiling_x"] == pytest.approx(r["torch_model_ms"] / r["int8_linears_ms"])
        else:
            assert r["ceiling_x"] is None and r["linears_x"] is None
    config = json.loads((hf_dir / "config.json").read_text())
    h, f = config["hidden_size"], config["intermediate_size"]
    shapes = [(r["tokens"], r["k_x_n"]) for r in result["shapes"]]
    assert shapes == [(m, kn) for m in (8, 16) for kn in (f"{h}x{h}", f"{h}x{f}", f"{f}x{h}")] + [(512, f"{h}x{f}")]
    assert "ceiling: PyTorch model / INT8 linears" in (out / "c.md").read_text()


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("request_breakdown.py", ["--env", "NO_EQUALS_SIGN"], "'NO_EQUALS_SIGN' is not KEY=VALUE"),
        ("request_breakdown.py", ["--env", "=value"], "'=value' is not KEY=VALUE"),
        ("request_breakdown.py", ["--idle-ms", "-1"], "--idle-ms must be between 0 and 1000, got -1"),
        ("server_load.py", ["--render", "no/such/results.json"], "--render no/such/results.json: no such results file"),
        ("server_load.py", ["--rounds", "0"], "--rounds must be at least 1, got 0"),
        ("int8_ceiling.py", ["--lengths", "25,many"], "--lengths must be comma-separated integers, got '25,many'"),
        ("int8_ceiling.py", ["--lengths", "1"], "--lengths must be at least 2 tokens each, got '1'"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(script: str, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
