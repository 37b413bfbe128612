"""The access-line formatter: redaction on its fast path, and its timestamps."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from drive.entrypoints.logs import REDACTED, JsonFormatter, _timestamp, add_secrets

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
    for moment in (1795000000.0, 1795000000.0456, 1795000000.9999, 1795000001.5):
        expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert _timestamp(moment) == expected


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
