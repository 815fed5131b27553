"""SQLite files on the SD card: WAL mode, a check on open, damaged files moved aside.

Shared by the state store, the fault and action stores and the uplink's outbox. Only corruption
(SQLITE_CORRUPT, SQLITE_NOTADB, a failed quick_check) moves a file aside; any other error
(locked, disk I/O, disk full, read-only) is raised as it is: the file may be fine.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

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
        return connect_checked(path, schema, synchronous, busy_timeout_s)
    except sqlite3.DatabaseError as exc:
        if not is_corruption(exc):
            raise
        aside = move_aside(path, f"{path.name}.corrupt-{int(time.time())}")
        log.error(
            "state_db_corrupt_moved_aside", path=str(path), moved_to=str(aside), error=str(exc)
        )
        return connect_checked(path, schema, synchronous, busy_timeout_s)


def move_aside(path: Path, name: str) -> Path:
    """Rename a (closed) database and its -wal and -shm files to `name` (+ the same suffix)."""
    aside = path.with_name(name)
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(aside.with_name(aside.name + suffix))
    return aside


def connect_checked(
    path: Path, schema: str, synchronous: str | None, busy_timeout_s: float
) -> sqlite3.Connection:
    """Connect in WAL mode (autocommit), check the file, create the schema; closed on failure."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        if synchronous is not None:
            conn.execute(f"PRAGMA synchronous={synchronous}")
        found = [str(row[0]) for row in conn.execute("PRAGMA quick_check(20)")]
        if found != ["ok"]:
            raise QuickCheckError(found)
        conn.executescript(schema)
    except BaseException:
        conn.close()  # before the file is moved aside or the error is reported
        raise
    return conn
