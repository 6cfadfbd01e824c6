"""Who the jobs run as in the image: an unprivileged user, never root.

SageMaker starts a container with the image's own user and mounts the folders a training job
writes (the model, output and checkpoint folders) owned by root: a non-root image user cannot write
them (AWS's own SDK runs ``sudo chmod -R 777`` on them when its non-root images run as jobs). So
the image starts as root, and the first thing ``textclf`` does there, before it reads any data
(only the checkpoint folder's path, from ``checkpointconfig.json``), is :func:`become_job_user`:
hand the folders this job writes to the user ``TEXTCLF_USER`` names (the image sets ``textclf``,
uid 1000), then drop to that user for good (supplementary groups, gid, uid: no capabilities and no
way back). The input tree's own folders are opened to all (``a+rX``), as SageMaker's are (the SDK's
local mode makes ``input/data`` mode 700); the channels and files in them keep their modes. A model
to serve whose files that user cannot read (one packed by an older, root-run image:
``manifest.json`` was root's, mode 600) is copied, unread, to a private folder of that user's and
served from there. Started as anyone else (``docker run --user``, Kubernetes ``runAsNonRoot``),
nothing is switched, opened or copied. :func:`access_problem` then tells a training job, before it
starts, which folder it cannot write or which input file it cannot read, and how to fix that.
Outside the image (``TEXTCLF_USER`` unset) nothing of this happens but that check.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from textclf.contract import opt_ml
from textclf.errors import EXIT_USER_ERROR, ConfigError

USER_ENV = "TEXTCLF_USER"
SHARED_TEMP = Path("/tmp")  # what Python's tempfile, nginx's run directory and the caches use
_READ, _EXEC = 4, 1
_SHOWN = 3  # unreadable input files named in the failure reason


@dataclass(frozen=True)
class JobUser:
    name: str
    uid: int
    gid: int
    home: Path


def configured_user() -> JobUser | None:
    """The user ``TEXTCLF_USER`` names (the image's), or None outside the image."""
    name = os.environ.get(USER_ENV, "").strip()
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"{USER_ENV}={name!r}: there is no such user in this image") from None
    if entry.pw_uid == 0:
        raise ConfigError(f"{USER_ENV}={name!r} is root: the jobs must run as an unprivileged user")
    return JobUser(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def job_folders(command: str, p: opt_ml.Paths) -> list[Path]:
    """The folders ``command`` writes besides the temp directory: a training job's model, output
    and checkpoint folders; serving and the other commands write none (the model is read-only)."""
    if command != "train":
        return []
    try:
        return [p.model_dir, p.output_dir, opt_ml.checkpoint_dir(p)]
    except ConfigError:  # a bad checkpointconfig.json: the job itself reports it, in the failure file
        return [p.model_dir, p.output_dir]


def _inside(path: Path, root: Path) -> bool:
    return root != Path(root.anchor) and path.resolve().is_relative_to(root.resolve())


def _hand_over(folder: Path, user: JobUser) -> bool:
    """Make ``folder`` (created if missing) and everything in it ``user``'s. False where that is
    impossible (a read-only mount, an ID-mapped one): :func:`access_problem` then names the folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, user.uid, user.gid, follow_symlinks=False)
        for parent, dirs, files in os.walk(folder):
            for name in (*dirs, *files):
                os.chown(Path(parent, name), user.uid, user.gid, follow_symlinks=False)
    except OSError:
        return False
    return True


def _share_temp() -> None:
    """``/tmp`` as it should be (1777): SageMaker may mount its own there, writable by root only."""
    try:
        mode = stat.S_IMODE(SHARED_TEMP.stat().st_mode)
        if mode & 0o1777 != 0o1777:
            SHARED_TEMP.chmod(0o1777)
    except OSError:
        pass  # Python's tempfile falls back to /var/tmp, which the image keeps 1777


def _open_input_folders(p: opt_ml.Paths) -> None:
    """Let everyone list and enter the input tree's own folders (``input``, ``input/config``,
    ``input/data``), as SageMaker's are: the SDK's local mode makes ``input/data`` with mkdtemp,
    mode 700. The channels in it, and every file, keep their modes (:func:`access_problem` names
    what the job user cannot read)."""
    for folder in (p.input_dir, p.config_dir, p.data_dir):
        with contextlib.suppress(OSError):  # missing, or a read-only mount
            mode = stat.S_IMODE(folder.lstat().st_mode)
            if stat.S_ISDIR(folder.lstat().st_mode) and mode & 0o555 != 0o555:
                folder.chmod(mode | 0o555)


def _hand_over_stdio(user: JobUser) -> None:
    """Give ``user`` the container's stdin, stdout and stderr, as runc does for a container whose
    user is not root (``fixStdioPermissions``): nginx reopens ``/dev/stdout`` for its access log,
    which needs the pipe's owner. ``/dev/null`` and other devices stay as they are."""
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if not stat.S_ISCHR(os.fstat(fd).st_mode) or os.isatty(fd):
                os.fchown(fd, user.uid, user.gid)


