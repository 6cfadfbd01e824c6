"""`python -m ops ...`: arguments become the right call with the right values (checked at the AWS
request, moto behind it), bad arguments fail clearly with a non-zero exit, and every command line
of the README's SageMaker section is accepted by the real parser."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from ops import cli, local
from ops.aws import Aws
from support.aws import Calls, completed_training_job

README = Path(__file__).resolve().parents[2] / "README.md"
BUCKET = "s3://textclf-test-bucket"


def _json_tail(text: str) -> Any:
    return json.loads(text[text.index("{\n") :])


# --- parsing: errors before any AWS call ---------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["deploi"], "invalid choice: 'deploi'"),
        (["upload"], "the following arguments are required: --channel"),
        (["deploy"], "one of the arguments --training-job --tuning-job --model-data is required"),
        (["deploy", "--training-job", "a", "--model-data", "s3://b/model.tar.gz"], "not allowed with argument"),
        (["batch", "--model", "m"], "the following arguments are required: --input"),
        (["batch", "--input", "s3://b/in/", "--model", "m", "--training-job", "j"], "not allowed with argument"),
        (["tune", "--top", "many"], "argument --top: invalid int value: 'many'"),
        (["api"], "the following arguments are required: api_command"),
        (["train", "--epochs", "3"], "unrecognized arguments: --epochs 3"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)  # no Aws: parsing fails before any configuration or AWS call
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m ops") and message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--hp", "epochs"], "--hp must look like NAME=VALUE, got 'epochs'"),
        (["train", "--hp", "=3"], "--hp must look like NAME=VALUE, got '=3'"),
        (
            ["train", "--channel", f"train={BUCKET}/a/", "--channel", f"train={BUCKET}/b/"],
            "--channel train given twice",
        ),
        (["train", "--hp", "epochs=3", "--hp", "epochs=4"], "--hp epochs given twice ('3' and '4')"),
        (["train", "--hp", "epoch=3"], "unknown hyperparameter 'epoch'"),
        (["train", "--channel", "train=data/train.csv"], "channel train: data/train.csv is not an s3:// URI"),
        (["deploy", "--model-data", f"{BUCKET}/model.bin"], "--model-data must be an s3:// URI of a .tar.gz"),
        (["invoke"], "give texts or --body-file"),
        (["batch", "--input", "data/in.jsonl", "--model", "m"], "--input must be an s3:// URI"),
        (["autoscale"], "endpoint textclf-test does not exist"),
        (["tune", "--report", "textclf-hpo-nope"], "Could not find hyper parameter tuning job 'textclf-hpo-nope'"),
    ],
)
def test_bad_values_exit_1_with_the_reason_and_start_nothing(
    aws: Aws, calls: Calls, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv, aws=aws) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err
    assert [op for op in calls.operations() if op.startswith(("Create", "Put", "Register", "Invoke"))] == []


# --- each command: arguments -> the request ----------------------------------------------------


def test_train_overrides_and_channels_reach_the_request_as_strings(aws: Aws, calls: Calls, bucket: str) -> None:
    argv = ["train", "--channel", f"train={BUCKET}/in/train/", "--channel", f"validation={BUCKET}/in/dev/"]
    argv += ["--hp", "epochs=4", "--hp", "learning_rate=3e-5", "--hp", "keep_full_precision=true", "--hp", "seed=11"]
    assert cli.main(argv, aws=aws) == 0
    request = calls.one("CreateTrainingJob")
    assert request["HyperParameters"] == {
        "epochs": "4",  # the override wins over the file's 2
        "learning_rate": "3e-5",  # sent as typed, not re-formatted
        "mixed_precision": "bf16",
        "keep_full_precision": "true",
        "labels": '["neg", "pos"]',
        "model_name_or_path": "/opt/models/encoder",
        "seed": "11",
    }
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels == {"train": f"{BUCKET}/in/train/", "validation": f"{BUCKET}/in/dev/"}
    assert calls.of("ListObjectsV2") == []  # explicit channels: no lookup of uploaded ones


def test_train_resume_from_uses_that_jobs_checkpoints(aws: Aws, calls: Calls, uploaded: dict[str, str]) -> None:
    completed_training_job(aws, "textclf-interrupted")
    assert cli.main(["train", "--resume-from", "textclf-interrupted"], aws=aws) == 0
    request = calls.of("CreateTrainingJob")[-1]
    assert request["CheckpointConfig"]["S3Uri"] == f"{BUCKET}/textclf/checkpoints/textclf-interrupted/"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels == uploaded  # no --channel: the uploaded ones


def test_upload_channels(aws: Aws, calls: Calls, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "train.csv"
    data.write_text("text,label\ngood,pos\n", encoding="utf-8")
    assert cli.main(["upload", "--channel", f"train={data}"], aws=aws) == 0
    out = capsys.readouterr().out
    uri = _json_tail(out)["train"]
    assert re.fullmatch(rf"{BUCKET}/textclf/data/train/\d{{8}}T\d{{12}}Z/", uri)
    assert f"train: 1 file(s) -> {uri}" in out  # the output names the version
    version = uri.removeprefix(f"{BUCKET}/textclf/data/train/").rstrip("/")
    assert [c["Key"] for c in calls.of("PutObject")] == [
        f"textclf/data/train/{version}/train.csv",
        f"textclf/data/train/{version}.complete",
    ]


def test_tune_takes_ranges_from_a_file(aws: Aws, calls: Calls, uploaded: dict[str, str], tmp_path: Path) -> None:
    ranges = tmp_path / "ranges.toml"
    ranges.write_text('[ranges.batch_size]\ntype = "categorical"\nvalues = [8, 64]\n', encoding="utf-8")
    assert cli.main(["tune", "--ranges", str(ranges)], aws=aws) == 0
    config = calls.one("CreateHyperParameterTuningJob")["HyperParameterTuningJobConfig"]
    assert config["ParameterRanges"]["CategoricalParameterRanges"] == [{"Name": "batch_size", "Values": ["8", "64"]}]
    assert not config["ParameterRanges"].get("ContinuousParameterRanges")  # the file replaces [tuning.ranges]


def test_deploy_from_a_training_job_without_autoscaling(aws: Aws, calls: Calls) -> None:
    model_data = completed_training_job(aws)
    assert cli.main(["deploy", "--training-job", "textclf-done", "--no-autoscaling"], aws=aws) == 0
    assert calls.one("CreateModel")["PrimaryContainer"]["ModelDataUrl"] == model_data
    assert calls.one("CreateEndpoint")["EndpointName"] == "textclf-test"
    assert calls.of("RegisterScalableTarget") == calls.of("PutScalingPolicy") == []


def test_autoscale_applies_the_policy_to_the_existing_endpoint(aws: Aws, calls: Calls) -> None:
    assert cli.main(["deploy", "--model-data", f"{BUCKET}/m/model.tar.gz", "--no-autoscaling"], aws=aws) == 0
    calls.items.clear()
    assert cli.main(["autoscale"], aws=aws) == 0
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/textclf-test/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    assert calls.one("RegisterScalableTarget") == {**target, "MinCapacity": 1, "MaxCapacity": 3}
    assert calls.one("PutScalingPolicy") == {
        **target,
        "PolicyName": "textclf-test-invocations-per-instance",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": 250.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    }
    assert cli.main(["autoscale"], aws=aws) == 0  # again: the same target and policy, not a second one
    policies = aws.client("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    assert [p["PolicyName"] for p in policies["ScalingPolicies"]] == ["textclf-test-invocations-per-instance"]


def test_autoscale_refuses_when_the_config_disables_it(
    aws: Aws, calls: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.cfg.endpoint.autoscaling.enabled = False
    assert cli.main(["autoscale"], aws=aws) == 1
    assert "endpoint.autoscaling.enabled is false" in capsys.readouterr().err
    assert calls.of("RegisterScalableTarget") == []


def test_batch_with_an_existing_model(aws: Aws, calls: Calls) -> None:
    argv = ["batch", "--input", f"{BUCKET}/in/", "--output", f"{BUCKET}/out/", "--model", "textclf-m"]
    assert cli.main(argv, aws=aws) == 0
    assert calls.of("CreateModel") == []
    request = calls.one("CreateTransformJob")
    assert request["ModelName"] == "textclf-m"
    assert request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"{BUCKET}/in/"
    assert request["TransformOutput"]["S3OutputPath"] == f"{BUCKET}/out/"


def test_batch_from_a_training_job_makes_its_model(aws: Aws, calls: Calls) -> None:
    model_data = completed_training_job(aws)
    assert cli.main(["batch", "--input", f"{BUCKET}/in/", "--training-job", "textclf-done"], aws=aws) == 0
    model = calls.one("CreateModel")
    assert model["PrimaryContainer"]["ModelDataUrl"] == model_data
    request = calls.one("CreateTransformJob")
    assert request["ModelName"] == model["ModelName"]
    assert request["TransformOutput"]["S3OutputPath"] == f"{BUCKET}/textclf/batch/{request['TransformJobName']}/"


def test_invoke_texts_and_headers(aws: Aws, calls: Calls, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["invoke", "I was charged twice", "thanks!", "--custom-attributes", "threshold=0.7"]
    assert cli.main(argv, aws=aws) == 0
    sent = calls.one("InvokeEndpoint")
    assert json.loads(sent["Body"]) == {"inputs": ["I was charged twice", "thanks!"]}
    assert (sent["EndpointName"], sent["ContentType"], sent["Accept"], sent["CustomAttributes"]) == (
        "textclf-test",
        "application/json",
        "application/json",
        "threshold=0.7",
    )
    out, err = capsys.readouterr()
    assert out.strip() and "Content-Type:" in err


def test_invoke_a_body_file_as_json_lines(aws: Aws, calls: Calls, tmp_path: Path) -> None:
    body = tmp_path / "in.jsonl"
    body.write_bytes(b'{"inputs": "a"}\n{"inputs": "b"}\n')
    argv = ["invoke", "--body-file", str(body), "--content-type", "application/jsonlines", "--accept", "text/csv"]
    assert cli.main(argv, aws=aws) == 0
    sent = calls.one("InvokeEndpoint")
    assert (sent["Body"], sent["ContentType"], sent["Accept"]) == (
        body.read_bytes(),
        "application/jsonlines",
        "text/csv",
    )
    assert "CustomAttributes" not in sent


def test_api_url_reads_the_stack_output(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["api", "url"], aws=aws) == 1
    assert "stack textclf-api not found: run `python -m ops api deploy`" in capsys.readouterr().err
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/invocations"
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"InvokeUrl": {"Value": url}},
    }
    aws.client("cloudformation").create_stack(StackName="textclf-api", TemplateBody=json.dumps(template))
    assert cli.main(["api", "url"], aws=aws) == 0
    assert capsys.readouterr().out == url + "\n"


# --- config ------------------------------------------------------------------------------------


def test_config_prints_the_resolved_configuration_without_secrets(
    moto: None, tmp_path: Path, config_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = ("hf_SECRET-VALUE", "pw-SECRET-VALUE", "AKIA-SECRET-VALUE", "sk-SECRET-VALUE")
    path = tmp_path / "with-secrets.toml"
    path.write_text(
        config_path.read_text(encoding="utf-8")
        + f"""
