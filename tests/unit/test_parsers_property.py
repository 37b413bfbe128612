"""Every parser of client input returns a valid value or raises the contract's 4xx error, whatever it gets.

Hypothesis drives the pure functions behind the id, ``Range``, cursor, ``limit``, Base64,
``Content-Digest``, ``Content-Length`` and ``If-None-Match`` handling with arbitrary text,
including the cases that used to be 500s: other scripts' digits, thousands of digits,
non-ASCII cursors, invalid UTF-8 and deep JSON.
"""

from __future__ import annotations

import base64
import json

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drive.application.manage_blobs import MAX_PAGE, encode_cursor
from drive.domain.errors import DriveError, InvalidBase64, InvalidId, InvalidRequest, PayloadTooLarge
from drive.domain.ids import MAX_ID_BYTES, validate_id
from drive.entrypoints.http.blobs import checked_cursor, decode_store_request, etag_matches, page_size
from drive.entrypoints.http.bodies import content_digest_sha256, declared_length
from drive.entrypoints.http.errors import STATUS_BY_CODE
from drive.entrypoints.http.paths import id_from_path
from drive.entrypoints.http.ranges import Unsatisfiable, parse_range
from drive.entrypoints.http.schemas import base64_pieces, decode_base64

# Bounded and derandomized: seconds, the same cases on every run.
FAST = settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

any_text = st.text(max_size=80) | st.text(alphabet="0123456789-=,bytes ²٣", max_size=40)
huge_numbers = st.integers(min_value=20, max_value=6000).map(lambda n: "9" * n)
digits = st.text(alphabet="0123456789", min_size=1, max_size=30) | huge_numbers
valid_ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=300)


def is_4xx(exc: DriveError) -> bool:
    return 400 <= STATUS_BY_CODE[exc.code] < 500


@FAST
@given(st.one_of(any_text, st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")), st.integers(), st.none()))
def test_validate_id_keeps_a_valid_id_or_says_invalid_id(value: object) -> None:
    try:
        result = validate_id(value)
    except InvalidId:
        return
    assert result is value
    assert isinstance(result, str) and 1 <= len(result.encode("utf-8")) <= MAX_ID_BYTES
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in result)


@FAST
@given(st.binary(max_size=4000) | st.text(max_size=1100).map(lambda t: t.encode("utf-8", "surrogatepass")))
@example(b"%FF")
@example(b"%00")
@example(b"%" * 5000)
@example(b"a" * 5000)
def test_ids_in_raw_paths(encoded: bytes) -> None:
    try:
        blob_id = id_from_path(b"/v1/blobs/" + encoded)
    except InvalidId:
        return
    assert validate_id(blob_id) == blob_id


@FAST
@given(
    st.one_of(any_text, st.builds(lambda a, b: f"bytes={a}-{b}", digits | st.just(""), digits | st.just(""))),
    st.integers(min_value=0, max_value=2**50),
)
@example("bytes=" + "9" * 5000 + "-", 10)
@example("bytes=0-" + "9" * 5000, 10)
@example("bytes=-" + "9" * 5000, 10)
@example("bytes=" + "0" * 5000 + "1-", 10)
@example("bytes=²-", 10)
@example("bytes=٣-", 10)
def test_range_is_a_window_inside_the_blob_or_416(header: str, size: int) -> None:
    try:
        window = parse_range(header, size)
    except Unsatisfiable as exc:
        assert is_4xx(exc) and exc.headers == {"Content-Range": f"bytes */{size}"}
        return
    if window is not None:
        start, end = window
        assert 0 <= start < end <= size


@FAST
@given(any_text | digits)
@example("²")
@example("٣")
@example("9" * 5000)
@example("1_0")
@example(" 10")
def test_limit_is_1_to_1000_or_invalid_request(limit: str) -> None:
    try:
        value = page_size(limit)
    except InvalidRequest:
        return
    assert 1 <= value <= MAX_PAGE
    assert limit == "" or (limit.isascii() and int(limit) == value)


@FAST
@given(any_text | st.text(alphabet="ABCDEFabcdef0123456789_-=+/", max_size=60) | st.just("A" * 2000))
@example("é")
@example("0")
@example("AAAA")
def test_cursor_is_one_we_issued_or_invalid_request(cursor: str) -> None:
    try:
        result = checked_cursor(cursor)
    except InvalidRequest as exc:
        assert is_4xx(exc)
        return
    assert result == (cursor or None)


@FAST
@given(valid_ids.filter(lambda i: len(i.encode()) <= MAX_ID_BYTES))
def test_every_issued_cursor_is_accepted(last_id: str) -> None:
    cursor = encode_cursor(last_id)
    assert checked_cursor(cursor) == cursor


@FAST
@given(
    any_text
    | st.text(alphabet="ABCDabcd0123+/=", max_size=40)
    | st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode())
)
@example("QR==")
@example("QQ==\n")
@example("é")
def test_base64_is_strict_canonical_or_invalid_base64(data: str) -> None:
    try:
        decoded = decode_base64(data)
    except InvalidBase64:
        decoded = None
    else:
        assert base64.b64encode(decoded).decode() == data  # one text for each byte string
    # Decoded a piece at a time (as the JSON store does), the answer is the same at any piece size.
    for piece in (4, 8, 16):
        try:
            pieces: bytes | None = b"".join(base64_pieces(data.encode("utf-8"), piece))
        except InvalidBase64:
            pieces = None
        assert pieces == decoded, piece


