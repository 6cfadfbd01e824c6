"""The images built and run under a Docker engine of our own: the library behind the container tests
(tests/container, through tests/support/docker_engine.py) and the command behind ``make image-gpu``.

A real Docker engine, with nothing installed by this module itself.

``dockerd`` (Debian's docker.io, installed by ``make system-deps``) is started in the background with
its own data root, exec root, pid file and socket, so it neither needs nor touches a system daemon.
Bridge networking and iptables may be missing on CI machines, so the daemon runs with
``--iptables=false --bridge=none`` and containers use ``--network host`` or ``--network none``.

No image registry is reachable, so the base image is made here: ``debootstrap --variant=minbase
bookworm`` imported as ``textclf-base:bookworm`` and passed to the Dockerfile as ``BASE_IMAGE``.
Both the daemon's data root (docker's layer cache) and the base tarball live in a cache folder,
``/var/tmp/textclf-docker`` (``TEXTCLF_DOCKER_CACHE``), so only the first run is cold.

Torch: inside a build, the host's local wheel folder is invisible and PyPI's torch is a multi-GB
CUDA build, so a CPU build's context gets the CPU wheel from ``/opt/wheels`` (or PIP_FIND_LINKS,
or ``TEXTCLF_WHEELS_DIR``) in ``wheels/`` and the PyTorch index is switched off. The gpu variant
gets no wheels/: its torch is PyPI's CUDA build, with several GB of nvidia-* wheels.

What an image holds: each writes ``pip list --format=freeze`` to /opt/program/pip-freeze.txt when it
is built; ``image_freeze`` reads it and ``freeze_against_lock`` compares it with the image's lock
(requirements-serve.txt, requirements.txt, requirements-gpu.txt; scripts/lock.py): the lock's
packages at the lock's versions, textclf itself and the venv's pip, nothing else. ``--record`` and
the container tests (tests/container/test_image_freeze.py) keep it in bench/results/freeze-*.txt.

Environment knobs: ``TEXTCLF_DOCKER_HOST`` uses an existing daemon instead of starting one;
``TEXTCLF_DOCKER_CACHE``; ``TEXTCLF_DEBIAN_MIRROR``; ``TEXTCLF_BASE_REFRESH=1`` rebuilds the base;
``TEXTCLF_DOCKERD_ARGS`` adds daemon arguments; for the tests, ``TEXTCLF_RECORD_RESULTS=1`` writes
``bench/results/image-sizes.json`` and bench/results/freeze-serve.txt / freeze-full.txt.

As a command: build one variant (see ops/variants.py), show its torch build and size, optionally
run its ``train`` on a copy of local_test/test_dir with all-MiniLM-L6-v2 (scripts/fetch-minilm.sh)
for a few steps, and optionally record the results (its entry in bench/results/image-sizes.json,
bench/results/image-<variant>.md and its freeze, bench/results/freeze-<image>.txt)::

    .venv/bin/python scripts/docker_images.py --variant gpu --train --record    # make image-gpu
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("TEXTCLF_DOCKER_CACHE", "/var/tmp/textclf-docker"))
BASE_IMAGE = "textclf-base:bookworm"
BASE_DESCRIPTION = "textclf-base:bookworm (debootstrap --variant=minbase bookworm, slimmed like bookworm-slim)"
DEBIAN_MIRROR = os.environ.get("TEXTCLF_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
RESULTS_FILE = RESULTS_DIR / "image-sizes.json"
LOCAL_TEST = REPO_ROOT / "local_test"

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
# What each variant's image installs (scripts/lock.py) and where its freeze is recorded.
LOCK_FILES = {"serve": "requirements-serve.txt", "cpu": "requirements.txt", "gpu": "requirements-gpu.txt"}
FREEZE_FILES = {"serve": "freeze-serve.txt", "cpu": "freeze-full.txt", "gpu": "freeze-full-gpu.txt"}
FREEZE_IN_IMAGE = "/opt/program/pip-freeze.txt"
# Besides its lock's packages, an image holds textclf itself and the venv's installer, pip (Debian's
# python3-venv puts it there; nothing the jobs import).
NOT_LOCKED = ("textclf", "pip")


class EngineError(RuntimeError):
    """The engine, the base image or a build failed; the message says where to look."""


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
            raise EngineError(
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
            raise EngineError(f"docker build of {tag} failed ({log}):\n{tail(log)}")


class Dockerd:
    """A dockerd of our own, everything under ``cache``; stopped again at the end."""

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
        """A dockerd a previous, interrupted run left on this data root."""
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
            raise EngineError("dockerd not found: install Debian's docker.io (apt-get install docker.io)")
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
                raise EngineError(
                    f"dockerd exited with {self.proc.returncode} while starting; {self.log}:\n{tail(self.log)}"
                )
            if docker.run("version", check=False, timeout=20).returncode == 0:
                return docker
            time.sleep(0.5)
        self.stop()
        raise EngineError(f"dockerd did not answer on {self.socket} within 60 s; {self.log}:\n{tail(self.log)}")

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


@contextlib.contextmanager
def engine(cache: Path = CACHE_DIR, lock_wait_s: float = 1800) -> Iterator[Docker]:
    """The docker CLI talking to a running daemon: ``TEXTCLF_DOCKER_HOST``'s, or one of our own on
    ``cache``, held by one process at a time (two daemons cannot share a data root)."""
    cli = shutil.which("docker", path=system_env()["PATH"])
    if cli is None:
        raise EngineError("docker CLI not found: install Debian's docker.io")
    if os.environ.get("TEXTCLF_DOCKER_HOST"):
        client = Docker(os.environ["TEXTCLF_DOCKER_HOST"], cli)
        client.run("version", timeout=30)
        yield client
        return
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("w") as lock:
        deadline = time.monotonic() + lock_wait_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EngineError(f"another process has held {cache}/lock for {lock_wait_s:.0f} s") from None
                time.sleep(2)
        daemon = Dockerd(cache)
        try:
            yield daemon.start(cli)
        finally:
            daemon.stop()


def debootstrap_base(tarball: Path) -> None:
    """debootstrap a minimal bookworm and pack it as the tarball ``docker import`` takes."""
    debootstrap = shutil.which("debootstrap", path=system_env()["PATH"])
    if debootstrap is None:
        raise EngineError("debootstrap not found: apt-get install debootstrap")
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    rootfs = work / "rootfs"
    log = tarball.parent / "debootstrap.log"
    try:
        with log.open("w") as out:
            proc = subprocess.run(
                [debootstrap, "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
                stdout=out, stderr=subprocess.STDOUT, env=system_env(), timeout=1200, check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            raise EngineError(f"debootstrap failed ({log}):\n{tail(log)}")
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


def base_image(docker: Docker, cache: Path = CACHE_DIR) -> str:
    """``textclf-base:bookworm``: debootstrap's minbase, imported once and kept in the cache."""
    refresh = os.environ.get("TEXTCLF_BASE_REFRESH") == "1"
    if docker.image_exists(BASE_IMAGE) and not refresh:
        return BASE_IMAGE
    tarball = cache / "base-bookworm.tar"
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
    if proc.returncode != 0:
        raise EngineError(f"docker import failed: {proc.stderr}")
    docker.build_seconds["docker import"] = time.monotonic() - start
    return BASE_IMAGE


