"""Image build/push of each variant (a stand-in `docker` executable records what it is asked, and
its `push` leaves a manifest that ECR (moto) then holds) and channel upload. Immutable tags, the tag
made per build and jobs run by digest: tests/ops/test_hardening_api_image.py."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from ops import channels, cli, image, variants
from ops.aws import OpsError
from ops.config import ConfigError
from support.aws import REGION, Calls

# `buildx version` answers as $DOCKER_BUILDX_VERSION's buildx (unset: no buildx plugin). `push URI`
# writes what a push leaves in the registry, a manifest of $DOCKER_PUSH_MEDIA_TYPE, to $DOCKER_REGISTRY
# and says its digest as docker does (or $DOCKER_PUSH_REPORTED's); $DOCKER_PUSH_MEDIA_TYPE=none: the
# push leaves nothing.
FAKE_DOCKER = """#!/usr/bin/env python3
import hashlib, json, os, sys
argv = sys.argv[1:]
stdin = "" if sys.stdin.isatty() else sys.stdin.read()
with open(os.environ["DOCKER_LOG"], "a") as log:
    log.write(json.dumps({"argv": argv, "stdin": stdin}) + "\\n")
code = int(os.environ.get("DOCKER_EXIT", "0"))
if argv == ["buildx", "version"]:
    version = os.environ.get("DOCKER_BUILDX_VERSION")
    if not version:
        sys.exit("docker: 'buildx' is not a docker command.")
    print("github.com/docker/buildx " + version + " 0123abc")
    sys.exit(0)
elif argv[:1] == ["push"] and code == 0:
    uri = argv[1]
    media_type = os.environ.get("DOCKER_PUSH_MEDIA_TYPE", "application/vnd.docker.distribution.manifest.v2+json")
    print("The push refers to repository [" + uri.rpartition(":")[0] + "]")
    if media_type != "none":
        body = {"schemaVersion": 2, "mediaType": media_type, "annotations": {"pushed": uri}}
        if "index" in media_type or "list" in media_type:
            body["manifests"] = [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "1" * 64,
                 "size": 100, "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "2" * 64,
                 "size": 100, "platform": {"architecture": "unknown", "os": "unknown"},
                 "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            ]
        else:
            body["config"] = {"mediaType": "application/vnd.docker.container.image.v1+json",
                              "digest": "sha256:" + "3" * 64, "size": 1000}
            body["layers"] = [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                               "digest": "sha256:" + "4" * 64, "size": 1000}]
        manifest = json.dumps(body)
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        with open(os.environ["DOCKER_REGISTRY"], "a") as registry:
            registry.write(json.dumps({"uri": uri, "mediaType": media_type, "manifest": manifest}) + "\\n")
        reported = os.environ.get("DOCKER_PUSH_REPORTED", digest)
        print(uri.rpartition(":")[2] + ": digest: " + reported + " size: " + str(len(manifest)))
sys.exit(code)
"""


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "docker"
    exe.write_text(FAKE_DOCKER, encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("DOCKER", str(exe))
    monkeypatch.setenv("DOCKER_LOG", str(log))
    monkeypatch.setenv("DOCKER_REGISTRY", str(tmp_path / "registry.jsonl"))
    for name in ("DOCKER_BUILDX_VERSION", "DOCKER_BUILDKIT", "DOCKER_PUSH_MEDIA_TYPE", "DOCKER_PUSH_REPORTED"):
        monkeypatch.delenv(name, raising=False)
    return log


def _pushed_manifests(log: Path) -> list[dict[str, str]]:
    registry = log.with_name("registry.jsonl")
    if not registry.exists():
        return []
    return [json.loads(line) for line in registry.read_text(encoding="utf-8").splitlines()]


def _digest(manifest: str) -> str:
    return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()


@pytest.fixture
def ecr_receives_pushes(aws: Any, docker: Path) -> None:
    """ECR (moto) holds what the stand-in docker pushed by the time ops asks (DescribeImages): each
    manifest is put under its tag, with its media type and digest, by a client of its own (unrecorded)."""
    pusher = boto3.client("ecr", region_name=REGION)

    def sync(**event: Any) -> None:
        for pushed in _pushed_manifests(docker):
            repository, _, tag = pushed["uri"].rpartition(":")
            with contextlib.suppress(pusher.exceptions.ImageAlreadyExistsException):  # pushed before
                pusher.put_image(
                    repositoryName=repository.split("/", 1)[1],
                    imageTag=tag,
                    imageManifest=pushed["manifest"],
                    imageManifestMediaType=pushed["mediaType"],
                    imageDigest=_digest(pushed["manifest"]),
                )

    aws.client("ecr").meta.events.register("before-call.ecr.DescribeImages", sync)


@pytest.fixture
def fresh_ecr(aws: Any) -> None:
    """No repository yet: the one the aws fixture filled with the test config's images is deleted."""
    boto3.client("ecr", region_name=REGION).delete_repository(repositoryName="textclf", force=True)


