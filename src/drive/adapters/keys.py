"""Storage keys as adapters see them: service-made, 32 lowercase hex characters."""

from __future__ import annotations

import re

_KEY = re.compile(r"[0-9a-f]{32}")


def checked_key(key: str) -> str:
    """Refuse anything that is not a service-made key, so no name can climb out of a root."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a storage key: {key!r}")
    return key