def lock_pins(lock_file: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """A lock's packages: canonical name -> (version, sha256 hashes)."""
    from lock import parse_lock  # scripts/lock.py, beside this file

    pins, problems = parse_lock((REPO_ROOT / lock_file).read_text(encoding="utf-8"))
    if problems:
        raise EngineError(f"{lock_file} is not a lock (make lock): {problems[:3]}")
    return {
        name: (pin.version, tuple(h.removeprefix("--hash=sha256:") for h in pin.hashes)) for name, pin in pins.items()
    }


def torch_wheel() -> Path | None:
    """The local CPU torch wheel of requirements.txt's torch (``2.13.0+cpu``) for the image's Python
    (3.11); a wheel whose sha256 is not the lock's is refused here rather than by pip in the build."""
    pinned = lock_pins("requirements.txt").get("torch")
    if pinned is None:
        return None
    version, hashes = pinned
    dirs = [os.environ.get("TEXTCLF_WHEELS_DIR", ""), *os.environ.get("PIP_FIND_LINKS", "").split(), "/opt/wheels"]
    for folder in filter(None, dirs):
        wheels = sorted(Path(folder).glob(f"torch-{version}-cp311-cp311-*x86_64.whl"))
        if wheels:
            digest = hashlib.sha256()
            with wheels[-1].open("rb") as data:
                for chunk in iter(lambda: data.read(1 << 20), b""):
                    digest.update(chunk)
            if digest.hexdigest() not in hashes:
                raise EngineError(
                    f"{wheels[-1]} has sha256 {digest.hexdigest()}, not one requirements.txt pins for torch=={version}"
                )
            return wheels[-1]
    return None


def image_freeze(docker: Docker, tag: str) -> str:
    """What the image holds: the ``pip list --format=freeze`` its build wrote."""
    return docker.run("run", "--rm", "--network", "none", "--entrypoint", "cat", tag, FREEZE_IN_IMAGE).stdout


def freeze_against_lock(freeze: str, lock_file: str) -> list[str]:
    """How an image's freeze differs from its lock: a package missing, at another version, or not
    in the lock (textclf and pip aside). Empty: the image holds exactly the lock."""
    from packaging.utils import canonicalize_name

    pins = {name: version for name, (version, _) in lock_pins(lock_file).items()}
    installed: dict[str, str] = {}
    for line in freeze.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            installed[canonicalize_name(name)] = version.strip()
    problems = [f"{name}=={version} (from {lock_file}) is not in the image" for name, version in sorted(pins.items())
                if name not in installed]  # fmt: skip
    problems += [
        f"{name}=={installed[name]} in the image, {lock_file} pins {version}"
        for name, version in sorted(pins.items())
        if name in installed and installed[name] != version
    ]
    problems += [
        f"{name}=={version} in the image is not in {lock_file}"
        for name, version in sorted(installed.items())
        if name not in pins and name not in NOT_LOCKED
    ]
    problems += [f"{name} is not in the image" for name in NOT_LOCKED if name not in installed]
    return problems


def record_freeze(variant: str, freeze: str) -> Path:
    """Keep an image's freeze as bench/results/freeze-<image>.txt."""
    path = RESULTS_DIR / FREEZE_FILES[variant]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(freeze)
    return path


def build_context(context: Path, cpu_torch_wheel: bool = True) -> list[str]:
    """Fill ``context`` with the repository's files as git sees them (tracked + untracked, not
    ignored) and, for a CPU build, the local CPU torch wheel in wheels/; returns the build arguments
    that go with it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file() or source.is_symlink():  # symlinks stay links, as in a checkout
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name, follow_symlinks=False)
    wheel = torch_wheel() if cpu_torch_wheel else None
    if wheel is None:
        if cpu_torch_wheel:
            print("no local CPU torch wheel found; the build uses the Dockerfile's torch index", file=sys.stderr)
        return []
    (context / "wheels").mkdir(exist_ok=True)
    try:
        os.link(wheel, context / "wheels" / wheel.name)
    except OSError:
        shutil.copy2(wheel, context / "wheels" / wheel.name)
    return ["--build-arg", "TORCH_INDEX_URL="]  # never wait on an unreachable index


def sagemaker_tree(dest: Path, hyperparameters: dict[str, str]) -> Path:
    """A fresh /opt/ml tree at ``dest``: local_test/test_dir as git holds it (config and data: no
    model, output, checkpoints or pretrained weights that a local run may have left), with these
    hyperparameters."""
    source = LOCAL_TEST / "test_dir"
    shutil.copytree(source / "input/config", dest / "input/config")
    for channel in (source / "input/data").iterdir():
        if channel.name != "pretrained":
            shutil.copytree(channel, dest / "input/data" / channel.name)
    for folder in ("model", "output"):
        (dest / folder).mkdir()
    (dest / "input/config/hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2))
    return dest


def record_images(images: dict[str, dict[str, Any]], **fields: Any) -> None:
    """Write ``images`` (and top-level ``fields``) into bench/results/image-sizes.json, keeping the
    entries of the images it does not name: the tests record the cpu and serve images, ``make
    image-gpu`` the gpu one."""
    recorded: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        recorded = json.loads(RESULTS_FILE.read_text())
    recorded.update(fields)
    recorded["images"] = {**recorded.get("images", {}), **images}  # known images keep their place
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(recorded, indent=2) + "\n")


# --------------------------------------------------------------------------------------------------
# The command


PROBE = """\
import json, onnxruntime, torch
print(json.dumps({
    "torch": torch.__version__,
    "torch_version_cuda": torch.version.cuda,
    "cuda_is_available": torch.cuda.is_available(),
    "cuda_arch_flags": torch._C._cuda_getArchFlags() if torch.version.cuda else None,
    "onnxruntime": onnxruntime.__version__,
    "onnxruntime_providers": onnxruntime.get_available_providers(),
}))
"""
TRAIN_HYPERPARAMETERS = {  # a few optimizer steps: that train runs in the image is the point, not accuracy
    "epochs": "1",
    "max_steps": "5",
    "log_every_steps": "1",
    "early_stopping_patience": "0",
    "max_accuracy_drop": "100",  # five steps leave the model near chance; INT8 may differ from FP32 there
}
LABELS = {"cpu": "full (default target: train + serve, CPU torch)", "serve": "serve (--target serve: no torch)"}
LABELS["gpu"] = "full-gpu (--build-arg TORCH_VARIANT=cuda: train on GPU or CPU + serve, CUDA torch)"


def _shown(cmd: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(c)) for c in cmd)


def train_in_image(docker: Docker, tag: str, work: Path, pretrained: Path) -> dict[str, Any]:
    """``docker run IMAGE train`` on a copy of local_test/test_dir with ``pretrained`` as its
    pretrained channel; returns the exit code, the lines that name the device, and the log's tail."""
    hyperparameters = json.loads((LOCAL_TEST / "test_dir/input/config/hyperparameters.json").read_text())
    ml = sagemaker_tree(work / "ml", {**hyperparameters, **TRAIN_HYPERPARAMETERS})
    shutil.copytree(pretrained, ml / "input/data/pretrained")
    cmd = ["run", "--rm", "--network", "none", "-v", f"{ml}:/opt/ml", tag, "train"]
    start = time.monotonic()
    proc = subprocess.run(
        [docker.cli, *cmd], env=docker.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=3600, check=False,
    )  # fmt: skip
    logs = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout).splitlines()  # as a log viewer shows them: no colours
    failure = ml / "output/failure"
    return {
        "command": "docker " + _shown(cmd).replace(str(ml), "$ML"),
        "hyperparameters": TRAIN_HYPERPARAMETERS,
        "exit_code": proc.returncode,
        "seconds": round(time.monotonic() - start, 1),
        "device_lines": [line for line in logs if re.search(r"\bdevice\b", line, re.IGNORECASE)],
        "model_files": sorted(p.name for p in (ml / "model").iterdir()),
        "failure": failure.read_text() if failure.exists() else None,
        "log_tail": logs[-25:],
    }


