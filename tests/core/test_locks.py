"""The locks (requirements*.txt, written by scripts/lock.py from pyproject.toml's extras): current,
consistent with each other, installed with hash checking, and the venv the tests run in is the dev
lock. Offline: nothing here resolves or downloads anything (``make lock`` does)."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import lock
import pytest
from lock import DEV_LOCK, LOCKS, check, parse_lock
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK_FILES = [entry.file for entry in LOCKS]


def pins(name: str, root: Path = REPO_ROOT) -> dict[str, str]:
    found, problems = parse_lock((root / name).read_text(encoding="utf-8"))
    assert problems == []
    return {package: pin.version for package, pin in found.items()}


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """pyproject.toml and the locks, copied for a test to spoil."""
    for name in ["pyproject.toml", *LOCK_FILES]:
        shutil.copyfile(REPO_ROOT / name, tmp_path / name)
    assert check(tmp_path) == []
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def stale(problems: list[str]) -> set[str]:
    return {p.split(":", 1)[0] for p in problems if ": stale: " in p}


# -- the locks of this commit --------------------------------------------------------------------------
def test_locks_are_current_and_consistent() -> None:
    """What ``scripts/lock.py --check`` checks: every digest matches pyproject.toml, every lock meets
    its extras' requirements and pins every entry exactly with hashes, the image locks agree with the
    dev lock (tested = shipped) and the full locks with the serve lock they are built on."""
    assert check() == []


def test_the_check_command_is_fast_and_says_so() -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/lock.py", "--check"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "5 locks current and consistent" in proc.stdout


def test_each_lock_holds_what_its_image_needs() -> None:
    serve, cpu, gpu, dev = (pins(name) for name in ("requirements-serve.txt", "requirements.txt",
                                                     "requirements-gpu.txt", DEV_LOCK))  # fmt: skip
    for name in LOCK_FILES:  # textclf is installed with --no-build-isolation: its build backend is locked
        assert "setuptools" in pins(name), name
    assert not {"torch", "transformers", "onnx", "scikit-learn"} & set(serve), "the serve image has no torch"
    assert {"onnxruntime", "tokenizers", "numpy", "flask", "gunicorn"} <= set(serve)
    assert cpu["torch"] == dev["torch"] and cpu["torch"].endswith("+cpu")
    assert gpu["torch"] == cpu["torch"].split("+")[0], "the same torch release, PyPI's (CUDA) build"
    assert any(name.startswith("nvidia-") for name in gpu) and not any(name.startswith("nvidia-") for name in cpu)
    assert {"sagemaker-train", "boto3", "moto", "pytest", "ruff", "mypy", "pip-tools"} <= set(dev)
    assert set(pins("requirements-ops.txt")) <= set(dev)


def test_images_and_setup_install_the_locks_with_hash_checking() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    installs = [" ".join(run.split()) for run in re.findall(r"pip install (?:[^&]|&(?!&))*", dockerfile)]
    from_locks = [i for i in installs if " -r " in i]
    assert len(from_locks) == 3, installs  # serve lock, torch's entry of the variant's lock, the variant's lock
    assert all("--require-hashes" in i for i in from_locks), from_locks
    assert all("--no-deps" in i for i in installs if " -r " not in i), "textclf itself brings nothing"
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes $(PIP_ARGS) -r requirements-dev.txt" in makefile
    assert "pip install -q --no-deps --no-build-isolation -e ." in makefile


def test_the_test_venv_is_the_dev_lock() -> None:
    """Tested = shipped: the packages the tests import are the dev lock's, whose versions the image
    locks share. A venv that drifted (a package installed or upgraded by hand) fails here."""
    locked = pins(DEV_LOCK)
    folders = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions(path=sorted(folders))
    }
    installed.pop("textclf", None)  # the package itself, installed after the lock (editable)
    differs = {
        name: (installed.get(name), version) for name, version in locked.items() if installed.get(name) != version
    }
    extra = sorted(set(installed) - set(locked))
    assert not differs and not extra, (
        f"{sys.prefix} is not {DEV_LOCK} (run make setup): (installed, locked) {differs}; not in the lock: {extra}"
    )


# -- the checks catch what they are for ----------------------------------------------------------------
def test_a_changed_extra_makes_the_locks_resolved_from_it_stale(copy: Path) -> None:
    edit(copy / "pyproject.toml", '"onnxruntime>=1.31.1,<2"', '"onnxruntime>=1.31.1,<1.40"')
    problems = check(copy)
    # serve is in train (requirements.txt, requirements-gpu.txt) and dev; ops does not include it
    assert stale(problems) == {DEV_LOCK, "requirements-serve.txt", "requirements.txt", "requirements-gpu.txt"}
    assert all("make lock" in p for p in problems if ": stale: " in p)


def test_a_changed_build_system_makes_every_lock_stale(copy: Path) -> None:
    edit(copy / "pyproject.toml", 'requires = ["setuptools>=68"]', 'requires = ["setuptools>=90"]')
    problems = check(copy)
    assert stale(problems) == set(LOCK_FILES)
    assert f"{DEV_LOCK}: setuptools>=90 (pyproject.toml) is not met by setuptools==" in "\n".join(problems)


def test_a_requirement_the_lock_does_not_meet(copy: Path) -> None:
    serve = pins("requirements-serve.txt")
    edit(copy / "pyproject.toml", '"numpy>=2.4.6,<3"', '"numpy>=9"')
    assert f"requirements-serve.txt: numpy>=9 (pyproject.toml) is not met by numpy=={serve['numpy']}" in check(copy)


def test_a_new_dependency_missing_from_the_locks(copy: Path) -> None:
    edit(copy / "pyproject.toml", '    "gunicorn>=26.2.0,<27",\n', '    "gunicorn>=26.2.0,<27",\n    "orjson>=3",\n')
    problems = check(copy)
    for name in (DEV_LOCK, "requirements-serve.txt", "requirements.txt", "requirements-gpu.txt"):
        assert f"{name}: orjson>=3 (pyproject.toml) is not in the lock" in problems


def test_an_image_lock_edited_by_hand(copy: Path) -> None:
    """A version in an image lock that the tests did not run is caught, and so is one that would
    make the full image differ from the serve image it is built on."""
    flask = pins("requirements-serve.txt")["flask"]
    edit(copy / "requirements-serve.txt", f"flask=={flask} ", "flask==3.0.0 ")
    problems = check(copy)
    assert f"requirements-serve.txt: flask==3.0.0, but {DEV_LOCK} (what the tests run) has {flask}" in problems
    assert f"requirements-serve.txt: flask==3.0.0, {flask} there in requirements.txt (built on top of it)" in problems
    assert stale(problems) == set(), "the digest covers pyproject.toml's inputs, not the pins"


def test_a_gpu_torch_of_another_release(copy: Path) -> None:
    torch = pins("requirements-gpu.txt")["torch"]
    edit(copy / "requirements-gpu.txt", f"torch=={torch} ", "torch==2.14.0 ")
    assert any(p.startswith("requirements-gpu.txt: torch==2.14.0: not the release the tests run") for p in check(copy))


def test_entries_without_hashes_or_exact_pins(copy: Path) -> None:
    path = copy / "requirements-ops.txt"
    text = path.read_text(encoding="utf-8")
    entry = re.search(r"^boto3==\S+ \\\n(?:    --hash=\S+(?: \\)?\n)+", text, re.MULTILINE)
    assert entry is not None
    boto3 = pins("requirements-ops.txt")["boto3"]
    path.write_text(text.replace(entry.group(0), f"boto3=={boto3}\nrequests>=2 \\\n    --hash=sha256:{'0' * 64}\n"))
    problems = check(copy)
    assert "requirements-ops.txt: boto3: no sha256 hash" in problems
    assert "requirements-ops.txt: requests: not pinned to one version (requests>=2)" in problems


def test_a_lock_not_written_by_the_script(copy: Path) -> None:
    path = copy / "requirements-serve.txt"
    path.write_text(re.sub(r"^# inputs-sha256: .*\n", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE))
    assert "requirements-serve.txt: no inputs-sha256 line: not written by scripts/lock.py (make lock)" in check(copy)
    (copy / "requirements-ops.txt").unlink()
    assert "requirements-ops.txt: missing (make lock)" in check(copy)


def test_the_digest_covers_the_compile_options(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "OPTIONS", (*lock.OPTIONS, "--pre"))
    assert stale(check(copy)) == set(LOCK_FILES)
