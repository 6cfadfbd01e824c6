"""Where one single-text request's time goes, layer by layer, on the real stack (issue 17, part 1).

One request: an SST-2 dev sentence as ``{"inputs": "..."}``, POSTed to ``/invocations`` at
concurrency 1. Two views of it, in one run, on one model directory:

1. **Stages in the worker** (in this process, the worker's own code and objects, 1 ORT thread; the
   stages take turns text by text; medians): body decode (``codecs.request_type``, ``negotiate``,
   ``decode``), service (parameters, limits, rules before and after: ``InferenceService.invoke``
   minus the predictor), the deadline timer (``Classifier.predict`` with the request's deadline minus
   without), tokenizer (``TextEncoder.encode`` + ``pad``), ONNX Runtime (``InferenceSession.run``),
   predictor rest (softmax, top-k, result objects), response encode (``codecs.encode``), Flask (the
   whole ``app.wsgi_app`` call, our before/after hooks included, minus the stages inside it) and the
   request log (``RequestLog.write`` into a pipe, as a container's stdout is), which the app writes
   once the answer is sent (when the server closes the body): CPU time, not latency.
2. **Layers across processes** (``textclf serve`` running; a raw-socket client sending prebuilt
   bytes, so that the client costs little and the same for every layer; the layers take turns in
   rounds): the request through nginx (TCP, keep-alive from the client), straight to gunicorn's unix
   socket with a new connection per request (what nginx does), straight to gunicorn over one
   kept-alive connection, and (the floor) over one kept-alive connection to a second gunicorn,
   started with ``serve``'s own command line, whose app is the predictor behind a bare WSGI function
   (``bench/peers/bare_wsgi.py``: no Flask, hooks or request features). In the same rounds, three
   paths in this process: the worker's app, a plain Flask route around the predictor, and the bare
   predictor. Latency medians, and CPU per request of each process group from
   ``/proc/<pid>/task/*/schedstat`` (nanoseconds on CPU, every thread).

The breakdown table charges each layer the latency it adds over the one inside it, as the median
of differences taken request by request on the same text (the spread of text lengths cancels out):

    nginx            = nginx - gunicorn (kept-alive, or a new connection when nginx.conf opens one per request)
    gunicorn connect = gunicorn, new connection - gunicorn, kept-alive   (only when nginx opens one per request)
    gunicorn         = gunicorn, kept-alive - the worker's app in-process (in the rounds, after an idle gap)
    waking from idle = app.wsgi_app after an idle gap - app.wsgi_app back to back (stages phase)
    Flask, decode, service, timer, tokenizer, ORT, rest, encode, log: the in-process stages

A worker at concurrency 1 sits idle between requests (while the answer travels back and the next
request comes in), and a CPU that has been idle runs the next call slower (caches, and on a shared
virtual machine the core itself, go to others meanwhile). The in-process stages run back to back, so
the app is also timed after sleeping ``--idle-ms`` before each call: the difference is what any
server pays for the gap, whatever its layers; the in-process paths of the rounds sleep the same gap.
The server's overhead over the bare predictor is the median of (server - ``Classifier.predict``),
text by text, against the bare predictor of the rounds (same phase of the run, same gap) and, as
issue 17 first measured it, against the predictor called back to back in the stages phase.

Floors, whatever an app does: gunicorn's (the bare WSGI predictor over the bare predictor after the
idle gap) and Flask's own (a plain Flask route around the predictor, in-process after the gap, over
the bare predictor after the gap). These medians do not add up to the whole stack's floor (each is
a median of its own differences, and the in-process paths share this process with the client):
``bench/server_load.py --servers textclf,bare,stack-floor`` measures that directly.

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
    "Flask + hooks",
)  # and the request log, written after the answer (its own row: CPU, no latency)


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


@dataclasses.dataclass
class LocalApps:
    """In this process: the worker's app built as gunicorn builds it (its request log written into a
    pipe, as a container's stdout is), and a plain Flask route around the same predictor (no hooks,
    rules, deadline or log: Flask's own floor)."""

    app: Any
    served: Any
    plain: Any
    drain: subprocess.Popen

    def close(self) -> None:
        assert self.drain.stdin is not None
        self.drain.stdin.close()
        self.drain.wait(timeout=10)


