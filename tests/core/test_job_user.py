"""Who the jobs run as (textclf.contract.job_user), on this machine: the hand-over and the drop
really happen, in a forked child, to the ``nobody`` user standing in for the image's ``textclf``.

The drop needs root; these tests are skipped elsewhere. The image itself is checked in
tests/container/test_container.py (started as root, as SageMaker starts it).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from textclf.contract import job_user, opt_ml
from textclf.errors import ConfigError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
NOBODY = pwd.getpwnam("nobody")


def in_child(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a forked child (whose user may change); its JSON result, or its exception's text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            out = {"result": fn()}
        except BaseException as exc:  # reported to the parent
            out = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(out, default=str).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        data = json.loads(pipe.read() or '{"error": "the child wrote nothing"}')
    os.waitpid(pid, 0)
    assert "error" not in data, data["error"]
    return data["result"]


def drop(uid: int = NOBODY.pw_uid, gid: int = NOBODY.pw_gid) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


@pytest.fixture
def ml(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An /opt/ml tree as SageMaker mounts it: root's (whoever runs this), mode 755, readable input;
    in /tmp, which ``nobody`` can reach (pytest's tmp_path is private to its user)."""
    base = Path(tempfile.mkdtemp(prefix="textclf-job-user-"))
    base.chmod(0o755)
    root = base / "ml"
    for folder in ("input/config", "input/data/train", "model", "output"):
        (root / folder).mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text("{}")
    (root / "input/data/train/train.csv").write_text("text,label\na,b\n")
    monkeypatch.setenv(opt_ml.ROOT_ENV, str(root))
    monkeypatch.setenv(job_user.USER_ENV, "nobody")
    yield root
    shutil.rmtree(base)


def test_outside_the_image_nobody_is_switched(ml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(job_user.USER_ENV)
    assert job_user.configured_user() is None
    assert job_user.become_job_user("train") is None
    assert job_user.access_problem("train", opt_ml.paths()) is None  # whoever runs this owns the tree


def test_the_user_must_exist_and_not_be_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(job_user.USER_ENV, "no-such-user-here")
    with pytest.raises(ConfigError, match="no such user"):
        job_user.configured_user()
    monkeypatch.setenv(job_user.USER_ENV, "root")
    with pytest.raises(ConfigError, match="is root"):
        job_user.configured_user()


@needs_root
def test_train_hands_over_its_folders_and_drops_for_good(ml: Path) -> None:
    (ml / "input/data").chmod(0o700)  # as the SDK's local mode makes it (mkdtemp)

    def child() -> dict[str, Any]:
        done = job_user.become_job_user("train")
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        try:
            os.setuid(0)
            regained = True
        except PermissionError:
            regained = False
        return {"done": done, "ids": [os.getresuid(), os.getresgid(), os.getgroups()], "regained": regained,
                "caps": [status[k].strip() for k in ("CapPrm", "CapEff", "CapAmb")],
                "problem": job_user.access_problem("train", opt_ml.paths())}  # fmt: skip

    got = in_child(child)
    n = NOBODY.pw_uid
    assert got["done"].startswith(f"running as nobody (uid {n}, gid {NOBODY.pw_gid}), not root; {ml}/model")
    assert got["ids"] == [[n] * 3, [NOBODY.pw_gid] * 3, []] and not got["regained"]
    assert got["caps"] == ["0000000000000000"] * 3
    assert got["problem"] is None
    for folder in ("model", "output", "checkpoints"):
        assert (ml / folder).stat().st_uid == n, folder
    assert (ml / "input/data/train/train.csv").stat().st_uid == os.getuid()  # the input stays root's,
    assert (ml / "input/data").stat().st_mode & 0o777 == 0o755  # its own folders open to all, as on SageMaker


@needs_root
def test_a_folder_the_user_cannot_write_is_named_with_the_fix(ml: Path) -> None:
    (ml / "output").chmod(0o777)

    def child() -> str | None:
        drop()
        return job_user.access_problem("train", opt_ml.paths())

    reason = in_child(child)
    n = NOBODY.pw_uid
    assert reason.startswith(
        f"{ml}/model is not writable by uid {n} (gid {NOBODY.pw_gid}), the user this job runs as: "
        f"it belongs to uid {os.getuid()}, mode 755. Start the container as root"
    ), reason
    assert "docker run --user UID:GID" in reason and f"make the folder writable by uid {n}" in reason


@needs_root
def test_an_input_file_the_user_cannot_read_is_named_with_the_fix(ml: Path) -> None:
    for folder in ("model", "output", "checkpoints"):
        (ml / folder).mkdir(exist_ok=True)
        (ml / folder).chmod(0o777)
    (ml / "input/data/train/train.csv").chmod(0o600)

    def child() -> str | None:
        drop()
        return job_user.access_problem("train", opt_ml.paths())

    reason = in_child(child)
    assert f"cannot read {ml}/input/data/train/train.csv (it belongs to uid {os.getuid()}, mode 600)" in reason
    assert "chmod -R a+rX" in reason


@needs_root
def test_serve_copies_a_model_its_user_cannot_read(ml: Path) -> None:
    (ml / "model/manifest.json").write_text("{}")
    (ml / "model/manifest.json").chmod(0o600)

    def child() -> dict[str, Any]:
        done = job_user.become_job_user("serve")
        model = opt_ml.paths().model_dir
        return {"done": done, "model": str(model), "text": (model / "manifest.json").read_text()}

    got = in_child(child)
    assert "serving a copy in" in got["done"] and got["model"] != str(ml / "model"), got
    assert got["text"] == "{}"
    assert (ml / "model/manifest.json").stat().st_mode & 0o777 == 0o600  # the original is untouched


@needs_root
def test_a_written_model_is_left_readable_by_all(ml: Path) -> None:
    (ml / "model/sub").mkdir()
    (ml / "model/sub/weights.bin").write_bytes(b"w")
    (ml / "model/sub/weights.bin").chmod(0o600)
    (ml / "model/sub").chmod(0o700)
    for path in (ml / "model", ml / "model/sub", ml / "model/sub/weights.bin"):
        os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)

    def child() -> None:
        drop()
        job_user.share_model(opt_ml.paths())

    in_child(child)
    assert (ml / "model/sub").stat().st_mode & 0o777 == 0o755
    assert (ml / "model/sub/weights.bin").stat().st_mode & 0o777 == 0o644


def test_a_bad_checkpoint_config_is_left_to_the_job_to_report(ml: Path) -> None:
    """The checkpoint folder comes from checkpointconfig.json; a broken one is not the hand-over's
    to report (the job writes it to the failure file): the other folders are still handed over."""
    (ml / "input/config/checkpointconfig.json").write_text("{not json")
    assert job_user.job_folders("train", opt_ml.paths()) == [ml / "model", ml / "output"]
    assert job_user.job_folders("serve", opt_ml.paths()) == []
