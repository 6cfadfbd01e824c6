"""Request decoding, Accept negotiation and response encoding (no server needed)."""

from __future__ import annotations

import json

import pytest

from textclf.errors import RequestError
from textclf.serve import codecs
from textclf.serve.codecs import CSV, JSON, JSONLINES, TEXT, decode, encode, negotiate, request_type


def _error(fn, *args) -> RequestError:
    with pytest.raises(RequestError) as info:
        fn(*args)
    return info.value


# -- Content-Type ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "media"),
    [
        (None, JSON),
        ("", JSON),
        ("application/json", JSON),
        ("Application/JSON; charset=UTF-8", JSON),
        ("application/jsonlines", JSONLINES),
        ("application/x-jsonlines", JSONLINES),
        ("application/jsonl", JSONLINES),
        ("text/csv; charset=utf-8", CSV),
        ("text/plain", TEXT),
    ],
)
def test_request_types(header: str | None, media: str) -> None:
    assert request_type(header) == media


def test_unsupported_content_type_and_charset_are_415() -> None:
    err = _error(request_type, "application/x-www-form-urlencoded")
    assert err.status == 415 and "application/json" in str(err)
    err = _error(request_type, "text/plain; charset=latin-1")
    assert err.status == 415 and "UTF-8" in str(err)


# -- JSON -------------------------------------------------------------------------------------------------
def test_json_shapes() -> None:
    one = decode(b'{"inputs": "good film"}', JSON)
    assert (one.texts, one.pairs, one.single) == (["good film"], None, True)
    many = decode(b'{"inputs": ["a", "b"], "parameters": {"top_k": 2}}', JSON)
    assert (many.texts, many.single, many.parameters) == (["a", "b"], False, {"top_k": 2})
    bare = decode(b'["a", "b"]', JSON)
    assert (bare.texts, bare.single) == (["a", "b"], False)
    assert decode(b'"just one"', JSON).single
    pair = decode(b'{"inputs": {"text": "q", "text_pair": "a"}}', JSON)
    assert (pair.texts, pair.pairs, pair.single) == (["q"], ["a"], True)
    pairs = decode(b'{"inputs": [{"text": "q1", "text_pair": "a1"}, {"text": "q2", "text_pair": "a2"}]}', JSON)
    assert (pairs.texts, pairs.pairs, pairs.single) == (["q1", "q2"], ["a1", "a2"], False)
    assert decode(b'{"inputs": ["x"], "parameters": null}', JSON).parameters == {}
    assert decode('\ufeff["bom"]'.encode(), JSON).texts == ["bom"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"inputs": ["a",', "malformed JSON"),
        (b'{"text": "a"}', '{"inputs": ...'),
        (b'{"inputs": []}', "empty list"),
        (b'{"inputs": ""}', "inputs is empty"),
        (b'{"inputs": "   "}', "inputs is empty"),
        (b'{"inputs": ["a", null]}', "inputs[1] is null"),
        (b'{"inputs": ["a", 3]}', "inputs[1] must be a string, got a number"),
        (b'{"inputs": 42}', "got a number"),
        (b'{"inputs": [{"text_pair": "b"}]}', 'without "text"'),
        (b'{"inputs": [{"text": "a", "text_pair": null}]}', "inputs[0].text_pair is null"),
        (b'{"inputs": [{"text": "a", "text_pair": "b"}, "c"]}', "some inputs have a text_pair"),
        (b'{"inputs": "a", "parameters": [1]}', '"parameters" must be an object'),
        (b"", "body is empty"),
        (b"\xff\xfe{}", "not valid UTF-8"),
    ],
)
def test_json_errors_name_the_problem(body: bytes, fragment: str) -> None:
    err = _error(decode, body, JSON)
    assert err.status == 400
    assert fragment in str(err)


# -- line formats ------------------------------------------------------------------------------------------
def test_jsonlines_records() -> None:
    body = b'"plain"\n{"inputs": "with inputs"}\n{"text": "with text", "id": 7}\n\n'
    got = decode(body, JSONLINES)
    assert (got.texts, got.pairs, got.single) == (["plain", "with inputs", "with text"], None, False)
    pairs = decode(b'{"text": "q", "text_pair": "a"}\r\n{"inputs": {"text": "q2", "text_pair": "a2"}}', JSONLINES)
    assert (pairs.texts, pairs.pairs) == (["q", "q2"], ["a", "a2"])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'"a"\n\n"b"\n', "line 2 is empty"),
        (b'"a"\n{"inputs": "b", "parameters": {}}', "line 2: JSON Lines records carry no parameters"),
        (b'"a"\n{"inputs": ["b", "c"]}', "line 2: inputs must be one text per line"),
        (b'"a"\n{"id": 3}', 'line 2: a record must be a JSON string or an object with "inputs" or "text"'),
        (b'"a"\n{oops', "line 2: malformed JSON"),
        (b'"a"\nnull', "line 2 is null"),
        (b"\n\n", "body is empty"),
    ],
)
def test_jsonlines_errors(body: bytes, fragment: str) -> None:
    assert fragment in str(_error(decode, body, JSONLINES))


