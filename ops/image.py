"""Build the image variants and push them to ECR: repository created if missing, login with an ECR
token. Which variants, their tags and build arguments: ``ops.variants``; by default the ones the
configured training instance type and serving need.

Docker runs as a subprocess (``docker`` on PATH, or ``$DOCKER``). The registry password goes to
``docker login`` on standard input, never on the command line where ``ps`` would show it.

SageMaker runs only images whose manifest is a Docker image manifest v2 schema 2; it refuses an OCI
image index or manifest ("Unsupported manifest media type"). BuildKit through buildx >= 0.10 (what
``docker build`` is on Docker 23+ and Docker Desktop) attaches a provenance attestation by default,
which turns the pushed image into an OCI index, and the containerd image store keeps what BuildKit
made. So where ``docker buildx version`` works, each variant is built with ``docker buildx build
--provenance=false --sbom=false --output type=docker,oci-mediatypes=false`` (loaded into the daemon,
Docker media types, no attestations); elsewhere (no buildx, or ``DOCKER_BUILDKIT=0``) with the
classic ``docker build``. After ``docker push`` the registry is asked what it holds under the tag:
anything but a schema 2 manifest is refused, and ``pushed <uri>@<digest>`` names what was pushed.

Tags are immutable by default (``image.immutable_tags``: the repository is created with, or switched to,
``imageTagMutability=IMMUTABLE``), so every build needs a tag of its own: with ``image.tag`` empty (the
default) each run makes one, ``<commit>-<UTC time>`` (:func:`new_tag`), and prints it. A tag ECR already
holds is refused before anything is built. Jobs never run a tag: ``Aws.image_uri`` looks up the digest
ECR holds under it and the job gets ``<repository>@sha256:...``.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ops import variants
from ops.aws import LOCAL_IMAGE_TAG, Aws, OpsError
from ops.config import ConfigError, ImageSection, check_image_tag

SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"  # the one SageMaker runs
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# Every manifest type a lookup should accept, so that the registry answers with what it holds.
MANIFEST_TYPES = (SCHEMA2, OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST)

# buildx 0.10 added provenance attestations (on by default) and the --provenance/--sbom flags.
ATTESTATIONS_SINCE = (0, 10)
BUILDX_OUTPUT = "type=docker,oci-mediatypes=false"  # load into the daemon, Docker media types
FIX = (
    "build it with `docker buildx build --provenance=false --sbom=false --output "
    f"{BUILDX_OUTPUT}` (what `ops image` runs where `docker buildx version` works) or with the classic "
    "builder (DOCKER_BUILDKIT=0), for one platform (image.platform), and push it again"
)

_PUSHED_DIGEST = re.compile(r"^(?P<tag>\S+): digest: (?P<digest>sha256:[0-9a-f]{64}) size: \d+\s*$", re.MULTILINE)
_VERSION = re.compile(r"\bv?(\d+)\.(\d+)")


def _docker(args: Sequence[str], stdin: bytes | None = None, capture: bool = False) -> str:
    """Run docker; with ``capture``, its standard output is shown as it comes and returned."""
    cmd = [os.environ.get("DOCKER", "docker"), *args]
    shown = " ".join(cmd)
    try:
        if not capture:
            subprocess.run(cmd, input=stdin, check=True)
            return ""
        lines: list[str] = []
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                lines.append(line)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, cmd)
        return "".join(lines)
    except FileNotFoundError:
        raise OpsError(f"{cmd[0]} not found: install Docker or set $DOCKER") from None
    except subprocess.CalledProcessError as exc:
        raise OpsError(f"`{shown}` failed with exit code {exc.returncode}") from None


@dataclass(frozen=True)
class Builder:
    """How the images are built: ``docker buildx build`` (``buildx`` is its version) or the classic
    ``docker build`` (``buildx`` None, ``why`` says why)."""

    buildx: tuple[int, int] | None
    why: str = ""

    def describe(self) -> str:
        if self.buildx is None:
            return f"classic `docker build` ({self.why})"
        flags = "--provenance=false --sbom=false " if self.buildx >= ATTESTATIONS_SINCE else ""
        return f"`docker buildx build {flags}--output {BUILDX_OUTPUT}` (buildx {self.buildx[0]}.{self.buildx[1]})"

    def command(
        self, image: ImageSection, dockerfile: Path, context: Path, uri: str, variant: variants.Variant
    ) -> list[str]:
        """The docker arguments that build ``variant`` as ``uri`` into the local daemon."""
        args = ["build"]
        if self.buildx is not None:
            args = ["buildx", "build"]
            if self.buildx >= ATTESTATIONS_SINCE:
                args += ["--provenance=false", "--sbom=false"]
            args += ["--output", BUILDX_OUTPUT]
        args += ["--file", str(dockerfile), "--tag", uri]
        if image.platform:
            args += ["--platform", image.platform]
        args += variant.docker_args()
        for key, value in sorted(image.build_args.items()):
            args += ["--build-arg", f"{key}={value}"]
        return [*args, str(context)]


def detect_builder() -> Builder:
    """buildx where ``docker buildx version`` answers (unless ``DOCKER_BUILDKIT=0`` asks for the
    classic builder), else the classic builder."""
    if os.environ.get("DOCKER_BUILDKIT", "").strip().lower() in {"0", "false"}:
        return Builder(None, "DOCKER_BUILDKIT=0")
    cmd = [os.environ.get("DOCKER", "docker"), "buildx", "version"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return Builder(None, "`docker buildx version` did not answer")
    if proc.returncode != 0:
        return Builder(None, "no buildx: `docker buildx version` failed")
    # "github.com/docker/buildx v0.12.1 30feaa1", "github.com/docker/buildx 0.10.2+ds1 ...": a version
    # that cannot be read is taken as a recent one (attestations on by default).
    found = _VERSION.search(proc.stdout)
    return Builder((int(found[1]), int(found[2])) if found else (99, 0))


@dataclass(frozen=True)
class Manifest:
    """What a registry holds under a tag: the manifest's media type and digest."""

    media_type: str
    digest: str


