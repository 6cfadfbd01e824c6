"""The SageMaker SDK's own local mode (sagemaker-core's ``LocalSession``) pointed at our dockerd.

``LocalSession`` is a real SageMaker client whose jobs run on Docker instead of AWS: a training
job writes ``hyperparameters.json``, ``resourceconfig.json`` and ``inputdataconfig.json`` for each
host (``algo-1-xxxxx``, ``algo-2-xxxxx``, ...), mounts the channels, runs ``docker-compose up
--abort-on-container-exit`` with the command ``train``, then tars ``/opt/ml/model`` into
``model.tar.gz`` and every host's ``/opt/ml/output`` into ``output.tar.gz`` at the S3 output path
(a ``file://`` URI here). Nothing goes to AWS. What it needs:

- ``docker-compose`` (Debian's v1; ``docker compose`` v2 is taken first where it exists) and the
  ``docker`` CLI on ``PATH``, both talking to our daemon through ``DOCKER_HOST``;
- fake credentials *without* a session token (with one, it probes EC2 instance metadata) and a region;
- telemetry off: ``SAGEMAKER_USER_CONFIG_OVERRIDE`` (and the admin one) -> a config with
  ``TelemetryOptOut: true``, so that no config file of this machine is read either;
- ``local.container_root``: where it stages each job (one folder per job here, so that the job's
  containers can be found by their compose working directory and removed);
- ``local.container_config.stop_grace_period``: what compose waits between SIGTERM and SIGKILL
  when one container has exited and it stops the others. Set explicitly to compose's own default,
  10 s, which is what a user of local mode gets: a longer one (SageMaker waits 120 s after the
  SIGTERM of StopTrainingJob) would let a rank 0 that ignores SIGTERM after training finish
  whatever its peers left it doing, and hide a peer that exits too early.

Endpoints and transform jobs (``create_model`` with a ``file://`` ``model.tar.gz``, then
``create_endpoint`` or ``create_transform_job``) run ``serve`` with ``local.serving_port``
published to the container's 8080, and poll ``/ping`` there every 5 s (for up to 120 s): anything
that answers 200 on that port is taken for the endpoint. So each gets a port that was free and
that nothing answers on, and a session of its own (the runtime client reads the port from its
session's config, and an endpoint and a transform job may be alive at the same time).

Compose makes its own bridge network (``sagemaker-local``) even though our dockerd runs with
``--bridge=none``; the host names resolve in it, so several hosts rendezvous over gloo. Compose
stops printing a container's output once it aborts, so each container's own log and exit code
are read before it is removed. Compose never runs ``down``: the containers (and the network) are
removed here.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pytest

from support.docker_engine import Docker, system_env
from support.serving import free_port

REGION = "eu-west-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/textclf-local-mode"
NETWORK = "sagemaker-local"  # the network the SDK's compose file names
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"  # compose v1 and v2 both set it
STOP_GRACE_PERIOD = "10s"
VARIANT = "AllTraffic"  # the variant name the SDK's own deploy() gives a single-model endpoint
SDK_CONFIG = """\
SchemaVersion: "1.0"
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""


def compose_available() -> bool:
    """Whether the SDK finds a compose: ``docker compose`` (v2) or ``docker-compose`` (Debian's v1)."""
    env = system_env()
    if shutil.which("docker-compose", path=env["PATH"]):
        return True
    docker = shutil.which("docker", path=env["PATH"])
    probe = [docker, "compose", "version"] if docker else None
    return probe is not None and subprocess.run(probe, capture_output=True, env=env, check=False).returncode == 0


def answers(port: int, host: str = "localhost") -> bool:
    """Whether anything accepts a TCP connection on ``host:port`` (any address of ``localhost``, as
    the SDK's urllib3 tries them all)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def request_records(log: str) -> list[dict[str, Any]]:
    """The request log records (one JSON line per request, ``"type": "request"``) in a serving
    container's log, in order: what the container itself says it was asked."""
    records = []
    for line in log.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("type") == "request":
            records.append(record)
    return records


@dataclass(frozen=True)
class ContainerEnd:
    """How one host's container ended: its exit code and the last lines of its own log."""

    exit_code: int | None
    log_tail: str


