"""The real stack over HTTP: nginx -> gunicorn -> Flask -> onnxruntime, with a really exported INT8
model whose directory carries business rules in code/rules.py. One stack for the module."""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from support.serving import SINGLE_LABELS, WORDS, ServeProcess, cmdline, make_sm_root
from textclf.model.predictor import Classifier

MODEL_RULES = """
    import time

    from textclf.errors import RuleRejection


    def before(texts, context):
        for text in texts:
            if "forbidden" in text:
                raise RuleRejection("texts must not mention forbidden things", status=422)
        if "sleep" in context.attributes:
            time.sleep(float(context.attributes["sleep"]))
        return texts


    def after(texts, predictions, context):
        if context.attributes.get("boom") == "1":
            raise RuntimeError("a bug in the hook")
        forced = context.attributes.get("force_label")
        if forced:
            for result in predictions:
                result[0]["label"] = forced
            context.response_attributes["rules"] = "forced"
        return predictions
"""
MAX_BATCH = 1500
CA = "X-Amzn-SageMaker-Custom-Attributes"


@pytest.fixture(scope="module")
def stack(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    work = tmp_path_factory.mktemp("serve-http")
    root = make_sm_root(model_dir, work / "opt-ml", MODEL_RULES)
    env = {"TEXTCLF_MAX_BATCH": str(MAX_BATCH), "TEXTCLF_EMF": "true"}
    with ServeProcess(root, work / "logs", env, workers=2) as serve:
        serve.startup_s = serve.wait_ready()  # type: ignore[attr-defined]
        yield serve


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> Classifier:
    """The Python predictor on the same model, in this process."""
    return Classifier.load(model_dir, threads=1)


def texts_of(n: int, seed: int = 0, max_words: int = 20) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words))) for _ in range(n)]


def post(stack: ServeProcess, body: bytes | str, content_type: str = "application/json", **headers: str):
    data = body.encode() if isinstance(body, str) else body
    return requests.post(
        stack.url("/invocations"), data=data, headers={"Content-Type": content_type, **headers}, timeout=60
    )


def post_json(stack: ServeProcess, value: object, **headers: str):
    return post(stack, json.dumps(value), "application/json", **headers)


def assert_error(response: requests.Response, status: int, fragment: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == status
    assert fragment in error["message"], error["message"]
    assert len(error["request_id"]) >= 16
    return error


def assert_same(http: list, python: list) -> None:
    assert len(http) == len(python)
    for got, want in zip(http, python, strict=True):
        assert [e["label"] for e in got] == [e["label"] for e in want]
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-6)


# -- health and routes ---------------------------------------------------------------------------------
def test_ping_is_fast_and_startup_time_is_reported(stack: ServeProcess) -> None:
    print(f"\nserve: start to first /ping 200 in {stack.startup_s:.2f} s")  # type: ignore[attr-defined]
    slowest = 0.0
    for _ in range(20):
        started = time.perf_counter()
        response = requests.get(stack.url("/ping"), timeout=2)
        slowest = max(slowest, time.perf_counter() - started)
        assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert slowest < 2.0, f"slowest /ping took {slowest:.3f} s"
    print(f"slowest of 20 /ping: {slowest * 1000:.1f} ms")
    assert requests.head(stack.url("/ping"), timeout=2).status_code == 200


def test_ping_stays_fast_while_workers_are_busy(stack: ServeProcess) -> None:
    """gthread workers: a long invocation does not hold up the health check."""
    with ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(post_json, stack, {"inputs": ["slow"]}, **{CA: "sleep=1.5"}) for _ in range(2)]
        time.sleep(0.3)
        started = time.perf_counter()
        assert requests.get(stack.url("/ping"), timeout=2).status_code == 200
        took = time.perf_counter() - started
        assert all(f.result().status_code == 200 for f in busy)
    assert took < 1.0, f"/ping took {took:.3f} s while both workers were busy"


