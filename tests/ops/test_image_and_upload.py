"""Image build/push (a stand-in `docker` executable records what it is asked) and channel upload."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from ops import channels, image
from ops.aws import OpsError
from support.aws import Calls

FAKE_DOCKER = """#!/usr/bin/env python3
import json, os, sys
stdin = "" if sys.stdin.isatty() else sys.stdin.read()
with open(os.environ["DOCKER_LOG"], "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "stdin": stdin}) + "\\n")
sys.exit(int(os.environ.get("DOCKER_EXIT", "0")))
"""


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "docker"
    exe.write_text(FAKE_DOCKER, encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("DOCKER", str(exe))
    monkeypatch.setenv("DOCKER_LOG", str(log))
    return log


@pytest.fixture
def build_context(aws: Any, tmp_path: Path) -> Path:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    aws.cfg.image.context = str(context)
    aws.cfg.image.build_args = {"TORCH_INDEX_URL": "https://example.invalid/cu124"}
    return context


def _docker_calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_build_login_push(aws: Any, calls: Calls, docker: Path, build_context: Path) -> None:
    uri = image.build_and_push(aws, tag="v7")
    assert uri == aws.image_uri == f"{aws.account_id}.dkr.ecr.eu-west-1.amazonaws.com/textclf:v7"
    assert calls.one("CreateRepository")["repositoryName"] == "textclf"

    build, login, push = _docker_calls(docker)
    assert build["argv"] == [
        "build",
        "--file",
        str(build_context / "Dockerfile"),
        "--tag",
        uri,
        "--platform",
        "linux/amd64",
        "--build-arg",
        "TORCH_INDEX_URL=https://example.invalid/cu124",
        str(build_context),
    ]
    token = aws.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    assert login["argv"] == ["login", "--username", user, "--password-stdin", uri.split("/")[0]]
    assert login["stdin"] == password and password not in " ".join(login["argv"])
    assert push["argv"] == ["push", uri]

    image.build_and_push(aws)  # the repository now exists: found, not created again
    assert len(calls.of("CreateRepository")) == 1


def test_docker_failures_are_reported(aws: Any, docker: Path, build_context: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("DOCKER_EXIT", "3")
    with pytest.raises(OpsError, match="exit code 3"):
        image.build_and_push(aws)
    monkeypatch.setenv("DOCKER", str(build_context / "no-such-docker"))
    with pytest.raises(OpsError, match="not found"):
        image.build_and_push(aws)
    aws.cfg.image.dockerfile = "Missing.Dockerfile"
    with pytest.raises(OpsError, match="no Dockerfile"):
        image.build_and_push(aws)


def test_upload_creates_a_private_bucket_and_folders(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    assert uploaded == {
        "train": "s3://textclf-test-bucket/textclf/data/train/",
        "validation": "s3://textclf-test-bucket/textclf/data/validation/",
    }
    block = calls.one("PutPublicAccessBlock")["PublicAccessBlockConfiguration"]
    assert all(block.values())
    keys = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket="textclf-test-bucket")["Contents"]]
    assert sorted(keys) == ["textclf/data/train/train.csv", "textclf/data/validation/validation.csv"]
    assert channels.existing_channels(aws) == uploaded
    channels.ensure_bucket(aws)  # idempotent
    assert len(calls.of("CreateBucket")) == 1


def test_upload_rejects_bad_channels(aws: Any, tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="does not exist"):
        channels.upload(aws, {"train": tmp_path / "missing.csv"})
    with pytest.raises(OpsError, match="channel name"):
        channels.upload(aws, {"tr ain": tmp_path})
    (tmp_path / "empty").mkdir()
    with pytest.raises(OpsError, match="holds no files"):
        channels.upload(aws, {"train": tmp_path / "empty"})
