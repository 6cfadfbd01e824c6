"""The locks: one requirements file per installed set, every package pinned with its hashes.

pyproject.toml declares what textclf needs as extras with compatible ranges (``serve``, ``train``,
``ops``, ``dev``); this script resolves them with pip-tools (``pip-compile --generate-hashes
--allow-unsafe``) into the files the Dockerfile and ``make setup`` install with ``pip install
--require-hashes``:

| lock | extras | installed by |
|---|---|---|
| requirements-dev.txt | dev (train + ops + tests, lint, pip-tools) | ``make setup``: the venv the tests run in |
| requirements-serve.txt | serve | the Dockerfile's ``serve`` image |
| requirements.txt | train (CPU torch, ``torch==2.13.0+cpu``) | the Dockerfile's ``full`` image, ``TORCH_VARIANT=cpu`` |
| requirements-gpu.txt | train (PyPI's CUDA torch, its nvidia-* wheels) | the ``full`` image, ``TORCH_VARIANT=cuda`` |
| requirements-ops.txt | ops | ops/ on a workstation without the rest |

Every lock also pins pyproject.toml's ``build-system.requires`` (setuptools): the package itself is
installed with ``--no-deps --no-build-isolation``, so its build backend comes from the lock too.

Tested = shipped: the dev lock is resolved first; the others are resolved with it as a constraint
(``-c requirements-dev.txt``; for the GPU lock, the dev lock less torch), so every package an image
shares with the venv the tests run in has the version the tests ran. The GPU lock is resolved with
pip's configuration switched off (no find-links, no local indexes: PyPI's CUDA build, not a local
``+cpu`` wheel) and ``--use-feature=fast-deps``, so that pip reads the metadata of torch's multi-GB
wheels with HTTP range requests instead of downloading them; the hashes come from PyPI's index.

Each lock's header carries ``inputs-sha256``: the digest of what it was resolved from (the extras'
requirements, ``build-system.requires``, ``requires-python`` and the options). ``--check`` (fast,
offline; tests/core/test_locks.py runs it) fails when a digest no longer matches pyproject.toml,
when a lock does not satisfy its extras' requirements, when an image lock's version of a package
differs from the dev lock's, or when an entry is not an exact pin with a hash::

    .venv/bin/python scripts/lock.py              # make lock: resolve what changed, keep other pins
    .venv/bin/python scripts/lock.py --upgrade    # newest versions within the ranges
    .venv/bin/python scripts/lock.py -P onnx      # newest onnx, other pins kept
    .venv/bin/python scripts/lock.py --check      # are the locks current and consistent?
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT = "textclf"
DEV_LOCK = "requirements-dev.txt"
SERVE_LOCK = "requirements-serve.txt"
FULL_LOCKS = ("requirements.txt", "requirements-gpu.txt")  # the Dockerfile installs them over SERVE_LOCK
# The options every lock is compiled with (part of each digest).
OPTIONS = (
    "--generate-hashes",
    "--allow-unsafe",  # pin setuptools and pip too: the image builds textclf with the locked setuptools
    "--strip-extras",  # a lock is usable as a constraints file (the other locks use the dev lock so)
    "--build-deps-for=wheel",  # build-system.requires: setuptools
    "--no-emit-index-url",  # the locks name no index or wheel folder of this machine
    "--no-emit-find-links",
    "--no-emit-trusted-host",
)
# pip's configuration and environment that a PyPI-only resolution switches off.
PIP_SOURCES_ENV = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_CONSTRAINT")
DIGEST_LINE = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})\b", re.MULTILINE)
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Lock:
    file: str
    extras: tuple[str, ...]
    what: str
    constrained: bool = True  # -c the dev lock
    pypi_only: bool = False  # pip config, find-links and local indexes off
    free: tuple[str, ...] = ()  # left out of the dev-lock constraint: resolved for this lock alone

    def is_dev(self) -> bool:
        return self.file == DEV_LOCK


LOCKS = (
    Lock(DEV_LOCK, ("dev",), "the dev/CI venv (make setup): train + ops + tests and lint", constrained=False),
    Lock(SERVE_LOCK, ("serve",), "the serve image (Dockerfile target serve: no torch)"),
    Lock("requirements.txt", ("train",), "the full image with CPU torch (Dockerfile, TORCH_VARIANT=cpu)"),
    Lock(
        "requirements-gpu.txt",
        ("train",),
        "the full image with PyPI's CUDA torch and its nvidia-* wheels (TORCH_VARIANT=cuda)",
        pypi_only=True,
        free=("torch",),
    ),
    Lock("requirements-ops.txt", ("ops",), "ops/ on a workstation or in CI, without the rest"),
)
BY_FILE = {lock.file: lock for lock in LOCKS}


# --------------------------------------------------------------------------------------------------
# pyproject.toml


def load_pyproject(root: Path = REPO_ROOT) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))


def extra_requirements(pyproject: dict, extras: Sequence[str]) -> list[Requirement]:
    """The requirements of ``extras``, with the extras they name of textclf itself (``textclf[serve]``)
    followed, sorted and without duplicates."""
    declared = pyproject["project"].get("optional-dependencies", {})
    found: dict[str, Requirement] = {}
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in declared:
            raise KeyError(f"pyproject.toml declares no extra {extra!r}")
        seen.add(extra)
        for line in declared[extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == PROJECT:
                todo.extend(requirement.extras)
            else:
                found[str(requirement)] = requirement
    return [found[key] for key in sorted(found)]


def build_requirements(pyproject: dict) -> list[Requirement]:
    return [Requirement(line) for line in pyproject["build-system"]["requires"]]


def inputs(pyproject: dict, lock: Lock) -> dict:
    """What ``lock`` is resolved from: a change to any of it makes the lock stale."""
    return {
        "lock": lock.file,
        "extras": list(lock.extras),
        "requirements": [str(r) for r in extra_requirements(pyproject, lock.extras)],
        "build-system.requires": [str(r) for r in build_requirements(pyproject)],
        "requires-python": pyproject["project"].get("requires-python", ""),
        "options": list(OPTIONS),
        "constraint": None if not lock.constrained else {"file": DEV_LOCK, "less": list(lock.free)},
        "sources": "PyPI only (pip configuration off)" if lock.pypi_only else "pip's configuration",
    }


def digest(pyproject: dict, lock: Lock) -> str:
    return hashlib.sha256(json.dumps(inputs(pyproject, lock), sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Reading a lock


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    hashes: tuple[str, ...]
    line: str  # the entry as written, continuations joined


def entries(text: str) -> list[str]:
    """The logical lines of a requirements file: comments dropped, continuations joined."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(" ".join(current.split()))
        current = ""
    if current.strip():
        logical.append(" ".join(current.split()))
    return logical