@dataclass(frozen=True)
class Invocation:
    """What local mode's ``invoke_endpoint`` gave back: the HTTP status (in ``ResponseMetadata``),
    the ``ContentType`` and the body, read."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclass
class LocalEndpoint:
    """An endpoint ``create_endpoint`` reported InService: its own session (whose runtime client
    calls ``port``), the folder its compose runs from, and ``describe_endpoint``."""

    name: str
    port: int
    staging: Path
    session: Any
    description: dict[str, Any]

    def invoke(self, body: bytes | str, content_type: str, accept: str | None = None) -> Invocation:
        """``invoke_endpoint`` with boto3's keyword arguments, as a user calls it."""
        kwargs = {"EndpointName": self.name, "Body": body, "ContentType": content_type}
        if accept is not None:
            kwargs["Accept"] = accept
        response = self.session.sagemaker_runtime_client.invoke_endpoint(**kwargs)
        stream = response["Body"]
        try:
            data = stream.read()
        finally:
            stream.close()
        return Invocation(response["ResponseMetadata"]["HTTPStatusCode"], response["ContentType"], data)


@dataclass
class TransformJobResult:
    """What ``create_transform_job`` left: its error (None when it returned), the description, the
    S3 output folder (one ``<input file>.out`` per input file) and the serving container's log."""

    name: str
    output: Path
    seconds: float
    error: BaseException | None = None
    description: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False
    containers: dict[str, ContainerEnd] = field(default_factory=dict)  # by container name; whole logs

    @property
    def log(self) -> str:
        return "\n".join(end.log_tail for _, end in sorted(self.containers.items()))

    def show(self, chars: int = 8000) -> str:
        head = f"transform job {self.name} ({self.seconds:.0f} s)"
        if self.timed_out:
            head += ": timed out, its containers were killed"
        if self.error is not None:
            head += f": {type(self.error).__name__}: {self.error}"
        parts = [head]
        for name, end in sorted(self.containers.items()):
            parts += [f"--- container {name}: exit code {end.exit_code}, end of its log", end.log_tail[-chars:]]
        return "\n".join(parts)


@dataclass
class TrainingJobResult:
    """What ``create_training_job`` left: its error (None when it returned), the description, the
    S3 output folder (``model.tar.gz``, ``output.tar.gz``) and everything compose printed."""

    name: str
    instance_count: int
    output: Path
    logs: str
    seconds: float
    error: BaseException | None = None
    description: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False
    containers: dict[str, ContainerEnd] = field(default_factory=dict)  # by container name

    @property
    def model_tar(self) -> Path:
        return self.output / "model.tar.gz"

    @property
    def output_tar(self) -> Path:
        return self.output / "output.tar.gz"

    def show(self, chars: int = 8000) -> str:
        head = f"training job {self.name} ({self.instance_count} instance(s), {self.seconds:.0f} s)"
        if self.timed_out:
            head += ": timed out, its containers were killed"
        if self.error is not None:
            head += f": {type(self.error).__name__}: {self.error}"
        parts = [head, f"--- compose output (last {chars} characters)", self.logs[-chars:]]
        for name, end in sorted(self.containers.items()):
            parts += [f"--- container {name}: exit code {end.exit_code}, last lines of its log", end.log_tail]
        return "\n".join(parts)


