"""State store: latest reading per device in SQLite WAL, batched writes, survives restarts."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.sqlite_files import open_sqlite
from agent.state_store import SCHEMA, StateStore
from collectors.reading import Reading, ReadingError
from tests.waiting import until

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def reading(device_id: str, watts: float, reachable: bool = True) -> Reading:
    errors = [] if reachable else [ReadingError(code="timeout", message="no answer")]
    return Reading(
        device_id=device_id,
        at=AT,
        reachable=reachable,
        values={"active_power": watts},
        errors=errors,
    )


async def test_batched_writes_keep_only_the_latest_and_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    await store.record(reading("a", 10.0))
    await store.record(reading("a", 11.0))
    await store.record(reading("b", 0.0, reachable=False))
    assert store.latest("a") == reading("a", 11.0)
    rows_before_flush = sqlite3.connect(path).execute("SELECT count(*) FROM latest_reading")
    assert rows_before_flush.fetchone() == (0,)  # nothing written until flush
    assert await store.flush() == 2
    assert await store.flush() == 0  # nothing changed since
    store.close()

    again = StateStore(path)
    assert again.latest("a") == reading("a", 11.0)
    b = again.latest("b")
    assert b is not None and not b.reachable and b.errors[0].code == "timeout"
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)
    again.close()


async def test_corrupt_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database, the SD card lost power" * 100)
    store = StateStore(path)
    await store.record(reading("a", 1.0))
    assert await store.flush() == 1
    store.close()
    aside = list(tmp_path.glob("state.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")


def moved_aside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".corrupt-" in p.name)


def test_a_locked_database_is_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "faults.db"
    open_sqlite(path, SCHEMA).close()
    holder = sqlite3.connect(path, isolation_level=None)  # e.g. a sqlite3 shell left open
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO latest_reading VALUES ('a', 'now', 1, '{}')")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        open_sqlite(path, SCHEMA, busy_timeout_s=0.2)
    holder.execute("COMMIT")
    holder.close()
    assert moved_aside(tmp_path) == []
    with contextlib.closing(open_sqlite(path, SCHEMA)) as conn:  # the same file, data kept
        assert conn.execute("SELECT device_id FROM latest_reading").fetchall() == [("a",)]


def damage_table(path: Path, table: str) -> None:
    """Overwrite the cells of a table's root page: the header stays valid, quick_check fails."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        query = "SELECT rootpage FROM sqlite_master WHERE name = ?"
        (root,) = db.execute(query, (table,)).fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
    with path.open("r+b") as f:
        f.seek(root * size - 600)
        f.write(b"\xff" * 600)


async def test_damage_found_by_quick_check_moves_the_file_aside_with_its_wal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    for i in range(5):
        await store.record(reading(f"pju-{i}", float(i)))
    await store.flush()
    store.close()
    damage_table(path, "latest_reading")
    # Committed but not yet checkpointed: this transaction lives in state.db-wal only. The
    # writer stays open so that the WAL is not checkpointed away before the file is moved.
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE committed_in_wal (x)")
    writer.execute("INSERT INTO committed_in_wal VALUES (42)")
    assert (tmp_path / "state.db-wal").stat().st_size > 0

    again = StateStore(path)
    assert again.all_latest() == {}  # a new, empty file
    await again.record(reading("a", 1.0))
    assert await again.flush() == 1
    again.close()

    names = moved_aside(tmp_path)
    assert len(names) == 3 and names[1:] == [names[0] + "-shm", names[0] + "-wal"], names
    assert (tmp_path / names[2]).stat().st_size > 0
    writer.close()
    with contextlib.closing(sqlite3.connect(tmp_path / names[0])) as old:
        assert old.execute("SELECT x FROM committed_in_wal").fetchall() == [(42,)]


async def test_a_failed_flush_keeps_the_readings_for_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path, flush_interval_s=0.01, condition_gap_s=0)
    real_write = store._write
    failures: list[int] = []

    def write_failing_once(rows: list[tuple[str, str, int, str]]) -> None:
        if not failures:
            failures.append(len(rows))
            raise sqlite3.OperationalError("disk I/O error")
        real_write(rows)

    monkeypatch.setattr(store, "_write", write_failing_once)
    await store.record(reading("a", 1.0))
    await store.record(reading("b", 2.0))
    assert await store.flush() == 0  # failed: logged, kept
    await store.record(reading("c", 3.0))
    assert await store.flush() == 3
    assert failures == [2]

    failures.clear()  # the periodic task survives a failed write too
    await store.record(reading("a", 4.0, reachable=False))  # a change of condition: due
    task = asyncio.create_task(store.run())
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(failures) == 1 and not store._dirty:
            break
    assert failures == [1] and not store._dirty
    assert not task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT device_id, reading FROM latest_reading ORDER BY device_id")
        got = {d: Reading.model_validate_json(r).values["active_power"] for d, r in rows}
    assert got == {"a": 4.0, "b": 2.0, "c": 3.0}