def test_execution_parameters(stack: ServeProcess) -> None:
    response = requests.get(stack.url("/execution-parameters"), timeout=5)
    assert response.status_code == 200
    assert response.json() == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/", 404, None),
        ("GET", "/models", 404, None),
        ("POST", "/invocations/extra", 404, None),
        ("POST", "/ping", 405, "GET, HEAD"),
        ("GET", "/invocations", 405, "POST"),
        ("PUT", "/invocations", 405, "POST"),
        ("DELETE", "/execution-parameters", 405, "GET, HEAD"),
    ],
)
def test_other_routes_and_methods_are_json(stack: ServeProcess, method: str, path: str, status: int, allow: str | None):
    response = requests.request(method, stack.url(path), timeout=5)
    assert_error(response, status, "route" if status == 404 else "not allowed")
    if allow:
        assert response.headers["Allow"] == allow


def test_server_header_hides_the_version(stack: ServeProcess) -> None:
    for response in (requests.get(stack.url("/ping"), timeout=5), requests.get(stack.url("/nope"), timeout=5)):
        assert response.headers["Server"] == "nginx"
        assert "<html" not in response.text.lower()


# -- predictions ------------------------------------------------------------------------------------------
def test_json_shapes_follow_the_pipeline_convention(stack: ServeProcess) -> None:
    single = post_json(stack, {"inputs": "a great film"})
    assert single.status_code == 200 and single.headers["Content-Type"] == "application/json"
    result = single.json()
    assert isinstance(result, list) and len(result) == 1 and set(result[0]) == {"label", "score"}
    assert result[0]["label"] in SINGLE_LABELS
    many = post_json(stack, {"inputs": ["a great film", "an awful plot"]}).json()
    assert len(many) == 2 and all(isinstance(r, list) and len(r) == 1 for r in many)
    assert post_json(stack, ["a great film"]).json() == [result]  # bare list: a list of results
    assert post_json(stack, "a great film").json() == result  # bare string: one result


def test_predictions_equal_the_python_predictor(stack: ServeProcess, reference: Classifier) -> None:
    texts = texts_of(60, seed=1, max_words=40)
    response = post_json(stack, {"inputs": texts, "parameters": {"top_k": None}})
    assert response.status_code == 200
    http = response.json()
    assert all(len(r) == len(SINGLE_LABELS) for r in http)
    assert_same(http, reference.predict(texts, top_k=None))
    # distinct texts get distinct scores: the comparison is not between constants
    assert len({round(r[0]["score"], 6) for r in http}) > 5


def test_sliding_window_equals_the_python_predictor(stack: ServeProcess, reference: Classifier) -> None:
    long_texts = texts_of(4, seed=2, max_words=300)
    for attrs in ({}, {CA: "sliding_window=true;stride=20"}):
        params = {"top_k": None} | ({} if attrs else {"sliding_window": True})
        response = post_json(stack, {"inputs": long_texts, "parameters": params}, **attrs)
        assert response.status_code == 200, response.text
        want = reference.predict(long_texts, top_k=None, sliding_window=True, stride=20 if attrs else None)
        assert_same(response.json(), want)
    plain = post_json(stack, {"inputs": long_texts, "parameters": {"top_k": None}}).json()
    assert_same(plain, reference.predict(long_texts, top_k=None))


def test_top_k_parameters_and_custom_attributes(stack: ServeProcess) -> None:
    text = "the acting was good but the plot was boring"
    assert len(post_json(stack, {"inputs": text, "parameters": {"top_k": 2}}).json()) == 2
    every = post_json(stack, {"inputs": text, "parameters": {"top_k": None}}).json()
    assert sorted(e["label"] for e in every) == sorted(SINGLE_LABELS)
    assert [e["score"] for e in every] == sorted((e["score"] for e in every), reverse=True)
    assert post_json(stack, {"inputs": text, "parameters": {"return_all_scores": True}}).json() == every
    # the header wins over the body, unknown keys are ignored but kept and echoed back
    response = post_json(stack, {"inputs": text, "parameters": {"top_k": 1}}, **{CA: "top_k=2;trace=abc-123"})
    assert len(response.json()) == 2
    assert response.headers[CA] == "top_k=2;trace=abc-123"
    assert post_json(stack, {"inputs": text}, **{CA: "top_k=all"}).json() == every


def test_threshold_is_for_multi_label_models(stack: ServeProcess) -> None:
    assert_error(post_json(stack, {"inputs": "x", "parameters": {"threshold": 0.5}}), 400, "multi-label models only")


