"""Build the image variants and push them to ECR: repository created if missing, login with an ECR
token. Which variants, their tags and build arguments: ``ops.variants``; by default the ones the
configured training instance type and serving need.

Docker runs as a subprocess (``docker`` on PATH, or ``$DOCKER``). The registry password goes to
``docker login`` on standard input, never on the command line where ``ps`` would show it.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ops import variants
from ops.aws import Aws, OpsError
from ops.config import ConfigError


def _docker(args: Sequence[str], stdin: bytes | None = None) -> None:
    cmd = [os.environ.get("DOCKER", "docker"), *args]
    shown = " ".join(cmd)
    try:
        subprocess.run(cmd, input=stdin, check=True)
    except FileNotFoundError:
        raise OpsError(f"{cmd[0]} not found: install Docker or set $DOCKER") from None
    except subprocess.CalledProcessError as exc:
        raise OpsError(f"`{shown}` failed with exit code {exc.returncode}") from None


def ensure_repository(aws: Aws) -> str:
    """The repository's URI, creating it (scan on push, immutable tags off) when missing."""
    ecr = aws.client("ecr")
    name = aws.cfg.image.repository
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        repo = ecr.create_repository(
            repositoryName=name,
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"},
            tags=[{"Key": "project", "Value": aws.cfg.project}],
        )["repository"]
        print(f"created ECR repository {repo['repositoryUri']}")
    return str(repo["repositoryUri"])


def login(aws: Aws) -> str:
    """``docker login`` to the account's registry with a 12-hour ECR token; returns the registry."""
    data = aws.client("ecr").get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    registry = data["proxyEndpoint"].removeprefix("https://")
    _docker(["login", "--username", user, "--password-stdin", registry], stdin=password.encode())
    return registry


def build_and_push(
    aws: Aws, tag: str | None = None, push: bool = True, variant_names: list[str] | None = None
) -> dict[str, str]:
    """Build each variant (default: the ones the configuration needs) from the configured Dockerfile
    and push it; returns the image URI of each variant built."""
    image = aws.cfg.image
    if tag:
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
    repo_uri = ensure_repository(aws) if push else f"{image.repository}"
    uris = {v.name: f"{repo_uri}:{v.tag(image.tag)}" for v in chosen}
    print("building " + ", ".join(f"{v.name} ({v.summary}) as {uris[v.name]}" for v in chosen))
    for variant in chosen:
        build = ["build", "--file", str(dockerfile), "--tag", uris[variant.name]]
        if image.platform:
            build += ["--platform", image.platform]
        build += variant.docker_args()
        for key, value in sorted(image.build_args.items()):
            build += ["--build-arg", f"{key}={value}"]
        _docker([*build, str(context)])
    if push:
        login(aws)
        for uri in uris.values():
            _docker(["push", uri])
            print(f"pushed {uri}")
    return uris
