"""The remote backends' resumable-upload states: compact, strict, and under the port's 64 KiB."""

from __future__ import annotations

import pytest

from drive.adapters.ftp import pieces as ftp_pieces
from drive.adapters.s3 import pieces as s3_pieces
from drive.adapters.s3.multipart import MIN_PART_SIZE
from drive.domain.errors import StorageUnavailable

GIB = 1024**3
LIMIT = 64 * 1024
# AWS UploadIds are opaque; observed ones are around 100-200 characters.
AWS_LIKE_UPLOAD_ID = "x" * 256


def test_s3_state_is_constant_in_size_and_round_trips() -> None:
    state = s3_pieces.PieceState(AWS_LIKE_UPLOAD_ID, MIN_PART_SIZE, 5 * GIB)
    dumped = state.dump()
    # The same size for 1 byte or 5 GiB in 5 MiB pieces: no per-part entries.
    assert len(dumped) == len(s3_pieces.PieceState(AWS_LIKE_UPLOAD_ID, MIN_PART_SIZE, 1).dump()) + 9
    assert len(dumped) < 300
    assert s3_pieces.PieceState.load(dumped) == state


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "[]",
        "{}",
        '{"v":2,"u":"x","p":5242880,"n":0}',
        '{"v":1,"u":"x","p":1024,"n":0}',  # parts S3 would refuse
        '{"v":1,"u":"x","p":5242880,"n":-1}',
        '{"v":1,"u":7,"p":5242880,"n":0}',
        '{"v":1,"u":"x","p":5242880,"n":true}',
        '{"v":1,"n":0,"s":[0]}',  # an FTP state
    ],
)
def test_s3_state_refuses_anything_else(bad: str) -> None:
    with pytest.raises(ValueError):
        s3_pieces.PieceState.load(bad)


def test_piece_object_suffixes_are_exact() -> None:
    assert s3_pieces.is_piece_suffix(".piece.0")
    assert s3_pieces.is_piece_suffix(".piece.639")
    for other in (".piece.", ".piece.01", ".piece.+1", ".piece.1 ", ".piece.\u0661", ".pieces.1", ".txt", ""):
        assert not s3_pieces.is_piece_suffix(other), other


def test_ftp_state_stays_under_the_limit_at_its_most_interrupted() -> None:
    simple = ftp_pieces.PieceState(5 * GIB)
    assert len(simple.dump()) < 40
    state = ftp_pieces.PieceState(0)
    step = 5 * GIB // ftp_pieces.MAX_SEGMENTS
    for n in range(1, ftp_pieces.MAX_SEGMENTS):
        state = ftp_pieces.PieceState(n * step, state.starts).started_at(n * step)
    state = ftp_pieces.PieceState(5 * GIB, state.starts)
    assert len(state.dump()) < LIMIT
    assert ftp_pieces.PieceState.load(state.dump()) == state
    with pytest.raises(StorageUnavailable):
        state.started_at(5 * GIB)


def test_ftp_segments_cover_a_prefix() -> None:
    state = ftp_pieces.PieceState(100, (0, 10, 60))
    assert state.segments(100) == [(0, 10), (10, 60), (60, 100)]
    assert state.segments(30) == [(0, 10), (10, 30)]
    assert state.segments(10) == [(0, 10)]
    assert state.segments(0) == []


@pytest.mark.parametrize(
    "bad",
    [
        "{}",
        '{"v":1,"n":5,"s":[]}',
        '{"v":1,"n":5,"s":[1]}',
        '{"v":1,"n":5,"s":[0,3,3]}',
        '{"v":1,"n":5,"s":[0,6]}',
        '{"v":1,"n":5,"s":[0,true]}',
        '{"v":1,"n":-1,"s":[0]}',
        '{"v":1,"u":"x","p":5242880,"n":0}',  # an S3 state
    ],
)
def test_ftp_state_refuses_anything_else(bad: str) -> None:
    with pytest.raises(ValueError):
        ftp_pieces.PieceState.load(bad)
