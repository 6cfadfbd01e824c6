"""Build the image and push it to ECR: repository created if missing, login with an ECR token.

Docker runs as a subprocess (``docker`` on PATH, or ``$DOCKER``). The registry password goes to
``docker login`` on standard input, never on the command line where ``ps`` would show it.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ops.aws import Aws, OpsError


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


def build_and_push(aws: Aws, tag: str | None = None, push: bool = True) -> str:
    """Build the image from the configured Dockerfile and push it; returns the pushed image URI."""
    image = aws.cfg.image
    if tag:
        image.tag = tag
    if image.uri:
        raise OpsError("image.uri is set: that image is used as is; unset it to build and push to ECR")
    context = Path(image.context)
    dockerfile = context / image.dockerfile if not Path(image.dockerfile).is_absolute() else Path(image.dockerfile)
    if not dockerfile.is_file():
        raise OpsError(f"no Dockerfile at {dockerfile}")
    repo_uri = ensure_repository(aws) if push else f"{image.repository}"
    uri = f"{repo_uri}:{image.tag}"
    build = ["build", "--file", str(dockerfile), "--tag", uri]
    if image.platform:
        build += ["--platform", image.platform]
    for key, value in sorted(image.build_args.items()):
        build += ["--build-arg", f"{key}={value}"]
    _docker([*build, str(context)])
    if push:
        login(aws)
        _docker(["push", uri])
        print(f"pushed {uri}")
    return uri
