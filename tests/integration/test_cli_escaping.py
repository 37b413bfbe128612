"""Ids that would steer a terminal are shown escaped by ``drive``; ``--json`` keeps them exact."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.cli_helpers import Drive, cli_env, seed

# CSI (U+009B) then "2J" clears a terminal; NEL and U+2028 break a line inside an id;
# U+202E shows "exe.txt" as "txt.exe"; U+2066/U+2069 isolate; U+200F is a bidi mark.
HOSTILE = ["csi\u009b2Jclear", "nel\u0085line", "sep\u2028line", "rlo\u202etxt.exe", "iso\u2066x\u2069", "rlm\u200f"]
ESCAPES = {"\u009b": "\\u009b", "\u0085": "\\u0085", "\u2028": "\\u2028", "\u202e": "\\u202e", "\u2066": "\\u2066"}


def terminal_safe(text: str) -> bool:
    return all(char.isprintable() or char == "\n" for char in text)


def test_human_output_escapes_ids_and_json_keeps_them_exact(tmp_path: Path) -> None:
    drive = Drive(cli_env(tmp_path), tmp_path)
    seed(drive.env, {blob_id: blob_id.encode() for blob_id in HOSTILE[1:]})
    (tmp_path / "file").write_bytes(b"bytes")

    put = drive("put", HOSTILE[0], "file").ok().text
    listing = drive("ls").ok().text
    long = drive("ls", "-l").ok().text
    stats = [drive("stat", blob_id).ok().text for blob_id in HOSTILE]
    as_json = drive("ls", "--json").ok()
    stat_json = drive("stat", "--json", "rlo\u202etxt.exe").ok()
    removed = drive("rm", "nel\u0085line").ok().text
    missing = drive("get", "gone\u202e\u009b")
    invalid = drive("stat", "bad\u009b\x1b[2J")

    for text in (put, listing, long, *stats, removed, missing.stderr, invalid.stderr):
        assert terminal_safe(text), repr(text)
    assert put.startswith('stored "csi\\u009b2Jclear": ')
    assert listing.splitlines() == sorted(_escaped(blob_id) for blob_id in HOSTILE)
    assert [line.split()[-1] for line in long.splitlines()] == sorted(_escaped(b) for b in HOSTILE)
    assert stats[3].splitlines()[0] == "id:          rlo\\u202etxt.exe"
    assert removed == 'removed "nel\\u0085line"\n'
    missing.fails(1, '"gone\\u202e\\u009b": no blob has that id')
    invalid.fails(2, "bad\\u009b\\u001b[2J")

    # --json: exact JSON, so the ids decode to themselves, and still nothing raw on screen.
    assert terminal_safe(as_json.text) and terminal_safe(stat_json.text)
    assert sorted(item["id"] for item in as_json.json()) == sorted(HOSTILE)
    assert stat_json.json()["id"] == "rlo\u202etxt.exe"
    assert json.loads(drive("put", "--json", "x\u2029y", "file").ok().text)["id"] == "x\u2029y"


def _escaped(blob_id: str) -> str:
    for char, escape in ESCAPES.items():
        blob_id = blob_id.replace(char, escape)
    return blob_id.replace("\u2069", "\\u2069").replace("\u200f", "\\u200f")
