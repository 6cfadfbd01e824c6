"""Training data: CSV / TSV / JSON Lines files (optionally gzip) read into texts and label names.

Channels: ``train`` (required), ``validation`` (else a stratified split of ``train``), ``test``
(optional). A channel is a directory of files, read in sorted order. Files are UTF-8, with or
without a byte-order mark (at the start of a file, and of a JSON line: files joined with ``cat`` keep
theirs). Every problem a user can put in the data fails with a ``DataError`` that names the file and
line. A text (and a text pair) must hold something to classify, by the rule serving applies to
requests (``textclf.model.text_validity``): empty, whitespace-only, NUL-only and zero-width-only
texts are refused, never trained on. Labels are names: an integer label ``1`` becomes the name
``"1"``; ``LabelMap`` turns names into the model's ids.

Only the standard library, numpy and scikit-learn are imported: bad data fails before torch is loaded.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import sys
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from textclf.errors import ConfigError, DataError
from textclf.model import text_validity
from textclf.train.hyperparameters import Hyperparameters

TRAIN, VALIDATION, TEST = "train", "validation", "test"
DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")  # each optionally followed by .gz
# Long reviews exceed csv's default 128 KiB field limit; sys.maxsize overflows a C long on some platforms.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class Columns:
    """Where the text, the optional second text and the label sit in a row."""

    text: str = "text"
    pair: str = ""
    label: str = "label"


@dataclass
class TextDataset:
    """Rows of one channel, column-wise. ``labels[i]`` holds the label names of row i (exactly one
    for single-label data); ``sources[i]`` is its ``(file, line)`` for error messages."""

    texts: list[str] = field(default_factory=list)
    pairs: list[str] | None = None
    labels: list[tuple[str, ...]] = field(default_factory=list)
    sources: list[tuple[str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> TextDataset:
        return TextDataset(
            texts=[self.texts[i] for i in indices],
            pairs=None if self.pairs is None else [self.pairs[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            sources=[self.sources[i] for i in indices],
        )

    def extend(self, other: TextDataset) -> None:
        self.texts += other.texts
        if other.pairs is not None:
            self.pairs = (self.pairs or []) + other.pairs
        self.labels += other.labels
        self.sources += other.sources

    def label_counts(self) -> Counter[str]:
        return Counter(name for names in self.labels for name in names)


@dataclass(frozen=True)
class LabelMap:
    """Label names in id order; the model's ``id2label``/``label2id``."""

    names: tuple[str, ...]
    multi_label: bool = False

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, dataset: TextDataset, *, numeric_ids: bool = False) -> list[int] | list[list[int]]:
        """Label ids (single-label) or multi-hot rows (multi-label) of every row of ``dataset``.

        A name this map does not know fails with its file and line. ``numeric_ids``: a label that
        is no name but an integer below the label count is taken as that id (GLUE files say
        ``0``/``1`` where a model may call its labels ``negative``/``positive``).
        """
        ids = self.label2id

        def id_of(name: str, source: tuple[str, int]) -> int:
            if name in ids:
                return ids[name]
            if numeric_ids and name.isdigit() and int(name) < len(self.names):
                return int(name)
            path, line = source
            raise DataError(f"{path} line {line}: label {name!r} is not one of the model's labels {list(self.names)}")

        if self.multi_label:
            rows = []
            for names, source in zip(dataset.labels, dataset.sources, strict=True):
                row = [0] * len(self.names)
                for name in names:
                    row[id_of(name, source)] = 1
                rows.append(row)
            return rows
        return [id_of(names[0], source) for names, source in zip(dataset.labels, dataset.sources, strict=True)]


@dataclass
class Datasets:
    """Everything ``train`` reads from the data channels."""

    train: TextDataset
    validation: TextDataset
    test: TextDataset | None
    label_map: LabelMap
    validation_origin: str  # "channel" or a description of the split


# -- files ----------------------------------------------------------------------------------------


