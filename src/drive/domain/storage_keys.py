"""Storage keys: the one definition of the names the service gives to stored bytes.

A key is 32 lowercase hex characters (a random UUID's hex), made fresh for every
upload, so an id is never a path and two ids never share storage. Backends that shard
keep each key under its first two characters (``shard``).
"""

from __future__ import annotations

import re
import uuid

_KEY = re.compile(r"[0-9a-f]{32}")
_SHARD = re.compile(r"[0-9a-f]{2}")


def new_storage_key() -> str:
    return uuid.uuid4().hex


def is_storage_key(name: str) -> bool:
    """True for a name the service could have made; strangers in a backend are not keys."""
    return _KEY.fullmatch(name) is not None


def is_shard(name: str) -> bool:
    """True for a directory name that ``shard`` could have made."""
    return _SHARD.fullmatch(name) is not None


def checked_key(key: str) -> str:
    """Refuse anything that is not a service-made key, so no name can climb out of a root."""
    if not is_storage_key(key):
        raise ValueError("not a storage key")
    return key


def shard(key: str) -> str:
    """The directory (or key prefix) a sharding backend keeps ``key`` under."""
    return checked_key(key)[:2]