@FAST
@given(
    any_text
    | st.binary(min_size=30, max_size=34).map(lambda b: f"sha-256=:{base64.b64encode(b).decode()}:")
    | st.builds(lambda t: f"sha-256=:{t}:", any_text)
)
@example("sha-256=:" + "A" * 5000 + ":")
@example("sha-256=:\xff:")
def test_content_digest_is_32_bytes_or_invalid_request(header: str) -> None:
    try:
        digest = content_digest_sha256(header)
    except InvalidRequest:
        return
    if digest is not None:
        assert len(bytes.fromhex(digest)) == 32


@FAST
@given(any_text | digits | st.just("0" * 5000 + "5"), st.integers(min_value=0, max_value=2**40))
def test_content_length_is_a_number_within_the_limit_or_4xx(header: str, limit: int) -> None:
    try:
        length = declared_length(header, limit)
    except (InvalidRequest, PayloadTooLarge) as exc:
        assert is_4xx(exc)
        return
    assert length is not None and 0 <= length <= limit


@FAST
@given(any_text | st.just('"a",' * 5000))
def test_if_none_match_never_fails(header: str) -> None:
    assert etag_matches(header, '"abc"') in (True, False)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@FAST
@given(
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.builds(
        lambda i, d, x: json.dumps({"id": i, "data": d, "x": x}).encode(),
        st.text(max_size=10),
        st.text(max_size=10),
        json_values,
    )
)
@example(b'{"id":"\xff","data":""}')
@example(b'{"id":"a","data":"\xff"}')
@example(b'{"id":"a","data":"","x":"\xff"}')
@example(b'{"id":"a","data":"","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
@example(b'{"id":"a","data":"","x":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}")
def test_json_store_body_decodes_or_invalid_request(body: bytes) -> None:
    try:
        request = decode_store_request(body)
    except InvalidRequest:
        return
    assert isinstance(request.id, str)
    assert msgspec.json.decode(request.data) == json.loads(body)["data"]  # a string, kept as its JSON text
    body.decode("utf-8")  # only valid UTF-8 is accepted, ignored fields included


def test_the_old_500s_are_4xx_now() -> None:
    """The review's rows 4-8, each by name, so a regression names its row."""
    with pytest.raises(InvalidRequest):
        checked_cursor("é")  # row 4: urlsafe_b64decode raised a bare ValueError
    for limit in ("²", "9" * 5000, "٣"):  # row 5
        with pytest.raises(InvalidRequest):
            page_size(limit)
    with pytest.raises(Unsatisfiable):
        parse_range("bytes=" + "9" * 5000 + "-", 10)  # row 6
    for body in (b'{"id":"\xff","data":""}', b'{"id":"a","data":"\xff"}'):  # row 7
        with pytest.raises(InvalidRequest):
            decode_store_request(body)
    with pytest.raises(InvalidRequest):  # row 8
        decode_store_request(b'{"id":"a","data":"","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