def _format_of(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    return next((suffix[1:] for suffix in DATA_SUFFIXES if name.endswith(suffix)), None)


def channel_files(name: str, directory: Path) -> list[Path]:
    """The data files of a channel, sorted by path; fails when there are none."""
    found = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    files = [p for p in found if _format_of(p)]
    if not files:
        listing = ", ".join(p.relative_to(directory).as_posix() for p in found[:10]) or "nothing"
        raise DataError(
            f"channel {name!r} ({directory}) holds no data files (.csv, .tsv, .jsonl or .json, optionally .gz); "
            f"found: {listing}"
        )
    skipped = [p.relative_to(directory).as_posix() for p in found if p not in files]
    if skipped:
        print(f"data: channel {name!r}: ignoring files that are not data: {', '.join(skipped[:10])}", flush=True)
    return files


def _read_text(path: Path) -> str:
    """The whole file as text: gunzipped if ``.gz``, UTF-8 (a byte-order mark at the start is dropped)."""
    try:
        raw = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a valid gzip file: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise DataError(f"{path} is UTF-16 (it starts with a UTF-16 byte-order mark): save it as UTF-8") from None
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path} line {line} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _scalar_label(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataError(f"{where}: label {value!r} must be a string or an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise DataError(f"{where}: label {value!r} must be a string or an integer")
        value = int(value)
    return str(value).strip()


def _labels_of(value: Any, multi_label: bool, delimiter: str, where: str) -> tuple[str, ...]:
    """A cell's label names: one for single-label; split on ``delimiter`` (or a JSON list) for multi-label."""
    if value is None:
        value = ""
    if isinstance(value, list):
        if not multi_label:
            raise DataError(f"{where}: label is a list {value!r}; set problem_type to multi_label")
        names = [_scalar_label(v, where) for v in value]
    elif multi_label and isinstance(value, str):
        names = [part.strip() for part in value.split(delimiter)]
    else:
        names = [_scalar_label(value, where)]
    names = list(dict.fromkeys(n for n in names if n))
    if not names and not multi_label:
        raise DataError(f"{where}: empty label")
    return tuple(names)


def _text_of(value: Any, column: str, where: str) -> str:
    """The text of a cell, if it can be classified (``textclf.model.text_validity``, as in serving)."""
    if value is None:
        value = ""  # a JSON null, or a missing CSV cell: empty
    if not isinstance(value, str):
        raise DataError(f"{where}: column {column!r} must hold text, got {type(value).__name__} {value!r}")
    if (problem := text_validity.problem(value)) is not None:
        raise DataError(f"{where}: the text in column {column!r} {problem}")
    return value


def _delimited_rows(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, dict[str, str]]]:
    # TSV files such as GLUE's carry quote characters as text: no quoting at all for TSV.
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL,
    )
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            return
        while True:
            line = reader.line_num + 1  # where the next record starts (records may span lines)
            row = next(reader, None)
            if row is None:
                return
            if not row:  # blank line
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path} line {line} has {len(row)} fields, the header has {len(header)} "
                    f"({', '.join(header)})"
                    + ("; TSV is read without quoting, so a text may not contain a tab" if delimiter == "\t" else "")
                )
            yield line, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc}") from None


