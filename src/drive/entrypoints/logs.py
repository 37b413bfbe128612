"""Logging for both entrypoints: one JSON object per line, with the request id, and never a secret.

``configure_logging`` is called by ``drive serve`` and again by every app it creates
(uvicorn's worker processes start with fresh logging), so it is idempotent: one JSON
handler on the root logger, uvicorn's loggers routed through it, uvicorn's own access log
off (``drive.access`` writes one line per request instead). A process that already routes
its logs (a test runner, an embedding server) keeps its handlers. ``configure_command_logging``
is the data commands' quieter variant.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import itertools
import logging
import operator
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import msgspec

from drive.loop_batches import DueOnce
from drive.settings import Settings

# The id of the request being served, added to every log line written while serving it.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("drive_request_id", default=None)

REDACTED = "[redacted]"
# Shorter secrets cannot be redacted without mangling ordinary words.
MIN_SECRET_LENGTH = 6
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):[^/\s@]+@")
# LogRecord's own attributes, and uvicorn's terminal-colour copy of its message.
_NOT_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}

_secrets: set[str] = set()
_longest_first: tuple[str, ...] = ()  # _secrets, longest first, so one containing another goes whole
_secrets_lock = threading.Lock()


def _may_hold_credential(text: str) -> bool:
    """Whether ``_BEARER`` or ``_URL_PASSWORD`` could match: far cheaper than trying them."""
    return "://" in text or "bearer" in text.lower()


_encoder = msgspec.json.Encoder(enc_hook=repr)


def add_secrets(values: Iterable[str | None]) -> None:
    """Remember values that must never appear in a log line (tokens, passwords, keys)."""
    global _longest_first
    with _secrets_lock:
        _secrets.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)
        _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    if _may_hold_credential(text):
        text = _BEARER.sub(rf"\1 {REDACTED}", text)
        text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    for secret in _longest_first:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(repr(value))


def timestamp(created: float) -> str:
    """``2026-11-26T05:00:00.123Z``; reused within a millisecond, its part up to the second within a second.

    A batch of access lines at thousands a second holds runs of the same millisecond.
    """
    global _last_second, _last_milli
    second = int(created)
    milli = int((created - second) * 1000)
    last = _last_milli  # read once: another thread may replace it meanwhile (the log worker, a warning)
    if last[0] == second and last[1] == milli:
        return last[2]
    cached = _last_second
    if cached[0] != second:
        cached = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    text = f"{cached[1]}.{milli:03d}Z"
    _last_milli = (second, milli, text)
    return text


_last_milli: tuple[int, int, str] = (-1, -1, "")
_last_second: tuple[int, str] = (-1, "")


def may_hold_secret(text: str) -> bool:
    """Whether ``redact`` could change ``text``: one look, for many values joined at once."""
    return _may_hold_credential(text) or any(secret in text for secret in _longest_first)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id"?, extra fields…, "exc"?}``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: value for key, value in vars(record).items() if key not in _NOT_FIELDS and key[:1] != "_"}
        if record.exc_info and record.exc_info[0] is not None:
            fields["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.stack_info:
            fields["stack"] = record.stack_info
        return json_line(record.created, record.levelname, record.name, record.getMessage(), fields)


def json_line(created: float, level: str, logger: str, message: str, fields: dict[str, Any]) -> str:
    """One redacted JSON log line (without its newline): the layout ``JsonFormatter`` documents."""
    line = _line(created, level, logger, message, fields.get("request_id") or request_id_var.get(), fields)
    # Access lines, the many, are redacted with their batch (observability.py); these are few.
    return _encoder.encode({key: _clean(value) for key, value in line.items()}).decode()


def _line(
    created: float, level: str, logger: str, message: str, request_id: str | None, fields: dict[str, Any]
) -> dict[str, Any]:
    line: dict[str, Any] = {"ts": timestamp(created), "level": level, "logger": logger, "message": message}
    if request_id:
        line["request_id"] = request_id
    for key, value in fields.items():
        if key not in line:
            line[key] = value
    return line


BATCH_SECONDS = 0.01  # how long a line may wait for others to share its write


# Makes the lines of a run of items put with it, formatted together (per line, formatting was
# most of a line's cost).
LinesOf = Callable[[list[Any]], list[str]]


class _BackgroundWriter:
    """Writes access lines to ``sys.stderr`` in batches, off the event loop.

    A write to stderr blocks while its reader (a pipe, a container runtime's log driver, a
    terminal) is slow, and cost a system call per request on the event loop. A line's raw parts
    are appended to a queue, with the function that makes lines of them; the first of a batch
    asks the event loop to hand the batch, 10 ms later, to a worker thread, which formats it and
    writes it in one call. A thread of our own waiting on a condition cost more (measured,
    ``bench/inproc.py``: about 16 µs per request of lock, wake-up and GIL traffic, against one
    loop timer per batch). Outside an event loop a line is written at once. Other lines (rare:
    start-up, warnings, errors) are written at once by the caller, after the access lines
    before them, so order is kept. ``flush`` writes what is waiting; the server calls it when
    it stops (a process ending on its signal runs no exit handlers).
    """

    def __init__(self) -> None:
        # deque: appended on the loop's thread, drained by whichever thread writes (both atomic).
        self._lines: collections.deque[tuple[LinesOf, Any]] = collections.deque()
        self._writing = threading.Lock()  # held while taking and writing: batches leave in order
        self._hand_over_due = DueOnce(BATCH_SECONDS, self._hand_over, self.write_now)

    def put(self, lines_of: LinesOf, item: object) -> None:
        """Queue ``item``, to be made a line by ``lines_of`` with the other items of its run."""
        self._lines.append((lines_of, item))
        self._hand_over_due.arm()

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._lines:
            return
        try:
            loop.run_in_executor(None, self.write_now)
        except RuntimeError:  # the loop is shutting its executor down: write them here, once
            self.write_now()

    def write_now(self, line: str = "") -> None:
        """Write what is waiting, then ``line``, in the calling thread."""
        with self._writing:
            lines = _batch_lines(self._take())
            if line:
                lines.append(line)
            _write(lines)

    def flush(self) -> None:
        self.write_now()

    def _take(self) -> list[tuple[LinesOf, Any]]:
        lines = []
        waiting = self._lines
        while waiting:
            lines.append(waiting.popleft())
        return lines


def _batch_lines(waiting: list[tuple[LinesOf, Any]]) -> list[str]:
    """The lines of a batch, in order, each run of items with the same ``lines_of`` made together."""
    lines: list[str] = []
    for lines_of, run in itertools.groupby(waiting, key=operator.itemgetter(0)):
        lines += lines_of([item for _, item in run])
    return lines


def _write(lines: list[str]) -> None:
    if not lines:
        return
    stream = sys.stderr  # whatever it is now: test runners swap it
    try:
        stream.write("".join(lines))
        stream.flush()
    except (OSError, ValueError):  # closed or gone: the lines cannot be written anywhere
        pass


class _StderrHandler(logging.Handler):
    """JSON lines to whatever ``sys.stderr`` is at the time; access lines through the background writer."""

    def __init__(self) -> None:
        super().__init__()
        self.writer = _BackgroundWriter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write_now(self.format(record) + "\n")
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.writer.flush()


def flush_logs() -> None:
    """Write every log line still waiting (the server calls this as it stops)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


