"""Request and response bodies: decode by ``Content-Type``, encode by ``Accept``.

Requests (``Content-Type``; a missing one means ``application/json``; charset must be UTF-8):

- ``application/json``: the Hugging Face shape ``{"inputs": ..., "parameters": {...}}`` where
  ``inputs`` is a string, a ``{"text", "text_pair"}`` object, or a list of either; a bare JSON
  list (or string) is read as ``inputs``.
- ``application/jsonlines``: one record per line (Batch Transform ``SplitType=Line``): a JSON
  string, or an object with ``"inputs"`` (a string or a pair object) or ``"text"`` (and
  ``"text_pair"``); other keys of a record (ids, labels) are ignored.
- ``text/csv``: one record per row, no header: ``text`` or ``text,text_pair`` (RFC 4180 quoting).
- ``text/plain``: one text per line (so a Batch Transform ``SplitType=Line`` request of N lines
  gets N answers); a text that contains line breaks must be sent as JSON.

In the line formats, trailing empty lines are ignored and an empty line in the middle is an
error: answers map one to one onto lines, and a skipped line would shift every answer after it.
A byte-order mark at the start of the body (and, in JSON Lines, of a line) is not content.

Every text (and text pair) must hold something to classify, by the one rule of
``textclf.model.text_validity`` that training applies to its rows: an empty text, or one of only
whitespace and invisible characters (NUL bytes, zero-width spaces, ...), or one holding an unpaired
surrogate, is a 400 naming the record (``inputs[3]``, ``line 7``, ``row 2 text_pair``); no text of
the request is classified.

Responses (``Accept``; missing or ``*/*``: ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` if set, else
the request type's own answer: JSON for JSON, JSON Lines for JSON Lines and text/plain, CSV for
CSV). Answers are UTF-8, JSON included (RFC 8259): labels in any script are written as they are,
never as ``\\u`` escapes (``application/json`` has no charset parameter; CSV says
``charset=utf-8``). One *result* is the list ``[{"label", "score"}, ...]`` of one input, best first:

- ``application/json``: a single input (a string or one pair object) answers with its result;
  a list answers with a list of results, one per input (also for a one-element list).
- ``application/jsonlines``: one result per line, in input order (in Batch Transform mode the last
  line has no newline: ``AssembleWith=Line`` adds one after every response).
- ``text/csv``: one row per input, ``label,score`` repeated for each entry of its result.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from textclf.errors import RequestError
from textclf.model import text_validity
from textclf.model.prediction import Prediction

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
TEXT = "text/plain"
REQUEST_TYPES = (JSON, JSONLINES, CSV, TEXT)
RESPONSE_TYPES = (JSON, JSONLINES, CSV)
_ALIASES = {
    "application/jsonl": JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "application/json-lines": JSONLINES,
    "application/x-ndjson": JSONLINES,
    "application/csv": CSV,
}
_NATURAL = {JSON: JSON, JSONLINES: JSONLINES, CSV: CSV, TEXT: JSONLINES}
_UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_CONTENT_TYPES = {JSON: "application/json", JSONLINES: "application/jsonlines", CSV: "text/csv; charset=utf-8"}
# A CSV field may be as long as a text in any other format (the body limit bounds it), not the csv
# module's default 128 KiB, which turned a long CSV text into an error. The limit is process-wide.
csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))


@dataclass(frozen=True)
class Inputs:
    """A decoded request: the texts (and their pairs), and how the answer is to be shaped."""

    texts: list[str]
    pairs: list[str] | None
    single: bool  # a lone string or pair object: answer with one result rather than a list
    content_type: str
    parameters: dict[str, Any] = field(default_factory=dict)  # the JSON body's "parameters", unchecked


# -- media types ---------------------------------------------------------------------------------------
def parse_media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """``"Text/CSV; charset=UTF-8"`` -> ``("text/csv", {"charset": "utf-8"})``, aliases resolved."""
    if not header or not header.strip():
        return "", {}
    main, *rest = header.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, _, value = item.partition("=")
        if key.strip():
            params[key.strip().lower()] = value.strip().strip('"').lower()
    media = main.strip().lower()
    return _ALIASES.get(media, media), params


def request_type(header: str | None) -> str:
    """The supported request type named by a ``Content-Type`` header; 415 otherwise."""
    media, params = parse_media_type(header)
    media = media or JSON
    if media not in REQUEST_TYPES:
        raise RequestError(
            f"unsupported Content-Type {header!r}: send one of {', '.join(REQUEST_TYPES)}",
            status=415,
        )
    charset = params.get("charset")
    if charset and charset not in _UTF8:
        raise RequestError(f"unsupported charset {charset!r} in Content-Type: send UTF-8", status=415)
    return media


def response_type(media: str) -> str:
    """Validate a configured response type (``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``)."""
    media = parse_media_type(media)[0]
    if media not in RESPONSE_TYPES:
        raise ValueError(f"{media!r} is not a response type this server writes ({', '.join(RESPONSE_TYPES)})")
    return media


def negotiate(accept: str | None, request_media: str, default: str = "") -> str:
    """The response type for an ``Accept`` header: the acceptable supported type of highest q.

    ``*/*`` (and a missing header) means the default: ``default`` if given, else the request
    type's natural answer. Nothing acceptable: 406.
    """
    natural = default or _NATURAL.get(request_media, JSON)
    if not accept or not accept.strip():
        return natural
    ranges: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept.split(",")):
        media, params = parse_media_type(item)
        if not media:
            continue
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        if q > 0:
            ranges.append((-q, position, media))
    for _, _, media in sorted(ranges):
        if media in ("*/*", "*"):
            return natural
        if media == "application/*":
            return natural if natural.startswith("application/") else JSON
        if media == "text/*":
            return CSV
        if media in RESPONSE_TYPES:
            return media
    raise RequestError(
        f"cannot answer with Accept {accept!r}: this server writes {', '.join(RESPONSE_TYPES)}",
        status=406,
    )


