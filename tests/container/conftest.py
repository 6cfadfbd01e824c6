"""Fixtures of the container tests: a dockerd of our own, the Debian base, the two images.

See scripts/docker_images.py for how and why; the knobs (environment variables) are listed there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import docker_engine as engine
from support.docker_engine import CACHE_DIR, FULL_IMAGE, SERVE_IMAGE, Docker, engine_failures_fail


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    """The docker CLI talking to a running daemon: ours, or TEXTCLF_DOCKER_HOST's."""
    with engine_failures_fail(), engine.engine() as client:
        yield client


@pytest.fixture(scope="session")
def base_image(docker: Docker) -> str:
    """``textclf-base:bookworm``: debootstrap's minbase, imported once and kept in the cache."""
    with engine_failures_fail():
        return engine.base_image(docker)


@pytest.fixture(scope="session")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The repository's files as git sees them (tracked + untracked, not ignored) and wheels/."""
    context = tmp_path_factory.mktemp("context")
    return context, engine.build_context(context)


@pytest.fixture(scope="session")
def serve_image(docker: Docker, base_image: str, build_context: tuple[Path, list[str]]) -> str:
    """The slim ``serve`` target (no torch), built from the Debian base."""
    context, args = build_context
    with engine_failures_fail():
        docker.build(
            context, SERVE_IMAGE, ["--build-arg", f"BASE_IMAGE={base_image}", "--target", "serve", *args],
            CACHE_DIR / "build-serve.log",
        )  # fmt: skip
    return SERVE_IMAGE


@pytest.fixture(scope="session")
def full_image(docker: Docker, base_image: str, build_context: tuple[Path, list[str]]) -> str:
    """The default (last) target: train + serve with CPU torch."""
    context, args = build_context
    with engine_failures_fail():
        docker.build(
            context, FULL_IMAGE, ["--build-arg", f"BASE_IMAGE={base_image}", *args], CACHE_DIR / "build-full.log"
        )
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
