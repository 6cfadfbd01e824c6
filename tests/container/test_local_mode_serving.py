"""The serving image driven as a SageMaker user drives it, through the SDK's own local mode
(sagemaker-core's ``LocalSession``; see tests/support/local_mode.py for its setup): a real-time
endpoint and a Batch Transform job, with the boto3-shaped calls of ``session.sagemaker_client`` and
``session.sagemaker_runtime_client``.

The model is trained once here, by a local-mode training job of the full image (a tiny BERT, the
demo train and validation data, two epochs: enough that its answers differ from text to text, so
that an answer in the wrong place shows), and served by the slim ``serve`` image, which is what
``ops`` deploys. ``create_model`` points at a ``file://`` copy of the job's ``model.tar.gz``.
Every answer is compared with ``Classifier.load(model_dir).predict`` on the same batches of
texts: the same labels, and scores within ``SAME_BATCH``. Same batches, because INT8 dynamic
quantization picks one activation scale per batch tensor: a text's scores move with its
batch-mates (by up to 1e-3 here), more than some texts' scores differ from each other's, so a
looser tolerance would miss two answers swapped. A transform job's mini-batches are read from the
container's request log (texts per request, in order; one request at a time in local mode).

- Endpoint: ``create_model``, ``create_endpoint_config``, ``create_endpoint`` on a free port that
  nothing answered on (local mode calls the endpoint InService as soon as *anything* answers
  ``/ping`` 200 on ``local.serving_port``, so ``/ping`` is also checked to name our model's
  version); ``invoke_endpoint`` with JSON, CSV and JSON Lines bodies; bad requests; then
  ``delete_endpoint``.
- Batch Transform: ``create_transform_job`` over one JSON Lines file of ``RECORDS`` records, each
  with an ``id`` and a padding field the server ignores, so that ``MaxPayloadInMB=1`` splits the
  file into several ``/invocations`` requests (the container's own request log shows how many);
  then the same texts as one CSV file (small: one request).

What local mode does differently from SageMaker, as seen here (sagemaker-core 2.27.0, Debian's
docker-compose 1.29.2):

- A 4xx from the container is *returned*, not raised: ``invoke_endpoint`` gives back
  ``ResponseMetadata.HTTPStatusCode`` = the container's status (400, 415, 406) and the container's
  JSON body in ``Body``. The real runtime client raises ``ModelError`` (HTTP 424) with that body in
  ``OriginalMessage`` and the status in ``OriginalStatusCode``.
- ``create_model`` without ``PrimaryContainer.Environment`` (optional in the API) makes
  ``create_endpoint`` raise ``KeyError: 'Environment'``: it is always passed here.
- A ``file://`` ``ModelDataUrl`` is extracted beside the archive and that folder is mounted as
  ``/opt/ml/model``: ``model.tar.gz`` itself is in the served model directory (``serve`` accepts
  the extra file: the manifest lists what it verifies).
- ``delete_endpoint`` stops the endpoint's compose (SIGTERM: our ``serve`` stops cleanly, exit 0)
  but leaves the stopped container (compose never runs ``down``; the fixture removes it), and
  ``describe_endpoint`` still answers ``EndpointStatus: InService`` afterwards. SageMaker deletes
  the endpoint.
- ``create_endpoint`` and ``create_transform_job`` return only when done (InService; the whole job),
  SageMaker's calls return at once; ``/ping`` is polled every 5 s. From its code: a transform mini-batch
  grows while ``sys.getsizeof`` of the text stays under ``MaxPayloadInMB`` MiB (here 23 records,
  about 1.04 MB, per request), and local mode runs one concurrent transform whatever is asked.
- The serving container's output is copied to ``sys.stdout`` by a thread of the SDK for as long
  as the endpoint lives: between tests, pytest shows it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.docker_engine import CACHE_DIR, REPO_ROOT, Docker
from support.local_mode import (
    LocalEndpoint,
    LocalMode,
    TrainingJobResult,
    TransformJobResult,
    answers,
    request_records,
)
from support.tiny_model import make_tiny_model, words_of

pytestmark = pytest.mark.container

DEMO_DATA = REPO_ROOT / "local_test/test_dir/input/data"
DEMO_LABELS = {"billing", "delivery", "technical"}
HYPERPARAMETERS = {  # as SageMaker sends them: strings
    "max_seq_length": "32",
    "batch_size": "16",
    "epochs": "2",
    "learning_rate": "0.003",
    "checkpoint_every_steps": "0",
    "log_every_steps": "20",
    "keep_full_precision": "false",
    "num_threads": "2",
    "seed": "42",
}
JOB_TIMEOUT_S = 240
ENDPOINT_TEXTS = 12  # per invocation
RECORDS = 50  # in the transform job's input file
MAX_PAYLOAD_MB = 1  # the smallest MaxPayloadInMB there is
PADDING_CHARS = 45_000  # per JSON Lines record: 50 records are 2.2 MB, at least 3 requests of < 1 MiB
SAME_BATCH = 1e-4  # scores of a text predicted in the same batch, by the server and by the reference
JSON, JSONLINES, CSV = "application/json", "application/jsonlines", "text/csv"


# -- the model ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_mode(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    with LocalMode(docker, tmp_path_factory.mktemp("local-mode-serving"), CACHE_DIR) as mode:
        yield mode


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """The demo test texts (held out from training): commas, quotes, non-ASCII characters."""
    with (DEMO_DATA / "test/test.csv").open(newline="", encoding="utf-8") as f:
        found = [row["text"] for row in csv.DictReader(f)]
    assert len(found) >= RECORDS
    return found[:RECORDS]


@pytest.fixture(scope="module")
def trained(local_mode: LocalMode, full_image: str, tmp_path_factory: pytest.TempPathFactory) -> TrainingJobResult:
    """One local-mode training job (1 instance) on the demo train and validation channels."""
    root = tmp_path_factory.mktemp("serving-channels")
    channels: dict[str, Path] = {}
    words: list[str] = []
    for channel in ("train", "validation"):
        source = DEMO_DATA / channel / f"{channel}.csv"
        channels[channel] = root / channel
        channels[channel].mkdir()
        shutil.copy(source, channels[channel])
        with source.open(newline="", encoding="utf-8") as f:
            words += words_of(row["text"] for row in csv.DictReader(f))
    channels["pretrained"] = make_tiny_model(
        root / "pretrained", labels=None, words=words, hidden_size=64, num_layers=2, num_heads=2
    )
    job = local_mode.train("textclf-serving-train", full_image, channels, HYPERPARAMETERS, 1, timeout=JOB_TIMEOUT_S)
    assert job.error is None and not job.timed_out, job.show()
    return job


@pytest.fixture(scope="module")
def model_dir(trained: TrainingJobResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("served-model")
    with tarfile.open(trained.model_tar) as tar:
        tar.extractall(dest, filter="data")
    return dest


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> Any:
    """The reference: the Python API on the model directory the job wrote."""
    from textclf.model.predictor import Classifier

    return Classifier.load(model_dir)


@pytest.fixture(scope="module")
def model_name(local_mode: LocalMode, trained: TrainingJobResult, serve_image: str) -> str:
    local_mode.create_model("textclf-serving-model", serve_image, trained.model_tar)
    return "textclf-serving-model"


# -- comparing answers ----------------------------------------------------------------------------
def _check_result(got: Any, expected: Sequence[dict[str, Any]], tolerance: float, where: str) -> None:
    """One input's answer: a list of {label, score}, best first, as the reference has it."""
    assert isinstance(got, list) and got, f"{where}: {got!r}"
    assert all(isinstance(e, dict) and set(e) == {"label", "score"} for e in got), f"{where}: {got!r}"
    assert {e["label"] for e in got} <= DEMO_LABELS, f"{where}: {got!r}"
    assert [e["label"] for e in got] == [e["label"] for e in expected], f"{where}: {got!r} != {expected!r}"
    for entry, reference in zip(got, expected, strict=True):
        assert entry["score"] == pytest.approx(reference["score"], abs=tolerance), f"{where}: {got!r} != {expected!r}"


