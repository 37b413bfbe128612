"""``?download=``: the query is checked, and whatever the name, ``Content-Disposition`` stays one well-formed header."""

from __future__ import annotations

import email.utils
import re
from typing import cast
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drive.domain.errors import InvalidRequest
from drive.entrypoints.http.content_headers import MAX_DOWNLOAD_NAME_BYTES, content_disposition, download_name
from drive.entrypoints.http.types import AnyRequest

FAST = settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=60)
SHAPE = re.compile(r"attachment; filename=\"([ !#$&-\[\]-~]+)\"; filename\*=UTF-8''([A-Za-z0-9!#$&+.^_`|~%-]+)")
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


@FAST
@given(names)
@example("report.pdf")
@example('say "hi".txt')
@example("back\\slash.txt")
@example("two\r\nlines: injected.txt")
@example("100%.txt")
@example("caf\u00e9 \u2603 \u0645\u0631\u062d\u0628\u0627.txt")
@example("\u0301")  # only a combining mark: no ASCII form at all
@example("a;b=c, d")
def test_one_header_that_carries_the_name(name: str) -> None:
    value = content_disposition(name)
    match = SHAPE.fullmatch(value)
    assert match is not None, value  # printable ASCII, no CR/LF: the header cannot be split
    fallback, encoded = match.groups()
    shown = CONTROLS.sub("_", name)
    assert unquote(encoded, errors="strict") == shown  # RFC 8187: exact but for control characters
    assert not set('"\\%') & set(fallback)
    # Read as RFC 2231 says (charset, language, percent-encoded value): the exact name again.
    charset, language, text = email.utils.decode_rfc2231("UTF-8''" + encoded)
    assert (charset, language, unquote(text, encoding=charset)) == ("UTF-8", "", shown)


def test_ascii_stand_ins() -> None:
    assert content_disposition("report.pdf") == "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    assert 'filename="cafe.txt"' in content_disposition("caf\u00e9.txt")
    assert 'filename="say _hi_.txt"' in content_disposition('say "hi".txt')
    assert 'filename="a_b.txt"' in content_disposition("a\nb.txt")
    assert 'filename="download"' in content_disposition("\u0301")


class _Request:
    def __init__(self, query: bytes) -> None:
        self.scope = {"query_string": query}


def name_of(query: bytes) -> str | None:
    return download_name(cast("AnyRequest", _Request(query)))


def test_the_query_is_read_exactly() -> None:
    assert name_of(b"") is None
    assert name_of(b"other=1") is None
    assert name_of(b"download=a+b%2Bc.txt") == "a b+c.txt"
    assert name_of(b"x=1&download=" + quote("caf\u00e9 \u2603.txt").encode() + b"&y=2") == "caf\u00e9 \u2603.txt"
    assert name_of(b"download=%0Aline") == "\nline"  # allowed; made "_" in the header
    assert name_of(b"download=" + b"a" * MAX_DOWNLOAD_NAME_BYTES) == "a" * MAX_DOWNLOAD_NAME_BYTES


@pytest.mark.parametrize(
    "query",
    [
        b"download=",
        b"download",
        b"download=a&download=b",
        b"download=%FF",
        b"download=%ED%A0%80",  # an encoded surrogate is not UTF-8
        b"download=" + b"a" * (MAX_DOWNLOAD_NAME_BYTES + 1),
        b"download=" + b"%C3%A9" * (MAX_DOWNLOAD_NAME_BYTES // 2 + 1),  # counted in bytes, not characters
    ],
)
def test_a_bad_download_is_invalid_request(query: bytes) -> None:
    with pytest.raises(InvalidRequest):
        name_of(query)
