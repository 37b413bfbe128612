"""The served OpenAPI document matches docs/API.md's route table, and documents bodies and auth."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from drive.container import Container
from drive.entrypoints.http.app import create_app
from drive.settings import Settings
from tests.integration.live import base_env

API_MD = Path(__file__).resolve().parents[2] / "docs" / "API.md"
METHODS = {"get", "put", "post", "delete", "head", "patch", "options"}
ERROR_REF = "#/components/schemas/ErrorBody"


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    container = Container()
    container.settings.override(providers.Object(Settings.from_env(base_env(tmp_path_factory.mktemp("openapi")))))
    with TestClient(create_app(container)) as client:
        response = client.get("/docs/openapi.json")  # no token: the document is public
        assert response.status_code == 200
        yield response.json()


def documented_table() -> set[tuple[str, str, int]]:
    """(method, path, status) from the one table in docs/API.md headed ``| method | path | statuses |``."""
    lines = API_MD.read_text(encoding="utf-8").splitlines()
    header = [i for i, line in enumerate(lines) if re.fullmatch(r"\|\s*method\s*\|\s*path\s*\|\s*statuses\s*\|", line)]
    assert len(header) == 1, "docs/API.md must have exactly one method/path/statuses table"
    rows: set[tuple[str, str, int]] = set()
    for line in lines[header[0] + 2 :]:
        if not line.startswith("|"):
            break
        method, path, statuses = (cell.strip() for cell in line.strip("|").split("|"))
        for status in statuses.split(","):
            rows.add((method.upper(), path, int(status)))
    return rows


def served_table(openapi: dict[str, Any]) -> set[tuple[str, str, int]]:
    return {
        (method.upper(), path, int(status))
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if method in METHODS
        for status in operation["responses"]
    }


def operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def test_routes_and_statuses_match_the_docs_both_ways(openapi: dict[str, Any]) -> None:
    documented, served = documented_table(), served_table(openapi)
    assert len(documented) > 30
    assert served - documented == set(), "served but not in docs/API.md"
    assert documented - served == set(), "in docs/API.md but not served"


def test_every_error_status_uses_the_contract_error_body(openapi: dict[str, Any]) -> None:
    for method, path, operation in operations(openapi):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, status)
    body = openapi["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["error"]
    detail = openapi["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message"}


def test_bearer_scheme_guards_every_v1_operation(openapi: dict[str, Any]) -> None:
    assert openapi["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": openapi["components"]["securitySchemes"]["bearer"]["description"],
    }
    for method, path, operation in operations(openapi):
        assert path.startswith("/v1/"), path  # probes and metrics stay out of the document
        assert operation["security"] == [{"bearer": []}], (method, path)
        assert "401" in operation["responses"], (method, path)


def test_request_bodies_and_media_types(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]
    json_body = paths["/v1/blobs"]["post"]["requestBody"]
    assert json_body["required"] is True
    store_request = json_body["content"]["application/json"]["schema"]
    assert store_request["type"] == "object"
    assert store_request["required"] == ["id", "data"]
    assert store_request["properties"]["data"]["contentEncoding"] == "base64"
    assert store_request["properties"]["id"]["format"] == "drive-id"
    content_type = store_request["properties"]["content_type"]
    assert (content_type["type"], content_type["maxLength"], content_type["default"]) == (
        "string",
        255,
        "application/octet-stream",
    )
    assert content_type["pattern"].startswith("^") and content_type["pattern"].endswith("$")

    raw_body = paths["/v1/blobs/{blob_path}"]["put"]["requestBody"]
    assert raw_body["required"] is False  # no body is an empty blob
    assert raw_body["content"] == {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

    # Raw answers are the blob's recorded content type, whatever it is.
    retrieve = paths["/v1/blobs/{blob_path}"]["get"]["responses"]
    assert retrieve["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BlobWithData"}
    assert retrieve["200"]["content"]["*/*"]["schema"]["format"] == "binary"
    assert set(retrieve["206"]["content"]) == {"*/*"}
    assert "content" not in retrieve["304"]
    head = paths["/v1/blobs/{blob_path}"]["head"]["responses"]
    assert set(head["200"]["content"]) == {"*/*"}
    for operation in (retrieve, head):
        for header in ("ETag", "X-Content-Type-Options", "Content-Security-Policy", "Content-Disposition"):
            assert header in operation["200"]["headers"], header
    blob = openapi["components"]["schemas"]["BlobWithData"]
    assert list(blob["properties"]) == ["id", "data", "size", "created_at"]
    stored_blob = openapi["components"]["schemas"]["StoredBlob"]
    assert list(stored_blob["properties"]) == ["id", "size", "created_at", "sha256", "content_type"]

    for status in ("200", "201"):
        stored = paths["/v1/blobs"]["post"]["responses"][status]["content"]["application/json"]["schema"]
        assert stored == {"$ref": "#/components/schemas/StoredBlob"}
    assert "Location" in paths["/v1/blobs"]["post"]["responses"]["201"]["headers"]

    link = paths["/v1/links"]["post"]
    get_link, put_link = link["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert (get_link["properties"]["method"]["enum"], put_link["properties"]["method"]["enum"]) == (["GET"], ["PUT"])
    assert set(get_link["properties"]) == {"id", "method", "expires_in"}
    assert set(put_link["properties"]) == {"id", "method", "expires_in", "max_size", "content_type"}
    expires_in = put_link["properties"]["expires_in"]
    assert (expires_in["minimum"], expires_in["maximum"], expires_in["default"]) == (1, 604800, 3600)
    issued = link["responses"]["201"]["content"]["application/json"]["schema"]
    assert set(openapi["components"]["schemas"][issued["$ref"].rsplit("/", 1)[1]]["properties"]) == {
        "url",
        "method",
        "expires_at",
    }


def test_parameters_are_declared(openapi: dict[str, Any]) -> None:
    listing = {p["name"]: p for p in openapi["paths"]["/v1/blobs"]["get"]["parameters"]}
    assert set(listing) == {"prefix", "limit", "cursor"}
    assert all(p["in"] == "query" and not p["required"] for p in listing.values())
    limit = listing["limit"]["schema"]
    assert (limit["type"], limit["minimum"], limit["maximum"], limit["default"]) == ("integer", 1, 1000, 100)
    for method, path, operation in operations(openapi):
        if path.startswith("/v1/uploads"):
            names = {(p["name"], p["in"], p["required"]) for p in operation["parameters"]}
            assert ("Tus-Resumable", "header", True) in names, (method, path)
            assert path == "/v1/uploads" or ("upload_id", "path", True) in names, (method, path)
        elif path.startswith("/v1/blobs/"):
            blob_id, *query = operation["parameters"]
            if method in ("GET", "HEAD"):
                (download,) = query
                assert (download["name"], download["in"], download["required"]) == ("download", "query", False)
                assert (download["schema"]["format"], download["schema"]["minLength"]) == ("drive-file-name", 1)
            else:
                assert query == [], (method, path)
            assert (blob_id["name"], blob_id["in"], blob_id["required"]) == ("blob_path", "path", True), (method, path)
            schema = blob_id["schema"]
            assert (schema["type"], schema["format"], schema["minLength"], schema["maxLength"]) == (
                "string",
                "drive-id",
                1,
                1024,
            ), (method, path)
            assert schema["pattern"] == "^[^\\u0000-\\u001F\\u007F]+$"
    assert listing["cursor"]["schema"]["format"] == "drive-cursor"
