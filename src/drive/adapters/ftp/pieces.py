"""Resumable-upload pieces on FTP: appended segment files, joined only when they must be.

The pieces of ``key`` live in ``staging/<key>.pieces/``, in segment files named by the
offset of their first byte (``0``, then more only after an interruption). An append
checks the current segment's SIZE: if it holds exactly the recorded bytes, the new
bytes go on with APPE; if an interrupted or unrecorded append left bytes beyond the
recorded offset, FTP cannot truncate them, so a new segment starts at that offset
(STOR, which replaces a leftover segment of the same name). Bytes before a recorded
offset are never rewritten, so a state stays valid whatever happened after it.

Sealing renames a single exact segment to the published name; after interruptions the
segments' recorded bytes are streamed into one file instead. The state is the length
and the segment offsets, so ``MAX_SEGMENTS`` interruptions keep it under 64 KiB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise

from drive.domain.errors import StorageUnavailable, StoredBytesMissing

SUFFIX = ".pieces"
MAX_SEGMENTS = 4096  # ~12 bytes each in the state, which must stay under 64 KiB


def missing_pieces() -> StoredBytesMissing:
    return StoredBytesMissing("staged pieces of an upload are missing from the FTP server")


@dataclass(frozen=True)
class PieceState:
    length: int
    starts: tuple[int, ...] = (0,)

    def dump(self) -> str:
        return json.dumps({"v": 1, "n": self.length, "s": list(self.starts)}, separators=(",", ":"))

    @classmethod
    def load(cls, state: str) -> PieceState:
        try:
            data = json.loads(state)
            length, starts = data["n"], tuple(data["s"])
        except (ValueError, TypeError, KeyError):
            raise ValueError("not an FTP piece state") from None
        numbers = (length, *starts)
        if (
            data.get("v") != 1
            or not all(type(n) is int and n >= 0 for n in numbers)
            or not starts
            or starts[0] != 0
            or any(a >= b for a, b in pairwise(starts))
            or starts[-1] > length
        ):
            raise ValueError("not an FTP piece state")
        return cls(length, starts)

    def started_at(self, offset: int) -> PieceState:
        """The state with a new segment beginning at ``offset`` (the current length)."""
        if len(self.starts) >= MAX_SEGMENTS:
            raise StorageUnavailable(f"an upload interrupted more than {MAX_SEGMENTS} times cannot go on; start over")
        return PieceState(self.length, (*self.starts, offset))

    def segments(self, length: int) -> list[tuple[int, int]]:
        """(start, end) of each segment's share of the first ``length`` bytes."""
        bounds = [*self.starts, self.length]
        return [(start, min(end, length)) for start, end in pairwise(bounds) if start < length]
