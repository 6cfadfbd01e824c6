"""Where one single-text request's time goes, layer by layer, on the real stack (issue 17, part 1).

One request: an SST-2 dev sentence as ``{"inputs": "..."}``, POSTed to ``/invocations`` at
concurrency 1. Two views of it, in one run, on one model directory:

1. **Stages in the worker** (in this process, the worker's own code and objects, 1 ORT thread; the
   stages take turns text by text; medians): body decode (``codecs.request_type``, ``negotiate``,
   ``decode``), service (parameters, limits, rules before and after: ``InferenceService.invoke``
   minus the predictor), the deadline timer (``Classifier.predict`` with the request's deadline minus
   without), tokenizer (``TextEncoder.encode`` + ``pad``), ONNX Runtime (``InferenceSession.run``),
   predictor rest (softmax, top-k, result objects), response encode (``codecs.encode``), request log
   (``RequestLog.write`` into a pipe, as a container's stdout is) and Flask (the whole
   ``app.wsgi_app`` call, our before/after hooks included, minus the stages inside it).
2. **Layers across processes** (``textclf serve`` running; a raw-socket client sending prebuilt
   bytes, so that the client costs little and the same for every layer; the layers take turns in
   rounds): the request through nginx (TCP, keep-alive from the client), straight to gunicorn's unix
   socket with a new connection per request (what nginx does), and straight to gunicorn over one
   kept-alive connection. Latency medians, and CPU per request of each process group from
   ``/proc/<pid>/task/*/schedstat`` (nanoseconds on CPU, every thread).

The breakdown table charges each layer the latency it adds over the one inside it, as the median
of differences taken request by request on the same text (the spread of text lengths cancels out):

    nginx            = nginx - gunicorn (kept-alive, or a new connection when nginx.conf opens one per request)
    gunicorn connect = gunicorn, new connection - gunicorn, kept-alive   (only when nginx opens one per request)
    gunicorn         = gunicorn, kept-alive - app.wsgi_app in-process (also what the app loses to cold caches
                       and wake-ups in a server: the app's own latency_ms in the request log shows that part)
    Flask, decode, service, timer, tokenizer, ORT, rest, encode, log: the in-process stages

and the server's overhead over the bare predictor is the median of (server - ``Classifier.predict``), text by text.

    .venv/bin/python bench/request_breakdown.py                     # default settings
    .venv/bin/python bench/request_breakdown.py --env TEXTCLF_WORKER_THREADS=1 --name request-breakdown-t1
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib as bl
import server_load as sl

STAGES = (
    "decode",
    "service",
    "deadline timer",
    "tokenizer",
    "ORT session.run",
    "predictor rest",
    "encode",
    "request log",
    "Flask + hooks",
)


def _ns() -> int:
    return time.perf_counter_ns()


# -- 1. stages in the worker -----------------------------------------------------------------------
@dataclasses.dataclass
class _Deadline:
    """A ``Budget`` with the server's request deadline, as ``InferenceService`` passes it."""

    deadline: float | None

    def admit(self, inputs: int) -> None:
        pass

    def ran(self, inputs: int) -> None:
        pass


