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


SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26  # primary result codes (extended code & 0xFF)
BUSY_TIMEOUT_S = 5.0  # how long opening waits for a lock another connection holds


class QuickCheckError(sqlite3.DatabaseError):
    """`PRAGMA quick_check` found damage: treated exactly like SQLITE_CORRUPT."""

    def __init__(self, found: list[str]) -> None:
        super().__init__(f"quick_check: {'; '.join(found)}"[:500])
        self.sqlite_errorcode = SQLITE_CORRUPT
        self.sqlite_errorname = "SQLITE_CORRUPT"


def is_corruption(exc: sqlite3.Error) -> bool:
    """The file itself is damaged or not a database (not: locked, I/O error, full, read-only)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


def open_sqlite(
    path: Path, schema: str, synchronous: str = "NORMAL", busy_timeout_s: float = BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    """Open (or create) a WAL database; a damaged file is moved aside (with its -wal and -shm).

    Only corruption (SQLITE_CORRUPT, SQLITE_NOTADB, a failed quick_check) moves the file aside;
    any other error (locked, disk I/O, disk full, read-only, cannot open) is raised as it is, for
    the caller to report: the file may be fine, and its committed transactions must stay.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _connect(path, schema, synchronous, busy_timeout_s)
    except sqlite3.DatabaseError as exc:
        if not is_corruption(exc):
            raise
        aside = move_aside(path, f"{path.name}.corrupt-{int(time.time())}")
        log.error(
            "state_db_corrupt_moved_aside", path=str(path), moved_to=str(aside), error=str(exc)
        )
        return _connect(path, schema, synchronous, busy_timeout_s)


def move_aside(path: Path, name: str) -> Path:
    """Rename a (closed) database and its -wal and -shm files to `name` (+ the same suffix)."""
    aside = path.with_name(name)
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(aside.with_name(aside.name + suffix))
    return aside


def _connect(
    path: Path, schema: str, synchronous: str, busy_timeout_s: float
) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        found = [str(row[0]) for row in conn.execute("PRAGMA quick_check(20)")]
        if found != ["ok"]:
            raise QuickCheckError(found)
        conn.executescript(schema)
    except BaseException:
        conn.close()  # before the file is moved aside or the error is reported
        raise
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
        """Write what changed since the last flush; returns the number of devices written.

        A failed write (disk full, I/O error, locked) is logged and its devices stay dirty for
        the next flush: the agent goes on polling and reporting faults.
        """
        async with self._lock:
            dirty, self._dirty = self._dirty, set()
            rows = [
                (r.device_id, r.at.isoformat(), int(r.reachable), r.model_dump_json())
                for r in (self._latest[d] for d in dirty)
            ]
            if not rows:
                return 0
            try:
                await asyncio.to_thread(self._write, rows)
            except sqlite3.Error as exc:
                self._dirty |= dirty  # written by the next flush
                log.error(
                    "state_store_flush_failed",
                    path=str(self.path),
                    devices=len(rows),
                    error=str(exc),
                )
                return 0
            except BaseException:  # cancelled: the write may not have happened (an upsert again)
                self._dirty |= dirty
                raise
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
