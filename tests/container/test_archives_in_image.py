"""The archive checks of tests/train/test_archives.py, run by the image's own Python.

The image's interpreter (Debian bookworm's python3, 3.11.2) is not the test venv's: its tarfile
has no extraction filters at all, which is why the ``pretrained`` channel is unpacked by
``textclf.train.archives`` rather than ``extractall(filter=...)``. Here every crafted archive is
built on the host, extracted in the image, and the host checks the message and what was written.
Then two real ``train`` runs: a malicious ``.tar.gz`` in the ``pretrained`` channel fails the job
with the member in the failure file; a good one (a tiny model, archived) trains.

Nothing here assumes the image runs as root: the mounted folders are opened to every user.
"""

from __future__ import annotations

import csv
import json
import stat
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from support.crafted_archives import (
    REFUSED,
    digests,
    expected_good,
    file,
    good_entries,
    member_name,
    outside,
    plant,
    planted,
    write_tar,
)
from support.docker_engine import REPO_ROOT, Docker, sagemaker_tree
from support.tiny_model import make_tiny_model, words_of
from textclf.errors import EXIT_USER_ERROR

pytestmark = pytest.mark.container

MOUNT = PurePosixPath("/work")
# Runs in the image: extract each case with textclf's own code, print what happened as JSON.
EXTRACT = """
import json, sys, tarfile
from pathlib import Path
from textclf.errors import ModelLoadError
from textclf.train.archives import Limits, extract
work = Path("/work")
out = {"python": sys.version.split()[0], "filters": hasattr(tarfile, "data_filter"), "cases": {}}
try:  # what the old code did, on a good archive
    with tarfile.open(work / "archives/good.tar.gz") as tar:
        tar.extractall(work / "stdlib", filter="data")
    out["stdlib"] = "extracted"
except Exception as exc:
    out["stdlib"] = f"{type(exc).__name__}: {exc}"
for case in json.loads((work / "cases.json").read_text()):
    try:
        extract(work / "archives" / (case["name"] + ".tar.gz"), work / "run" / case["name"] / "outer/dest",
                Limits(**case["limits"]))
        out["cases"][case["name"]] = None
    except ModelLoadError as exc:
        out["cases"][case["name"]] = str(exc)
print(json.dumps(out))
"""
TRAIN_HYPERPARAMETERS = {  # a few steps: that the channel's archive is unpacked and used is the point
    "epochs": "1",
    "max_steps": "3",
    "max_seq_length": "32",
    "batch_size": "32",
    "early_stopping_patience": "0",
    "max_accuracy_drop": "100",
    "num_threads": "2",
}
PLANTED_MEMBER = "../../../opt/ml/model/code/rules.py"  # from /tmp/textclf-host-*/pretrained-*: the rules hook


def open_up(root: Path) -> Path:
    """Let whatever user the image runs as write under ``root`` (a bind mount keeps host modes)."""
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | (0o777 if p.is_dir() else 0o666))
    return root