@pytest.fixture
def build_context(aws: Any, fresh_ecr: None, tmp_path: Path) -> Path:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    aws.cfg.image.context = str(context)
    aws.cfg.image.build_args = {"BASE_IMAGE": "debian:bookworm-slim@sha256:0000"}  # reaches every variant
    return context


def _docker_calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def _build_argv(context: Path, uri: str, *variant_args: str) -> list[str]:
    """The classic builder's command line (no buildx, or DOCKER_BUILDKIT=0)."""
    return [
        "build",
        "--file",
        str(context / "Dockerfile"),
        "--tag",
        uri,
        "--platform",
        "linux/amd64",
        *variant_args,
        "--build-arg",
        "BASE_IMAGE=debian:bookworm-slim@sha256:0000",
        str(context),
    ]


# What `docker build` gets for each variant, besides the file, tag, platform and context.
VARIANT_ARGS = {
    "serve": ["--target", "serve"],
    "cpu": ["--target", "full", "--build-arg", "TORCH_VARIANT=cpu"],
    "gpu": ["--target", "full", "--build-arg", "TORCH_VARIANT=cuda"],
}
BUILDX_PROBE = ["buildx", "version"]


def test_build_login_push_the_variants_the_config_needs(
    aws: Any,
    calls: Calls,
    docker: Path,
    build_context: Path,
    ecr_receives_pushes: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Training on ml.g5 and serving on ml.c5 (the test config) need the gpu and serve images."""
    uris = image.build_and_push(aws, tag="v7")
    repo = f"{aws.account_id}.dkr.ecr.eu-west-1.amazonaws.com/textclf"
    assert uris == {"serve": f"{repo}:v7-serve", "gpu": f"{repo}:v7-gpu"}
    created = calls.one("CreateRepository")
    assert (created["repositoryName"], created["imageTagMutability"]) == ("textclf", "IMMUTABLE")

    probe, build_serve, build_gpu, login, push_serve, push_gpu = _docker_calls(docker)
    assert probe["argv"] == BUILDX_PROBE  # no buildx here: the classic builder
    assert build_serve["argv"] == _build_argv(build_context, uris["serve"], *VARIANT_ARGS["serve"])
    assert build_gpu["argv"] == _build_argv(build_context, uris["gpu"], *VARIANT_ARGS["gpu"])
    token = aws.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    assert login["argv"] == ["login", "--username", user, "--password-stdin", repo.split("/")[0]]
    assert login["stdin"] == password and password not in " ".join(login["argv"])
    assert [push_serve["argv"], push_gpu["argv"]] == [["push", uris["serve"]], ["push", uris["gpu"]]]

    # Before the builds ops made sure ECR held neither tag (they are immutable); after each push it asked
    # ECR what it holds under the tag, and names it by digest.
    looked_up = [{"repositoryName": "textclf", "imageIds": [{"imageTag": t}]} for t in ("v7-serve", "v7-gpu")]
    assert calls.of("DescribeImages") == looked_up + looked_up
    assert calls.invalid() == []
    pushed = {p["uri"]: _digest(p["manifest"]) for p in _pushed_manifests(docker)}
    out = capsys.readouterr().out
    for uri in uris.values():
        assert f"pushed {uri}@{pushed[uri]} ({image.SCHEMA2})\n" in out
    assert "with classic `docker build` (no buildx: `docker buildx version` failed)\n" in out
    # the jobs run what was pushed, by digest
    assert aws.training_image == f"{repo}@{pushed[uris['gpu']]}"
    assert aws.serving_image == f"{repo}@{pushed[uris['serve']]}"

    builds = len(_docker_calls(docker))
    with pytest.raises(OpsError, match=rf"ECR already holds {re.escape(uris['serve'])} \(sha256:[0-9a-f]{{64}}\)"):
        image.build_and_push(aws)  # the repository now exists (found, not created again); v7 is taken
    assert len(calls.of("CreateRepository")) == 1
    assert len(_docker_calls(docker)) == builds  # refused before any build


def test_a_cpu_training_instance_needs_the_cpu_image(aws: Any, docker: Path, build_context: Path) -> None:
    aws.cfg.training.instance_type = "ml.c6i.4xlarge"
    uris = image.build_and_push(aws, push=False)
    assert uris == {"serve": "textclf:t1-serve", "cpu": "textclf:t1"}
    assert [c["argv"] for c in _docker_calls(docker)] == [
        BUILDX_PROBE,
        _build_argv(build_context, "textclf:t1-serve", *VARIANT_ARGS["serve"]),
        _build_argv(build_context, "textclf:t1", *VARIANT_ARGS["cpu"]),
    ]


BUILDX_NO_ATTESTATIONS = [
    "buildx",
    "build",
    "--provenance=false",
    "--sbom=false",
    "--output",
    "type=docker,oci-mediatypes=false",
]


@pytest.mark.parametrize(
    ("version", "buildx_args"),
    [
        # buildx >= 0.10 (Docker 23+, Docker Desktop) adds a provenance attestation unless told not to
        ("v0.12.1", BUILDX_NO_ATTESTATIONS),
        ("v0.10.0", BUILDX_NO_ATTESTATIONS),
        ("0.10.2+ds1", BUILDX_NO_ATTESTATIONS),  # Debian's docker-buildx says its version without the v
        ("v0.24.0-desktop.2", BUILDX_NO_ATTESTATIONS),
        # older buildx has no attestations and no --provenance/--sbom flags
        ("v0.9.1", ["buildx", "build", "--output", "type=docker,oci-mediatypes=false"]),
    ],
)
def test_with_buildx_the_build_has_no_attestations_and_docker_media_types(
    aws: Any,
    docker: Path,
    build_context: Path,
    ecr_receives_pushes: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    version: str,
    buildx_args: list[str],
) -> None:
    monkeypatch.setenv("DOCKER_BUILDX_VERSION", version)
    uris = image.build_and_push(aws, tag="v9", variant_names=["serve"])
    probe, build, login, push = (c["argv"] for c in _docker_calls(docker))
    assert probe == BUILDX_PROBE
    # loaded into the daemon (type=docker) under its tag, then pushed by `docker push` as before
    assert build == buildx_args + _build_argv(build_context, uris["serve"], *VARIANT_ARGS["serve"])[1:]
    assert login[0] == "login" and push == ["push", uris["serve"]]
    assert f"with `docker buildx build {' '.join(buildx_args[2:])}`" in capsys.readouterr().out


def test_docker_buildkit_0_asks_for_the_classic_builder(
    aws: Any, docker: Path, build_context: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_BUILDX_VERSION", "v0.12.1")  # installed, but not wanted
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    image.build_and_push(aws, push=False, variant_names=["serve"])
    assert [c["argv"] for c in _docker_calls(docker)] == [
        _build_argv(build_context, "textclf:t1-serve", *VARIANT_ARGS["serve"])
    ]
    assert "with classic `docker build` (DOCKER_BUILDKIT=0)\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("media_type", "what"),
    [
        (image.OCI_INDEX, r"an image index \(BuildKit's provenance/SBOM attestations, or more than one platform\)"),
        (image.DOCKER_MANIFEST_LIST, r"an image index"),
        (image.OCI_MANIFEST, r"an OCI image manifest"),
        ("application/vnd.docker.distribution.manifest.v1+prettyjws", r"not a Docker v2 schema 2 image manifest"),
    ],
)
def test_a_pushed_manifest_sagemaker_refuses_is_refused_with_the_fix(
    aws: Any,
    calls: Calls,
    docker: Path,
    build_context: Path,
    ecr_receives_pushes: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    media_type: str,
    what: str,
) -> None:
    """What a buildx build with default attestations (or the containerd store's OCI types) pushes."""
    monkeypatch.setenv("DOCKER_PUSH_MEDIA_TYPE", media_type)
    with pytest.raises(OpsError) as refused:
        image.build_and_push(aws, tag="v9", variant_names=["serve", "gpu"])
    (pushed,) = _pushed_manifests(docker)  # the first image is refused: the second is not pushed
    uri = pushed["uri"]
    message = str(refused.value)
    assert message.startswith(f"{uri} is stored as {media_type} ({_digest(pushed['manifest'])}): ")
    assert re.search(what, message)
    assert f"SageMaker runs only {image.SCHEMA2}" in message and "Unsupported manifest media type" in message
    assert "--provenance=false --sbom=false --output type=docker,oci-mediatypes=false" in message
    assert [c["argv"][0] for c in _docker_calls(docker)][-2:] == ["login", "push"]
    assert len(calls.of("DescribeImages")) == 2 + 1  # both tags checked free before the builds, one after a push
    assert "pushed " + uri not in capsys.readouterr().out


def test_the_registry_must_hold_what_docker_pushed(
    aws: Any, docker: Path, build_context: Path, ecr_receives_pushes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "sha256:" + "9" * 64
    monkeypatch.setenv("DOCKER_PUSH_REPORTED", other)  # another push of the tag came in between
    with pytest.raises(OpsError, match=rf"`docker push \S+:t1-serve` pushed {other} but the registry holds sha256:"):
        image.build_and_push(aws, variant_names=["serve"])
    monkeypatch.setenv("DOCKER_PUSH_MEDIA_TYPE", "none")  # a push that left nothing under the tag
    with pytest.raises(OpsError, match=r"ECR holds no image \S+:v2-serve after `docker push`"):
        image.build_and_push(aws, tag="v2", variant_names=["serve"])


@pytest.mark.parametrize(
    ("argv", "built"),
    [
        (["--variant", "cpu"], ["cpu"]),
        (["--variant", "gpu"], ["gpu"]),
        (["--variant", "serve"], ["serve"]),
        (["--variant", "gpu", "--variant", "serve"], ["serve", "gpu"]),
        (["--variant", "all"], ["serve", "cpu", "gpu"]),
    ],
)
def test_ops_image_variant_runs_these_docker_commands(
    aws: Any,
    calls: Calls,
    docker: Path,
    build_context: Path,
    ecr_receives_pushes: None,
    argv: list[str],
    built: list[str],
) -> None:
    assert cli.main(["image", "--tag", "v8", *argv], aws=aws) == 0
    repo = f"{aws.account_id}.dkr.ecr.eu-west-1.amazonaws.com/textclf"
    uris = [f"{repo}:v8{variants.VARIANTS[name].tag_suffix}" for name in built]
    docker_calls = [c["argv"] for c in _docker_calls(docker)]
    assert docker_calls[0] == BUILDX_PROBE
    assert docker_calls[1 : len(built) + 1] == [
        _build_argv(build_context, uri, *VARIANT_ARGS[name]) for name, uri in zip(built, uris, strict=True)
    ]
    assert docker_calls[len(built) + 1][0] == "login"
    assert docker_calls[len(built) + 2 :] == [["push", uri] for uri in uris]
    looked_up = [[{"imageTag": u.rpartition(":")[2]}] for u in uris]  # each tag free before, then pushed
    assert [c["imageIds"] for c in calls.of("DescribeImages")] == looked_up + looked_up


def test_refusals_come_before_any_build(
    aws: Any, calls: Calls, docker: Path, build_context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.cfg.training.instance_type = "ml.trn1.2xlarge"
    assert cli.main(["image"], aws=aws) == 1
    assert "training.instance_type ml.trn1.2xlarge: AWS Trainium (Neuron) has no CUDA" in capsys.readouterr().err
    aws.cfg.training.instance_type = "ml.g5.xlarge"
    aws.cfg.image.build_args["TORCH_VARIANT"] = "cuda"
    with pytest.raises(ConfigError, match=r"image\.build_args TORCH_VARIANT: the variant sets it"):
        image.build_and_push(aws)
    aws.cfg.image.uri = "registry.example.com/textclf:mine"
    with pytest.raises(OpsError, match=r"image\.uri is set"):
        image.build_and_push(aws)
    assert not docker.exists() and calls.of("CreateRepository") == []


def test_docker_failures_are_reported(aws: Any, docker: Path, build_context: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("DOCKER_EXIT", "3")
    with pytest.raises(OpsError, match="exit code 3"):
        image.build_and_push(aws)
    monkeypatch.setenv("DOCKER_BUILDX_VERSION", "v0.12.1")
    monkeypatch.setenv("DOCKER_EXIT", "4")  # buildx answers its version, the build fails
    with pytest.raises(OpsError, match=r"`\S+ buildx build --provenance=false .*` failed with exit code 4"):
        image.build_and_push(aws)
    monkeypatch.setenv("DOCKER", str(build_context / "no-such-docker"))
    with pytest.raises(OpsError, match="not found"):
        image.build_and_push(aws)
    aws.cfg.image.dockerfile = "Missing.Dockerfile"
    with pytest.raises(OpsError, match="no Dockerfile"):
        image.build_and_push(aws)


def test_upload_creates_a_private_bucket_and_folders(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    assert set(uploaded) == {"train", "validation"}
    version = uploaded["train"].removeprefix("s3://textclf-test-bucket/textclf/data/train/").rstrip("/")
    assert re.fullmatch(r"\d{8}T\d{12}Z", version)  # one fresh version per upload
    assert uploaded == {
        "train": f"s3://textclf-test-bucket/textclf/data/train/{version}/",
        "validation": f"s3://textclf-test-bucket/textclf/data/validation/{version}/",
    }
    block = calls.one("PutPublicAccessBlock")["PublicAccessBlockConfiguration"]
    assert all(block.values())
    keys = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket="textclf-test-bucket")["Contents"]]
    assert sorted(keys) == [
        f"textclf/data/train/{version}.complete",
        f"textclf/data/train/{version}/train.csv",
        f"textclf/data/validation/{version}.complete",
        f"textclf/data/validation/{version}/validation.csv",
    ]
    assert channels.existing_channels(aws) == uploaded
    channels.ensure_bucket(aws)  # idempotent
    assert len(calls.of("CreateBucket")) == 1


def _s3_files(aws: Any, uri: str) -> list[str]:
    prefix = uri.removeprefix("s3://textclf-test-bucket/")
    listed = aws.client("s3").list_objects_v2(Bucket="textclf-test-bucket", Prefix=prefix).get("Contents", [])
    return sorted(o["Key"].removeprefix(prefix) for o in listed)


def test_a_reupload_does_not_mix_with_the_earlier_one(aws: Any, calls: Calls, tmp_path: Path) -> None:
    """SageMaker copies everything under a channel's prefix: a re-upload must get a prefix of its own,
    and train/tune (no --channel) must take the latest one."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "part-1.csv").write_text("text,label\nold,neg\n", encoding="utf-8")
    (old / "part-2.csv").write_text("text,label\nstale,neg\n", encoding="utf-8")
    (new / "part-1.csv").write_text("text,label\nnew,pos\n", encoding="utf-8")
    first = channels.upload(aws, {"train": old, "validation": old})
    second = channels.upload(aws, {"train": new})
    assert second["train"] != first["train"]
    assert _s3_files(aws, second["train"]) == ["part-1.csv"]  # nothing of the first upload
    assert _s3_files(aws, first["train"]) == ["part-1.csv", "part-2.csv"]  # kept, usable by name
    latest = channels.existing_channels(aws)
    assert latest == {"train": second["train"], "validation": first["validation"]}

    from ops import training

    training.start(aws)
    sent = calls.of("CreateTrainingJob")[-1]["InputDataConfig"]
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in sent} == latest


def test_an_unfinished_upload_is_not_picked(aws: Any, bucket: str, tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("text,label\ngood,pos\n", encoding="utf-8")
    done = channels.upload(aws, {"train": data})
    broken = "20991231T235959000000Z"  # newer, but its upload never finished (no .complete marker)
    aws.client("s3").put_object(Bucket=bucket, Key=f"textclf/data/train/{broken}/train.csv", Body=b"x")
    aws.client("s3").put_object(Bucket=bucket, Key="textclf/data/train/legacy.csv", Body=b"x")  # old layout
    assert channels.existing_channels(aws) == done


def test_upload_rejects_bad_channels(aws: Any, tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="does not exist"):
        channels.upload(aws, {"train": tmp_path / "missing.csv"})
    with pytest.raises(OpsError, match="channel name"):
        channels.upload(aws, {"tr ain": tmp_path})
    (tmp_path / "empty").mkdir()
    with pytest.raises(OpsError, match="holds no files"):
        channels.upload(aws, {"train": tmp_path / "empty"})


def test_with_no_tag_each_build_gets_a_new_one_and_the_jobs_its_digest(
    aws: Any,
    docker: Path,
    build_context: Path,
    ecr_receives_pushes: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """image.tag empty (the default): a new tag per build (here outside git: build-<UTC time>), printed with
    how to use it; an immutable repository never gets a tag twice."""
    aws.cfg.image.tag = ""
    stamps = iter([datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)])
    made = image.new_tag
    monkeypatch.setattr(image, "new_tag", lambda context: made(context, next(stamps)))
    repo = f"{aws.account_id}.dkr.ecr.eu-west-1.amazonaws.com/textclf"

    assert image.build_and_push(aws, variant_names=["serve"]) == {"serve": f"{repo}:build-20260102T030405Z-serve"}
    assert aws.cfg.image.tag == "build-20260102T030405Z"  # for the rest of the command
    out = capsys.readouterr().out
    assert (
        "image tag build-20260102T030405Z: train, tune, deploy and batch need it as image.tag "
        "(export TEXTCLF_IMAGE_TAG=build-20260102T030405Z, or image.tag in the config); they run each variant "
        "by its digest\n"
    ) in out
    (pushed,) = _pushed_manifests(docker)
    assert aws.serving_image == f"{repo}@{_digest(pushed['manifest'])}"

    aws.cfg.image.tag = ""
    assert image.build_and_push(aws, variant_names=["serve"]) == {"serve": f"{repo}:build-20260102T030406Z-serve"}


def test_local_mode_builds_and_runs_the_local_tag_when_image_tag_is_empty(
    docker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ops --local` pushes nothing: its images keep one local tag (`local`), which it also runs."""
    from ops.config import load
    from ops.local import LocalAws

    monkeypatch.chdir(tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    cfg = load(env={"TEXTCLF_LOCAL_ROOT": str(tmp_path / "root"), "AWS_DEFAULT_REGION": "eu-west-1"})
    assert cfg.image.tag == ""
    aws = LocalAws(cfg)
    assert image.build_and_push(aws, push=False, variant_names=["serve"]) == {"serve": "textclf:local-serve"}
    assert aws.serving_image == "textclf:local-serve" and aws.training_image == "textclf:local"
