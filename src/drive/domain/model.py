"""What a stored blob is, and the records the commit protocol keeps about it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """Committed metadata of one blob.

    ``storage_key`` is the name the backend stores the bytes under. It is made up by
    the service for each upload (never derived from the id), so no id can reach
    outside a backend's root and two ids never share storage.
    """

    id: str
    size: int
    sha256: str  # lowercase hex
    created_at: datetime  # UTC, whole seconds
    backend: str
    storage_key: str

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


class PendingKind(enum.StrEnum):
    STORE = "store"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class PendingOp:
    """A durable intent: bytes under ``storage_key`` may exist without committed metadata.

    Written before a store begins writing bytes and when a delete removes metadata.
    While its lease runs, the owning process is at work; once it has expired, recovery
    finishes the operation: bytes that no committed record points to are removed.
    """

    storage_key: str
    backend: str
    blob_id: str
    kind: PendingKind
    lease_until: datetime

    @classmethod
    def deleting(cls, record: BlobRecord, lease_until: datetime) -> PendingOp:
        """The intent to remove ``record``'s bytes, written with the change that leaves them unreferenced."""
        return cls(record.storage_key, record.backend, record.id, PendingKind.DELETE, lease_until)


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """Result of trying to commit: the record now held for the id, and whether it is ours."""

    record: BlobRecord
    created: bool


def utc_now() -> datetime:
    return datetime.now(UTC)


def whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)