def test_crafted_archives_are_refused_by_the_images_python(
    docker: Docker, full_image: str, tmp_path: Path, report: dict[str, object]
) -> None:
    work = tmp_path / "work"
    for case in REFUSED:
        plant(work / "run" / case.name / "outer")
        write_tar(work / "archives" / f"{case.name}.tar.gz", case.entries(MOUNT / "run" / case.name / "outer"))
    (work / "run/good/outer").mkdir(parents=True)
    write_tar(work / "archives/good.tar.gz", good_entries())
    cases = [{"name": c.name, "limits": c.limits} for c in REFUSED] + [{"name": "good", "limits": {}}]
    (work / "cases.json").write_text(json.dumps(cases))
    proc = docker.run(
        "run", "--rm", "--network", "none", "-v", f"{open_up(work)}:{MOUNT}",
        "--entrypoint", "/opt/venv/bin/python", full_image, "-c", EXTRACT, timeout=300,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    report["archive checks ran on"] = (
        f"the image's Python {result['python']} (tarfile extraction filters: {result['filters']}; "
        f"the stdlib's extractall(filter='data'): {result['stdlib']})"
    )
    for case in REFUSED:
        outer = work / "run" / case.name / "outer"
        message = result["cases"][case.name]
        assert message is not None, f"{case.name}: extracted"
        archive = MOUNT / "archives" / f"{case.name}.tar.gz"
        assert message.startswith(f"refusing to unpack {archive}: "), (case.name, message)
        assert repr(member_name(case, MOUNT / "run" / case.name / "outer")) in message, (case.name, message)
        assert outside(outer) == planted(), case.name
        assert not (outer / "dest").exists(), case.name
    assert result["cases"]["good"] is None
    dest = work / "run/good/outer/dest"
    assert digests(dest) == expected_good()
    for p in dest.rglob("*"):  # the image's umask at most takes bits away: never setuid, never the archive's 0755
        assert stat.S_IMODE(p.stat().st_mode) & ~(0o755 if p.is_dir() else 0o644) == 0, p
        assert p.stat().st_uid != 4242, p


def _demo_words() -> list[str]:
    with (REPO_ROOT / "local_test/test_dir/input/data/train/train.csv").open(newline="", encoding="utf-8") as f:
        return words_of(row["text"] for row in csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer BERT encoder over the demo data's words: trains in seconds."""
    return make_tiny_model(
        tmp_path_factory.mktemp("tiny") / "model", labels=None, words=_demo_words(), num_layers=1, hidden_size=32
    )


def _run_train(docker: Docker, image: str, ml: Path) -> tuple[int, str, str | None]:
    """``docker run IMAGE train`` on ``ml``; the exit code, the logs and the failure file's first line."""
    proc = docker.run(
        "run", "--rm", "--network", "none", "-v", f"{open_up(ml)}:/opt/ml", image, "train", check=False, timeout=900
    )  # fmt: skip
    failure = ml / "output/failure"
    first = failure.read_text(encoding="utf-8").splitlines()[0] if failure.exists() else None
    return proc.returncode, (proc.stdout + proc.stderr)[-6000:], first


def _tree(tmp_path: Path) -> Path:
    hyperparameters = json.loads((REPO_ROOT / "local_test/test_dir/input/config/hyperparameters.json").read_text())
    ml = sagemaker_tree(tmp_path / "ml", {**hyperparameters, **TRAIN_HYPERPARAMETERS})
    (ml / "input/data/pretrained").mkdir(parents=True)
    return ml


def test_train_refuses_a_malicious_pretrained_archive(
    docker: Docker, full_image: str, tmp_path: Path, tiny_model: Path
) -> None:
    """The finding's attack: a member that would land as /opt/ml/model/code/rules.py (run by serve)."""
    ml = _tree(tmp_path)
    entries = [file(f"./{f.name}", f.read_bytes()) for f in sorted(tiny_model.iterdir())]
    write_tar(ml / "input/data/pretrained/model.tar.gz", [*entries, file(PLANTED_MEMBER, b"import os\n")])
    code, logs, first = _run_train(docker, full_image, ml)
    assert code == EXIT_USER_ERROR, logs
    expected = f"refusing to unpack /opt/ml/input/data/pretrained/model.tar.gz: member {PLANTED_MEMBER!r} has"
    assert first is not None and first.startswith(expected), (first, logs)
    assert not (ml / "model/code").exists()


def test_train_uses_a_good_pretrained_archive(
    docker: Docker, full_image: str, tmp_path: Path, tiny_model: Path
) -> None:
    """``tar czf model.tar.gz -C model .`` in the channel: unpacked in the image, and the job trains."""
    ml = _tree(tmp_path)
    with tarfile.open(ml / "input/data/pretrained/model.tar.gz", "w:gz") as tar:
        tar.add(tiny_model, arcname=".")
    code, logs, first = _run_train(docker, full_image, ml)
    assert code == 0, (first, logs)
    assert any(p.suffix == ".onnx" for p in (ml / "model").rglob("*")), sorted(p.name for p in (ml / "model").iterdir())