# -- decoding -------------------------------------------------------------------------------------------
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _text(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = " (it starts with a UTF-16 byte-order mark)" if body.startswith(_UTF16_BOMS) else ""
        raise RequestError(f"the body is not valid UTF-8{hint}: {exc.reason} at byte {exc.start}") from None
    return text.removeprefix("\ufeff")  # a byte-order mark is not content


def _check_text(value: Any, where: str) -> str:
    """``value`` if it is a text that can be classified (``textclf.model.text_validity``); else a 400."""
    if value is None:
        raise RequestError(f"{where} is null: every text must be a string")
    if not isinstance(value, str):
        raise RequestError(f"{where} must be a string, got {_kind(value)}")
    if (problem := text_validity.problem(value)) is not None:
        empty = ": every text must contain something to classify" if problem.startswith("is empty") else ""
        raise RequestError(f"{where} {problem}{empty}")
    return value


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _pair_object(value: dict[str, Any], where: str) -> tuple[str, str | None]:
    if "text" not in value:
        raise RequestError(f'{where} is an object without "text": use {{"text": ..., "text_pair": ...}}')
    text = _check_text(value["text"], f"{where}.text")
    if "text_pair" not in value:
        return text, None
    return text, _check_text(value["text_pair"], f"{where}.text_pair")


def _items(items: Sequence[tuple[str, str | None]], where: str) -> tuple[list[str], list[str] | None]:
    texts = [t for t, _ in items]
    with_pair = [p is not None for _, p in items]
    if not any(with_pair):
        return texts, None
    if not all(with_pair):
        first = with_pair.index(False)
        raise RequestError(
            f"{where}: some inputs have a text_pair and some do not (the first without one is item {first}); "
            "send either all pairs or all single texts"
        )
    return texts, [p for _, p in items if p is not None]


def _load_json(text: str, where: str = "") -> Any:
    """``json.loads`` whose every failure is a 400: malformed JSON, nesting deeper than Python's
    recursion limit (``[[[[...]]]]``), an integer of more digits than ``int`` converts."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"column {exc.colno}" if where else f"line {exc.lineno} column {exc.colno}"
        raise RequestError(f"{where}malformed JSON: {exc.msg} at {at}") from None
    except RecursionError:
        raise RequestError(f"{where}the JSON is nested too deeply: send a flat list of texts") from None
    except ValueError as exc:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise RequestError(f"{where}JSON value out of range: {str(exc).split(';')[0]}") from None


def _decode_json(text: str) -> Inputs:
    data = _load_json(text)
    parameters: Any = {}
    if isinstance(data, dict):
        if "inputs" not in data:
            raise RequestError('a JSON body must be {"inputs": ..., "parameters": {...}} or a list of texts')
        parameters = data.get("parameters")
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise RequestError(f'"parameters" must be an object, got {_kind(parameters)}')
        data = data["inputs"]
    where = "inputs"
    if isinstance(data, str):
        return Inputs([_check_text(data, where)], None, True, JSON, parameters)
    if isinstance(data, dict):
        text, pair = _pair_object(data, where)
        return Inputs([text], None if pair is None else [pair], True, JSON, parameters)
    if not isinstance(data, list):
        raise RequestError(
            f'{where} must be a string, a {{"text", "text_pair"}} object or a list of them, got {_kind(data)}'
        )
    if not data:
        raise RequestError(f"{where} is an empty list: send at least one text")
    items = []
    for i, value in enumerate(data):
        if isinstance(value, dict):
            items.append(_pair_object(value, f"{where}[{i}]"))
        else:
            items.append((_check_text(value, f"{where}[{i}]"), None))
    texts, pairs = _items(items, where)
    return Inputs(texts, pairs, False, JSON, parameters)


def _lines(text: str, what: str) -> list[str]:
    lines = text.split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise RequestError(f"the {what} body is empty: send at least one line")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise RequestError(f"line {number} is empty: every line must hold one record")
    return lines


def _decode_jsonlines(text: str) -> Inputs:
    items = []
    for number, line in enumerate(_lines(text, "JSON Lines"), 1):
        where = f"line {number}"
        record = _load_json(line.removeprefix("\ufeff"), f"{where}: ")
        if isinstance(record, dict):
            if "parameters" in record:
                raise RequestError(
                    f"{where}: JSON Lines records carry no parameters; "
                    "send them in the X-Amzn-SageMaker-Custom-Attributes header"
                )
            if "inputs" in record:
                value = record["inputs"]
                if isinstance(value, dict):
                    items.append(_pair_object(value, f"{where}: inputs"))
                    continue
                if isinstance(value, list):
                    raise RequestError(f"{where}: inputs must be one text per line, not a list")
                items.append((_check_text(value, f"{where}: inputs"), None))
            elif "text" in record:
                items.append(_pair_object(record, where))
            else:
                raise RequestError(f'{where}: a record must be a JSON string or an object with "inputs" or "text"')
        else:
            items.append((_check_text(record, where), None))
    texts, pairs = _items(items, "JSON Lines")
    return Inputs(texts, pairs, False, JSONLINES)


def _decode_csv(text: str) -> Inputs:
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise RequestError(f"malformed CSV: {exc}") from None
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows:
        raise RequestError("the CSV body is empty: send at least one row")
    items = []
    for number, row in enumerate(rows, 1):
        where = f"row {number}"
        if not row:
            raise RequestError(f"{where} is empty: every row must hold one record")
        if len(row) > 2:
            raise RequestError(
                f"{where} has {len(row)} columns; expected text or text,text_pair (quote texts that contain commas)"
            )
        text = _check_text(row[0], f"{where} text")
        items.append((text, _check_text(row[1], f"{where} text_pair") if len(row) == 2 else None))
    texts, pairs = _items(items, "CSV")
    return Inputs(texts, pairs, False, CSV)


def _decode_plain(text: str) -> Inputs:
    lines = _lines(text, "text/plain")
    return Inputs([_check_text(line, f"line {number}") for number, line in enumerate(lines, 1)], None, False, TEXT)


_DECODERS = {JSON: _decode_json, JSONLINES: _decode_jsonlines, CSV: _decode_csv, TEXT: _decode_plain}


def decode(body: bytes, media: str) -> Inputs:
    """Decode a body of a supported request type (see ``request_type``); 400 naming the problem."""
    if not body.strip():
        raise RequestError("the request body is empty: send at least one text")
    return _DECODERS[media](_text(body))


# -- encoding -------------------------------------------------------------------------------------------
def content_type_header(media: str) -> str:
    return _CONTENT_TYPES[media]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode(results: Sequence[Prediction], single: bool, media: str, *, last_newline: bool = True) -> bytes:
    """Encode one result per input (see the module docstring for the shapes).

    ``last_newline=False`` leaves the last line of JSON Lines and CSV unterminated: Batch Transform
    with ``AssembleWith=Line`` adds a newline after every response, and one already there would
    leave an empty line after each mini-batch in the assembled output.
    """
    if media == JSON:
        return _json(results[0] if single else list(results)).encode("utf-8")
    if media == JSONLINES:
        text = "".join(_json(result) + "\n" for result in results)
    elif media == CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for result in results:
            writer.writerow([value for entry in result for value in (entry["label"], repr(float(entry["score"])))])
        text = out.getvalue()
    else:
        raise ValueError(f"cannot encode {media!r}")
    return (text if last_newline else text.removesuffix("\n")).encode("utf-8")
