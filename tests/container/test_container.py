"""The image as SageMaker runs it: ``docker run IMAGE train`` on an /opt/ml tree, then
``docker run IMAGE serve`` on the model it wrote, for the full image and the slim serve image.

Both start as root, as SageMaker starts them, on folders root owns, as SageMaker mounts them; the
jobs must nevertheless run as the image's unprivileged user (``textclf``, uid 1000), write only
what they must, and fail with the fix when they cannot write or read what they need
(src/textclf/contract/job_user.py). Started as another user (``docker run --user``, as
local_test does), they run as that user.

The encoder is a tiny BERT made here from a config (2 layers, hidden 128) with a WordPiece
vocabulary learnt from the demo data, so training takes seconds; quality is not the point.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
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
from support.serving import free_port
from support.tiny_model import make_tiny_model, words_of

pytestmark = pytest.mark.container

LOCAL_TEST = REPO_ROOT / "local_test"
DEMO_LABELS = {"billing", "delivery", "technical"}
JOB_USER, JOB_UID, JOB_GID = "textclf", 1000, 1000  # who the jobs run as (the Dockerfile's user)
OTHER_UID = 4321  # a user the image does not know, as `docker run --user $(id -u):$(id -g)` gives
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


def _files(folder: Path) -> list[Path]:
    return [folder, *folder.rglob("*")]


def _owners(folder: Path) -> dict[str, int]:
    """Path (relative to ``folder``) -> owner uid, for ``folder`` and everything in it."""
    return {str(p.relative_to(folder)): p.lstat().st_uid for p in _files(folder)}


def _run_as(docker: Docker, image: str, user: str, script: str) -> object:
    """``script`` run by ``sh`` in ``image`` as ``user`` (uid:gid)."""
    return docker.run(
        "run", "--rm", "--network", "none", "--user", user, "--entrypoint", "sh", image, "-c", script, check=False
    )  # fmt: skip


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
# Who the jobs run as

# What the job user may write: the folders a training job writes, its home and the temp folders.
WRITABLE = ["/opt/ml/model", "/opt/ml/output", "/opt/ml/output/data", "/opt/ml/checkpoints", "/home/textclf", "/tmp",
            "/var/tmp", "/dev/shm"]  # fmt: skip
# Everything else: the code, the virtual environment, the system, the /opt/ml root (SageMaker's).
NOT_WRITABLE = ["/opt/venv", "/opt/venv/bin", "/opt/venv/lib", "/opt/program", "/opt/program/src", "/opt/ml",
                "/etc", "/usr/bin", "/usr/lib", "/usr/sbin", "/var/lib", "/root", "/"]  # fmt: skip


def test_image_starts_as_root_only_to_become_its_job_user(docker: Docker, full_image: str, serve_image: str) -> None:
    """No USER: SageMaker runs the image with its own user and mounts the folders a job writes
    owned by root, so the image starts as root and ``textclf`` drops to the user TEXTCLF_USER
    names before it reads any input (checked on the running jobs below). That user is uid/gid
    1000, and no file keeps a setuid or setgid bit that would lead back to root."""
    for image in (full_image, serve_image):
        config = docker.inspect(image)["Config"]
        assert config["User"] in ("", "0", "root"), config["User"]
        assert f"TEXTCLF_USER={JOB_USER}" in config["Env"] and f"HOME=/home/{JOB_USER}" in config["Env"]
        proc = docker.run(
            "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
            f"id -u {JOB_USER}; id -g {JOB_USER}; id -G {JOB_USER}; find / -xdev -perm /6000 -type f",
        )  # fmt: skip
        assert proc.stdout.split() == [str(JOB_UID), str(JOB_GID), str(JOB_GID)], (
            f"{image}: the job user, then every setuid/setgid file:\n{proc.stdout}"
        )


def test_the_job_user_can_write_only_its_folders(docker: Docker, full_image: str, serve_image: str) -> None:
    """As uid/gid 1000 with no other group (what the jobs are after the drop: their uids, groups
    and capabilities are checked on the running jobs), creating a file succeeds exactly in the
    job's folders; changing the code, the venv or the system is refused."""
    probe = 'for d in {}; do if touch "$d/.probe" 2>/dev/null; then echo "yes $d"; else echo "no $d"; fi; done'
    script = "; ".join([
        probe.format(" ".join(WRITABLE + NOT_WRITABLE)),
        'for f in /opt/venv/bin/textclf /opt/program/nginx.conf /etc/passwd; do '
        'if echo x 2>/dev/null >> "$f"; then echo "yes $f"; else echo "no $f"; fi; done',
    ])  # fmt: skip
    for image in (full_image, serve_image):
        proc = _run_as(docker, image, f"{JOB_UID}:{JOB_GID}", script)
        answers = {path: answer for answer, path in (line.split(" ", 1) for line in proc.stdout.splitlines())}
        assert {d: answers.get(d) for d in WRITABLE} == dict.fromkeys(WRITABLE, "yes"), f"{image}\n{proc.stdout}"
        refused = [*NOT_WRITABLE, "/opt/venv/bin/textclf", "/opt/program/nginx.conf", "/etc/passwd"]
        assert {d: answers.get(d) for d in refused} == dict.fromkeys(refused, "no"), f"{image}\n{proc.stdout}"


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


