"""Reading training data: formats, gzip, several files, TSV without quoting, multi-label, byte-order
marks, texts that are not text, errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from textclf.errors import DataError
from textclf.train import data
from textclf.train.data import Columns, LabelMap, TextDataset
from textclf.train.hyperparameters import parse

COLUMNS = Columns("text", "", "label")


def write(path: Path, text: str, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = text.encode("utf-8")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def test_csv_with_quotes_commas_and_newlines(tmp_path: Path) -> None:
    f = write(tmp_path / "a.csv", 'text,label\n"good, really",pos\n"two\nlines",neg\nplain,pos\n')
    ds = data.read_file(f, COLUMNS)
    assert ds.texts == ["good, really", "two\nlines", "plain"]
    assert ds.labels == [("pos",), ("neg",), ("pos",)]
    # line numbers are where each record starts, across the multi-line one
    assert [line for _, line in ds.sources] == [2, 3, 5]


def test_tsv_is_read_without_quoting(tmp_path: Path) -> None:
    # SST-2 style: quote characters are part of the text, never CSV quoting
    f = write(tmp_path / "a.tsv", 'sentence\tlabel\n"a quoted start\t1\nit \'s " odd\t0\n')
    ds = data.read_file(f, Columns("sentence", "", "label"))
    assert ds.texts == ['"a quoted start', "it 's \" odd"]
    assert ds.labels == [("1",), ("0",)]


def test_jsonl_and_json_with_integer_labels_become_names(tmp_path: Path) -> None:
    lines = [{"text": "x", "label": 1}, {"text": "y", "label": 0}, {"text": "z", "label": 2.0}]
    for name in ("a.jsonl", "b.json"):
        ds = data.read_file(write(tmp_path / name, "\n".join(json.dumps(r) for r in lines) + "\n\n"), COLUMNS)
        assert ds.labels == [("1",), ("0",), ("2",)]


@pytest.mark.parametrize("name", ["a.csv.gz", "a.tsv.gz", "a.jsonl.gz", "A.CSV.GZ"])
def test_gzip_files(tmp_path: Path, name: str) -> None:
    fmt = name.lower().split(".")[1]
    body = {
        "csv": "text,label\nhello,a\n",
        "tsv": "text\tlabel\nhello\ta\n",
        "jsonl": '{"text": "hello", "label": "a"}\n',
    }[fmt]
    ds = data.read_file(write(tmp_path / name, body, gz=True), COLUMNS)
    assert ds.texts == ["hello"] and ds.labels == [("a",)]


def test_channel_reads_several_files_in_sorted_order_and_skips_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "b.csv", "text,label\nsecond,y\n")
    write(tmp_path / "a.jsonl", '{"text": "first", "label": "x"}\n')
    write(tmp_path / "sub" / "c.tsv.gz", "text\tlabel\nthird\tz\n", gz=True)
    write(tmp_path / "_SUCCESS", "")
    write(tmp_path / ".hidden.csv", "text,label\nhidden,x\n")
    ds = data.read_channel("train", tmp_path, COLUMNS)
    assert ds.texts == ["first", "second", "third"]
    assert "_SUCCESS" in capsys.readouterr().out


def test_multi_label_from_delimited_cells_and_json_lists(tmp_path: Path) -> None:
    csv_file = write(tmp_path / "a.csv", "text,label\none,a|b\ntwo, b \nnone,\n")
    ds = data.read_file(csv_file, COLUMNS, multi_label=True, label_delimiter="|")
    assert ds.labels == [("a", "b"), ("b",), ()]
    jsonl = write(tmp_path / "b.jsonl", '{"text": "one", "label": ["a", "c", "a"]}\n{"text": "two", "label": "b;c"}\n')
    ds = data.read_file(jsonl, COLUMNS, multi_label=True, label_delimiter=";")
    assert ds.labels == [("a", "c"), ("b", "c")]
    label_map = LabelMap(("a", "b", "c"), multi_label=True)
    assert label_map.encode(ds) == [[1, 0, 1], [0, 1, 1]]


def test_text_pairs(tmp_path: Path) -> None:
    f = write(tmp_path / "a.csv", "premise,hypothesis,label\nit rains,it is wet,yes\n")
    ds = data.read_file(f, Columns("premise", "hypothesis", "label"))
    assert ds.texts == ["it rains"] and ds.pairs == ["it is wet"]


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("a.csv", "", r"a\.csv is empty"),
        ("a.csv", "text,label\n", r"a\.csv is empty"),
        ("a.csv", "body,label\nx,y\n", r"no column 'text' \(columns found: body, label\)"),
        ("a.csv", "text,label\nok,a\n  ,b\n", r"a\.csv line 3: the text in column 'text' is empty \(only whitespace\)"),
        ("a.csv", "text,label\nok,\n", r"a\.csv line 2: empty label"),
        ("a.tsv", "text\tlabel\nhas\ta\ttab\n", r"a\.tsv line 2 has 3 fields, the header has 2"),
        ("a.jsonl", '{"text": "a", "label": "x"}\n[1, 2]\n', r"a\.jsonl line 2 is a JSON list"),
        ("a.jsonl", '{"text": "a", "label": "x"}\n{"text": \n', r"a\.jsonl line 2 is not valid JSON"),
        ("a.jsonl", '{"text": "a"}\n', r"a\.jsonl line 1: no column 'label' \(keys found: text\)"),
        ("a.jsonl", '{"text": "a", "label": ["x"]}\n', r"line 1: label is a list"),
        ("a.jsonl", '{"text": 5, "label": "x"}\n', r"line 1: column 'text' must hold text"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, name: str, body: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        data.read_file(write(tmp_path / name, body), COLUMNS)


# -- byte-order marks, scripts, texts that are not text ----------------------------------------------
BOM = "\ufeff"
FORMAT_BODIES = {
    "csv": 'text,label\n这部电影很好！,正面\n"剧情，太差了",负面\n',
    "tsv": "text\tlabel\n这部电影很好！\t正面\n剧情，太差了\t负面\n",
    "jsonl": '{"text": "这部电影很好！", "label": "正面"}\n'  # the second as \u escapes
    '{"text": "\\u5267\\u60c5\\uff0c\\u592a\\u5dee\\u4e86", "label": "\\u8d1f\\u9762"}\n',
    "json": '{"text": "这部电影很好！", "label": "正面"}\r\n{"text": "剧情，太差了", "label": "负面"}\r\n',
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("bom", [False, True], ids=["no-bom", "bom"])
@pytest.mark.parametrize("fmt", list(FORMAT_BODIES))
def test_chinese_files_with_and_without_a_byte_order_mark(tmp_path: Path, fmt: str, bom: bool, gz: bool) -> None:
    """UTF-8 with a BOM (what Excel and Notepad write) reads exactly like UTF-8 without one, in every
    format: the header's first column (or the first JSON key) is "text", not "\ufefftext"."""
    name = f"a.{fmt}" + (".gz" if gz else "")
    ds = data.read_file(write(tmp_path / name, (BOM if bom else "") + FORMAT_BODIES[fmt], gz=gz), COLUMNS)
    assert ds.texts == ["这部电影很好！", "剧情，太差了"]
    assert ds.labels == [("正面",), ("负面",)]
    assert [line for _, line in ds.sources] == ([2, 3] if fmt in ("csv", "tsv") else [1, 2])


