"""What the command line prints for people cannot drive a terminal; ``--json`` stays exact."""

from __future__ import annotations

import json

import pytest

from drive.entrypoints.cli_output import escaped, json_text, quoted

# Each acts on a terminal or a log viewer instead of being shown: C0, DEL, C1 (NEL, CSI),
# the line and paragraph separators, bidirectional marks, embeddings, overrides, isolates.
UNSAFE = [
    *map(chr, range(0x20)),
    "\x7f",
    *map(chr, range(0x80, 0xA0)),
    "\u061c",
    "\u200e",
    "\u200f",
    *map(chr, range(0x2028, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
    "\udcff",  # a lone surrogate: an undecodable byte of a file name
]


@pytest.mark.parametrize("char", UNSAFE, ids=lambda c: f"U+{ord(c):04X}")
def test_every_unsafe_character_becomes_a_visible_escape(char: str) -> None:
    text = escaped(f"a{char}b")
    assert text == f"a\\u{ord(char):04x}b"
    assert text.isprintable()
    shown = quoted(f"a{char}b")
    assert shown.isprintable()
    assert json.loads(shown) == f"a{char}b"


def test_printable_text_is_left_as_it_is() -> None:
    for text in ("plain/id with spaces", "émoji 👩‍👩‍👧 and 中文", 'back\\slash "quotes"', "\u00a0nbsp\u00ad"):
        assert escaped(text) == text
    assert quoted("k") == '"k"'


def test_json_text_is_exact_json_with_nothing_a_terminal_acts_on() -> None:
    value = {"id": "".join(UNSAFE[:-1]) + "x\u202egnp.exe", "list": ["\u0085", "\u009b31m"], "n": 3}
    text = json_text(value, indent=2)
    assert json.loads(text) == value
    assert all(char.isprintable() or char in "\n " for char in text)
    assert "\u202e" not in text and "\u009b" not in text