def parse_lock(text: str) -> tuple[dict[str, Pin], list[str]]:
    """The pins of a lock and what is wrong with its entries (not ``name==version`` with hashes)."""
    pins: dict[str, Pin] = {}
    problems: list[str] = []
    for entry in entries(text):
        words = entry.split(" ")
        hashes = tuple(w for w in words if w.startswith("--hash="))
        spec = " ".join(w for w in words if not w.startswith("--hash="))
        if spec.startswith("-"):
            problems.append(f"an option, not a pinned package: {entry}")
            continue
        try:
            requirement = Requirement(spec)
        except ValueError as exc:
            problems.append(f"unparsable entry {entry!r}: {exc}")
            continue
        name = canonicalize_name(requirement.name)
        specs = list(requirement.specifier)
        if requirement.url or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            problems.append(f"{requirement.name}: not pinned to one version ({spec})")
            continue
        if not hashes or not all(HASH.match(h) for h in hashes):
            problems.append(f"{requirement.name}: no sha256 hash")
        if name in pins:
            problems.append(f"{requirement.name}: pinned twice")
        pins[name] = Pin(name, specs[0].version, hashes, entry)
    return pins, problems


def read_digest(text: str) -> str | None:
    match = DIGEST_LINE.search(text)
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------------
# --check


def check(root: Path = REPO_ROOT) -> list[str]:
    """Everything that is wrong with the locks in ``root`` (empty: they are current and consistent)."""
    pyproject = load_pyproject(root)
    problems: list[str] = []
    pins: dict[str, dict[str, Pin]] = {}
    for lock in LOCKS:
        path = root / lock.file
        if not path.is_file():
            problems.append(f"{lock.file}: missing (make lock)")
            continue
        text = path.read_text(encoding="utf-8")
        recorded, expected = read_digest(text), digest(pyproject, lock)
        if recorded is None:
            problems.append(f"{lock.file}: no inputs-sha256 line: not written by scripts/lock.py (make lock)")
        elif recorded != expected:
            problems.append(
                f"{lock.file}: stale: pyproject.toml's {'/'.join(lock.extras)} requirements, build-system or the "
                f"lock options changed since it was resolved (inputs-sha256 {recorded[:12]}..., now "
                f"{expected[:12]}...): make lock"
            )
        pins[lock.file], bad = parse_lock(text)
        problems += [f"{lock.file}: {p}" for p in bad]
        problems += [f"{lock.file}: {p}" for p in unmet(pyproject, lock, pins[lock.file])]
    dev = pins.get(DEV_LOCK, {})
    for lock in LOCKS:
        if lock.is_dev() or lock.file not in pins or not dev:
            continue
        for name, pin in sorted(pins[lock.file].items()):
            if name in lock.free or name not in dev:
                if not lock.free:  # only a lock with free packages may hold what the dev venv lacks
                    problems.append(f"{lock.file}: {name}=={pin.version} is not in {DEV_LOCK}: untested")
                continue
            if pin.version != dev[name].version:
                problems.append(
                    f"{lock.file}: {name}=={pin.version}, but {DEV_LOCK} (what the tests run) has {dev[name].version}"
                )
        for name in lock.free:
            if name in pins[lock.file] and name in dev:
                mine, tested = Version(pins[lock.file][name].version), Version(dev[name].version)
                if mine.public != tested.public:
                    problems.append(
                        f"{lock.file}: {name}=={mine}: not the release the tests run ({DEV_LOCK}: {tested})"
                    )
    # The full images are built on top of the serve image's venv: it must hold nothing they do not.
    serve = pins.get(SERVE_LOCK, {})
    for full in FULL_LOCKS:
        if full not in pins:
            continue
        for name, pin in sorted(serve.items()):
            other = pins[full].get(name)
            if other is None or other.version != pin.version:
                found = "not there" if other is None else f"{other.version} there"
                problems.append(f"{SERVE_LOCK}: {name}=={pin.version}, {found} in {full} (built on top of it)")
    return problems


