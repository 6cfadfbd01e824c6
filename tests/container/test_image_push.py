"""``ops image``'s build and push against a real registry: the CNCF distribution registry (Debian's
``docker-registry``) on a free localhost port, pushed to by the real dockerd.

ECR is the one thing replaced: ``build_and_push`` takes the registry (:class:`ops.image.Registry`),
here one whose repository is on localhost, whose login is none (this registry asks for none) and
whose lookup is the Registry API's manifest GET. The build (the builder ops picks: buildx if the
docker CLI has it, else the classic builder), the push, the media-type check and the digest ops
prints are ops' own. The test then asks the registry itself, as a client that accepts every manifest
type, what it serves under the tag.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from ops import image
from ops.aws import Aws
from ops.config import OpsConfig
from support.docker_engine import Docker, system_env
from support.serving import free_port

pytestmark = pytest.mark.container

TAG = "push"
ACCEPT_ALL = ", ".join(image.MANIFEST_TYPES)  # schema 2, OCI manifest, OCI index, Docker manifest list


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """``127.0.0.1:<port>`` of a registry of our own (storage and config in tmp_path), stopped after.
    dockerd pushes to 127.0.0.0/8 over plain HTTP without being told (its default insecure range)."""
    exe = shutil.which("docker-registry", path=system_env()["PATH"])
    if exe is None:
        pytest.fail("docker-registry not found: apt-get install docker-registry (make system-deps)", pytrace=False)
    log_path = tmp_path / "registry.log"
    for _ in range(3):  # a port taken between choosing and binding: choose again
        address = f"127.0.0.1:{free_port()}"
        config = tmp_path / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry-data'}\n"
            f"http:\n  addr: {address}\n",
            encoding="utf-8",
        )
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if requests.get(f"http://{address}/v2/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        else:
            proc.kill()
            proc.wait(timeout=10)
            continue
        try:
            yield address
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return
    pytest.fail(f"docker-registry did not start; {log_path}:\n{log_path.read_text(errors='replace')[-4000:]}")


def _get_manifest(address: str, name: str, tag: str) -> requests.Response:
    response = requests.get(f"http://{address}/v2/{name}/manifests/{tag}", headers={"Accept": ACCEPT_ALL}, timeout=30)
    assert response.status_code == 200, f"{response.status_code}: {response.text[:500]}"
    return response


class LocalRegistry:
    """The seam: :class:`ops.image.Registry` for the registry above instead of ECR."""

    def __init__(self, address: str, name: str) -> None:
        self.address = address
        self.name = name
        self.lookups: list[str] = []

    def repository(self) -> str:
        return f"{self.address}/{self.name}"

    def login(self) -> None:
        """This registry has no authentication: nothing to log in to."""

    def manifest(self, uri: str) -> image.Manifest:
        self.lookups.append(uri)
        response = _get_manifest(self.address, self.name, uri.rpartition(":")[2])
        return image.Manifest(response.headers["Content-Type"], response.headers["Docker-Content-Digest"])


def test_ops_image_pushes_a_schema2_manifest_and_names_its_digest(
    docker: Docker,
    base_image: str,
    registry: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    name = f"textclf-push-{uuid.uuid4().hex[:12]}"
    context = tmp_path / "ctx"
    context.mkdir()
    # The serve variant's stage (--target serve) on the tests' Debian base; the marker makes the image new.
    (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS serve\nCOPY marker /marker\n")
    (context / "marker").write_text(name + "\n")
    cfg = OpsConfig()
    cfg.image.repository = name
    cfg.image.context = str(context)
    cfg.image.build_args = {"BASE_IMAGE": base_image}
    aws = Aws(cfg, session=boto3.Session(region_name="eu-west-1"))  # no AWS call: only its configuration is read

    # ops runs `$DOCKER` against the tests' dockerd, with the builder it finds (nothing forced).
    monkeypatch.setenv("DOCKER", docker.cli)
    monkeypatch.setenv("DOCKER_HOST", docker.host)
    monkeypatch.setenv("PATH", system_env()["PATH"])
    monkeypatch.delenv("DOCKER_BUILDKIT", raising=False)
    has_buildx = docker.run("buildx", "version", check=False).returncode == 0

    local = LocalRegistry(registry, name)
    uri = f"{registry}/{name}:{TAG}-serve"
    try:
        assert image.build_and_push(aws, tag=TAG, variant_names=["serve"], registry=local) == {"serve": uri}
        out = capfd.readouterr().out
        builder = "with `docker buildx build --provenance=false" if has_buildx else "with classic `docker build`"
        assert builder in out
        printed = re.findall(rf"^pushed {re.escape(uri)}@(sha256:[0-9a-f]{{64}}) \((\S+)\)$", out, re.MULTILINE)
        assert len(printed) == 1, out[-3000:]
        digest, media_type = printed[0]
        assert media_type == image.SCHEMA2
        assert local.lookups == [uri]  # looked up once, after the push

        # What the registry serves under the tag to a client that accepts an index or OCI as well.
        served = _get_manifest(registry, name, f"{TAG}-serve")
        assert served.headers["Content-Type"] == image.SCHEMA2
        assert served.headers["Docker-Content-Digest"] == digest
        assert "sha256:" + hashlib.sha256(served.content).hexdigest() == digest
        manifest = served.json()
        assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == image.SCHEMA2
        assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
        assert {layer["mediaType"] for layer in manifest["layers"]} == {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        assert len(manifest["layers"]) == 2  # the base's and the marker's
    finally:
        docker.run("rmi", uri, check=False)
