"""Malicious and good model archives, built with ``tarfile``, for the extraction tests in the venv
(tests/train/test_archives.py) and in the image (tests/container/test_archives_in_image.py).

Each refused case is laid out for an extraction into ``<outer>/dest``: an escape aims at
``<outer>``, where the test looks for it afterwards. ``outer`` is the path as the extracting
process sees it (a container sees the host's temporary folder under its own mount point).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

Entry = tuple[tarfile.TarInfo, bytes | None]
MiB = 1 << 20
BOMB_BYTES = 64 * MiB  # the gzip bomb's one file: 64 MiB of zeros, about 64 KiB compressed
PLANTED = {"secret.txt": b"original\n"}  # a file outside the target that a hard link could overwrite


class Zeros(io.RawIOBase):
    """``size`` zero bytes, read in chunks: a bomb's content without holding it in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def file(name: str, data: bytes = b"x", mode: int = 0o644, **attrs: Any) -> Entry:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def folder(name: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def special(name: str, kind: bytes, linkname: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = (1, 3) if kind == tarfile.CHRTYPE else (8, 0)  # /dev/null, /dev/sda
    return info, None


def symlink(name: str, to: str) -> Entry:
    return special(name, tarfile.SYMTYPE, to)


def hardlink(name: str, to: str) -> Entry:
    return special(name, tarfile.LNKTYPE, to)


