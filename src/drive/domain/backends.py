"""The set of configured byte backends, and which one new blobs go to."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from drive.domain.errors import StorageUnavailable
from drive.domain.ports import BlobRepository


class Backends:
    """Every configured ``BlobRepository`` by name; ``default`` receives new blobs."""

    def __init__(self, repositories: Mapping[str, BlobRepository], default: str) -> None:
        if default not in repositories:
            raise ValueError(f"default backend {default!r} is not configured")
        self._repositories = dict(repositories)
        self.default_name = default

    @property
    def default(self) -> BlobRepository:
        return self._repositories[self.default_name]

    def get(self, name: str) -> BlobRepository:
        try:
            return self._repositories[name]
        except KeyError:
            # A blob stored on a backend that is no longer configured: unreachable, not gone.
            raise StorageUnavailable(f"backend {name!r} is not configured") from None

    def names(self) -> list[str]:
        return list(self._repositories)

    def __iter__(self) -> Iterator[BlobRepository]:
        return iter(self._repositories.values())
