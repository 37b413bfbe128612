"""The two seed routes over real HTTP, on fs with SQLite and with PostgreSQL metadata."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import uuid
from pathlib import Path
from urllib.parse import quote

import anyio
import httpx
import msgspec
import pytest

from tests.integration.live import AUTH, READ_TOKEN, LiveServer

SEED_DATA = "SGVsbG8gU2ltcGxlIFN0b3JhZ2UgV29ybGQh"


def uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def url_of(blob_id: str) -> str:
    encoded = quote(blob_id, safe="")
    if encoded in (".", ".."):  # HTTP clients collapse dot segments; %2E keeps them a name
        encoded = encoded.replace(".", "%2E")
    return "/v1/blobs/" + encoded


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_seed_example_round_trip(fs_server: LiveServer) -> None:
    blob_id = uid("seed-")
    with fs_server.client(headers=AUTH) as client:
        created = client.post("/v1/blobs", json={"id": blob_id, "data": SEED_DATA})
        assert created.status_code == 201
        body = created.json()
        assert body["id"] == blob_id
        assert body["size"] == "27"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["created_at"])
        assert "data" not in body
        assert created.headers["location"] == url_of(blob_id)
        assert created.headers["etag"] == f'"{hashlib.sha256(base64.b64decode(SEED_DATA)).hexdigest()}"'

        fetched = client.get(url_of(blob_id))
        assert fetched.status_code == 200
        assert list(fetched.json()) == ["id", "data", "size", "created_at"]
        assert fetched.json() == {"id": blob_id, "data": SEED_DATA, "size": "27", "created_at": body["created_at"]}


def test_duplicate_same_bytes_is_a_safe_retry_and_different_bytes_conflict(fs_server: LiveServer) -> None:
    blob_id = uid()
    with fs_server.client(headers=AUTH) as client:
        first = client.post("/v1/blobs", json={"id": blob_id, "data": SEED_DATA})
        again = client.post("/v1/blobs", json={"id": blob_id, "data": SEED_DATA, "extra": [1, 2]})
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json()
        assert_error(client.post("/v1/blobs", json={"id": blob_id, "data": "QUJD"}), 409, "conflict")
        assert client.get(url_of(blob_id)).json()["data"] == SEED_DATA


def test_empty_blob(fs_server: LiveServer) -> None:
    blob_id = uid()
    with fs_server.client(headers=AUTH) as client:
        assert client.post("/v1/blobs", json={"id": blob_id, "data": ""}).json()["size"] == "0"
        assert client.get(url_of(blob_id)).json()["data"] == ""


def test_8_mib_blob_round_trips_through_json(fs_server: LiveServer) -> None:
    blob_id = uid("big-")
    payload = os.urandom(8 * 1024 * 1024)
    encoded = base64.b64encode(payload).decode()
    with fs_server.client(headers=AUTH) as client:
        assert client.post("/v1/blobs", json={"id": blob_id, "data": encoded}).status_code == 201
        fetched = client.get(url_of(blob_id)).json()
        assert fetched["size"] == str(len(payload))
        assert base64.b64decode(fetched["data"]) == payload


ODD_IDS = [
    "../../x",
    "/abs",
    "..",
    ".",
    "a/b/c",
    "a%2Fb",
    "with space",
    "what?",
    "hash#tag",
    "مرحبا بالعالم",
    "x" * 1024,
    "ü" * 512,
    "../../../../../../../../etc/passwd",
    "~/.ssh/id_rsa",
    "C:\\Windows\\system32",
]


@pytest.mark.parametrize("blob_id", ODD_IDS, ids=range(len(ODD_IDS)))
def test_odd_ids_round_trip_exactly_and_stay_inside_the_root(fs_server: LiveServer, blob_id: str) -> None:
    root: Path = fs_server.root  # type: ignore[attr-defined]
    outside_before = sorted(p for p in root.parent.rglob("*") if root not in p.parents and p != root)
    data = base64.b64encode(blob_id.encode() + os.urandom(8)).decode()
    with fs_server.client(headers=AUTH) as client:
        created = client.post("/v1/blobs", json={"id": blob_id, "data": data})
        assert created.status_code in (201, 200, 409), created.text
        if created.status_code == 409:  # the parametrised ids are shared by both metadata stores' runs
            pytest.fail("ids are unique per module run")
        fetched = client.get(url_of(blob_id))
        assert fetched.status_code == 200
        assert fetched.json()["id"] == blob_id
        assert fetched.json()["data"] == data
    outside_after = sorted(p for p in root.parent.rglob("*") if root not in p.parents and p != root)
    assert outside_after == outside_before
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root.resolve())


def test_slash_may_be_sent_raw_or_encoded(fs_server: LiveServer) -> None:
    blob_id = uid("dir/") + "/file"
    with fs_server.client(headers=AUTH) as client:
        assert client.post("/v1/blobs", json={"id": blob_id, "data": SEED_DATA}).status_code == 201
        raw = client.get("/v1/blobs/" + quote(blob_id, safe="/"))
        encoded = client.get("/v1/blobs/" + quote(blob_id, safe=""))
        assert raw.status_code == encoded.status_code == 200
        assert raw.json() == encoded.json()


def test_authentication(fs_server: LiveServer) -> None:
    with fs_server.client() as client:
        for headers in [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": AUTH["Authorization"].replace("Bearer", "Token")},
            {"Authorization": AUTH["Authorization"] + "x"},
        ]:
            for response in (
                client.get("/v1/blobs/x", headers=headers),
                client.post("/v1/blobs", json={"id": "x", "data": ""}, headers=headers),
            ):
                assert_error(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer"
        lower = client.get("/v1/blobs/none", headers={"Authorization": "bearer " + AUTH["Authorization"][7:]})
        assert_error(lower, 404, "not_found")


def test_read_only_token_may_read_but_not_write(fs_server: LiveServer) -> None:
    blob_id = uid()
    with fs_server.client(headers=AUTH) as client:
        client.post("/v1/blobs", json={"id": blob_id, "data": SEED_DATA})
    with fs_server.client(headers={"Authorization": f"Bearer {READ_TOKEN}"}) as client:
        assert client.get(url_of(blob_id)).status_code == 200
        assert_error(client.post("/v1/blobs", json={"id": uid(), "data": SEED_DATA}), 403, "forbidden")


@pytest.mark.parametrize(
    "data",
    ["SGVsbG8", "SGVs bG8=", "SGVsbG8=\n", "SGVs\r\nbG8=", "SGVs-G8=", "SGVs_G8=", "SGVsbG8!", "SGl=", "ü==="],
)
def test_invalid_base64(fs_server: LiveServer, data: str) -> None:
    blob_id = uid()
    with fs_server.client(headers=AUTH) as client:
        assert_error(client.post("/v1/blobs", json={"id": blob_id, "data": data}), 400, "invalid_base64")
        assert_error(client.get(url_of(blob_id)), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[]",
        b'{"id": "x"}',
        b'{"data": "SGVsbG8="}',
        b'{"id": 5, "data": "SGVsbG8="}',
        b'{"id": "x", "data": 5}',
        b'{"id": null, "data": "SGVsbG8="}',
        b'{"id": "x", "data": ["SGVsbG8="]}',
        b'{"id": "x", "data": "SGVsbG8="',
    ],
)
def test_malformed_bodies(fs_server: LiveServer, body: bytes) -> None:
    with fs_server.client(headers={**AUTH, "Content-Type": "application/json"}) as client:
        assert_error(client.post("/v1/blobs", content=body), 400, "invalid_request")


@pytest.mark.parametrize("blob_id", ["", "a\x00b", "tab\t", "line\nbreak", "del\x7f", "x" * 1025, "é" * 513])
def test_invalid_ids(fs_server: LiveServer, blob_id: str) -> None:
    with fs_server.client(headers=AUTH) as client:
        assert_error(client.post("/v1/blobs", json={"id": blob_id, "data": SEED_DATA}), 400, "invalid_id")
        if blob_id:
            assert_error(client.get(url_of(blob_id)), 400, "invalid_id")


def test_invalid_utf8_in_url_is_an_invalid_id(fs_server: LiveServer) -> None:
    with fs_server.client(headers=AUTH) as client:
        assert_error(client.get("/v1/blobs/%FF%FE"), 400, "invalid_id")


def test_unknown_id_and_unknown_routes(fs_server: LiveServer) -> None:
    with fs_server.client(headers=AUTH) as client:
        assert_error(client.get(url_of(uid("missing-"))), 404, "not_found")
        assert_error(client.get("/nowhere"), 404, "not_found")
        response = client.patch("/v1/blobs")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_json_route_limit_is_413(fs_server: LiveServer) -> None:
    with fs_server.client(headers={**AUTH, "Content-Type": "application/json"}) as client:
        huge = b'{"id": "too-big", "data": "' + b"A" * (48 * 1024 * 1024) + b'"}'
        assert_error(client.post("/v1/blobs", content=huge), 413, "payload_too_large")


def test_errors_never_leak_paths_or_tracebacks(fs_server: LiveServer) -> None:
    with fs_server.client(headers=AUTH) as client:
        for response in (
            client.post("/v1/blobs", content=b"{", headers={"Content-Type": "application/json"}),
            client.get("/v1/blobs/%FF"),
        ):
            text = response.text
            assert "Traceback" not in text and "/tmp" not in text and str(fs_server.root) not in text  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_48_concurrent_posts_of_one_id_have_exactly_one_winner(fs_server: LiveServer) -> None:
    blob_id = uid("race-")
    statuses: list[int] = []

    async def post(client: httpx.AsyncClient, n: int) -> None:
        data = base64.b64encode(f"writer {n} ".encode() * 100).decode()
        response = await client.post("/v1/blobs", json={"id": blob_id, "data": data})
        statuses.append(response.status_code)

    limits = httpx.Limits(max_connections=48)
    async with httpx.AsyncClient(base_url=fs_server.url, headers=AUTH, timeout=60, limits=limits) as client:
        async with anyio.create_task_group() as tasks:
            for n in range(48):
                tasks.start_soon(post, client, n)
        assert sorted(statuses) == [201] + [409] * 47
        fetched = (await client.get(url_of(blob_id))).json()
        assert base64.b64decode(fetched["data"]).startswith(b"writer ")
    root: Path = fs_server.root  # type: ignore[attr-defined]
    assert not list((root / "blobs" / "staging").iterdir())


@pytest.mark.parametrize(
    "query",
    [
        "limit=%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
        "limit=%D9%A1",  # Arabic-Indic one: int() would read it as 1
        "limit=" + "9" * 5000,  # more digits than int() converts
        "limit=0",
        "limit=1001",
        "limit=5.0",
        "limit=+5",
        "limit=-1",
        "limit=1e2",
        "limit=1_0",
        "cursor=%C3%A9",
        "cursor=%%%",
        "cursor=%FF",
        "cursor=" + "A" * 5000,
        "cursor=A",  # not Base64 of anything
    ],
)
def test_malformed_list_parameters_get_the_contract_400(fs_server: LiveServer, query: str) -> None:
    with fs_server.client(headers=AUTH) as client:
        response = client.get("/v1/blobs?" + query)
        assert_error(response, 400, "invalid_request")
        assert query[:40] not in response.text  # the message names the parameter, it does not echo the URL


def test_list_pages_with_declared_parameters(fs_server: LiveServer) -> None:
    prefix = uid("list-") + "/"
    ids = sorted(prefix + name for name in ("a", "b", "c", "é", "z z"))
    with fs_server.client(headers=AUTH) as client:
        for blob_id in ids:
            assert client.post("/v1/blobs", json={"id": blob_id, "data": SEED_DATA}).status_code == 201
        seen: list[str] = []
        cursor = ""  # an empty cursor is the first page, as an absent one
        while True:
            page = client.get("/v1/blobs", params={"prefix": prefix, "limit": "2", "cursor": cursor})
            assert page.status_code == 200, page.text
            body = page.json()
            assert len(body["items"]) <= 2
            assert all(set(item) == {"id", "size", "created_at", "sha256", "content_type"} for item in body["items"])
            seen += [item["id"] for item in body["items"]]
            if body["next_cursor"] is None:
                break
            cursor = body["next_cursor"]
        assert seen == sorted(ids, key=lambda i: i.encode())
        everything = client.get("/v1/blobs", params={"prefix": prefix, "limit": ""}).json()  # empty: the default
        assert [item["id"] for item in everything["items"]] == seen


def test_absurdly_long_range_numbers_are_served_not_500(fs_server: LiveServer) -> None:
    blob_id = uid("range-")
    data = os.urandom(1000)
    huge = "9" * 5000
    with fs_server.client(headers={**AUTH, "Accept": "application/octet-stream"}) as client:
        assert client.put(url_of(blob_id), content=data).status_code == 201
        start_past_end = client.get(url_of(blob_id), headers={"Range": f"bytes={huge}-"})
        assert_error(start_past_end, 416, "range_not_satisfiable")
        assert start_past_end.headers["content-range"] == "bytes */1000"
        to_far_end = client.get(url_of(blob_id), headers={"Range": f"bytes=10-{huge}"})
        assert (to_far_end.status_code, to_far_end.content) == (206, data[10:])
        last_many = client.get(url_of(blob_id), headers={"Range": f"bytes=-{huge}"})
        assert (last_many.status_code, last_many.content) == (206, data)


@pytest.mark.parametrize("size", [4 * 1024 * 1024 + 1, 5 * 1024 * 1024 + 2, 9 * 1024 * 1024])
def test_large_json_get_is_streamed_byte_for_byte(fs_server: LiveServer, size: int) -> None:
    blob_id = uid('big "quoted"\\é/') + str(size)
    data = os.urandom(size)
    with fs_server.client(headers=AUTH) as client:
        assert client.put(url_of(blob_id), content=data).status_code == 201
        fetched = client.get(url_of(blob_id))
        assert fetched.status_code == 200
        created_at = fetched.json()["created_at"]
        expected = {"id": blob_id, "data": base64.b64encode(data).decode(), "size": str(size), "created_at": created_at}
        assert fetched.content == msgspec.json.encode(expected)  # same bytes as the whole-body answer
        assert fetched.headers["content-length"] == str(len(fetched.content))
        assert fetched.headers["content-type"] == "application/json"
        assert fetched.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