class Registry(Protocol):
    """Where the images go: ECR (:class:`Ecr`) for SageMaker."""

    def repository(self) -> str:
        """The repository's URI (``host/name``), created if missing."""
        ...

    def login(self) -> None:
        """Log docker in to the registry."""
        ...

    def manifest(self, uri: str) -> Manifest:
        """What the registry holds under ``uri``'s tag (``host/name:tag``)."""
        ...


IMMUTABLE = "IMMUTABLE"
# ECR's settings under which a pushed tag cannot be moved (the _WITH_EXCLUSION one: except the tags its
# filters name, which its owner chose; ops leaves those filters alone).
IMMUTABLE_SETTINGS = (IMMUTABLE, "IMMUTABLE_WITH_EXCLUSION")


def ensure_repository(aws: Aws) -> str:
    """The repository's URI, creating it (scan on push, tags immutable unless ``image.immutable_tags`` is
    false) when missing. With ``image.immutable_tags``, an existing repository whose tags can be moved is
    switched to immutable tags; the switch is never made the other way."""
    ecr = aws.client("ecr")
    name = aws.cfg.image.repository
    immutable = aws.cfg.image.immutable_tags
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        repo = ecr.create_repository(
            repositoryName=name,
            imageTagMutability=IMMUTABLE if immutable else "MUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"},
            tags=[{"Key": "project", "Value": aws.cfg.project}],
        )["repository"]
        print(f"created ECR repository {repo['repositoryUri']} ({'immutable' if immutable else 'mutable'} tags)")
        return str(repo["repositoryUri"])
    current = str(repo.get("imageTagMutability", "MUTABLE"))
    if immutable and current not in IMMUTABLE_SETTINGS:
        ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability=IMMUTABLE)
        print(
            f"ECR repository {repo['repositoryUri']}: tags made immutable (was {current}; image.immutable_tags "
            "= false keeps a repository as it is)"
        )
    return str(repo["repositoryUri"])


def _git(context: Path, *args: str) -> str | None:
    """``git -C context args...``'s output, or None where git or the repository is missing."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(context), *args], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def new_tag(context: Path, now: datetime | None = None) -> str:
    """A tag of its own for one build: ``<commit>-<UTC time>`` (the build context's git commit, 12 hex
    digits, ``-dirty`` added when the working tree differs from it), ``build-<UTC time>`` outside git.
    The time makes it unique per build: a rebuild of one commit is a new image (and an immutable tag
    cannot be pushed twice)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    commit = _git(context, "rev-parse", "--short=12", "HEAD")
    if not commit:
        return f"build-{stamp}"
    dirty = _git(context, "status", "--porcelain")
    return f"{commit}{'-dirty' if dirty else ''}-{stamp}"


def refuse_existing_tags(aws: Aws, uris: Sequence[str]) -> None:
    """Before building: a tag ECR already holds is refused where tags are immutable (the push would fail
    after the build), and said where it would be moved."""
    ecr = aws.client("ecr")
    for uri in uris:
        name, tag = _name_and_tag(uri)
        try:
            detail = ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])["imageDetails"][0]
        except ecr.exceptions.ImageNotFoundException:
            continue
        if aws.cfg.image.immutable_tags:
            raise OpsError(
                f"ECR already holds {uri} ({detail['imageDigest']}) and its tags are immutable: a tag names one "
                "image for good. Leave image.tag empty (and no --tag) for a new tag, or choose another; jobs "
                "already run that image by its digest"
            )
        print(f"{uri} names {detail['imageDigest']} in ECR; this push moves the tag (image.immutable_tags = false)")


def login(aws: Aws) -> str:
    """``docker login`` to the account's registry with a 12-hour ECR token; returns the registry."""
    data = aws.client("ecr").get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    registry = data["proxyEndpoint"].removeprefix("https://")
    _docker(["login", "--username", user, "--password-stdin", registry], stdin=password.encode())
    return registry


