"""Docker engine helpers for the container tests (the fixtures are in tests/container/conftest.py).

A real Docker engine, with nothing installed by the tests themselves.

``dockerd`` (Debian's docker.io, installed by ``.ci/run``) is started in the background with its
own data root, exec root, pid file and socket, so it neither needs nor touches a system daemon.
Bridge networking and iptables may be missing on CI machines, so the daemon runs with
``--iptables=false --bridge=none`` and containers use ``--network host`` or ``--network none``.

No image registry is reachable, so the base image is made here: ``debootstrap --variant=minbase
bookworm`` imported as ``textclf-base:bookworm`` and passed to the Dockerfile as ``BASE_IMAGE``.
Both the daemon's data root (docker's layer cache) and the base tarball live in a cache folder,
``/var/tmp/textclf-docker`` (``TEXTCLF_DOCKER_CACHE``), so only the first run is cold.

Torch: inside a build, the host's local wheel folder is invisible and PyPI's torch is a multi-GB
CUDA build, so the build context gets the CPU wheel from ``/opt/wheels`` (or PIP_FIND_LINKS, or
``TEXTCLF_WHEELS_DIR``) in ``wheels/`` and the PyTorch index is switched off.

Environment knobs: ``TEXTCLF_DOCKER_HOST`` uses an existing daemon instead of starting one;
``TEXTCLF_DOCKER_CACHE``; ``TEXTCLF_DEBIAN_MIRROR``; ``TEXTCLF_BASE_REFRESH=1`` rebuilds the base;
``TEXTCLF_RECORD_RESULTS=1`` writes ``bench/results/image-sizes.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("TEXTCLF_DOCKER_CACHE", "/var/tmp/textclf-docker"))
BASE_IMAGE = "textclf-base:bookworm"
FULL_IMAGE = "textclf:test"
SERVE_IMAGE = "textclf:test-serve"
DEBIAN_MIRROR = os.environ.get("TEXTCLF_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RESULTS_FILE = REPO_ROOT / "bench" / "results" / "image-sizes.json"

# What debootstrap leaves in sources.list is the release alone; an image needs its updates too.
SOURCES_LIST = """\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
"""
# Approximates debian:bookworm-slim (debuerreotype's "slimify"), so image sizes measured on this
# base compare with images built on the real one: no docs, manuals or translations.
DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
"""
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def system_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PATH", "")
    env["PATH"] = f"{path}:{SYSTEM_PATH}" if path else SYSTEM_PATH
    return env


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