def test_csv_rows() -> None:
    got = decode(b'first text\n"second, with a comma"\n', CSV)
    assert (got.texts, got.pairs) == (["first text", "second, with a comma"], None)
    pairs = decode(b'q1,a1\n"q2 ""quoted""",a2\n', CSV)
    assert (pairs.texts, pairs.pairs) == (["q1", 'q2 "quoted"'], ["a1", "a2"])
    assert "row 1 has 3 columns" in str(_error(decode, b"a,b,c\n", CSV))
    assert "row 2 is empty" in str(_error(decode, b"a\n\nb\n", CSV))


def test_plain_text_is_one_text_per_line() -> None:
    got = decode(b"first line\r\nsecond line\n", TEXT)
    assert (got.texts, got.single, got.content_type) == (["first line", "second line"], False, TEXT)
    assert "line 2 is empty" in str(_error(decode, b"a\n \nb", TEXT))


# -- Accept ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept", "request_media", "default", "expected"),
    [
        (None, JSON, "", JSON),
        ("*/*", JSONLINES, "", JSONLINES),
        ("*/*", TEXT, "", JSONLINES),
        ("", CSV, "", CSV),
        ("*/*", CSV, JSON, JSON),  # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT
        ("text/csv", JSON, "", CSV),
        ("application/jsonlines", JSON, "", JSONLINES),
        ("application/x-jsonlines", JSON, "", JSONLINES),
        ("text/html;q=0.9, application/json;q=0.5", CSV, "", JSON),
        ("text/csv;q=0.2, application/json", JSON, "", JSON),
        ("application/json;q=0, text/csv", JSON, "", CSV),
        ("application/*", CSV, "", JSON),
        ("text/*", JSON, "", CSV),
    ],
)
def test_negotiate(accept: str | None, request_media: str, default: str, expected: str) -> None:
    assert negotiate(accept, request_media, default) == expected


def test_nothing_acceptable_is_406() -> None:
    err = _error(negotiate, "text/html, image/png", JSON)
    assert err.status == 406 and "text/csv" in str(err)


def test_default_accept_must_be_a_response_type() -> None:
    assert codecs.response_type("application/jsonlines") == JSONLINES
    with pytest.raises(ValueError, match="not a response type"):
        codecs.response_type("text/plain")


# -- encoding -----------------------------------------------------------------------------------------------
RESULTS = [
    [{"label": "pos", "score": 0.75}, {"label": "neg", "score": 0.25}],
    [{"label": "neg, sad", "score": 0.5}],
    [],
]


def test_encode_json_single_and_list() -> None:
    assert json.loads(encode(RESULTS[:1], True, JSON)) == RESULTS[0]
    assert json.loads(encode(RESULTS[:1], False, JSON)) == RESULTS[:1]
    assert json.loads(encode(RESULTS, False, JSON)) == RESULTS


def test_encode_jsonlines_one_line_per_input() -> None:
    lines = encode(RESULTS, False, JSONLINES).decode().split("\n")
    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == RESULTS


def test_encode_csv_one_row_per_input() -> None:
    text = encode(RESULTS, False, CSV).decode()
    assert text == 'pos,0.75,neg,0.25\n"neg, sad",0.5\n\n'


def test_non_ascii_labels_survive() -> None:
    body = encode([[{"label": "négatif", "score": 1.0}]], True, JSON)
    assert json.loads(body.decode("utf-8")) == [{"label": "négatif", "score": 1.0}]


def test_batch_transform_answers_leave_the_last_line_to_the_assembler() -> None:
    """AssembleWith=Line adds a newline after every response: ours must not end with one."""
    batches = [RESULTS, RESULTS[:1]]
    for media in (JSONLINES, CSV):
        assembled = "".join(encode(b, False, media, last_newline=False).decode() + "\n" for b in batches)
        assert assembled.split("\n")[:-1] == encode(RESULTS + RESULTS[:1], False, media).decode().split("\n")[:-1]
        assert len(assembled.splitlines()) == len(RESULTS) + 1  # one line per record, no empty ones between


