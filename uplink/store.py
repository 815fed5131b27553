"""The outbox's SQLite file: fault events and spilled telemetry, committed before publishing.

Synchronous and single-threaded by design: `uplink.outbox.Outbox` calls it from one worker
thread, so the event loop never waits on the SD card. Policy (docs/contract.md, "Durable outbox"):

- WAL journal. Fault commits run with `synchronous=FULL` (fsync of the WAL at each commit: a
  fault survives a power cut once `submit_fault` returned); telemetry spills and deletions after
  PUBACK run with `synchronous=NORMAL` (survive a kill -9; a power cut may roll back the last
  ones: lost telemetry or a deletion undone, i.e. one more QoS 1 duplicate).
- Bound: `max_bytes` of payload. A new item that does not fit drops the oldest telemetry (counted
  in `telemetry_dropped`); faults are never dropped: they are kept beyond the bound up to
  `fault_hard_cap_bytes`, past which a new fault is refused (OutboxFullError, counted).
- Technician actions (OperatorAction) are kept like faults (`synchronous=FULL`, never dropped,
  deleted after PUBACK) but have no seq: their key only orders them. They are few and small, so
  they count in the bytes on disk but have no cap of their own.
- A damaged file (SQLITE_CORRUPT, SQLITE_NOTADB, or a failed `PRAGMA quick_check`) is moved
  aside with its -wal and -shm (`*.corrupt-<time>`), a new one is started, and the reset is
  counted; the fault seq goes on from what can be read of the old file, or else from a floor
  taken from the clock (unix milliseconds) so that it still increases. Any other error (locked,
  disk I/O, disk full, read-only) is raised as it is: the file may well be fine.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import structlog

from agent.sqlite_files import connect_checked, is_corruption, move_aside
from firmware_config.uplink_config import OutboxConfig
from uplink.contract import ActionDraft, FaultDraft, FaultEvent, OperatorAction, encode

log = structlog.get_logger(__name__)

Kind = Literal["fault", "telemetry", "action"]
_TABLES: dict[str, tuple[str, str]] = {  # kind -> (table, key column)
    "fault": ("fault", "seq"),
    "telemetry": ("telemetry", "tkey"),
    "action": ("action", "akey"),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fault (
    seq INTEGER PRIMARY KEY, origin INTEGER NOT NULL, created REAL NOT NULL,
    payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry (
    tkey INTEGER PRIMARY KEY, origin INTEGER NOT NULL, created REAL NOT NULL,
    payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS action (
    akey INTEGER PRIMARY KEY AUTOINCREMENT, origin INTEGER NOT NULL, created REAL NOT NULL,
    payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, key INTEGER NOT NULL, reason TEXT NOT NULL,
    at REAL NOT NULL, payload BLOB NOT NULL);
"""
_META_KEYS = ("next_seq", "central_acked_seq", "telemetry_dropped", "faults_refused", "resets")


ROOM_AGAIN = 0.9  # "room again" is logged once the store is below 90% of max_bytes


class OutboxFullError(Exception):
    """A fault event was refused: faults alone fill the store up to its hard cap."""


@dataclass(frozen=True)
class Row:
    """One stored item. `key` is the seq of a fault, the order key of telemetry or an action."""

    kind: Kind
    key: int
    origin: int  # the link token it was committed under (0: link down); see Outbox.render
    created: float  # unix time of the commit
    payload: bytes


@dataclass(frozen=True)
class StoreCounts:
    faults: int = 0
    fault_bytes: int = 0
    telemetry: int = 0
    telemetry_bytes: int = 0
    oldest_fault: float | None = None
    oldest_telemetry: float | None = None
    dead_letters: int = 0
    next_seq: int = 1
    central_acked_seq: int = 0
    telemetry_dropped: int = 0
    faults_refused: int = 0
    resets: int = 0
    max_tkey: int = 0
    actions: int = 0
    action_bytes: int = 0
    oldest_action: float | None = None

    @property
    def total_bytes(self) -> int:
        return self.fault_bytes + self.telemetry_bytes + self.action_bytes


@dataclass(frozen=True)
class FaultOutcome:
    event: FaultEvent | None
    error: OutboxFullError | None = None


