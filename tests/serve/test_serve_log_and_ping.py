"""What the README promises about the request log's texts and about ``/ping``, on the real stack.

``TEXTCLF_LOG_TEXTS=true`` puts a request's texts into its JSON log line (answered or refused), and
the default keeps them out of every log. ``GET /ping`` is answered by whichever worker takes it:
200 as soon as one worker has loaded the model (gunicorn hands connections only to workers that
finished loading), and nginx's JSON 503 "not ready" within about a second while none has. The
workers' loading is held at a gate (a ``TEXTCLF_RULES`` file that waits for a file per worker),
so each state is observed, not raced.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
import requests

from support.serving import ServeProcess, make_sm_root

SECRET = "zebra quartz violin"  # words nothing else sends


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def log_line(serve: ServeProcess, request_id: str) -> dict:
    wait_for(lambda: f'"request_id":"{request_id}"' in serve.stdout(), f"the log line of {request_id}", 10)
    lines = [json.loads(x) for x in serve.stdout().splitlines() if f'"request_id":"{request_id}"' in x]
    assert len(lines) == 1, lines
    return lines[0]


# -- TEXTCLF_LOG_TEXTS ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("log_texts", ["true", None], ids=["TEXTCLF_LOG_TEXTS=true", "default"])
def test_texts_are_logged_only_with_log_texts(model_dir: Path, tmp_path: Path, log_texts: str | None) -> None:
    root = make_sm_root(model_dir, tmp_path / "opt-ml")
    env = {"TEXTCLF_LOG_TEXTS": log_texts} if log_texts else {}
    with ServeProcess(root, tmp_path / "logs", env, workers=1) as serve:
        serve.wait_ready()
        texts = [SECRET, f"{SECRET} again"]
        answered = requests.post(serve.url("/invocations"), json={"inputs": texts}, timeout=30)
        assert answered.status_code == 200
        refused_texts = [f"{SECRET} refused"]
        refused = requests.post(
            serve.url("/invocations"), json={"inputs": refused_texts, "parameters": {"top_k": 0}}, timeout=30
        )
        assert refused.status_code == 400
        ok_line = log_line(serve, answered.headers["X-Request-Id"])
        bad_line = log_line(serve, refused.headers["X-Request-Id"])
        assert (ok_line["status"], bad_line["status"]) == (200, 400)
        if log_texts:
            assert ok_line["input_texts"] == texts
            assert bad_line["input_texts"] == refused_texts
        else:
            assert "input_texts" not in ok_line and "input_texts" not in bad_line
            assert SECRET not in serve.stdout() and SECRET not in serve.stderr()


# -- /ping ------------------------------------------------------------------------------------------------------
GATE_RULES = """
    import os
    import sys
    import time
    from pathlib import Path

    # Only in a gunicorn worker (serve itself loads the rules too, to check them, before any worker
    # starts): say so, then wait until the test opens this worker's gate.
    if "gunicorn" in sys.modules:
        gate = Path(os.environ["TEST_PING_GATE"])
        me = os.getpid()
        (gate / f"waiting-{me}").touch()
        until = time.monotonic() + 60
        while not (gate / f"open-{me}").exists() and not (gate / "open-all").exists() and time.monotonic() < until:
            time.sleep(0.02)
        (gate / f"loaded-{me}").touch()


    def before(texts, context):
        return texts
"""


def test_ping_is_200_once_one_worker_has_loaded_and_503_while_none_has(model_dir: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    rules = tmp_path / "gate_rules.py"
    rules.write_text(textwrap.dedent(GATE_RULES), encoding="utf-8")
    root = make_sm_root(model_dir, tmp_path / "opt-ml")
    env = {"TEXTCLF_RULES": str(rules), "TEST_PING_GATE": str(gate)}

    def pids(state: str) -> set[int]:
        return {int(p.name.split("-")[1]) for p in gate.glob(f"{state}-*")}

    with ServeProcess(root, tmp_path / "logs", env, workers=2) as serve:
        wait_for(lambda: len(pids("waiting")) == 2, "both workers to reach the gate")
        assert pids("loaded") == set()
        # No worker has loaded: nginx answers for the app, at once, in JSON.
        started = time.monotonic()
        not_ready = requests.get(serve.url("/ping"), timeout=10)
        took = time.monotonic() - started
        assert not_ready.status_code == 503, not_ready.text
        assert "not ready" in not_ready.json()["error"]["message"]
        assert took < 5, f"/ping took {took:.1f} s to say not ready"  # nginx gives the app 1 s

        # One worker loaded, the other still loading: healthy, and requests are served.
        first, second = sorted(pids("waiting"))
        (gate / f"open-{first}").touch()
        serve.wait_ready(30)
        assert pids("loaded") == {first} and set(serve.gunicorn_workers()) == {first, second}
        for _ in range(5):
            ping = requests.get(serve.url("/ping"), timeout=5)
            assert ping.status_code == 200 and ping.json()["status"] == "healthy"
        answer = requests.post(serve.url("/invocations"), json={"inputs": ["a good film"]}, timeout=30)
        assert answer.status_code == 200
        assert pids("loaded") == {first}  # the second worker was still loading all along

        (gate / "open-all").touch()
        wait_for(lambda: pids("loaded") == {first, second}, "the second worker to load")
        assert requests.get(serve.url("/ping"), timeout=5).status_code == 200


# -- when the line is written ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status"), [({"inputs": "a fine film"}, 200), ({"inputs": ""}, 400)], ids=["answered", "refused"]
)
def test_the_log_line_is_written_once_the_answer_is_sent(
    model_dir: Path, tmp_path: Path, body: dict, status: int
) -> None:
    """The app writes a request's line when the server closes the answer's body (after sending it), so
    the client does not wait for the write; the line is complete all the same."""
    import dataclasses
    import io

    from werkzeug.test import EnvironBuilder

    from textclf.serve.app import create_app
    from textclf.serve.request_log import RequestLog
    from textclf.serve.settings import ServingSettings

    root = make_sm_root(model_dir, tmp_path / "opt-ml")
    app = create_app(ServingSettings.from_env({"SM_ROOT": str(root)}))
    stream = io.StringIO()
    served = app.extensions["textclf"]
    app.extensions["textclf"] = dataclasses.replace(served, request_log=RequestLog("v1", stream=stream))
    environ = EnvironBuilder(
        path="/invocations", method="POST", json=body, headers={"X-Request-Id": "req-42"}
    ).get_environ()
    statuses: list[str] = []
    answer = app.wsgi_app(environ, lambda s, headers, exc_info=None: statuses.append(s))
    sent = b"".join(answer)
    assert statuses[0].startswith(str(status)) and sent
    assert stream.getvalue() == ""  # nothing yet: the server is still sending
    answer.close()
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert (line["request_id"], line["status"], line["path"]) == ("req-42", status, "/invocations")
    assert line["texts"] == (1 if status == 200 else 0) and line["latency_ms"] > 0
    assert ("error" in line) == (status != 200)