[training.environment]
HF_TOKEN = "{secrets[0]}"
LOG_LEVEL = "info"
[image.build_args]
PIP_INDEX_URL = "https://ci:{secrets[1]}@pypi.example.com/simple"
[batch.environment]
VENDOR_API_KEY = "{secrets[3]}"
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets[2])
    monkeypatch.setenv("TEXTCLF_TRAINING_INSTANCE_TYPE", "ml.g6.2xlarge")
    assert cli.main(["--config", str(path), "config"]) == 0
    out = capsys.readouterr().out
    assert not [s for s in secrets if s in out]
    shown = json.loads(out)
    assert shown["training"]["instance_type"] == "ml.g6.2xlarge"  # the environment override, resolved
    assert shown["endpoint"]["name"] == "textclf-test"  # from the file
    assert shown["endpoint"]["autoscaling"]["max_instances"] == 3
    assert shown["training"]["environment"] == {"HF_TOKEN": "***", "LOG_LEVEL": "info"}
    assert shown["image"]["build_args"] == {"PIP_INDEX_URL": "https://***@pypi.example.com/simple"}
    assert shown["batch"]["environment"] == {"VENDOR_API_KEY": "***"}
    assert shown["endpoint"]["environment"] == {"MODEL_SERVER_WORKERS": "2"}  # not secret: shown


