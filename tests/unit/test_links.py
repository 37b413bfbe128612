"""The signing module: round trips, every signed part, expiry to the second, keys, settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drive.application.links import SignedLinks
from drive.domain.errors import ConfigurationError, InvalidId, InvalidRequest
from drive.domain.links import (
    Keyring,
    LinkGrant,
    LinkRefused,
    LinksDisabled,
    SigningKey,
    id_digest,
    same_media_type,
)
from drive.entrypoints.logs import settings_secrets
from drive.settings import Settings

SECRET_A = b"a" * 32
SECRET_B = b"b" * 40
NOW = 2_000_000_000
ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=50)
media = st.sampled_from(["text/plain", "image/png", 'text/plain; charset="utf-8"', "application/vnd.a+json; v=1"])


def ring(*keys: tuple[str, bytes]) -> Keyring:
    return Keyring([SigningKey(key_id, secret) for key_id, secret in keys])


def as_query(params: dict[str, str]) -> dict[str, list[str]]:
    return {name: [value] for name, value in params.items()}


@given(
    blob_id=ids,
    method=st.sampled_from(["GET", "PUT"]),
    ttl=st.integers(1, 604800),
    max_size=st.none() | st.integers(0, 2**62),
    content_type=st.none() | media,
)
def test_a_signed_grant_verifies_until_it_expires(
    blob_id: str, method: str, ttl: int, max_size: int | None, content_type: str | None
) -> None:
    keys = ring(("a", SECRET_A), ("b", SECRET_B))
    if method == "GET":
        max_size = content_type = None
    grant = LinkGrant(method, blob_id, NOW + ttl, max_size, content_type)  # type: ignore[arg-type]
    params = as_query(keys.sign(grant))
    assert params["key"] == ["a"]
    assert keys.verify(params, method, blob_id, NOW + ttl - 1) == grant
    with pytest.raises(LinkRefused, match="expired"):
        keys.verify(params, method, blob_id, NOW + ttl)


@given(blob_id=ids, other=ids)
def test_another_id_is_refused_as_such(blob_id: str, other: str) -> None:
    keys = ring(("a", SECRET_A))
    params = as_query(keys.sign(LinkGrant("GET", blob_id, NOW + 10)))
    if other != blob_id:
        with pytest.raises(LinkRefused, match="another id"):
            keys.verify(params, "GET", other, NOW)


@given(name=st.sampled_from(["key", "method", "id_sha256", "expires", "max_size", "content_type", "signature"]))
def test_changing_any_parameter_breaks_the_signature(name: str) -> None:
    keys = ring(("a", SECRET_A), ("b", SECRET_B))
    params = keys.sign(LinkGrant("PUT", "x", NOW + 10, 5, "text/plain"))
    changed = {
        "key": "b",
        "method": "GET",
        "id_sha256": id_digest("y"),
        "expires": str(NOW + 11),
        "max_size": "6",
        "content_type": "text/html",
        "signature": keys.sign(LinkGrant("PUT", "x", NOW + 10, 5, "text/html"))["signature"],
    }
    params[name] = changed[name]
    with pytest.raises(LinkRefused, match="tampered"):
        keys.verify(as_query(params), "PUT", "x", NOW)


def test_get_links_allow_head_and_nothing_else() -> None:
    keys = ring(("a", SECRET_A))
    params = as_query(keys.sign(LinkGrant("GET", "x", NOW + 10)))
    assert keys.verify(params, "HEAD", "x", NOW).method == "GET"
    for method in ("PUT", "DELETE", "POST", "PATCH"):
        with pytest.raises(LinkRefused, match=f"for GET, not {method}"):
            keys.verify(params, method, "x", NOW)
    put = as_query(keys.sign(LinkGrant("PUT", "x", NOW + 10)))
    with pytest.raises(LinkRefused, match="for PUT, not HEAD"):
        keys.verify(put, "HEAD", "x", NOW)


def test_keys_rotate_and_revoke() -> None:
    old = ring(("old", SECRET_A))
    both = ring(("new", SECRET_B), ("old", SECRET_A))
    rotated = ring(("new", SECRET_B))
    old_link = as_query(old.sign(LinkGrant("GET", "x", NOW + 10)))
    assert both.verify(old_link, "GET", "x", NOW)
    with pytest.raises(LinkRefused, match="unknown or revoked key"):
        rotated.verify(old_link, "GET", "x", NOW)
    # The same key id with another secret is not the same key.
    with pytest.raises(LinkRefused, match="tampered"):
        ring(("old", SECRET_B)).verify(old_link, "GET", "x", NOW)


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"expires": ["1", "2"]},
        {"expires": ["-5"]},
        {"expires": ["\uff11\uff10"]},
        {"signature": ["not base64!"]},
        {"max_size": ["1e3"]},
    ],
)
def test_malformed_parameters_are_tampering(query: dict[str, list[str]]) -> None:
    keys = ring(("a", SECRET_A))
    params = as_query(keys.sign(LinkGrant("GET", "x", NOW + 10)))
    broken = {} if not query else {**params, **query}
    with pytest.raises(LinkRefused, match="tampered"):
        keys.verify(broken, "GET", "x", NOW)


def test_no_keys_accept_no_link_and_issue_none() -> None:
    params = as_query(ring(("a", SECRET_A)).sign(LinkGrant("GET", "x", NOW + 10)))
    with pytest.raises(LinkRefused, match="SIGNING_KEYS"):
        Keyring([]).verify(params, "GET", "x", NOW)
    with pytest.raises(LinksDisabled, match="SIGNING_KEYS"):
        SignedLinks(Keyring([]), lambda: datetime.now(UTC)).issue("x", "GET")


def test_issue_checks_its_input_and_reads_the_clock() -> None:
    links = SignedLinks(ring(("a", SECRET_A)), lambda: datetime.fromtimestamp(NOW + 0.9, UTC))
    issued = links.issue("x", "PUT", 60, max_size=3, content_type="text/plain")
    assert issued.grant.expires == NOW + 60  # whole seconds
    assert issued.expires_at == datetime.fromtimestamp(NOW + 60, UTC)
    with pytest.raises(InvalidId):
        links.issue("", "GET")
    for bad in ({"expires_in": 0}, {"expires_in": 604801}):
        with pytest.raises(InvalidRequest):
            links.issue("x", "GET", **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="PUT links only"):
        links.issue("x", "GET", max_size=1)


def test_secrets_never_show() -> None:
    key = SigningKey("k", SECRET_A)
    assert "aaaa" not in repr(key)
    settings = Settings.from_env({"AUTH_BEARER_TOKEN": "t" * 20, "SIGNING_KEYS": f"k:{'s' * 32}"})
    assert "s" * 32 not in repr(settings)
    assert "s" * 32 in set(settings_secrets(settings))  # scrubbed from every log line
    assert settings.signing_keys == (SigningKey("k", b"s" * 32),)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("k:short", "shorter than 32 bytes"),
        ("nocolon", "<key-id>:<secret>"),
        (f"bad id:{'s' * 32}", "<key-id>:<secret>"),
        (f"k:{'s' * 32},k:{'t' * 32}", "twice"),
    ],
)
def test_signing_keys_setting_errors_name_the_variable_only(value: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({"AUTH_BEARER_TOKEN": "t" * 20, "SIGNING_KEYS": value})
    assert "SIGNING_KEYS" in raised.value.message and says in raised.value.message
    assert "short" not in raised.value.message.replace("shorter", "")
    assert "s" * 32 not in raised.value.message


def test_a_signed_content_type_matches_in_type_and_subtype_case_insensitively() -> None:
    # Which media types are valid at all is tests/unit/test_content_type.py's (one rule for links and blobs).
    assert same_media_type("Text/Plain ; charset=utf-8", "text/plain; charset=utf-8")
    assert not same_media_type("text/plain", "text/plain; charset=utf-8")
    assert not same_media_type(None, "text/plain")
