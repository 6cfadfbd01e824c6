"""Fixtures for ops/ tests: fake credentials, moto, a recorder of every AWS request, a test config.

AWS is the only thing mocked (moto, and botocore's Stubber where moto lacks a call). Requests are
recorded at botocore's ``provide-client-params`` event, i.e. exactly what the code (or the SDK)
asked boto3 to send.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from support.aws import REGION, ROLE_NAME, TEST_CONFIG, Calls, push_test_images


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("TEXTCLF_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # moto implements no iam:SimulatePrincipalPolicy, which the SDK uses to vet the role.
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")


@pytest.fixture(autouse=True)
def no_sdk_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The v3 SDK sends usage telemetry over HTTP in a thread; keep tests offline and quiet."""
    try:
        from sagemaker.core.telemetry import telemetry_logging
    except ImportError:
        return
    monkeypatch.setattr(telemetry_logging, "_send_telemetry_request", lambda *a, **k: None)


@pytest.fixture(autouse=True)
def moto_requests_use_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 reaches S3 over HTTPS, so the bucket's TLS-only statement (ops.security: Deny when
    ``aws:SecureTransport`` is false) never applies to the tests' requests. moto 5.2 evaluates a bucket
    policy for object requests without any request context, and takes a Deny statement whose condition
    does not hold for a denial: it judges each object request by the policy without that statement."""
    import json

    from moto.s3.models import FakeBucket

    from ops.security import TLS_ONLY_SID

    judge = FakeBucket.get_permission

    def get_permission(bucket: Any, action: str, resource: str) -> Any:
        if bucket.policy is None:
            return judge(bucket, action, resource)
        policy = json.loads(bucket.policy)
        statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
        kept = [s for s in statements if s.get("Sid") != TLS_ONLY_SID]
        whole, bucket.policy = bucket.policy, json.dumps({**policy, "Statement": kept}).encode() if kept else None
        try:
            return judge(bucket, action, resource)
        finally:
            bucket.policy = whole

    monkeypatch.setattr(FakeBucket, "get_permission", get_permission)


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def session(calls: Calls) -> boto3.Session:
    s = boto3.Session(region_name=REGION)
    s.events.register("provide-client-params.*.*", calls.record)
    return s


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "ops.toml"
    path.write_text(TEST_CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def role_arn(moto: None) -> str:
    return str(boto3.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}")["Role"]["Arn"])


@pytest.fixture
def aws(moto: None, config_path: Path, session: boto3.Session, role_arn: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from ops.aws import Aws
    from ops.config import load

    monkeypatch.setenv("TEXTCLF_AWS_ROLE_ARN", role_arn)
    push_test_images()  # the config's image.tag in ECR: jobs run it by the digest ECR holds
    return Aws(load(config_path), session=session)


@pytest.fixture
def bucket(aws: Any) -> str:
    from ops.channels import ensure_bucket

    return ensure_bucket(aws)


@pytest.fixture
def uploaded(aws: Any, bucket: str, tmp_path: Path) -> dict[str, str]:
    from ops.channels import upload

    train = tmp_path / "data" / "train.csv"
    train.parent.mkdir()
    train.write_text("text,label\ngood,pos\nbad,neg\n", encoding="utf-8")
    validation = tmp_path / "val"
    validation.mkdir()
    (validation / "validation.csv").write_text("text,label\nfine,pos\n", encoding="utf-8")
    return upload(aws, {"train": train, "validation": validation})