_own_handler: _StderrHandler | None = None  # ours, when it is the root logger's only handler


def batch_writer(logger: logging.Logger, level: int) -> _BackgroundWriter | None:
    """The writer for ``logger``'s lines at ``level`` when our JSON handler is their only way out.

    Under load the access line was the costliest step of a small request after routing:
    record, caller lookup, handler chain. When the line would reach nothing but our handler
    (the server as started by ``drive serve``), its raw parts can go to the writer instead, to be
    formatted the same way with the rest of their batch. None otherwise: a test runner's capture,
    an embedding server's own handlers or a filter see the line, so it goes through ``logger``;
    and None when ``level`` is not enabled (check ``logger.isEnabledFor`` before writing).
    """
    if not logger.isEnabledFor(level):
        return None
    handler = _own_handler
    root = logging.getLogger()
    if (
        handler is None
        or len(root.handlers) != 1
        or root.handlers[0] is not handler  # compared without building a list per request
        or logger.handlers
        or logger.filters
        or not logger.propagate
        or handler.level > level
    ):
        return None
    return handler.writer


def configure_logging(level: str = "INFO", secrets: Iterable[str | None] = ()) -> None:
    """JSON lines on stderr, unless the process already sends its logs somewhere.

    A process whose root logger has handlers of its own (a test runner capturing logs, an
    embedding server) keeps them: ``logging.basicConfig``'s plain stream handlers are
    re-formatted as JSON, anything else is left alone, and no stderr handler is added
    beside it. Otherwise one JSON handler goes on the root logger, once.
    """
    add_secrets(secrets)
    formatter = JsonFormatter()
    root = logging.getLogger()
    root.setLevel(level)
    hosted = [h for h in root.handlers if not isinstance(h, _StderrHandler)]
    for handler in hosted:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(formatter)
    global _own_handler
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
        _own_handler = handler
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
    # uvicorn checks for handlers on each connection: none means no access log of its own.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _OrphanedConnectionErrors) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_OrphanedConnectionErrors())


class _OrphanedConnectionErrors(logging.Filter):
    """A warning, not an error: aiohttp's body-writing task failing on a connection the peer reset.

    When an S3 endpoint goes away mid-request, aiobotocore's request already failed (and
    was answered 503); aiohttp's own write task then dies unobserved and asyncio reports
    "Task exception was never retrieved" at ERROR. An error line in our logs means a bug of
    ours, so this library-side echo of an outage we already report is lowered to WARNING.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno == logging.ERROR and isinstance(exc, OSError) and type(exc).__module__.startswith("aiohttp"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def settings_secrets(settings: Settings) -> Iterator[str | None]:
    """Every configured credential, so the formatter can keep them out of every line."""
    yield from settings.tokens
    for key in settings.signing_keys:
        yield key.secret.decode()
    for url in (settings.database_url, settings.blob_database_url):
        try:
            password = urlsplit(url or "").password
        except ValueError:  # not a URL: nothing to hide in it
            continue
        yield password
    if settings.s3 is not None:
        yield settings.s3.secret_key
        yield settings.s3.session_token
    if settings.ftp is not None:
        yield settings.ftp.password


def configure_command_logging(settings: Settings, verbose: bool) -> None:
    """Quiet by default: each command reports its own outcome in one line, and the
    service's logs (warnings with tracebacks) are meant for servers. ``-v`` shows them."""
    if not verbose:
        logging.disable(logging.CRITICAL)
        return
    add_secrets(settings_secrets(settings))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler])


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