def write_tar(path: Path, entries: list[Entry], mode: str = "w:gz") -> Path:
    """``entries`` as a tar archive at ``path`` (gzip unless ``mode`` says otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for info, data in entries:
            if data is None and info.isreg():  # a bomb: the size is set, the content streamed
                tar.addfile(info, io.BufferedReader(Zeros(info.size), 1 << 20))
            else:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def nested_symlink_escape(outer: PurePosixPath, path_max: int = 4096) -> list[Entry]:
    """The CVE-2025-4517 pattern, against an extraction into ``outer/dest``.

    Sixteen symlinks ``a``..``p``, each to a long folder name beside it, make ``a/b/.../p`` expand to
    nearly PATH_MAX characters; a last symlink under it climbs sixteen levels back to ``dest``. The
    kernel follows all of it, but ``os.path.realpath`` (what the ``data`` filter checks with) gives
    up expanding once the path is longer than PATH_MAX, so it never sees where ``escape`` (that
    link's parent, ``dest/..``) really goes; ``escape/planted.py`` is then written to ``outer``.
    """
    steps = "abcdefghijklmnop"
    dest_len = len(str(outer / "dest"))
    component = "d" * ((path_max - dest_len - 1) // (len(steps) + 1))
    entries: list[Entry] = []
    path = PurePosixPath()
    for step in steps:
        entries += [folder(str(path / component)), symlink(str(path / step), component)]
        path /= component
    long_link = PurePosixPath(*steps, "l" * 254)
    entries.append(symlink(str(long_link), str(PurePosixPath(*[".."] * len(steps)))))
    entries.append(symlink("escape", str(long_link / "..")))
    entries.append(file("escape/planted.py", b"print('planted')\n"))
    return entries


def bomb(name: str, size: int = BOMB_BYTES) -> Entry:
    """A regular file of ``size`` zeros, streamed into the archive (highly compressible)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    return info, None


def pax_bomb(name: str, header_bytes: int) -> Entry:
    """A file whose pax extended header holds ``header_bytes`` of comment: tarfile reads a pax
    header whole, into memory, before it yields the member the header belongs to."""
    info, data = file(name, b"{}")
    info.pax_headers = {"comment": "x" * header_bytes}
    return info, data


@dataclass(frozen=True)
class Case:
    """A crafted archive: its entries for a given ``outer``, the member the refusal must name, and
    the caps to extract it with (``archives.Limits`` fields; empty: the defaults)."""

    name: str
    member: str
    entries: Callable[[PurePosixPath], list[Entry]]
    limits: dict[str, int] = field(default_factory=dict)


def _many(count: int) -> list[Entry]:
    return [file(f"shard-{i}.bin") for i in range(count)]


REFUSED: tuple[Case, ...] = (
    Case("traversal", "../evil.py", lambda o: [file("config.json", b"{}"), file("../evil.py")]),
    Case("traversal-nested", "model/../../evil.py", lambda o: [folder("model"), file("model/../../evil.py")]),
    Case("absolute", "<outer>/evil.py", lambda o: [file(str(o / "evil.py"))]),
    Case("drive", "C:/evil.py", lambda o: [file("C:/evil.py")]),
    Case("backslash", "..\\evil.py", lambda o: [file("..\\evil.py")]),
    Case("symlink-out", "model", lambda o: [symlink("model", str(o)), file("model/evil.py")]),
    Case("symlink-up", "up", lambda o: [symlink("up", ".."), file("up/evil.py")]),
    Case("symlink-inside", "alias.json", lambda o: [file("config.json", b"{}"), symlink("alias.json", "config.json")]),
    Case("hardlink-out", "secret", lambda o: [hardlink("secret", str(o / "secret.txt")), file("secret")]),
    Case("hardlink-up", "secret", lambda o: [hardlink("secret", "../secret.txt"), file("secret", b"pwned")]),
    Case("nested-symlink-escape", "a", nested_symlink_escape),
    Case("char-device", "null", lambda o: [special("null", tarfile.CHRTYPE)]),
    Case("block-device", "sda", lambda o: [special("sda", tarfile.BLKTYPE)]),
    Case("fifo", "pipe", lambda o: [special("pipe", tarfile.FIFOTYPE)]),
    Case("duplicate", "config.json", lambda o: [file("config.json", b"{}"), file("config.json", b"[]")]),
    Case("file-as-folder", "config.json/x", lambda o: [file("config.json", b"{}"), file("config.json/x")]),
    Case("too-many-members", "shard-5.bin", lambda o: _many(6), {"max_members": 5}),
    Case("file-too-big", "model.bin", lambda o: [file("model.bin", bytes(1001))], {"max_file_bytes": 1000}),
    Case(
        "total-too-big",
        "b.bin",
        lambda o: [file("a.bin", bytes(800)), file("b.bin", bytes(800))],
        {"max_file_bytes": 1000, "max_total_bytes": 1500},
    ),
    Case(
        "gzip-bomb",
        "model.safetensors",
        lambda o: [file("config.json", b"{}"), bomb("model.safetensors")],
        {"max_file_bytes": MiB, "max_total_bytes": MiB},
    ),
    Case("pax-header-bomb", "config.json", lambda o: [file("config.json", b"{}"), pax_bomb("vocab.txt", 20 * MiB)]),
    Case(
        "pax-header-past-the-cap",
        "config.json",
        lambda o: [file("config.json", b"{}"), pax_bomb("vocab.txt", 3 * MiB)],
        {"max_total_bytes": 1000, "max_members": 10},
    ),
)
"""Every archive the extraction must refuse. In the two pax cases the member named is the last one
read before the bad header: the header's own member is never reached, so it has no name yet."""


def member_name(case: Case, outer: PurePosixPath) -> str:
    return case.member.replace("<outer>", str(outer))


def good_entries() -> list[Entry]:
    """A model folder as ``tar czf model.tar.gz -C folder .`` stores it: ``./`` names, nested
    folders, an empty one; with a setuid mode and a foreign owner that must not survive."""
    return [
        folder("."),
        file("./config.json", b'{"model_type": "bert"}'),
        folder("./tokenizer"),
        file("./tokenizer/tokenizer.json", b'{"version": "1.0"}'),
        folder("./onnx/nested/deeper"),
        file("./onnx/nested/deeper/weights.bin", bytes(range(256)) * 12, mode=0o4755, uid=4242, gid=4242, uname="evil"),
        folder("./empty"),
    ]


def digests(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: sha256 of files, ``"/"`` for folders."""
    return {
        p.relative_to(root).as_posix(): "/" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def expected_good() -> dict[str, str]:
    found: dict[str, str] = {}
    for info, data in good_entries():
        name = PurePosixPath(info.name)
        if name == PurePosixPath("."):
            continue
        for parent in list(name.parents)[:-1]:
            found[parent.as_posix()] = "/"
        found[name.as_posix()] = "/" if info.isdir() else hashlib.sha256(data or b"").hexdigest()
    return dict(sorted(found.items()))


def plant(outer: Path) -> None:
    outer.mkdir(parents=True, exist_ok=True)
    for name, data in PLANTED.items():
        (outer / name).write_bytes(data)


def outside(outer: Path) -> dict[str, str]:
    """What lies in ``outer`` besides ``dest`` (not walked): after a refusal, just what was planted."""
    found: dict[str, str] = {}
    for p in sorted(outer.iterdir()):
        if p.name != "dest":
            found[p.name] = "/" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            found.update({f"{p.name}/{k}": v for k, v in digests(p).items()} if p.is_dir() else {})
    return found


def planted() -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in PLANTED.items()}