def local_apps(sm_root: Path, extra_env: dict[str, str]) -> LocalApps:
    from flask import Flask, Response, request

    from textclf.serve.app import create_app
    from textclf.serve.request_log import RequestLog
    from textclf.serve.settings import ServingSettings

    env = dict(os.environ) | extra_env | {"SM_ROOT": str(sm_root), "TEXTCLF_INTRA_OP_THREADS": "1"}
    app = create_app(ServingSettings.from_env(env))
    served = app.extensions["textclf"]
    drain = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert drain.stdin is not None
    log = RequestLog(served.request_log.model_version, stream=drain.stdin)
    app.extensions["textclf"] = served = dataclasses.replace(served, request_log=log)
    clf = served.service.model
    plain = Flask("plain")

    @plain.post("/invocations")
    def plain_route() -> Response:
        text = json.loads(request.get_data())["inputs"]
        return Response(json.dumps(clf.predict([text])[0]), content_type="application/json")

    return LocalApps(app, served, plain, drain)


def request_environ(body: bytes) -> dict[str, Any]:
    """The WSGI environ of one POST /invocations with a JSON ``body`` (built before any timing)."""
    from werkzeug.test import EnvironBuilder

    return EnvironBuilder(
        path="/invocations", method="POST", data=body, headers={"Content-Type": "application/json"}
    ).get_environ()


def wsgi_call(wsgi: Callable[..., Any], environ: dict[str, Any]) -> int:
    """Nanoseconds of one request (``environ``) through the WSGI callable ``wsgi`` (which must answer 200),
    until its body is complete: what a client waits for. The body is closed after the timing."""
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
        status.append(s)

    t = _ns()
    body = wsgi(environ, start_response)
    for _chunk in body:
        pass
    took = _ns() - t
    if hasattr(body, "close"):  # as a server does once it has sent the body (the request log is written then)
        body.close()
    assert status and status[0].startswith("200"), status
    return took