def unmet(pyproject: dict, lock: Lock, pins: dict[str, Pin]) -> list[str]:
    """The requirements of ``lock``'s extras and build system that its pins do not satisfy."""
    environment = {**default_environment(), "extra": ""}
    problems = []
    for requirement in [*extra_requirements(pyproject, lock.extras), *build_requirements(pyproject)]:
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} (pyproject.toml) is not in the lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} (pyproject.toml) is not met by {requirement.name}=={pin.version}")
    return problems


# --------------------------------------------------------------------------------------------------
# Compiling


def _pip_compile_env(lock: Lock) -> dict[str, str]:
    env = dict(os.environ)
    env["CUSTOM_COMPILE_COMMAND"] = "make lock"  # what the header tells a reader to run
    if lock.pypi_only:
        env["PIP_CONFIG_FILE"] = os.devnull  # no config file: no find-links, local indexes or constraints
        for key in PIP_SOURCES_ENV:
            env.pop(key, None)
    return env


def _constraint(lock: Lock, work: Path) -> Path:
    """The dev lock as a constraints file, less ``lock.free``."""
    dev = (REPO_ROOT / DEV_LOCK).read_text(encoding="utf-8")
    if not lock.free:
        return REPO_ROOT / DEV_LOCK
    kept = [e for e in entries(dev) if canonicalize_name(Requirement(e.split(" --hash")[0]).name) not in lock.free]
    path = work / f"{DEV_LOCK}-less-{'-'.join(lock.free)}"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def _seed(lock: Lock) -> str:
    """pip-compile's starting point: the lock's own pins, and for a lock constrained by the dev lock
    the dev lock's pins of every other package, so that their hashes are reused, not fetched again."""
    target = REPO_ROOT / lock.file
    seed = [e for e in entries(target.read_text(encoding="utf-8")) if not e.startswith("-")] if target.is_file() else []
    if lock.constrained and (REPO_ROOT / DEV_LOCK).is_file():
        names = {canonicalize_name(Requirement(e.split(" --hash")[0]).name) for e in seed}
        for entry in entries((REPO_ROOT / DEV_LOCK).read_text(encoding="utf-8")):
            name = canonicalize_name(Requirement(entry.split(" --hash")[0]).name)
            if name not in names and name not in lock.free:
                seed.append(entry)
    return "".join(f"{entry}\n" for entry in seed)


def finish(text: str, lock: Lock, pyproject: dict, constraint: Path | None) -> str:
    """pip-compile's output made into the lock: textclf's own entry (from its extras naming
    ``textclf[serve]``: a local path without a hash) dropped, the constraint file named as in the
    repository, and the digest line written under the header."""
    lines = text.splitlines()
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith(("# WARNING: pip install will require the following package to be hashed",
                            "# Consider using a hashable URL")):  # fmt: skip
            continue
        if re.match(rf"^{PROJECT}\s*@\s*file:", line):
            skipping = True
            continue
        if skipping and line.startswith(" "):
            continue
        skipping = False
        kept.append(line)
    out = "\n".join(kept) + "\n"
    if constraint is not None and constraint != REPO_ROOT / DEV_LOCK:
        out = out.replace(f"-c {constraint}", f"-c {DEV_LOCK} (less {', '.join(lock.free)})")
    out = out.replace(f"-c {REPO_ROOT / DEV_LOCK}", f"-c {DEV_LOCK}")
    header_end = next(i for i, line in enumerate(out.splitlines()) if not line.startswith("#"))
    out_lines = out.splitlines()
    note = [
        f"# {lock.file}: {lock.what}.",
        f"# Resolved from pyproject.toml's extras {', '.join(lock.extras)} (scripts/lock.py); install it with",
        "# pip install --require-hashes -r " + lock.file + ".",
        f"# inputs-sha256: {digest(pyproject, lock)} (scripts/lock.py --check compares it with pyproject.toml)",
        "#",
    ]
    return "\n".join([*out_lines[:header_end], *note, *out_lines[header_end:]]) + "\n"