def _allows(st: os.stat_result, user: JobUser, wanted: int) -> bool:
    """Whether the mode bits of ``st`` give ``user`` (no supplementary groups) ``wanted``: what
    ``os.access`` would say after the drop, worked out while still root."""
    if st.st_uid == user.uid:
        bits = st.st_mode >> 6
    elif st.st_gid == user.gid:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & wanted == wanted


def _readable_tree(root: Path, user: JobUser) -> bool:
    """Whether ``user`` can reach ``root`` and read every file and folder in it."""
    try:
        if not all(_allows(d.stat(), user, _EXEC) for d in root.resolve().parents):
            return False
        for parent, dirs, files in os.walk(root):
            if not _allows(Path(parent).stat(), user, _READ | _EXEC):
                return False
            for name in files:
                if not _allows(Path(parent, name).stat(), user, _READ):
                    return False
            dirs[:] = [d for d in dirs if not Path(parent, d).is_symlink()]
    except OSError:
        return False
    return True


def _serve_copy(p: opt_ml.Paths, user: JobUser) -> Path | None:
    """A copy of the model, ``user``'s, when ``user`` cannot read the original (read-only on
    SageMaker, so it cannot be fixed in place). Serving then reads it through ``SM_ROOT``."""
    if not p.model_dir.is_dir() or _readable_tree(p.model_dir, user):
        return None
    root = Path(tempfile.mkdtemp(prefix="textclf-model-"))  # 700, root's until handed over below
    copy = root / p.model_dir.name
    shutil.copytree(p.model_dir, copy, symlinks=True)
    for path in (root, copy, *copy.rglob("*")):
        os.chown(path, user.uid, user.gid, follow_symlinks=False)
    os.environ[opt_ml.ROOT_ENV] = str(root)
    return copy


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _ensure_home() -> None:
    """A writable HOME for the caches (Hugging Face, matplotlib): a uid the image does not know
    (``docker run --user 4321``) cannot write the job user's, so it gets a temporary one."""
    home = Path(os.environ.get("HOME") or "/")
    if not (home.is_dir() and _writable(home)):
        os.environ["HOME"] = tempfile.mkdtemp(prefix="textclf-home-")


def become_job_user(command: str) -> str | None:
    """In the image, started as root: prepare what ``command`` needs and become the job user.
    Returns what it did, for the log; None where it changed no user."""
    user = configured_user()
    if user is None:
        return None
    if os.geteuid() != 0:
        _ensure_home()
        return None
    p = opt_ml.paths()
    handed = [
        str(folder)
        for folder in job_folders(command, p)
        # Only below the /opt/ml root: a checkpoint LocalPath elsewhere is the operator's to set up.
        if _inside(folder, p.root) and _hand_over(folder, user)
    ]
    if command == "train":
        _open_input_folders(p)
    _share_temp()
    _hand_over_stdio(user)
    copy = _serve_copy(p, user) if command == "serve" else None
    os.setgroups([])
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    os.environ.update(HOME=str(user.home), USER=user.name, LOGNAME=user.name)
    _ensure_home()
    done = f"running as {user.name} (uid {user.uid}, gid {user.gid}), not root"
    if handed:
        done += f"; {', '.join(handed)} handed over to it"
    if copy:
        done += f"; {user.name} cannot read every file of {p.model_dir}: serving a copy in {copy}"
    return done


