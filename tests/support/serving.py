"""Helpers for the serving tests: tiny-model constants, really exported tiny models, SM_ROOT trees,
and the real ``textclf serve`` (nginx -> gunicorn -> Flask -> onnxruntime) run as a child process.

Each stack runs in its own session (process group), so ``kill()`` takes nginx, gunicorn and all
their workers down even if a test fails half-way; stdout and stderr go to files (opened for
append: nginx reopens /dev/stdout itself and must not overwrite the app's lines).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests

from support.tiny_model import DEFAULT_WORDS, make_tiny_model
from textclf.contract.model_dir import seal

SINGLE_LABELS = ["negative", "neutral", "positive"]
MULTI_LABELS = ["sports", "politics", "tech", "health"]
EXTRA_WORDS = "team game vote law phone code doctor sleep win lose new old fast slow".split()
WORDS = [*DEFAULT_WORDS, *EXTRA_WORDS]

CLEARED_PREFIXES = ("SAGEMAKER_", "TEXTCLF_", "MODEL_SERVER_")


def sharpen_head(hf_dir: Path, factor: float = 60.0) -> None:
    """Scale the random classifier head so that scores spread out (a fresh head gives near-uniform
    probabilities, where comparisons of labels and scores would prove little)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(hf_dir)
    with torch.no_grad():
        model.classifier.weight.mul_(factor)
        model.classifier.bias.normal_(0.0, 0.5)
    model.save_pretrained(hf_dir)


def export_serving_model(work: Path, name: str, labels: list[str], **options: object) -> Path:
    """A tiny random BERT over ``WORDS`` with a sharpened head, exported to INT8 as ``work/name``
    (``multi_label=True`` for a multi-label model; other ``options`` go to ``ExportOptions``)."""
    from textclf.export.options import ExportOptions
    from textclf.export.pipeline import export_model_dir

    problem_type = "multi_label" if options.pop("multi_label", False) else "single_label"
    hf = make_tiny_model(work / f"hf-{name}", labels=labels, words=WORDS, problem_type=problem_type, seed=3)
    sharpen_head(hf)
    out = work / name
    export_model_dir(hf, out, ExportOptions(keep_full_precision=False, max_seq_length=64, **options))  # type: ignore[arg-type]
    return out


def make_sm_root(model_dir: Path, root: Path, rules_code: str | None = None) -> Path:
    """An /opt/ml-shaped tree whose model/ is a copy of ``model_dir`` (plus ``code/rules.py``, sealed
    into the manifest as ``textclf seal`` does: serve refuses unlisted hooks)."""
    shutil.copytree(model_dir, root / "model")
    if rules_code is not None:
        code = root / "model" / "code"
        code.mkdir()
        (code / "rules.py").write_text(textwrap.dedent(rules_code), encoding="utf-8")
        seal(root / "model")
    return root


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc; no psutil in the venv)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class ServeProcess:
    def __init__(self, sm_root: Path, log_dir: Path, env: dict[str, str] | None = None, workers: int = 2) -> None:
        self.sm_root = sm_root
        self.port = free_port()
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / "serve.stdout"
        self.stderr_path = log_dir / "serve.stderr"
        base = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES)}
        self.env = base | {
            "SM_ROOT": str(sm_root),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> ServeProcess:
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "textclf.cli", "serve"],
                env=self.env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll /ping until 200; seconds since start. Fails with serve's stderr if it exits."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode} before it was ready:\n{self.stderr()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url("/ping"), timeout=2).status_code == 200:
                    return time.monotonic() - self.started_at
            time.sleep(0.05)
        raise AssertionError(f"serve not ready after {timeout} s:\n{self.stderr()}")

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the whole session: serve, nginx, gunicorn and every worker."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    # -- inspection -------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def child(self, name: str) -> int:
        """pid of serve's nginx or gunicorn master."""
        assert self.proc is not None
        for pid in children(self.proc.pid):
            if name in cmdline(pid):
                return pid
        raise AssertionError(f"no {name} under serve (pid {self.proc.pid})")

    def gunicorn_workers(self) -> list[int]:
        return [pid for pid in children(self.child("gunicorn")) if alive(pid)]