def test_train_runs_as_the_job_user(trained: TrainingJob) -> None:
    """Started as root on folders root owns, as SageMaker starts it: the job said it ran as
    textclf, everything it wrote is textclf's, the model is readable by all (a serving container
    reads it as its own user, whoever owns it once unpacked), and the input was left as it was."""
    assert f"textclf train: running as {JOB_USER} (uid {JOB_UID}, gid {JOB_GID}), not root" in trained.logs
    for folder in ("model", "output", "checkpoints"):
        if folder != "checkpoints" or (trained.ml / folder).exists():
            owners = _owners(trained.ml / folder)
            assert set(owners.values()) == {JOB_UID}, f"{folder}: {owners}"
    modes = {str(p): p.stat().st_mode for p in _files(trained.ml / "model")}
    assert all(mode & 0o444 == 0o444 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}
    assert set(_owners(trained.ml / "input").values()) == {os.getuid()}


def test_train_as_another_user_runs_as_that_user(docker: Docker, full_image: str, tmp_path: Path) -> None:
    """``docker run --user UID:GID`` on a tree that user owns, as local_test runs the image (so
    that what it writes stays the invoking user's): nothing is handed over or dropped, and the
    job runs as that user, one the image does not know, with a HOME of its own."""
    hyperparameters = json.loads((LOCAL_TEST / "test_dir/input/config/hyperparameters.json").read_text())
    hyperparameters.update({**TRAIN_HYPERPARAMETERS, "epochs": "1", "max_steps": "2", "checkpoint_every_steps": "1"})
    ml = sagemaker_tree(tmp_path / "ml", hyperparameters)
    make_tiny_bert(ml / "input/data/pretrained")
    for folder in (ml, ml / "model", ml / "output"):
        os.chown(folder, OTHER_UID, OTHER_UID)
    proc = docker.run(
        "run", "--rm", "--network", "none", "--user", f"{OTHER_UID}:{OTHER_UID}", "-v", f"{ml}:/opt/ml",
        full_image, "train", check=False, timeout=1200,
    )  # fmt: skip
    failure = ml / "output/failure"
    assert proc.returncode == 0, f"{failure.read_text() if failure.exists() else '(no failure file)'}\n{_show(proc)}"
    assert "running as" not in proc.stderr, proc.stderr[-2000:]
    for folder in ("model", "output", "checkpoints"):
        if folder != "checkpoints" or (ml / folder).exists():
            owners = _owners(ml / folder)
            assert set(owners.values()) == {OTHER_UID}, f"{folder}: {owners}"


def _train_as(docker: Docker, image: str, ml: Path, *args: str) -> tuple[object, str | None]:
    """``docker run [ARGS] -v ML:/opt/ml IMAGE train``; its process and the failure file's first line."""
    proc = docker.run(
        "run", "--rm", "--network", "none", *args, "-v", f"{ml}:/opt/ml", image, "train", check=False, timeout=300
    )  # fmt: skip
    failure = ml / "output/failure"
    return proc, failure.read_text().splitlines()[0] if failure.exists() else None


