"""Server benchmark: the real stack (nginx -> gunicorn -> Flask, ``textclf serve``) under bounded load over
loopback, against its peers on the same model, inputs and machine, in the same run.

Servers (each started, measured and stopped in turn, never two at once):

- ``textclf``: ``textclf serve`` on the INT8 model directory (what the image runs);
- ``seed``: ``bench/peers/seed_flask_app.py``: Flask + PyTorch FP32 padding every request to 128
  tokens, gunicorn sync workers, the same worker count;
- ``hf``: the Hugging Face SageMaker inference toolkit 2.6.0 (multi-model-server + a transformers
  pipeline in PyTorch FP32) from ``bench/.work/.venv-peer``, on a ``save_pretrained`` copy of the same model;
- ``bare-wsgi``: the floor of any gunicorn-served predictor here: ``bench/peers/bare_wsgi.py`` (the
  product's predictor behind a bare WSGI function: no nginx, Flask, hooks or request features) in a
  gunicorn started with ``textclf serve``'s own command line, on a loopback port;
- ``stack-floor``: the floor of the whole stack: ``bench/peers/stack_floor.py`` runs ``textclf serve``'s
  own supervisor, nginx.conf and gunicorn command line with a plain Flask route around the predictor
  as the app (no hooks, rules, request ids, deadlines or request log);
- ``bare``: the predictor in-process, no HTTP: one process per worker (1 ORT thread each, as the
  server's workers), each classifying the same requests back to back; the server's throughput
  over this is its overhead as a ratio.

Load: Debian's ``wrk`` (C, epoll, one thread) with a generated Lua script that cycles through
pre-built JSON bodies (SST-2 dev sentences; one text per request, or 8), bounded by time (``-d``)
and by count (the script stops its thread after ``--max-requests`` answers). A C client takes a few
percent of one core where a Python client doing the same would take a large share of the 2 cores
the servers need. ``--client python`` falls back to an asyncio client when ``wrk`` is missing.

Every server binds to 127.0.0.1 on a free port; no traffic leaves loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib as bl

# the toolkit's own venv (bench/peers/install-hf-peer.sh), kept apart from the product's .venv
# (absolute: the toolkit's `serve` is started with its own working directory)
PEER_VENV = Path(os.environ.get("TEXTCLF_PEER_VENV", str(bl.WORK_DIR / ".venv-peer"))).absolute()
VENV_BIN = Path(sys.executable).parent
WRK_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local bodies = dofile(os.getenv("BENCH_BODIES"))
local limit = tonumber(os.getenv("BENCH_MAX_REQUESTS"))
local threads = {}
local n, i = #bodies, 0
count, t_first, t_last, non2xx, stopped = 0, 0, 0, 0, false

wrk.method = "POST"
wrk.path = "/invocations"
wrk.headers["Content-Type"] = "application/json"

function setup(thread) table.insert(threads, thread) end

function request()
  if t_first == 0 then t_first = now() end
  i = i % n + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

function response(status, headers, body)
  count = count + 1
  t_last = now()
  if status ~= 200 then non2xx = non2xx + 1 end
  if count >= limit and not stopped then
    stopped = true
    wrk.thread:stop()
    io.stderr:write("BENCH_LIMIT_REACHED\n")
    io.stderr:flush()
  end
end

function done(summary, latency, requests)
  local c, t0, t1, bad = 0, math.huge, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("count")
    bad = bad + t:get("non2xx")
    if t:get("t_first") > 0 then t0 = math.min(t0, t:get("t_first")) end
    t1 = math.max(t1, t:get("t_last"))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"completed":%d,"elapsed_s":%.6f,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f}\n',
    c, t1 - t0, bad, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
"""


# -- request bodies ----------------------------------------------------------------------------------
def bodies_for(texts: Sequence[str], per_request: int) -> list[list[str]]:
    return [list(texts[i : i + per_request]) for i in range(0, len(texts) - per_request + 1, per_request)]


def body_json(texts: list[str]) -> str:
    return json.dumps({"inputs": texts[0] if len(texts) == 1 else texts})


def lua_bodies(path: Path, requests: list[list[str]]) -> None:
    def long_string(s: str) -> str:
        level = "=" * 4
        while f"]{level}]" in s:
            level += "="
        return f"[{level}[{s}]{level}]"

    path.write_text("return {\n" + ",\n".join(long_string(body_json(r)) for r in requests) + "\n}\n")


