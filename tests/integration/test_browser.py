"""A real browser (Debian's headless Chromium, driven by Selenium) uploads and downloads with signed links.

A page served from another origin on 127.0.0.1 makes 5 MiB of random bytes, uploads them
with ``fetch()`` to a signed ``PUT`` link, downloads them through a signed ``GET`` link,
compares SHA-256 digests in the page (``crypto.subtle``: 127.0.0.1 is a secure context)
and posts its findings back to the page's own server. A page on an origin that
``CORS_ALLOW_ORIGINS`` does not list sees every ``fetch()`` rejected.

Needs the ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them). Under
``CI`` the test fails rather than skips when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.live import AUTH, LiveServer, base_env
from tests.integration.servers.throwaway import unavailable

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SIZE = 5 * 1024 * 1024
KEYS = "browser:browser-test-secret-0123456789abcdef0123"


def _browser_available() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip, in the test extras)")
    if missing:
        unavailable(f"the browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)")


class PageServer:
    """One origin (``http://127.0.0.1:<port>``) serving one page (``html``) and collecting its report."""

    def __init__(self) -> None:
        self.html = ""  # set once the links it embeds exist
        self.report: dict[str, Any] | None = None
        self.reported = threading.Event()
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = page.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # the page's report, to its own origin
                length = int(self.headers.get("Content-Length", "0"))
                page.report = json.loads(self.rfile.read(length))
                page.reported.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float = 90) -> dict[str, Any]:
        assert self.reported.wait(timeout), "the page never reported"
        assert self.report is not None
        return self.report


_COMMON = """
const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
const report = async (result) => {
  document.title = result.ok ? "passed" : "failed";
  await fetch("/report", {method: "POST", body: JSON.stringify(result)});
};
"""

UPLOADER = """<!doctype html><meta charset="utf-8"><title>running</title><script>
const PUT_URL = %(put)s, GET_URL = %(get)s, SIZE = %(size)d;
%(common)s
(async () => {
  const result = {ok: false};
  try {
    const data = new Uint8Array(SIZE);
    for (let at = 0; at < SIZE; at += 65536) crypto.getRandomValues(data.subarray(at, at + 65536));
    result.sent = hex(await crypto.subtle.digest("SHA-256", data));
    const put = await fetch(PUT_URL, {method: "PUT", body: data, headers: {"Content-Type": "application/x-test"}});
    result.put_status = put.status;
    result.etag = put.headers.get("ETag");
    result.location = put.headers.get("Location");
    result.stored = await put.json();
    const got = await fetch(GET_URL);
    result.get_status = got.status;
    result.length = got.headers.get("Content-Length");
    const bytes = await got.arrayBuffer();
    result.received_size = bytes.byteLength;
    result.received = hex(await crypto.subtle.digest("SHA-256", bytes));
    const refused = await fetch(GET_URL.replace("signature=", "signature=x"));
    result.tampered_status = refused.status;
    result.tampered_error = (await refused.json()).error;
    result.ok = result.put_status === 201 && result.get_status === 200 && result.sent === result.received;
  } catch (error) {
    result.error = String(error);
  }
  await report(result);
})();
</script>"""

OUTSIDER = """<!doctype html><meta charset="utf-8"><title>running</title><script>
const PUT_URL = %(put)s, GET_URL = %(get)s;
%(common)s
const attempt = async (url, init) => {
  try { await fetch(url, init); return "answered"; } catch (error) { return "rejected: " + error.name; }
};
(async () => {
  const result = {
    get: await attempt(GET_URL, {}),
    put: await attempt(PUT_URL, {method: "PUT", body: new Uint8Array(10)}),
  };
  result.ok = result.get.startsWith("rejected") && result.put.startsWith("rejected");
  await report(result);
})();
</script>"""


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    _browser_available()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Both paths are given, so Selenium Manager has nothing to find; offline, it could fetch nothing anyway.
    previous = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(60)
    yield browser
    browser.quit()
    if previous is None:
        os.environ.pop("SE_OFFLINE", None)
    else:
        os.environ["SE_OFFLINE"] = previous


@pytest.fixture
def pages() -> Iterator[tuple[PageServer, PageServer]]:
    """Two origins on 127.0.0.1: the first is listed in CORS_ALLOW_ORIGINS, the second is not."""
    allowed, outsider = PageServer(), PageServer()
    yield allowed, outsider
    allowed.close()
    outsider.close()


def _link(client: httpx.Client, **fields: object) -> str:
    response = client.post("/v1/links", json=fields, headers=AUTH)
    assert response.status_code == 201, response.text
    return str(response.json()["url"])


def test_browser_uploads_and_downloads_with_signed_links(
    driver: Any, pages: tuple[PageServer, PageServer], tmp_path: Path
) -> None:
    uploader, outsider = pages
    blob_id, other_id = "browser/5 MiB upload.bin", "browser/outsider"
    server = LiveServer(base_env(tmp_path, SIGNING_KEYS=KEYS, CORS_ALLOW_ORIGINS=uploader.origin)).start()
    try:
        with server.client() as client:
            put = _link(client, id=blob_id, method="PUT", max_size=SIZE, content_type="application/x-test")
            get = _link(client, id=blob_id, method="GET")
            other_put = _link(client, id=other_id, method="PUT")
        links = {"put": json.dumps(server.url + put), "get": json.dumps(server.url + get), "common": _COMMON}
        uploader.html = UPLOADER % {**links, "size": SIZE}
        outsider.html = OUTSIDER % {**links, "put": json.dumps(server.url + other_put)}

        driver.get(uploader.origin + "/")
        result = uploader.wait()
        assert result.get("error") is None, result
        assert result["put_status"] == 201
        assert result["stored"]["id"] == blob_id and result["stored"]["size"] == str(SIZE)
        assert result["etag"] == f'"{result["sent"]}"'  # an exposed header: readable by the page
        assert result["location"] == "/v1/blobs/browser%2F5%20MiB%20upload.bin"
        assert result["get_status"] == 200 and result["length"] == str(SIZE)
        assert result["received_size"] == SIZE
        assert result["received"] == result["sent"]  # SHA-256 compared in the page
        assert result["tampered_status"] == 401 and "tampered" in result["tampered_error"]["message"]
        assert result["ok"] is True
        assert driver.title == "passed"
        with server.client(headers=AUTH) as client:  # what the page sent is what the service holds
            assert client.head("/v1/blobs/browser%2F5%20MiB%20upload.bin").headers["etag"] == f'"{result["sent"]}"'

        driver.get(outsider.origin + "/")
        refused = outsider.wait()
        assert refused == {"get": "rejected: TypeError", "put": "rejected: TypeError", "ok": True}, refused
        with server.client(headers=AUTH) as client:  # the PUT's preflight failed: nothing was sent
            assert client.head("/v1/blobs/browser%2Foutsider").status_code == 404
    finally:
        server.stop()
