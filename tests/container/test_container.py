"""The image as SageMaker runs it: ``docker run IMAGE train`` on an /opt/ml tree, then
``docker run IMAGE serve`` on the model it wrote, for the full image and the slim serve image.

The encoder is a tiny BERT made here from a config (2 layers, hidden 128) with a WordPiece
vocabulary learnt from the demo data, so training takes seconds; quality is not the point.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from support.docker_engine import (
    BASE_DESCRIPTION,
    CACHE_DIR,
    REPO_ROOT,
    Docker,
    EngineError,
    record_images,
    sagemaker_tree,
)
from support.tiny_model import make_tiny_model, words_of

pytestmark = pytest.mark.container

LOCAL_TEST = REPO_ROOT / "local_test"
DEMO_LABELS = {"billing", "delivery", "technical"}
PAYLOAD_TYPES = {
    ".json": "application/json",
    ".jsonl": "application/jsonlines",
    ".csv": "text/csv",
    ".txt": "text/plain",
}
# Small and fast: the point is the container plumbing, not accuracy.
TRAIN_HYPERPARAMETERS = {
    "epochs": "2",
    "max_seq_length": "32",
    "batch_size": "32",
    "learning_rate": "0.001",
    "early_stopping_patience": "0",
    "max_accuracy_drop": "100",  # a random tiny model may lose points to INT8; that is not tested here
    "num_threads": "2",
}


def _demo_texts() -> list[str]:
    with (LOCAL_TEST / "test_dir/input/data/train/train.csv").open(newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def make_tiny_bert(dest: Path) -> None:
    """A 2-layer, hidden-128 BERT encoder with random weights and a WordPiece vocabulary of the
    demo data's words, saved as a Hugging Face directory (what the ``pretrained`` channel holds)."""
    make_tiny_model(dest, labels=None, words=words_of(_demo_texts()), hidden_size=128, num_layers=2, num_heads=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _show(proc: object) -> str:
    return f"--- stdout\n{getattr(proc, 'stdout', '')[-6000:]}\n--- stderr\n{getattr(proc, 'stderr', '')[-6000:]}"


# --------------------------------------------------------------------------------------------------
# The images themselves


def test_image_configuration(docker: Docker, full_image: str, serve_image: str, report: dict[str, object]) -> None:
    """Exec-form entrypoint (no tini, no shell), train/serve defaults, the bind-to-port label."""
    for image, default in ((full_image, ["train"]), (serve_image, ["serve"])):
        config = docker.inspect(image)["Config"]
        assert config["Entrypoint"] == ["/opt/venv/bin/textclf"], config["Entrypoint"]
        assert config["Cmd"] == default
        assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
        assert "PYTHONUNBUFFERED=TRUE" in config["Env"]
        assert not config["WorkingDir"].startswith("/opt/ml"), "code must live outside /opt/ml"
        assert "8080/tcp" in config["ExposedPorts"]

    sizes = {image: docker.image_size(image) for image in (full_image, serve_image)}
    assert sizes[serve_image] < sizes[full_image] / 2, f"the slim image is not slim: {sizes}"
    images = {
        "full (default target: train + serve, CPU torch)": {"tag": full_image, "bytes": sizes[full_image]},
        "serve (--target serve: no torch)": {"tag": serve_image, "bytes": sizes[serve_image]},
    }
    build_seconds = {k: round(v, 1) for k, v in docker.build_seconds.items()}
    report["image sizes (MB)"] = {k: round(v / 1e6, 1) for k, v in sizes.items()}
    report["build seconds this run"] = build_seconds
    if os.environ.get("TEXTCLF_RECORD_RESULTS") == "1":
        record_images(
            images,  # the other entries (the gpu image's, from `make image-gpu`) stay
            command="TEXTCLF_RECORD_RESULTS=1 .venv/bin/pytest -q tests/container (sizes: `docker image inspect`)",
            # The base image was imported this run: the daemon's data root, so its layer cache, was empty.
            cold_cache="docker import" in docker.build_seconds,
            base_image=BASE_DESCRIPTION,
            recorded=time.strftime("%Y-%m-%d"),
            build_seconds_this_run=build_seconds,
        )


def test_slim_image_has_no_torch_and_full_has_cpu_torch(docker: Docker, full_image: str, serve_image: str) -> None:
    probe = (
        "import importlib.util as u; print(u.find_spec('torch') is not None, u.find_spec('onnxruntime') is not None)"
    )
    slim = docker.run("run", "--rm", "--network", "none", "--entrypoint", "python", serve_image, "-c", probe)
    assert slim.stdout.split() == ["False", "True"], slim.stdout
    full = docker.run(
        "run", "--rm", "--network", "none", "--entrypoint", "python", full_image,
        "-c", "import torch, transformers, onnxruntime; print(torch.__version__, torch.version.cuda)",
    )  # fmt: skip
    version, cuda = full.stdout.split()
    assert version.startswith("2.") and cuda == "None", full.stdout  # TORCH_VARIANT=cpu, the default
    config = docker.inspect(full_image)["Config"]
    assert config["Labels"]["textclf.torch-variant"] == "cpu"
    assert not [e for e in config["Env"] if e.startswith("NVIDIA_")], "only the cuda variant asks for GPUs"


def test_an_unknown_torch_variant_fails_the_build(
    docker: Docker, base_image: str, build_context: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """Before any torch is installed (the layers above are cached by then: this takes seconds)."""
    context, args = build_context
    log = tmp_path / "build.log"
    with pytest.raises(EngineError):
        docker.build(
            context, "textclf:test-rocm",
            ["--force-rm", "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", "TORCH_VARIANT=rocm", *args], log,
        )  # fmt: skip
    assert "TORCH_VARIANT must be cpu or cuda, got 'rocm'" in log.read_text()


def test_cli_answers_in_both_images(docker: Docker, full_image: str, serve_image: str) -> None:
    for image in (full_image, serve_image):
        proc = docker.run("run", "--rm", "--network", "none", image, "--help")
        assert "train" in proc.stdout and "serve" in proc.stdout


# --------------------------------------------------------------------------------------------------
# train


@dataclass(frozen=True)
class TrainingJob:
    ml: Path  # the /opt/ml tree the container ran on
    logs: str  # what it printed (SageMaker sends this to CloudWatch and the tuner's regexes)


@pytest.fixture(scope="module")
def trained(docker: Docker, full_image: str, tmp_path_factory: pytest.TempPathFactory) -> TrainingJob:
    """``docker run IMAGE train`` on a copy of local_test/test_dir with a tiny pretrained BERT."""
    hyperparameters = json.loads((LOCAL_TEST / "test_dir/input/config/hyperparameters.json").read_text())
    hyperparameters.update(TRAIN_HYPERPARAMETERS)
    ml = sagemaker_tree(tmp_path_factory.mktemp("train") / "ml", hyperparameters)
    make_tiny_bert(ml / "input/data/pretrained")
    proc = docker.run(
        "run", "--rm", "--network", "none", "-v", f"{ml}:/opt/ml", full_image, "train", check=False, timeout=1200
    )  # fmt: skip
    logs = proc.stdout + proc.stderr
    (CACHE_DIR / "train.log").write_text(logs)
    failure = ml / "output/failure"
    assert proc.returncode == 0, (
        f"train exited {proc.returncode}; failure file: "
        f"{failure.read_text() if failure.exists() else '(none)'}\n{_show(proc)}"
    )
    return TrainingJob(ml, logs)


def test_train_writes_a_model_and_reports_metrics(trained: TrainingJob) -> None:
    from textclf.contract.metrics import metric_regex

    model_files = [p for p in (trained.ml / "model").rglob("*") if p.is_file()]
    assert any(p.suffix == ".onnx" for p in model_files), [p.name for p in model_files]
    assert not (trained.ml / "output/failure").exists()
    # The tuner reads the objective from the logs with these regexes; the last value counts.
    eval_metric = json.loads((trained.ml / "input/config/hyperparameters.json").read_text())["eval_metric"]
    values = re.findall(metric_regex(f"validation_{eval_metric}"), trained.logs)
    assert values, f"no validation_{eval_metric}=...; line in the training logs:\n{trained.logs[-4000:]}"
    assert 0.0 <= float(values[-1]) <= 1.0


def test_train_failure_is_reported_with_no_argument(docker: Docker, full_image: str, tmp_path: Path) -> None:
    """``docker run IMAGE`` (no argument, as SDK v3 local mode starts it) trains; a bad
    hyperparameter fails the job with a non-zero exit and a reason in /opt/ml/output/failure."""
    ml = sagemaker_tree(tmp_path / "ml", {"epochs": "zero"})
    proc = docker.run("run", "--rm", "--network", "none", "-v", f"{ml}:/opt/ml", full_image, check=False, timeout=300)
    assert proc.returncode != 0, _show(proc)
    failure = ml / "output/failure"
    assert failure.is_file(), f"no failure file\n{_show(proc)}"
    assert "epochs" in failure.read_text()


# --------------------------------------------------------------------------------------------------
# serve


class Server:
    def __init__(self, docker: Docker, image: str, model_dir: Path) -> None:
        self.docker = docker
        self.port = _free_port()
        self.name = f"textclf-test-{uuid.uuid4().hex[:8]}"
        self.url = f"http://127.0.0.1:{self.port}"
        docker.run(
            "run", "-d", "--name", self.name, "--network", "host",
            "-e", f"SAGEMAKER_BIND_TO_PORT={self.port}",
            "-v", f"{model_dir}:/opt/ml/model:ro", image, "serve",
        )  # fmt: skip

    def logs(self) -> str:
        proc = self.docker.run("logs", self.name, check=False)
        return proc.stdout[-6000:] + proc.stderr[-6000:]

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.docker.inspect(self.name)["State"]
            if not state["Running"]:
                pytest.fail(f"serve exited with {state['ExitCode']} before /ping answered:\n{self.logs()}")
            try:
                if requests.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        pytest.fail(f"/ping did not answer 200 within {timeout} s:\n{self.logs()}")

    def stop(self) -> tuple[float, int]:
        """``docker stop`` (SIGTERM, SIGKILL after 30 s as SageMaker does): seconds taken, exit code."""
        start = time.monotonic()
        self.docker.run("stop", "-t", "30", self.name, check=False, timeout=90)
        elapsed = time.monotonic() - start
        code = int(self.docker.inspect(self.name)["State"]["ExitCode"])
        return elapsed, code

    def remove(self) -> None:
        self.docker.run("rm", "-f", self.name, check=False)


def _predictions(body: object) -> list[list[dict]]:
    """One list of {label, score} per input, whether the server returns top-1 dicts or lists."""
    assert isinstance(body, list), body
    return [item if isinstance(item, list) else [item] for item in body]


def _check_predictions(predictions: list[list[dict]], count: int) -> None:
    assert len(predictions) == count, predictions
    for prediction in predictions:
        assert prediction, predictions
        for entry in prediction:
            assert entry["label"] in DEMO_LABELS, entry
            assert 0.0 <= float(entry["score"]) <= 1.0, entry


@pytest.fixture(params=["full", "serve"])
def server(
    request: pytest.FixtureRequest, docker: Docker, trained: TrainingJob, full_image: str, serve_image: str
) -> Iterator[Server]:
    image = full_image if request.param == "full" else serve_image
    running = Server(docker, image, trained.ml / "model")
    try:
        running.wait_ready()
        yield running
    finally:
        running.remove()


def test_serve_answers_ping_and_invocations(server: Server) -> None:
    texts = ["I was charged twice this month", "my parcel never arrived", "the app crashes on start"]
    ping = requests.get(f"{server.url}/ping", timeout=5)
    assert ping.status_code == 200

    response = requests.post(f"{server.url}/invocations", json={"inputs": texts}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    _check_predictions(_predictions(response.json()), len(texts))

    # Batch Transform: one JSON line in, one JSON line out, in order.
    lines = "\n".join(json.dumps({"inputs": t}) for t in texts) + "\n"
    response = requests.post(
        f"{server.url}/invocations",
        data=lines.encode(),
        headers={"Content-Type": "application/jsonlines", "Accept": "application/jsonlines"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    out_lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    _check_predictions(_predictions(out_lines), len(texts))

    # A client error is a 4xx with a JSON body, never a 5xx or an HTML page.
    response = requests.post(
        f"{server.url}/invocations", data=b"{not json", headers={"Content-Type": "application/json"}, timeout=30
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert isinstance(response.json(), dict)


def _post_payload(server: Server, payload: Path) -> requests.Response:
    return requests.post(
        f"{server.url}/invocations",
        data=payload.read_bytes(),
        headers={"Content-Type": PAYLOAD_TYPES[payload.suffix], "Accept": "application/json"},
        timeout=60,
    )


def test_serve_accepts_every_sample_payload(server: Server) -> None:
    """The payloads predict.sh sends, each with the content type its extension names; the
    text-pair payload is refused by this single-text model with a 400 that says so."""
    payloads = sorted(p for p in (LOCAL_TEST / "payloads").iterdir() if p.is_file())
    assert {p.suffix for p in payloads} == set(PAYLOAD_TYPES)
    for payload in payloads:
        response = _post_payload(server, payload)
        assert response.status_code == 200, (payload.name, response.status_code, response.text)
        assert isinstance(response.json(), list), (payload.name, response.text)
    for payload in sorted((LOCAL_TEST / "payloads/text-pairs").iterdir()):
        response = _post_payload(server, payload)
        assert response.status_code == 400, (payload.name, response.status_code, response.text)
        assert "pair" in response.json()["error"]["message"], response.text


def test_serve_stops_gracefully_on_sigterm(server: Server) -> None:
    """SageMaker sends SIGTERM and kills 30 s later: the server must be gone before that."""
    elapsed, code = server.stop()
    # docker stop -t 30 sends SIGKILL at the deadline, which shows as exit 137.
    assert code != 137, f"serve ignored SIGTERM and was killed after {elapsed:.0f} s:\n{server.logs()}"
    assert code == 0, f"serve exited {code} on SIGTERM:\n{server.logs()}"
