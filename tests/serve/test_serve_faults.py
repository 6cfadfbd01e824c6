"""Faults against the real stack (nginx -> gunicorn -> Flask -> onnxruntime), each on its own ``textclf
serve``: SIGTERM with requests in flight, a gunicorn worker killed, nginx or the gunicorn master
killed, a tampered or corrupted model. The terminal summary lists what was injected and how it ended.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from support.reliability import Ledger, ledger_for, mixed_bodies, process_group, run_load, sentence
from support.serving import ServeProcess, make_sm_root
from textclf.contract.model_dir import MANIFEST_FILE, Manifest, read_manifest, write_manifest

VALID = json.dumps({"inputs": "a good film"}).encode()


@pytest.fixture(scope="module")
def faults(request: pytest.FixtureRequest) -> Ledger:
    return ledger_for(request.config, "serve faults (tests/serve/test_serve_faults.py)")


def _serve(model_dir: Path, tmp_path: Path, workers: int = 2, **env: str) -> ServeProcess:
    root = make_sm_root(model_dir, tmp_path / "opt-ml")
    return ServeProcess(root, tmp_path / "logs", {"TEXTCLF_INTRA_OP_THREADS": "1", **env}, workers=workers)


def _post(port: int, body: bytes, sent: threading.Event) -> tuple[int, bytes, float]:
    """POST on a fresh connection; ``sent`` is set once the whole request is on the wire."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    finally:
        sent.set()
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data, time.monotonic()


def test_sigterm_finishes_every_in_flight_request_and_exits_0(model_dir: Path, tmp_path: Path, faults: Ledger):
    rng = random.Random(7)
    batches = []  # 16 requests: 4 large batches (slow), 12 small ones
    for i in range(16):
        n = 2000 if i % 4 == 0 else rng.randint(1, 16)
        batches.append([sentence(rng, 60) for _ in range(n)])
    with _serve(model_dir, tmp_path) as serve:
        faults.note(f"SIGTERM test: time from start to the first /ping 200: {serve.wait_ready():.2f} s")
        sent = [threading.Event() for _ in batches]
        with ThreadPoolExecutor(len(batches)) as pool:
            futures: list[Future[tuple[int, bytes, float]]] = [
                pool.submit(_post, serve.port, json.dumps({"inputs": texts}).encode(), event)
                for texts, event in zip(batches, sent, strict=True)
            ]
            assert all(event.wait(30) for event in sent)
            term_at = time.monotonic()
            serve.terminate()
            in_flight = sum(not f.done() for f in futures)
            outcomes = []
            for texts, future in zip(batches, futures, strict=True):
                try:
                    status, data, _ = future.result(timeout=40)
                except Exception as exc:  # a lost request: recorded, then the assertion below fails
                    outcomes.append(f"{type(exc).__name__}: {exc}")
                    faults.lose(f"request of {len(texts)} texts: {type(exc).__name__}")
                    continue
                ok = status == 200 and len(json.loads(data)) == len(texts)
                outcomes.append("ok" if ok else f"HTTP {status}")
                if not ok:
                    faults.lose(f"request of {len(texts)} texts: HTTP {status}")
        code = serve.wait_exit(30)
        exit_s = time.monotonic() - term_at
        faults.fault("SIGTERM with 16 requests sent", f"exit {code} after {exit_s:.1f} s, {in_flight} still in flight")
        for outcome in outcomes:
            faults.request(outcome)
        assert in_flight >= 1, "every request had finished before SIGTERM: the test proved nothing"
        assert outcomes == ["ok"] * len(batches)
        assert code == 0, serve.stderr()[-3000:]
        assert exit_s < 30
        assert process_group(serve.proc.pid) == []  # type: ignore[union-attr]
        with pytest.raises(requests.ConnectionError):
            requests.get(serve.url("/ping"), timeout=2)


