"""``python -m ops --local <command>``: rehearse the ops flow offline, on this machine's Docker, with
the SageMaker SDK's own local mode instead of AWS.

The requests are the ones the AWS commands build (``ops.training.model_trainer``,
``ops.endpoint.create_model`` / ``create_endpoint_config``, ``ops.batch.transform_request``); only
the client differs:

- ``train``: the SDK's ``ModelTrainer`` in ``Mode.LOCAL_CONTAINER`` (its public local mode): one
  container per instance on a compose network, the image's ``train``, channels mounted from local
  folders, ``model.tar.gz`` and ``output.tar.gz`` written to ``<local.root>/training/<job>/
  compressed_artifacts/``. No spot, no checkpoint upload (local mode has neither). A failed job is
  reported with the first line of its failure file: what SageMaker puts in ``FailureReason``.
- ``deploy``, ``invoke``, ``batch``: sagemaker-core's ``LocalSession`` clients, which run the serve
  image with ``serve``, the model unpacked into ``/opt/ml/model``, on ``local.serving_port``. A local
  endpoint lives as long as its ``ops --local deploy`` (Ctrl-C or SIGTERM deletes it); ``invoke``
  from another shell reaches it. A local transform job runs its own container on the same port, so
  run it while no local endpoint is up.
- ``image`` builds the variants under their local tags (``<repository>:<tag>``) and pushes nothing;
  ``config`` shows the configuration. Commands with no local counterpart (``role``, ``upload``,
  ``tune``, ``autoscale``, ``api``, ``teardown``) are refused with the reason.

Nothing reaches AWS: the boto3 session has placeholder credentials (the SDK copies them into the
training containers) and the account id is ``000000000000``. The SDK's local mode needs Docker and
Docker Compose (``docker compose`` v2, or ``docker-compose`` v1) on ``PATH``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import boto3

from ops import variants
from ops.aws import LOCAL_IMAGE_TAG, Aws, OpsError, unique_name
from ops.config import OpsConfig

LOCAL_ACCOUNT = "000000000000"
LOCAL_COMMANDS = frozenset({"config", "image", "train", "deploy", "invoke", "batch"})
WHY_NOT_LOCAL = {
    "role": "local mode needs no execution role",
    "upload": "local channels are folders: pass them to `train` as --channel NAME=PATH",
    "tune": "the SageMaker SDK has no local mode for tuning jobs",
    "autoscale": "a local endpoint is one container",
    "api": "API Gateway and Lambda have no local mode",
    "teardown": "a local endpoint is deleted when its `ops --local deploy` stops (Ctrl-C)",
}
ARTIFACTS = "compressed_artifacts"  # where ModelTrainer's local mode writes model.tar.gz and output.tar.gz
FAILURE_FILE = Path("artifacts/output/failure")  # every host's /opt/ml/output/failure, gathered


class LocalAws(Aws):
    """``Aws`` for local mode: the SDK's ``LocalSession`` clients, ``file://`` URIs under
    ``local.root`` for S3, the images' local tags, and no call to any AWS service."""

    local = True

    def __init__(self, cfg: OpsConfig) -> None:
        region = cfg.aws.region or "us-east-1"
        # Placeholder credentials without a session token: with one, the SDK's local mode probes EC2
        # instance metadata; with none at all, botocore refuses to build the clients it never calls.
        session = boto3.Session(
            aws_access_key_id="LOCALMODE", aws_secret_access_key="local-mode-no-aws", region_name=region
        )
        super().__init__(cfg, session)
        self.root = Path(cfg.local.root).resolve()
        self._local_session: Any = None

    @property
    def account_id(self) -> str:
        return LOCAL_ACCOUNT

    @property
    def bucket(self) -> str:
        return "local"

    def s3_uri(self, *parts: str) -> str:
        """``file://<local.root>/<prefix>/<parts...>/``: where an S3 prefix would be."""
        folder = self.root.joinpath(*(p.strip("/") for p in (self.cfg.aws.prefix, *parts) if p.strip("/")))
        return folder.as_uri() + "/"

    def image_uri(self, variant: variants.Variant) -> str:
        """The variant's local tag, as ``ops image`` builds it without pushing (``local`` while image.tag is empty)."""
        image = self.cfg.image
        return image.uri or f"{image.repository}:{variant.tag(image.tag or LOCAL_IMAGE_TAG)}"

    @property
    def training_image(self) -> str:
        """The CPU image: local mode trains on instance type ``local``, this machine's CPUs."""
        return self.image_uri(variants.CPU)

    @property
    def role_arn(self) -> str:
        return self.cfg.aws.role_arn or f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{self.cfg.project}-local"

    def sdk_session(self) -> Any:
        """sagemaker-core's ``LocalSession``, staging in ``local.root`` and serving on ``local.serving_port``."""
        if self._local_session is None:
            from sagemaker.core.local.local_session import LocalSession

            (self.root / "containers").mkdir(parents=True, exist_ok=True)
            session = LocalSession(boto_session=self.session, default_bucket=self.bucket)
            session.config = {
                "local": {
                    "local_code": True,
                    "container_root": str(self.root / "containers"),
                    "serving_port": self.cfg.local.serving_port,
                }
            }
            self._local_session = session
        return self._local_session

    def client(self, service: str) -> Any:
        if service == "sagemaker":
            return self.sdk_session().sagemaker_client
        if service == "sagemaker-runtime":
            return _Runtime(self.sdk_session().sagemaker_runtime_client, self.cfg.local.serving_port)
        raise OpsError(f"`ops --local` reaches no AWS service ({service}); run this command without --local")