# -- load generators ---------------------------------------------------------------------------------
def free_port() -> int:
    """A free loopback port below 32767 (multi-model-server refuses higher ones), away from 8080."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def wrk_load(
    port: int, requests: list[list[str]], concurrency: int, max_requests: int, max_s: float, timeout_s: float, tmp: Path
) -> dict[str, Any]:
    """One bounded wrk run; returns completed, elapsed, errors and latency percentiles."""
    script, bodies = tmp / "post.lua", tmp / "bodies.lua"
    script.write_text(WRK_LUA)
    lua_bodies(bodies, requests)
    env = os.environ | {"BENCH_BODIES": str(bodies), "BENCH_MAX_REQUESTS": str(max_requests)}
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(max_s))}s", f"--timeout={round(timeout_s)}s"]
    cmd += ["-s", str(script), f"http://127.0.0.1:{port}/invocations"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    # When the script reaches its count it stops its thread and says so; wrk's main thread would sleep
    # out the whole -d, so interrupt it (SIGINT makes wrk report and exit).
    for line in proc.stderr:
        if "BENCH_LIMIT_REACHED" in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=max_s + timeout_s + 30)
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result (rc {proc.returncode}): {out[-2000:]} {err[-2000:]}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"]
    return r


async def _py_load(
    port: int, requests: list[list[str]], concurrency: int, max_requests: int, max_s: float, timeout_s: float
) -> dict[str, Any]:
    import asyncio

    payloads = [body_json(r).encode() for r in requests]
    lat: list[float] = []
    errors = {"connect": 0, "read": 0, "timeout": 0, "non2xx": 0}
    sent = 0
    t0 = time.perf_counter()
    deadline = t0 + max_s

    async def worker(k: int) -> None:
        nonlocal sent
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            errors["connect"] += 1
            return
        while sent < max_requests and time.perf_counter() < deadline:
            body = payloads[sent % len(payloads)]
            sent += 1
            head = "POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            writer.write(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            t = time.perf_counter()
            try:
                status_line = await asyncio.wait_for(reader.readline(), timeout_s)
                length, close = 0, False
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    if name.lower() == "connection" and "close" in value.lower():
                        close = True
                await reader.readexactly(length)
            except (TimeoutError, asyncio.IncompleteReadError, OSError):
                errors["timeout" if isinstance(sys.exc_info()[1], TimeoutError) else "read"] += 1
                writer.close()
                return
            lat.append(time.perf_counter() - t)
            if b" 200 " not in status_line:
                errors["non2xx"] += 1
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    s = bl.summarize_ms(lat)
    return {
        "completed": len(lat),
        "elapsed_s": time.perf_counter() - t0,
        "p50_ms": s["p50_ms"],
        "p90_ms": bl.percentile([x * 1000 for x in lat], 90),
        "p99_ms": s["p99_ms"],
        "max_ms": max(lat) * 1000 if lat else float("nan"),
        "mean_ms": s["mean_ms"],
        **errors,
        "errors": sum(errors.values()),
    }


def run_load(client: str, port: int, requests: list[list[str]], c: int, n: int, s: float, timeout: float) -> dict:
    if client == "wrk":
        with tempfile.TemporaryDirectory() as tmp:
            return wrk_load(port, requests, c, n, s, timeout, Path(tmp))
    import asyncio

    return asyncio.run(_py_load(port, requests, c, n, s, timeout))


# -- servers -----------------------------------------------------------------------------------------
def http_status(port: int, method: str, path: str, body: str | None = None, timeout: float = 5.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return 0
    finally:
        conn.close()


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen
    log: Path
    t_start: float
    stop_cmd: list[str] | None = None
    stop_env: dict[str, str] | None = None
    ping_s: float | None = None
    ready_s: float | None = None
    pids: set[int] = field(default_factory=set)

    def wait_ready(self, sample_body: str, limit_s: float = 240.0) -> None:
        """First 200 on /ping, then the first 200 on /invocations (the toolkit's /ping says 200
        before its model is loaded, so readiness is the first good prediction), bounded."""
        deadline = self.t_start + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            if self.ping_s is None and http_status(self.port, "GET", "/ping", timeout=2) == 200:
                self.ping_s = time.monotonic() - self.t_start
            if self.ping_s is not None and http_status(self.port, "POST", "/invocations", sample_body, 30) == 200:
                self.ready_s = time.monotonic() - self.t_start
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready within {limit_s} s; see {self.log}")

    def processes(self) -> list[dict[str, Any]]:
        pids = [self.proc.pid, *bl.descendants(self.proc.pid)]
        if self.name == "hf":  # `multi-model-server --start` detaches its Java frontend; it leaves its pid here
            with contextlib.suppress(OSError, ValueError):
                java = int(Path("/tmp/.model_server.pid").read_text().split()[0])
                if "java" in bl.cmdline(java):
                    pids += [java, *bl.descendants(java)]
        self.pids.update(pids)
        out = []
        for pid in pids:
            cmd = bl.cmdline(pid)
            if cmd:
                out.append({"pid": pid, "role": role_of(cmd), "rss_mb": round(bl.rss_mb(pid), 1)})
        return out

    def stop(self) -> None:
        self.processes()  # remember every pid we started, to make sure they all end
        if self.stop_cmd:
            subprocess.run(self.stop_cmd, env=self.stop_env, capture_output=True, timeout=60)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        for pid in sorted(self.pids):
            while bl.cmdline(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if bl.cmdline(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def role_of(cmd: str) -> str:
    for needle, role in (
        ("nginx: master", "nginx master"),
        ("nginx: worker", "nginx worker"),
        ("java", "mms java frontend"),
        ("model_service_worker", "mms python worker"),
        ("textclf serve", "textclf serve (supervisor)"),
        ("stack_floor.py", "stack-floor supervisor"),
        ("multi-model-server", "mms launcher"),
        ("bin/serve", "toolkit serve (launcher)"),
    ):
        if needle in cmd:
            return role
    if "gunicorn" in cmd:
        return "gunicorn"
    return cmd[:60]


def process_groups(server: Server) -> dict[str, list[int]]:
    """The server's processes by program: nginx, gunicorn, and other (supervisors, other servers' parts)."""
    groups: dict[str, list[int]] = {"nginx": [], "gunicorn": [], "other": []}
    for pid in [server.proc.pid, *bl.descendants(server.proc.pid)]:
        program = role_of(bl.cmdline(pid)).split()[0]
        groups[program if program in groups else "other"].append(pid)
    return groups


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children (the load generator, once waited for)."""
    t = os.times()
    return t.children_user + t.children_system


