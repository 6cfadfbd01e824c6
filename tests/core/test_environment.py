"""The /opt/ml contract: paths under SM_ROOT, config files, failure file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textclf.contract import opt_ml as environment
from textclf.errors import ConfigError


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(environment.ROOT_ENV, str(tmp_path))
    (tmp_path / "input" / "config").mkdir(parents=True)
    return tmp_path


def write_config(root: Path, name: str, data: object) -> None:
    (root / "input" / "config" / name).write_text(json.dumps(data))


def test_root_override_moves_every_path(root: Path) -> None:
    p = environment.paths()
    for path in (p.hyperparameters_file, p.model_dir, p.failure_file, p.output_data_dir, p.channel_dir("train")):
        assert path.is_relative_to(root)
    assert p.model_dir == root / "model"
    assert p.failure_file == root / "output" / "failure"


def test_default_root_is_opt_ml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(environment.ROOT_ENV, raising=False)
    assert environment.paths().model_dir == Path("/opt/ml/model")


def test_hyperparameters_are_strings(root: Path) -> None:
    write_config(root, "hyperparameters.json", {"epochs": "3", "labels": ["a", "b"], "flag": True})
    assert environment.read_hyperparameters() == {"epochs": "3", "labels": '["a", "b"]', "flag": "true"}


def test_missing_hyperparameters_file_means_defaults(root: Path) -> None:
    assert environment.read_hyperparameters() == {}


def test_invalid_json_names_the_file(root: Path) -> None:
    (root / "input" / "config" / "hyperparameters.json").write_text("{epochs: 3")
    with pytest.raises(ConfigError, match=r"hyperparameters\.json is not valid JSON"):
        environment.read_hyperparameters()


def test_resource_config_rank_and_master(root: Path) -> None:
    write_config(root, "resourceconfig.json", {"current_host": "algo-2", "hosts": ["algo-2", "algo-1"]})
    rc = environment.read_resource_config()
    assert rc.hosts == ["algo-1", "algo-2"]
    assert (rc.rank, rc.master, rc.is_distributed) == (1, "algo-1", True)


def test_resource_config_rejects_unknown_current_host(root: Path) -> None:
    write_config(root, "resourceconfig.json", {"current_host": "algo-9", "hosts": ["algo-1"]})
    with pytest.raises(ConfigError, match="algo-9"):
        environment.read_resource_config()


def test_single_host_without_resource_config(root: Path) -> None:
    rc = environment.read_resource_config()
    assert (rc.rank, rc.is_distributed) == (0, False)


def test_checkpoint_dir_follows_checkpoint_config_under_override(root: Path) -> None:
    assert environment.checkpoint_dir() == root / "checkpoints"
    write_config(root, "checkpointconfig.json", {"LocalPath": "/opt/ml/checkpoints/run", "S3Uri": "s3://b/c"})
    assert environment.checkpoint_dir() == root / "checkpoints" / "run"


def test_channels_lists_directories(root: Path) -> None:
    for name in ("train", "validation"):
        (root / "input" / "data" / name).mkdir(parents=True)
    assert set(environment.channels()) == {"train", "validation"}


def test_failure_file_first_line_is_the_reason(root: Path) -> None:
    path = environment.write_failure("missing channel 'train'\nsecond line", "Traceback (most recent call last):\n...")
    lines = path.read_text().splitlines()
    assert lines[0] == "missing channel 'train' second line"
    assert "Traceback" in path.read_text()


def test_failure_reason_is_capped(root: Path) -> None:
    path = environment.write_failure("x" * 5000)
    assert len(path.read_text().splitlines()[0]) == environment.FAILURE_REASON_LIMIT
