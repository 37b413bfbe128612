from __future__ import annotations

import pytest

from drive.domain.errors import InvalidId
from drive.domain.ids import validate_id

VALID = ["a", "../../x", "/abs", "..", ".", "a/b/c", "a%2Fb", "with space", "q?", "h#", "مرحبا", "x" * 1024, "é" * 512]


@pytest.mark.parametrize("blob_id", VALID)
def test_valid_ids_are_kept_exactly(blob_id: str) -> None:
    assert validate_id(blob_id) == blob_id


@pytest.mark.parametrize(
    "blob_id",
    ["", "a\x00b", "tab\there", "new\nline", "\x1f", "del\x7f", "x" * 1025, "é" * 513, "\ud800", 5, None],
)
def test_invalid_ids_are_refused(blob_id: object) -> None:
    with pytest.raises(InvalidId):
        validate_id(blob_id)