def label_gunicorn(procs: list[dict[str, Any]]) -> None:
    """gunicorn's master is the parent of the others; call them worker by parent pid."""
    pids = {p["pid"] for p in procs}
    for p in procs:
        if p["role"] == "gunicorn":
            try:
                ppid = int(Path(f"/proc/{p['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                ppid = 0
            parent_is_gunicorn = any(q["pid"] == ppid and q["role"].startswith("gunicorn") for q in procs)
            p["role"] = "gunicorn worker" if ppid in pids and parent_is_gunicorn else "gunicorn master"


def sm_root(model: Path, root: Path) -> Path:
    """A fresh SM_ROOT at ``root`` whose ``model/`` links to the model directory ``model``."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "model").symlink_to(model.resolve())
    return root


def start_textclf(
    root: Path,
    port: int,
    workers: int,
    log: Path,
    name: str = "textclf",
    extra_env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> Server:
    """``textclf serve`` on the SM_ROOT ``root``; ``extra_env``: more variables, e.g. ``TEXTCLF_*`` settings;
    ``command``: another program to start in serve's place, with serve's environment."""
    env = {
        **os.environ,
        "SM_ROOT": str(root),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    }
    t = time.monotonic()
    cmd = command or [str(VENV_BIN / "textclf"), "serve"]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=root)
    return Server(name, port, proc, log, t)


def start_stack_floor(root: Path, port: int, workers: int, log: Path) -> Server:
    """``bench/peers/stack_floor.py``: ``textclf serve``'s own supervisor, nginx.conf and gunicorn command
    line, with a plain Flask route around the predictor as the app (the floor of the stack)."""
    command = [str(VENV_BIN / "python"), str(bl.BENCH_DIR / "peers" / "stack_floor.py")]
    return start_textclf(root, port, workers, log, "stack-floor", command=command)


def bare_wsgi_command(
    model_dir: Path, bind: str, workers: int, work: Path, extra_env: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of ``bench/peers/bare_wsgi.py`` (the product's predictor behind a bare
    WSGI function: no nginx, Flask, hooks or request features) in a gunicorn started with ``textclf
    serve``'s own command line (worker class, threads, keep-alive, timeouts), bound to ``bind``."""
    from textclf.serve.settings import ServingSettings
    from textclf.serve.supervisor import gunicorn_command

    env = os.environ | (extra_env or {}) | {"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)}
    settings = ServingSettings.from_env(env)
    cmd = gunicorn_command(settings, work / "bare-wsgi.sock", work)
    cmd[cmd.index("--bind") + 1] = bind
    assert cmd[-1] == "textclf.serve.app:create_app()", cmd
    cmd[-1:] = ["--chdir", str(bl.BENCH_DIR / "peers"), "bare_wsgi:create_app()"]
    return cmd, env | settings.worker_env() | {"BARE_MODEL_DIR": str(model_dir)}


def start_bare_wsgi(model_dir: Path, port: int, workers: int, log: Path, work: Path) -> Server:
    """The floor of a gunicorn-served predictor (``bare_wsgi_command``) on a loopback port."""
    cmd, env = bare_wsgi_command(model_dir, f"127.0.0.1:{port}", workers, work)
    t = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return Server("bare-wsgi", port, proc, log, t)


def start_seed(hf_dir: Path, port: int, workers: int, log: Path) -> Server:
    env = os.environ | {"SEED_MODEL_DIR": str(hf_dir), "SEED_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(VENV_BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}"]
    cmd += ["--chdir", str(bl.BENCH_DIR / "peers"), "--timeout", "120", "seed_flask_app:app"]
    t = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return Server("seed", port, proc, log, t)


def start_hf(hf_dir: Path, port: int, workers: int, log: Path, work: Path) -> Server:
    """The Hugging Face inference toolkit, started as its DLC does (performance.md), bound to loopback."""
    if not (PEER_VENV / "bin" / "serve").exists():
        raise RuntimeError(f"{PEER_VENV}/bin/serve missing: run bench/peers/install-hf-peer.sh {PEER_VENV}")
    base = work / "hf-base"
    shutil.rmtree(base, ignore_errors=True)
    (base / "model").mkdir(parents=True)
    for f in hf_dir.iterdir():  # a save_pretrained directory: config, weights, tokenizer
        if f.is_file():
            shutil.copy2(f, base / "model" / f.name)
    env = os.environ | {
        "PATH": f"{PEER_VENV / 'bin'}:{os.environ.get('PATH', '')}",
        "HF_TASK": "text-classification",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        # MMS reads MMS_* environment variables over its properties file (enable_envvars_config=true):
        # keep its listeners on loopback instead of the toolkit's 0.0.0.0.
        "MMS_INFERENCE_ADDRESS": f"http://127.0.0.1:{port}",
        "MMS_MANAGEMENT_ADDRESS": f"http://127.0.0.1:{port}",
    }
    env.pop("VIRTUAL_ENV", None)
    t = time.monotonic()
    proc = subprocess.Popen(
        [str(PEER_VENV / "bin" / "serve")], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=work
    )
    stop_cmd = [str(PEER_VENV / "bin" / "multi-model-server"), "--stop"]
    return Server("hf", port, proc, log, t, stop_cmd=stop_cmd, stop_env=env)


# -- the bare predictor ------------------------------------------------------------------------------
def _bare_worker(model_dir: str, requests: list[list[str]], n: int, max_s: float, barrier: Any, q: Any) -> None:
    from textclf.model.predictor import Classifier

    clf = Classifier.load(model_dir, threads=1)
    clf.warmup()
    for r in requests[:5]:
        clf.predict(r)
    barrier.wait()
    lat = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        t = time.perf_counter()
        clf.predict(requests[i % len(requests)])
        lat.append(time.perf_counter() - t)
        if time.perf_counter() - t0 > max_s:
            break
    q.put((lat, time.perf_counter() - t0, time.process_time() - cpu0))


def bare(model_dir: Path, requests: list[list[str]], procs: int, max_requests: int, max_s: float) -> dict[str, Any]:
    """``procs`` processes (1 ORT thread each), each predicting the requests back to back, started together.
    Each process starts at a different offset so they do not classify the same text at the same time."""
    ctx = mp.get_context("spawn")
    barrier, q = ctx.Barrier(procs), ctx.Queue()
    per = max(1, max_requests // procs)
    workers = [
        ctx.Process(
            target=_bare_worker,
            args=(
                str(model_dir),
                requests[k * len(requests) // procs :] + requests[: k * len(requests) // procs],
                per,
                max_s,
                barrier,
                q,
            ),
        )
        for k in range(procs)
    ]
    for w in workers:
        w.start()
    results = [q.get(timeout=max_s + 300) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    lat = [x for r in results for x in r[0]]
    elapsed = max(r[1] for r in results)
    s = bl.summarize_ms(lat)
    return {
        "cpu_ms_per_request": {"predictor": sum(r[2] for r in results) * 1000 / len(lat)},
        "completed": len(lat),
        "elapsed_s": elapsed,
        "p50_ms": s["p50_ms"],
        "p99_ms": s["p99_ms"],
        "errors": 0,
        "req_per_s": sum(len(r[0]) / r[1] for r in results),  # each process's rate over its own window
    }


# -- orchestration -----------------------------------------------------------------------------------
def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU time of ``pids`` so far (from /proc; gone processes count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def settle(server: Server, limit_s: float = 30.0) -> float:
    """Wait until ``server`` has finished what the last load left queued (a sync worker finishes a request
    whose client has gone), so that it does not eat into the next server's run; returns the seconds waited."""
    t0 = time.monotonic()
    server.processes()  # refresh the pid set
    before = cpu_seconds(server.pids)
    while time.monotonic() - t0 < limit_s:
        time.sleep(0.5)
        now = cpu_seconds(server.pids)
        if now - before < 0.05:  # under 10% of one core over the last half second
            break
        before = now
    return time.monotonic() - t0


def bring_up(server: Server, sample: str, warm: list[list[str]], args: argparse.Namespace) -> dict[str, Any]:
    """Wait for the first good prediction, record start-up and memory, warm every worker up."""
    out: dict[str, Any] = {"runs": [], "startup": {}, "processes": {}}
    server.wait_ready(sample)
    out["startup"] = {"first_ping_s": server.ping_s, "first_prediction_s": server.ready_s}
    procs = server.processes()
    label_gunicorn(procs)
    out["processes"]["after_start"] = procs
    print(f"  {server.name}: ping after {server.ping_s:.1f} s, first prediction after {server.ready_s:.1f} s")
    # warm-up: every worker should have run a few requests (ORT's lazy set-up, torch's allocator)
    run_load(args.client, server.port, warm, 4, 40, 10, args.timeout)
    settle(server)
    return out


def one_run(
    server: Server, shape: str, requests: list[list[str]], c: int, n: int, args: argparse.Namespace
) -> dict[str, Any]:
    per_req = len(requests[0])
    load = [bl.loadavg()[0]]
    groups = process_groups(server)
    before = {g: bl.cpu_ns(pids) for g, pids in groups.items()}
    client_before = _children_cpu_s()
    r = run_load(args.client, server.port, requests, c, n, args.seconds, args.timeout)
    after = {g: bl.cpu_ns(pids) for g, pids in groups.items()}
    client_s = _children_cpu_s() - client_before
    load.append(bl.loadavg()[0])
    if r["completed"]:
        # where the machine's CPU went per answered request; wrk is a child (the Python client is not)
        cpu = {g: (after[g] - before[g]) / 1e6 / r["completed"] for g in groups}
        if args.client == "wrk":
            cpu["client"] = client_s * 1000 / r["completed"]
        r["cpu_ms_per_request"] = cpu
    r |= {
        "server": server.name,
        "shape": shape,
        "texts_per_request": per_req,
        "concurrency": c,
        "req_per_s": r["completed"] / r["elapsed_s"] if r["elapsed_s"] > 0 else 0.0,
        "loadavg_1m": load,
        "started": round(time.monotonic(), 1),
    }
    r["texts_per_s"] = r["req_per_s"] * per_req
    r["settle_s"] = round(settle(server), 1)
    print(
        f"  {server.name} {shape} c={c}: {r['req_per_s']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, "
        f"p99 {r['p99_ms']:.1f} ms, errors {r['errors']}, n={r['completed']}",
        flush=True,
    )
    return r


def bare_run(
    name: str, model_dir: Path, shape: str, requests: list[list[str]], procs: int, n: int, level: int | None, s: float
) -> dict[str, Any]:
    per = len(requests[0])
    r = bare(model_dir, requests, procs, n, s)
    r |= {"server": name, "shape": shape, "texts_per_request": per, "concurrency": procs, "level": level}
    r["texts_per_s"] = r["req_per_s"] * per
    r["started"] = round(time.monotonic(), 1)
    print(f"  {name} {shape} procs={procs}: {r['req_per_s']:.1f} req/s, p50 {r['p50_ms']:.1f} ms", flush=True)
    return r


def run_group(
    members: list[str],
    starters: dict[str, Any],
    shapes: dict[str, list[list[str]]],
    bare_dir: Path,
    levels: list[int],
    args: argparse.Namespace,
    results: dict[str, Any],
    failures: dict[str, str],
) -> None:
    """Start the group's servers (one after another, each timed alone), then take turns: at every request
    shape and concurrency level each server (and the bare predictor) runs once, in rotating order, so
    that the changing load of this shared machine falls on all of them alike."""
    live: dict[str, Server] = {}
    first = next(iter(shapes.values()))
    try:
        for name in members:
            if name.endswith("bare"):
                results["servers"][name] = {"runs": []}
                continue
            print(f"== starting {name}", flush=True)
            server = None
            try:
                server = starters[name]()
                results["servers"][name] = bring_up(server, body_json(first[0]), first, args)
                live[name] = server
            except Exception as exc:  # a peer that cannot run here is a result, not a crash
                failures[name] = f"{type(exc).__name__}: {exc}"
                print(f"  {name} FAILED: {failures[name]}", flush=True)
                if server is not None:
                    server.stop()
        turn = [m for m in members if m in live or m.endswith("bare")]
        for shape, requests in shapes.items():
            per = len(requests[0])
            n = args.max_requests if per == 1 else max(50, args.max_requests // per)
            print(f"== {shape}", flush=True)
            for name in (m for m in turn if m.endswith("bare") and args.workers > 1):  # one process, for reference
                for rnd in range(args.rounds):
                    results["servers"][name]["runs"].append(
                        bare_run(name, bare_dir, shape, requests, 1, n, None, args.seconds) | {"round": rnd}
                    )
            for i, c in enumerate(levels):
                for rnd in range(args.rounds):
                    k = (i + rnd) % len(turn)
                    for name in turn[k:] + turn[:k]:
                        try:
                            if name.endswith("bare"):
                                r = bare_run(name, bare_dir, shape, requests, args.workers, n, c, args.seconds)
                            else:
                                r = one_run(live[name], shape, requests, c, n, args)
                            results["servers"][name]["runs"].append(r | {"round": rnd})
                        except Exception as exc:
                            failures[f"{name} {shape} c={c}"] = f"{type(exc).__name__}: {exc}"
                            print(f"  {name} {shape} c={c} FAILED: {exc}", flush=True)
        for name in turn:
            data = results["servers"][name]
            data["runs"] = merge_rounds(data["runs"])
        for name, server in live.items():
            procs = server.processes()
            label_gunicorn(procs)
            results["servers"][name]["processes"]["after_load"] = procs
    finally:
        for server in live.values():
            server.stop()


# What merge_rounds keeps as the median of a level's rounds; the counts are summed.
_MEDIAN_FIELDS = ("req_per_s", "texts_per_s", "p50_ms", "p99_ms")


def merge_rounds(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per (shape, concurrency, level): with ``--rounds`` > 1, the median of its rounds'
    throughput and latency percentiles, the sum of their requests and errors, and each round's
    req/s and p50 under ``rounds``. A single round is kept as it ran."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["shape"], r["concurrency"], r.get("level")), []).append(r)
    merged = []
    for group in groups.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        m = dict(group[0])
        for key in _MEDIAN_FIELDS:
            m[key] = statistics.median(r[key] for r in group)
        for key in ("completed", "errors"):
            m[key] = sum(r[key] for r in group)
        if all("cpu_ms_per_request" in r for r in group):
            m["cpu_ms_per_request"] = {
                g: statistics.median(r["cpu_ms_per_request"][g] for r in group) for g in group[0]["cpu_ms_per_request"]
            }
        m["rounds"] = [{"req_per_s": r["req_per_s"], "p50_ms": r["p50_ms"]} for r in group]
        merged.append(m)
    return merged


def rss_summary(procs: list[dict[str, Any]]) -> dict[str, Any]:
    by_role: dict[str, list[float]] = {}
    for p in procs:
        by_role.setdefault(p["role"], []).append(p["rss_mb"])
    return {"total_mb": round(sum(p["rss_mb"] for p in procs), 1), "by_role": by_role}


def distilbert_inputs(work_dir: Path) -> tuple[Path, dict[str, list[list[str]]]]:
    """The DistilBERT-shaped INT8 model directory (max 128 tokens) and single-text requests that are
    all exactly 128 tokens after truncation: IMDB test-subset reviews of at least 128 tokens (shorter
    ones are dropped, so that no request flatters the 128-token figure)."""
    from textclf.model.encoding import TextEncoder

    dmodel = bl.export_dir(bl.hf_classifier("distilbert", work_dir), "int8", work_dir, 128)
    reviews = bl.sample(bl.imdb_test_subset(), 1000)
    enc = TextEncoder.from_dir(dmodel, 128, "head")
    full = [t for t, e in zip(reviews, enc.encode(reviews), strict=True) if len(e.ids) == 128]
    return dmodel, {"imdb128-single": bodies_for(full, 1)}


def pick_hf_dir(arg: str | None, work: Path) -> tuple[Path, str]:
    """The fine-tuned SST-2 classifier when there is one (bench/quality.py or the training engineer's run),
    else MiniLM with a random 2-label head: speed does not depend on the weights."""
    if arg:
        return Path(arg), "given"
    for cand in sorted(work.glob("quality/sst2/**/hf"), key=lambda p: p.stat().st_mtime, reverse=True):
        if (cand / "config.json").is_file():
            return cand, "fine-tuned on SST-2"
    return bl.hf_classifier("minilm", work), "MiniLM-L6 with a random 2-label head"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--servers",
        default="textclf,bare,seed,hf,distilbert,distilbert-bare",
        help="any of textclf, bare, bare-wsgi (gunicorn + a bare WSGI predictor), stack-floor (nginx -> gunicorn -> "
        "a plain Flask route), seed, hf, distilbert, distilbert-bare (servers take turns at every level)",
    )
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--shapes", default="single,batch8", help="single (1 text per request) and/or batchN")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-requests", type=int, default=3000, help="per run (divided by texts per request)")
    ap.add_argument("--seconds", type=float, default=15.0, help="per run")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="runs of every server at every level, taking turns; the results are their medians (a noisy machine)",
    )
    ap.add_argument("--timeout", type=float, default=20.0, help="per request")
    ap.add_argument("--hf-dir", help="Hugging Face classifier to serve (default: the fine-tuned SST-2 MiniLM if any)")
    ap.add_argument("--texts", choices=["sst2", "builtin"], default="sst2", help="SST-2 dev, or a few built-in ones")
    ap.add_argument("--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    ap.add_argument("--work-dir", type=Path, default=bl.WORK_DIR)
    ap.add_argument("--out-dir", type=Path, default=bl.RESULTS_DIR)
    ap.add_argument("--name", default="server")
    ap.add_argument("--render", type=Path, help="recompute the summary and .md of a results JSON (no run)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.render:
        if not args.render.is_file():
            ap.error(f"--render {args.render}: no such results file")
        rerender(args.render)
        return

    run = bl.Run(args.name)
    work = args.work_dir / "server"
    work.mkdir(parents=True, exist_ok=True)
    servers = args.servers.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    hf_dir, hf_what = pick_hf_dir(args.hf_dir, args.work_dir)
    model_dir = bl.export_dir(hf_dir, "int8", args.work_dir, 128)
    texts = bl.sample(bl.BUILTIN, 64) if args.texts == "builtin" else bl.sample(bl.sst2_dev(), 872)
    shapes: dict[str, list[list[str]]] = {}
    for shape in args.shapes.split(","):
        per = 1 if shape == "single" else int(shape.removeprefix("batch"))
        shapes[shape] = bodies_for(texts, per)
    print(f"model: {hf_dir} ({hf_what}); INT8 model dir {model_dir}; client {args.client}", flush=True)

    results: dict[str, Any] = {"model": {"hf_dir": str(hf_dir), "what": hf_what, "int8_dir": str(model_dir)}}
    results["client"] = args.client
    results["servers"] = {}
    failures: dict[str, str] = {}
    known = ("textclf", "bare", "bare-wsgi", "stack-floor", "seed", "hf", "distilbert", "distilbert-bare")
    unknown = set(servers) - set(known)
    if unknown:
        raise SystemExit(f"unknown servers {sorted(unknown)}: {', '.join(known)}")

    def textclf_on(model: Path, tag: str) -> Server:
        return start_textclf(sm_root(model, work / f"sm-{tag}"), free_port(), args.workers, work / f"{tag}.log", tag)

    starters = {
        "textclf": lambda: textclf_on(model_dir, "textclf"),
        "seed": lambda: start_seed(hf_dir, free_port(), args.workers, work / "seed.log"),
        "hf": lambda: start_hf(hf_dir, free_port(), args.workers, work / "hf.log", work),
        "bare-wsgi": lambda: start_bare_wsgi(model_dir, free_port(), args.workers, work / "bare-wsgi.log", work),
        "stack-floor": lambda: start_stack_floor(
            sm_root(model_dir, work / "sm-stack-floor"), free_port(), args.workers, work / "stack-floor.log"
        ),
    }
    group = [m for m in servers if m in ("textclf", "bare", "bare-wsgi", "stack-floor", "seed", "hf")]
    if group:
        run_group(group, starters, shapes, model_dir, levels, args, results, failures)
    group = [m for m in servers if m in ("distilbert", "distilbert-bare")]
    if group:
        # the 45 req/s aim: DistilBERT-shaped INT8, every request 128 tokens (IMDB reviews cut at 128)
        dmodel, dshapes = distilbert_inputs(args.work_dir)
        starters["distilbert"] = lambda: textclf_on(dmodel, "distilbert")
        run_group(group, starters, dshapes, dmodel, levels, args, results, failures)
    results["failures"] = failures
    results["summary"] = summarize(results["servers"], args.workers)
    table, notes = render(results)
    run.finish(results, table, notes, args.out_dir)


def rerender(path: Path) -> None:
    """Recompute the summary (ratios, aims) of a finished run from its runs, and write its .md again:
    for a change to what the summary reports, without measuring again. The run's own command, date
    and machine stay; the note says when and by what it was re-rendered."""
    results = json.loads(path.read_text())
    workers = re.search(r"--workers[ =](\d+)", results["command"])
    results["summary"] = summarize(results["servers"], int(workers.group(1)) if workers else 2)
    results["rerendered"] = f"{bl.command_line()} at git {bl.git_commit()}"
    table, notes = render(results)
    notes.append(f"Summary re-rendered from the runs of this file: `{results['rerendered']}`.")
    bl.write_result(path, results, table, notes)
    print(table)


def _best(runs: list[dict[str, Any]], shape: str) -> dict[str, Any] | None:
    ok = [r for r in runs if r["shape"] == shape and r["completed"] > 0]
    return max(ok, key=lambda r: r["req_per_s"]) if ok else None


def _at(runs: list[dict[str, Any]], shape: str, c: int) -> dict[str, Any] | None:
    return next((r for r in runs if r["shape"] == shape and r["concurrency"] == c), None)


# Servers whose throughput and concurrency-1 latency are compared with the bare predictor's: the product,
# and its floors (no nginx or Flask; nginx -> gunicorn -> a plain Flask route).
OVER_BARE = ("textclf", "bare-wsgi", "stack-floor")


def summarize(servers: dict[str, Any], workers: int) -> dict[str, Any]:
    s: dict[str, Any] = {"saturation": {}, "ratios": {}}
    for name, data in servers.items():
        for shape in {r["shape"] for r in data["runs"]}:
            best = _best(data["runs"], shape)
            if best:
                s["saturation"].setdefault(name, {})[shape] = {
                    k: best[k] for k in ("concurrency", "req_per_s", "texts_per_s", "p50_ms", "p99_ms", "errors")
                }
    sat = s["saturation"]
    bare_runs = servers.get("bare", {}).get("runs", [])
    for shape in sorted({r["shape"] for r in servers.get("textclf", {}).get("runs", [])}):
        tc = sat.get("textclf", {}).get(shape)
        if not tc:
            continue
        for name in OVER_BARE:
            best = sat.get(name, {}).get(shape)
            b = best and _bare_at(bare_runs, shape, best["concurrency"], workers)
            if best and b:
                s["ratios"][f"{name}/bare {shape}"] = best["req_per_s"] / b["req_per_s"]
        for peer in ("seed", "hf"):
            p = sat.get(peer, {}).get(shape)
            if p:
                s["ratios"][f"textclf/{peer} {shape} (saturation throughput)"] = tc["req_per_s"] / p["req_per_s"]
                c = p["concurrency"]
                tc_c = _at(servers["textclf"]["runs"], shape, c)
                if tc_c:
                    s["ratios"][f"{peer} p99 / textclf p99 {shape} at c={c}"] = p["p99_ms"] / tc_c["p99_ms"]
    d = sat.get("distilbert", {}).get("imdb128-single")
    if d:
        d_runs = servers.get("distilbert-bare", {}).get("runs", [])
        d_bare = _bare_at(d_runs, "imdb128-single", d["concurrency"], workers)
        if d_bare:
            s["ratios"]["distilbert/distilbert-bare imdb128-single"] = d["req_per_s"] / d_bare["req_per_s"]
    # one request at a time: what the stack adds to the bare predictor's latency (issue 17: <= 1.5 ms)
    b1 = next((r for r in bare_runs if (r["shape"], r["concurrency"]) == ("single", 1)), None)
    for name in OVER_BARE:
        r1 = _at(servers.get(name, {}).get("runs", []), "single", 1)
        if r1 and b1:
            s["ratios"][f"{name} p50 - bare p50 single at c=1 (ms)"] = r1["p50_ms"] - b1["p50_ms"]
    # the same ratios level by level: each pair ran minutes apart at most, back to back
    s["per_level"] = []
    textclf_others = ("bare", "bare-wsgi", "stack-floor", "seed", "hf")
    for base, others in (("textclf", textclf_others), ("distilbert", ("distilbert-bare",))):
        for r in servers.get(base, {}).get("runs", []):
            row = {"server": base, "shape": r["shape"], "concurrency": r["concurrency"], "req_per_s": r["req_per_s"]}
            for o in others:
                runs = servers.get(o, {}).get("runs", [])
                if o.endswith("bare"):
                    q = _bare_at(runs, r["shape"], r["concurrency"], workers)
                else:
                    q = _at(runs, r["shape"], r["concurrency"])
                if q and q["req_per_s"] > 0:
                    row[f"x {o}"] = r["req_per_s"] / q["req_per_s"]
                    if not o.endswith("bare") and r["p99_ms"] > 0:
                        row[f"{o} p99 / {base} p99"] = q["p99_ms"] / r["p99_ms"]
            s["per_level"].append(row)
    s["cpu_at_saturation"] = cpu_at_saturation(servers, workers)
    s["aims"] = aims(s)
    return s


CPU_GROUPS = ("predictor", "gunicorn", "nginx", "other", "client")


def cpu_at_saturation(servers: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    """CPU ms per request by process group in each server's highest-throughput run, and the bare
    predictor's in the run beside textclf's: where the machine's two cores go per answer."""
    rows = []
    tc_best = _best(servers.get("textclf", {}).get("runs", []), "single")
    for name, data in servers.items():
        if name == "bare":
            run = tc_best and _bare_at(data["runs"], "single", tc_best["concurrency"], workers)
        else:
            run = _best(data["runs"], "single")
        if not run or "cpu_ms_per_request" not in run:
            continue
        cpu = run["cpu_ms_per_request"]
        row = {"server": name, "concurrency": run["concurrency"], "req_per_s": run["req_per_s"]}
        row |= {g: cpu[g] for g in CPU_GROUPS if g in cpu}
        row["total"] = sum(cpu.values())
        rows.append(row)
    return rows


def _bare_at(runs: list[dict[str, Any]], shape: str, level: int, workers: int) -> dict[str, Any] | None:
    """The bare run (``workers`` processes) that ran beside the server's run at ``level``, else the first one."""
    mine = [r for r in runs if r["shape"] == shape and r["concurrency"] == workers]
    return next((r for r in mine if r.get("level") == level), mine[0] if mine else None)


def aims(s: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's server aims, each with the measured value and how far it is from the aim."""
    r, sat = s["ratios"], s["saturation"]
    out = []

    def add(aim: str, value: float | None, target: float, higher_is_better: bool = True) -> None:
        if value is None:
            out.append({"aim": aim, "value": None, "target": target, "met": "not measured", "gap": None})
            return
        met = value >= target if higher_is_better else value <= target
        gap = value / target if higher_is_better else target / value
        out.append({"aim": aim, "value": value, "target": target, "met": "yes" if met else "NO", "gap": gap})

    add("textclf / seed throughput, SST-2 single texts (x)", r.get("textclf/seed single (saturation throughput)"), 15)
    add("textclf / seed throughput, SST-2 8 texts/req (x)", r.get("textclf/seed batch8 (saturation throughput)"), 15)
    add("textclf / HF toolkit throughput, single texts (x)", r.get("textclf/hf single (saturation throughput)"), 5)
    add("textclf / HF toolkit throughput, 8 texts a request (x)", r.get("textclf/hf batch8 (saturation throughput)"), 5)
    hf_p99 = next((v for k, v in r.items() if k.startswith("hf p99 / textclf p99 single")), None)
    add("HF toolkit p99 / textclf p99 at the toolkit's best concurrency, single (x, > 1 = textclf lower)", hf_p99, 1)
    add("textclf server / bare predictor, single texts at saturation", r.get("textclf/bare single"), 0.85)
    overhead = r.get("textclf p50 - bare p50 single at c=1 (ms)")
    add("textclf p50 - bare predictor p50, single texts at concurrency 1 (ms)", overhead, 1.5, higher_is_better=False)
    add("textclf server / bare predictor, 8 texts a request at saturation", r.get("textclf/bare batch8"), 0.9)
    d = sat.get("distilbert", {}).get("imdb128-single")
    add("DistilBERT-shaped INT8, 128 tokens, through the server (req/s)", d["req_per_s"] if d else None, 45)
    return out


def render(results: dict[str, Any]) -> tuple[str, list[str]]:
    rows = [r | {"server": name} for name, data in results["servers"].items() for r in data["runs"]]
    cols = [
        "server", "shape", "concurrency", "completed", "req_per_s", "texts_per_s", "p50_ms", "p99_ms", "errors",
    ]  # fmt: skip
    heads = ["server", "request", "concurrency", "requests", "req/s", "texts/s", "p50 ms", "p99 ms", "errors"]
    table = bl.md_table(rows, cols, heads)
    mem = []
    for name, data in results["servers"].items():
        if "processes" in data:
            procs = data["processes"].get("after_load") or data["processes"].get("after_start", [])
            rs = rss_summary(procs)
            mem.append(
                {
                    "server": name,
                    "first_ping_s": data["startup"].get("first_ping_s"),
                    "first_prediction_s": data["startup"].get("first_prediction_s"),
                    "rss_total_mb": rs["total_mb"],
                    "rss_by_role": "; ".join(
                        f"{role} {' + '.join(f'{x:.0f}' for x in v)}" for role, v in sorted(rs["by_role"].items())
                    ),
                }
            )
    if mem:
        table += "\n\nStart-up and memory (RSS after the load, MB):\n\n" + bl.md_table(
            mem,
            ["server", "first_ping_s", "first_prediction_s", "rss_total_mb", "rss_by_role"],
            ["server", "first /ping 200 (s)", "first prediction (s)", "RSS total MB", "RSS by process (MB)"],
        )
    ratios = [{"ratio": k, "value": v} for k, v in results["summary"]["ratios"].items()]
    if ratios:
        table += "\n\nRatios (same run):\n\n" + bl.md_table(ratios, ["ratio", "value"])
    per_level = results["summary"].get("per_level")
    if per_level:
        cols = ["server", "shape", "concurrency", "req_per_s", "x bare", "x bare-wsgi", "x stack-floor", "x seed"]
        cols += ["x hf"]
        cols += ["x distilbert-bare"]
        cols += ["seed p99 / textclf p99", "hf p99 / textclf p99"]
        table += "\n\nRatios level by level (servers took turns at each level):\n\n" + bl.md_table(per_level, cols)
    cpu_rows = results["summary"].get("cpu_at_saturation")
    if cpu_rows:
        table += (
            "\n\nCPU ms per request at saturation, by process group (schedstat of every thread; client: wrk; "
            "bare: its processes, at textclf's saturation level):\n\n"
        ) + bl.md_table(cpu_rows, ["server", "concurrency", "req_per_s", *CPU_GROUPS, "total"])
    if results["summary"].get("aims"):
        table += "\n\nAims (issues 7 and 17):\n\n" + bl.md_table(
            results["summary"]["aims"],
            ["aim", "value", "target", "met", "gap"],
            ["aim", "measured", "aim", "met", "measured / aim"],
        )
    notes = [f"{k} could not run: {v}" for k, v in results["failures"].items()]
    notes.append(
        "Servers were up together (idle when not loaded) and took turns at every request shape and concurrency "
        "level, rotating who goes first; after each run the next waits until the last server's CPU use settles. "
        "The bare predictor ran as one of the turns, with as many processes as the servers have workers."
    )
    rounds = max((len(r.get("rounds", [])) for d in results["servers"].values() for r in d["runs"]), default=0)
    if rounds > 1:
        notes.append(
            f"Every server ran {rounds} times at every level, the servers taking turns each round (the first "
            "rotating); each row is the median of its rounds (requests and errors: their sum), and the ratios "
            "are taken between those medians."
        )
    notes.append(
        "Saturation = the concurrency with the highest throughput. The load generator runs on the same 2 cores "
        f"as the servers ({results['client']}, one thread)."
    )
    return table, notes


if __name__ == "__main__":
    main()