def _markdown(variant: str, result: dict[str, Any]) -> str:
    probe, train = result["probe"], result.get("train")
    lines = [
        f"# The {variant} image: `{result['tag']}`",
        "",
        f"Recorded {result['recorded']} by `{result['command']}` on a machine with "
        f"{os.cpu_count()} CPU cores and no GPU. Build: `{result['build']}`.",
        "",
        "| what | value |",
        "|---|---|",
        f"| image size (`docker image inspect`) | {result['bytes'] / 1e9:.2f} GB ({result['bytes']:,} bytes) |",
        f"| build seconds (steps taken from the layer cache) | {result['build_seconds']} "
        f"({result['build_steps_cached']}) |",
        *(f"| `{key}` | `{value}` |" for key, value in probe.items()),
    ]
    if train:
        lines += [
            "",
            "## `train` in the image",
            "",
            f"`{train['command']}`, where `$ML` is a fresh copy of local_test/test_dir with the hyperparameters "
            f"{json.dumps(train['hyperparameters'])} over its own, and all-MiniLM-L6-v2 (scripts/fetch-minilm.sh) "
            "as the pretrained channel:",
            f"exit code **{train['exit_code']}** after {train['seconds']} s; model files {train['model_files']}.",
            "",
            "Lines naming the device:",
            "",
            "```",
            *train["device_lines"],
            "```",
            "",
            "The log's last lines:",
            "",
            "```",
            *train["log_tail"],
            "```",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from ops.variants import VARIANTS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=list(VARIANTS), default="gpu")
    parser.add_argument("--tag", help="image tag (default: textclf:<variant>)")
    parser.add_argument("--train", action="store_true", help="run the image's train for a few steps")
    parser.add_argument("--pretrained", type=Path, help="pretrained channel (default: all-MiniLM-L6-v2, fetched)")
    parser.add_argument("--record", action="store_true", help="write the results into bench/results/")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds the build may take")
    args = parser.parse_args(argv)
    variant = VARIANTS[args.variant]
    tag = args.tag or f"textclf:{variant.name}"
    if args.train and variant.target != "full":
        parser.error(f"--train needs an image that trains; {variant.name} only serves")
    command = "make image-gpu" if args.variant == "gpu" and args.train and args.record else None
    command = command or _shown([".venv/bin/python", "scripts/docker_images.py", *(argv or sys.argv[1:])])
    CACHE_DIR.mkdir(parents=True, exist_ok=True)  # logs and the pretrained model, with TEXTCLF_DOCKER_HOST too
    try:
        with engine() as docker, tempfile.TemporaryDirectory(prefix="textclf-image-") as tmp:
            base = base_image(docker)
            context = Path(tmp) / "context"
            context_args = build_context(context, cpu_torch_wheel=variant.name != "gpu")
            build_args = ["--build-arg", f"BASE_IMAGE={base}", *variant.docker_args(), *context_args]
            log = CACHE_DIR / f"build-{variant.name}.log"
            print(f"building {tag}: docker build --network host {_shown(build_args)} (log: {log})", flush=True)
            docker.build(context, tag, build_args, log, timeout=args.timeout)
            built = log.read_text()
            cached = f"{built.count('---> Using cache')} of {len(re.findall(r'^Step ', built, re.MULTILINE))}"
            probe_cmd = ["run", "--rm", "--network", "none", "--entrypoint", "python", tag, "-c", PROBE]
            result: dict[str, Any] = {
                "tag": tag,
                "bytes": docker.image_size(tag),
                "build": "docker build --network host " + _shown(build_args) + f" -t {tag} <context>",
                "build_seconds": round(docker.build_seconds[tag], 1),
                "build_steps_cached": cached,  # from an earlier build on this engine: not a cold build's time
                "command": command,
                "recorded": time.strftime("%Y-%m-%d"),
                "probe": json.loads(docker.run(*probe_cmd).stdout.strip().splitlines()[-1]),
                "freeze": image_freeze(docker, tag),
            }
            result["freeze_problems"] = freeze_against_lock(result["freeze"], LOCK_FILES[variant.name])
            print(json.dumps({k: v for k, v in result.items() if k not in ("build", "freeze")}, indent=2), flush=True)
            if args.train:
                pretrained = args.pretrained or CACHE_DIR / "all-MiniLM-L6-v2"
                if args.pretrained is None:
                    subprocess.run([str(REPO_ROOT / "scripts/fetch-minilm.sh"), str(pretrained)], check=True)
                result["train"] = train_in_image(docker, tag, Path(tmp), pretrained)
                print(json.dumps(result["train"], indent=2), flush=True)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.record:
        entry = {k: result[k] for k in ("tag", "bytes", "command", "recorded")}
        entry.update({k: result["probe"][k] for k in ("torch", "torch_version_cuda", "cuda_is_available")})
        if "train" in result:
            entry["train_exit_code"] = result["train"]["exit_code"]
            entry["train_device_lines"] = result["train"]["device_lines"]
        record_images({LABELS[variant.name]: entry})
        report = RESULTS_DIR / f"image-{variant.name}.md"
        report.write_text(_markdown(variant.name, result))
        freeze = record_freeze(variant.name, result["freeze"])
        print(f"recorded in {RESULTS_FILE.relative_to(REPO_ROOT)}, {report.relative_to(REPO_ROOT)} and {freeze.name}")
    for problem in result["freeze_problems"]:
        print(f"error: the image does not hold exactly {LOCK_FILES[variant.name]}: {problem}", file=sys.stderr)
    return 0 if result.get("train", {}).get("exit_code", 0) == 0 and not result["freeze_problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