def stages(sm_root: Path, texts: list[str], n: int, extra_env: dict[str, str]) -> dict[str, Any]:
    """Median ns of each stage over ``n`` single-text requests, in a worker's app built as gunicorn
    builds it, with the serving settings ``extra_env`` adds."""
    from werkzeug.test import EnvironBuilder

    from textclf.serve import codecs
    from textclf.serve.app import create_app
    from textclf.serve.request_log import RequestLog
    from textclf.serve.routes import Served
    from textclf.serve.service import Usage
    from textclf.serve.settings import ServingSettings

    env = dict(os.environ) | extra_env | {"SM_ROOT": str(sm_root), "TEXTCLF_INTRA_OP_THREADS": "1"}
    settings = ServingSettings.from_env(env)
    app = create_app(settings)
    served: Served = app.extensions["textclf"]
    # stdout of a worker is a pipe in a container (docker logs): write the log lines into one
    drain = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert drain.stdin is not None
    log = RequestLog(served.request_log.model_version, stream=drain.stdin)
    app.extensions["textclf"] = served = dataclasses.replace(served, request_log=log)
    service, clf = served.service, served.service.model
    enc, session = clf.encoder, clf.session  # type: ignore[attr-defined]
    names, output = [i.name for i in session.get_inputs()], session.get_outputs()[0].name
    limits = served.limits

    def wsgi_call(body: bytes) -> int:
        environ = EnvironBuilder(
            path="/invocations", method="POST", data=body, headers={"Content-Type": "application/json"}
        ).get_environ()
        status: list[str] = []

        def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
            status.append(s)

        t = _ns()
        for _chunk in app.wsgi_app(environ, start_response):
            pass
        took = _ns() - t
        assert status and status[0].startswith("200"), status
        return took

    # Inputs of every stage, built before any timing: each stage is then timed on its own, walking
    # the texts in order as a server meets them (the same text run five times in a row would flatter
    # ONNX Runtime, whose memory planning is per input shape).
    bodies = [json.dumps({"inputs": t}).encode() for t in texts[:n]]
    media = codecs.request_type("application/json")
    accept = codecs.negotiate(None, media, served.default_accept)
    decoded = [codecs.decode(b, media) for b in bodies]
    arrays = [enc.pad(enc.encode([t])) for t in texts[:n]]
    answers = [clf.predict([t]) for t in texts[:n]]
    deadline_s = limits.deadline_s or 60.0
    record = {"request_id": "bench", "method": "POST", "path": "/invocations", "status": 200,
              "latency_ms": 1.0, "cpu_ms": 1.0, "texts": 1, "model_inputs": 1, "bytes_in": 80,
              "content_type": "application/json", "accept": "", "model_created_at": "x"}  # fmt: skip

    def decode(i: int) -> None:
        codecs.negotiate(None, codecs.request_type("application/json"), served.default_accept)
        codecs.decode(bodies[i], media)

    timed: dict[str, Callable[[int], None]] = {
        "decode": decode,
        "tokenizer": lambda i: enc.pad(enc.encode([texts[i]])),
        "ORT session.run": lambda i: session.run([output], {k: arrays[i][k] for k in names}),
        "predict": lambda i: clf.predict([texts[i]]),
        "predict with deadline": lambda i: clf.predict([texts[i]], budget=_Deadline(time.monotonic() + deadline_s)),
        "invoke": lambda i: service.invoke(
            decoded[i], {}, "bench", limits=limits, started=time.monotonic(), usage=Usage()
        ),
        "encode": lambda i: codecs.encode(answers[i], True, accept, last_newline=not settings.batch),
        "request log": lambda i: log.write(record),
    }
    acc: dict[str, dict[int, int]] = {k: {} for k in (*timed, "wsgi total")}
    block = 50
    with contextlib.redirect_stdout(sys.stderr):
        for b, first in enumerate(range(0, n, block)):
            order = list(acc)
            for name in order[b % len(order) :] + order[: b % len(order)]:
                for i in range(first, min(n, first + block)):
                    if name == "wsgi total":
                        took = wsgi_call(bodies[i])
                    else:
                        t = _ns()
                        timed[name](i)
                        took = _ns() - t
                    if b > 0:  # the first block warms up
                        acc[name][i] = took
    drain.stdin.close()
    drain.wait(timeout=10)
    # Stages that are differences of timed calls are taken text by text (the same text in both
    # calls), then summarized: the spread of lengths cancels out of each difference.
    derived = {
        "predictor rest": (("predict",), ("tokenizer", "ORT session.run")),
        "deadline timer": (("predict with deadline",), ("predict",)),
        "service": (("invoke",), ("predict with deadline",)),
        "Flask + hooks": (("wsgi total",), ("decode", "invoke", "encode", "request log")),
    }
    per_text = {k: list(v.values()) for k, v in acc.items()}
    for name, (plus, minus) in derived.items():
        per_text[name] = [sum(acc[k][i] for k in plus) - sum(acc[k][i] for k in minus) for i in acc["predict"]]
    median = {k: statistics.median(v) / 1e6 for k, v in per_text.items()}
    mean = {k: statistics.fmean(v) / 1e6 for k, v in per_text.items()}
    return {
        "requests": n,
        "mean_tokens": statistics.fmean(int(a["input_ids"].shape[1]) for a in arrays),
        "median_ms": median,
        "mean_ms": mean,
        "wsgi_ns_by_text": acc["wsgi total"],  # for pairing with the layers (dropped from the results file)
        "predict_ns_by_text": acc["predict"],
    }