def stages(apps: LocalApps, texts: list[str], n: int, idle_s: float) -> dict[str, Any]:
    """Median ns of each stage over ``n`` single-text requests, in the worker's app (``apps``);
    ``wsgi total after idle`` sleeps ``idle_s`` (untimed) before each call."""
    from textclf.serve import codecs
    from textclf.serve.service import Usage

    app, served = apps.app, apps.served
    settings, log = served.settings, served.request_log
    service, clf = served.service, served.service.model
    enc, session = clf.encoder, clf.session
    names, output = [i.name for i in session.get_inputs()], session.get_outputs()[0].name
    limits = served.limits

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
    acc: dict[str, dict[int, int]] = {k: {} for k in (*timed, "wsgi total", "wsgi total after idle")}
    block = 50
    with contextlib.redirect_stdout(sys.stderr):
        for b, first in enumerate(range(0, n, block)):
            order = list(acc)
            for name in order[b % len(order) :] + order[: b % len(order)]:
                for i in range(first, min(n, first + block)):
                    if name.endswith("after idle"):
                        time.sleep(idle_s)
                    if name.startswith("wsgi total"):
                        took = wsgi_call(app.wsgi_app, request_environ(bodies[i]))
                    else:
                        t = _ns()
                        timed[name](i)
                        took = _ns() - t
                    if b > 0:  # the first block warms up
                        acc[name][i] = took
    # Stages that are differences of timed calls are taken text by text (the same text in both
    # calls), then summarized: the spread of lengths cancels out of each difference.
    derived = {
        "predictor rest": (("predict",), ("tokenizer", "ORT session.run")),
        "deadline timer": (("predict with deadline",), ("predict",)),
        "service": (("invoke",), ("predict with deadline",)),
        "Flask + hooks": (("wsgi total",), ("decode", "invoke", "encode")),  # the log is written after it
        "waking from idle": (("wsgi total after idle",), ("wsgi total",)),
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
        "idle_ms": idle_s * 1000,
        "predict_ns_by_text": acc["predict"],  # for pairing with the layers (dropped from the results file)
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


class Floor:
    """``bench/peers/bare_wsgi.py`` (the predictor behind a bare WSGI function) in a gunicorn started with
    ``textclf serve``'s own command line, on a unix socket of its own."""

    def __init__(self, model_dir: Path, work: Path, workers: int, extra_env: dict[str, str]) -> None:
        self.socket = work / "bare-wsgi.sock"
        self.socket.unlink(missing_ok=True)
        cmd, env = sl.bare_wsgi_command(model_dir, f"unix:{self.socket}", workers, work, extra_env)
        self.log = work / "bare-wsgi.log"
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def wait_ready(self, text: str, limit_s: float = 120.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the bare WSGI gunicorn exited with {self.proc.returncode}; see {self.log}")
            with contextlib.suppress(OSError):
                client = Layer("probe", str(self.socket), keep_alive=False)
                if client.send(text) == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the bare WSGI gunicorn was not ready within {limit_s} s; see {self.log}")

    def pids(self) -> list[int]:
        return [self.proc.pid, *bl.descendants(self.proc.pid)]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class InProcess:
    """A path that runs in this process, timed in the rounds beside the layers: ``ready(text)`` builds
    its input (``build(text)``) and sleeps ``idle_s`` (a server's worker at concurrency 1 is idle between
    requests too), both untimed; then ``send`` runs ``call`` on that input, timed."""

    closed_by_server = 0

    def __init__(self, name: str, build: Callable[[str], Any], call: Callable[[Any], Any], idle_s: float) -> None:
        self.name, self.build, self.call, self.idle_s = name, build, call, idle_s
        self._input: Any = None

    def ready(self, text: str) -> None:
        self._input = self.build(text)
        time.sleep(self.idle_s)

    def send(self, text: str) -> int:
        self.call(self._input)
        return 200

    def close(self) -> None:
        pass


FLOOR_LAYER = "gunicorn socket, keep-alive, bare WSGI predictor (no Flask)"
APP_LOCAL = "in-process: the worker's app (app.wsgi_app)"
PLAIN_LOCAL = "in-process: a plain Flask route around the predictor"
BARE_LOCAL = "in-process: the bare predictor (Classifier.predict)"


def in_process_paths(apps: LocalApps, idle_s: float) -> list[InProcess]:
    clf = apps.served.service.model

    def environ(text: str) -> dict[str, Any]:
        return request_environ(json.dumps({"inputs": text}).encode())

    return [
        InProcess(APP_LOCAL, environ, lambda env: wsgi_call(apps.app.wsgi_app, env), idle_s),
        InProcess(PLAIN_LOCAL, environ, lambda env: wsgi_call(apps.plain.wsgi_app, env), idle_s),
        InProcess(BARE_LOCAL, lambda t: [t], clf.predict, idle_s),
    ]


def layers(
    server: sl.Server,
    floor: Floor | None,
    local: list[InProcess],
    texts: list[str],
    rounds: int,
    per_round: int,
) -> dict[str, Any]:
    """Each layer (and in-process path) sends ``per_round`` requests per round, taking turns, ``rounds``
    rounds; in a round every one sends the same texts (``texts[i]``, i from ``r * per_round`` on,
    cycling), so that latencies can be compared text by text within one phase of the run."""
    sock_path = gunicorn_socket(server)
    clients: list[Layer | InProcess] = [
        Layer("nginx (TCP, keep-alive)", ("127.0.0.1", server.port), keep_alive=True),
        Layer("gunicorn socket, new connection", sock_path, keep_alive=False),
        Layer("gunicorn socket, keep-alive", sock_path, keep_alive=True),
    ]
    groups = {k: v for k, v in sl.process_groups(server).items() if k != "other"}
    if floor is not None:
        clients.append(Layer(FLOOR_LAYER, str(floor.socket), keep_alive=True))
        groups["bare WSGI gunicorn"] = floor.pids()
    clients += local
    lat: dict[str, dict[tuple[int, int], int]] = {c.name: {} for c in clients}
    cpu: dict[str, dict[str, int]] = {c.name: dict.fromkeys([*groups, "client"], 0) for c in clients}
    count = {c.name: 0 for c in clients}
    for c in clients:  # warm-up
        for text in texts[:30]:
            if isinstance(c, InProcess):
                c.ready(text)
            assert c.send(text) == 200
    for r in range(rounds):
        for c in clients[r % len(clients) :] + clients[: r % len(clients)]:
            before = {g: bl.cpu_ns(p) for g, p in groups.items()} | {"client": time.thread_time_ns()}
            for j in range(per_round):
                i = (r * per_round + j) % len(texts)
                if isinstance(c, InProcess):
                    c.ready(texts[i])
                t = _ns()
                status = c.send(texts[i])
                lat[c.name][(r, i)] = _ns() - t
                if status != 200:
                    raise RuntimeError(f"{c.name}: status {status}")
            after = {g: bl.cpu_ns(p) for g, p in groups.items()} | {"client": time.thread_time_ns()}
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
    nginx, fresh, kept = (ly[k] for k in list(ly)[:3])
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
    rows += [
        {"layer": "gunicorn (HTTP parse, hand-off to a worker thread, socket I/O)",
         "ms": _paired_ms(kept["ns_by_request"], ly[APP_LOCAL]["ns_by_request"]),
         "cpu_ms": kept["cpu_ms_per_request"]["gunicorn"] - ly[APP_LOCAL]["cpu_ms_per_request"]["client"]},
        {"layer": f"waking from idle: the app after {st['idle_ms']:g} ms idle, minus back to back (in-process)",
         "ms": med["waking from idle"], "cpu_ms": mean["waking from idle"]},
    ]  # fmt: skip
    rows += [{"layer": s, "ms": med[s], "cpu_ms": mean[s]} for s in STAGES]
    # The app writes its log line once the answer is sent: CPU time, but no part of the latency.
    rows.append({"layer": "request log (written after the answer is sent)", "ms": 0.0, "cpu_ms": mean["request log"]})
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
    ap.add_argument("--per-round", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--idle-ms",
        type=float,
        default=1.0,
        help="untimed sleep before each in-process call that stands for a server's worker, idle between requests",
    )
    ap.add_argument("--texts", choices=["sst2", "builtin"], default="sst2", help="SST-2 dev, or a few built-in ones")
    ap.add_argument("--env", action="append", default=[], type=_setting, help="KEY=VALUE for serve (repeatable)")
    ap.add_argument("--work-dir", type=Path, default=bl.WORK_DIR)
    ap.add_argument("--out-dir", type=Path, default=bl.RESULTS_DIR)
    ap.add_argument("--name", default="request-breakdown")
    args = ap.parse_args()
    if not 0 <= args.idle_ms <= 1000:  # before any model is built or data read
        ap.error(f"--idle-ms must be between 0 and 1000, got {args.idle_ms:g}")

    run = bl.Run(args.name)
    extra_env = dict(args.env)
    hf_dir, hf_what = sl.pick_hf_dir(args.hf_dir, args.work_dir)
    model_dir = bl.export_dir(hf_dir, "int8", args.work_dir, args.max_seq_length)
    texts = bl.sample(bl.BUILTIN if args.texts == "builtin" else bl.sst2_dev(), 872)
    work = args.work_dir / "breakdown"
    work.mkdir(parents=True, exist_ok=True)
    root = sl.sm_root(model_dir, work / "sm")
    print(f"model: {hf_dir} ({hf_what}); INT8 model dir {model_dir}; serve env {extra_env}", flush=True)

    idle_s = args.idle_ms / 1000
    apps = local_apps(root, extra_env)
    try:
        st = stages(apps, texts, args.stage_requests, idle_s)
        print("stages (median ms):", {k: round(v, 3) for k, v in st["median_ms"].items()}, flush=True)
        server = sl.start_textclf(root, sl.free_port(), args.workers, work / "serve.log", extra_env=extra_env)
        floor = Floor(model_dir, work, args.workers, extra_env)
        try:
            server.wait_ready(sl.body_json([texts[0]]))
            floor.wait_ready(texts[0])
            local = in_process_paths(apps, idle_s)
            ly = layers(server, floor, local, texts[: args.stage_requests], args.rounds, args.per_round)
            keepalive = upstream_keepalive(server)
        finally:
            floor.stop()
            server.stop()
    finally:
        apps.close()
    for name, r in ly.items():
        print(f"{name}: p50 {r['p50_ms']:.3f} ms, CPU/request {r['cpu_ms_per_request']}", flush=True)

    rows = breakdown(st, ly, keepalive)
    floor_ms = _paired_ms(ly[FLOOR_LAYER]["ns_by_request"], ly[BARE_LOCAL]["ns_by_request"])
    flask_ms = _paired_ms(ly[PLAIN_LOCAL]["ns_by_request"], ly[BARE_LOCAL]["ns_by_request"])
    in_server = app_in_server(work / "serve.log")
    bare = st["median_ms"]["predict"]
    nginx = next(iter(ly.values()))
    summary = {
        "bare_predict_p50_ms": bare,
        "server_p50_ms": nginx["p50_ms"],
        # the median of (server - bare) text by text
        "overhead_p50_ms": _paired_ms(nginx["ns_by_request"], b_by_text=st["predict_ns_by_text"]),
        # From here on, every figure pairs paths that took turns in the same rounds (one phase of the run)
        "bare_predict_after_idle_p50_ms": ly[BARE_LOCAL]["p50_ms"],
        "overhead_over_idle_bare_p50_ms": _paired_ms(nginx["ns_by_request"], ly[BARE_LOCAL]["ns_by_request"]),
        "bare_wsgi_p50_ms": ly[FLOOR_LAYER]["p50_ms"],
        # what gunicorn itself costs here for an app as long as the model
        "gunicorn_floor_p50_ms": floor_ms,
        # Flask's own floor: a plain route
        "plain_flask_floor_p50_ms": flask_ms,
        "app_in_process_over_idle_bare_p50_ms": _paired_ms(
            ly[APP_LOCAL]["ns_by_request"], ly[BARE_LOCAL]["ns_by_request"]
        ),
        # what Flask and the product's request features add inside gunicorn (both paths straight to a socket)
        "app_over_bare_wsgi_p50_ms": _paired_ms(
            ly["gunicorn socket, keep-alive"]["ns_by_request"], ly[FLOOR_LAYER]["ns_by_request"]
        ),
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
        ["path", "requests", "p50_ms", "p99_ms", "nginx", "gunicorn", "bare WSGI gunicorn", "client"],
        ["path", "requests", "p50 ms", "p99 ms", "nginx CPU", "gunicorn CPU", "bare WSGI gunicorn CPU", "client CPU"],
    )
    idle = f"{args.idle_ms:g} ms"
    what = [
        ("server (nginx -> gunicorn -> Flask) p50 ms", summary["server_p50_ms"]),
        (f"bare predictor (Classifier.predict) in-process, each call after {idle} idle, p50 ms",
         summary["bare_predict_after_idle_p50_ms"]),
        ("overhead of the server over it (median of differences, text by text), ms",
         summary["overhead_over_idle_bare_p50_ms"]),
        ("the worker's app in-process (Flask, hooks, features) over it, ms",
         summary["app_in_process_over_idle_bare_p50_ms"]),
        ("a plain Flask route around the predictor (no hooks or features) in-process over it: Flask's floor, ms",
         summary["plain_flask_floor_p50_ms"]),
        ("gunicorn + a bare WSGI predictor (serve's gunicorn command line; no Flask), to its socket, p50 ms",
         summary["bare_wsgi_p50_ms"]),
        ("... its overhead over the bare predictor: gunicorn's floor (and the client's), ms",
         summary["gunicorn_floor_p50_ms"]),
        ("Flask and the product's request features inside gunicorn: our app's socket minus the bare WSGI one, ms",
         summary["app_over_bare_wsgi_p50_ms"]),
        ("bare predictor back to back (stages phase) p50 ms", bare),
        ("server - bare back to back (across the two phases: the machine may drift between them), ms",
         summary["overhead_p50_ms"]),
        ("server CPU per request (nginx + gunicorn), ms", summary["server_cpu_ms_per_request"]),
        ("bare predictor CPU per request (mean, stages phase), ms", summary["bare_predict_mean_ms"]),
        ("the app in-process back to back (stages phase), p50 ms", st["median_ms"]["wsgi total"]),
        ("the same app inside the server, its own latency_ms p50 (request log)", in_server.get("latency_p50_ms")),
        ("... and its thread's CPU ms p50 (request log)", in_server.get("cpu_p50_ms")),
    ]  # fmt: skip
    table += "\n\nAt concurrency 1; the first eight rows pair paths that took turns in the same rounds:\n\n"
    table += bl.md_table([{"what": w, "value": v} for w, v in what], ["what", "value"])
    notes = [
        f"Model: {hf_dir} ({hf_what}), exported INT8 at max_seq_length {args.max_seq_length}; SST-2 dev "
        f"sentences, {st['mean_tokens']:.1f} tokens on average; 1 ORT thread; serve env: {extra_env or 'defaults'}.",
        "In-process stages: each timed call walks the same texts in order, the calls taking turns block by "
        "block (50 texts); 'Flask + hooks' is the app.wsgi_app call minus the stages inside it, 'deadline "
        "timer' is predict with the request deadline minus predict without, 'service' is "
        "InferenceService.invoke minus that, each difference taken text by text, then its median.",
        "Layer latencies are medians of differences taken request by request on the same text between paths "
        "that took turns in the same rounds (the server's layers, the bare WSGI gunicorn, and in-process the "
        "worker's app, a plain Flask route and the bare predictor, each in-process call after an untimed "
        f"{args.idle_ms:g} ms sleep); CPU per request is from /proc/<pid>/task/*/schedstat of nginx's and "
        "gunicorn's processes (the in-process stages' CPU column is their mean wall time: one thread, nothing "
        "to wait for). The gunicorn row is the server's gunicorn socket minus the worker's app in-process.",
        f"'waking from idle' (stages phase): the app.wsgi_app call after sleeping {args.idle_ms:g} ms (untimed) "
        "minus the same call back to back, text by text. A worker at concurrency 1 is idle between requests, so "
        "this part is the machine's, not a layer's.",
    ]
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
