"""The ``pretrained`` channel's archive is unpacked by our own member checks, not the stdlib filter.

Every crafted archive of ``support.crafted_archives`` (traversal, absolute, links out, the
CVE-2025-4517 nested-symlink escape, devices, FIFO, too many or too large members, a gzip bomb, a
pax-header bomb) is refused with a message naming the archive and the member, and nothing is
written outside the target (nor, for that matter, inside: it is removed). A good archive comes out
intact, without the archive's modes or owners. The same cases run in the image's Python in
tests/container/test_archives_in_image.py.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from support.crafted_archives import (
    BOMB_BYTES,
    REFUSED,
    Case,
    digests,
    expected_good,
    file,
    good_entries,
    member_name,
    nested_symlink_escape,
    outside,
    plant,
    planted,
    write_tar,
)
from support.training import SageMakerTree
from textclf.errors import EXIT_USER_ERROR, ModelLoadError
from textclf.train import archives, pretrained
from textclf.train.archives import Limits, extract


def _refusal(case: Case, tmp_path: Path) -> tuple[str, Path, Path]:
    """Build ``case`` for ``tmp_path/outer/dest``, extract it; the message, the archive and outer."""
    outer = tmp_path / "outer"
    plant(outer)
    archive = write_tar(tmp_path / "archive.tar.gz", case.entries(PurePosixPath(outer)))
    with pytest.raises(ModelLoadError) as refused:
        extract(archive, outer / "dest", Limits(**case.limits))
    return str(refused.value), archive, outer


@pytest.mark.parametrize("case", REFUSED, ids=[c.name for c in REFUSED])
def test_a_crafted_archive_is_refused_and_nothing_is_written(case: Case, tmp_path: Path) -> None:
    message, archive, outer = _refusal(case, tmp_path)
    assert message.startswith(f"refusing to unpack {archive}: ")
    assert repr(member_name(case, PurePosixPath(outer))) in message
    assert "\n" not in message  # the failure file's first line is the whole reason
    assert outside(outer) == planted()  # nothing new beside the target, the planted file untouched
    assert not (outer / "dest").exists()  # and what the target held is gone


def test_the_nested_symlink_archive_escapes_the_stdlib_filter(tmp_path: Path) -> None:
    """The CVE-2025-4517 archive is a real attack: ``extractall(filter="data")`` of an unpatched
    Python (3.11.4 to 3.11.12, as in the test venv) writes ``planted.py`` outside the target."""
    if not hasattr(tarfile, "data_filter"):
        pytest.skip(f"Python {sys.version.split()[0]} has no extraction filters at all")
    outer = tmp_path / "outer"
    (outer / "dest").mkdir(parents=True)
    archive = write_tar(tmp_path / "cve.tar", nested_symlink_escape(PurePosixPath(outer)), mode="w")
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(outer / "dest", filter="data")
        except tarfile.FilterError:
            pytest.skip(f"Python {sys.version.split()[0]}'s tarfile is patched against CVE-2025-4517")
    assert (outer / "planted.py").read_text() == "print('planted')\n"


def test_a_gzip_bomb_is_refused_on_its_header_before_it_is_inflated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 MiB of zeros in a ~64 KiB .tar.gz, against a 1 MiB cap: refused on the header's size,
    after reading a few KiB of the decompressed stream; nothing is written."""
    bomb = next(c for c in REFUSED if c.name == "gzip-bomb")
    reached: list[int] = []
    read, seek = archives._CappedStream.read, archives._CappedStream.seek

    def spy_read(self: archives._CappedStream, size: int = -1) -> bytes:
        data = read(self, size)
        reached.append(self.tell())
        return data

    def spy_seek(self: archives._CappedStream, offset: int, whence: int = os.SEEK_SET) -> int:
        reached.append(seek(self, offset, whence))
        return reached[-1]

    monkeypatch.setattr(archives._CappedStream, "read", spy_read)
    monkeypatch.setattr(archives._CappedStream, "seek", spy_seek)
    message, archive, outer = _refusal(bomb, tmp_path)
    assert archive.stat().st_size < BOMB_BYTES // 500  # it is a bomb
    assert f"'model.safetensors' is {BOMB_BYTES} bytes, over the {1 << 20} limit" in message
    assert max(reached) < 64 * 1024  # headers only: the 64 MiB were never inflated
    assert outside(outer) == planted() and not (outer / "dest").exists()


