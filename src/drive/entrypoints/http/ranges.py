"""Single byte ranges (RFC 9110 §14): ``a-b``, ``a-`` and ``-n``."""

from __future__ import annotations

import re

from drive.domain.errors import RangeNotSatisfiable

# ASCII digits only: ``\d`` also matches superscripts, which ``int`` refuses, and other scripts' digits.
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# Longer numbers are past any blob; capping them keeps ``int`` away from thousands of digits.
_MAX_DIGITS = 19
_BEYOND = 10**_MAX_DIGITS


def _number(digits: str) -> int:
    digits = digits.lstrip("0") or "0"  # leading zeros are allowed, and count towards int's digit limit
    return int(digits) if len(digits) <= _MAX_DIGITS else _BEYOND


class Unsatisfiable(RangeNotSatisfiable):
    def __init__(self, size: int) -> None:
        super().__init__("the range is outside the blob")
        self.headers = {"Content-Range": f"bytes */{size}"}


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)``, or None to serve the whole blob.

    Syntax we do not serve (several ranges, other units, garbage) is ignored, as the
    RFC allows; a well-formed range outside the blob raises ``Unsatisfiable``.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        length = _number(last)
        if length == 0 or size == 0:
            raise Unsatisfiable(size)
        return max(size - length, 0), size
    start = _number(first)
    if last and _number(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable(size)
    end = size if not last else min(_number(last) + 1, size)
    return start, end