class _Runtime:
    """The local runtime client, with "nothing listens on the port" said as an OpsError."""

    def __init__(self, client: Any, port: int) -> None:
        self.client, self.port = client, port

    def invoke_endpoint(self, **kwargs: Any) -> Any:
        from urllib3.exceptions import HTTPError

        try:
            return self.client.invoke_endpoint(**kwargs)
        except HTTPError as exc:
            raise OpsError(
                f"no local endpoint answers on port {self.port} ({type(exc).__name__}): "
                "start one with `python -m ops --local deploy`"
            ) from None


def refuse_unsupported(command: str) -> None:
    if command not in LOCAL_COMMANDS:
        raise OpsError(f"`{command}` has no local mode: {WHY_NOT_LOCAL.get(command, 'it needs AWS')}")


def remove_exited_containers(root: Path) -> None:
    """Remove the stopped containers compose started from folders under ``root``: the SDK's local
    mode never runs ``compose down``, so every job would leave its containers behind."""
    docker = os.environ.get("DOCKER", "docker")
    label = "com.docker.compose.project.working_dir"
    listed = subprocess.run(
        [docker, "ps", "-a", "--filter", "status=exited", "--filter", f"label={label}",
         "--format", f'{{{{.ID}}}} {{{{.Label "{label}"}}}}'],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    ids = [
        cid
        for cid, _, folder in (line.partition(" ") for line in listed.stdout.splitlines())
        if cid and Path(folder).is_relative_to(root)
    ]
    if ids:
        subprocess.run([docker, "rm", *ids], capture_output=True, check=False)


def _folder_channels(channels: dict[str, str]) -> dict[str, str]:
    """NAME -> absolute folder; a channel is a folder, as an S3 prefix is (SageMaker mounts its files)."""
    if "train" not in channels:
        raise OpsError("no `train` channel: pass --channel train=FOLDER")
    folders: dict[str, str] = {}
    for name, given in channels.items():
        path = Path(given.removeprefix("file://")).expanduser().resolve()
        if not path.is_dir():
            raise OpsError(f"channel {name}: {given} is not a folder (give the folder that holds the files)")
        folders[name] = str(path)
    return folders


def job_folder(aws: LocalAws, job_name: str) -> Path:
    return aws.root / "training" / job_name


def _failure_reason(folder: Path) -> str | None:
    """The failure file's first line (what SageMaker's ``FailureReason`` starts with). The SDK
    gathers every host's ``/opt/ml/output`` into the job folder's ``artifacts/output``, even when
    the job fails."""
    failure = folder / FAILURE_FILE
    if not failure.is_file():
        return None
    lines = failure.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[0] if lines else "the failure file is empty"


def train(aws: LocalAws, channels: dict[str, str] | None, overrides: dict[str, Any]) -> str:
    """Run a training job in local containers until it ends; returns its name. The job's folder
    holds what SageMaker would upload: ``compressed_artifacts/model.tar.gz`` and ``output.tar.gz``."""
    from sagemaker.core.training.configs import InputData

    from ops import training

    folders = _folder_channels(channels or {})
    hps = training.hyperparameters({**aws.cfg.training.hyperparameters, **overrides})
    name = unique_name(aws.cfg.training.base_job_name)
    folder = job_folder(aws, name)
    folder.mkdir(parents=True)
    trainer = training.model_trainer(aws, hps, checkpoints=False, local_root=folder)
    inputs = [InputData(channel_name=n, data_source=p) for n, p in sorted(folders.items())]
    print(f"local training job {name}: {aws.cfg.training.instance_count} container(s) of {aws.training_image}")
    error: Exception | None = None
    try:
        trainer.train(input_data_config=inputs, wait=True, logs=True)
    except Exception as exc:  # the SDK raises RuntimeError with compose's exit status
        error = exc
    finally:
        remove_exited_containers(folder)
    reason = _failure_reason(folder)
    model = folder / ARTIFACTS / "model.tar.gz"
    if error is not None or reason is not None or not model.is_file():
        detail = reason or (f"{type(error).__name__}: {error}" if error else "no model.tar.gz was written")
        raise OpsError(f"local training job {name} Failed: {detail}")
    print(f"local training job {name} Completed: {model.as_uri()}")
    return name


def model_data(aws: LocalAws, job_name: str) -> str:
    """The ``file://`` model.tar.gz of a completed local training job."""
    model = job_folder(aws, job_name) / ARTIFACTS / "model.tar.gz"
    if not model.is_file():
        raise OpsError(f"no local training job {job_name} with a model under {aws.root / 'training'}")
    return model.as_uri()


def resolve_model_data(aws: LocalAws, training_job: str | None, tuning_job: str | None, data: str | None) -> str:
    if tuning_job:
        raise OpsError("--tuning-job: tuning has no local mode; use --training-job or --model-data")
    if training_job:
        return model_data(aws, training_job)
    if not data:
        raise OpsError("give --training-job or --model-data")
    path = Path(data.removeprefix("file://")).expanduser().resolve()
    if not (path.is_file() and path.name.endswith(".tar.gz")):
        raise OpsError(f"--model-data {data}: not a local .tar.gz")
    return path.as_uri()


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _check_port(aws: LocalAws) -> None:
    # Local mode polls /ping on the port and calls the endpoint InService when anything answers.
    port = aws.cfg.local.serving_port
    if _port_taken(port):
        raise OpsError(f"port {port} is in use (another local endpoint or server?): stop it or set local.serving_port")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Any:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def deploy(aws: LocalAws, model_data_uri: str, stop: threading.Event | None = None) -> None:
    """Create a local endpoint from the same model and endpoint-config requests as ``ops deploy``,
    serve until Ctrl-C / SIGTERM (or ``stop``), then delete it."""
    from ops import endpoint

    e = aws.cfg.endpoint
    _check_port(aws)
    sm = aws.client("sagemaker")
    model_name = endpoint.create_model(aws, model_data_uri, e.name, e.environment)
    config_name = endpoint.create_endpoint_config(aws, model_name, 1)
    print(f"creating local endpoint {e.name} from {model_data_uri}")
    with _sigterm_as_interrupt():
        try:
            sm.create_endpoint(EndpointName=e.name, EndpointConfigName=config_name)
            status = sm.describe_endpoint(EndpointName=e.name)["EndpointStatus"]
            print(
                f"local endpoint {e.name} {status} on port {aws.cfg.local.serving_port}: "
                "`python -m ops --local invoke ...` from another shell; Ctrl-C deletes it",
                flush=True,
            )
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            pass
        finally:
            with contextlib.suppress(Exception):
                sm.delete_endpoint(EndpointName=e.name)
            sm.delete_endpoint_config(EndpointConfigName=config_name)
            sm.delete_model(ModelName=model_name)
            remove_exited_containers(aws.root)
            print(f"deleted local endpoint {e.name}", flush=True)


def batch(aws: LocalAws, input_uri: str, model_data_uri: str, output_uri: str | None = None) -> str:
    """A local transform job with ``ops batch``'s request: JSON Lines in, one line out per line in."""
    from ops import endpoint
    from ops.batch import transform_request

    source = Path(input_uri.removeprefix("file://")).expanduser().resolve()
    if not source.is_dir():
        raise OpsError(f"--input {input_uri}: not a local folder of .jsonl files")
    _check_port(aws)
    model_name = endpoint.create_model(aws, model_data_uri, f"{aws.cfg.project}-batch", {})
    job_name = unique_name(f"{aws.cfg.project}-batch")
    output = output_uri or aws.s3_uri("batch", job_name)
    Path(output.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    request = transform_request(aws, job_name, model_name, source.as_uri(), output)
    sm = aws.client("sagemaker")
    print(f"local transform job {job_name}: {source.as_uri()} -> {output}", flush=True)
    try:
        sm.create_transform_job(**request)
        described = sm.describe_transform_job(TransformJobName=job_name)
    finally:
        sm.delete_model(ModelName=model_name)
        remove_exited_containers(aws.root)
    if described["TransformJobStatus"] != "Completed":
        raise OpsError(f"local transform job {job_name} {described['TransformJobStatus']}")
    print(f"local transform job {job_name} Completed")
    return output