class Store:
    """Call `open()` first; then every method from one thread at a time."""

    def __init__(self, path: Path, config: OutboxConfig, now: Callable[[], datetime]) -> None:
        self.path = path
        self.config = config
        self._now = now
        self._db: sqlite3.Connection | None = None
        self.counts = StoreCounts()  # replaced (never mutated) after every change
        self.moved_aside: list[Path] = []
        self._dropping = False
        self.busy_timeout_s = 5.0  # how long a statement waits for another connection's lock

    @property
    def dropping(self) -> bool:
        """Telemetry is being dropped for room (until the store is below 90% again)."""
        return self._dropping

    # -- opening, corruption -------------------------------------------------------------

    def open(self) -> None:
        """Open the file; only a damaged one is moved aside, any other error is raised."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
            self._load_counts()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                if self._db is not None:
                    self._db.close()
                    self._db = None
                raise
            self.recover(str(exc))

    def recover(self, reason: str) -> None:
        """Move an unreadable file aside and start a new one; the seq still increases."""
        old = self.counts
        salvaged = self._salvage_meta()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        stamp = self._now().strftime("%Y%m%dT%H%M%S")
        moved = move_aside(self.path, f"{self.path.name}.corrupt-{stamp}")
        self.moved_aside.append(moved)
        floor = int(self._now().timestamp() * 1000)
        next_seq = max(old.next_seq, salvaged.get("next_seq", floor))
        meta = {
            "next_seq": next_seq,
            "central_acked_seq": max(old.central_acked_seq, salvaged.get("central_acked_seq", 0)),
            "telemetry_dropped": max(old.telemetry_dropped, salvaged.get("telemetry_dropped", 0)),
            "faults_refused": max(old.faults_refused, salvaged.get("faults_refused", 0)),
            "resets": max(old.resets, salvaged.get("resets", 0)) + 1,
        }
        self._db = self._connect()
        with self._tx("full") as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
        self._load_counts()
        log.error(
            "outbox_store_corrupt",
            path=str(self.path),
            moved_to=str(moved),
            reason=reason[:200],
            next_seq=next_seq,
        )

    def _salvage_meta(self) -> dict[str, int]:
        try:
            with contextlib.closing(sqlite3.connect(self.path)) as db:
                return {str(k): int(v) for k, v in db.execute("SELECT key, value FROM meta")}
        except (sqlite3.Error, ValueError, TypeError):
            return {}

    def _connect(self) -> sqlite3.Connection:
        db = connect_checked(self.path, _SCHEMA, None, self.busy_timeout_s)
        try:
            db.executemany(
                "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                [(k, 1 if k == "next_seq" else 0) for k in _META_KEYS],
            )
        except BaseException:
            db.close()
            raise
        return db

    def _load_counts(self) -> None:
        db = self._conn
        meta = {str(k): int(v) for k, v in db.execute("SELECT key, value FROM meta")}
        f_n, f_b, f_old = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), MIN(created) FROM fault"
        ).fetchone()
        t_n, t_b, t_old, t_max = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), MIN(created),"
            " COALESCE(MAX(tkey), 0) FROM telemetry"
        ).fetchone()
        a_n, a_b, a_old = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), MIN(created) FROM action"
        ).fetchone()
        (dead,) = db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()
        self.counts = StoreCounts(
            faults=f_n,
            fault_bytes=f_b,
            telemetry=t_n,
            telemetry_bytes=t_b,
            oldest_fault=f_old,
            oldest_telemetry=t_old,
            dead_letters=dead,
            next_seq=meta["next_seq"],
            central_acked_seq=meta["central_acked_seq"],
            telemetry_dropped=meta["telemetry_dropped"],
            faults_refused=meta["faults_refused"],
            resets=meta["resets"],
            max_tkey=t_max,
            actions=a_n,
            action_bytes=a_b,
            oldest_action=a_old,
        )

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    @contextlib.contextmanager
    def _tx(self, sync: Literal["full", "normal"]) -> Iterator[sqlite3.Connection]:
        db = self._conn
        db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

    # -- writing -------------------------------------------------------------------------

    def add_faults(
        self, drafts: Sequence[FaultDraft], gateway_id: str, origin: int
    ) -> list[FaultOutcome]:
        """Commit fault events in one transaction, giving each the next seq."""
        out: list[FaultOutcome] = []
        now = self._now().timestamp()
        c = self.counts
        seq, f_n, f_b, refused = c.next_seq, c.faults, c.fault_bytes, c.faults_refused
        t_n, t_b, dropped = c.telemetry, c.telemetry_bytes, 0
        with self._tx(self.config.fault_sync) as db:
            for draft in drafts:
                event = FaultEvent(**dict(draft), gateway_id=gateway_id, seq=seq, replayed=False)
                payload = encode(event)
                if f_b + len(payload) > self.config.fault_hard_cap_bytes:
                    refused += 1
                    out.append(FaultOutcome(None, OutboxFullError(f"{f_b} bytes of faults stored")))
                    continue
                excess = f_b + t_b + len(payload) - self.config.max_bytes
                if excess > 0 and t_n:
                    n, b = self._drop_telemetry(db, excess)
                    t_n, t_b, dropped = t_n - n, t_b - b, dropped + n
                db.execute("INSERT INTO fault VALUES (?, ?, ?, ?)", (seq, origin, now, payload))
                out.append(FaultOutcome(event))
                seq, f_n, f_b = seq + 1, f_n + 1, f_b + len(payload)
            db.executemany(
                "UPDATE meta SET value = ? WHERE key = ?",
                [
                    (seq, "next_seq"),
                    (refused, "faults_refused"),
                    (c.telemetry_dropped + dropped, "telemetry_dropped"),
                ],
            )
        self.counts = replace(
            c,
            next_seq=seq,
            faults=f_n,
            fault_bytes=f_b,
            oldest_fault=c.oldest_fault if c.faults or f_n == 0 else now,
            faults_refused=refused,
            telemetry=t_n,
            telemetry_bytes=t_b,
            oldest_telemetry=self._oldest("telemetry") if dropped else c.oldest_telemetry,
            telemetry_dropped=c.telemetry_dropped + dropped,
        )
        self._note_drops(dropped, "a fault needs room")
        if refused > c.faults_refused:
            log.error("outbox_fault_refused", refused=refused - c.faults_refused, fault_bytes=f_b)
        return out

    def add_actions(
        self, drafts: Sequence[ActionDraft], gateway_id: str, origin: int
    ) -> list[OperatorAction]:
        """Commit technician actions in one transaction (fault durability, no seq)."""
        now = self._now().timestamp()
        out: list[OperatorAction] = []
        size = 0
        with self._tx(self.config.fault_sync) as db:
            for draft in drafts:
                action = OperatorAction(**dict(draft), gateway_id=gateway_id, replayed=False)
                payload = encode(action)
                db.execute(
                    "INSERT INTO action (origin, created, payload) VALUES (?, ?, ?)",
                    (origin, now, payload),
                )
                out.append(action)
                size += len(payload)
        c = self.counts
        self.counts = replace(
            c,
            actions=c.actions + len(out),
            action_bytes=c.action_bytes + size,
            oldest_action=c.oldest_action if c.actions else now,
        )
        return out

    def add_telemetry(self, rows: Sequence[Row]) -> int:
        """Spill telemetry rows (already keyed); returns how many batches were dropped."""
        c = self.counts
        f_b, t_n, t_b, dropped = c.fault_bytes, c.telemetry, c.telemetry_bytes, 0
        max_key = c.max_tkey
        with self._tx(self.config.telemetry_sync) as db:
            for row in rows:
                size = len(row.payload)
                excess = f_b + t_b + size - self.config.max_bytes
                if excess > 0 and t_n:
                    n, b = self._drop_telemetry(db, excess)
                    t_n, t_b, dropped = t_n - n, t_b - b, dropped + n
                if f_b + t_b + size > self.config.max_bytes:
                    dropped += 1  # faults fill the store: the new batch cannot be kept
                    continue
                db.execute(
                    "INSERT INTO telemetry VALUES (?, ?, ?, ?)",
                    (row.key, row.origin, row.created, row.payload),
                )
                t_n, t_b, max_key = t_n + 1, t_b + size, max(max_key, row.key)
            if dropped:
                db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'telemetry_dropped'",
                    (dropped,),
                )
        self.counts = replace(
            c,
            telemetry=t_n,
            telemetry_bytes=t_b,
            oldest_telemetry=self._oldest("telemetry"),
            telemetry_dropped=c.telemetry_dropped + dropped,
            max_tkey=max_key,
        )
        self._note_drops(dropped, "store full")
        return dropped

    def _note_drops(self, dropped: int, reason: str) -> None:
        """Log when dropping starts and when there is room again, not at every drop."""
        c = self.counts
        if dropped and not self._dropping:
            self._dropping = True
            log.warning(
                "outbox_full_dropping_telemetry",
                reason=reason,
                bytes=c.total_bytes,
                max_bytes=self.config.max_bytes,
                dropped_total=c.telemetry_dropped,
            )
        elif self._dropping and c.total_bytes < ROOM_AGAIN * self.config.max_bytes:
            self._dropping = False
            log.info("outbox_room_again", bytes=c.total_bytes, dropped_total=c.telemetry_dropped)

    @staticmethod
    def _drop_telemetry(db: sqlite3.Connection, need: int) -> tuple[int, int]:
        """Delete the oldest telemetry until `need` bytes are free; returns (batches, bytes)."""
        freed, n, last = 0, 0, None
        for key, size in db.execute("SELECT tkey, LENGTH(payload) FROM telemetry ORDER BY tkey"):
            if freed >= need:
                break
            freed, n, last = freed + size, n + 1, key
        if last is not None:
            db.execute("DELETE FROM telemetry WHERE tkey <= ?", (last,))
        return n, freed

    def _oldest(self, kind: Kind) -> float | None:
        table, key = _TABLES[kind]
        row = self._conn.execute(f"SELECT created FROM {table} ORDER BY {key} LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    # -- reading, deleting ---------------------------------------------------------------

    def next_rows(self, kind: Kind, after: int, limit: int) -> list[Row]:
        """The oldest rows of a kind with key > after, in order."""
        table, key = _TABLES[kind]
        cur = self._conn.execute(
            f"SELECT {key}, origin, created, payload FROM {table} WHERE {key} > ?"
            f" ORDER BY {key} LIMIT ?",
            (after, limit),
        )
        return [Row(kind, k, o, c, bytes(p)) for k, o, c, p in cur]

    def delete(self, rows: Sequence[Row]) -> None:
        """Forget rows the broker acknowledged (one transaction)."""
        if rows:
            with self._tx(self.config.telemetry_sync) as db:
                self._delete_in(db, rows)

    def dead_letter(self, rows: Sequence[tuple[Row, str]]) -> None:
        """Keep rows the broker rejected aside, never silently away."""
        if not rows:
            return
        at = self._now().timestamp()
        with self._tx(self.config.fault_sync) as db:
            db.executemany(
                "INSERT INTO dead_letter (kind, key, reason, at, payload) VALUES (?, ?, ?, ?, ?)",
                [(r.kind, r.key, why, at, r.payload) for r, why in rows],
            )
            self._delete_in(db, [r for r, _ in rows])
        self.counts = replace(self.counts, dead_letters=self.counts.dead_letters + len(rows))

    def _delete_in(self, db: sqlite3.Connection, rows: Sequence[Row]) -> None:
        c = self.counts
        left = {  # kind -> (rows, payload bytes) in the store
            "fault": (c.faults, c.fault_bytes),
            "telemetry": (c.telemetry, c.telemetry_bytes),
            "action": (c.actions, c.action_bytes),
        }
        by_kind: dict[str, list[Row]] = {}
        for r in rows:
            by_kind.setdefault(r.kind, []).append(r)
        for kind, some in by_kind.items():
            table, key = _TABLES[kind]
            cur = db.executemany(f"DELETE FROM {table} WHERE {key} = ?", [(r.key,) for r in some])
            n, size = left[kind]
            if cur.rowcount == len(some):  # the usual case: every row was still there
                left[kind] = (n - len(some), size - sum(len(r.payload) for r in some))
            else:  # some were gone already: count again
                found = db.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM {table}"
                ).fetchone()
                left[kind] = (int(found[0]), int(found[1]))
        (f_n, f_b), (t_n, t_b), (a_n, a_b) = left["fault"], left["telemetry"], left["action"]
        self.counts = replace(
            c,
            faults=f_n,
            fault_bytes=f_b,
            telemetry=t_n,
            telemetry_bytes=t_b,
            actions=a_n,
            action_bytes=a_b,
            oldest_fault=self._oldest("fault") if f_n != c.faults else c.oldest_fault,
            oldest_telemetry=(
                self._oldest("telemetry") if t_n != c.telemetry else c.oldest_telemetry
            ),
            oldest_action=self._oldest("action") if a_n != c.actions else c.oldest_action,
        )
        self._note_drops(0, "")

    def dead_letters(self) -> list[tuple[Row, str]]:
        cur = self._conn.execute(
            "SELECT kind, key, reason, at, payload FROM dead_letter ORDER BY id"
        )
        return [(Row(k, key, 0, at, bytes(p)), why) for k, key, why, at, p in cur]

    def set_central_ack(self, up_to: int) -> bool:
        """Record the highest seq central confirmed; False when it is not news."""
        if up_to <= self.counts.central_acked_seq:
            return False
        with self._tx(self.config.telemetry_sync) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'central_acked_seq'", (up_to,))
        self.counts = replace(self.counts, central_acked_seq=up_to)
        return True


def unix_to_datetime(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)
