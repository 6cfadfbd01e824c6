"""Unpacking a model archive (the ``pretrained`` channel's ``.tar.gz``) without trusting it.

The stdlib cannot be relied on for this: the image's Python (Debian bookworm's 3.11.2) has no
``extractall(filter=...)`` at all, and the ``"data"`` filter of 3.11.4-3.11.12 lets nested symlinks
write outside the target (CVE-2025-4517). So every member is checked here before anything is
written, and files are written by this module, never by ``tarfile.extract*``:

- only regular files and directories: a Hugging Face model folder needs no symbolic or hard links,
  devices, FIFOs or sparse files, so those are refused outright rather than sanitised;
- names are relative, with no ``..`` component, no backslash, drive or NUL; ``./`` prefixes (what
  ``tar czf model.tar.gz .`` writes) are fine; no name twice, no file used as a folder;
- caps on the member count and on each file's and the total uncompressed size, checked on the
  headers while reading them (a gzip bomb stops at its first header over the cap, long before it is
  inflated) and again on the bytes actually written; the decompressed stream itself is capped too,
  so that a huge pax or GNU long-name header (which tarfile reads whole into memory before it
  yields the member) is refused rather than read;
- each file is created new (``O_EXCL``, ``O_NOFOLLOW``) under the resolved target, after checking
  that it resolves inside it; modes are 0644 / 0755 (less the umask), never the archive's,
  so no setuid bit or foreign owner survives.

A refusal is a ``ModelLoadError`` naming the archive and the member (the failure file's first
line); whatever was unpacked before an error is removed.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, cast

from textclf.errors import ModelLoadError

GiB = 1 << 30
MiB = 1 << 20
CHUNK = MiB  # bytes copied at a time
MAX_READ = 16 * MiB  # the largest read tarfile may ask of the stream: members are read by CHUNK,
# headers by 512-byte blocks; only a pax or long-name header asks for more, and a real one is tiny
HEADER_SLACK = 8 * 1024  # stream bytes per member besides its data: headers, pax records, padding
END_SLACK = MiB  # end-of-archive blocks and record padding
Checked = list[tuple[tarfile.TarInfo, tuple[str, ...]]]  # members that passed, with their path components
MAGIC = ((b"\x1f\x8b", gzip.GzipFile), (b"BZh", bz2.BZ2File), (b"\xfd7zXZ\x00", lzma.LZMAFile))


@dataclass(frozen=True)
class Limits:
    """How much an archive may unpack to.

    The defaults fit every BERT-family checkpoint: the largest single file ``save_pretrained``
    writes is a 5 GB shard (its default ``max_shard_size``), and 10 GiB holds xlm-roberta-large
    (2.2 GB) in every weight format the hub ships at once. A model folder has tens of files;
    10,000 members bound the time and inodes an archive of empty entries can take. A larger model
    goes in the channel as a folder (not archived), which is not unpacked and so not capped.
    """

    max_members: int = 10_000
    max_file_bytes: int = 5 * GiB
    max_total_bytes: int = 10 * GiB


class _CappedStream:
    """The archive's decompressed bytes, refusing to read or seek past ``limit`` or to read more than
    ``MAX_READ`` at once: tarfile's own reads (headers included) stay bounded, whatever the headers say."""

    def __init__(self, raw: io.BufferedIOBase, limit: int, archive: Path) -> None:
        self.raw, self.limit, self.archive = raw, limit, archive
        self.name = str(archive)
        self.after = ""  # the last member read, for the message

    def _check(self, end: int) -> None:
        if end > self.limit:
            where = f"after member {self.after!r}" if self.after else "in its first header"
            raise ModelLoadError(f"refusing to unpack {self.archive}: it unpacks past {self.limit} bytes {where}")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MAX_READ:
            where = f"after member {self.after!r}" if self.after else "at its start"
            raise ModelLoadError(f"refusing to unpack {self.archive}: a header {where} is over {MAX_READ} bytes")
        self._check(self.raw.tell() + size)
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._check(offset)
        elif whence == os.SEEK_CUR:
            self._check(self.raw.tell() + offset)
        else:
            raise ValueError("seeking from the end of a compressed stream is not supported")
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


def _open_stream(archive: Path) -> io.BufferedIOBase:
    """The archive's bytes, decompressed (gzip, bzip2 or xz, told by their magic number) or as they are."""
    with archive.open("rb") as fh:
        head = fh.read(8)
    for magic, opener in MAGIC:
        if head.startswith(magic):
            return opener(archive, "rb")
    return archive.open("rb")


def _refuse(archive: Path, member: str, why: str) -> ModelLoadError:
    return ModelLoadError(f"refusing to unpack {archive}: member {member!r} {why}")


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r}; tar -h stores the file it points to)"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "is a device"
    if member.isfifo():
        return "is a FIFO"
    if member.issparse():
        return "is a sparse file"
    return f"is of tar type {member.type!r}"


