"""Signed links: what one allows, and the HMAC that proves the service issued it.

A link is a blob path plus query parameters. The parameters carry everything the
signature covers except the id itself, which the path carries: the key id, the method,
the SHA-256 of the id (so that a link presented for another id can be told apart from
one tampered with), the expiry in unix seconds and the ``PUT`` constraints. The host
is never signed, so links survive proxies and domain changes. Nothing is stored: the
signature is the whole state, and removing a key revokes every link it signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from drive.domain.errors import DriveError

LinkMethod = Literal["GET", "PUT"]
LINK_METHODS: tuple[LinkMethod, ...] = ("GET", "PUT")
MIN_SECRET_BYTES = 32
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Bumped if the canonical encoding ever changes, so old and new signatures never mix.
_VERSION = b"drive-link-v1"

# The query parameters of a link. ``signature`` last, by convention only.
KEY, METHOD, TARGET, EXPIRES, MAX_SIZE, CONTENT_TYPE, SIGNATURE = (
    "key",
    "method",
    "id_sha256",
    "expires",
    "max_size",
    "content_type",
    "signature",
)
PARAMETERS = frozenset({KEY, METHOD, TARGET, EXPIRES, MAX_SIZE, CONTENT_TYPE, SIGNATURE})
_REQUIRED = (KEY, METHOD, TARGET, EXPIRES, SIGNATURE)
_DIGITS = re.compile(r"[0-9]{1,19}")
_B64 = re.compile(r"[A-Za-z0-9_-]{43}")


class LinkRefused(DriveError):
    """A signed request the service will not honour; the message says why (never a secret)."""

    code = "unauthorized"


class LinksDisabled(DriveError):
    """No ``SIGNING_KEYS``: no link can be made, and no signed request is accepted."""

    code = "forbidden"


def same_media_type(sent: str | None, signed: str) -> bool:
    """A request's ``Content-Type`` against a signed one: type and subtype are case-insensitive."""
    if sent is None:
        return False
    sent_type, _, sent_rest = sent.strip().partition(";")
    signed_type, _, signed_rest = signed.partition(";")
    return sent_type.strip().lower() == signed_type.strip().lower() and _params(sent_rest) == _params(signed_rest)


def _params(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class LinkGrant:
    """What a link allows: one method on one id until ``expires`` (unix seconds), within its constraints."""

    method: LinkMethod
    blob_id: str
    expires: int
    max_size: int | None = None
    content_type: str | None = None

    def allows(self, method: str) -> bool:
        return method == self.method or (self.method == "GET" and method == "HEAD")


def id_digest(blob_id: str) -> str:
    return _b64(hashlib.sha256(blob_id.encode("utf-8")).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _canonical(
    key_id: str, method: str, digest: str, expires: int, max_size: int | None, content_type: str | None
) -> bytes:
    """Each field length-prefixed, absent ones marked, so no two grants encode alike."""
    fields = [key_id, method, digest, str(expires), _optional(max_size), _optional(content_type)]
    parts = [_VERSION]
    for value in fields:
        encoded = value.encode("utf-8")
        parts.append(b"%d:%s" % (len(encoded), encoded))
    return b"\n".join(parts)


def _optional(value: int | str | None) -> str:
    return "-" if value is None else f"={value}"


class Keyring:
    """The configured keys: the first signs, every one verifies."""

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        self._keys = {key.key_id: key for key in keys}
        self._signer = keys[0] if keys else None

    @property
    def enabled(self) -> bool:
        return self._signer is not None

    def sign(self, grant: LinkGrant) -> dict[str, str]:
        """The query parameters of a link for ``grant``, signed with the first key."""
        if self._signer is None:
            raise ValueError("no signing key")  # callers check ``enabled`` first
        key = self._signer
        digest = id_digest(grant.blob_id)
        params = {KEY: key.key_id, METHOD: grant.method, TARGET: digest, EXPIRES: str(grant.expires)}
        if grant.max_size is not None:
            params[MAX_SIZE] = str(grant.max_size)
        if grant.content_type is not None:
            params[CONTENT_TYPE] = grant.content_type
        message = _canonical(key.key_id, grant.method, digest, grant.expires, grant.max_size, grant.content_type)
        params[SIGNATURE] = _mac(key.secret, message)
        return params

    def verify(self, params: Mapping[str, Sequence[str]], method: str, blob_id: str, now: int) -> LinkGrant:
        """The grant of a signed request for ``method`` on ``blob_id`` at ``now``, or ``LinkRefused``.

        Checked in an order that never tells more than it should: the signature first (so a
        changed expiry or method is "tampered with", not "expired"), then what it allows.
        """
        if not self._keys:
            raise LinkRefused("signed links are disabled on this server (SIGNING_KEYS is not set)")
        values = _single_values(params)
        key = self._keys.get(values[KEY])
        if key is None:
            raise LinkRefused("the link was signed with an unknown or revoked key")
        link_method, digest = values[METHOD], values[TARGET]
        expires = _number(values[EXPIRES])
        max_size = _number(values[MAX_SIZE]) if MAX_SIZE in values else None
        content_type = values.get(CONTENT_TYPE)
        if link_method not in LINK_METHODS or not _B64.fullmatch(digest) or not _B64.fullmatch(values[SIGNATURE]):
            raise _tampered()
        message = _canonical(key.key_id, link_method, digest, expires, max_size, content_type)
        if not hmac.compare_digest(_mac(key.secret, message), values[SIGNATURE]):
            raise _tampered()
        if now >= expires:
            raise LinkRefused("the link has expired")
        grant = LinkGrant("GET" if link_method == "GET" else "PUT", blob_id, expires, max_size, content_type)
        if not grant.allows(method):
            raise LinkRefused(f"the link is for {link_method}, not {method}")
        if not hmac.compare_digest(digest, id_digest(blob_id)):
            raise LinkRefused("the link is for another id")
        return grant


def _mac(secret: bytes, message: bytes) -> str:
    return _b64(hmac.new(secret, message, hashlib.sha256).digest())


def _tampered() -> LinkRefused:
    return LinkRefused("the link has been tampered with (bad signature or malformed parameters)")


def _single_values(params: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Each link parameter at most once, the required ones present; else the link was tampered with."""
    values: dict[str, str] = {}
    for name in PARAMETERS:
        given = params.get(name, ())
        if len(given) > 1:
            raise _tampered()
        if given:
            values[name] = given[0]
    if any(name not in values for name in _REQUIRED):
        raise _tampered()
    return values


def _number(text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise _tampered()
    return int(text)