def test_train_fails_clearly_on_a_folder_its_user_cannot_write(docker: Docker, full_image: str, tmp_path: Path) -> None:
    """As another user on folders root owns (mode 755, as SageMaker mounts them): exit 2 before
    any work, and the failure file's first line names the folder, the user and the ways out; with
    the output folder unwritable too, the same reason on stderr. Never a traceback."""
    ml = sagemaker_tree(tmp_path / "ml", {"epochs": "1"})
    (ml / "output").chmod(0o777)  # so that the failure file can be written
    proc, reason = _train_as(docker, full_image, ml, "--user", f"{OTHER_UID}:{OTHER_UID}")
    assert proc.returncode == 2, _show(proc)
    assert reason is not None and reason.startswith(
        f"/opt/ml/model is not writable by uid {OTHER_UID} (gid {OTHER_UID}), the user this job runs as: "
        f"it belongs to uid {os.getuid()}, mode 755. Start the container as root"
    ), reason
    assert f"to {JOB_USER}, uid {JOB_UID}, then drops to that user" in reason and "docker run --user" in reason
    assert "Traceback" not in proc.stdout + proc.stderr, _show(proc)

    (ml / "output/failure").unlink()
    (ml / "output").chmod(0o755)
    proc, reason = _train_as(docker, full_image, ml, "--user", f"{OTHER_UID}:{OTHER_UID}")
    assert proc.returncode == 2 and reason is None, _show(proc)
    assert f"error: /opt/ml/model is not writable by uid {OTHER_UID}" in proc.stderr, _show(proc)
    assert "Traceback" not in proc.stdout + proc.stderr, _show(proc)


def test_train_fails_clearly_on_a_read_only_model_folder(docker: Docker, full_image: str, tmp_path: Path) -> None:
    """Started as root, but the model folder mounted read-only: it cannot be handed over, and the
    job says so instead of failing when it writes the model."""
    ml = sagemaker_tree(tmp_path / "ml", {"epochs": "1"})
    proc, reason = _train_as(docker, full_image, ml, "-v", f"{ml / 'model'}:/opt/ml/model:ro")
    assert proc.returncode == 2, _show(proc)
    assert reason == (
        f"/opt/ml/model is not writable by uid {JOB_UID} (gid {JOB_GID}), the user this job runs as: "
        "it is on a read-only mount. Mount it writable."
    ), reason


def test_train_fails_clearly_on_an_input_file_its_user_cannot_read(
    docker: Docker, full_image: str, tmp_path: Path
) -> None:
    """A channel file only its owner may read (600): SageMaker's channel files are readable by
    all, a host folder that local mode mounts may not be. The job names the file and the fix."""
    ml = sagemaker_tree(tmp_path / "ml", {"epochs": "1"})
    (ml / "input/data/train/train.csv").chmod(0o600)
    proc, reason = _train_as(docker, full_image, ml)
    assert proc.returncode == 2, _show(proc)
    assert reason is not None and reason.startswith(
        f"uid {JOB_UID} (gid {JOB_GID}), the user this job runs as, cannot read /opt/ml/input/data/train/train.csv "
        f"(it belongs to uid {os.getuid()}, mode 600). "
    ), reason
    assert "chmod -R a+rX" in reason and "docker run --user" in reason, reason


# --------------------------------------------------------------------------------------------------
# serve


class Server:
    def __init__(self, docker: Docker, image: str, model_dir: Path) -> None:
        self.docker = docker
        self.port = free_port()
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


def _payload_texts(payload: Path) -> tuple[list[str], bool]:
    """The texts a sample payload holds, read here from its format (not by the server's codecs),
    and whether it is a single input (answered with one result rather than a list of them)."""
    text = payload.read_text(encoding="utf-8")
    if payload.suffix == ".json":
        body = json.loads(text)
        inputs = body["inputs"] if isinstance(body, dict) else body
        return ([inputs], True) if isinstance(inputs, str) else (list(inputs), False)
    if payload.suffix == ".jsonl":
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [r if isinstance(r, str) else r.get("inputs", r.get("text")) for r in records], False
    if payload.suffix == ".csv":
        return [row[0] for row in csv.reader(text.splitlines()) if row], False
    return [line for line in text.splitlines() if line.strip()], False


