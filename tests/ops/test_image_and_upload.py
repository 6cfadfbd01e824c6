"""Image build/push of each variant (a stand-in `docker` executable records what it is asked) and channel upload."""

from __future__ import annotations

import base64
import json
import re
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
    assert set(uploaded) == {"train", "validation"}
    version = uploaded["train"].removeprefix("s3://textclf-test-bucket/textclf/data/train/").rstrip("/")
    assert re.fullmatch(r"\d{8}T\d{12}Z", version)  # one fresh version per upload
    assert uploaded == {
        "train": f"s3://textclf-test-bucket/textclf/data/train/{version}/",
        "validation": f"s3://textclf-test-bucket/textclf/data/validation/{version}/",
    }
    block = calls.one("PutPublicAccessBlock")["PublicAccessBlockConfiguration"]
    assert all(block.values())
    keys = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket="textclf-test-bucket")["Contents"]]
    assert sorted(keys) == [
        f"textclf/data/train/{version}.complete",
        f"textclf/data/train/{version}/train.csv",
        f"textclf/data/validation/{version}.complete",
        f"textclf/data/validation/{version}/validation.csv",
    ]
    assert channels.existing_channels(aws) == uploaded
    channels.ensure_bucket(aws)  # idempotent
    assert len(calls.of("CreateBucket")) == 1


def _s3_files(aws: Any, uri: str) -> list[str]:
    prefix = uri.removeprefix("s3://textclf-test-bucket/")
    listed = aws.client("s3").list_objects_v2(Bucket="textclf-test-bucket", Prefix=prefix).get("Contents", [])
    return sorted(o["Key"].removeprefix(prefix) for o in listed)


def test_a_reupload_does_not_mix_with_the_earlier_one(aws: Any, calls: Calls, tmp_path: Path) -> None:
    """SageMaker copies everything under a channel's prefix: a re-upload must get a prefix of its own,
    and train/tune (no --channel) must take the latest one."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "part-1.csv").write_text("text,label\nold,neg\n", encoding="utf-8")
    (old / "part-2.csv").write_text("text,label\nstale,neg\n", encoding="utf-8")
    (new / "part-1.csv").write_text("text,label\nnew,pos\n", encoding="utf-8")
    first = channels.upload(aws, {"train": old, "validation": old})
    second = channels.upload(aws, {"train": new})
    assert second["train"] != first["train"]
    assert _s3_files(aws, second["train"]) == ["part-1.csv"]  # nothing of the first upload
    assert _s3_files(aws, first["train"]) == ["part-1.csv", "part-2.csv"]  # kept, usable by name
    latest = channels.existing_channels(aws)
    assert latest == {"train": second["train"], "validation": first["validation"]}

    from ops import training

    training.start(aws)
    sent = calls.of("CreateTrainingJob")[-1]["InputDataConfig"]
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in sent} == latest


def test_an_unfinished_upload_is_not_picked(aws: Any, bucket: str, tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("text,label\ngood,pos\n", encoding="utf-8")
    done = channels.upload(aws, {"train": data})
    broken = "20991231T235959000000Z"  # newer, but its upload never finished (no .complete marker)
    aws.client("s3").put_object(Bucket=bucket, Key=f"textclf/data/train/{broken}/train.csv", Body=b"x")
    aws.client("s3").put_object(Bucket=bucket, Key="textclf/data/train/legacy.csv", Body=b"x")  # old layout
    assert channels.existing_channels(aws) == done


def test_upload_rejects_bad_channels(aws: Any, tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="does not exist"):
        channels.upload(aws, {"train": tmp_path / "missing.csv"})
    with pytest.raises(OpsError, match="channel name"):
        channels.upload(aws, {"tr ain": tmp_path})
    (tmp_path / "empty").mkdir()
    with pytest.raises(OpsError, match="holds no files"):
        channels.upload(aws, {"train": tmp_path / "empty"})