def test_a_file_longer_than_its_header_says_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes are counted as they are written, not taken from the header: a reader that yields more
    than the header's size (a bug or a format quirk) is stopped at the size, and the target removed."""
    archive = write_tar(tmp_path / "a.tar.gz", [file("config.json", b"{}"), file("model.bin", bytes(100))])
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, member: io.BytesIO(bytes(member.size + (5 << 20))))
    with pytest.raises(ModelLoadError, match=r"member 'config\.json' unpacks to more than the 2 bytes its header"):
        extract(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_a_good_archive_comes_out_intact_without_its_modes_or_owners(mode: str, tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "model.tar", good_entries(), mode=mode)
    target = extract(archive, tmp_path / "dest")
    assert digests(target) == expected_good()
    umask = os.umask(0)
    os.umask(umask)
    weights = target / "onnx/nested/deeper/weights.bin"
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644 & ~umask  # not the archive's 04755 (setuid)
    assert stat.S_IMODE((target / "onnx").stat().st_mode) == 0o755 & ~umask
    assert weights.stat().st_uid == os.getuid()  # not 4242


def test_the_default_caps_fit_real_models() -> None:
    """The largest file save_pretrained writes is a 5 GB shard; a large encoder in several formats
    is under 10 GiB; a model folder has tens of files."""
    limits = Limits()
    assert limits.max_file_bytes >= 5 * 10**9
    assert limits.max_total_bytes >= 10 * 2**30
    assert 1000 <= limits.max_members <= 100_000


def test_a_malicious_channel_archive_stops_resolve(tmp_path: Path) -> None:
    channel = tmp_path / "pretrained"
    archive = write_tar(channel / "model.tar.gz", [file("config.json", b"{}"), file("../../evil.py")])
    (tmp_path / "work").mkdir()
    with pytest.raises(ModelLoadError, match=r"refusing to unpack .*model\.tar\.gz: member '\.\./\.\./evil\.py' has"):
        pretrained.resolve("unused", {"pretrained": channel}, tmp_path / "work")
    assert not (tmp_path / "evil.py").exists() and archive.exists()


def test_a_good_channel_archive_resolves_to_its_model_folder(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    channel = tmp_path / "pretrained"
    channel.mkdir()
    with tarfile.open(channel / "model.tar.gz", "w:gz") as tar:
        tar.add(tiny_encoder_dir, arcname="my-model")  # one folder down, as `tar czf x my-model/` stores it
    (tmp_path / "work").mkdir()
    source = pretrained.resolve("unused", {"pretrained": channel}, tmp_path / "work")
    assert source.is_local and Path(source.location).name == "my-model"
    assert digests(Path(source.location)) == digests(tiny_encoder_dir)


def test_train_fails_with_the_member_in_the_failure_file(sm: SageMakerTree, tiny_encoder_dir: Path) -> None:
    """``textclf train`` with the tiny model and a member aimed at the model directory's business
    rules in the channel's archive: exit 2, the failure file's first line names the archive and the
    member, and no rules.py is planted (the job unpacks into TMPDIR/textclf-host-*/pretrained-*)."""
    channel = sm.channel("pretrained")
    for f in channel.iterdir():
        f.unlink()
    entries = [file(f"./{f.name}", f.read_bytes()) for f in tiny_encoder_dir.iterdir()]
    entries.append(file("../../../model/code/rules.py", b"import os\n"))
    archive = write_tar(channel / "model.tar.gz", entries)
    (sm.root / "tmp").mkdir()
    result = sm.run(TMPDIR=str(sm.root / "tmp"))  # ../../../ from the unpacking folder is sm.root
    assert result.returncode == EXIT_USER_ERROR, result.stdout + result.stderr
    reason = sm.failure.read_text(encoding="utf-8").splitlines()[0]
    assert reason.startswith(f"refusing to unpack {archive}: member '../../../model/code/rules.py' has"), reason
    assert not list(sm.root.rglob("rules.py"))
