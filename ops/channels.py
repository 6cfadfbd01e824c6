"""Upload local training channels (train / validation / test / pretrained) to S3.

Each upload of a channel lands in a fresh folder, ``s3://<bucket>/<prefix>/data/<channel>/<version>/``
(``<version>``: the UTC time of the upload to the microsecond, so versions sort in upload order),
and the output names it. A re-upload therefore never trains on old and new files together, and
nothing is deleted: an earlier version stays usable with ``--channel NAME=s3://...``. Without
``--channel``, ``train`` and ``tune`` use each channel's latest finished version:
``data/<channel>/<version>.complete``, written after the version's last file (beside its folder,
not in it), marks a finished upload, so an interrupted one is never picked. Every URI ends with a
slash, so that an S3Prefix channel never picks up a sibling folder.
The bucket is created when missing (private: every public access blocked), and each time brought to
``[security]``'s protection (``ops.security.secure_bucket``): default encryption (SSE-KMS with
``security.kms_key_id``, else SSE-S3), versioning with non-current versions expiring, and a policy that
denies any request without TLS; an existing bucket keeps its other policy statements and lifecycle rules.
With a KMS key, ops' own uploads ask for SSE-KMS with it explicitly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import ClientError

from ops import security
from ops.aws import Aws, OpsError

CHANNELS = ("train", "validation", "test", "pretrained")
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9\.\-_]{1,64}$")
COMPLETE = ".complete"  # data/<channel>/<version>.complete: that version's upload finished
_VERSION = re.compile(r"^\d{8}T\d{12}Z$")  # UTC date, "T", time to the microsecond, "Z"


def ensure_bucket(aws: Aws, key_arn: str | None = None) -> str:
    """Create the bucket if missing, and secure it (``key_arn``: ``security.kms_key_arn``, looked up if None)."""
    bucket = aws.bucket
    _create_bucket(aws)
    security.secure_bucket(aws, key_arn or security.kms_key_arn(aws))
    return bucket


def _create_bucket(aws: Aws) -> None:
    s3 = aws.client("s3")
    bucket = aws.bucket
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise OpsError(f"bucket {bucket} exists but is not usable by this account: {exc}") from None
    kwargs: dict = {"Bucket": bucket}
    if aws.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    s3.create_bucket(**kwargs)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    print(f"created bucket s3://{bucket}")


def _marker_key(aws: Aws, channel: str, version: str) -> str:
    """Written after the last file of a version: beside its folder, not in it (the job would read it)."""
    return channel_root(aws, channel).removeprefix(f"s3://{aws.bucket}/") + version + COMPLETE


def channel_root(aws: Aws, channel: str) -> str:
    """The folder that holds every uploaded version of a channel."""
    return aws.s3_uri("data", channel)


def new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def channel_uri(aws: Aws, channel: str, version: str) -> str:
    return aws.s3_uri("data", channel, version)


def latest_version(aws: Aws, channel: str) -> str | None:
    """The newest uploaded version of a channel (folders named by ``new_version``), or None."""
    prefix = channel_root(aws, channel).removeprefix(f"s3://{aws.bucket}/")
    versions: list[str] = []
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=aws.bucket, Prefix=prefix, Delimiter="/"):
        for item in page.get("Contents", []):
            name = item["Key"].removeprefix(prefix).removesuffix(COMPLETE)
            if item["Key"].endswith(COMPLETE) and _VERSION.match(name):
                versions.append(name)
    return max(versions) if versions else None


def upload(aws: Aws, channels: dict[str, Path]) -> dict[str, str]:
    """Upload each channel (a file or a directory) and return channel -> S3 prefix URI."""
    for name, path in channels.items():
        if not _CHANNEL_NAME.match(name):
            raise OpsError(f"channel name {name!r}: letters, digits, '.', '-', '_' only")
        if not path.exists():
            raise OpsError(f"channel {name}: {path} does not exist")
    listed = {
        name: [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for name, path in channels.items()
    }
    for name, files in listed.items():
        if not files:
            raise OpsError(f"channel {name}: {channels[name]} holds no files")
    key_arn = security.kms_key_arn(aws)
    ensure_bucket(aws, key_arn)
    encryption = security.upload_arguments(key_arn)
    s3 = aws.client("s3")
    version = new_version()  # one version for all the channels of this upload
    result: dict[str, str] = {}
    for name, path in channels.items():
        uri = channel_uri(aws, name, version)
        key_prefix = uri.removeprefix(f"s3://{aws.bucket}/")
        files = listed[name]
        base = path.parent if path.is_file() else path
        for file in files:
            key = key_prefix + file.relative_to(base).as_posix()
            s3.upload_file(str(file), aws.bucket, key, ExtraArgs=encryption or None)
        s3.put_object(Bucket=aws.bucket, Key=_marker_key(aws, name, version), Body=b"", **encryption)
        print(f"{name}: {len(files)} file(s) -> {uri}")
        result[name] = uri
    return result


def existing_channels(aws: Aws) -> dict[str, str]:
    """Each channel's latest uploaded version under the project's data prefix."""
    found: dict[str, str] = {}
    for name in CHANNELS:
        version = latest_version(aws, name)
        if version:
            found[name] = channel_uri(aws, name, version)
    return found
