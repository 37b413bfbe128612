from __future__ import annotations

import pytest

from drive.domain.errors import InvalidBase64
from drive.entrypoints.http.schemas import base64_pieces, decode_base64


@pytest.mark.parametrize(
    ("text", "expected"),
    [("SGVsbG8=", b"Hello"), ("SGVsbA==", b"Hell"), ("", b""), ("+/+/", b"\xfb\xff\xbf")],
)
def test_strict_base64_accepts_canonical(text: str, expected: bytes) -> None:
    assert decode_base64(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "SGVsbG8",  # no padding
        "SGVs bG8=",  # inner space
        "SGVsbG8=\n",  # trailing newline
        "SGVs\nbG8=",  # line break
        "SGVs-G8=",  # URL-safe alphabet
        "SGVs_G8=",
        "SGVsbG8*",  # stray character
        "SGVsbG8==",  # excess padding
        "=SGVsbG8",
        "S",
        "SGl=",  # non-canonical padding bits
        "SGVsbG9=",
        "ÿÿÿÿ",  # non-ASCII
    ],
)
def test_strict_base64_refuses(text: str) -> None:
    with pytest.raises(InvalidBase64):
        decode_base64(text)


@pytest.mark.parametrize("piece", [4, 8, 12, 1024 * 1024])
@pytest.mark.parametrize("text", ["", "SGVsbG8=", "SGVsbA==", "QUJDREVGR0hJSktMTU5PUFFS", "+/+/" * 9])
def test_pieces_decode_what_the_whole_decodes(text: str, piece: int) -> None:
    assert b"".join(base64_pieces(text.encode(), piece)) == decode_base64(text)


@pytest.mark.parametrize("piece", [4, 8])
@pytest.mark.parametrize(
    "text",
    ["QQ==QUJD", "QUJDQQ==QUJD", "QUJDQUJ", "QUJD QUJ", "QR==", "QUJDQUJDQR=="],
)
def test_pieces_refuse_what_the_whole_refuses(text: str, piece: int) -> None:
    with pytest.raises(InvalidBase64):
        decode_base64(text)
    with pytest.raises(InvalidBase64):
        b"".join(base64_pieces(text.encode(), piece))