def _json_lines(text: str) -> list[str]:
    """Lines split at CR, LF and CRLF only: JSON strings hold no raw CR or LF, but may hold U+2028,
    U+2029 and U+0085, where ``str.splitlines`` would cut a record in two."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _json_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, content in enumerate(_json_lines(text), start=1):
        content = content.removeprefix("\ufeff")  # files joined with cat keep their byte-order marks
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path} line {line} is not valid JSON ({exc.msg}); expected one JSON object a line"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {line} is a JSON {type(row).__name__}, not an object; expected JSON Lines")
        yield line, row


def read_file(path: Path, columns: Columns, multi_label: bool = False, label_delimiter: str = "|") -> TextDataset:
    """Read one CSV / TSV / JSON Lines file (optionally gzip) into a ``TextDataset``."""
    fmt = _format_of(path)
    if fmt is None:
        raise DataError(f"{path}: unknown file type; use .csv, .tsv, .jsonl or .json (optionally .gz)")
    text = _read_text(path)
    rows = (
        _json_rows(path, text)
        if fmt in ("jsonl", "json")
        else _delimited_rows(path, text, "," if fmt == "csv" else "\t")
    )
    wanted = [c for c in (columns.text, columns.pair, columns.label) if c]
    data = TextDataset(pairs=[] if columns.pair else None)
    for line, row in rows:
        where = f"{path} line {line}"
        missing = [c for c in wanted if c not in row]
        if missing:
            kind = "keys" if fmt in ("jsonl", "json") else "columns"
            place = where if fmt in ("jsonl", "json") else str(path)
            raise DataError(
                f"{place}: no column {missing[0]!r} ({kind} found: {', '.join(map(str, row)) or 'none'}); "
                "set text_column / text_pair_column / label_column"
            )
        data.texts.append(_text_of(row[columns.text], columns.text, where))
        if data.pairs is not None:
            data.pairs.append(_text_of(row[columns.pair], columns.pair, where))
        data.labels.append(_labels_of(row[columns.label], multi_label, label_delimiter, where))
        data.sources.append((str(path), line))
    if not data.texts:
        raise DataError(f"{path} is empty: it holds no data rows")
    return data


def read_channel(
    name: str, directory: Path, columns: Columns, multi_label: bool = False, label_delimiter: str = "|"
) -> TextDataset:
    """Read every data file of a channel, in sorted order, into one ``TextDataset``."""
    data = TextDataset(pairs=[] if columns.pair else None)
    for path in channel_files(name, directory):
        data.extend(read_file(path, columns, multi_label, label_delimiter))
    return data


# -- labels and splits ----------------------------------------------------------------------------


def _sorted_names(names: set[str]) -> list[str]:
    """Integer-looking labels sort as numbers ("2" before "10"), others alphabetically."""
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def build_label_map(train: TextDataset, declared: Sequence[str], multi_label: bool) -> LabelMap:
    """The label map: ``declared`` (the ``labels`` hyperparameter) if given, else the labels of ``train``."""
    seen = train.label_counts()
    if declared:
        if len(set(declared)) != len(declared):
            raise ConfigError(f"hyperparameter labels has duplicates: {list(declared)}")
        names = list(declared)
        check_labels(train, LabelMap(tuple(names), multi_label), "train", hint="the labels hyperparameter")
    else:
        names = _sorted_names(set(seen))
    if len(names) < 2:
        only = f"a single class {names[0]!r}" if names else "no labels at all"
        raise DataError(f"train holds {only} ({train.sources[0][0]} ...); a classifier needs at least 2 classes")
    return LabelMap(tuple(names), multi_label)


def check_labels(data: TextDataset, label_map: LabelMap, channel: str, hint: str = "the train channel") -> None:
    """Fail on the first label of ``data`` that ``label_map`` does not know, naming its file and line."""
    known = set(label_map.names)
    for names, (path, line) in zip(data.labels, data.sources, strict=True):
        for name in names:
            if name not in known:
                listing = ", ".join(map(repr, label_map.names[:20]))
                raise DataError(
                    f"unknown label {name!r} in {channel} at {path} line {line}; labels known from {hint}: {listing}"
                )


def stratified_split(
    data: TextDataset, label_map: LabelMap, share: float, seed: int
) -> tuple[TextDataset, TextDataset]:
    """Hold out ``share`` of ``data``, stratified by label (multi-label: by each row's first label).

    sklearn does the allocation; classes with a single row stay in the training part (sklearn
    cannot stratify them, and one row is worth more for training than for measuring).
    """
    order = {name: i for i, name in enumerate(label_map.names)}
    keys = [min((order[n] for n in names), default=-1) for names in data.labels]
    counts = Counter(keys)
    splittable = [i for i, k in enumerate(keys) if counts[k] > 1]
    singles = [i for i, k in enumerate(keys) if counts[k] == 1]
    try:
        train_idx, held_idx = train_test_split(
            splittable, test_size=share, stratify=[keys[i] for i in splittable], random_state=seed
        )
    except ValueError as exc:
        raise DataError(
            f"train has too few rows ({len(data)}) to hold out a stratified validation_split of {share}: {exc}; "
            "provide a validation channel"
        ) from None
    return data.subset(sorted(train_idx + singles)), data.subset(sorted(held_idx))


def sample(data: TextDataset, limit: int, seed: int) -> TextDataset:
    """At most ``limit`` rows, chosen at random (seeded), kept in file order."""
    if not limit or len(data) <= limit:
        return data
    chosen = np.random.default_rng(seed).permutation(len(data))[:limit]
    return data.subset(sorted(chosen.tolist()))


def fingerprint(data: TextDataset, label_map: LabelMap) -> str:
    """sha256 of the rows and the label map: a checkpoint is only resumed on the very same data."""
    digest = hashlib.sha256(json.dumps([label_map.names, label_map.multi_label]).encode())
    pairs = data.pairs or [""] * len(data)
    for text, pair, names in zip(data.texts, pairs, data.labels, strict=True):
        digest.update(json.dumps([text, pair, names], ensure_ascii=False).encode())
    return digest.hexdigest()


def describe(name: str, data: TextDataset, label_map: LabelMap) -> str:
    counts = data.label_counts()
    files = len({path for path, _ in data.sources})
    per_label = ", ".join(f"{n} {counts.get(n, 0)}" for n in label_map.names[:20])
    more = f", ... ({len(label_map)} labels)" if len(label_map) > 20 else ""
    return f"data: {name}: {len(data)} rows from {files} file(s); labels: {per_label}{more}"


def load(hp: Hyperparameters, channels: dict[str, Path]) -> Datasets:
    """Read and check the ``train``, ``validation`` and ``test`` channels as the hyperparameters say."""
    if TRAIN not in channels:
        found = ", ".join(sorted(channels)) or "none"
        raise DataError(f"channel {TRAIN!r} not found; channels found: {found}")
    columns = Columns(hp.text_column, hp.text_pair_column, hp.label_column)
    multi = hp.problem_type == "multi_label"

    def read(name: str) -> TextDataset:
        return read_channel(name, channels[name], columns, multi, hp.label_delimiter)

    train = read(TRAIN)
    label_map = build_label_map(train, hp.labels, multi)
    if VALIDATION in channels:
        validation = read(VALIDATION)
        check_labels(validation, label_map, VALIDATION)
        origin = "channel"
    else:
        train, validation = stratified_split(train, label_map, hp.validation_split, hp.seed)
        origin = f"stratified split of train ({hp.validation_split:.0%}, seed {hp.seed})"
    test = None
    if TEST in channels:
        test = read(TEST)
        check_labels(test, label_map, TEST)
    train = sample(train, hp.max_train_samples, hp.seed)
    return Datasets(train, validation, test, label_map, origin)
