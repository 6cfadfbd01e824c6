"""The SageMaker container contract: every ``/opt/ml`` path and config file lives here.

Nothing else in the package spells an ``/opt/ml`` path. ``SM_ROOT`` points the whole tree
elsewhere (local runs, tests). The JSON files under ``input/config`` are read directly: a
bring-your-own image gets no ``SM_*`` variables from the platform, so those are only a fallback.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textclf.errors import ConfigError

DEFAULT_ROOT = "/opt/ml"
ROOT_ENV = "SM_ROOT"
FAILURE_REASON_LIMIT = 1024  # DescribeTrainingJob.FailureReason shows this many characters


@dataclass(frozen=True)
class Paths:
    """Every path of the ``/opt/ml`` tree, rooted at ``root``."""

    root: Path

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def config_dir(self) -> Path:
        return self.input_dir / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def input_data_config_file(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    @property
    def resource_config_file(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def checkpoint_config_file(self) -> Path:
        return self.config_dir / "checkpointconfig.json"

    @property
    def data_dir(self) -> Path:
        return self.input_dir / "data"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def default_checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    def channel_dir(self, name: str) -> Path:
        return self.data_dir / name


def paths() -> Paths:
    """The contract's paths, honouring the ``SM_ROOT`` override."""
    return Paths(Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT)))


def _read_json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc


def read_hyperparameters(p: Paths | None = None) -> dict[str, str]:
    """``hyperparameters.json`` as a mapping of strings (SageMaker sends only strings)."""
    p = p or paths()
    data = _read_json(p.hyperparameters_file, None)
    if data is None:
        # Fallback for toolkit-style launches that pass hyperparameters in SM_HPS.
        data = json.loads(os.environ.get("SM_HPS", "{}"))
    if not isinstance(data, dict):
        raise ConfigError(f"{p.hyperparameters_file} must hold a JSON object of name -> value")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def read_input_data_config(p: Paths | None = None) -> dict[str, dict[str, Any]]:
    """``inputdataconfig.json``: channel name -> its settings (ContentType, TrainingInputMode...)."""
    p = p or paths()
    data = _read_json(p.input_data_config_file, {})
    if not isinstance(data, dict):
        raise ConfigError(f"{p.input_data_config_file} must hold a JSON object")
    return data


def channels(p: Paths | None = None) -> dict[str, Path]:
    """Channels present on disk (File/FastFile mode): name -> directory."""
    p = p or paths()
    if not p.data_dir.is_dir():
        return {}
    return {d.name: d for d in sorted(p.data_dir.iterdir()) if d.is_dir()}


@dataclass(frozen=True)
class ResourceConfig:
    """The cluster as SageMaker describes it in ``resourceconfig.json``."""

    current_host: str = "algo-1"
    hosts: list[str] = field(default_factory=lambda: ["algo-1"])
    network_interface_name: str | None = None

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def master(self) -> str:
        return self.hosts[0]

    @property
    def is_distributed(self) -> bool:
        return len(self.hosts) > 1


def read_resource_config(p: Paths | None = None) -> ResourceConfig:
    p = p or paths()
    data = _read_json(p.resource_config_file, {})
    if not data:
        return ResourceConfig()
    hosts = sorted(data.get("hosts") or [data.get("current_host", "algo-1")])
    current = data.get("current_host", hosts[0])
    if current not in hosts:
        raise ConfigError(f"{p.resource_config_file}: current_host {current!r} is not in hosts {hosts}")
    return ResourceConfig(current, hosts, data.get("network_interface_name"))


def checkpoint_dir(p: Paths | None = None) -> Path:
    """Where checkpoints go: ``checkpointconfig.json``'s LocalPath, else ``/opt/ml/checkpoints``."""
    p = p or paths()
    data = _read_json(p.checkpoint_config_file, {})
    local = data.get("LocalPath") if isinstance(data, dict) else None
    if local and os.environ.get(ROOT_ENV) and Path(local).is_absolute():
        # Under an SM_ROOT override, keep a LocalPath below /opt/ml inside the override.
        try:
            return p.root / Path(local).relative_to(DEFAULT_ROOT)
        except ValueError:
            return Path(local)
    return Path(local) if local else p.default_checkpoint_dir


def resolve_host(host: str, attempts: int = 30, delay_s: float = 1.0) -> str:
    """Resolve a cluster hostname, retrying: SageMaker's DNS entries may appear late."""
    for attempt in range(attempts):
        try:
            return socket.gethostbyname(host)
        except socket.gaierror:
            if attempt == attempts - 1:
                raise ConfigError(f"cannot resolve host {host!r} after {attempts} attempts") from None
            time.sleep(delay_s)
    raise AssertionError("unreachable")


def write_failure(reason: str, details: str = "", p: Paths | None = None) -> Path:
    """Write the failure file: the human reason on the first line, details (a traceback) after."""
    p = p or paths()
    p.output_dir.mkdir(parents=True, exist_ok=True)
    first = " ".join(reason.split())[:FAILURE_REASON_LIMIT] or "training failed"
    text = first + "\n" + (("\n" + details.rstrip() + "\n") if details else "")
    p.failure_file.write_text(text, encoding="utf-8")
    return p.failure_file