def pip_compile(argv: Sequence[str]) -> int:
    """pip-compile, taking each file's sha256 from its index link where the index gives one.

    pip-tools asks PyPI's JSON API for hashes and downloads and hashes every file the API does not
    match by URL: every wheel of every platform of every pinned version. Behind a PyPI mirror or
    proxy whose JSON names files by other URLs than its simple index, that is all of them (15 GB of
    downloads for the GPU lock). The simple index's links carry each file's sha256 (PEP 503), the
    hash pip itself checks a download against; only links without one (a local wheel folder) are
    still downloaded or read and hashed."""
    from piptools.repositories.pypi import PyPIRepository
    from piptools.scripts.compile import cli

    computed = PyPIRepository._get_file_hash

    def index_hash(self: PyPIRepository, link: Any) -> str:
        if link.hash_name == "sha256" and link.hash:
            return f"sha256:{link.hash}"
        return computed(self, link)

    PyPIRepository._get_file_hash = index_hash  # type: ignore[method-assign]
    cli.main(args=list(argv), prog_name="pip-compile")  # exits with its status
    return 0


def compile_lock(lock: Lock, pip_args: Sequence[str], verbose: bool) -> float:
    """Resolve ``lock`` with pip-compile into its file; returns the seconds it took."""
    pyproject = load_pyproject()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="textclf-lock-") as tmp:
        work = Path(tmp)
        output = work / lock.file
        target = REPO_ROOT / lock.file
        output.write_text(_seed(lock), encoding="utf-8")  # pip-compile keeps these pins and hashes where it can
        constraint = _constraint(lock, work) if lock.constrained else None
        extra_pip = ["--use-feature=fast-deps"] if lock.pypi_only else []
        cmd = [
            sys.executable, __file__, "--pip-compile", "--no-config", *([] if verbose else ["--quiet"]),
            *OPTIONS,
            *(f"--extra={extra}" for extra in lock.extras),
            *(["--constraint", str(constraint)] if constraint else []),
            *(["--pip-args", " ".join(extra_pip)] if extra_pip else []),
            *pip_args,
            f"--output-file={output}",
            "pyproject.toml",
        ]  # fmt: skip
        print(f"{lock.file}: pip-compile --extra {' --extra '.join(lock.extras)}", flush=True)
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_pip_compile_env(lock), stderr=subprocess.PIPE, text=True)
        for line in proc.stderr.splitlines():  # its warning about textclf's own unhashed entry: finish() drops it
            if not line.startswith("The generated requirements file may be rejected by pip install"):
                print(line, file=sys.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"pip-compile failed for {lock.file} (exit {proc.returncode})")
        text = output.read_text(encoding="utf-8").replace(f"--output-file={output}", f"--output-file={lock.file}")
        target.write_text(finish(text, lock, pyproject, constraint), encoding="utf-8")
    seconds = time.monotonic() - start
    pins, _ = parse_lock(target.read_text(encoding="utf-8"))
    print(f"{lock.file}: {len(pins)} packages, {target.stat().st_size:,} bytes, {seconds:.0f} s", flush=True)
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--pip-compile"]:  # compile_lock runs pip-compile so, in a process of its own
        return pip_compile(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="check the locks (offline); compile nothing")
    parser.add_argument("--upgrade", "-U", action="store_true", help="newest versions within the ranges")
    parser.add_argument("--upgrade-package", "-P", action="append", default=[], metavar="NAME")
    parser.add_argument("--no-reuse-hashes", action="store_true", help="collect every hash again from the index")
    parser.add_argument("--only", action="append", choices=list(BY_FILE), help="compile only these locks")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"{len(problems)} problem(s) with the locks; `make lock` rewrites them", file=sys.stderr)
            return 1
        print(f"{len(LOCKS)} locks current and consistent: {', '.join(lock.file for lock in LOCKS)}")
        return 0
    pip_args = ["--upgrade"] if args.upgrade else []
    for name in args.upgrade_package:
        pip_args += ["--upgrade-package", name]
    if args.no_reuse_hashes:
        pip_args.append("--no-reuse-hashes")
    for lock in LOCKS:  # the dev lock first: the others are constrained by it
        if args.only and lock.file not in args.only:
            continue
        compile_lock(lock, pip_args, args.verbose)
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
