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

Compose makes its own bridge network (``sagemaker-local``) even though our dockerd runs with
``--bridge=none``; the host names resolve in it, so several hosts rendezvous over gloo. Compose
stops printing a container's output once it aborts, so each container's own log and exit code
are read before it is removed. Compose never runs ``down``: the containers (and the network) are
removed here.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pytest

from support.docker_engine import Docker, system_env

REGION = "eu-west-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/textclf-local-mode"
NETWORK = "sagemaker-local"  # the network the SDK's compose file names
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"  # compose v1 and v2 both set it
STOP_GRACE_PERIOD = "10s"
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


@dataclass(frozen=True)
class ContainerEnd:
    """How one host's container ended: its exit code and the last lines of its own log."""

    exit_code: int | None
    log_tail: str


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
        import boto3
        from sagemaker.core.local.local_session import LocalSession

        if not compose_available():
            pytest.fail("local mode needs docker-compose: apt-get install docker-compose (make system-deps)")
        self.root.mkdir(parents=True, exist_ok=True)
        for name, value in self.environment().items():
            self._patch.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            self._patch.delenv(name, raising=False)
        self.session = LocalSession(boto_session=boto3.Session(region_name=REGION))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.remove_containers(self.root)
            self.docker.run("network", "rm", NETWORK, check=False, timeout=60)
        finally:
            self._patch.undo()

    # -- containers -------------------------------------------------------------------------------
    def containers(self, under: Path) -> list[str]:
        """Ids of the containers (running or not) that compose started from a folder under ``under``."""
        proc = self.docker.run(
            "ps", "-a", "--no-trunc", "--filter", f"label={WORKING_DIR_LABEL}",
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

    def container_ends(self, under: Path, lines: int = 40) -> dict[str, ContainerEnd]:
        """Each container's exit code and the end of its own log (what compose did not print)."""
        ends = {}
        for cid in self.containers(under):
            state = self.docker.run(
                "inspect", "--format", "{{.Name}} {{.State.ExitCode}}", cid, check=False, timeout=60
            ).stdout.split()
            log = self.docker.run("logs", "--tail", str(lines), cid, check=False, timeout=60)
            name = state[0].lstrip("/") if state else cid
            code = int(state[1]) if len(state) > 1 and state[1].lstrip("-").isdigit() else None
            ends[name] = ContainerEnd(code, (log.stdout + log.stderr).replace("\r\n", "\n"))
        return ends

    # -- jobs -------------------------------------------------------------------------------------
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
        staging = self.root / name
        output = self.root / f"{name}-s3"
        staging.mkdir()
        output.mkdir()
        self.session.config = {
            "local": {
                "local_code": True,
                "container_root": str(staging),
                "container_config": {"stop_grace_period": stop_grace_period},
            }
        }
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
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            ids = self.containers(staging)
            if ids:
                self.docker.run("kill", *ids, check=False, timeout=60)

        watchdog = threading.Timer(timeout, kill)
        error: BaseException | None = None
        start = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"local-mode-{name}.log").open("w") as log:
            tee = _Tee(log)
            watchdog.start()
            try:
                with contextlib.redirect_stdout(tee):
                    self.session.sagemaker_client.create_training_job(**request)
            except Exception as exc:  # a failed job raises RuntimeError; anything else is shown too
                error = exc
            finally:
                watchdog.cancel()
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
