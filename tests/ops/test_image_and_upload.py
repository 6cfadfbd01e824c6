"""Image build/push of each variant (a stand-in `docker` executable records what it is asked) and channel upload."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from ops import channels, cli, image, variants
from ops.aws import OpsError
from ops.config import ConfigError
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
    aws.cfg.image.build_args = {"BASE_IMAGE": "debian:bookworm-slim@sha256:0000"}  # reaches every variant
    return context


def _docker_calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def _build_argv(context: Path, uri: str, *variant_args: str) -> list[str]:
    return [
        "build",
        "--file",
        str(context / "Dockerfile"),
        "--tag",
        uri,
        "--platform",
        "linux/amd64",
        *variant_args,
        "--build-arg",
        "BASE_IMAGE=debian:bookworm-slim@sha256:0000",
        str(context),
    ]


# What `docker build` gets for each variant, besides the file, tag, platform and context.
VARIANT_ARGS = {
    "serve": ["--target", "serve"],
    "cpu": ["--target", "full", "--build-arg", "TORCH_VARIANT=cpu"],
    "gpu": ["--target", "full", "--build-arg", "TORCH_VARIANT=cuda"],
}


def test_build_login_push_the_variants_the_config_needs(
    aws: Any, calls: Calls, docker: Path, build_context: Path
) -> None:
    """Training on ml.g5 and serving on ml.c5 (the test config) need the gpu and serve images."""
    uris = image.build_and_push(aws, tag="v7")
    repo = f"{aws.account_id}.dkr.ecr.eu-west-1.amazonaws.com/textclf"
    assert uris == {"serve": f"{repo}:v7-serve", "gpu": f"{repo}:v7-gpu"}
    assert uris["gpu"] == aws.training_image and uris["serve"] == aws.serving_image
    assert calls.one("CreateRepository")["repositoryName"] == "textclf"

    build_serve, build_gpu, login, push_serve, push_gpu = _docker_calls(docker)
    assert build_serve["argv"] == _build_argv(build_context, uris["serve"], *VARIANT_ARGS["serve"])
    assert build_gpu["argv"] == _build_argv(build_context, uris["gpu"], *VARIANT_ARGS["gpu"])
    token = aws.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    assert login["argv"] == ["login", "--username", user, "--password-stdin", repo.split("/")[0]]
    assert login["stdin"] == password and password not in " ".join(login["argv"])
    assert [push_serve["argv"], push_gpu["argv"]] == [["push", uris["serve"]], ["push", uris["gpu"]]]

    image.build_and_push(aws)  # the repository now exists: found, not created again
    assert len(calls.of("CreateRepository")) == 1


def test_a_cpu_training_instance_needs_the_cpu_image(aws: Any, docker: Path, build_context: Path) -> None:
    aws.cfg.training.instance_type = "ml.c6i.4xlarge"
    uris = image.build_and_push(aws, push=False)
    assert uris == {"serve": "textclf:t1-serve", "cpu": "textclf:t1"}
    assert [c["argv"] for c in _docker_calls(docker)] == [
        _build_argv(build_context, "textclf:t1-serve", *VARIANT_ARGS["serve"]),
        _build_argv(build_context, "textclf:t1", *VARIANT_ARGS["cpu"]),
    ]


@pytest.mark.parametrize(
    ("argv", "built"),
    [
        (["--variant", "cpu"], ["cpu"]),
        (["--variant", "gpu"], ["gpu"]),
        (["--variant", "serve"], ["serve"]),
        (["--variant", "gpu", "--variant", "serve"], ["serve", "gpu"]),
        (["--variant", "all"], ["serve", "cpu", "gpu"]),
    ],
)
def test_ops_image_variant_runs_these_docker_commands(
    aws: Any, calls: Calls, docker: Path, build_context: Path, argv: list[str], built: list[str]
) -> None:
    assert cli.main(["image", "--tag", "v8", *argv], aws=aws) == 0
    repo = f"{aws.account_id}.dkr.ecr.eu-west-1.amazonaws.com/textclf"
    uris = [f"{repo}:v8{variants.VARIANTS[name].tag_suffix}" for name in built]
    docker_calls = [c["argv"] for c in _docker_calls(docker)]
    assert docker_calls[: len(built)] == [
        _build_argv(build_context, uri, *VARIANT_ARGS[name]) for name, uri in zip(built, uris, strict=True)
    ]
    assert docker_calls[len(built)][0] == "login"
    assert docker_calls[len(built) + 1 :] == [["push", uri] for uri in uris]


def test_refusals_come_before_any_build(
    aws: Any, calls: Calls, docker: Path, build_context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.cfg.training.instance_type = "ml.trn1.2xlarge"
    assert cli.main(["image"], aws=aws) == 1
    assert "training.instance_type ml.trn1.2xlarge: AWS Trainium (Neuron) has no CUDA" in capsys.readouterr().err
    aws.cfg.training.instance_type = "ml.g5.xlarge"
    aws.cfg.image.build_args["TORCH_VARIANT"] = "cuda"
    with pytest.raises(ConfigError, match=r"image\.build_args TORCH_VARIANT: the variant sets it"):
        image.build_and_push(aws)
    aws.cfg.image.uri = "registry.example.com/textclf:mine"
    with pytest.raises(OpsError, match=r"image\.uri is set"):
        image.build_and_push(aws)
    assert not docker.exists() and calls.of("CreateRepository") == []


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
