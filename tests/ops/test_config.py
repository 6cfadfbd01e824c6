"""The one configuration: file, environment overrides, validation, and no account ids anywhere in ops/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ops.config import ConfigError, load, load_ranges_file

OPS = Path(__file__).resolve().parents[2] / "ops"


def test_file_then_environment(config_path: Path) -> None:
    env = {
        "TEXTCLF_TRAINING_INSTANCE_TYPE": "ml.p4d.24xlarge",
        "TEXTCLF_TRAINING_SPOT": "False",
        "TEXTCLF_ENDPOINT_AUTOSCALING_MAX_INSTANCES": "7",
        "TEXTCLF_API_THROTTLE_RATE": "2.5",
    }
    cfg = load(config_path, env=env)
    assert cfg.aws.region == "eu-west-1"  # from the file
    assert cfg.training.instance_type == "ml.p4d.24xlarge"
    assert cfg.training.spot is False
    assert cfg.endpoint.autoscaling.max_instances == 7
    assert cfg.api.throttle_rate == 2.5
    assert cfg.training.hyperparameters["labels"] == ["neg", "pos"]


def test_region_falls_back_to_aws_variables(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    assert load(empty, env={"AWS_REGION": "ap-south-1"}).aws.region == "ap-south-1"
    assert load(empty, env={"AWS_REGION": "x", "TEXTCLF_AWS_REGION": "us-west-2"}).aws.region == "us-west-2"


def test_config_path_from_environment(config_path: Path) -> None:
    assert load(env={"TEXTCLF_OPS_CONFIG": str(config_path)}).endpoint.name == "textclf-test"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[training]\ninstance_typ = 'x'\n", {}, "unknown setting"),
        ("[training]\ninstance_count = 'two'\n", {}, "training.instance_count: expected int"),
        ("", {"TEXTCLF_TRAINING_SPOT": "maybe"}, "expected a boolean"),
        ("", {"TEXTCLF_TRAINING_INSTANCE_COUNT": "x"}, "expected int"),
        ("[training]\nmax_run_s = 100\nmax_wait_s = 50\n", {}, "max_wait_s"),
        ("[endpoint]\nname = 'TextClf'\n", {}, "lower-case"),
        ("[endpoint]\nstartup_health_check_timeout_s = 30\n", {}, "60..3600"),
        ("[api]\nauth = 'NONE'\n", {}, "API_KEY or AWS_IAM"),
        ("[batch]\nmax_concurrent_transforms = 20\nmax_payload_mb = 6\n", {}, "<= 100"),
        # what SageMaker or the container would refuse only after the money is spent
        ("[training]\ninput_mode = 'Pipe'\n", {}, "training.input_mode 'Pipe': the container reads"),
        ("", {"TEXTCLF_TRAINING_INPUT_MODE": "Pipe"}, "training.input_mode 'Pipe'"),
        ("[tuning]\nstrategy = 'Hyperband'\n", {}, "tuning.early_stopping 'Auto' with tuning.strategy 'Hyperband'"),
        ("", {"TEXTCLF_TUNING_STRATEGY": "Hyperband"}, "tuning.early_stopping 'Auto' with tuning.strategy"),
        ("[tuning]\nstrategy = 'Evolutionary'\n", {}, "tuning.strategy 'Evolutionary' must be one of"),
        ("[tuning]\nearly_stopping = 'On'\n", {}, "tuning.early_stopping must be Auto or Off"),
        ("[batch]\nmax_payload_mb = 101\nmax_concurrent_transforms = 0\n", {}, "batch.max_payload_mb must be within"),
    ],
)
def test_bad_settings_name_themselves(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(path, env=env)


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("[training]\ninput_mode = 'FastFile'\n", {}),
        ("[tuning]\nstrategy = 'Hyperband'\nearly_stopping = 'Off'\n", {}),
        ("", {"TEXTCLF_TUNING_STRATEGY": "Hyperband", "TEXTCLF_TUNING_EARLY_STOPPING": "Off"}),
        ("[tuning]\nstrategy = 'Grid'\n", {}),
        ("[batch]\nmax_payload_mb = 100\nmax_concurrent_transforms = 1\n", {}),
        ("[batch]\nmax_payload_mb = 0\nmax_concurrent_transforms = 4\n", {}),  # chunked: serve caps it at 100 MB
    ],
)
def test_supported_settings_load(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(text, encoding="utf-8")
    load(path, env=env)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml", env={})


def test_example_config_and_ranges_load() -> None:
    cfg = load(OPS / "config.example.toml", env={})
    assert cfg.tuning.ranges["learning_rate"]["scaling"] == "Logarithmic"
    ranges = load_ranges_file(OPS / "ranges.example.toml")
    assert set(ranges) == {"learning_rate", "batch_size", "epochs"}


def test_no_account_id_in_ops_sources() -> None:
    """Account ids come from STS at run time, never from the code, templates or example config
    (local mode's all-zero placeholder, ``ops.local.LOCAL_ACCOUNT``, is no account)."""
    account = re.compile(r"(?<![\d.])(?!0{12})\d{12}(?![\d.])")
    offenders = [
        f"{p.relative_to(OPS)}: {m.group()}"
        for p in OPS.rglob("*")
        if p.suffix in (".py", ".yaml", ".toml", ".json")
        for m in account.finditer(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
