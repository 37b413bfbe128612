"""Every ``drive`` sub-command as a real process, against fs, db (SQLite, PostgreSQL) and s3 (moto)."""

from __future__ import annotations

import os
import pty
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import asyncpg
import pytest

from tests.integration.cli_helpers import Drive, Result, cli_env, s3_settings, seed, sha256, snapshot
from tests.integration.live import LiveServer, free_port
from tests.integration.servers import s3 as s3_servers
from tests.integration.servers.ftp import FtpServer
from tests.integration.servers.s3 import MotoServer, s3_client, scrub_aws_environment

moto_server = s3_servers.moto_server  # the session fixture, made visible to this module

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub_aws_environment(monkeypatch)  # in-process set-up and inspection stay off real AWS


def new_bucket(server: MotoServer) -> str:
    name = f"drive-cli-{uuid.uuid4().hex[:12]}"
    s3_client(server).create_bucket(Bucket=name)
    return name


def bucket_keys(server: MotoServer, bucket: str) -> list[str]:
    listed = s3_client(server).list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def in_parallel(*calls: Callable[[], Result]) -> list[Result]:
    """Independent commands at once: each process mostly waits on its own start-up."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


# -- put, get, ls, stat, rm on each backend ---------------------------------------------


@pytest.mark.parametrize("backend", ["fs", "db", "s3"])
def test_round_trips_and_listing_on_each_backend(backend: str, tmp_path: Path, moto_server: MotoServer) -> None:
    settings = {"STORAGE": backend}
    if backend == "s3":
        settings |= s3_settings(moto_server, new_bucket(moto_server))
    drive = Drive(cli_env(tmp_path, **settings), tmp_path)
    seed(drive.env, {})  # creates the schema once, before processes run side by side
    big = os.urandom(20 * MiB)
    (tmp_path / "big.bin").write_bytes(big)
    piped = os.urandom(3 * MiB + 1)

    stored, streamed = in_parallel(
        lambda: drive("put", "videos/big.bin", "big.bin", "--json").ok(),
        lambda: drive("put", "piped é", "-", stdin=piped).ok(),
    )
    assert stored.stderr == ""  # no progress bar: stderr is not a terminal
    assert stored.json() == {
        "id": "videos/big.bin",
        "size": len(big),
        "sha256": sha256(big),
        "created_at": stored.json()["created_at"],
        "backend": backend,
        "storage_key": stored.json()["storage_key"],
        "content_type": "application/octet-stream",  # .bin: what mimetypes says
        "created": True,
    }
    assert streamed.text.startswith('stored "piped é": 3.0 MiB, sha256 ')

    got, got_stdout, listed, only_videos, stat = in_parallel(
        lambda: drive("get", "videos/big.bin", "-o", "copy.bin").ok(),
        lambda: drive("get", "piped é").ok(),
        lambda: drive("ls", "--json").ok(),
        lambda: drive("ls", "--prefix", "videos/").ok(),
        lambda: drive("stat", "piped é", "--json").ok(),
    )
    assert got.stderr == "" and got.stdout == b""
    assert (tmp_path / "copy.bin").read_bytes() == big
    assert not list(tmp_path.glob(".copy.bin.*"))  # the partial file was renamed into place
    assert got_stdout.stdout == piped
    assert [(r["id"], r["size"], r["sha256"], r["backend"]) for r in listed.json()] == [
        ("piped é", len(piped), sha256(piped), backend),
        ("videos/big.bin", len(big), sha256(big), backend),
    ]
    assert only_videos.text == "videos/big.bin\n"
    assert stat.json() == listed.json()[0]

    assert drive("rm", "piped é").ok().text == 'removed "piped é"\n'
    gone = in_parallel(
        lambda: drive("stat", "piped é"),
        lambda: drive("get", "piped é", "-o", "piped.bin"),
        lambda: drive("rm", "piped é"),
    )
    for result in gone:
        result.fails(1, '"piped é": no blob has that id')
    assert not (tmp_path / "piped.bin").exists()

    after = snapshot(drive.env)
    assert set(after.records) == {"videos/big.bin"}
    assert after.keys[backend] == {after.records["videos/big.bin"].storage_key}  # rm removed the bytes too


def test_human_output_replays_and_conflicts(tmp_path: Path) -> None:
    drive = Drive(cli_env(tmp_path), tmp_path)
    (tmp_path / "one").write_bytes(b"one")
    (tmp_path / "two").write_bytes(b"two")
    assert drive("ls", "--json").ok().json() == []
    drive("put", "k", "one").ok()

    replay, conflict, long, stat, missing_file = in_parallel(
        lambda: drive("put", "k", "one"),
        lambda: drive("put", "k", "two"),
        lambda: drive("ls", "-l"),
        lambda: drive("stat", "k"),
        lambda: drive("put", "other", "no-such-file"),
    )
    assert replay.ok().text == 'already stored "k" with the same bytes\n'
    conflict.fails(1, '"k": the id holds different bytes already')
    size, created_at, backend, content_type, blob_id = long.ok().text.split()
    assert (size, backend, content_type, blob_id) == ("3", "fs", "application/octet-stream", "k")
    lines = stat.ok().text.splitlines()
    assert lines[0] == "id:          k"
    assert f"sha256:      {sha256(b'one')}" in lines
    assert f"created_at:  {created_at}" in lines
    missing_file.fails(1, "no-such-file")


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    drive = Drive(cli_env(tmp_path), tmp_path)
    (tmp_path / "data").write_bytes(os.urandom(4 * MiB))
    terminal, other_end = pty.openpty()
    process = subprocess.Popen(
        drive.command("put", "shown", "data"),
        env=drive.env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=other_end,
    )
    os.close(other_end)
    drawn = b""
    while True:
        try:
            piece = os.read(terminal, 65536)
        except OSError:  # the process closed its end
            break
        if not piece:
            break
        drawn += piece
    os.close(terminal)
    assert process.wait(timeout=60) == 0
    assert b"put shown" in drawn and b"MiB" in drawn


# -- failures: one line, an exit code, never a traceback --------------------------------


def test_failures_are_one_line_with_documented_exit_codes(tmp_path: Path, moto_server: MotoServer) -> None:
    drive = Drive(cli_env(tmp_path), tmp_path)
    seed(drive.env, {})  # creates the schema once, before processes run side by side
    closed = f"http://127.0.0.1:{free_port()}"
    s3_down = s3_settings(moto_server, "no-server-here") | {"S3_ENDPOINT": closed, "S3_TIMEOUT": "2"}
    results = in_parallel(
        lambda: drive("get", "never-stored"),
        lambda: drive("stat", ""),
        lambda: drive("ls", env={"STORAGE": "s3"}),
        lambda: drive("ls", env={"MAX_BLOB_SIZE": "lots"}),
        lambda: drive("ls", env={"DATABASE_URL": "oracle://somewhere/db"}),
        lambda: drive("migrate", "--to", "ftp"),
        lambda: drive("ls", env=s3_down),
        lambda: drive("stat", "x", env={"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"}),
        lambda: drive(
            "ls", env={"STORAGE": "db", "BLOB_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/db"}
        ),
    )
    expected = [
        (1, '"never-stored": no blob has that id'),
        (2, "id must not be empty"),
        (2, "S3_BUCKET"),
        (2, "MAX_BLOB_SIZE"),
        (2, "DATABASE_URL"),
        (2, "FTP_HOST"),
        (3, "S3_ENDPOINT"),
        (3, "DATABASE_URL"),
        (3, "BLOB_DATABASE_URL"),
    ]
    for result, (code, needle) in zip(results, expected, strict=True):
        result.fails(code, needle)
    assert "lots" not in results[3].stderr  # names the variable, never its value


def test_put_records_a_content_type_given_or_guessed_and_stat_and_ls_show_it(tmp_path: Path) -> None:
    drive = Drive(cli_env(tmp_path, DRIVE_BACKENDS="fs,db"), tmp_path)
    seed(drive.env, {})
    (tmp_path / "page.html").write_bytes(b"<p>hi</p>")
    (tmp_path / "data").write_bytes(b"a,b\n")
    (tmp_path / "logo.svg").write_bytes(b"<svg/>")
    guessed, given, piped, overridden = in_parallel(
        lambda: drive("put", "page", "page.html", "--json").ok(),
        lambda: drive("put", "table", "data", "--content-type", "text/csv; header=present").ok(),
        lambda: drive("put", "piped", "-", "--json", stdin=b"from a pipe").ok(),
        lambda: drive("put", "logo", "logo.svg", "--content-type", "application/octet-stream", "--json").ok(),
    )
    assert guessed.json()["content_type"] == "text/html"
    assert given.text.startswith('stored "table": ')
    assert piped.json()["content_type"] == "application/octet-stream"  # standard input has no name to guess from
    assert overridden.json()["content_type"] == "application/octet-stream"  # given beats guessed

    stat, stat_json, long, listed, replay, conflict, invalid, too_long = in_parallel(
        lambda: drive("stat", "table"),
        lambda: drive("stat", "page", "--json"),
        lambda: drive("ls", "-l"),
        lambda: drive("ls", "--json"),
        lambda: drive("put", "page", "page.html"),
        lambda: drive("put", "page", "page.html", "--content-type", "text/plain"),
        lambda: drive("put", "other", "page.html", "--content-type", "html"),
        lambda: drive("put", "other", "page.html", "--content-type", "a/" + "b" * 254),
    )
    assert "type:        text/csv; header=present" in stat.ok().text.splitlines()
    assert stat_json.ok().json()["content_type"] == "text/html"
    rows = [line.split() for line in long.ok().text.splitlines()]
    assert [(row[3], row[-1]) for row in rows] == [
        ("application/octet-stream", "logo"),
        ("text/html", "page"),
        ("application/octet-stream", "piped"),
        ("text/csv;", "table"),  # the type's own space: --json is the form to parse
    ]
    assert {r["id"]: r["content_type"] for r in listed.ok().json()} == {
        "logo": "application/octet-stream",
        "page": "text/html",
        "piped": "application/octet-stream",
        "table": "text/csv; header=present",
    }
    assert replay.ok().text == 'already stored "page" with the same bytes\n'
    conflict.fails(1, '"page": the id holds these bytes with another content type')
    invalid.fails(2, "content type must be a media type")
    too_long.fails(2, "at most 255 bytes")

    # drive migrate carries it over.
    report = drive("migrate", "--to", "db", "--json").ok().json()
    assert report["moved"] == 4 and report["complete"]
    moved = drive("stat", "table", "--json").ok().json()
    assert (moved["backend"], moved["content_type"]) == ("db", "text/csv; header=present")


# -- migrate ----------------------------------------------------------------------------


def test_migration_fs_db_s3_keeps_every_byte_and_empties_the_old_backend(
    tmp_path: Path, moto_server: MotoServer, postgres_url_factory: Callable[[], str]
) -> None:
    bucket = new_bucket(moto_server)
    database = postgres_url_factory()  # metadata and the db backend's tables, on PostgreSQL
    env = cli_env(tmp_path, DATABASE_URL=database, DRIVE_BACKENDS="fs,db,s3", **s3_settings(moto_server, bucket))
    drive = Drive(env, tmp_path)
    blobs = {f"m/{i:02d}": os.urandom(i * 37_000) for i in range(24)}  # 0 B to 830 KB
    blobs |= {"ünï cödé/ok": b"x", "big": os.urandom(9 * MiB)}  # multipart on S3
    seed(env, blobs)

    to_db = drive("migrate", "--to", "db", "--json").ok().json()
    assert to_db == {
        "to": "db",
        "from": ["fs", "s3"],
        "moved": len(blobs),
        "bytes_moved": sum(map(len, blobs.values())),
        "skipped": 0,
        "corrupt": [],
        "missing": [],
        "complete": True,
    }
    assert files_under(tmp_path / "blobs") == []  # objects/ and staging/ both empty
    middle = snapshot(env)
    assert {r.backend for r in middle.records.values()} == {"db"}
    assert middle.hashes == {i: sha256(b) for i, b in blobs.items()}

    to_s3 = drive("migrate", "--from", "db", "--to", "s3", "--concurrency", "8").ok()
    total = sum(map(len, blobs.values()))
    assert to_s3.text == f"moved {len(blobs)} blobs ({total / MiB:.1f} MiB) from db to s3\n"
    end = snapshot(env)
    assert {r.backend for r in end.records.values()} == {"s3"}
    assert end.hashes == {i: sha256(b) for i, b in blobs.items()}
    assert end.keys == {"fs": set(), "db": set(), "s3": {r.storage_key for r in end.records.values()}}
    assert len(bucket_keys(moto_server, bucket)) == len(blobs)
    assert _rows(database, "drive_blob_chunks") == _rows(database, "drive_blob_objects") == 0
    assert _rows(database, "drive_pending") == 0

    again, check, fetched = in_parallel(
        lambda: drive("migrate", "--to", "s3", "--json"),
        lambda: drive("fsck", "--json"),
        lambda: drive("get", "big"),
    )
    assert again.ok().json()["moved"] == 0
    assert check.ok().json()["problems"] == 0
    assert fetched.ok().stdout == blobs["big"]


def _rows(url: str, table: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        finally:
            await conn.close()

    return anyio.run(count)


def test_migrating_to_a_backend_enables_it_without_drive_backends(tmp_path: Path) -> None:
    # fs only (DRIVE_BACKENDS unset); db's settings are present: its bytes go to the DATABASE_URL database.
    env = cli_env(tmp_path)
    drive = Drive(env, tmp_path)
    blobs = {"a": b"alpha", "b/c": os.urandom(70_000)}
    seed(env, blobs)
    report = drive("migrate", "--to", "db", "--json").ok().json()
    assert (report["moved"], report["from"], report["complete"]) == (2, ["fs"], True)
    after = snapshot({**env, "DRIVE_BACKENDS": "fs,db"})
    assert {r.backend for r in after.records.values()} == {"db"}
    assert after.hashes == {i: sha256(b) for i, b in blobs.items()}
    assert after.keys["fs"] == set()


def test_migration_killed_halfway_resumes_without_losing_a_byte(tmp_path: Path) -> None:
    # A short lease, so the killed run's intents expire before fsck looks at them.
    env = cli_env(tmp_path, DRIVE_BACKENDS="fs,db", UPLOAD_LEASE_SECONDS="1", LOG_LEVEL="INFO")
    drive = Drive(env, tmp_path)
    blobs = {f"blob-{i:03d}": os.urandom(300_000 + i) for i in range(60)}
    seed(env, blobs)

    process = drive.popen("migrate", "--to", "db", "--concurrency", "4", "-v")
    assert process.stderr is not None
    moved = 0
    while moved < 8:  # -v logs one line per finished move
        line = process.stderr.readline()
        assert line, f"migration ended early: exit {process.poll()}"
        moved += b" moved '" in line
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    killed_at = time.monotonic()

    halfway = snapshot(env)
    on_db = [r for r in halfway.records.values() if r.backend == "db"]
    assert 8 <= len(on_db) < len(blobs)  # really stopped halfway
    assert halfway.hashes == {i: sha256(b) for i, b in blobs.items()}  # nothing lost at any point

    resumed = drive("migrate", "--to", "db", "--json").ok().json()
    assert resumed["complete"] and 0 < resumed["moved"] <= len(blobs) - len(on_db)

    time.sleep(max(0.0, killed_at + 1.5 - time.monotonic()))  # the killed run's leases end
    drive("fsck", "--repair").ok()
    clean = drive("fsck", "--json").ok().json()
    assert clean["problems"] == 0 and clean["blobs_checked"] == len(blobs)
    end = snapshot(env)
    assert end.hashes == {i: sha256(b) for i, b in blobs.items()}
    assert {r.backend for r in end.records.values()} == {"db"}
    assert end.keys == {"fs": set(), "db": {r.storage_key for r in end.records.values()}}
    assert files_under(tmp_path / "blobs") == []


# -- fsck -------------------------------------------------------------------------------


def test_fsck_reports_planted_problems_then_repairs_them(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    drive = Drive(env, tmp_path)
    blobs = {name: os.urandom(200_000) for name in ("corrupt", "missing", "good", "also good")}
    seed(env, blobs)
    records = snapshot(env).records
    objects = tmp_path / "blobs" / "objects"

    def stored(blob_id: str) -> Path:
        key = records[blob_id].storage_key
        return objects / key[:2] / key

    with stored("corrupt").open("r+b") as handle:  # truncated
        handle.truncate(100_000)
    stored("missing").unlink()
    orphan = uuid.uuid4().hex
    (objects / orphan[:2]).mkdir(exist_ok=True)
    (objects / orphan[:2] / orphan).write_bytes(b"nobody's")
    dead, live = uuid.uuid4().hex, uuid.uuid4().hex  # an upload whose process died; one in flight
    (tmp_path / "blobs" / "staging" / dead).write_bytes(b"half an upl")
    (tmp_path / "blobs" / "staging" / live).write_bytes(b"in flight")
    now_ms = int(time.time() * 1000)
    with sqlite3.connect(tmp_path / "metadata.db") as db:
        db.executemany(
            "INSERT INTO drive_pending (storage_key, backend, blob_id, kind, lease_until) VALUES (?, 'fs', ?, ?, ?)",
            [(dead, "dead-upload", "store", now_ms - 60_000), (live, "live-upload", "store", now_ms + 3_600_000)],
        )

    corrupt_to_file, corrupt_to_stdout, report = in_parallel(
        lambda: drive("get", "corrupt", "-o", "out.bin"),
        lambda: drive("get", "corrupt"),
        lambda: drive("fsck", "--json"),
    )
    corrupt_to_file.fails(1, '"corrupt": stored bytes do not match their checksum')
    assert not (tmp_path / "out.bin").exists() and not list(tmp_path.glob(".out.bin.*"))
    corrupt_to_stdout.fails(1, "checksum")

    report.fails(1, "4 problems found", "--repair")
    found = report.json()
    assert [r["id"] for r in found["corrupt"]] == ["corrupt"]
    assert [r["id"] for r in found["missing"]] == ["missing"]
    assert found["orphans"] == [{"backend": "fs", "storage_key": orphan}]
    assert [(op["id"], op["kind"], op["storage_key"]) for op in found["interrupted"]] == [
        ("dead-upload", "store", dead)
    ]
    assert found["blobs_checked"] == 4 and found["problems"] == 4 and not found["repaired"]

    repaired = drive("fsck", "--repair").ok().text
    assert 'corrupt bytes of "corrupt"' in repaired and 'missing bytes of "missing"' in repaired
    assert repaired.splitlines()[-1] == (
        "repaired: 1 interrupted operation finished, 1 orphan removed, 2 broken blobs forgotten"
    )

    clean, good, forgotten = in_parallel(
        lambda: drive("fsck"),
        lambda: drive("get", "also good"),
        lambda: drive("stat", "corrupt"),
    )
    assert clean.ok().text == "checked 2 blobs (390.6 KiB verified)\nno problems found\n"
    assert good.ok().stdout == blobs["also good"]
    forgotten.fails(1, "no blob has that id")
    left = {p.name for p in files_under(tmp_path / "blobs")}
    assert left == {records["good"].storage_key, records["also good"].storage_key, live}  # in-flight untouched


def test_fsck_reports_strangers_and_never_touches_them(
    tmp_path: Path, moto_server: MotoServer, ftp_server: FtpServer
) -> None:
    bucket = new_bucket(moto_server)
    base_dir = f"/drive-{uuid.uuid4().hex[:12]}"
    ftp = {"FTP_HOST": ftp_server.host, "FTP_PORT": str(ftp_server.port), "FTP_USER": ftp_server.user}
    ftp |= {"FTP_PASSWORD": ftp_server.password, "FTP_TLS": "false", "FTP_BASE_DIR": base_dir}
    env = cli_env(tmp_path, DRIVE_BACKENDS="fs,s3,ftp", **s3_settings(moto_server, bucket), **ftp)
    drive = Drive(env, tmp_path)
    blobs = {"kept": os.urandom(100_000), "also kept": b"small"}
    seed(env, blobs)
    objects = tmp_path / "blobs" / "objects"
    evil = "evil\x1b[2J\u202e.txt"  # a terminal would act on these
    (objects / "ab").mkdir(exist_ok=True)
    (objects / "zz").mkdir()
    planted = [objects / "ab" / ("Z" * 32), objects / "zz" / "notes", objects / "stray.txt", objects / "ab" / evil]
    planted.append(ftp_server.root / base_dir.lstrip("/") / "objects" / "stray.bin")
    for path in planted:
        path.write_bytes(b"not drive's")
    s3_client(moto_server).put_object(Bucket=bucket, Key="ab/notakey.txt", Body=b"not drive's")
    orphan = uuid.uuid4().hex  # one problem --repair does fix, beside the strangers
    (objects / orphan[:2]).mkdir(exist_ok=True)
    (objects / orphan[:2] / orphan).write_bytes(b"nobody's")
    strangers = [
        {"backend": "fs", "name": "objects/ab/" + "Z" * 32},
        {"backend": "fs", "name": f"objects/ab/{evil}"},
        {"backend": "fs", "name": "objects/stray.txt"},
        {"backend": "fs", "name": "objects/zz/"},
        {"backend": "ftp", "name": "objects/stray.bin"},
        {"backend": "s3", "name": "ab/notakey.txt"},
    ]

    found, human = in_parallel(lambda: drive("fsck", "--json"), lambda: drive("fsck"))
    found.fails(1, "7 problems found", "strangers are left alone")
    report = found.json()
    assert sorted(report["strangers"], key=lambda s: (s["backend"], s["name"])) == strangers
    assert report["orphans"] == [{"backend": "fs", "storage_key": orphan}] and report["blobs_checked"] == 2
    human.fails(1, "7 problems found")
    assert '\nstranger on fs: "objects/ab/evil\\u001b[2J\\u202e.txt" (not made by drive; left alone)\n' in human.text
    assert 'stranger on s3: "ab/notakey.txt"' in human.text and 'stranger on ftp: "objects/stray.bin"' in human.text
    assert "\x1b" not in human.text and "\u202e" not in human.text

    repaired = drive("fsck", "--repair", "--json")
    repaired.fails(1, "6 problems found", "strangers are left alone")
    assert repaired.json()["repairs"]["orphans_removed"] == 1 and repaired.json()["unrepaired"] == 6
    assert not (objects / orphan[:2] / orphan).exists()
    assert all(path.read_bytes() == b"not drive's" for path in planted)
    assert bucket_keys(moto_server, bucket) == ["ab/notakey.txt"]

    # The server's own recovery, at start-up: it sweeps a new orphan and leaves the strangers.
    (objects / orphan[:2] / orphan).write_bytes(b"nobody's")
    server = LiveServer({**env, "AUTH_BEARER_TOKEN": "cli-test-token-0123"}).start()
    try:
        deadline = time.monotonic() + 30
        while (objects / orphan[:2] / orphan).exists():
            assert time.monotonic() < deadline, "recovery did not sweep"
            time.sleep(0.1)
        with server.client(headers={"Authorization": "Bearer cli-test-token-0123"}) as client:
            got = client.get("/v1/blobs/kept", headers={"Accept": "application/octet-stream"})
            assert got.status_code == 200 and got.content == blobs["kept"]
    finally:
        server.stop()
    assert all(path.read_bytes() == b"not drive's" for path in planted)
    after = snapshot(env)
    assert after.hashes == {i: sha256(b) for i, b in blobs.items()}
    again = drive("fsck", "--json")
    again.fails(1, "6 problems found")
    assert again.json()["problems"] == len(again.json()["strangers"]) == 6


def test_serve_is_still_there() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "drive", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--workers" in result.stdout
