"""SignedLinks: issue a link for one blob and method, and check a signed request against the clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from drive.domain.errors import InvalidRequest
from drive.domain.ids import validate_id
from drive.domain.links import Keyring, LinkGrant, LinkMethod, LinksDisabled
from drive.domain.media_types import validate_media_type

MIN_EXPIRES_IN = 1
MAX_EXPIRES_IN = 7 * 24 * 3600  # a week, as S3's presigned URLs
DEFAULT_EXPIRES_IN = 3600


@dataclass(frozen=True, slots=True)
class IssuedLink:
    grant: LinkGrant
    params: dict[str, str]  # the link's query parameters, signature included

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.grant.expires, UTC)


class SignedLinks:
    """Links from the keyring, with expiry read from the service's clock (whole seconds)."""

    def __init__(self, keyring: Keyring, clock: Callable[[], datetime]) -> None:
        self._keyring = keyring
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._keyring.enabled

    def now(self) -> int:
        return int(self._clock().timestamp())

    def issue(
        self,
        blob_id: str,
        method: LinkMethod,
        expires_in: int = DEFAULT_EXPIRES_IN,
        *,
        max_size: int | None = None,
        content_type: str | None = None,
    ) -> IssuedLink:
        if not self._keyring.enabled:
            raise LinksDisabled("signed links are disabled: set SIGNING_KEYS to enable them")
        validate_id(blob_id)
        if not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN:
            raise InvalidRequest(f"expires_in must be {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN} seconds")
        if method != "PUT" and (max_size is not None or content_type is not None):
            raise InvalidRequest("max_size and content_type apply to PUT links only")
        if max_size is not None and max_size < 0:
            raise InvalidRequest("max_size must be a whole number of bytes, 0 or more")
        if content_type is not None:
            validate_media_type(content_type)  # the rule a stored blob's type follows
        grant = LinkGrant(method, blob_id, self.now() + expires_in, max_size, content_type)
        return IssuedLink(grant, self._keyring.sign(grant))

    def verify(self, params: Mapping[str, Sequence[str]], method: str, blob_id: str) -> LinkGrant:
        """The grant of a signed request, or ``LinkRefused`` saying why not."""
        return self._keyring.verify(params, method, blob_id, self.now())
