"""One boto3 session per command, the clients built from it, and what every command derives from it.

Every AWS call of ``ops/`` goes through :class:`Aws`, so tests hand it a session whose events they
watch (or a client wrapped in botocore's Stubber) and nothing else needs patching.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ops import variants
from ops.config import ConfigError, OpsConfig

# InvokeEndpoint: the model may take 60 s; AWS recommends a 70 s socket timeout on the client.
RUNTIME_READ_TIMEOUT_S = 70
# The tag of `ops --local`'s images while image.tag is empty: they are never pushed, so one tag serves.
LOCAL_IMAGE_TAG = "local"
NO_IMAGE_TAG = (
    "image.tag is empty: set it (or TEXTCLF_IMAGE_TAG) to the tag `python -m ops image` printed; jobs run the "
    "image that tag names in ECR, by its digest. To run an image of your own, set image.uri (pin it by digest)"
)


class OpsError(RuntimeError):
    """A command could not do what was asked; the message says why and what to do."""


class Aws:
    local = False  # ops.local.LocalAws: the SageMaker SDK's local mode instead of AWS

    def __init__(self, cfg: OpsConfig, session: boto3.Session | None = None) -> None:
        self.cfg = cfg
        self.session = session or boto3.Session(
            region_name=cfg.aws.region or None, profile_name=cfg.aws.profile or None
        )
        if not self.session.region_name:
            raise ConfigError("no AWS region: set aws.region, TEXTCLF_AWS_REGION or AWS_DEFAULT_REGION")
        self.clients: dict[str, Any] = {}
        self._account_id: str | None = None
        self._image_digests: dict[str, str] = {}  # image tag -> the digest ECR held under it when first asked
        # The names of the training jobs created through this session, as sent, whoever sent them (the
        # SageMaker SDK's ModelTrainer does not say which job it created). Registered before any client
        # exists: a botocore client copies the session's event handlers when it is created.
        self.created_training_jobs: list[str] = []
        self.session.events.register(
            "provide-client-params.sagemaker.CreateTrainingJob", self._record_training_job, unique_id=f"ops-{id(self)}"
        )

    def _record_training_job(self, params: dict[str, Any], **_: Any) -> None:
        self.created_training_jobs.append(str(params["TrainingJobName"]))

    @property
    def region(self) -> str:
        return str(self.session.region_name)

    def sdk_session(self) -> Any:
        """The SageMaker SDK's session over this boto3 session (``LocalAws``: the SDK's LocalSession)."""
        from sagemaker.core.helper.session_helper import Session

        return Session(boto_session=self.session, default_bucket=self.bucket, default_bucket_prefix=self.cfg.aws.prefix)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            config = Config(retries={"mode": "standard", "max_attempts": 5})
            if service == "sagemaker-runtime":
                config = Config(
                    read_timeout=RUNTIME_READ_TIMEOUT_S, connect_timeout=5, retries={"total_max_attempts": 1}
                )
            self.clients[service] = self.session.client(service, config=config)
        return self.clients[service]

    @property
    def account_id(self) -> str:
        if self._account_id is None:
            self._account_id = str(self.client("sts").get_caller_identity()["Account"])
        return self._account_id

    @property
    def partition(self) -> str:
        return self.session.get_partition_for_region(self.region)

    @property
    def bucket(self) -> str:
        return self.cfg.aws.bucket or f"{self.cfg.project}-{self.account_id}-{self.region}"

    def s3_uri(self, *parts: str) -> str:
        """``s3://bucket/<prefix>/<parts...>/`` (a folder: trailing slash, see ``checkpoint`` note)."""
        keys = [self.cfg.aws.prefix.strip("/"), *(p.strip("/") for p in parts)]
        return f"s3://{self.bucket}/" + "/".join(k for k in keys if k) + "/"

    @property
    def registry(self) -> str:
        """The account's private ECR registry in this region (``<account>.dkr.ecr.<region>.<suffix>``)."""
        suffix = "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"
        return f"{self.account_id}.dkr.ecr.{self.region}.{suffix}"

    def image_tag(self, variant: variants.Variant) -> str:
        """The ECR tag of one variant: ``image.tag`` plus the variant's suffix; refused while ``image.tag`` is empty."""
        if not self.cfg.image.tag:
            raise ConfigError(NO_IMAGE_TAG)
        return variant.tag(self.cfg.image.tag)

    def image_uri(self, variant: variants.Variant) -> str:
        """What a job runs for one variant: ``image.uri`` as given, else ``<registry>/<repository>@sha256:...``,
        the digest ECR holds under the variant's tag now, so that the job runs exactly the image that was
        pushed (a tag can be moved in a mutable repository; a digest names one manifest for good)."""
        image = self.cfg.image
        if image.uri:
            return image.uri
        return f"{self.registry}/{image.repository}@{self.image_digest(self.image_tag(variant))}"

    def image_digest(self, tag: str) -> str:
        """The digest ECR holds under ``tag`` in ``image.repository`` (one DescribeImages per tag and command);
        refused, with the fix, if there is no such image or it is not a manifest SageMaker runs."""
        if tag not in self._image_digests:
            from ops.image import Manifest, check_manifest  # ops.image imports this module

            ecr = self.client("ecr")
            name = self.cfg.image.repository
            tagged = f"{self.registry}/{name}:{tag}"
            try:
                detail = ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])["imageDetails"][0]
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in ("ImageNotFoundException", "RepositoryNotFoundException"):
                    raise
                raise OpsError(
                    f"image {tagged} is not in ECR ({code}): jobs run the image a tag names in ECR, by its digest. "
                    "Push it with `python -m ops image` (with image.tag empty it makes a new tag and prints it), "
                    "or set image.tag (TEXTCLF_IMAGE_TAG) to a tag it pushed"
                ) from None
            digest = str(detail["imageDigest"])
            media_type = str(detail.get("imageManifestMediaType", ""))
            if media_type:  # not checked where ECR does not report it
                check_manifest(tagged, Manifest(media_type, digest))
            print(f"image {tagged} is {name}@{digest}")
            self._image_digests[tag] = digest
        return self._image_digests[tag]

    @property
    def training_image(self) -> str:
        """The image training and tuning jobs run: the variant for ``training.instance_type``, by digest."""
        return self.image_uri(variants.training_variant(self.cfg.training.instance_type))

    @property
    def serving_image(self) -> str:
        """The image endpoints and transform jobs run: the slim serve variant, by digest."""
        return self.image_uri(variants.SERVE)

    @property
    def role_arn(self) -> str:
        """The SageMaker execution role: configured, else the role stack's ``RoleArn`` output."""
        if self.cfg.aws.role_arn:
            return self.cfg.aws.role_arn
        outputs = stack_outputs(self, self.cfg.role.stack_name)
        if "RoleArn" not in outputs:
            raise ConfigError(
                "no SageMaker execution role: set aws.role_arn (or TEXTCLF_AWS_ROLE_ARN), "
                f"or create one with `python -m ops role` (stack {self.cfg.role.stack_name})"
            )
        return outputs["RoleArn"]

    def endpoint_arn(self, name: str) -> str:
        return f"arn:{self.partition}:sagemaker:{self.region}:{self.account_id}:endpoint/{name.lower()}"


def stack_outputs(aws: Aws, stack_name: str) -> dict[str, str]:
    """A CloudFormation stack's outputs; empty when the stack does not exist."""
    cfn = aws.client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return {}
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def unique_name(base: str, max_length: int = 63) -> str:
    """``base-YYYYmmdd-HHMMSS``, cut so that SageMaker's 63-character names hold it."""
    stamp = timestamp()
    return f"{base[: max_length - len(stamp) - 1].rstrip('-')}-{stamp}"


def poll(
    describe: Callable[[], dict[str, Any]],
    status_key: str,
    busy: set[str],
    delay_s: float,
    max_attempts: int,
) -> dict[str, Any]:
    """Call ``describe`` until its ``status_key`` leaves ``busy``; return the last description."""
    for attempt in range(max_attempts):
        description = describe()
        if description[status_key] not in busy:
            return description
        if attempt < max_attempts - 1:
            time.sleep(delay_s)
    raise OpsError(f"still {description[status_key]} after {max_attempts} checks {delay_s:g} s apart")