def test_serve_accepts_every_sample_payload(server: Server, trained: TrainingJob) -> None:
    """The payloads predict.sh sends, each with the content type its extension names, answered
    with what the model itself predicts for their texts (ONNX Runtime here, on the model the
    container serves): one result per text, the top label of the model's labels with its score.
    The text-pair payload is refused by this single-text model with a 400 that says so."""
    from textclf.contract.model_dir import read_manifest
    from textclf.model.predictor import Classifier

    model = Classifier.load(trained.ml / "model")
    labels = set(read_manifest(trained.ml / "model").labels)
    assert labels == DEMO_LABELS
    payloads = sorted(p for p in (LOCAL_TEST / "payloads").iterdir() if p.is_file())
    assert {p.suffix for p in payloads} == set(PAYLOAD_TYPES)
    for payload in payloads:
        response = _post_payload(server, payload)
        assert response.status_code == 200, (payload.name, response.status_code, response.text)
        texts, single = _payload_texts(payload)
        answers = [response.json()] if single else response.json()
        expected = model.predict(texts)
        assert len(answers) == len(texts) == len(expected) > 0, (payload.name, texts, response.text)
        for text, answer, want in zip(texts, answers, expected, strict=True):
            assert [entry["label"] for entry in answer] == [entry["label"] for entry in want], (payload.name, text)
            assert {entry["label"] for entry in answer} <= labels
            assert [entry["score"] for entry in answer] == pytest.approx([e["score"] for e in want], abs=1e-4)
    for payload in sorted((LOCAL_TEST / "payloads/text-pairs").iterdir()):
        response = _post_payload(server, payload)
        assert response.status_code == 400, (payload.name, response.status_code, response.text)
        assert "pair" in response.json()["error"]["message"], response.text


_PROCESSES = """
import json, os
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue  # this probe, which docker exec starts as root
    try:
        lines = open(f"/proc/{pid}/status").read().splitlines()
    except OSError:
        continue
    found.append({k: v.split() for k, v in (line.split(":", 1) for line in lines if ":" in line)})
print(json.dumps(found))
"""


def test_serve_runs_as_the_job_user(server: Server) -> None:
    """Every process of the serving container (the supervisor, nginx's master and worker,
    gunicorn's master and workers) is textclf: real, effective, saved and file-system uid and gid,
    no supplementary group, no capability. The container started as root; nothing keeps it."""
    proc = server.docker.run("exec", server.name, "python", "-c", _PROCESSES)
    processes = json.loads(proc.stdout)
    names = sorted(p["Name"][0] for p in processes)
    assert "nginx" in names and any(n.startswith(("gunicorn", "textclf", "python")) for n in names), names
    for p in processes:
        assert p["Uid"] == [str(JOB_UID)] * 4 and p["Gid"] == [str(JOB_GID)] * 4, p
        assert p.get("Groups", []) == [], p
        assert p["CapPrm"] == p["CapEff"] == p["CapAmb"] == ["0000000000000000"], p
    assert f"running as {JOB_USER} (uid {JOB_UID}, gid {JOB_GID}), not root" in server.logs()


def test_serve_copies_a_model_its_user_cannot_read(
    docker: Docker, serve_image: str, trained: TrainingJob, tmp_path: Path
) -> None:
    """A model whose files only root may read (an older, root-run image wrote ``manifest.json``
    with mode 600), mounted read-only as SageMaker mounts it: serving cannot fix it in place, so it
    serves a copy its user owns, and says so."""
    model = tmp_path / "model"
    shutil.copytree(trained.ml / "model", model)
    for path in _files(model):
        os.chown(path, 0, 0, follow_symlinks=False)
    (model / "manifest.json").chmod(0o600)
    running = Server(docker, serve_image, model)
    try:
        running.wait_ready()
        assert "cannot read every file of /opt/ml/model: serving a copy in /tmp/textclf-model-" in running.logs()
        response = requests.post(f"{running.url}/invocations", json={"inputs": ["my parcel never arrived"]}, timeout=60)
        assert response.status_code == 200, response.text
        _check_predictions(_predictions(response.json()), 1)
    finally:
        running.remove()


def test_serve_stops_gracefully_on_sigterm(server: Server) -> None:
    """SageMaker sends SIGTERM and kills 30 s later: the server must be gone before that."""
    elapsed, code = server.stop()
    # docker stop -t 30 sends SIGKILL at the deadline, which shows as exit 137.
    assert code != 137, f"serve ignored SIGTERM and was killed after {elapsed:.0f} s:\n{server.logs()}"
    assert code == 0, f"serve exited {code} on SIGTERM:\n{server.logs()}"
