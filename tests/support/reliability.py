"""Shared pieces of the reliability suites (tests/reliability, tests/serve/test_serve_faults.py).

A ledger of what was tried and how it ended, printed in pytest's terminal summary; a raw-socket HTTP
exchange for requests no HTTP library will send; process-group inspection; a mixed, verified load
generator.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


# -- the ledger ------------------------------------------------------------------------------------
@dataclass
class Ledger:
    """Requests tried and faults injected, by outcome; and anything lost (expected an answer, got none)."""

    title: str
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def request(self, outcome: str, n: int = 1) -> None:
        with self._lock:
            self.requests[outcome] += n

    def fault(self, name: str, outcome: str) -> None:
        with self._lock:
            self.faults[f"{name}: {outcome}"] += 1

    def lose(self, what: str) -> None:
        with self._lock:
            self.lost.append(what)

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def lines(self) -> list[str]:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"

        out = [
            f"requests tried: {sum(self.requests.values())} ({counts(self.requests)})",
            f"faults injected: {sum(self.faults.values())} ({counts(self.faults)})",
            f"lost: {len(self.lost)}" + (f" ({'; '.join(self.lost[:10])})" if self.lost else ""),
        ]
        return out + self.notes


class _SummaryPlugin:
    def __init__(self) -> None:
        self.ledgers: dict[str, Ledger] = {}

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for ledger in self.ledgers.values():
            terminalreporter.section(f"reliability summary: {ledger.title}")
            for line in ledger.lines():
                terminalreporter.write_line(line)


_PLUGIN_NAME = "textclf-reliability-summary"


def ledger_for(config: pytest.Config, title: str) -> Ledger:
    """The ledger called ``title``, printed at the end of the run in pytest's terminal summary."""
    plugin = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if plugin is None:
        plugin = _SummaryPlugin()
        config.pluginmanager.register(plugin, _PLUGIN_NAME)
    return plugin.ledgers.setdefault(title, Ledger(title))


# -- raw HTTP --------------------------------------------------------------------------------------
@dataclass
class Answer:
    """What came back on one connection: a parsed response, or ``status`` None when the server closed
    (or reset) the connection without answering."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed_how: str = ""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def outcome(self) -> str:
        return f"{self.status}" if self.status is not None else f"closed ({self.closed_how})"


def _parse(data: bytes) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return Answer(int(parts[1]), headers, body)


def exchange(
    port: int,
    data: bytes,
    *,
    then: Sequence[tuple[float, bytes]] = (),
    timeout: float = 60.0,
) -> Answer:
    """Send ``data`` on a fresh connection (then, for each ``(pause_s, more)``, wait and send more), read
    until the server closes. The request should say ``Connection: close``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            for pause, more in then:
                time.sleep(pause)
                sock.sendall(more)
        except OSError as exc:  # the server closed while we were still sending: read what it said
            sent_error = type(exc).__name__
        else:
            sent_error = ""
        chunks = []
        try:
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
        except ConnectionResetError:
            if not chunks:
                return Answer(None, closed_how="reset")
        except TimeoutError:
            if not chunks:
                return Answer(None, closed_how="no answer within the client timeout")
        if not chunks:
            return Answer(None, closed_how=f"closed{' while sending: ' + sent_error if sent_error else ''}")
        return _parse(b"".join(chunks))


def http_request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, version: str = "HTTP/1.1"
) -> bytes:
    """The bytes of one request with ``Host`` and ``Connection: close`` (and ``Content-Length`` for a body)."""
    lines = [f"{method} {path} {version}", "Host: localhost", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in (headers or {})):
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


# -- processes -------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def rss_kib(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


# -- load ------------------------------------------------------------------------------------------
WORDS = (
    "good bad great terrible fine okay movie film plot actor team game vote law phone code doctor "
    "sleep win lose new old fast slow the a of and to in is was it this that"
).split()


def sentence(rng: random.Random, max_words: int = 24) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, max_words)))


@dataclass(frozen=True)
class Body:
    kind: str
    data: bytes
    content_type: str
    answers: int  # results expected
    single: bool = False