def test_a_killed_worker_is_replaced_and_answers_within_2_s(model_dir: Path, tmp_path: Path, faults: Ledger):
    """One worker, so that nothing answers until gunicorn has replaced it; light load around the kill.
    Only the requests the dead worker held may fail."""
    concurrency = 4
    with _serve(model_dir, tmp_path, workers=1) as serve:
        serve.wait_ready()
        (victim,) = serve.gunicorn_workers()
        load: dict[str, object] = {}
        loader = threading.Thread(
            target=lambda: load.update(result=run_load(serve.port, concurrency, 5.0, mixed_bodies(3))), daemon=True
        )
        loader.start()
        time.sleep(1.5)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        recovered_s = None
        while time.monotonic() - killed_at < 10:
            with contextlib.suppress(requests.RequestException):
                response = requests.post(
                    serve.url("/invocations"), data=VALID, headers={"Content-Type": "application/json"}, timeout=2
                )
                if response.status_code == 200:
                    recovered_s = time.monotonic() - killed_at
                    break
            time.sleep(0.02)
        loader.join(30)
        result = load["result"]
        faults.fault("SIGKILL of the only gunicorn worker under load", f"answered again after {recovered_s} s")
        for outcome, n in result.outcomes.items():  # type: ignore[attr-defined]
            faults.request(outcome, n)
        assert recovered_s is not None and recovered_s < 2.0, f"no answer within 2 s ({recovered_s})"
        assert serve.proc.poll() is None  # type: ignore[union-attr]
        workers = serve.gunicorn_workers()
        assert len(workers) == 1 and workers[0] != victim
        # Only what the dead worker held: at most one request per client (a 502 from nginx, or an answer
        # cut off mid-way when the worker died while nginx was already passing it on).
        assert result.failed <= concurrency, result.errors  # type: ignore[attr-defined]
        assert result.outcomes["ok"] > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("victim", ["nginx", "gunicorn"])
def test_serve_exits_non_zero_when_nginx_or_the_gunicorn_master_dies(
    model_dir: Path, tmp_path: Path, faults: Ledger, victim: str
):
    with _serve(model_dir, tmp_path) as serve:
        serve.wait_ready()
        os.kill(serve.child(victim), signal.SIGKILL)
        code = serve.wait_exit(20)
        faults.fault(f"SIGKILL of the {victim} master", f"serve exit status {code}")
        assert code not in (None, 0), f"serve exit status {code}"
        assert f"{victim} exited unexpectedly" in serve.stderr()
        # Nothing left behind: an orphaned nginx worker would keep the port; orphaned gunicorn workers the model.
        assert process_group(serve.proc.pid) == []  # type: ignore[union-attr]
        with pytest.raises(requests.ConnectionError):
            requests.get(serve.url("/ping"), timeout=2)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _reseal_garbage(model: Path) -> None:
    """A corrupted model.onnx under a manifest that matches it: the hashes pass, ONNX Runtime refuses."""
    manifest: Manifest = read_manifest(model, verify=True)
    (model / "model.onnx").write_bytes(b"this is not an ONNX graph" * 100)
    (model / MANIFEST_FILE).unlink()
    write_manifest(model, manifest)


DAMAGE = {
    "model.onnx: one byte flipped": ("model.onnx", _flip_byte, 2, "does not match its sha256"),
    "tokenizer.json: truncated": ("tokenizer.json", _truncate, 2, "does not match its sha256"),
    "model.onnx: missing": ("model.onnx", Path.unlink, 2, "is missing"),
    "model.onnx: garbage under a matching manifest": ("model.onnx", None, 2, "ONNX Runtime cannot load"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_tampered_or_corrupted_model_is_refused_and_never_healthy(
    model_dir: Path, tmp_path: Path, faults: Ledger, damage: str
):
    name, harm, status, message = DAMAGE[damage]
    serve = _serve(model_dir, tmp_path)
    model = serve.sm_root / "model"
    if harm is None:
        _reseal_garbage(model)
    else:
        harm(model / name)
    pings: dict[str, int] = {}
    with serve:
        while serve.proc.poll() is None:  # type: ignore[union-attr]
            try:
                answer = str(requests.get(serve.url("/ping"), timeout=2).status_code)
            except requests.ConnectionError:
                answer = "refused"
            pings[answer] = pings.get(answer, 0) + 1
            assert time.monotonic() - serve.started_at < 60, "serve still running with a damaged model"
            time.sleep(0.05)
        code = serve.proc.returncode  # type: ignore[union-attr]
    faults.fault(f"damaged model ({damage})", f"exit {code}, /ping answers {pings}")
    assert "200" not in pings
    assert code == status, serve.stderr()[-3000:]
    stderr = serve.stderr()
    assert str(model / name) in stderr and message in stderr, stderr[-3000:]
    lead = "ONNX Runtime cannot load" if harm is None else "model file"  # the worker's error, or check()'s
    assert f"textclf serve: cannot start: {lead} {model / name}" in stderr, stderr[-3000:]