def test_json_answers_are_utf8_not_escapes() -> None:
    """Labels in any script come back as UTF-8 characters (RFC 8259), never as \\u escapes, in every
    answer type; CSV says its charset, JSON needs none."""
    results = [[{"label": "正面", "score": 0.9}, {"label": "سلبي", "score": 0.1}]]
    for media in (JSON, JSONLINES, CSV):
        body = encode(results, True, media)
        assert "正面".encode() in body and "سلبي".encode() in body
        assert b"\\u" not in body
    assert codecs.content_type_header(JSON) == "application/json"
    assert codecs.content_type_header(CSV) == "text/csv; charset=utf-8"


# -- texts that are not text (textclf.model.text_validity, as in training) ---------------------------------
NUL_BODY = b"\x00\x00\x00\n"
ZERO_WIDTH = "\u200b\u200d\ufeff"


@pytest.mark.parametrize(
    ("body", "media", "fragment"),
    [
        # JSON: a string, a list item, either text of a pair
        (b'{"inputs": "\\u0000"}', JSON, "inputs is empty (only invisible characters: U+0000 control)"),
        (b'["ok", "\\u200b\\u200d"]', JSON, "inputs[1] is empty (only invisible characters: U+200B ZERO WIDTH"),
        (b'["ok", " \\t\\u3000 "]', JSON, "inputs[1] is empty (only whitespace)"),
        (b'{"inputs": [{"text": "q", "text_pair": "\\u0000"}]}', JSON, "inputs[0].text_pair is empty (only invisible"),
        (
            b'{"inputs": {"text": "\\ue000", "text_pair": "a"}}',
            JSON,
            "inputs.text is empty (only invisible characters: U+E000",
        ),
        # JSON Lines: each record shape
        (b'"ok"\n"\\u0000"\n', JSONLINES, "line 2 is empty (only invisible characters: U+0000 control)"),
        (b'"ok"\n{"inputs": ""}\n', JSONLINES, "line 2: inputs is empty: every text must"),
        (b'"ok"\n{"text": "\\u2060", "id": 3}\n', JSONLINES, "line 2.text is empty (only invisible characters: U+2060"),
        (
            b'{"text": "a", "text_pair": "b"}\n{"text": "a", "text_pair": "  "}\n',
            JSONLINES,
            "line 2.text_pair is empty",
        ),
        # CSV: a body of NUL bytes, a zero-width cell, an empty pair
        (NUL_BODY, CSV, "row 1 text is empty (only invisible characters: U+0000 control)"),
        (f"ok\n{ZERO_WIDTH}\n".encode(), CSV, "row 2 text is empty (only invisible characters: U+200B"),
        (b'q,a\nq2,""\n', CSV, "row 2 text_pair is empty: every text must contain something to classify"),
        # text/plain: one text per line
        (NUL_BODY, TEXT, "line 1 is empty (only invisible characters: U+0000 control)"),
        (f"ok\n{ZERO_WIDTH}\nok\n".encode(), TEXT, "line 2 is empty (only invisible characters: U+200B"),
        ("ok\n\ufffd\n".encode(), TEXT, "line 2 is empty (only invisible characters: U+FFFD REPLACEMENT CHARACTER)"),
    ],
)
def test_texts_that_are_not_text_are_400_naming_the_record(body: bytes, media: str, fragment: str) -> None:
    err = _error(decode, body, media)
    assert err.status == 400
    assert fragment in str(err), str(err)


def test_visible_texts_pass_unchanged() -> None:
    """The rule refuses texts with nothing visible and changes none: invisible characters beside
    visible ones, a lone combining mark and new emoji (unassigned in this Python) are texts."""
    texts = ["a\u0000b", "\u200fשלום\u200f", "👨\u200d👩\u200d👧", "\u0301", "e\u0301", "\U0001fae8", "ｏｋ！"]
    assert decode(json.dumps(texts).encode(), JSON).texts == texts
    assert decode(json.dumps(texts, ensure_ascii=False).encode(), JSON).texts == texts
    assert decode("\n".join(texts).encode(), TEXT).texts == texts


def test_byte_order_marks_and_utf16() -> None:
    assert decode('\ufeff"a"\n\ufeff{"text": "b"}\n'.encode(), JSONLINES).texts == ["a", "b"]  # files joined by cat
    assert decode("\ufeff这个\n".encode(), CSV).texts == ["这个"]
    assert "UTF-16 byte-order mark" in str(_error(decode, '["a"]'.encode("utf-16"), JSON))
