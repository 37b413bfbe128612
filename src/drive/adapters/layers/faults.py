"""Fault injection for any port, in the spirit of OpenDAL's chaos layer.

``FaultPlan`` holds rules such as "the 2nd ``write`` fails after 1 MiB" or "``commit``
hangs"; ``FaultyBlobRepository`` and ``FaultyMetadataRepository`` wrap a real adapter
and consult the plan on every call, so the wrapped adapter never knows. Composed by
tests through the container; never by production wiring.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

import anyio

from drive.adapters.layers.metrics import staging_of
from drive.adapters.whole_reads import joined
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, CommitOutcome, PendingOp, Upload
from drive.domain.ports import BlobRepository, MetadataRepository, UploadRepository


class InjectedFault(StorageUnavailable):
    """The error a rule raises unless it names another."""


@dataclass
class Rule:
    operation: str
    nth: int | None  # the nth call (1-based) of the operation; None = every call
    after_bytes: int | None = None  # for streams: fail once this many bytes have passed
    hang: bool = False
    error: Callable[[], BaseException] = field(default=lambda: InjectedFault("injected fault"))


class FaultPlan:
    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.calls: dict[str, int] = {}

    def fail(
        self,
        operation: str,
        nth: int | None = 1,
        *,
        after_bytes: int | None = None,
        error: Callable[[], BaseException] | None = None,
    ) -> FaultPlan:
        rule = Rule(operation, nth, after_bytes)
        if error is not None:
            rule.error = error
        self.rules.append(rule)
        return self

    def hang(self, operation: str, nth: int | None = 1, *, after_bytes: int | None = None) -> FaultPlan:
        self.rules.append(Rule(operation, nth, after_bytes, hang=True))
        return self

    def clear(self) -> None:
        self.rules.clear()

    def _match(self, operation: str) -> Rule | None:
        count = self.calls[operation] = self.calls.get(operation, 0) + 1
        for rule in self.rules:
            if rule.operation == operation and (rule.nth is None or rule.nth == count):
                return rule
        return None

    async def before(self, operation: str) -> Rule | None:
        """Count the call; fire a rule that acts at once, return one that acts mid-stream."""
        rule = self._match(operation)
        if rule is None:
            return None
        if rule.after_bytes is not None:
            return rule
        await _fire(rule)
        return None


async def _fire(rule: Rule) -> None:
    if rule.hang:
        await anyio.sleep_forever()
    raise rule.error()


async def _interrupt(chunks: AsyncIterable[bytes], rule: Rule | None) -> AsyncIterator[bytes]:
    passed = 0
    async for chunk in chunks:
        if rule is not None and rule.after_bytes is not None and passed + len(chunk) > rule.after_bytes:
            head = chunk[: rule.after_bytes - passed]
            if head:
                yield head
            await _fire(rule)
        passed += len(chunk)
        yield chunk
    if rule is not None and rule.after_bytes is not None and passed <= rule.after_bytes:
        await _fire(rule)  # a rule for a body shorter than its threshold fires at the end


class FaultyBlobRepository:
    def __init__(self, inner: BlobRepository, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan
        self.name = inner.name

    async def open(self) -> None:
        await self.plan.before("open")
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.plan.before("ping")
        await self.inner.ping()

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        rule = await self.plan.before("write")
        return await self.inner.write(key, _interrupt(chunks, rule))

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        rule = await self.plan.before("read")
        async for chunk in _interrupt(self.inner.read(key, start, end), rule):
            yield chunk

    async def read_whole(self, key: str, limit: int) -> bytes:
        return await joined(self.read(key, 0, limit))  # the rules for ``read`` apply

    async def delete(self, key: str) -> None:
        await self.plan.before("delete")
        await self.inner.delete(key)

    async def list_keys(self) -> AsyncIterator[str]:
        await self.plan.before("list_keys")
        async for key in self.inner.list_keys():
            yield key

    async def list_strangers(self) -> AsyncIterator[str]:
        await self.plan.before("list_strangers")
        async for name in self.inner.list_strangers():
            yield name

    async def begin_pieces(self, key: str) -> str:
        await self.plan.before("begin_pieces")
        return await staging_of(self.inner, self.name).begin_pieces(key)

    async def append_piece(self, key: str, state: str, offset: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        rule = await self.plan.before("append_piece")
        return await staging_of(self.inner, self.name).append_piece(key, state, offset, _interrupt(chunks, rule))

    async def read_pieces(self, key: str, state: str, length: int) -> AsyncIterator[bytes]:
        rule = await self.plan.before("read_pieces")
        async for chunk in _interrupt(staging_of(self.inner, self.name).read_pieces(key, state, length), rule):
            yield chunk

    async def seal_pieces(self, key: str, state: str, length: int) -> None:
        await self.plan.before("seal_pieces")
        await staging_of(self.inner, self.name).seal_pieces(key, state, length)


class FaultyMetadataRepository:
    def __init__(self, inner: MetadataRepository, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.plan.before("ping")
        await self.inner.ping()

    async def get(self, blob_id: str) -> BlobRecord | None:
        await self.plan.before("get")
        return await self.inner.get(blob_id)

    async def begin(self, op: PendingOp) -> None:
        await self.plan.before("begin")
        await self.inner.begin(op)

    async def begin_store(self, op: PendingOp) -> BlobRecord | None:
        await self.plan.before("begin")  # the intent's fault, wherever the check is made
        return await self.inner.begin_store(op)

    async def renew(self, storage_key: str, lease_until: datetime) -> bool:
        await self.plan.before("renew")
        return await self.inner.renew(storage_key, lease_until)

    async def commit(self, record: BlobRecord) -> CommitOutcome:
        await self.plan.before("commit")
        return await self.inner.commit(record)

    async def relocate(self, record: BlobRecord, backend: str, storage_key: str, lease_until: datetime) -> bool:
        await self.plan.before("relocate")
        return await self.inner.relocate(record, backend, storage_key, lease_until)

    async def add_chunk_digests(self, record: BlobRecord) -> bool:
        await self.plan.before("add_chunk_digests")
        return await self.inner.add_chunk_digests(record)

    async def finish(self, storage_key: str, *, durable: bool = False) -> None:
        await self.plan.before("finish")
        await self.inner.finish(storage_key, durable=durable)

    async def finish_all(self, storage_keys: Collection[str], *, durable: bool = False) -> None:
        await self.plan.before("finish")  # the same fault point as one key's end
        await self.inner.finish_all(storage_keys, durable=durable)

    async def remove(self, blob_id: str, lease_until: datetime) -> BlobRecord | None:
        await self.plan.before("remove")
        return await self.inner.remove(blob_id, lease_until)

    async def page(self, prefix: str, after: str | None, limit: int) -> list[BlobRecord]:
        await self.plan.before("page")
        return await self.inner.page(prefix, after, limit)

    async def expired(self, now: datetime, limit: int, backends: Collection[str] | None = None) -> list[PendingOp]:
        await self.plan.before("expired")
        return await self.inner.expired(now, limit, backends)

    async def known_keys(self, backend: str, keys: Collection[str]) -> set[str]:
        await self.plan.before("known_keys")
        return await self.inner.known_keys(backend, keys)

    # -- UploadRepository, forwarded when the inner store keeps uploads -----------------

    def _uploads(self) -> UploadRepository:
        if not isinstance(self.inner, UploadRepository):
            raise StorageUnavailable("the metadata store does not keep uploads")
        return self.inner

    async def create_upload(self, upload: Upload) -> None:
        await self.plan.before("create_upload")
        await self._uploads().create_upload(upload)

    async def get_upload(self, upload_id: str) -> Upload | None:
        await self.plan.before("get_upload")
        return await self._uploads().get_upload(upload_id)

    async def claim_upload(
        self, upload_id: str, owner: str, now: datetime, lock_until: datetime, expires_at: datetime
    ) -> Upload | None:
        await self.plan.before("claim_upload")
        return await self._uploads().claim_upload(upload_id, owner, now, lock_until, expires_at)

    async def renew_upload_lock(self, upload_id: str, owner: str, lock_until: datetime) -> bool:
        await self.plan.before("renew_upload_lock")
        return await self._uploads().renew_upload_lock(upload_id, owner, lock_until)

    async def advance_upload(self, upload_id: str, owner: str, offset: int, state: str) -> bool:
        await self.plan.before("advance_upload")
        return await self._uploads().advance_upload(upload_id, owner, offset, state)

    async def release_upload(self, upload_id: str, owner: str, *, completed: bool = False) -> None:
        await self.plan.before("release_upload")
        await self._uploads().release_upload(upload_id, owner, completed=completed)

    async def remove_upload(self, upload_id: str) -> None:
        await self.plan.before("remove_upload")
        await self._uploads().remove_upload(upload_id)

    async def uploads_page(self, after: str | None, limit: int) -> list[Upload]:
        await self.plan.before("uploads_page")
        return await self._uploads().uploads_page(after, limit)

    async def forget_expired_uploads(self, now: datetime, limit: int) -> int:
        await self.plan.before("forget_expired_uploads")
        return await self._uploads().forget_expired_uploads(now, limit)
