"""Upload local training channels (train / validation / test / pretrained) to S3.

Each channel lands under ``s3://<bucket>/<prefix>/data/<channel>/`` — a folder with a trailing
slash, so that an S3Prefix channel never picks up a sibling such as ``train-old/``.
The bucket is created when missing (private, encrypted by default).
"""

from __future__ import annotations

import re
from pathlib import Path

from botocore.exceptions import ClientError

from ops.aws import Aws, OpsError

CHANNELS = ("train", "validation", "test", "pretrained")
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9\.\-_]{1,64}$")


def ensure_bucket(aws: Aws) -> str:
    s3 = aws.client("s3")
    bucket = aws.bucket
    try:
        s3.head_bucket(Bucket=bucket)
        return bucket
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
    return bucket


def channel_uri(aws: Aws, channel: str) -> str:
    return aws.s3_uri("data", channel)


def upload(aws: Aws, channels: dict[str, Path]) -> dict[str, str]:
    """Upload each channel (a file or a directory) and return channel -> S3 prefix URI."""
    for name, path in channels.items():
        if not _CHANNEL_NAME.match(name):
            raise OpsError(f"channel name {name!r}: letters, digits, '.', '-', '_' only")
        if not path.exists():
            raise OpsError(f"channel {name}: {path} does not exist")
    ensure_bucket(aws)
    s3 = aws.client("s3")
    result: dict[str, str] = {}
    for name, path in channels.items():
        uri = channel_uri(aws, name)
        key_prefix = uri.removeprefix(f"s3://{aws.bucket}/")
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        if not files:
            raise OpsError(f"channel {name}: {path} holds no files")
        base = path.parent if path.is_file() else path
        for file in files:
            key = key_prefix + file.relative_to(base).as_posix()
            s3.upload_file(str(file), aws.bucket, key)
        print(f"{name}: {len(files)} file(s) -> {uri}")
        result[name] = uri
    return result


def existing_channels(aws: Aws) -> dict[str, str]:
    """The channels already uploaded under the project's data prefix."""
    s3 = aws.client("s3")
    found: dict[str, str] = {}
    for name in CHANNELS:
        uri = channel_uri(aws, name)
        listing = s3.list_objects_v2(Bucket=aws.bucket, Prefix=uri.removeprefix(f"s3://{aws.bucket}/"), MaxKeys=1)
        if listing.get("KeyCount", 0):
            found[name] = uri
    return found
