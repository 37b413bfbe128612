"""A steady load of PUTs and GETs from a few threads, to run while something underneath fails.

Every request is timed and its answer kept, so a test can say: nothing but 2xx or 503
(never a 500, never a hang), normal again soon after the fault ended, and every PUT that
was acknowledged reads back byte-exact.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.integration.cli_helpers import Drive
from tests.integration.live import AUTH

RAW = {"Accept": "application/octet-stream"}
# A request may wait for a pooled database connection (10 s), then to connect (10 s); a
# statement is cut at 30 s (sql_engine.py); a backend call at its own timeout. 35 s bounds it.
REQUEST_BOUND = 35.0


@dataclass(frozen=True)
class Outcome:
    method: str
    blob_id: str
    started: float  # monotonic
    seconds: float
    status: int | None  # None: no answer (timeout, reset)
    code: str | None = None  # the contract error's code, if any
    problem: str | None = None  # what went wrong beyond an honest 503


@dataclass
class SteadyLoad:
    """``workers`` threads, each alternating a PUT of fresh random bytes and a GET of an acknowledged blob."""

    url: str
    workers: int = 8
    request_timeout: float = 60.0  # the client's; far beyond any bound a test asserts
    max_size: int = 64 * 1024
    acknowledged: dict[str, bytes] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, seconds: float, during: Callable[[], None] | None = None) -> None:
        """Load for ``seconds`` (at least until ``during``, run alongside, has returned)."""
        self._stop.clear()
        with ThreadPoolExecutor(self.workers + 1) as pool:
            running = [pool.submit(self._worker, n) for n in range(self.workers)]
            if during is not None:
                pool.submit(during).result()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not any(f.done() for f in running):
                time.sleep(0.1)
            self._stop.set()
            for future in running:
                future.result()

    def _worker(self, number: int) -> None:
        rng = random.Random(number)
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=self.request_timeout) as client:
            count = 0
            while not self._stop.is_set():
                count += 1
                blob_id = f"load-{number}-{count}"
                data = os.urandom(rng.randint(1, self.max_size))
                self._call(client, "PUT", blob_id, data)
                with self._lock:
                    known = list(self.acknowledged.items())
                if known:
                    self._call(client, "GET", *rng.choice(known))

    def _call(self, client: httpx.Client, method: str, blob_id: str, data: bytes) -> None:
        started = time.monotonic()
        status: int | None = None
        code = problem = None
        try:
            if method == "PUT":
                response = client.put(f"/v1/blobs/{blob_id}", content=data)
            else:
                response = client.get(f"/v1/blobs/{blob_id}", headers=RAW)
            status = response.status_code
            if status >= 400:
                code = _error_code(response)
            if status == 201 and method == "PUT":
                with self._lock:
                    self.acknowledged[blob_id] = data
            elif status == 200 and response.content != data:
                problem = "GET answered 200 with other bytes"
            elif status not in (200, 201) and not (status == 503 and code == "storage_unavailable"):
                problem = f"answered {status}: {response.text[:300]}"
        except httpx.HTTPError as exc:
            problem = f"no answer: {type(exc).__name__}: {exc}"
        outcome = Outcome(method, blob_id, started, time.monotonic() - started, status, code, problem)
        with self._lock:
            self.outcomes.append(outcome)

    # -- what a test asserts ---------------------------------------------------------

    def assert_honest(self, within: float) -> None:
        """Only 200, 201 or the contract's 503, each within ``within`` seconds."""
        problems = [o for o in self.outcomes if o.problem is not None]
        assert not problems, problems[:5]
        slow = [o for o in self.outcomes if o.seconds > within]
        assert not slow, f"{len(slow)} requests took over {within} s: {slow[:5]}"

    def unavailable(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 503]

    def recovered_after(self, moment: float) -> float:
        """Seconds from ``moment`` until the first request started after it was answered 201."""
        stored = [o for o in self.outcomes if o.started >= moment and o.status == 201 and o.method == "PUT"]
        assert stored, "no PUT succeeded after the fault ended"
        return min(o.started + o.seconds for o in stored) - moment

    def assert_all_read_back(self) -> None:
        """Every acknowledged PUT, byte-exact (the server must be healthy again)."""
        assert self.acknowledged, "the load never got a PUT through"
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=30) as client:
            for blob_id, data in self.acknowledged.items():
                response = client.get(f"/v1/blobs/{blob_id}", headers=RAW)
                assert response.status_code == 200, (blob_id, response.text)
                assert response.content == data, blob_id

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            key = f"{o.method} {o.status}"
            counts[key] = counts.get(key, 0) + 1
        slowest = max((o.seconds for o in self.outcomes), default=0.0)
        return f"{counts}, slowest {slowest:.1f} s, {len(self.acknowledged)} acknowledged"


def _error_code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def fsck_clean(drive: Drive, wait: float = 0.0) -> dict[str, object]:
    """``drive fsck`` finds nothing, now or (``wait``) once leases of cut-off requests have ended."""
    deadline = time.monotonic() + wait
    while True:
        result = drive("fsck", "--json")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr} {result.text}"
    report: dict[str, object] = result.json()
    assert report["problems"] == 0 and report["unreachable_backends"] == [], report
    return report


def assert_no_errors_logged(log: Path) -> None:
    """A fault outside the service is a warning in its log, never an error (an error means a bug)."""
    errors = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            level = json.loads(line).get("level")
        except (ValueError, AttributeError):
            level = "ERROR" if "Traceback" in line else None
        if level in ("ERROR", "CRITICAL"):
            errors.append(line[:1500])
    assert not errors, errors[:3]