def test_config_without_a_region_says_how_to_set_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    assert cli.main(["--config", str(empty), "config"]) == 1
    assert "no AWS region" in capsys.readouterr().err
    assert cli.main(["--config", str(tmp_path / "missing.toml"), "config"]) == 1
    assert "does not exist" in capsys.readouterr().err


# --- the README's walk-through -----------------------------------------------------------------


def _readme_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## SageMaker usage") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "no bash block in the README's SageMaker usage section"
    lines = [shlex.split(line, comments=True) for block in blocks for line in block.splitlines()]
    return [argv[3:] for argv in lines if argv[:3] == ["python", "-m", "ops"]]


README_COMMANDS = _readme_commands()


def test_the_readme_walks_through_every_command() -> None:
    used = {argv[0] for argv in README_COMMANDS}
    assert used >= {"role", "image", "upload", "train", "tune", "deploy", "invoke", "api", "batch", "teardown"}


@pytest.mark.parametrize("argv", README_COMMANDS, ids=" ".join)
def test_readme_command_lines_parse(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)  # exits (a failure here) on anything the parser refuses
    command = argv[1] if argv[0] == "--local" else argv[0]
    assert args.func is getattr(cli, f"_{command}")
    assert args.local == (argv[0] == "--local")
    if args.local:
        local.refuse_unsupported(command)  # the README shows only commands local mode runs