def test_json_lines_1000_records_come_back_in_order(stack: ServeProcess, reference: Classifier) -> None:
    texts = texts_of(1000, seed=3)
    records = [json.dumps({"text": t, "id": i}) if i % 2 else json.dumps(t) for i, t in enumerate(texts)]
    response = post(stack, "\n".join(records) + "\n", "application/jsonlines")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/jsonlines"
    lines = response.text.split("\n")
    assert lines[-1] == "" and len(lines) == 1001
    assert_same([json.loads(line) for line in lines[:-1]], reference.predict(texts))


def test_csv_plain_text_and_accept(stack: ServeProcess, reference: Classifier) -> None:
    texts = ["a good film, really", "awful", 'a "quoted" plot']
    csv_body = "".join('"' + t.replace('"', '""') + '"\n' for t in texts)
    want = reference.predict(texts, top_k=2)
    response = post(stack, csv_body, "text/csv", **{CA: "top_k=2"})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    rows = response.text.split("\n")
    assert rows[-1] == "" and len(rows) == 4
    for row, result in zip(rows[:-1], want, strict=True):
        label1, score1, label2, _score2 = row.split(",")
        assert [label1, label2] == [e["label"] for e in result]
        assert float(score1) == pytest.approx(result[0]["score"], abs=1e-6)
    as_json = post(stack, csv_body, "text/csv", Accept="application/json").json()
    assert_same(as_json, reference.predict(texts))
    plain = post(stack, "\n".join(texts) + "\n", "text/plain")
    assert plain.headers["Content-Type"] == "application/jsonlines"
    assert_same([json.loads(x) for x in plain.text.splitlines()], reference.predict(texts))
    lines = post_json(stack, {"inputs": texts}, Accept="application/jsonlines").text.splitlines()
    assert len(lines) == 3
    csv_answer = post_json(stack, {"inputs": "one text"}, Accept="text/csv;q=0.9, text/html")
    assert csv_answer.headers["Content-Type"].startswith("text/csv") and csv_answer.text.count("\n") == 1


def test_unsupported_types(stack: ServeProcess) -> None:
    assert_error(post(stack, "a=b", "application/x-www-form-urlencoded"), 415, "unsupported Content-Type")
    assert_error(post(stack, b"\x00\x01", "application/octet-stream"), 415, "application/jsonlines")
    assert_error(post_json(stack, {"inputs": "x"}, Accept="text/html"), 406, "cannot answer with Accept")


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        ('{"inputs": ["a", ', "application/json", "malformed JSON"),
        ('{"inputs": 5}', "application/json", "got a number"),
        ('{"inputs": []}', "application/json", "empty list"),
        ('{"inputs": ["ok", null]}', "application/json", "inputs[1] is null"),
        ('{"inputs": ["ok", ["nested"]]}', "application/json", "inputs[1] must be a string"),
        ('{"inputs": ["ok", "  "]}', "application/json", "inputs[1] is empty"),
        ('{"inputs": "x", "parameters": {"top_k": 0}}', "application/json", '"top_k" must be a positive integer'),
        ('{"inputs": "x", "parameters": {"topk": 2}}', "application/json", 'unknown parameter "topk"'),
        ('{"inputs": {"text": "q", "text_pair": "a"}}', "application/json", "takes no text pairs"),
        (b"\xc3\x28 invalid", "text/plain", "not valid UTF-8"),
        ('"a"\n\n"b"', "application/jsonlines", "line 2 is empty"),
        ("", "application/json", "body is empty"),
        ("q,a\n", "text/csv", "quote texts that contain commas"),
    ],
)
def test_bad_requests_are_400_naming_the_problem(stack: ServeProcess, body, content_type: str, fragment: str):
    assert_error(post(stack, body, content_type), 400, fragment)


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"\x00\x00\x00\n", "text/csv", "row 1 text is empty (only invisible characters: U+0000 control)"),
        ("ok\n\u200b\u200d\n".encode(), "text/csv", "row 2 text is empty (only invisible characters: U+200B"),
        (b"ok\n\x00\nok\n", "text/plain", "line 2 is empty (only invisible characters: U+0000 control)"),
        ("ok\n\u3000\u200b\n".encode(), "text/plain", "line 2 is empty (only whitespace and invisible characters"),
        ('{"inputs": ["ok", ""]}', "application/json", "inputs[1] is empty: every text must contain something"),
        ('{"inputs": ["ok", "\\u200b\\ufeff"]}', "application/json", "inputs[1] is empty (only invisible"),
        ('{"inputs": "\\u0000"}', "application/json", "inputs is empty (only invisible characters: U+0000"),
        ('"ok"\n"\\u0000"\n', "application/jsonlines", "line 2 is empty (only invisible characters: U+0000"),
        ('"ok"\n{"text": " "}\n', "application/jsonlines", "line 2.text is empty (only whitespace)"),
    ],
    ids=[
        "csv-nul-body",
        "csv-zero-width",
        "plain-nul",
        "plain-space-zero-width",
        "json-empty",
        "json-zero-width",
        "json-nul",
        "jsonlines-nul",
        "jsonlines-blank",
    ],
)
def test_texts_that_are_not_text_are_400_and_never_classified(
    stack: ServeProcess, body, content_type: str, fragment: str
) -> None:
    """The rule training applies to its rows (textclf.model.text_validity): a text with nothing to
    classify is a 400 naming the record, and the model never runs on the request."""
    error = assert_error(post(stack, body, content_type), 400, fragment)
    deadline = time.monotonic() + 5
    while error["request_id"] not in stack.stdout() and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = [json.loads(x) for x in stack.stdout().splitlines() if error["request_id"] in x]
    assert (line["status"], line["model_inputs"]) == (400, 0)