def stored(path: Path) -> dict[str, tuple[float, bool]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT reading FROM latest_reading").fetchall()
    readings = [Reading.model_validate_json(text) for (text,) in rows]
    return {r.device_id: (float(r.values["active_power"] or 0), r.reachable) for r in readings}


async def test_rows_are_rewritten_on_a_change_of_condition_or_when_stale(tmp_path: Path) -> None:
    """The SD card sees a device's row again only when it changes condition (at most once per
    condition_gap_s), or after refresh_s."""
    path, clock = tmp_path / "state.db", FakeClock()
    store = StateStore(path, refresh_s=3600, condition_gap_s=600, clock=clock)
    await store.record(reading("a", 10.0))
    await store.record(reading("b", 20.0))
    assert await store.flush() == 2  # first seen
    await clock.advance(60)
    await store.record(reading("a", 11.0))
    await store.record(reading("b", 21.0))
    assert await store.flush() == 0  # new values, same condition: memory only
    assert store.latest("a") == reading("a", 11.0)
    await store.record(reading("b", 0.0, reachable=False))
    assert await store.flush() == 0  # b stopped answering, but its row is a minute old
    await clock.advance(540)
    assert await store.flush() == 1  # 10 minutes on: written
    assert stored(path) == {"a": (10.0, True), "b": (0.0, False)}
    await store.record(reading("b", 22.0))  # and answers again
    await clock.advance(60)
    await store.record(reading("b", 0.0, reachable=False))  # flapping: no write yet
    await clock.advance(540)
    assert await store.flush() == 0  # back as it was written: nothing to write
    await store.record(reading("b", 22.0))
    await clock.advance(600)
    assert await store.flush() == 1
    await clock.advance(3600 - 1200)
    await store.record(reading("a", 12.0))
    assert await store.flush() == 1  # a's row is an hour old: refreshed; b's is not yet
    assert stored(path) == {"a": (12.0, True), "b": (22.0, True)}
    assert await store.flush() == 0
    store.close()


async def test_shutdown_writes_every_unsaved_reading(tmp_path: Path) -> None:
    path, clock = tmp_path / "state.db", FakeClock()
    store = StateStore(path, flush_interval_s=10, clock=clock)
    await store.record(reading("a", 1.0))
    task = asyncio.create_task(store.run())
    await clock.advance(10)
    await until(lambda: stored(path) == {"a": (1.0, True)})  # the periodic flush
    await until(lambda: store._lock.locked() is False and not store._unsaved)
    await store.record(reading("a", 2.0))
    await store.record(reading("b", 3.0))
    await clock.advance(10)
    await until(lambda: "b" in stored(path))
    assert stored(path) == {"a": (1.0, True), "b": (3.0, True)}  # b is new; a only changed
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert stored(path) == {"a": (2.0, True), "b": (3.0, True)}
    store.close()

    again = StateStore(path, clock=clock)  # what was loaded counts as written
    await again.record(reading("a", 2.5))
    assert await again.flush() == 0
    assert await again.flush(everything=True) == 1
    again.close()


async def test_a_stop_during_a_write_waits_for_it_before_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled mid-write, the periodic write goes on in its thread: the shutdown write must
    not start a second transaction on the same connection meanwhile."""
    path, clock = tmp_path / "state.db", FakeClock()
    store = StateStore(path, flush_interval_s=10, clock=clock)
    real_write, started, release = store._write, threading.Event(), threading.Event()
    overlapping: list[int] = []
    busy = threading.Lock()

    def slow_write(rows: list[tuple[str, str, int, str]]) -> None:
        if not busy.acquire(blocking=False):
            overlapping.append(len(rows))
            return
        try:
            if not started.is_set():
                started.set()
                release.wait(5)
            real_write(rows)
        finally:
            busy.release()

    monkeypatch.setattr(store, "_write", slow_write)
    await store.record(reading("a", 1.0))
    task = asyncio.create_task(store.run())
    await clock.advance(10)
    await until(started.is_set)  # the periodic write is in its thread
    await store.record(reading("a", 2.0))
    task.cancel()
    await asyncio.sleep(0.05)
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    store.close()
    assert overlapping == []
    assert stored(path) == {"a": (2.0, True)}