class _Tee(io.TextIOBase):
    """sys.stdout for the SDK (it copies compose's output there, a line at a time): kept, and
    written to a file, each line with the seconds since the job started."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self.kept = io.StringIO()
        self.start = time.monotonic()

    def write(self, text: str) -> int:
        if text:
            stamped = f"[{time.monotonic() - self.start:6.1f}s] {text}"
            self.kept.write(stamped)
            self.log.write(stamped)
            self.log.flush()
        return len(text)


class LocalMode:
    """A ``LocalSession`` whose compose runs on ``docker``'s daemon; a context manager that sets
    the environment the SDK reads and, on exit, removes what compose left behind."""

    def __init__(self, docker: Docker, root: Path, log_dir: Path) -> None:
        self.docker = docker
        self.root = root
        self.log_dir = log_dir
        self._patch = pytest.MonkeyPatch()
        self.session: Any = None

    def environment(self) -> dict[str, str]:
        config = self.root / "sagemaker-config.yaml"
        config.write_text(SDK_CONFIG)
        return {
            "PATH": system_env()["PATH"],  # docker and docker-compose
            "DOCKER_HOST": self.docker.host,
            "COMPOSE_HTTP_TIMEOUT": "120",  # what the SDK would set (for good) in os.environ itself
            "AWS_ACCESS_KEY_ID": "AKIATEXTCLFLOCALMODE",
            "AWS_SECRET_ACCESS_KEY": "textclf-local-mode-fake-secret",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(self.root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "no-aws-credentials"),
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(config),
        }

    def __enter__(self) -> LocalMode:
        if not compose_available():
            pytest.fail("local mode needs docker-compose: apt-get install docker-compose (make system-deps)")
        self.root.mkdir(parents=True, exist_ok=True)
        for name, value in self.environment().items():
            self._patch.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            self._patch.delenv(name, raising=False)
        self.session = self.new_session()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.remove_containers(self.root)
            self.docker.run("network", "rm", NETWORK, check=False, timeout=60)
        finally:
            self._patch.undo()

    def new_session(self) -> Any:
        """A ``LocalSession`` of its own. Its config (``local.*``) is the session's, and its runtime
        client calls the ``serving_port`` of that config: an endpoint keeps a session apart so that
        configuring another job (another port) does not send its requests elsewhere. The jobs,
        models and endpoints themselves are class attributes of the SDK's client: every session of
        the process sees them."""
        import boto3
        from sagemaker.core.local.local_session import LocalSession

        return LocalSession(boto_session=boto3.Session(region_name=REGION))

    @staticmethod
    def local_config(
        staging: Path, serving_port: int | None = None, stop_grace_period: str = STOP_GRACE_PERIOD
    ) -> dict[str, Any]:
        """The ``local`` config of one job: it stages in ``staging`` (so its containers can be found
        by their compose working directory) and, for serving, publishes ``serving_port``."""
        local: dict[str, Any] = {
            "local_code": True,
            "container_root": str(staging),
            "container_config": {"stop_grace_period": stop_grace_period},
        }
        if serving_port is not None:
            local["serving_port"] = serving_port
        return {"local": local}

    # -- containers -------------------------------------------------------------------------------
    def containers(self, under: Path, running_only: bool = False) -> list[str]:
        """Ids of the containers (running or not) that compose started from a folder under ``under``."""
        proc = self.docker.run(
            "ps", *(() if running_only else ("-a",)), "--no-trunc", "--filter", f"label={WORKING_DIR_LABEL}",
            "--format", f'{{{{.ID}}}} {{{{.Label "{WORKING_DIR_LABEL}"}}}}', check=False, timeout=60,
        )  # fmt: skip
        ids = []
        for line in proc.stdout.splitlines():
            cid, _, working_dir = line.partition(" ")
            if cid and Path(working_dir).is_relative_to(under):
                ids.append(cid)
        return ids

    def remove_containers(self, under: Path) -> None:
        ids = self.containers(under)
        if ids:
            self.docker.run("rm", "-f", *ids, check=False, timeout=120)

    def container_ends(self, under: Path, lines: int | None = 40) -> dict[str, ContainerEnd]:
        """Each container's exit code and the end of its own log (what compose did not print);
        ``lines=None``: the whole log. A running container's exit code is None."""
        ends = {}
        for cid in self.containers(under):
            state = self.docker.run(
                "inspect", "--format", "{{.Name}} {{.State.Running}} {{.State.ExitCode}}", cid, check=False, timeout=60
            ).stdout.split()
            log = self.docker.run(
                "logs", "--tail", "all" if lines is None else str(lines), cid, check=False, timeout=60
            )
            name = state[0].lstrip("/") if state else cid
            running = len(state) > 1 and state[1] == "true"
            code = int(state[2]) if len(state) > 2 and state[2].lstrip("-").isdigit() and not running else None
            ends[name] = ContainerEnd(code, (log.stdout + log.stderr).replace("\r\n", "\n"))
        return ends

    def save_logs(self, name: str, ends: Mapping[str, ContainerEnd]) -> None:
        """Each container's log into ``local-mode-<name>.log`` of the log folder, for after the run."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"local-mode-{name}.log").open("a") as log:
            for cname, end in sorted(ends.items()):
                log.write(f"\n--- container {cname}: exit code {end.exit_code}; its log\n{end.log_tail}")

    @contextlib.contextmanager
    def watchdog(self, staging: Path, timeout: float) -> Iterator[threading.Event]:
        """Kill the containers started from ``staging`` after ``timeout`` seconds (a hung job, or a
        request local mode waits on with no timeout of its own); the event says whether it fired."""
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            ids = self.containers(staging, running_only=True)
            if ids:
                self.docker.run("kill", *ids, check=False, timeout=60)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            yield fired
        finally:
            timer.cancel()

    def _staging(self, name: str) -> Path:
        staging = self.root / name
        staging.mkdir()
        return staging

    def _serving_port(self) -> int:
        """A free port that nothing answers on: local mode would call an endpoint InService for any
        server that answers ``/ping`` 200 there, and send it our requests."""
        port = free_port()
        if answers(port):
            pytest.fail(f"something already answers on port {port}: local mode would take it for our container")
        return port

    # -- training ---------------------------------------------------------------------------------
    def train(
        self,
        name: str,
        image: str,
        channels: Mapping[str, Path],
        hyperparameters: Mapping[str, str],
        instance_count: int,
        timeout: float = 300,
        stop_grace_period: str = STOP_GRACE_PERIOD,
    ) -> TrainingJobResult:
        """``create_training_job`` as a user calls it (local instance type, file:// channels and
        output); its containers are killed after ``timeout`` seconds and removed at the end."""
        staging = self._staging(name)
        output = self.root / f"{name}-s3"
        output.mkdir()
        self.session.config = self.local_config(staging, stop_grace_period=stop_grace_period)
        request = {
            "TrainingJobName": name,
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
            "RoleArn": ROLE_ARN,
            "InputDataConfig": [
                {
                    "ChannelName": channel,
                    "DataSource": {
                        "FileDataSource": {"FileUri": path.as_uri(), "FileDataDistributionType": "FullyReplicated"}
                    },
                }
                for channel, path in channels.items()
            ],
            "OutputDataConfig": {"S3OutputPath": output.as_uri()},
            "ResourceConfig": {"InstanceType": "local", "InstanceCount": instance_count, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": int(timeout)},
            "HyperParameters": dict(hyperparameters),
        }
        error: BaseException | None = None
        start = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"local-mode-{name}.log").open("w") as log:
            tee = _Tee(log)
            try:
                with self.watchdog(staging, timeout) as timed_out, contextlib.redirect_stdout(tee):
                    self.session.sagemaker_client.create_training_job(**request)
            except Exception as exc:  # a failed job raises RuntimeError; anything else is shown too
                error = exc
            finally:
                ends = self.container_ends(staging)
                self.remove_containers(staging)
                for cname, end in sorted(ends.items()):
                    log.write(f"\n--- container {cname}: exit code {end.exit_code}; its log ends\n{end.log_tail}")
        result = TrainingJobResult(
            name, instance_count, output, tee.kept.getvalue(), time.monotonic() - start, error,
            timed_out=timed_out.is_set(), containers=ends,
        )  # fmt: skip
        if error is None:
            result.description = self.session.sagemaker_client.describe_training_job(TrainingJobName=name)
        return result

    # -- serving ----------------------------------------------------------------------------------
    def create_model(
        self, name: str, image: str, model_tar: Path, environment: Mapping[str, str] | None = None
    ) -> Path:
        """``create_model`` with ``ModelDataUrl`` a ``file://`` copy of ``model_tar`` in a folder of
        its own; returns that folder. Local mode extracts a ``file://`` archive *beside itself* and
        mounts that folder as ``/opt/ml/model``: pointed at a training job's output folder, it would
        write into it and serve ``output.tar.gz`` too. ``Environment`` is always passed: local mode
        reads ``PrimaryContainer["Environment"]`` without a default (KeyError when it is left out,
        which the real API allows)."""
        folder = self.root / f"{name}-model"
        folder.mkdir()
        shutil.copy2(model_tar, folder / "model.tar.gz")
        self.session.sagemaker_client.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE_ARN,
            PrimaryContainer={
                "Image": image,
                "ModelDataUrl": (folder / "model.tar.gz").as_uri(),
                "Environment": dict(environment or {}),
            },
        )
        return folder

    def create_endpoint(self, name: str, model_name: str) -> LocalEndpoint:
        """``create_endpoint_config`` + ``create_endpoint`` (one local instance) on a free port, in
        a session of its own. ``create_endpoint`` returns once ``/ping`` answers 200 (it raises
        RuntimeError after 120 s); a failure is reported with the container's log, its container
        stopped and removed."""
        staging = self._staging(name)
        session = self.new_session()
        session.config = self.local_config(staging, serving_port=self._serving_port())
        client = session.sagemaker_client
        client.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {"VariantName": VARIANT, "ModelName": model_name, "InstanceType": "local", "InitialInstanceCount": 1}
            ],
        )
        try:
            client.create_endpoint(EndpointName=name, EndpointConfigName=name)
        except Exception as exc:
            ends = self.container_ends(staging, lines=None)
            self.save_logs(name, ends)
            client.delete_endpoint(EndpointName=name)
            self.remove_containers(staging)
            logs = "\n".join(
                f"--- {cname}: exit code {end.exit_code}\n{end.log_tail[-6000:]}" for cname, end in ends.items()
            )
            pytest.fail(f"create_endpoint {name} failed: {type(exc).__name__}: {exc}\n{logs}")
        port = session.sagemaker_runtime_client.serving_port
        return LocalEndpoint(name, port, staging, session, client.describe_endpoint(EndpointName=name))

    def delete_endpoint(self, endpoint: LocalEndpoint) -> dict[str, ContainerEnd]:
        """``delete_endpoint`` as a user calls it; then how each of the endpoint's containers ended
        (exit code None: still running), with its whole log. Nothing is removed here."""
        endpoint.session.sagemaker_client.delete_endpoint(EndpointName=endpoint.name)
        ends = self.container_ends(endpoint.staging, lines=None)
        self.save_logs(endpoint.name, ends)
        return ends

    def transform(
        self,
        name: str,
        model_name: str,
        input_dir: Path,
        content_type: str,
        accept: str | None = None,
        max_payload_mb: int = 1,
        timeout: float = 300,
    ) -> TransformJobResult:
        """``create_transform_job`` over the files of ``input_dir`` (``SplitType=Line``,
        ``AssembleWith=Line``, ``MultiRecord`` packing up to ``max_payload_mb`` per request) into a
        ``file://`` output folder. ``BatchStrategy`` is passed: left out, local mode copies the
        container's ``/execution-parameters`` answer (``MULTI_RECORD``, as SageMaker's own
        containers spell it) and then rejects that value. The serving container's whole log is
        kept (its request records show how the input was split) and the container removed."""
        staging = self._staging(name)
        output = self.root / f"{name}-s3"
        output.mkdir()
        session = self.new_session()
        session.config = self.local_config(staging, serving_port=self._serving_port())
        request = {
            "TransformJobName": name,
            "ModelName": model_name,
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": max_payload_mb,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_dir.as_uri()}},
                "ContentType": content_type,
                "CompressionType": "None",
                "SplitType": "Line",
            },
            "TransformOutput": {
                "S3OutputPath": output.as_uri(),
                "Accept": accept or content_type,
                "AssembleWith": "Line",
            },
            "TransformResources": {"InstanceType": "local", "InstanceCount": 1},
        }
        error: BaseException | None = None
        start = time.monotonic()
        try:
            with self.watchdog(staging, timeout) as timed_out:
                session.sagemaker_client.create_transform_job(**request)
        except Exception as exc:  # shown with the container's log
            error = exc
        finally:
            ends = self.container_ends(staging, lines=None)
            self.save_logs(name, ends)
            self.remove_containers(staging)
        result = TransformJobResult(
            name, output, time.monotonic() - start, error, timed_out=timed_out.is_set(), containers=ends
        )
        if error is None:
            result.description = session.sagemaker_client.describe_transform_job(TransformJobName=name)
        return result