# -- 2. layers across processes ---------------------------------------------------------------------
def _request_bytes(text: str, close: bool) -> bytes:
    body = json.dumps({"inputs": text}).encode()
    head = (
        "POST /invocations HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


def _read_response(sock: socket.socket) -> tuple[int, bool]:
    """Read one HTTP/1.1 response with a Content-Length; returns its status and whether the server
    closes the connection after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response headers")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside the response body")
        rest += chunk
    closes = re.search(rb"(?im)^connection:\s*close", head) is not None
    return int(head.split(b" ", 2)[1]), closes


class Layer:
    """A client for one layer: a TCP port or a unix socket, kept-alive or a new connection per request."""

    def __init__(self, name: str, address: tuple[str, int] | str, keep_alive: bool) -> None:
        self.name, self.address, self.keep_alive = name, address, keep_alive
        self.sock: socket.socket | None = None
        self.closed_by_server = 0  # kept-alive connections the server closed (then the next request reconnects)

    def _connect(self) -> socket.socket:
        family = socket.AF_UNIX if isinstance(self.address, str) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(self.address)
        return sock

    def send(self, text: str) -> int:
        reused = self.sock is not None
        if self.sock is None:
            self.sock = self._connect()
        try:
            self.sock.sendall(_request_bytes(text, close=not self.keep_alive))
            status, closes = _read_response(self.sock)
        except (BrokenPipeError, ConnectionError):
            if not reused:
                raise
            # the server closed an idle kept-alive connection without saying so: connect again
            self.closed_by_server += 1
            self.sock.close()
            self.sock = None
            return self.send(text)
        if closes or not self.keep_alive:
            self.closed_by_server += closes and self.keep_alive
            self.sock.close()
            self.sock = None
        return status

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def cpu_ns(pids: list[int]) -> int:
    """Nanoseconds on CPU of every thread of ``pids`` (``schedstat``: exact, unlike clock ticks)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0])
    return total


def process_groups(server: sl.Server) -> dict[str, list[int]]:
    """nginx's and gunicorn's processes under ``textclf serve`` (by ``server_load.role_of``)."""
    groups: dict[str, list[int]] = {"nginx": [], "gunicorn": []}
    for pid in [server.proc.pid, *bl.descendants(server.proc.pid)]:
        program = sl.role_of(bl.cmdline(pid)).split()[0]
        if program in groups:
            groups[program].append(pid)
    return groups


def app_in_server(log: Path) -> dict[str, float]:
    """The app's own view of its requests in the server (the request log: before_request to
    after_request, and that thread's CPU time), medians over the /invocations lines."""
    latency, cpu = [], []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"/invocations"' in line:
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(line)
                latency.append(record["latency_ms"])
                cpu.append(record["cpu_ms"])
    if not latency:
        return {}
    median = statistics.median
    return {"requests": len(latency), "latency_p50_ms": median(latency), "cpu_p50_ms": median(cpu)}


