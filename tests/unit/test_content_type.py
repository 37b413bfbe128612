"""Content type: the domain's media type check (Hypothesis), the store's use of it, migration, the CLI's guess."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drive.adapters.memory import InMemoryBlobRepository, InMemoryMetadataRepository
from drive.application.service import DriveService
from drive.application.streams import single_chunk
from drive.domain.backends import Backends
from drive.domain.errors import BlobConflict, InvalidRequest
from drive.domain.media_types import DEFAULT_CONTENT_TYPE, MAX_CONTENT_TYPE_BYTES, validate_media_type
from drive.entrypoints.cli_blobs import guess_content_type
from tests.unit.wiring import container_over

FAST = settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
tokens = st.text(alphabet=TCHAR, min_size=1, max_size=12)
ows = st.text(alphabet=" \t", max_size=2)
# qdtext and quoted-pairs (RFC 9110 §5.6.4): what may sit between the quotes.
qdtext = st.sampled_from(["\t", " ", "!", *map(chr, range(0x23, 0x5C)), *map(chr, range(0x5D, 0x7F))])
quoted_pair = st.sampled_from(["\t", " ", *map(chr, range(0x21, 0x7F))]).map(lambda c: "\\" + c)
quoted = st.lists(qdtext | quoted_pair, max_size=8).map(lambda parts: '"' + "".join(parts) + '"')
parameter = st.tuples(tokens, tokens | quoted).map(lambda p: f"{p[0]}={p[1]}") | st.just("")
parameters = st.lists(st.tuples(ows, ows, parameter).map(lambda p: f"{p[0]};{p[1]}{p[2]}"), max_size=3)
media_types = st.tuples(tokens, tokens, parameters).map(lambda t: f"{t[0]}/{t[1]}{''.join(t[2])}")
HEADER_SAFE = re.compile(r"[\t\x20-\x7e]*")


@FAST
@given(media_types)
@example("text/html")
@example("text/plain; charset=utf-8")
@example('multipart/form-data; boundary="a b;c\\"d"')
@example("application/vnd.api+json;")
@example("image/svg+xml ; q=1 ;charset=UTF-8")
def test_every_media_type_of_the_grammar_is_kept_exactly(value: str) -> None:
    if len(value) <= MAX_CONTENT_TYPE_BYTES:
        assert validate_media_type(value) == value
    else:
        with pytest.raises(InvalidRequest):
            validate_media_type(value)


@FAST
@given(st.text(max_size=300) | st.text(alphabet=TCHAR + '/;= \t"\\\r\n\x00é', max_size=300))
@example("")
@example("text")
@example("text/")
@example("/html")
@example("text/html/x")
@example("text /html")
@example(" text/html")
@example("text/html\r\nX-Injected: 1")
@example("text/html; charset")
@example("text/html; charset=")
@example('text/html; charset="unterminated')
@example("text/h\u00e9ml")
@example("text/html; a=\u00e9")
@example("a/" + "b" * 254)
def test_anything_accepted_is_a_media_type_and_safe_as_a_header(value: str) -> None:
    try:
        accepted = validate_media_type(value)
    except InvalidRequest:
        return
    assert accepted == value
    assert len(value.encode("utf-8")) <= MAX_CONTENT_TYPE_BYTES
    assert HEADER_SAFE.fullmatch(value)  # never a CR, LF, NUL or byte beyond ASCII
    kind, _, rest = value.partition("/")
    assert kind and set(kind) <= set(TCHAR)
    subtype = re.match(f"[{re.escape(TCHAR)}]+", rest)
    assert subtype is not None


def test_the_limit_is_255_bytes_and_non_strings_are_refused() -> None:
    assert validate_media_type("a/" + "b" * 253) == "a/" + "b" * 253  # 255 bytes
    for bad in ("a/" + "b" * 254, None, 3, b"text/plain", ["text/plain"]):
        with pytest.raises(InvalidRequest):
            validate_media_type(bad)


# -- the store --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stored_type_is_recorded_and_part_of_the_blob(
    service: DriveService, metadata: InMemoryMetadataRepository
) -> None:
    plain = await service.store("default", single_chunk(b"x"))
    assert plain.record.content_type == DEFAULT_CONTENT_TYPE
    html = await service.store("page", single_chunk(b"<p>"), content_type="text/html; charset=utf-8")
    assert html.created and html.record.content_type == "text/html; charset=utf-8"
    assert (await service.retrieve.stat("page")).content_type == "text/html; charset=utf-8"
    assert [r.content_type for r in (await service.list("", 10, None)).items] == [
        DEFAULT_CONTENT_TYPE,
        "text/html; charset=utf-8",
    ]
    replay = await service.store("page", single_chunk(b"<p>"), content_type="text/html; charset=utf-8")
    assert not replay.created and replay.record == html.record
    for other in ("text/html", "text/html;charset=utf-8", "Text/HTML; charset=utf-8", DEFAULT_CONTENT_TYPE):
        with pytest.raises(BlobConflict, match="another content type"):
            await service.store("page", single_chunk(b"<p>"), content_type=other)
    with pytest.raises(BlobConflict, match="different bytes"):
        await service.store("page", single_chunk(b"<q>"), content_type="text/html; charset=utf-8")
    assert metadata.records["page"] == html.record


@pytest.mark.anyio
async def test_an_invalid_type_is_refused_before_anything_is_written(
    service: DriveService, metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository
) -> None:
    for bad in ("", "html", "text/html\n", "a/" + "b" * 254):
        with pytest.raises(InvalidRequest):
            await service.store("bad", single_chunk(b"x"), content_type=bad)
    assert not metadata.records and not metadata.pending and not blobs.objects


@pytest.mark.anyio
async def test_lost_race_with_another_type_is_a_conflict(
    service: DriveService, metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository
) -> None:
    """The winner committed between our lookup and our commit: its type is compared too."""
    original = metadata.get

    async def not_yet(blob_id: str) -> object:
        return None

    await service.store("raced", single_chunk(b"same"), content_type="text/plain")
    metadata.get = not_yet  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(BlobConflict):
            await service.store("raced", single_chunk(b"same"), content_type="text/csv")
    finally:
        metadata.get = original  # type: ignore[method-assign]
    assert len(blobs.objects) == 1 and not metadata.pending  # our surplus copy was removed


@pytest.mark.anyio
async def test_migrate_carries_the_type_over() -> None:
    metadata = InMemoryMetadataRepository()
    old, new = InMemoryBlobRepository("old"), InMemoryBlobRepository("new")
    service = container_over(metadata, Backends({"old": old, "new": new}, default="old")).service()
    await service.store("typed", single_chunk(b"{}"), content_type="application/json")
    report = await service.migrate("new")
    assert report.moved == 1
    moved = await service.retrieve.stat("typed")
    assert (moved.backend, moved.content_type) == ("new", "application/json")


# -- the command line's guess -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("-", DEFAULT_CONTENT_TYPE),
        ("notes.txt", "text/plain"),
        ("dir.d/Index.HTML", "text/html"),
        ("logo.svg", "image/svg+xml"),
        ("data.json", "application/json"),
        ("photo.jpg", "image/jpeg"),
        ("archive.tar.gz", "application/gzip"),  # the bytes are gzip, not tar
        ("archive.tar.bz2", DEFAULT_CONTENT_TYPE),
        ("README", DEFAULT_CONTENT_TYPE),
        ("no-such-extension.zzzz", DEFAULT_CONTENT_TYPE),
    ],
)
def test_put_guesses_the_type_from_the_file_name(path: str, expected: str) -> None:
    assert guess_content_type(path) == expected
    assert validate_media_type(guess_content_type(path))