def mixed_bodies(seed: int = 0, n: int = 60) -> list[Body]:
    """Valid bodies of every kind the soak sends: one text, a JSON batch, JSON Lines."""
    rng = random.Random(seed)
    bodies = []
    for i in range(n):
        kind = ("single", "batch", "jsonlines")[i % 3]
        if kind == "single":
            bodies.append(Body(kind, json.dumps({"inputs": sentence(rng)}).encode(), "application/json", 1, True))
        elif kind == "batch":
            texts = [sentence(rng) for _ in range(rng.randint(2, 32))]
            bodies.append(Body(kind, json.dumps({"inputs": texts}).encode(), "application/json", len(texts)))
        else:
            texts = [sentence(rng) for _ in range(rng.randint(2, 16))]
            data = "".join(json.dumps({"text": t, "id": j}) + "\n" for j, t in enumerate(texts)).encode()
            bodies.append(Body(kind, data, "application/jsonlines", len(texts)))
    return bodies


def check_answer(body: Body, status: int, content_type: str, data: bytes) -> str:
    """ "ok", or what is wrong with the answer to ``body``."""
    if status != 200:
        return f"HTTP {status}"
    try:
        if body.kind == "jsonlines":
            results = [json.loads(line) for line in data.decode().splitlines()]
        else:
            parsed = json.loads(data)
            results = [parsed] if body.single else parsed
    except ValueError:
        return f"unparsable {content_type} answer"
    if len(results) != body.answers:
        return f"{len(results)} results for {body.answers} inputs"
    if not all(isinstance(r, list) and r and "label" in r[0] and "score" in r[0] for r in results):
        return "malformed result"
    return "ok"


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    outcomes: Counter[str]
    latencies_s: list[float]  # of answered requests after the warm-up
    by_kind: Counter[str]
    errors: list[str]

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        return self.requests - self.outcomes.get("ok", 0)


def run_load(
    port: int,
    concurrency: int,
    seconds: float,
    bodies: Sequence[Body],
    *,
    warmup_s: float = 0.0,
    on_warm: Callable[[], None] | None = None,
    timeout: float = 60.0,
) -> LoadResult:
    """``concurrency`` keep-alive clients send ``bodies`` round-robin for ``seconds`` and check every
    answer. Latencies are kept from ``warmup_s`` on; ``on_warm`` runs once then (e.g. to read RSS)."""
    outcomes: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = time.monotonic()
    warm_at, stop_at = start + warmup_s, start + warmup_s + seconds

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        i = index
        while (now := time.monotonic()) < stop_at:
            body = bodies[i % len(bodies)]
            i += concurrency
            t0 = time.monotonic()
            try:
                conn.request("POST", "/invocations", body.data, {"Content-Type": body.content_type})
                response = conn.getresponse()
                data = response.read()
                verdict = check_answer(body, response.status, response.getheader("Content-Type", ""), data)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                verdict = f"{type(exc).__name__}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            elapsed = time.monotonic() - t0
            with lock:
                outcomes[verdict] += 1
                by_kind[body.kind] += 1
                if verdict == "ok" and now >= warm_at:
                    latencies.append(elapsed)
                elif verdict != "ok" and len(errors) < 20:
                    errors.append(f"{body.kind}: {verdict}")
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    if on_warm is not None:
        time.sleep(max(0.0, warm_at - time.monotonic()))
        on_warm()
    for thread in threads:
        thread.join()
    return LoadResult(concurrency, time.monotonic() - start, outcomes, latencies, by_kind, errors)


def percentile(samples: Sequence[float], q: float) -> float:
    if not samples:
        return float("nan")
    s = sorted(samples)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# -- a model for the suites that do not have the serve tests' fixtures -------------------------------
def export_tiny_model(work: Path, labels: Sequence[str] = ("negative", "neutral", "positive")) -> Path:
    """A really exported INT8 model directory of a tiny random BERT (PyTorch -> ONNX -> INT8 -> manifest)."""
    from support.tiny_model import DEFAULT_WORDS, make_tiny_model
    from textclf.export.options import ExportOptions
    from textclf.export.pipeline import export_model_dir

    words = sorted({*DEFAULT_WORDS, *WORDS})
    hf = make_tiny_model(work / "hf", labels=list(labels), words=words, seed=3)
    out = work / "model"
    export_model_dir(hf, out, ExportOptions(keep_full_precision=False, max_seq_length=64))
    return out