def upstream_keepalive(server: sl.Server) -> bool:
    """Whether the nginx.conf that ``serve`` rendered keeps connections to gunicorn open."""
    for pid in bl.descendants(server.proc.pid):
        if match := re.search(r"nginx.* -c (\S+)", bl.cmdline(pid)):
            conf = Path(match.group(1))
            if conf.is_file():
                return re.search(r"^\s*keepalive\s+\d+;", conf.read_text(), re.M) is not None
    return False


def gunicorn_socket(server: sl.Server) -> str:
    for pid in bl.descendants(server.proc.pid):
        if match := re.search(r"--bind unix:(\S+)", bl.cmdline(pid)):
            return match.group(1)
    raise RuntimeError("no gunicorn process with --bind unix:... under textclf serve")


def layers(server: sl.Server, texts: list[str], rounds: int, per_round: int) -> dict[str, Any]:
    """Each layer sends ``per_round`` requests per round, layers taking turns, ``rounds`` rounds; in
    a round every layer sends the same texts (``texts[i]``, i from ``r * per_round`` on, cycling),
    so that latencies can be compared text by text."""
    sock_path = gunicorn_socket(server)
    clients = [
        Layer("nginx (TCP, keep-alive)", ("127.0.0.1", server.port), keep_alive=True),
        Layer("gunicorn socket, new connection", sock_path, keep_alive=False),
        Layer("gunicorn socket, keep-alive", sock_path, keep_alive=True),
    ]
    groups = process_groups(server)
    lat: dict[str, dict[tuple[int, int], int]] = {c.name: {} for c in clients}
    cpu: dict[str, dict[str, int]] = {c.name: {"nginx": 0, "gunicorn": 0, "client": 0} for c in clients}
    count = {c.name: 0 for c in clients}
    for c in clients:  # warm-up
        for text in texts[:30]:
            assert c.send(text) == 200
    for r in range(rounds):
        for c in clients[r % len(clients) :] + clients[: r % len(clients)]:
            before = {g: cpu_ns(p) for g, p in groups.items()} | {"client": time.thread_time_ns()}
            for j in range(per_round):
                i = (r * per_round + j) % len(texts)
                t = _ns()
                status = c.send(texts[i])
                lat[c.name][(r, i)] = _ns() - t
                if status != 200:
                    raise RuntimeError(f"{c.name}: status {status}")
            after = {g: cpu_ns(p) for g, p in groups.items()} | {"client": time.thread_time_ns()}
            for g in before:
                cpu[c.name][g] += after[g] - before[g]
            count[c.name] += per_round
            c.close()
    out = {}
    for c in clients:
        s = bl.summarize_ms([x / 1e9 for x in lat[c.name].values()])
        out[c.name] = {
            "requests": count[c.name],
            "p50_ms": s["p50_ms"],
            "p99_ms": s["p99_ms"],
            "mean_ms": s["mean_ms"],
            "cpu_ms_per_request": {g: v / 1e6 / count[c.name] for g, v in cpu[c.name].items()},
            "connections_closed_by_server": c.closed_by_server,
            "ns_by_request": lat[c.name],  # (round, text) -> ns, for pairing (dropped from the results file)
        }
    return out


# -- the breakdown -----------------------------------------------------------------------------------
def _paired_ms(a: dict[Any, int], b: dict[Any, int] | None = None, b_by_text: dict[int, int] | None = None) -> float:
    """Median over requests of ``a - b`` for the same request key (or ``a`` minus ``b_by_text`` of its text)."""
    if b is not None:
        diffs = [a[k] - b[k] for k in a if k in b]
    else:
        assert b_by_text is not None
        diffs = [a[k] - b_by_text[k[1]] for k in a if k[1] in b_by_text]
    return statistics.median(diffs) / 1e6 if diffs else float("nan")


