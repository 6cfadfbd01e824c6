"""Each image holds exactly its lock: the ``pip list --format=freeze`` its build wrote into
/opt/program/pip-freeze.txt names the lock's packages at the lock's versions, textclf itself and the
venv's pip, and nothing else. bench/results/freeze-serve.txt and freeze-full.txt are those files of
the images built here (rewritten with ``TEXTCLF_RECORD_RESULTS=1``), for comparison with an
endpoint's image: ``docker run --rm --entrypoint cat IMAGE /opt/program/pip-freeze.txt``."""

from __future__ import annotations

import os

import pytest
from docker_images import FREEZE_FILES, LOCK_FILES, RESULTS_DIR, freeze_against_lock, image_freeze, record_freeze

from support.docker_engine import Docker

pytestmark = pytest.mark.container


@pytest.mark.parametrize("variant", ["serve", "cpu"])
def test_the_image_holds_exactly_its_lock(variant: str, docker: Docker, request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue("serve_image" if variant == "serve" else "full_image")
    freeze = image_freeze(docker, image)
    assert freeze_against_lock(freeze, LOCK_FILES[variant]) == []
    recorded = RESULTS_DIR / FREEZE_FILES[variant]
    if os.environ.get("TEXTCLF_RECORD_RESULTS") == "1":
        record_freeze(variant, freeze)
    assert recorded.is_file() and recorded.read_text() == freeze, (
        f"{recorded.relative_to(RESULTS_DIR.parents[1])} is not what {image} holds: "
        "rerun with TEXTCLF_RECORD_RESULTS=1 to record it"
    )


def test_the_full_image_is_the_serve_image_plus_training(docker: Docker, serve_image: str, full_image: str) -> None:
    """The full image is built on the serve image's venv: every package of the slim image is in
    the full one at the same version, so serving behaves the same in both."""
    serve = dict(line.split("==", 1) for line in image_freeze(docker, serve_image).split())
    full = dict(line.split("==", 1) for line in image_freeze(docker, full_image).split())
    assert {name: version for name, version in serve.items() if full.get(name) != version} == {}
    assert "torch" in full and "torch" not in serve