@dataclass
class Docker:
    """The docker CLI bound to one daemon."""

    host: str
    cli: str
    build_seconds: dict[str, float] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = system_env()
        env["DOCKER_HOST"] = self.host
        env["DOCKER_BUILDKIT"] = "0"  # the legacy builder: no buildx plugin needed
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.cli, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                f"\n--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False).returncode == 0

    def image_size(self, ref: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())

    def inspect(self, ref: str) -> dict:
        return json.loads(self.run("inspect", ref).stdout)[0]

    def build(self, context: Path, tag: str, args: Sequence[str], log: Path, timeout: float = 1800) -> None:
        cmd = [self.cli, "build", "--network", "host", *args, "-t", tag, str(context)]
        start = time.monotonic()
        with log.open("w") as out:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            proc = subprocess.run(cmd, env=self.env(), stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        self.build_seconds[tag] = time.monotonic() - start
        if proc.returncode != 0:
            pytest.fail(f"docker build of {tag} failed ({log}):\n{tail(log)}", pytrace=False)


class Dockerd:
    """A dockerd of our own, everything under ``CACHE_DIR``; stopped again at the end."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.pidfile = cache / "dockerd.pid"
        self.socket = cache / "docker.sock"
        self.log = cache / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.adopted_pid: int | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def _leftover_pid(self) -> int | None:
        """A dockerd a previous, interrupted run of these tests left on this data root."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if cmdline and cmdline[0].endswith(b"dockerd") and str(self.cache).encode() in b" ".join(cmdline):
            return pid
        return None

    def start(self, cli: str) -> Docker:
        dockerd = shutil.which("dockerd", path=system_env()["PATH"])
        if dockerd is None:
            pytest.fail(
                "dockerd not found: the container tests need Debian's docker.io (apt-get install docker.io)",
                pytrace=False,
            )
        docker = Docker(self.host, cli)
        leftover = self._leftover_pid()
        if leftover is not None and docker.run("version", check=False, timeout=20).returncode == 0:
            # We hold the cache lock, so its owner is gone: take it over and stop it at the end.
            self.adopted_pid = leftover
            return docker
        cmd = [
            dockerd,
            "--data-root", str(self.cache / "data"),
            "--exec-root", str(self.cache / "exec"),
            "--pidfile", str(self.pidfile),
            "-H", self.host,
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            *os.environ.get("TEXTCLF_DOCKERD_ARGS", "").split(),
        ]  # fmt: skip
        with self.log.open("ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=system_env(), start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"dockerd exited with {self.proc.returncode} while starting; {self.log}:\n{tail(self.log)}",
                    pytrace=False,
                )
            if docker.run("version", check=False, timeout=20).returncode == 0:
                return docker
            time.sleep(0.5)
        self.stop()
        pytest.fail(
            f"dockerd did not answer on {self.socket} within 60 s; {self.log}:\n{tail(self.log)}", pytrace=False
        )
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.adopted_pid is not None:
            try:
                os.kill(self.adopted_pid, signal.SIGTERM)
                for _ in range(60):
                    os.kill(self.adopted_pid, 0)
                    time.sleep(0.5)
            except ProcessLookupError:
                pass


def debootstrap_base(tarball: Path) -> None:
    """debootstrap a minimal bookworm and pack it as the tarball ``docker import`` takes."""
    debootstrap = shutil.which("debootstrap", path=system_env()["PATH"])
    if debootstrap is None:
        pytest.fail("debootstrap not found: apt-get install debootstrap", pytrace=False)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE_DIR))
    rootfs = work / "rootfs"
    log = CACHE_DIR / "debootstrap.log"
    try:
        with log.open("w") as out:
            proc = subprocess.run(
                [debootstrap, "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
                stdout=out, stderr=subprocess.STDOUT, env=system_env(), timeout=1200, check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            pytest.fail(f"debootstrap failed ({log}):\n{tail(log)}", pytrace=False)
        (rootfs / "etc/apt/sources.list").write_text(SOURCES_LIST)
        (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(DPKG_SLIM)
        for folder in ("usr/share/man", "usr/share/info", "usr/share/locale", "var/lib/apt/lists"):
            for child in (rootfs / folder).glob("*"):
                if child.name != "lock":
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        if HOST_CA_BUNDLE.is_file():
            # Trust what this machine trusts: where HTTPS goes through an inspecting proxy, pip in
            # the build needs its CA. update-ca-certificates (run when the Dockerfile installs
            # ca-certificates) adds the files of this folder to the image's bundle.
            ca_dir = rootfs / "usr/local/share/ca-certificates"
            ca_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HOST_CA_BUNDLE, ca_dir / "host-ca-bundle.crt")
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def torch_wheel() -> Path | None:
    """The local CPU torch wheel matching requirements.txt and the image's Python (3.11)."""
    match = re.search(r"^torch==(\S+)", (REPO_ROOT / "requirements.txt").read_text(), re.MULTILINE)
    if match is None:
        return None
    dirs = [os.environ.get("TEXTCLF_WHEELS_DIR", ""), *os.environ.get("PIP_FIND_LINKS", "").split(), "/opt/wheels"]
    for folder in filter(None, dirs):
        wheels = sorted(Path(folder).glob(f"torch-{match.group(1)}+cpu-cp311-cp311-*x86_64.whl"))
        if wheels:
            return wheels[-1]
    return None
