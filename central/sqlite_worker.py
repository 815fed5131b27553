"""One SQLite connection on its own thread, so the event loop never waits on the disk.

Both the report ledger and the SIARAN sandbox's store use it. A call runs a function with the
connection on the worker thread; a write function opens its own transaction
(`BEGIN IMMEDIATE`: the write lock up front, so two processes on one file queue on
`busy_timeout` instead of failing half-way).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(at: datetime) -> str:
    """A UTC time as fixed-width text: sorts as it compares (microseconds always written)."""
    return at.astimezone(UTC).strftime(_TS_FORMAT)


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, _TS_FORMAT).replace(tzinfo=UTC)


def opt_ts(text: str | None) -> datetime | None:
    return None if text is None else parse_ts(text)


class SqliteWorker:
    """Owns one connection; `await call(fn)` runs fn(conn) on the connection's thread."""

    def __init__(self, path: Path, schema: str, synchronous: str = "FULL") -> None:
        self.path = path
        self._schema = schema
        self._synchronous = synchronous
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.name}")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self.call(lambda _c: None)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            _wal(conn)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(f"BEGIN IMMEDIATE;\n{self._schema}\nCOMMIT;")
            self._conn = conn
        return self._conn

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._connection()))

    async def close(self) -> None:
        def shut(_c: sqlite3.Connection) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        with contextlib.suppress(RuntimeError):
            await self.call(shut)
        self._pool.shutdown(wait=True)


def _wal(conn: sqlite3.Connection, tries: int = 100) -> None:
    """Switch to WAL. The switch does not wait on busy_timeout when another process opens the
    file at the same moment ("database is locked"): try again (on the worker thread)."""
    for attempt in range(tries):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if attempt == tries - 1:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction taken with the lock up front; rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