def _relative_parts(archive: Path, name: str) -> tuple[str, ...]:
    """``name`` as path components under the target, or a refusal; ``()`` is the target itself."""
    if "\\" in name or "\0" in name:
        raise _refuse(archive, name, "has a backslash or NUL in its name")
    if name.startswith("/") or PureWindowsPath(name).drive:
        raise _refuse(archive, name, "is an absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p != ".")
    if ".." in parts:
        raise _refuse(archive, name, "has a '..' component")
    return parts


def check_members(archive: Path, tar: tarfile.TarFile, limits: Limits) -> Checked:
    """Every member with its path components, read header by header; the first bad one is refused
    before the next header is read (so before a bomb's data is inflated)."""
    checked: Checked = []
    stream = tar.fileobj if isinstance(tar.fileobj, _CappedStream) else None
    files: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    total = 0
    for member in tar:  # lazily: tarfile reads the next header only when asked
        if len(checked) >= limits.max_members:
            raise _refuse(archive, member.name, f"is past the limit of {limits.max_members} members")
        if not (member.isdir() or (member.isreg() and not member.issparse())):
            raise _refuse(archive, member.name, _kind(member) + "; a model archive holds only files and folders")
        parts = _relative_parts(archive, member.name)
        if member.isreg():
            if not parts:
                raise _refuse(archive, member.name, "is a file named like the archive's root")
            if member.size > limits.max_file_bytes:
                raise _refuse(archive, member.name, f"is {member.size} bytes, over the {limits.max_file_bytes} limit")
            total += member.size
            if total > limits.max_total_bytes:
                raise _refuse(archive, member.name, f"takes the archive past {limits.max_total_bytes} bytes unpacked")
            if parts in files:
                raise _refuse(archive, member.name, "appears twice")
            if parts in folders:
                raise _refuse(archive, member.name, "is a file named like a folder before it")
            files.add(parts)
        elif parts in files:
            raise _refuse(archive, member.name, "is a folder named like a file before it")
        if any(parts[:i] in files for i in range(1, len(parts))):
            raise _refuse(archive, member.name, "is inside a path that is a file")
        folders.update(parts[:i] for i in range(1, len(parts) + (0 if member.isreg() else 1)))
        checked.append((member, parts))
        if stream is not None:
            stream.after = member.name
    return checked


def _inside(path: Path, root: Path, archive: Path, member: str) -> None:
    """Refuse ``path`` unless it resolves inside ``root``: never true of a member that passed the
    checks (the target starts empty and only files and folders are made), kept as a second lock."""
    if not path.resolve().is_relative_to(root):
        raise _refuse(archive, member, f"would be written outside {root}")


def _copy(source: IO[bytes], dest: Path, budget: int, archive: Path, member: str) -> int:
    """Stream ``source`` into a new ``dest``; returns the bytes written, refusing past ``budget``."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise _refuse(archive, member, f"unpacks to more than the {budget} bytes its header allows")
            out.write(chunk)
    return written


def _write(archive: Path, tar: tarfile.TarFile, members: Checked, root: Path, budget: int) -> None:
    """Make the checked ``members`` under ``root``: folders, then each file created new and streamed."""
    for member, parts in members:
        dest = root.joinpath(*parts)
        _inside(dest, root, archive, member.name)  # before anything is made for it
        if member.isdir():
            dest.mkdir(mode=0o755, parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        source = tar.extractfile(member)
        if source is None:  # isreg() members always have data; kept for the type checker
            raise _refuse(archive, member.name, "has no data")
        with source:
            budget -= _copy(source, dest, min(member.size, budget), archive, member.name)


def extract(archive: Path, target: Path, limits: Limits = Limits()) -> Path:
    """Unpack the tar archive ``archive`` (plain, gzip, bzip2 or xz) into ``target``, a new or empty
    folder; returns ``target``. Raises ``ModelLoadError`` naming the member it refuses, after
    removing ``target``; nothing is written before every member has been checked."""
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise ModelLoadError(f"cannot unpack {archive}: {target} is not empty")
    root = target.resolve()
    limit = limits.max_total_bytes + limits.max_members * HEADER_SLACK + END_SLACK
    try:
        with _open_stream(archive) as raw:
            stream = cast(IO[bytes], _CappedStream(raw, limit, archive))
            with tarfile.open(fileobj=stream, mode="r:") as tar:
                _write(archive, tar, check_members(archive, tar, limits), root, limits.max_total_bytes)
    except ModelLoadError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise ModelLoadError(f"cannot unpack {archive}: {' '.join(str(exc).split())}") from None
    return target
