"""Fixtures of the container tests: a dockerd of our own, the Debian base, the two images.

See tests/support/docker_engine.py for how and why; the knobs (environment variables) are listed there.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.docker_engine import (
    BASE_IMAGE,
    CACHE_DIR,
    FULL_IMAGE,
    REPO_ROOT,
    SERVE_IMAGE,
    Docker,
    Dockerd,
    debootstrap_base,
    system_env,
    torch_wheel,
)


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    """The docker CLI talking to a running daemon: ours, or TEXTCLF_DOCKER_HOST's."""
    cli = shutil.which("docker", path=system_env()["PATH"])
    if cli is None:
        pytest.fail("docker CLI not found: the container tests need Debian's docker.io", pytrace=False)
    if os.environ.get("TEXTCLF_DOCKER_HOST"):
        client = Docker(os.environ["TEXTCLF_DOCKER_HOST"], cli)
        client.run("version", timeout=30)
        yield client
        return
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # One test session at a time per cache: two daemons cannot share a data root.
    with (CACHE_DIR / "lock").open("w") as lock:
        deadline = time.monotonic() + 1800
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session has held {CACHE_DIR}/lock for 30 minutes", pytrace=False)
                time.sleep(2)
        daemon = Dockerd(CACHE_DIR)
        try:
            yield daemon.start(cli)
        finally:
            daemon.stop()


@pytest.fixture(scope="session")
def base_image(docker: Docker) -> str:
    """``textclf-base:bookworm``: debootstrap's minbase, imported once and kept in the cache."""
    refresh = os.environ.get("TEXTCLF_BASE_REFRESH") == "1"
    if docker.image_exists(BASE_IMAGE) and not refresh:
        return BASE_IMAGE
    tarball = CACHE_DIR / "base-bookworm.tar"
    if refresh or not tarball.is_file():
        start = time.monotonic()
        debootstrap_base(tarball)
        docker.build_seconds["debootstrap"] = time.monotonic() - start
    start = time.monotonic()
    with tarball.open("rb") as data:
        proc = subprocess.run(
            [docker.cli, "import", "--change", 'CMD ["/bin/bash"]', "-", BASE_IMAGE],
            stdin=data, env=docker.env(), capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, f"docker import failed: {proc.stderr}"
    docker.build_seconds["docker import"] = time.monotonic() - start
    return BASE_IMAGE


@pytest.fixture(scope="session")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The repository's files as git sees them (tracked + untracked, not ignored) and wheels/."""
    context = tmp_path_factory.mktemp("context")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file() or source.is_symlink():  # symlinks stay links, as in a checkout
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name, follow_symlinks=False)
    build_args: list[str] = []
    wheel = torch_wheel()
    if wheel is not None:
        (context / "wheels").mkdir(exist_ok=True)
        try:
            os.link(wheel, context / "wheels" / wheel.name)
        except OSError:
            shutil.copy2(wheel, context / "wheels" / wheel.name)
        build_args += ["--build-arg", "TORCH_INDEX_URL="]  # never wait on an unreachable index
    else:
        print("no local CPU torch wheel found; the build uses the Dockerfile's torch index", file=sys.stderr)
    return context, build_args


@pytest.fixture(scope="session")
def serve_image(docker: Docker, base_image: str, build_context: tuple[Path, list[str]]) -> str:
    """The slim ``serve`` target (no torch), built from the Debian base."""
    context, args = build_context
    docker.build(
        context, SERVE_IMAGE, ["--build-arg", f"BASE_IMAGE={base_image}", "--target", "serve", *args],
        CACHE_DIR / "build-serve.log",
    )  # fmt: skip
    return SERVE_IMAGE


@pytest.fixture(scope="session")
def full_image(docker: Docker, base_image: str, build_context: tuple[Path, list[str]]) -> str:
    """The default (last) target: train + serve with CPU torch."""
    context, args = build_context
    docker.build(context, FULL_IMAGE, ["--build-arg", f"BASE_IMAGE={base_image}", *args], CACHE_DIR / "build-full.log")
    return FULL_IMAGE


# Image sizes and build times, shown at the end of the run whatever pytest captured.
_REPORT: dict[str, object] = {}


@pytest.fixture(scope="session")
def report() -> dict[str, object]:
    return _REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _REPORT:
        return
    terminalreporter.section("container images")
    for key, value in _REPORT.items():
        terminalreporter.write_line(f"{key}: {value}")
