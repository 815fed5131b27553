"""State store: latest reading per device in SQLite WAL, batched writes, survives restarts."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from agent.state_store import StateStore
from collectors.reading import Reading, ReadingError

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