def test_bad_custom_attribute_names_the_key(stack: ServeProcess) -> None:
    response = post_json(stack, {"inputs": "x"}, **{CA: "top_k=many;trace=1"})
    assert_error(response, 400, "custom attribute top_k='many'")
    assert_error(post_json(stack, {"inputs": "x"}, **{CA: "min_confidence=2"}), 400, "min_confidence")


def test_too_many_texts(stack: ServeProcess) -> None:
    assert_error(post_json(stack, ["word"] * (MAX_BATCH + 1)), 413, "TEXTCLF_MAX_BATCH")


def test_seven_mb_body_is_a_json_413_from_nginx(stack: ServeProcess) -> None:
    body = json.dumps({"inputs": ["good " * 100] * 14_000}).encode()
    assert len(body) > 7_000_000
    error = assert_error(post(stack, body), 413, "exceeds 6 MB")
    assert "X-Request-Id" not in error  # answered by nginx: the app never saw it
    assert "413" in stack.stdout() and '"source":"nginx"' in stack.stdout()


def test_oversized_headers_and_uri_are_json(stack: ServeProcess) -> None:
    assert_error(post_json(stack, {"inputs": "x"}, **{"X-Big": "b" * 20_000}), 431, "headers are too large")
    assert_error(requests.get(stack.url("/ping?" + "q" * 20_000), timeout=5), 414, "URI is too long")


