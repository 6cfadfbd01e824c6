"""``ops --local`` without Docker: what it refuses, what it maps where, and that no AWS client is
ever built. The flow itself (train, deploy, invoke, batch on the image) is in
tests/container/test_ops_local.py."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ops import cli, local
from ops.aws import OpsError
from ops.config import ConfigError, OpsConfig, load
from ops.local import LocalAws
from ops.variants import SERVE


@pytest.fixture
def cfg(tmp_path: Path) -> OpsConfig:
    config = load(env={"TEXTCLF_LOCAL_ROOT": str(tmp_path / "root"), "AWS_DEFAULT_REGION": "eu-west-1"})
    config.image.repository, config.image.tag = "textclf", "dev"
    return config


@pytest.mark.parametrize("command", ["role", "upload", "tune", "autoscale", "api", "teardown"])
def test_commands_without_a_local_mode_are_refused_with_the_reason(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = {"upload": ["--channel", "train=x"], "api": ["url"]}.get(command, [])
    assert cli.main(["--local", command, *argv]) == 1
    err = capsys.readouterr().err
    assert f"error: `{command}` has no local mode: {local.WHY_NOT_LOCAL[command]}" in err.splitlines()


def test_local_aws_maps_s3_images_and_identity_to_this_machine(cfg: OpsConfig, tmp_path: Path) -> None:
    aws = LocalAws(cfg)
    assert aws.local and aws.account_id == "000000000000"
    assert aws.s3_uri("batch", "job-1") == (tmp_path / "root" / "textclf" / "batch" / "job-1").as_uri() + "/"
    assert aws.serving_image == "textclf:dev-serve" == aws.image_uri(SERVE)
    assert aws.training_image == "textclf:dev"  # ml.g5 in the config, but local mode runs the CPU image
    assert aws.role_arn.startswith("arn:aws:iam::000000000000:role/")
    credentials = aws.session.get_credentials()
    assert credentials is not None and credentials.token is None  # a token makes the SDK probe EC2 metadata


@pytest.mark.parametrize("service", ["s3", "sts", "cloudformation", "ecr"])
def test_local_aws_builds_no_aws_client(cfg: OpsConfig, service: str) -> None:
    with pytest.raises(OpsError, match=rf"`ops --local` reaches no AWS service \({service}\)"):
        LocalAws(cfg).client(service)


def test_channels_must_be_folders_with_a_train_channel(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "data.csv").write_text("text,label\n")
    with pytest.raises(OpsError, match="no `train` channel"):
        local._folder_channels({"validation": str(tmp_path / "train")})
    with pytest.raises(OpsError, match=r"channel train: .*data\.csv is not a folder"):
        local._folder_channels({"train": str(tmp_path / "data.csv")})
    assert local._folder_channels({"train": (tmp_path / "train").as_uri()}) == {"train": str(tmp_path / "train")}


def test_model_data_comes_from_a_local_job_or_a_local_archive(cfg: OpsConfig, tmp_path: Path) -> None:
    aws = LocalAws(cfg)
    with pytest.raises(OpsError, match="no local training job job-x with a model"):
        local.resolve_model_data(aws, "job-x", None, None)
    with pytest.raises(OpsError, match="tuning has no local mode"):
        local.resolve_model_data(aws, None, "hpo-1", None)
    with pytest.raises(OpsError, match=r"not a local \.tar\.gz"):
        local.resolve_model_data(aws, None, None, str(tmp_path / "missing.tar.gz"))
    model = local.job_folder(aws, "job-1") / local.ARTIFACTS / "model.tar.gz"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"")
    assert local.resolve_model_data(aws, "job-1", None, None) == model.as_uri()


def test_failure_reason_is_the_failure_files_first_line(tmp_path: Path) -> None:
    assert local._failure_reason(tmp_path) is None
    failure = tmp_path / local.FAILURE_FILE
    failure.parent.mkdir(parents=True)
    failure.write_text("hyperparameter epochs: must be >= 1, got 0\n\nTraceback (most recent call last):\n")
    assert local._failure_reason(tmp_path) == "hyperparameter epochs: must be >= 1, got 0"


def test_a_taken_serving_port_is_refused_before_anything_starts(cfg: OpsConfig) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg.local.serving_port = busy.getsockname()[1]
        with pytest.raises(OpsError, match=f"port {cfg.local.serving_port} is in use"):
            local.deploy(LocalAws(cfg), "file:///nowhere/model.tar.gz")


def test_serving_port_must_be_a_port() -> None:
    with pytest.raises(ConfigError, match=r"local\.serving_port must be a TCP port"):
        load(env={"TEXTCLF_LOCAL_SERVING_PORT": "70000", "AWS_DEFAULT_REGION": "eu-west-1"})
