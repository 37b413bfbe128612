"""The access-line formatter: redaction on its fast path, and its timestamps."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from drive.entrypoints import logs
from drive.entrypoints.http.observability import RequestObserver, _Exchange
from drive.entrypoints.logs import REDACTED, JsonFormatter, add_secrets, timestamp

SECRET = "unit-test-secret-0123456789"


def formatted(**fields: object) -> dict[str, object]:
    add_secrets([SECRET])
    record = logging.getLogger("drive.access").makeRecord(
        "drive.access", logging.INFO, "", 0, "%s %s %d", ("GET", "/v1/blobs/{blob_path}", 200), None, extra=fields
    )
    line: dict[str, object] = json.loads(JsonFormatter().format(record))
    return line


def test_clean_line_is_left_as_it_is() -> None:
    line = formatted(path="/v1/blobs/a", status=200, duration_ms=1.5, client="127.0.0.1", request_id="r1")
    assert line["path"] == "/v1/blobs/a"
    assert line["status"] == 200 and line["duration_ms"] == 1.5
    assert line["message"] == "GET /v1/blobs/{blob_path} 200"
    assert line["request_id"] == "r1"


def test_every_string_field_is_redacted_when_any_holds_a_secret() -> None:
    line = formatted(path=f"/v1/blobs/{SECRET}", request_id=f"x{SECRET}y", client="127.0.0.1")
    assert line["path"] == f"/v1/blobs/{REDACTED}"
    assert line["request_id"] == f"x{REDACTED}y"
    assert SECRET not in json.dumps(line)


def test_bearer_and_url_passwords_are_redacted_in_any_case() -> None:
    line = formatted(note="BeArEr abc.def", url="postgresql://u:pw@db/x")
    assert line["note"] == f"BeArEr {REDACTED}"
    assert line["url"] == f"postgresql://u:{REDACTED}@db/x"


def test_nested_and_odd_values_are_cleaned() -> None:
    line = formatted(details={"token": SECRET, "n": 1}, items=[SECRET, 2], thing=object())
    assert line["details"] == {"token": REDACTED, "n": 1}
    assert line["items"] == [REDACTED, 2]
    assert isinstance(line["thing"], str) and line["thing"].startswith("<object")


def test_timestamp_matches_isoformat_in_milliseconds() -> None:
    # Runs of the same millisecond, and the same millisecond of another second (both reuse a text).
    moments = (1795000000.0, 1795000000.0456, 1795000000.0451, 1795000001.0456, 1795000000.9999, 1795000001.5)
    for moment in moments:
        expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert timestamp(moment) == expected


def test_aiohttp_orphaned_write_task_after_a_reset_is_a_warning_other_errors_stay() -> None:
    from aiohttp.client_exceptions import ClientConnectionResetError

    from drive.entrypoints.logs import configure_logging

    configure_logging("INFO")
    asyncio_logger = logging.getLogger("asyncio")

    def level_of(exc: BaseException) -> str:
        record = asyncio_logger.makeRecord(
            "asyncio", logging.ERROR, __file__, 1, "Task exception was never retrieved", (), (type(exc), exc, None)
        )
        assert asyncio_logger.filter(record)
        return record.levelname

    assert level_of(ClientConnectionResetError("Cannot write to closing transport")) == "WARNING"
    assert level_of(ValueError("a bug of ours")) == "ERROR"
    assert level_of(ConnectionResetError("not aiohttp's")) == "ERROR"


@pytest.fixture
def own_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The root logger as ``drive serve`` leaves it: our JSON handler its only one.

    A fixture runs before pytest adds its capturing handler for the test itself, so the
    handlers are set again in ``only_ours``, called by each test first.
    """
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(logs, "_own_handler", None)
    level = root.level
    logs.configure_logging("INFO", ["s3cret-token-value"])
    yield
    logs.flush_logs()
    root.setLevel(level)


def only_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "handlers", [logs._own_handler])


BLOB_ROUTE = "/v1/blobs/{blob_path}"


def finish(path: str = "/v1/blobs/a", status: int = 200, request_id: str = "r-1", route: str = BLOB_ROUTE) -> None:
    """A request ending as the observer records it: its metrics, and its access line."""
    raw_path, _, query = path.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "path_template": route,
        "client": ("127.0.0.1", 5000),
    }
    RequestObserver._record(scope, _Exchange(status, 0, 5, complete=True), 0.0015, request_id, None)  # type: ignore[arg-type]