def _unreadable_inputs(p: opt_ml.Paths) -> list[Path]:
    """Files and folders under the input tree (config, channels) this process cannot read."""
    found: list[Path] = []
    if not p.input_dir.is_dir():
        return found
    for parent, dirs, files in os.walk(p.input_dir):
        for name in list(dirs):
            if not os.access(Path(parent, name), os.R_OK | os.X_OK):
                found.append(Path(parent, name))
                dirs.remove(name)
        found += [Path(parent, name) for name in files if not os.access(Path(parent, name), os.R_OK)]
    return found


def _owner_and_mode(path: Path) -> str:
    st = path.stat()
    return f"it belongs to uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}"


def access_problem(command: str, p: opt_ml.Paths) -> str | None:
    """Why this process cannot run ``command``: a folder it must write that it cannot, or an input
    file it cannot read. None when it can."""
    uid, gid = os.geteuid(), os.getegid()
    who = f"uid {uid} (gid {gid}), the user this job runs as"
    user = configured_user()
    for folder in job_folders(command, p):
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if _writable(existing):
            continue
        where = str(folder) if existing == folder else f"{folder} (to be created in {existing})"
        reason = f"{where} is not writable by {who}: "
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return reason + "it is on a read-only mount. Mount it writable."
        reason += _owner_and_mode(existing) + ". "
        if user is None:
            return reason + f"Make it writable by uid {uid}, or run as its owner."
        folders = ", ".join(str(f) for f in job_folders(command, p))
        return reason + (
            f"Start the container as root, the image's default and what SageMaker does (it hands {folders} "
            f"to {user.name}, uid {user.uid}, then drops to that user), or as the folder's owner "
            f"(docker run --user UID:GID), or make the folder writable by uid {uid}."
        )
    if command != "train":
        return None
    unreadable = _unreadable_inputs(p)
    if not unreadable:
        return None
    more = f" and {len(unreadable) - _SHOWN} more" if len(unreadable) > _SHOWN else ""
    shown = "; ".join(f"{path} ({_owner_and_mode(path)})" for path in unreadable[:_SHOWN])
    return (
        f"{who}, cannot read {shown}{more}. The job reads its input as that user, as on SageMaker, "
        "whose channel files everyone may read: make the files readable (chmod -R a+rX on the folder "
        "mounted there) or run the container as their owner (docker run --user UID:GID)."
    )


def share_model(p: opt_ml.Paths) -> None:
    """Let anyone read the model just written (``a+rX``): the serving container reads it as its
    own job user, whoever owns the files once SageMaker has unpacked ``model.tar.gz``."""
    if configured_user() is None or not p.model_dir.is_dir():
        return  # outside the image, files keep the modes their writer gave them
    with contextlib.suppress(OSError):  # best effort: serving copies a model it cannot read
        for path in (p.model_dir, *p.model_dir.rglob("*")):
            if not path.is_symlink() and path.stat().st_uid == os.geteuid():
                mode = stat.S_IMODE(path.stat().st_mode)
                path.chmod(mode | 0o444 | (0o111 if path.is_dir() else 0))


def report(reason: str, p: opt_ml.Paths) -> int:
    """Say ``reason`` where SageMaker shows it (the failure file, when that can be written) and on
    stderr; the exit status of a problem the user can fix."""
    with contextlib.suppress(OSError):  # the output folder may be one it cannot write: then stderr only
        opt_ml.write_failure(reason, "", p)
    print(f"error: {reason}", file=sys.stderr, flush=True)
    return EXIT_USER_ERROR