def test_malformed_http_is_a_json_400(stack: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"application/json" in head
    assert json.loads(body)["error"]["code"] == 400


# -- business rules (code/rules.py in the model directory) -----------------------------------------------
def test_model_rules_can_reject_and_override(stack: ServeProcess) -> None:
    rejected = post_json(stack, {"inputs": ["fine", "a forbidden text"]})
    assert_error(rejected, 422, "texts must not mention forbidden things")
    forced = post_json(stack, {"inputs": ["a", "b"], "parameters": {"top_k": 2}}, **{CA: "force_label=spam"})
    assert forced.status_code == 200
    assert [r[0]["label"] for r in forced.json()] == ["spam", "spam"]
    assert forced.headers[CA] == "force_label=spam;rules=forced"  # the hook set a response attribute


def test_a_failing_hook_is_a_500_with_request_id_and_traceback(stack: ServeProcess) -> None:
    error = assert_error(post_json(stack, {"inputs": "x"}, **{CA: "boom=1"}), 500, "request id")
    assert error["request_id"] in error["message"]
    deadline = time.monotonic() + 5
    while error["request_id"] not in stack.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    stderr = stack.stderr()
    assert f"request {error['request_id']} failed" in stderr
    assert "Traceback" in stderr and "RuntimeError: a bug in the hook" in stderr


def test_min_confidence_per_request(stack: ServeProcess) -> None:
    # a random 3-class model is never 99.9% sure
    result = post_json(stack, {"inputs": "the plot", "parameters": {"min_confidence": 0.999}}).json()
    assert result[0]["label"] == "uncertain"
    assert post_json(stack, {"inputs": "the plot"}, **{CA: "min_confidence=0.0"}).json()[0]["label"] in SINGLE_LABELS


# -- logs, concurrency ---------------------------------------------------------------------------------------
def test_one_json_log_line_per_request_without_texts(stack: ServeProcess) -> None:
    secret = "zebra quartz violin"  # words the test never sends otherwise
    response = post_json(stack, {"inputs": [secret, secret + " again"]})
    request_id = response.headers["X-Request-Id"]
    deadline = time.monotonic() + 5
    while request_id not in stack.stdout() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [json.loads(line) for line in stack.stdout().splitlines() if request_id in line]
    assert len(lines) == 1
    line = lines[0]
    assert (line["status"], line["texts"], line["path"], line["method"]) == (200, 2, "/invocations", "POST")
    assert line["latency_ms"] > 0 and line["content_type"] == "application/json"
    assert len(line["model_version"]) == 12 and line["model_created_at"]
    assert line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == "LatencyMs"  # TEXTCLF_EMF=true
    assert line["LatencyMs"] == line["latency_ms"] and line["Texts"] == 2
    assert secret not in stack.stdout() and secret not in stack.stderr()


def test_concurrent_requests_all_answer_correctly(stack: ServeProcess, reference: Classifier) -> None:
    batches = [texts_of(20, seed=100 + i) for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda texts: post_json(stack, {"inputs": texts}), batches))
    for texts, response in zip(batches, responses, strict=True):
        assert response.status_code == 200
        assert_same(response.json(), reference.predict(texts))


def test_batch_transform_mode_takes_chunked_bodies_and_answers_one_line_per_record(
    model_dir: Path, tmp_path: Path
) -> None:
    """SAGEMAKER_BATCH with MaxPayloadInMB=0 (chunked, any size): serve starts, reads the chunked JSON
    Lines body and answers one line per record, the last unterminated (AssembleWith=Line adds it)."""
    root = make_sm_root(model_dir, tmp_path / "opt-ml")
    env = {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"}
    with ServeProcess(root, tmp_path / "logs", env, workers=1) as serve:
        serve.wait_ready()
        texts = texts_of(5, seed=9)
        chunks = (json.dumps({"text": t}).encode() + b"\n" for t in texts)  # a generator: chunked encoding
        response = requests.post(
            serve.url("/invocations"), data=chunks, headers={"Content-Type": "application/jsonlines"}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert not response.text.endswith("\n")
        assert len(response.text.split("\n")) == len(texts)
        # a record with nothing to classify: the mini-batch is refused naming the record, as outside batch mode
        records = [json.dumps({"text": t}) for t in texts]
        records[3] = json.dumps({"text": "\u0000\u0000"})
        refused = requests.post(
            serve.url("/invocations"),
            data="\n".join(records),
            headers={"Content-Type": "application/jsonlines"},
            timeout=60,
        )
        assert_error(refused, 400, "line 4.text is empty (only invisible characters: U+0000 control)")
        assert requests.get(serve.url("/execution-parameters"), timeout=10).json()["MaxPayloadInMB"] == 100


def _upstream_connections(stack: ServeProcess) -> set[str]:
    """Inodes of the connected sockets on gunicorn's unix socket (from /proc/net/unix; state 03)."""
    import re

    path = re.search(r"--bind unix:(\S+)", cmdline(stack.child("gunicorn"))).group(1)  # type: ignore[union-attr]
    with open("/proc/net/unix") as fh:
        rows = [line.split() for line in fh.readlines()[1:]]
    return {row[6] for row in rows if len(row) >= 8 and row[7] == path and row[5] == "03"}


def test_nginx_reuses_its_connections_to_gunicorn(stack: ServeProcess) -> None:
    """Sequential requests ride one kept-alive upstream connection (no connect, accept and close per
    request): the same connection is open after every one of them."""
    seen = []
    for text in texts_of(12, seed=9):
        assert post_json(stack, {"inputs": text}).status_code == 200
        seen.append(_upstream_connections(stack))
    assert all(seen), seen  # a connection stays open between requests
    assert set.intersection(*seen), seen  # and it is the same one throughout