def _check_results(got: Sequence[Any], expected: Sequence[Sequence[dict[str, Any]]], tolerance: float) -> None:
    assert len(got) == len(expected), f"{len(got)} answers for {len(expected)} inputs"
    for i, (result, reference) in enumerate(zip(got, expected, strict=True)):
        _check_result(result, reference, tolerance, f"answer {i}")
    top = {result[0]["label"] for result in expected}
    assert len(top) > 1, f"the model gives every text the label {top}: an answer out of order would not show"


def _invocations(result: TransformJobResult) -> list[dict[str, Any]]:
    """The transform container's ``/invocations`` request records, in the order it answered them."""
    return [r for r in request_records(result.log) if r.get("path") == "/invocations"]


def _predict_in_batches(classifier: Any, texts: Sequence[str], sizes: Sequence[int]) -> list[Any]:
    """The reference, batch by batch as the server got them (``sizes``: texts per request)."""
    assert sum(sizes) == len(texts), f"requests of {list(sizes)} texts for {len(texts)} records"
    results, start = [], 0
    for size in sizes:
        results += classifier.predict(texts[start : start + size])
        start += size
    return results


def _csv_results(text: str) -> list[list[dict[str, Any]]]:
    """``label,score[,label,score...]`` rows -> results."""
    rows = list(csv.reader(io.StringIO(text)))
    results = []
    for row in rows:
        assert row and len(row) % 2 == 0, rows
        results.append([{"label": row[i], "score": float(row[i + 1])} for i in range(0, len(row), 2)])
    return results


