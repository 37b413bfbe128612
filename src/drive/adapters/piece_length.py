"""The ``PieceStaging`` state of backends whose staged bytes need no bookkeeping (fs, db).

The state is the durable length as a decimal string, so an append at any other offset, a
seal of any other length, or a state that is not ours is a caller's error (``ValueError``),
never a silent overwrite of acknowledged bytes.
"""

from __future__ import annotations

INITIAL = "0"
_MAX_DIGITS = 19  # a signed 64-bit length


def checked(state: str, at: int) -> None:
    """Refuse ``at`` unless ``state`` records exactly that durable length."""
    if not (0 < len(state) <= _MAX_DIGITS and state.isascii() and state.isdigit()):
        raise ValueError("not a staging state of this backend")
    if int(state) != at:
        raise ValueError(f"the upload's state records {int(state)} bytes, not {at}")


def after(offset: int, written: int) -> str:
    return str(offset + written)