def breakdown(st: dict[str, Any], ly: dict[str, Any], keepalive_upstream: bool) -> list[dict[str, Any]]:
    """One row per layer and stage, outside in; each layer's latency is the median of its paired differences."""
    med, mean = st["median_ms"], st["mean_ms"]
    nginx, fresh, kept = (ly[k] for k in ly)
    # nginx's row is measured against the path it takes to gunicorn: a kept-alive connection when
    # nginx.conf keeps them (textclf today), else a new one per request (before, in the -before file).
    behind = kept if keepalive_upstream else fresh
    rows = [
        {"layer": "nginx (proxy, and its connection to gunicorn)",
         "ms": _paired_ms(nginx["ns_by_request"], behind["ns_by_request"]),
         "cpu_ms": nginx["cpu_ms_per_request"]["nginx"]},
    ]  # fmt: skip
    if not keepalive_upstream:
        rows.append(
            {"layer": "gunicorn: a new connection per request",
             "ms": _paired_ms(fresh["ns_by_request"], kept["ns_by_request"]),
             "cpu_ms": fresh["cpu_ms_per_request"]["gunicorn"] - kept["cpu_ms_per_request"]["gunicorn"]}
        )  # fmt: skip
    rows.append(
        {"layer": "gunicorn (HTTP parse, hand-off to a worker thread, socket I/O) and the app slower in a server",
         "ms": _paired_ms(kept["ns_by_request"], b_by_text=st["wsgi_ns_by_text"]),
         "cpu_ms": kept["cpu_ms_per_request"]["gunicorn"] - mean["wsgi total"]}
    )  # fmt: skip
    rows += [{"layer": s, "ms": med[s], "cpu_ms": mean[s]} for s in STAGES]
    total = sum(r["ms"] for r in rows)
    for r in rows:
        r["share_pct"] = 100 * r["ms"] / total if total else float("nan")
    return rows


