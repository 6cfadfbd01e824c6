"""Bounded work per request: TEXTCLF_MAX_WINDOWS, TEXTCLF_MIN_STRIDE and TEXTCLF_REQUEST_DEADLINE.

A sliding-window request with a tiny stride used to turn a 200 KB text into ~50,000 windows, built
in memory before inference, and a request that outlived nginx's timeout kept its worker computing.
Each limit is a setting with a safe default, refused requests name it, windows are counted from
token counts before any is built, and a request past its deadline stops the model and frees the
worker. The settings and the predictor are tested directly, then everything through the real stack
(nginx -> gunicorn -> Flask -> onnxruntime) with the defaults, and with a tiny deadline.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from support.serving import WORDS, ServeProcess, make_sm_root
from textclf.errors import ConfigError, RequestError
from textclf.model.predictor import Classifier, DeadlineExceededError
from textclf.serve.codecs import JSON, Inputs
from textclf.serve.rules import RuleSet
from textclf.serve.service import InferenceService, Limits, Usage
from textclf.serve.settings import ServingSettings

CA = "X-Amzn-SageMaker-Custom-Attributes"


def long_text(tokens: int, offset: int = 0) -> str:
    """``tokens`` vocabulary words: one token each for the tiny models' WordPiece tokenizer."""
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(tokens))