def access_line_through(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    finish("/v1/blobs/a?t=s3cret-token-value", request_id="r-1")
    logs.flush_logs()
    (line,) = capsys.readouterr().err.splitlines()
    parsed: dict[str, object] = json.loads(line)
    assert parsed.pop("ts")
    return parsed


def test_access_line_written_directly_is_the_line_logging_writes(
    own_handler: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    only_ours(monkeypatch)
    logger = logging.getLogger("drive.access")
    with monkeypatch.context() as patch:
        patch.setattr(logger, "log", lambda *args, **kwargs: pytest.fail("went through logging"))
        direct = access_line_through(capsys)
    logger.addFilter(lambda record: True)  # a filter of its own: the line must go through logging
    try:
        through_logging = access_line_through(capsys)
    finally:
        logger.filters.clear()
    assert direct == through_logging
    assert direct["path"] == f"/v1/blobs/a?t={REDACTED}" and direct["request_id"] == "r-1"
    assert direct["message"] == f"GET {BLOB_ROUTE} 200" and direct["bytes_out"] == 5 and "aborted" not in direct


IN_ORDER = [f"GET {BLOB_ROUTE} 200", f"GET {BLOB_ROUTE} 201", f"GET {BLOB_ROUTE} 202", "then a warning"]
IN_ORDER += [f"GET {BLOB_ROUTE} 203"]


def written_messages(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [json.loads(line)["message"] for line in capsys.readouterr().err.splitlines()]


def test_access_lines_and_other_lines_keep_their_order(
    own_handler: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    only_ours(monkeypatch)
    for n in range(3):
        finish(status=200 + n)
    logging.getLogger("drive.order").warning("then a warning")  # written at once, after the waiting lines
    finish(status=203)
    logs.flush_logs()
    assert written_messages(capsys) == IN_ORDER


def test_access_lines_below_the_level_are_not_written(
    own_handler: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    only_ours(monkeypatch)
    finish("/healthz", route="/healthz")  # a probe that succeeded: DEBUG
    logs.flush_logs()
    assert capsys.readouterr().err == ""
    finish("/healthz", status=503, route="/healthz")  # one that failed: INFO
    logs.flush_logs()
    assert written_messages(capsys) == ["GET /healthz 503"]


def test_access_lines_put_on_an_event_loop_are_written_by_a_worker_in_order(
    own_handler: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    only_ours(monkeypatch)

    async def serve() -> None:
        for n in range(3):
            finish(status=200 + n)
        assert capsys.readouterr().err == ""  # batched: nothing written on the loop's thread yet
        logging.getLogger("drive.loop").warning("then a warning")  # at once, after the waiting lines
        finish(status=203)
        await asyncio.sleep(logs.BATCH_SECONDS * 10)  # the batch is handed to a worker thread

    asyncio.run(serve())  # the loop's executor is shut down, and so joined, before run() returns
    assert written_messages(capsys) == IN_ORDER


def test_access_lines_due_while_the_loop_shuts_its_executor_down_are_still_written(
    own_handler: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    only_ours(monkeypatch)

    async def last_request() -> None:
        finish(status=204)
        loop = asyncio.get_running_loop()
        await loop.shutdown_default_executor()  # as asyncio.run does on its way out
        await asyncio.sleep(logs.BATCH_SECONDS * 5)  # the batch falls due after that

    asyncio.run(last_request())
    assert written_messages(capsys) == [f"GET {BLOB_ROUTE} 204"]


def test_a_batch_of_access_lines_redacts_only_what_holds_a_secret(
    own_handler: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    only_ours(monkeypatch)
    paths = ["/v1/blobs/a", "/v1/blobs/b?t=s3cret-token-value", "/v1/blobs/c?h=Bearer abc", "/v1/blobs/d"]

    async def serve() -> None:
        for n, path in enumerate(paths):
            finish(path, request_id=f"r-{n}")
        finish("/v1/blobs/e", request_id="id-s3cret-token-value")  # a client's own id holding one
        assert capsys.readouterr().err == ""  # one batch, formatted when it is written
        logs.flush_logs()

    asyncio.run(serve())
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["path"] for line in lines] == [
        "/v1/blobs/a",
        f"/v1/blobs/b?t={REDACTED}",
        f"/v1/blobs/c?h=Bearer {REDACTED}",
        "/v1/blobs/d",
        "/v1/blobs/e",
    ]
    assert [line["request_id"] for line in lines] == ["r-0", "r-1", "r-2", "r-3", f"id-{REDACTED}"]
    assert all(line["status"] == 200 and line["logger"] == "drive.access" for line in lines)