def _jsonlines(text: str) -> list[Any]:
    lines = text.split("\n")
    assert lines[-1] == "", f"the body does not end with one newline: {text[-200:]!r}"
    assert all(line.strip() for line in lines[:-1]), f"empty line in {text!r}"
    return [json.loads(line) for line in lines[:-1]]


def _csv_body(texts: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([t] for t in texts)
    return out.getvalue()


# -- the endpoint ---------------------------------------------------------------------------------
@dataclass
class Endpoint:
    endpoint: LocalEndpoint
    deleted: bool = False


@pytest.fixture(scope="module")
def endpoint(local_mode: LocalMode, model_name: str) -> Iterator[Endpoint]:
    running = Endpoint(local_mode.create_endpoint("textclf-serving-endpoint", model_name))
    try:
        yield running
    finally:
        if not running.deleted:
            local_mode.delete_endpoint(running.endpoint)
        local_mode.remove_containers(running.endpoint.staging)


def test_endpoint_is_in_service_and_is_our_container(endpoint: Endpoint, model_dir: Path) -> None:
    import urllib.request

    from textclf.contract.model_dir import read_manifest

    assert endpoint.endpoint.description["EndpointStatus"] == "InService"
    # Local mode calls whatever answers /ping 200 on the port InService: this one names our model.
    with urllib.request.urlopen(f"http://localhost:{endpoint.endpoint.port}/ping", timeout=10) as response:
        ping = json.loads(response.read())
    assert ping["status"] == "healthy", ping
    assert ping["model_version"] == read_manifest(model_dir).files["model.onnx"][:12], ping


def test_invoke_json_answers_every_label_of_every_text(endpoint: Endpoint, texts: list[str], classifier: Any) -> None:
    sample = texts[:ENDPOINT_TEXTS]
    body = json.dumps({"inputs": sample, "parameters": {"top_k": None}})
    answer = endpoint.endpoint.invoke(body, JSON, JSON)
    assert answer.status == 200, answer.body[:2000]
    assert answer.content_type.startswith(JSON), answer.content_type
    results = answer.json()
    assert all({e["label"] for e in result} == DEMO_LABELS for result in results), results
    _check_results(results, classifier.predict(sample, top_k=None), SAME_BATCH)


def test_invoke_csv_answers_one_row_per_text(endpoint: Endpoint, texts: list[str], classifier: Any) -> None:
    sample = texts[ENDPOINT_TEXTS : 2 * ENDPOINT_TEXTS]
    assert any("," in t or '"' in t for t in sample), "no text here needs CSV quoting"
    answer = endpoint.endpoint.invoke(_csv_body(sample), CSV, CSV)
    assert answer.status == 200, answer.body[:2000]
    assert answer.content_type.startswith(CSV), answer.content_type
    _check_results(_csv_results(answer.text()), classifier.predict(sample), SAME_BATCH)


def test_invoke_jsonlines_answers_one_line_per_record(endpoint: Endpoint, texts: list[str], classifier: Any) -> None:
    sample = texts[2 * ENDPOINT_TEXTS : 3 * ENDPOINT_TEXTS]
    body = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(sample))
    answer = endpoint.endpoint.invoke(body.encode("utf-8"), JSONLINES, JSONLINES)
    assert answer.status == 200, answer.body[:2000]
    assert answer.content_type.startswith(JSONLINES), answer.content_type
    _check_results(_jsonlines(answer.text()), classifier.predict(sample), SAME_BATCH)


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "named"),
    [
        ('{"inputs": ["my parcel never arrived", ', JSON, JSON, 400, "malformed JSON"),
        ("my parcel never arrived", "application/x-npy", JSON, 415, "application/x-npy"),
        ('{"inputs": ["my parcel never arrived"]}', JSON, "application/x-protobuf", 406, "application/x-protobuf"),
    ],
    ids=["malformed-json", "unsupported-content-type", "unsupported-accept"],
)
def test_a_bad_request_is_a_4xx_naming_the_problem(
    endpoint: Endpoint, body: str, content_type: str, accept: str, status: int, named: str
) -> None:
    # Local mode returns the 4xx (the real runtime client raises ModelError, see the docstring).
    answer = endpoint.endpoint.invoke(body, content_type, accept)
    assert answer.status == status, (answer.status, answer.body[:2000])
    assert answer.content_type.startswith(JSON), answer.content_type
    error = answer.json()["error"]
    assert error["code"] == status, error
    assert named in error["message"], error