def _setting(text: str) -> tuple[str, str]:
    """``--env KEY=VALUE``: a variable name, then its value (which may be empty)."""
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (an environment variable name, '=', a value)")
    return key, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf-dir", help="Hugging Face classifier (default: the fine-tuned SST-2 MiniLM if any)")
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--stage-requests", type=int, default=800, help="texts per in-process stage")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--per-round", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--texts", choices=["sst2", "builtin"], default="sst2", help="SST-2 dev, or a few built-in ones")
    ap.add_argument("--env", action="append", default=[], type=_setting, help="KEY=VALUE for serve (repeatable)")
    ap.add_argument("--work-dir", type=Path, default=bl.WORK_DIR)
    ap.add_argument("--out-dir", type=Path, default=bl.RESULTS_DIR)
    ap.add_argument("--name", default="request-breakdown")
    args = ap.parse_args()

    run = bl.Run(args.name)
    extra_env = dict(args.env)
    hf_dir, hf_what = sl.pick_hf_dir(args.hf_dir, args.work_dir)
    model_dir = bl.export_dir(hf_dir, "int8", args.work_dir, args.max_seq_length)
    texts = bl.sample(bl.BUILTIN if args.texts == "builtin" else bl.sst2_dev(), 872)
    work = args.work_dir / "breakdown"
    work.mkdir(parents=True, exist_ok=True)
    root = sl.sm_root(model_dir, work / "sm")
    print(f"model: {hf_dir} ({hf_what}); INT8 model dir {model_dir}; serve env {extra_env}", flush=True)

    st = stages(root, texts, args.stage_requests, extra_env)
    print("stages (median ms):", {k: round(v, 3) for k, v in st["median_ms"].items()}, flush=True)

    server = sl.start_textclf(root, sl.free_port(), args.workers, work / "serve.log", extra_env=extra_env)
    try:
        server.wait_ready(sl.body_json([texts[0]]))
        ly = layers(server, texts[: args.stage_requests], args.rounds, args.per_round)
        keepalive = upstream_keepalive(server)
    finally:
        server.stop()
    for name, r in ly.items():
        print(f"{name}: p50 {r['p50_ms']:.3f} ms, CPU/request {r['cpu_ms_per_request']}", flush=True)

    rows = breakdown(st, ly, keepalive)
    in_server = app_in_server(work / "serve.log")
    bare = st["median_ms"]["predict"]
    nginx = next(iter(ly.values()))
    summary = {
        "bare_predict_p50_ms": bare,
        "server_p50_ms": nginx["p50_ms"],
        # the median of (server - bare) text by text
        "overhead_p50_ms": _paired_ms(nginx["ns_by_request"], b_by_text=st["predict_ns_by_text"]),
        "server_cpu_ms_per_request": nginx["cpu_ms_per_request"]["nginx"] + nginx["cpu_ms_per_request"]["gunicorn"],
        "bare_predict_mean_ms": st["mean_ms"]["predict"],
        "app_in_process_p50_ms": st["median_ms"]["wsgi total"],
        "app_in_server": in_server,
    }
    table = bl.md_table(
        rows,
        ["layer", "ms", "share_pct", "cpu_ms"],
        ["layer or stage (outside in)", "adds to p50 (ms)", "share %", "CPU ms per request"],
    )
    layer_rows = [
        {"path": k, **{x: v[x] for x in ("requests", "p50_ms", "p99_ms")}, **v["cpu_ms_per_request"]}
        for k, v in ly.items()
    ]
    table += "\n\nThe request at each layer (concurrency 1; CPU ms per request by process group):\n\n"
    table += bl.md_table(
        layer_rows,
        ["path", "requests", "p50_ms", "p99_ms", "nginx", "gunicorn", "client"],
        ["path", "requests", "p50 ms", "p99 ms", "nginx CPU", "gunicorn CPU", "client CPU"],
    )
    table += "\n\n" + bl.md_table(
        [
            {"what": "bare predictor (Classifier.predict, in-process) p50 ms", "value": bare},
            {"what": "server (nginx -> gunicorn -> Flask) p50 ms", "value": summary["server_p50_ms"]},
            {
                "what": "overhead over bare: median of (server - bare) text by text, ms",
                "value": summary["overhead_p50_ms"],
            },
            {"what": "server CPU per request (nginx + gunicorn), ms", "value": summary["server_cpu_ms_per_request"]},
            {"what": "bare predictor CPU per request (mean), ms", "value": summary["bare_predict_mean_ms"]},
            {"what": "the app (Flask + everything in it) in-process, p50 ms", "value": st["median_ms"]["wsgi total"]},
            {
                "what": "the same app inside the server, its own latency_ms p50 (request log)",
                "value": in_server.get("latency_p50_ms"),
            },
            {"what": "... and its thread's CPU ms p50 (request log)", "value": in_server.get("cpu_p50_ms")},
        ],
        ["what", "value"],
    )
    notes = [
        f"Model: {hf_dir} ({hf_what}), exported INT8 at max_seq_length {args.max_seq_length}; SST-2 dev "
        f"sentences, {st['mean_tokens']:.1f} tokens on average; 1 ORT thread; serve env: {extra_env or 'defaults'}.",
        "In-process stages: each timed call walks the same texts in order, the calls taking turns block by "
        "block (50 texts); 'Flask + hooks' is the app.wsgi_app call minus the stages inside it, 'deadline "
        "timer' is predict with the request deadline minus predict without, 'service' is "
        "InferenceService.invoke minus that, each difference taken text by text, then its median.",
        "Layer latencies are medians of differences taken request by request on the same text between paths "
        "that took turns in rounds; CPU per request is from /proc/<pid>/task/*/schedstat of nginx's and "
        "gunicorn's processes (the in-process stages' CPU column is their mean wall time: one thread, nothing "
        "to wait for).",
    ]
    st.pop("wsgi_ns_by_text")
    st.pop("predict_ns_by_text")
    for r in ly.values():
        r.pop("ns_by_request")
    run.finish(
        {
            "model": str(model_dir),
            "env": extra_env,
            "upstream_keepalive": keepalive,
            "stages": st,
            "layers": ly,
            "breakdown": rows,
            "summary": summary,
        },
        table,
        notes,
        args.out_dir,
    )


if __name__ == "__main__":
    main()