class Ecr:
    """The account's ECR registry: the repository of ``image.repository``."""

    def __init__(self, aws: Aws) -> None:
        self.aws = aws

    def repository(self) -> str:
        return ensure_repository(self.aws)

    def login(self) -> None:
        login(self.aws)

    def manifest(self, uri: str) -> Manifest:
        ecr = self.aws.client("ecr")
        name, tag = _name_and_tag(uri)
        try:
            detail = ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])["imageDetails"][0]
        except ecr.exceptions.ImageNotFoundException:
            raise OpsError(f"ECR holds no image {uri} after `docker push`") from None
        return Manifest(str(detail.get("imageManifestMediaType", "")), str(detail["imageDigest"]))


def _name_and_tag(uri: str) -> tuple[str, str]:
    """``host/name:tag`` -> (``name``, ``tag``)."""
    repository, _, tag = uri.rpartition(":")
    return repository.split("/", 1)[1], tag


def check_manifest(uri: str, manifest: Manifest) -> None:
    """Refuse what SageMaker would refuse: anything but a Docker v2 schema 2 image manifest."""
    if manifest.media_type == SCHEMA2:
        return
    if manifest.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        what = "an image index (BuildKit's provenance/SBOM attestations, or more than one platform)"
    elif manifest.media_type == OCI_MANIFEST:
        what = "an OCI image manifest (BuildKit's OCI media types, e.g. from the containerd image store)"
    else:
        what = "not a Docker v2 schema 2 image manifest"
    raise OpsError(
        f"{uri} is stored as {manifest.media_type or 'an unreported media type'} ({manifest.digest}): {what}. "
        f"SageMaker runs only {SCHEMA2} and refuses it with 'Unsupported manifest media type'; {FIX}"
    )


def push_image(uri: str, registry: Registry) -> str:
    """``docker push`` one image, then check what the registry holds under its tag; returns
    ``uri@digest``."""
    output = _docker(["push", uri], capture=True)
    held = registry.manifest(uri)
    check_manifest(uri, held)
    tag = uri.rpartition(":")[2]
    reported = [m["digest"] for m in _PUSHED_DIGEST.finditer(output) if m["tag"] == tag]
    if reported and reported[-1] != held.digest:
        raise OpsError(
            f"`docker push {uri}` pushed {reported[-1]} but the registry holds {held.digest} under that tag: "
            "did something else push the same tag? Push again"
        )
    pinned = f"{uri}@{held.digest}"
    print(f"pushed {pinned} ({held.media_type})")
    return pinned


def build_and_push(
    aws: Aws,
    tag: str | None = None,
    push: bool = True,
    variant_names: list[str] | None = None,
    registry: Registry | None = None,
) -> dict[str, str]:
    """Build each variant (default: the ones the configuration needs) from the configured Dockerfile
    and push it to ``registry`` (default: ECR); returns the image URI (``repository:tag``) of each
    variant built. The tag: ``tag``, else ``image.tag``, else a new one (:func:`new_tag`; ``local`` for
    ``ops --local``); ``image.tag`` is set to it for the rest of the command."""
    image = aws.cfg.image
    configured = image.tag
    if tag:
        check_image_tag(tag, "--tag")
        image.tag = tag
    if image.uri:
        raise OpsError("image.uri is set: that image is used as is; unset it to build and push to ECR")
    clashing = sorted(variants.VARIANT_ARGS & set(image.build_args))
    if clashing:
        raise ConfigError(f"image.build_args {', '.join(clashing)}: the variant sets it; choose one with --variant")
    chosen = variants.chosen(variant_names, aws.cfg)
    context = Path(image.context)
    dockerfile = context / image.dockerfile if not Path(image.dockerfile).is_absolute() else Path(image.dockerfile)
    if not dockerfile.is_file():
        raise OpsError(f"no Dockerfile at {dockerfile}")
    if not image.tag:
        image.tag = LOCAL_IMAGE_TAG if aws.local else new_tag(context)
    target = registry if registry is not None else Ecr(aws)
    repo_uri = target.repository() if push else f"{image.repository}"
    uris = {v.name: f"{repo_uri}:{v.tag(image.tag)}" for v in chosen}
    if push and registry is None:
        refuse_existing_tags(aws, list(uris.values()))
    builder = detect_builder()
    print("building " + ", ".join(f"{v.name} ({v.summary}) as {uris[v.name]}" for v in chosen))
    print(f"with {builder.describe()}")
    for variant in chosen:
        _docker(builder.command(image, dockerfile, context, uris[variant.name], variant))
    if push:
        target.login()
        for uri in uris.values():
            push_image(uri, target)
    if image.tag != configured and not aws.local:
        print(
            f"image tag {image.tag}: train, tune, deploy and batch need it as image.tag "
            f"(export TEXTCLF_IMAGE_TAG={image.tag}, or image.tag in the config); they run each variant by its digest"
        )
    return uris