def log_line(serve: ServeProcess, request_id: str) -> dict:
    """The app's JSON log line of one request (it is written after the answer: wait for it)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in serve.stdout().splitlines() if f'"request_id":"{request_id}"' in line]
        if lines:
            assert len(lines) == 1, lines
            return lines[0]
        time.sleep(0.05)
    raise AssertionError(f"no log line for request {request_id}:\n{serve.stdout()[-2000:]}")


def error_of(response: requests.Response, status: int, fragment: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and fragment in error["message"], error
    return error


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> Classifier:
    return Classifier.load(model_dir, threads=1)


# -- settings ---------------------------------------------------------------------------------------------
def test_limit_defaults_are_safe_for_real_time_and_follow_batch_transform() -> None:
    s = ServingSettings.from_env({}, cpus=2)
    assert (s.max_windows, s.min_stride) == (2048, 16)
    assert s.request_deadline_s == 55.0  # 5 s before nginx answers 504 (SAGEMAKER_MODEL_SERVER_TIMEOUT=60)
    assert s.request_deadline_s < s.timeout_s
    batch = ServingSettings.from_env({"SAGEMAKER_BATCH": "true"}, cpus=2)
    assert (batch.max_windows, batch.min_stride, batch.request_deadline_s) == (0, 16, 3595.0)
    assert ServingSettings.from_env({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "4"}, cpus=2).request_deadline_s == 2.0
    env = {"TEXTCLF_MAX_WINDOWS": "0", "TEXTCLF_MIN_STRIDE": "1", "TEXTCLF_REQUEST_DEADLINE": "0.25"}
    custom = ServingSettings.from_env(env, cpus=2)
    assert (custom.max_windows, custom.min_stride, custom.request_deadline_s) == (0, 1, 0.25)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TEXTCLF_MAX_WINDOWS": "-1"}, "TEXTCLF_MAX_WINDOWS='-1' is out of range"),
        ({"TEXTCLF_MAX_WINDOWS": "many"}, "TEXTCLF_MAX_WINDOWS='many' is not an integer"),
        ({"TEXTCLF_MIN_STRIDE": "0"}, "TEXTCLF_MIN_STRIDE='0' is out of range"),
        ({"TEXTCLF_REQUEST_DEADLINE": "soon"}, "TEXTCLF_REQUEST_DEADLINE='soon' is not a number"),
        ({"TEXTCLF_REQUEST_DEADLINE": "0"}, "TEXTCLF_REQUEST_DEADLINE='0' is out of range"),
        ({"TEXTCLF_REQUEST_DEADLINE": "nan"}, "TEXTCLF_REQUEST_DEADLINE='nan' is out of range"),
        ({"TEXTCLF_REQUEST_DEADLINE": "60"}, "below the request timeout (SAGEMAKER_MODEL_SERVER_TIMEOUT, 60 s)"),
        ({"TEXTCLF_REQUEST_DEADLINE": "30", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "20"}, "TEXTCLF_REQUEST_DEADLINE"),
    ],
)
def test_bad_limit_values_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServingSettings.from_env(env, cpus=2)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("TEXTCLF_MAX_WINDOWS", "-5"), ("TEXTCLF_MIN_STRIDE", "0"), ("TEXTCLF_REQUEST_DEADLINE", "90")],
)
def test_serve_exits_2_naming_a_bad_limit(model_dir: Path, tmp_path: Path, name: str, value: str) -> None:
    root = make_sm_root(model_dir, tmp_path / "opt-ml")
    with ServeProcess(root, tmp_path / "logs", {name: value}, workers=1) as serve:
        assert serve.wait_exit(60) == 2, serve.stderr()
    assert f"textclf serve: cannot start: {name}={value!r}" in serve.stderr()


# -- the predictor: windows counted before they are built, a deadline that stops a run -----------------
class RecordingBudget:
    """A ``Budget`` that records what the predictor tells it; ``deadline_in`` seconds from its first read."""

    def __init__(self, refuse: bool = False, deadline_in: float | None = None) -> None:
        self.refuse = refuse
        self.deadline_in = deadline_in
        self._deadline: float | None = None
        self.admitted: list[int] = []
        self.ran_total = 0

    @property
    def deadline(self) -> float | None:
        if self.deadline_in is not None and self._deadline is None:
            self._deadline = time.monotonic() + self.deadline_in
        return self._deadline

    def admit(self, inputs: int) -> None:
        self.admitted.append(inputs)
        if self.refuse:
            raise RequestError("refused", status=413)

    def ran(self, inputs: int) -> None:
        self.ran_total += inputs


def test_window_counts_are_arithmetic_and_match_the_built_windows(classifier: Classifier) -> None:
    encoder = classifier.encoder
    size = encoder.window_size
    assert size == classifier.max_stride == 62
    for tokens in (0, 1, size - 1, size, size + 1, 3 * size + 7, 500):
        for stride in (None, 1, 16, size):
            text = long_text(tokens)
            assert len(encoder.content_ids([text])[0]) == tokens
            built = encoder.windows(text, stride)
            assert len(encoder.window_starts(tokens, stride)) == len(built)
            assert all(len(e.ids) <= encoder.max_length for e in built)
    texts = [long_text(500), long_text(10), long_text(200, offset=3)]
    budget = RecordingBudget()
    classifier.scores(texts, sliding_window=True, stride=16, budget=budget)
    expected = sum(len(encoder.windows(t, 16)) for t in texts)
    assert budget.admitted == [expected] and budget.ran_total == expected
    plain = RecordingBudget()
    classifier.scores(texts, budget=plain)
    assert plain.admitted == [3] and plain.ran_total == 3


def test_a_refused_count_runs_nothing(classifier: Classifier) -> None:
    """admit() comes before the model: a refusal classifies nothing (50,000 windows: none built)."""
    budget = RecordingBudget(refuse=True)
    with pytest.raises(RequestError, match="refused"):
        classifier.scores([long_text(50_000)], sliding_window=True, stride=1, budget=budget)
    assert budget.admitted == [len(classifier.encoder.window_starts(50_000, 1))] and budget.ran_total == 0


def test_a_passed_deadline_stops_before_the_first_micro_batch(classifier: Classifier) -> None:
    budget = RecordingBudget(deadline_in=0.0)
    with pytest.raises(DeadlineExceededError) as info:
        classifier.scores([long_text(2000)], sliding_window=True, stride=8, budget=budget)
    assert (info.value.done, budget.ran_total) == (0, 0) and info.value.total == budget.admitted[0]
    assert isinstance(info.value, TimeoutError)


def test_the_deadline_stops_a_model_run_in_progress(classifier: Classifier) -> None:
    """One micro-batch of ~10,000 windows (seconds of work) and a deadline 0.3 s away: only ORT's
    terminate flag can stop a single run, so the error (and not an answer) proves the run was stopped."""
    texts = [long_text(10_000)]
    budget = RecordingBudget(deadline_in=0.3)
    with pytest.raises(DeadlineExceededError) as info:
        classifier.scores(texts, sliding_window=True, stride=1, batch_size=100_000, budget=budget)
    assert info.value.done == 0 and info.value.total == budget.admitted[0] > 9000
    assert budget.ran_total == 0
    # the session is fine afterwards: the terminate flag belonged to that call's RunOptions
    assert classifier.scores(["a good film"]).shape == (1, 3)


def test_a_busy_worker_gives_up_waiting_at_the_deadline_with_503() -> None:
    """With several intra-op threads a worker runs one request at a time; a request that never gets
    its turn before its deadline is told so (503: the worker's load, not the request's size)."""
    release = threading.Event()

    class SlowModel:
        labels = ("neg", "pos")
        problem_type = "single_label"
        text_pair = False
        max_stride = 62

        def predict(self, texts, pairs=None, **kwargs):
            release.wait(10)
            return [[{"label": "pos", "score": 0.9}] for _ in texts]

    service = InferenceService(SlowModel(), RuleSet(), exclusive=True)  # type: ignore[arg-type]
    inputs = Inputs(["a"], None, False, JSON)
    holder = threading.Thread(target=service.invoke, args=(inputs, {}, "first"))
    holder.start()
    time.sleep(0.2)
    try:
        with pytest.raises(RequestError) as info:
            service.invoke(inputs, {}, "second", limits=Limits(deadline_s=0.3))
        assert info.value.status == 503 and "TEXTCLF_REQUEST_DEADLINE" in str(info.value)
    finally:
        release.set()
        holder.join(10)


def test_the_service_counts_windows_against_the_limit_and_the_stride_minimum(classifier: Classifier) -> None:
    service = InferenceService(classifier, RuleSet())
    limits = Limits(max_windows=100, min_stride=16)
    text = long_text(2000)
    usage = Usage()
    with pytest.raises(RequestError) as info:
        service.invoke(
            Inputs([text], None, False, JSON),
            {"sliding_window": "true", "stride": "16"},
            "r",
            limits=limits,
            usage=usage,
        )
    windows = len(classifier.encoder.window_starts(2000, 16))
    assert info.value.status == 413 and f"makes {windows} windows" in str(info.value)
    assert "TEXTCLF_MAX_WINDOWS" in str(info.value) and usage.model_inputs == 0
    with pytest.raises(RequestError) as info:
        service.invoke(
            Inputs([text], None, False, JSON), {"sliding_window": "true", "stride": "15"}, "r", limits=limits
        )
    assert info.value.status == 400 and "TEXTCLF_MIN_STRIDE" in str(info.value)
    # without sliding_window, texts are limited by TEXTCLF_MAX_BATCH alone: 150 texts pass a 100-window limit
    usage = Usage()
    results, _ = service.invoke(Inputs(["a film"] * 150, None, False, JSON), {}, "r", limits=limits, usage=usage)
    assert len(results) == 150 and usage.model_inputs == 150
    # a minimum above the model's longest stride leaves that stride allowed
    high = Limits(min_stride=1000)
    attributes = {"sliding_window": "true", "stride": str(classifier.max_stride)}
    assert len(service.invoke(Inputs([text], None, False, JSON), attributes, "r", limits=high)[0]) == 1


# -- the real stack with the default limits -------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    work = tmp_path_factory.mktemp("serve-limits")
    root = make_sm_root(model_dir, work / "opt-ml")
    env = {"TEXTCLF_INTRA_OP_THREADS": "1"}  # limits: the defaults
    with ServeProcess(root, work / "logs", env, workers=1) as serve:
        serve.wait_ready()
        yield serve


def post(serve: ServeProcess, body: object, attributes: str = "", timeout: float = 60) -> requests.Response:
    headers = {"Content-Type": "application/json", **({CA: attributes} if attributes else {})}
    return requests.post(serve.url("/invocations"), data=json.dumps(body), headers=headers, timeout=timeout)


def test_a_stride_below_the_minimum_is_400_naming_the_setting(stack: ServeProcess) -> None:
    text = long_text(300)
    error = error_of(post(stack, {"inputs": text}, "sliding_window=true;stride=1"), 400, "TEXTCLF_MIN_STRIDE")
    assert "stride 1 is below the minimum of 16 tokens" in error["message"]
    body = {"inputs": text, "parameters": {"sliding_window": True, "stride": 15}}
    error_of(post(stack, body), 400, "TEXTCLF_MIN_STRIDE")
    body["parameters"]["stride"] = 16  # the minimum itself is allowed
    assert post(stack, body).status_code == 200


def test_one_long_text_over_the_window_limit_is_413_and_runs_no_model(
    stack: ServeProcess, classifier: Classifier
) -> None:
    """~200 KB, stride 16: more windows than the default 2048. Refused from the token count: the log
    line says the model classified nothing; the same text at the default stride is classified."""
    text = long_text(40_000)
    windows = len(classifier.encoder.window_starts(40_000, 16))
    assert windows > 2048
    refused = post(stack, {"inputs": text}, "sliding_window=true;stride=16")
    error = error_of(refused, 413, "TEXTCLF_MAX_WINDOWS")
    assert f"makes {windows} windows in this request, over the limit of 2048" in error["message"]
    line = log_line(stack, refused.headers["X-Request-Id"])
    assert (line["status"], line["model_inputs"], line["texts"]) == (413, 0, 1)
    assert "TEXTCLF_MAX_WINDOWS" in line["error"]

    default_windows = len(classifier.encoder.window_starts(40_000, None))
    assert default_windows <= 2048
    accepted = post(stack, {"inputs": text}, "sliding_window=true")
    assert accepted.status_code == 200, accepted.text
    done = log_line(stack, accepted.headers["X-Request-Id"])
    assert (done["status"], done["model_inputs"]) == (200, default_windows)


def test_many_texts_each_with_windows_are_counted_together(stack: ServeProcess, classifier: Classifier) -> None:
    """100 texts (far under TEXTCLF_MAX_BATCH) of 23 windows each: 2300 windows, over 2048."""
    texts = [long_text(400, offset=i) for i in range(100)]
    per_text = len(classifier.encoder.window_starts(400, 16))
    assert per_text * 100 > 2048
    response = post(stack, {"inputs": texts, "parameters": {"sliding_window": True, "stride": 16}})
    error = error_of(response, 413, "TEXTCLF_MAX_WINDOWS")
    assert f"makes {per_text * 100} windows" in error["message"] and "TEXTCLF_MAX_BATCH" not in error["message"]
    assert log_line(stack, response.headers["X-Request-Id"])["model_inputs"] == 0
    fewer = post(stack, {"inputs": texts[:80], "parameters": {"sliding_window": True, "stride": 16}})
    assert fewer.status_code == 200 and len(fewer.json()) == 80
    assert log_line(stack, fewer.headers["X-Request-Id"])["model_inputs"] == per_text * 80


# -- the real stack with a tiny deadline: the worker is freed ---------------------------------------------------
DEADLINE_S = 1.5


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (from /proc; no psutil in the venv)."""
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def deadline_stack(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One worker with one request thread: while it computes, nothing else is answered."""
    work = tmp_path_factory.mktemp("serve-deadline")
    root = make_sm_root(model_dir, work / "opt-ml")
    env = {
        "TEXTCLF_REQUEST_DEADLINE": str(DEADLINE_S),
        "TEXTCLF_WORKER_THREADS": "1",
        "TEXTCLF_INTRA_OP_THREADS": "1",
        "TEXTCLF_MAX_WINDOWS": "0",  # no window limit, no stride minimum: only the deadline bounds it
        "TEXTCLF_MIN_STRIDE": "1",
    }
    with ServeProcess(root, work / "logs", env, workers=1) as serve:
        serve.wait_ready()
        yield serve


def test_a_request_past_the_deadline_is_413_and_frees_the_only_worker(
    deadline_stack: ServeProcess, classifier: Classifier
) -> None:
    """~100,000 windows (stride 1; tens of seconds of inference) against a 1.5 s deadline. The client
    waits up to 120 s, so the answer is the server's; then the one worker with its one thread answers
    at once, uses no CPU meanwhile (nothing computes on in the background), and was not restarted."""
    serve = deadline_stack
    workers = serve.gunicorn_workers()
    assert len(workers) == 1
    tokens = 100_000
    started = time.monotonic()
    response = post(serve, {"inputs": long_text(tokens)}, "sliding_window=true;stride=1", timeout=120)
    waited = time.monotonic() - started
    error = error_of(response, 413, "TEXTCLF_REQUEST_DEADLINE")
    assert f"within the deadline of {DEADLINE_S:g} s" in error["message"]
    total = len(classifier.encoder.window_starts(tokens, 1))
    assert f"of {total} inputs" in error["message"]
    line = log_line(serve, response.headers["X-Request-Id"])
    assert line["status"] == 413 and "TEXTCLF_REQUEST_DEADLINE" in line["error"]
    assert line["model_inputs"] < total  # stopped part-way
    assert line["latency_ms"] >= DEADLINE_S * 1000 * 0.99  # it ran until the deadline, not less
    assert waited < 120  # answered, not given up on by the client

    before = cpu_seconds(workers[0])
    time.sleep(3.0)
    assert cpu_seconds(workers[0]) - before < 0.5, "the worker is still computing after its answer"
    follow_up = post(serve, {"inputs": "a good film"}, timeout=10)
    assert follow_up.status_code == 200 and len(follow_up.json()) == 1
    assert serve.gunicorn_workers() == workers  # the same worker process: freed, not killed and replaced