def test_json_lines_joined_with_cat_keep_their_marks_and_line_separators_stay_in_the_text(tmp_path: Path) -> None:
    """Files joined with ``cat`` carry a BOM at the start of a line; U+2028 / U+2029 / U+0085 may
    stand raw in a JSON string (json.dumps(ensure_ascii=False) writes them) and end no line."""
    first = json.dumps({"text": "第一\u2028行", "label": "a"}, ensure_ascii=False)
    second = json.dumps({"text": "second\u2029para\u0085graph", "label": "b"}, ensure_ascii=False)
    f = write(tmp_path / "joined.jsonl", BOM + first + "\n" + BOM + second + "\n")
    ds = data.read_file(f, COLUMNS)
    assert ds.texts == ["第一\u2028行", "second\u2029para\u0085graph"]
    assert [line for _, line in ds.sources] == [1, 2]


def test_utf16_file_is_named_as_such(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    f.write_bytes("text,label\n好,a\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"a\.csv is UTF-16 .*save it as UTF-8"):
        data.read_file(f, COLUMNS)


INVALID_TEXTS = {
    "empty": ('""', r"is empty$"),
    "whitespace": (r'"  \t "', r"is empty \(only whitespace\)"),
    "ideographic-space": (r'"\u3000\u3000"', r"is empty \(only whitespace\)"),
    "nul": (r'"\u0000\u0000"', r"is empty \(only invisible characters: U\+0000 control\)"),
    "zero-width": (r'"\u200b\u200d\ufeff"', r"is empty \(only invisible characters: U\+200B ZERO WIDTH SPACE, U\+200D"),
    "private-use": (r'"\ue000"', r"is empty \(only invisible characters: U\+E000 private use\)"),
    "null": ("null", r"is empty$"),
    "surrogate": (r'"ok \ud800"', r"holds an unpaired surrogate \\ud800 at character 3"),
}


@pytest.mark.parametrize("case", list(INVALID_TEXTS))
def test_texts_that_are_not_text_are_refused_naming_file_line_and_column(tmp_path: Path, case: str) -> None:
    """The serving rule (textclf.model.text_validity), here for JSON Lines: every JSON escape can be written."""
    value, message = INVALID_TEXTS[case]
    body = '{"text": "fine", "label": "a"}\n' + f'{{"text": {value}, "label": "b"}}\n'
    with pytest.raises(DataError, match=r"a\.jsonl line 2: the text in column 'text' " + message):
        data.read_file(write(tmp_path / "a.jsonl", body), COLUMNS)
    pair = f'{{"text": "fine", "pair": {value}, "label": "b"}}\n'
    with pytest.raises(DataError, match=r"b\.jsonl line 1: the text in column 'pair' " + message):
        data.read_file(write(tmp_path / "b.jsonl", pair), Columns("text", "pair", "label"))


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_nul_and_zero_width_cells_are_refused_in_delimited_files(tmp_path: Path, fmt: str) -> None:
    sep = "," if fmt == "csv" else "\t"
    cases = (("\x00\x00", "invisible characters: U\\+0000 control"), ("\u200b \u200c", "whitespace and invisible"))
    for cell, shown in cases:
        f = write(tmp_path / f"a.{fmt}", f"text{sep}label\nfine{sep}a\n{cell}{sep}b\n")
        with pytest.raises(DataError, match=rf"a\.{fmt} line 3: the text in column 'text' is empty \(only {shown}"):
            data.read_file(f, COLUMNS)


def test_text_with_invisible_characters_among_visible_ones_is_kept_as_it_is(tmp_path: Path) -> None:
    """The rule only refuses texts with nothing visible; it never edits one (normalisation is the tokenizer's)."""
    texts = ["a\x00b", "\u200fשלום\u200f", "👨\u200d👩\u200d👧", "\u0301", "e\u0301", "\U0001fae8"]
    f = write(tmp_path / "a.jsonl", "".join(json.dumps({"text": t, "label": "x"}) + "\n" for t in texts))
    assert data.read_file(f, COLUMNS).texts == texts


def test_undecodable_file_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    f.write_bytes(b"text,label\nfine,a\nbad \xff byte,b\n")
    with pytest.raises(DataError, match=r"a\.csv line 3 is not UTF-8"):
        data.read_file(f, COLUMNS)


def test_corrupt_gzip(tmp_path: Path) -> None:
    f = tmp_path / "a.csv.gz"
    f.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"a\.csv\.gz is not a valid gzip file"):
        data.read_file(f, COLUMNS)


def test_long_fields_beyond_the_csv_default_limit(tmp_path: Path) -> None:
    long_text = "word " * 60_000  # 300 KB, above csv's 128 KiB default field limit
    ds = data.read_file(write(tmp_path / "a.csv", f'text,label\n"{long_text}",a\n'), COLUMNS)
    assert len(ds.texts[0]) == len(long_text)


def test_empty_channel_lists_what_it_found(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt", "hello")
    with pytest.raises(DataError, match=r"channel 'train' .* holds no data files.*found: notes\.txt"):
        data.read_channel("train", tmp_path, COLUMNS)


# -- label maps, splits, load() -------------------------------------------------------------------


def rows(labels: list[str]) -> TextDataset:
    return TextDataset(
        texts=[f"t{i}" for i in range(len(labels))],
        labels=[(label,) for label in labels],
        sources=[("f.csv", i + 2) for i in range(len(labels))],
    )


def test_label_map_sorts_integer_labels_numerically() -> None:
    assert data.build_label_map(rows(["10", "2", "1", "2"]), [], False).names == ("1", "2", "10")
    assert data.build_label_map(rows(["pos", "neg"]), [], False).names == ("neg", "pos")


def test_declared_labels_keep_their_order_and_reject_others() -> None:
    assert data.build_label_map(rows(["pos", "neg"]), ["pos", "neg", "neutral"], False).names == (
        "pos",
        "neg",
        "neutral",
    )
    with pytest.raises(DataError, match=r"unknown label 'meh' in train at f\.csv line 3"):
        data.build_label_map(rows(["pos", "meh"]), ["pos", "neg"], False)


def test_single_class_is_refused() -> None:
    with pytest.raises(DataError, match=r"single class 'pos'"):
        data.build_label_map(rows(["pos", "pos"]), [], False)


def test_stratified_split_keeps_class_shares_and_singletons_in_train() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20 + ["rare"]
    train_part, held = data.stratified_split(rows(labels), LabelMap(("a", "b", "c", "rare")), 0.2, seed=1)
    assert len(held) == 20 and len(train_part) == 81
    assert held.label_counts() == {"a": 10, "b": 6, "c": 4}
    assert set(train_part.texts).isdisjoint(held.texts)
    again, _ = data.stratified_split(rows(labels), LabelMap(("a", "b", "c", "rare")), 0.2, seed=1)
    assert again.texts == train_part.texts  # seeded


def test_load_uses_channels_and_checks_validation_labels(tmp_path: Path) -> None:
    write(tmp_path / "train" / "a.csv", "text,label\n" + "".join(f"t{i},{'xy'[i % 2]}\n" for i in range(20)))
    write(tmp_path / "validation" / "v.csv", "text,label\nv1,x\nv2,z\n")
    channels = {p.name: p for p in tmp_path.iterdir()}
    with pytest.raises(DataError, match=r"unknown label 'z' in validation at .*v\.csv line 3"):
        data.load(parse({}), channels)
    write(tmp_path / "validation" / "v.csv", "text,label\nv1,x\nv2,y\n")
    loaded = data.load(parse({"max_train_samples": "5"}), channels)
    assert len(loaded.train) == 5 and len(loaded.validation) == 2 and loaded.test is None
    assert loaded.label_map.names == ("x", "y") and loaded.validation_origin == "channel"


def test_load_without_train_lists_channels(tmp_path: Path) -> None:
    (tmp_path / "training").mkdir()
    with pytest.raises(DataError, match=r"channel 'train' not found; channels found: training"):
        data.load(parse({}), {"training": tmp_path / "training"})


def test_fingerprint_changes_with_rows_and_labels() -> None:
    base = data.fingerprint(rows(["a", "b"]), LabelMap(("a", "b")))
    assert base == data.fingerprint(rows(["a", "b"]), LabelMap(("a", "b")))
    assert base != data.fingerprint(rows(["a", "a"]), LabelMap(("a", "b")))
    assert base != data.fingerprint(rows(["a", "b"]), LabelMap(("b", "a")))
