"""The latest reading of each device, kept in memory and in SQLite (WAL) in the state directory.

Writes are batched: record() only updates memory; flush() (called every flush_interval_s by
run()) writes the changed devices in one transaction in a worker thread, so the event loop never
blocks on the SD card and the card sees one small write every few seconds, not one per reading.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import structlog

from collectors.reading import Reading

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS latest_reading (
    device_id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    reachable INTEGER NOT NULL,
    reading TEXT NOT NULL
)
"""


def open_sqlite(path: Path, schema: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open (or create) a WAL database; a file that is not a database is moved aside, not fatal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _connect(path, schema, synchronous)
    except sqlite3.DatabaseError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        path.rename(aside)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        log.error(
            "state_db_corrupt_moved_aside", path=str(path), moved_to=str(aside), error=str(exc)
        )
        return _connect(path, schema, synchronous)


def _connect(path: Path, schema: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.executescript(schema)
    conn.execute("PRAGMA quick_check").fetchone()
    return conn


class StateStore:
    def __init__(self, path: Path, flush_interval_s: float = 10.0) -> None:
        self.path = path
        self.flush_interval_s = flush_interval_s
        self._conn = open_sqlite(path, SCHEMA)
        self._latest: dict[str, Reading] = {}
        self._dirty: set[str] = set()
        self._lock = asyncio.Lock()
        for (text,) in self._conn.execute("SELECT reading FROM latest_reading"):
            reading = Reading.model_validate_json(text)
            self._latest[reading.device_id] = reading

    async def record(self, reading: Reading) -> None:
        self._latest[reading.device_id] = reading
        self._dirty.add(reading.device_id)

    def latest(self, device_id: str) -> Reading | None:
        return self._latest.get(device_id)

    def all_latest(self) -> dict[str, Reading]:
        return dict(self._latest)

    async def flush(self) -> int:
        """Write what changed since the last flush; returns the number of devices written."""
        async with self._lock:
            rows = [
                (r.device_id, r.at.isoformat(), int(r.reachable), r.model_dump_json())
                for r in (self._latest[d] for d in self._dirty)
            ]
            self._dirty.clear()
            if rows:
                await asyncio.to_thread(self._write, rows)
            return len(rows)

    def _write(self, rows: list[tuple[str, str, int, str]]) -> None:
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT INTO latest_reading VALUES (?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE"
                " SET at=excluded.at, reachable=excluded.reachable, reading=excluded.reading",
                rows,
            )

    async def run(self) -> None:
        """Flush periodically until cancelled; flushes once more on the way out."""
        try:
            while True:
                await asyncio.sleep(self.flush_interval_s)
                await self.flush()
        finally:
            await asyncio.shield(self.flush())

    def close(self) -> None:
        self._conn.close()
