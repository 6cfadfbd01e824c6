"""Hostile and malformed requests against the real stack (nginx -> gunicorn -> Flask -> onnxruntime).

Every request goes out as raw bytes on its own connection, so that no HTTP library repairs it. Each
gets a 4xx JSON answer {"error": {"code", "message", "request_id"}} naming the problem, or has its
connection closed by nginx where that is the right answer (a client too slow to send its headers or
body). A few hostile requests are valid and get a correct 200 (a 1 MB text is truncated like any
long text; a NUL character is a character). After each: a valid request succeeds and the gunicorn
workers are the same processes (nothing crashed or was recycled). Zero 5xx.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.reliability import Answer, Ledger, exchange, http_request, ledger_for
from support.serving import ServeProcess, make_sm_root

SLOW_TIMEOUT_S = 2  # TEXTCLF_CLIENT_BODY_TIMEOUT and TEXTCLF_CLIENT_HEADER_TIMEOUT for this stack
CA = "X-Amzn-SageMaker-Custom-Attributes"
JSON_CT = {"Content-Type": "application/json"}
CHUNKED = {"Transfer-Encoding": "chunked"}
CLOSED = "closed"


@dataclass(frozen=True)
class Case:
    send: Callable[[int], Answer]
    expect: int | str  # a status, or CLOSED: no answer, the connection closed
    fragment: str = ""  # in the error message


def post(body: bytes, headers: dict[str, str] | None = None, path: str = "/invocations") -> Callable[[int], Answer]:
    return lambda port: exchange(port, http_request("POST", path, body, JSON_CT if headers is None else headers))


def post_json(value: object, **headers: str) -> Callable[[int], Answer]:
    return post(json.dumps(value).encode(), {**JSON_CT, **headers})


def raw(data: bytes, then: tuple[tuple[float, bytes], ...] = ()) -> Callable[[int], Answer]:
    return lambda port: exchange(port, data, then=then, timeout=SLOW_TIMEOUT_S * 5)


def method(verb: str, path: str) -> Callable[[int], Answer]:
    return lambda port: exchange(port, http_request(verb, path))


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


WORDS_1MB = ("good " * 210_000).encode()
CASES: dict[str, Case] = {
    # -- JSON that is not JSON, or not our JSON ----------------------------------------------------
    "json: truncated": Case(post(b'{"inputs": '), 400, "malformed JSON"),
    "json: trailing garbage": Case(post(b'["a"] xyz'), 400, "malformed JSON"),
    "json: single quotes": Case(post(b"{'inputs': 'a'}"), 400, "malformed JSON"),
    "json: 100k nested lists": Case(post(_deep(100_000)), 400, "nested too deeply"),
    "json: 100k nested objects in parameters": Case(
        post(b'{"inputs": "a", "parameters": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001), 400, "nested too deeply"
    ),
    "json: 50k nested lists as inputs": Case(post(b'{"inputs": ' + _deep(50_000) + b"}"), 400, "nested too deeply"),
    "json: integer of 5000 digits": Case(post(b'{"inputs": ' + b"9" * 5000 + b"}"), 400, "out of range"),
    "json: inputs is a number": Case(post_json({"inputs": 3}), 400, "got a number"),
    "json: inputs is a boolean": Case(post_json({"inputs": True}), 400, "got a boolean"),
    "json: inputs is null": Case(post_json({"inputs": None}), 400, "null"),
    "json: no inputs key": Case(post_json({"text": "a"}), 400, '{"inputs"'),
    "json: object without text": Case(post_json({"inputs": {"txt": "a"}}), 400, 'without "text"'),
    "json: null in the list": Case(post_json(["a", None]), 400, "inputs[1] is null"),
    "json: number in the list": Case(post_json(["a", 7]), 400, "inputs[1] must be a string"),
    "json: list in the list": Case(post_json([["a"]]), 400, "inputs[0] must be a string"),
    "json: empty text": Case(post_json({"inputs": ""}), 400, "empty"),
    "json: whitespace text": Case(post_json({"inputs": " \t\n\u3000 "}), 400, "empty"),
    "json: whitespace in a list": Case(post_json(["a", "   "]), 400, "inputs[1] is empty"),
    "json: empty list": Case(post_json([]), 400, "empty list"),
    "json: empty body": Case(post(b""), 400, "empty"),
    "json: whitespace body": Case(post(b" \r\n\t "), 400, "empty"),
    "json: pairs mixed with single texts": Case(
        post_json([{"text": "a", "text_pair": "b"}, {"text": "c"}]), 400, "text_pair"
    ),
    "json: parameters a list": Case(post_json({"inputs": "a", "parameters": [1]}), 400, '"parameters" must be'),
    "json: unknown parameter": Case(post_json({"inputs": "a", "parameters": {"temperature": 2}}), 400, "unknown"),
    "json: top_k 0": Case(post_json({"inputs": "a", "parameters": {"top_k": 0}}), 400, "top_k"),
    "json: top_k a string": Case(post_json({"inputs": "a", "parameters": {"top_k": "2"}}), 400, "top_k"),
    "json: top_k 1e308": Case(post(b'{"inputs": "a", "parameters": {"top_k": 1e308}}'), 400, "top_k"),
    "json: threshold NaN": Case(post(b'{"inputs": "a", "parameters": {"threshold": NaN}}'), 400, "threshold"),
    "json: threshold Infinity": Case(post(b'{"inputs": "a", "parameters": {"threshold": Infinity}}'), 400, "thresh"),
    "json: stride -1": Case(post_json({"inputs": "a", "parameters": {"stride": -1}}), 400, "stride"),
    "json: raw NUL byte in a string": Case(post(b'{"inputs": "a\x00b"}'), 400, "malformed JSON"),
    "json: lone surrogate": Case(post(b'["a\\ud800b"]'), 400, "unpaired surrogate"),
    "json: invalid UTF-8": Case(post(b'{"inputs": "caf\xe9"}'), 400, "not valid UTF-8"),
    "json: overlong UTF-8 encoding": Case(post(b'{"inputs": "\xc0\xaf"}'), 400, "not valid UTF-8"),
    "json: UTF-16 body": Case(post('{"inputs": "a"}'.encode("utf-16")), 400, "not valid UTF-8"),
    "json: 100,000 texts": Case(post_json(["a"] * 100_000), 413, "exceed the limit"),
    "json: 2049 texts (one over the limit)": Case(post_json(["a"] * 2049), 413, "exceed the limit"),
    "valid: a 1 MB single text (truncated)": Case(post(b'{"inputs": "' + WORDS_1MB + b'"}'), 200),
    "valid: escaped NUL inside a text": Case(post(b'["a\\u0000b"]'), 200),
    # -- the line formats --------------------------------------------------------------------------
    "jsonlines: malformed line": Case(
        post(b'"a"\n{"text": \n', {"Content-Type": "application/jsonlines"}), 400, "line 2"
    ),
    "jsonlines: empty line in the middle": Case(
        post(b'"a"\n\n"b"\n', {"Content-Type": "application/jsonlines"}), 400, "line 2 is empty"
    ),
    "jsonlines: 100k nested lists": Case(post(_deep(100_000), {"Content-Type": "application/jsonlines"}), 400, "deep"),
    "jsonlines: a list as a record": Case(post(b'["a", "b"]\n', {"Content-Type": "application/jsonlines"}), 400),
    "jsonlines: parameters in a record": Case(
        post(b'{"inputs": "a", "parameters": {"top_k": 2}}\n', {"Content-Type": "application/jsonlines"}),
        400,
        "no parameters",
    ),
    "csv: three columns": Case(post(b"a,b,c\n", {"Content-Type": "text/csv"}), 400, "3 columns"),
    "csv: a text pair for a single-text model": Case(post(b"a,b\n", {"Content-Type": "text/csv"}), 400, "pair"),
    "csv: empty row in the middle": Case(post(b"a\n\nb\n", {"Content-Type": "text/csv"}), 400, "row 2 is empty"),
    "valid: csv field of 1 MB": Case(post(WORDS_1MB + b"\n", {"Content-Type": "text/csv"}), 200),
    "plain: empty line in the middle": Case(post(b"a\n \nb\n", {"Content-Type": "text/plain"}), 400, "line 2"),
    "plain: 100,000 lines": Case(post(b"a\n" * 100_000, {"Content-Type": "text/plain"}), 413, "exceed the limit"),
    "plain: invalid UTF-8": Case(post(b"\xff\xfe\xfd\n", {"Content-Type": "text/plain"}), 400, "UTF-8"),
    # -- content types and Accept ------------------------------------------------------------------
    "type: application/xml": Case(post(b"<a/>", {"Content-Type": "application/xml"}), 415, "unsupported"),
    "type: multipart/form-data": Case(
        post(b"--x\r\n\r\na\r\n--x--", {"Content-Type": "multipart/form-data; boundary=x"}), 415
    ),
    "type: form-urlencoded": Case(post(b"inputs=a", {"Content-Type": "application/x-www-form-urlencoded"}), 415),
    "type: latin-1 charset": Case(post(b'["a"]', {"Content-Type": "application/json; charset=latin-1"}), 415),
    "type: missing, body not JSON": Case(post(b"just some text", {}), 400, "malformed JSON"),
    "type: control character": Case(post(b'["a"]', {"Content-Type": "application/json\x01"}), 400, "control"),
    "type: 2000 characters": Case(post(b'["a"]', {"Content-Type": "application/json;" + "x" * 2000}), 400, "longer"),
    "accept: image/png": Case(post(b'["a"]', {**JSON_CT, "Accept": "image/png"}), 406, "Accept"),
    "accept: garbage": Case(post(b'["a"]', {**JSON_CT, "Accept": ";;;,,,q=x"}), 406),
    "accept: 3000 characters": Case(post(b'["a"]', {**JSON_CT, "Accept": "text/csv," * 375}), 400, "longer"),
    # -- custom attributes -------------------------------------------------------------------------
    "attributes: threshold=abc": Case(post(b'["a"]', {**JSON_CT, CA: "threshold=abc"}), 400, "threshold"),
    "attributes: top_k=0": Case(post(b'["a"]', {**JSON_CT, CA: "top_k=0"}), 400, "top_k"),
    "attributes: top_k=-3": Case(post(b'["a"]', {**JSON_CT, CA: "top_k=-3"}), 400, "top_k"),
    "attributes: stride=x": Case(post(b'["a"]', {**JSON_CT, CA: "stride=x"}), 400, "stride"),
    "attributes: sliding_window=maybe": Case(post(b'["a"]', {**JSON_CT, CA: "sliding_window=maybe"}), 400),
    "attributes: control character": Case(post(b'["a"]', {**JSON_CT, CA: "a=\x01b"}), 400, "printable ASCII"),
    "attributes: DEL character": Case(post(b'["a"]', {**JSON_CT, CA: "a=\x7fb"}), 400, "printable ASCII"),
    "attributes: non-ASCII": Case(post(b'["a"]', {**JSON_CT, CA: "a=caf\xe9"}), 400, "printable ASCII"),
    "attributes: 1025 characters": Case(post(b'["a"]', {**JSON_CT, CA: "a=" + "x" * 1023}), 400, "1024"),
    # -- HTTP itself -------------------------------------------------------------------------------
    "http: body over the 6 MB limit": Case(post(b'["' + b"a" * (7 << 20) + b'"]'), 413, "exceeds 6 MB"),
    "http: Content-Length over the limit, no body": Case(
        raw(http_request("POST", "/invocations", headers={**JSON_CT, "Content-Length": str(7 << 20)})), 413
    ),
    "http: body sent slower than client_body_timeout": Case(
        raw(
            http_request("POST", "/invocations", headers={**JSON_CT, "Content-Length": "20"}) + b'["a',
            then=((SLOW_TIMEOUT_S + 1.5, b'bc"]' + b" " * 13),),
        ),
        CLOSED,
    ),
    "http: headers sent slower than client_header_timeout": Case(
        raw(b"GET /ping HTTP/1.1\r\nHost: x\r\n", then=((SLOW_TIMEOUT_S + 1.5, b"X-A: b\r\n\r\n"),)), CLOSED
    ),
    "http: a 20 KB header": Case(raw(http_request("GET", "/ping", headers={"X-Big": "a" * 20_000})), 431),
    "http: 8000 headers": Case(
        raw(http_request("GET", "/ping", headers={f"X-H{i}": "v" * 8 for i in range(8000)})), 431
    ),
    "http: a 20 KB URI": Case(raw(http_request("GET", "/ping?" + "a" * 20_000)), 414),
    "http: negative Content-Length": Case(
        raw(http_request("POST", "/invocations", headers={"Content-Length": "-1"})), 400
    ),
    "http: Content-Length of 20 digits": Case(
        raw(http_request("POST", "/invocations", headers={"Content-Length": "9" * 20})), 400
    ),
    "http: Transfer-Encoding and Content-Length": Case(
        raw(
            http_request(
                "POST",
                "/invocations",
                b'5\r\n["a"]\r\n0\r\n\r\n',
                {**JSON_CT, "Content-Length": "5", "Transfer-Encoding": "chunked"},
            )
        ),
        400,
    ),
    "http: malformed chunk": Case(
        raw(http_request("POST", "/invocations", b"ZZ\r\nxx\r\n0\r\n\r\n", {**JSON_CT, **CHUNKED})),
        400,
    ),
    "http: TLS handshake on the plain port": Case(raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03" + b"\0" * 64), 400),
    "http: lower-case method": Case(raw(b"get /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 400),
    "http: no Host header": Case(raw(b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n"), 400),
    "http: NUL in a header": Case(raw(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"), 400),
    "http: HTTP/2.0 request line": Case(
        raw(b"GET /ping HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n"), 400, "version"
    ),
    "http: HTTP/3 request line": Case(raw(b"GET /ping HTTP/3\r\nHost: x\r\nConnection: close\r\n\r\n"), 400),
    "http: Transfer-Encoding gzip": Case(
        raw(http_request("POST", "/invocations", b"abc", {**JSON_CT, "Transfer-Encoding": "gzip"})), 400, "Transfer"
    ),
    # -- routes and methods ------------------------------------------------------------------------
    "route: /": Case(method("GET", "/"), 404, "no such route"),
    "route: /admin": Case(method("GET", "/admin"), 404),
    "route: /.env": Case(method("GET", "/.env"), 404),
    "route: /ping/": Case(method("GET", "/ping/"), 404),
    "route: /invocations.php": Case(method("POST", "/invocations.php"), 404),
    "route: /metrics": Case(method("GET", "/metrics"), 404),
    "method: GET /invocations": Case(method("GET", "/invocations"), 405, "GET is not allowed"),
    "method: PUT /invocations": Case(method("PUT", "/invocations"), 405, "PUT is not allowed"),
    "method: DELETE /ping": Case(method("DELETE", "/ping"), 405),
    "method: POST /ping": Case(post(b'["a"]', path="/ping"), 405),
    "method: TRACE /ping": Case(method("TRACE", "/ping"), 405, "TRACE is not allowed"),
    "method: OPTIONS /invocations": Case(method("OPTIONS", "/invocations"), 405),
    "method: PATCH /execution-parameters": Case(method("PATCH", "/execution-parameters"), 405),
    "method: CONNECT": Case(method("CONNECT", "/ping"), 405),
    "method: made-up FOO": Case(method("FOO", "/invocations"), 405),
    # -- path traversal ----------------------------------------------------------------------------
    "traversal: /../etc/passwd": Case(method("GET", "/../etc/passwd"), 400),
    "traversal: /%2e%2e/%2e%2e/etc/passwd": Case(method("GET", "/%2e%2e/%2e%2e/etc/passwd"), 400),
    "traversal: /ping/../../etc/passwd": Case(method("GET", "/ping/../../etc/passwd"), 400),
    "traversal: /invocations/..%2f..%2f..%2fetc%2fpasswd": Case(
        method("GET", "/invocations/..%2f..%2f..%2fetc%2fpasswd"), 400
    ),
    "traversal: /..;/etc/passwd": Case(method("GET", "/..;/etc/passwd"), 404),
    "traversal: /%00": Case(method("GET", "/%00"), 400),
    "traversal: //etc/passwd": Case(method("GET", "//etc/passwd"), 404),
}


@pytest.fixture(scope="module")
def ledger(request: pytest.FixtureRequest) -> Ledger:
    return ledger_for(request.config, "bad input (tests/reliability/test_bad_inputs.py)")


@pytest.fixture(scope="module")
def stack(reliability_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, ledger: Ledger) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("bad-inputs")
    env = {
        "TEXTCLF_CLIENT_BODY_TIMEOUT": str(SLOW_TIMEOUT_S),
        "TEXTCLF_CLIENT_HEADER_TIMEOUT": str(SLOW_TIMEOUT_S),
        "TEXTCLF_INTRA_OP_THREADS": "1",
    }
    with ServeProcess(make_sm_root(reliability_model_dir, work / "opt-ml"), work / "logs", env, workers=2) as serve:
        ledger.note(f"time from start to the first /ping 200: {serve.wait_ready():.2f} s")
        deadline = time.monotonic() + 60
        while len(serve.gunicorn_workers()) < 2 and time.monotonic() < deadline:  # /ping 200: one worker is up
            time.sleep(0.05)
        state = {"serve": serve, "workers": serve.gunicorn_workers(), "nginx": serve.child("nginx")}
        yield state
        assert serve.proc.poll() is None, serve.stderr()[-3000:]  # type: ignore[union-attr]
        assert "Traceback" not in serve.stderr(), serve.stderr()[-3000:]


def _valid(port: int) -> Answer:
    return exchange(port, http_request("POST", "/invocations", b'["a good film", "a bad film"]', JSON_CT))


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_gets_a_4xx_json_answer_and_harms_nothing(stack: dict, ledger: Ledger, name: str) -> None:
    case = CASES[name]
    serve: ServeProcess = stack["serve"]
    answer = case.send(serve.port)
    ledger.request(answer.outcome)
    if answer.status is not None and answer.status >= 500:
        ledger.lose(f"{name}: {answer.status}")
    if case.expect == CLOSED:
        assert answer.status is None, (answer.status, answer.body[:300])
    else:
        assert answer.status == case.expect, (answer.status, answer.body[:300])
        if answer.status >= 400:
            assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
            error = answer.json()["error"]
            assert error["code"] == answer.status and error["request_id"], error
            assert case.fragment in error["message"], error["message"]
            assert "Traceback" not in error["message"]
        else:  # valid though hostile: one answer, a label of the model
            assert answer.body.count(b"neutral") + answer.body.count(b"negative") + answer.body.count(b"positive") >= 1
    after = _valid(serve.port)
    ledger.request(f"valid after: {after.outcome}")
    assert after.status == 200 and len(after.json()) == 2, (after.status, after.body[:300])
    assert serve.gunicorn_workers() == stack["workers"], "a gunicorn worker died or was replaced"
    assert serve.child("nginx") == stack["nginx"]


def test_there_are_at_least_50_hostile_requests() -> None:
    assert len(CASES) >= 50
    assert sum(1 for case in CASES.values() if case.expect != 200) >= 50
