"""CORS over real HTTP: preflights without a token, exposed headers, nothing at all when unset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.live import AUTH, LiveServer, base_env
from tests.integration.test_http_seed_routes import assert_error

APP = "http://app.example:8080"
ELSEWHERE = "http://evil.example"
REQUIRED_ALLOWED = [
    "Authorization",
    "Content-Type",
    "Content-Digest",
    "Range",
    "If-None-Match",
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Checksum",
    "Upload-Defer-Length",
    "Upload-Concat",
    "X-HTTP-Method-Override",
]
REQUIRED_EXPOSED = [
    "ETag",
    "Content-Length",
    "Content-Range",
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Expires",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
]
PATHS = ["/v1/blobs/some%2Fid", "/v1/blobs", "/v1/links", "/v1/uploads", "/v1/uploads/abc"]


def _server(tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[LiveServer]:
    live = LiveServer(base_env(tmp_path_factory.mktemp("cors"), **env)).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _server(tmp_path_factory, CORS_ALLOW_ORIGINS=f"{APP}, https://other.example")


@pytest.fixture(scope="module")
def anywhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _server(tmp_path_factory, CORS_ALLOW_ORIGINS="*")


@pytest.fixture(scope="module")
def unset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _server(tmp_path_factory)


def preflight(client: httpx.Client, path: str, origin: str, method: str = "PUT") -> httpx.Response:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type,content-digest",
        },
    )


def names(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


def cors_headers(response: httpx.Response) -> list[str]:
    return [name for name in response.headers if name.lower().startswith("access-control-")]


@pytest.mark.parametrize("path", PATHS)
def test_preflight_from_an_allowed_origin_needs_no_token(listed: LiveServer, path: str) -> None:
    with listed.client() as client:
        response = preflight(client, path, APP)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP
    assert {"get", "head", "put", "post", "delete", "patch", "options"} <= names(
        response.headers["access-control-allow-methods"]
    )
    assert {name.lower() for name in REQUIRED_ALLOWED} <= names(response.headers["access-control-allow-headers"])
    assert int(response.headers["access-control-max-age"]) > 0
    assert "origin" in names(response.headers["vary"])


def test_preflight_from_another_origin_gets_no_cors_headers(listed: LiveServer) -> None:
    with listed.client() as client:
        response = preflight(client, "/v1/blobs/x", ELSEWHERE)
    assert cors_headers(response) == []
    assert_error(response, 401, "unauthorized")  # an ordinary OPTIONS without a token
    assert "origin" in names(response.headers["vary"])


def test_answers_to_an_allowed_origin_expose_the_headers(listed: LiveServer) -> None:
    with listed.client(headers=AUTH) as client:
        stored = client.put("/v1/blobs/cors-blob", content=b"0123456789", headers={"Origin": APP})
        assert stored.status_code == 201
        for response in (
            stored,
            client.get("/v1/blobs/cors-blob", headers={"Origin": APP, "Range": "bytes=0-1", "Accept": "*/*"}),
            client.get("/v1/blobs", headers={"Origin": APP}),
        ):
            assert response.headers["access-control-allow-origin"] == APP
            assert {h.lower() for h in REQUIRED_EXPOSED} <= names(response.headers["access-control-expose-headers"])
            assert "origin" in names(response.headers["vary"])
        # Errors too, so that a page can read why it was refused.
        refused = client.get("/v1/blobs/cors-blob", headers={"Origin": APP, "Authorization": "Bearer nope"})
        assert_error(refused, 401, "unauthorized")
        assert refused.headers["access-control-allow-origin"] == APP


def test_answers_to_another_origin_carry_no_cors_headers(listed: LiveServer) -> None:
    with listed.client(headers=AUTH) as client:
        response = client.get("/v1/blobs", headers={"Origin": ELSEWHERE})
        assert response.status_code == 200
        assert cors_headers(response) == []
        assert "origin" in names(response.headers["vary"])
        # Origins match exactly: not by prefix, scheme or port.
        for near in ("http://app.example", "https://app.example:8080", f"{APP}.evil.example"):
            assert cors_headers(client.get("/v1/blobs", headers={"Origin": near})) == []


def test_any_origin_with_a_star(anywhere: LiveServer) -> None:
    with anywhere.client() as client:
        response = preflight(client, "/v1/blobs/x", ELSEWHERE)
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "*"
        answered = client.get("/v1/blobs", headers={"Origin": ELSEWHERE, **AUTH})
        assert answered.headers["access-control-allow-origin"] == "*"
        assert "etag" in names(answered.headers["access-control-expose-headers"])
        assert "vary" not in answered.headers


def test_unset_means_no_cors_headers_at_all(unset: LiveServer) -> None:
    with unset.client() as client:
        response = preflight(client, "/v1/blobs/x", APP)
        assert cors_headers(response) == []
        assert response.status_code == 401
        answered = client.get("/v1/blobs", headers={"Origin": APP, **AUTH})
        assert answered.status_code == 200
        assert cors_headers(answered) == []


@pytest.mark.parametrize("value", ["app.example", "http://app.example/path", "*,http://app.example", "ftp://x"])
def test_malformed_origins_are_a_settings_error(tmp_path: Path, value: str) -> None:
    from drive.domain.errors import ConfigurationError
    from drive.settings import Settings

    with pytest.raises(ConfigurationError, match="CORS_ALLOW_ORIGINS"):
        Settings.from_env(base_env(tmp_path, CORS_ALLOW_ORIGINS=value))