def test_delete_endpoint_stops_its_container(endpoint: Endpoint, local_mode: LocalMode) -> None:
    staging, port = endpoint.endpoint.staging, endpoint.endpoint.port
    assert local_mode.containers(staging, running_only=True), "the endpoint's container is not running"
    ends = local_mode.delete_endpoint(endpoint.endpoint)
    endpoint.deleted = True
    assert not local_mode.containers(staging, running_only=True), f"still running after delete_endpoint: {ends}"
    assert all(end.exit_code == 0 for end in ends.values()), {n: e.exit_code for n, e in ends.items()}  # clean stop
    assert not answers(port), f"something still answers on port {port} after delete_endpoint"
    # What local mode leaves (see the docstring): the stopped container (removed by the fixture) and
    # the endpoint's record.
    description = endpoint.endpoint.session.sagemaker_client.describe_endpoint(EndpointName=endpoint.endpoint.name)
    assert description["EndpointStatus"] == "InService", description


# -- Batch Transform ------------------------------------------------------------------------------
@dataclass
class Transform:
    result: TransformJobResult
    texts: list[str]
    input_bytes: int
    content_type: str


@pytest.fixture(scope="module", params=[JSONLINES, CSV], ids=["jsonlines", "csv"])
def transform(
    request: pytest.FixtureRequest,
    local_mode: LocalMode,
    model_name: str,
    texts: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Transform:
    content_type: str = request.param
    folder = tmp_path_factory.mktemp("transform-input")
    if content_type == JSONLINES:  # a padding field the server ignores makes each record ~45 kB
        body = "".join(
            json.dumps({"id": i, "text": t, "padding": "x" * PADDING_CHARS}) + "\n" for i, t in enumerate(texts)
        )
        (folder / "records.jsonl").write_text(body, encoding="utf-8")
    else:
        body = _csv_body(texts)
        (folder / "records.csv").write_text(body, encoding="utf-8")
    kind = "jsonl" if content_type == JSONLINES else "csv"
    result = local_mode.transform(
        f"textclf-serving-transform-{kind}", model_name, folder, content_type, max_payload_mb=MAX_PAYLOAD_MB
    )
    return Transform(result, texts, len(body.encode("utf-8")), content_type)


def test_transform_job_completes(transform: Transform) -> None:
    result = transform.result
    assert result.error is None and not result.timed_out, result.show()
    assert result.description["TransformJobStatus"] == "Completed", result.description
    assert result.description["BatchStrategy"] == "MultiRecord", result.description


def test_transform_output_has_one_line_per_record_in_order(transform: Transform, classifier: Any) -> None:
    result = transform.result
    assert result.error is None, result.show()
    outputs = sorted(p.name for p in result.output.iterdir())
    assert outputs == [f"records.{'jsonl' if transform.content_type == JSONLINES else 'csv'}.out"], outputs
    text = (result.output / outputs[0]).read_text(encoding="utf-8")
    got = _jsonlines(text) if transform.content_type == JSONLINES else _csv_results(text.removesuffix("\n"))
    if transform.content_type == CSV:
        assert text.endswith("\n") and not text.endswith("\n\n") and "\n\n" not in text, repr(text[-200:])
    sizes = [r["texts"] for r in _invocations(result)]
    _check_results(got, _predict_in_batches(classifier, transform.texts, sizes), SAME_BATCH)


def test_transform_sends_every_record_once_in_mini_batches_within_the_payload(transform: Transform) -> None:
    result = transform.result
    assert result.error is None, result.show()
    invocations = _invocations(result)
    assert invocations, f"no request record in the container's log\n{result.show()}"
    assert all(r["status"] == 200 for r in invocations), invocations
    assert sum(r["texts"] for r in invocations) == len(transform.texts), invocations
    limit = MAX_PAYLOAD_MB * 1024 * 1024
    assert all(r["bytes_in"] <= limit for r in invocations), [r["bytes_in"] for r in invocations]
    assert len(invocations) >= math.ceil(transform.input_bytes / limit), [r["bytes_in"] for r in invocations]
    if transform.content_type == JSONLINES:
        assert len(invocations) >= 3, [r["bytes_in"] for r in invocations]
