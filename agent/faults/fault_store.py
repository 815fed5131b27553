"""faults.db in the state directory: fault state, rule memory, maintenance windows, history.

SQLite in WAL mode, `synchronous=FULL`: a fault's new state and the event it produced are
committed together, before the event is handed on, so a power cut can neither lose an event nor
make a restarted agent raise again what it already raised.

The methods are blocking; the engine calls them on its own worker thread. The maintenance CLI
calls them directly from its own process (WAL lets the two write in turn; busy_timeout waits).

The history table is also the journal: an event is written there (`sent = 0`) with the state
change, handed to the outbox, then marked sent. Rows still unsent when the agent starts are
handed on again, in order, with their original event_id (the consumer drops duplicates by it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agent.faults.maintenance import MaintenanceWindow, TargetKind
from agent.sqlite_files import open_sqlite

FILE_NAME = "faults.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS fault (
    device_id TEXT NOT NULL,
    fault_type TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (device_id, fault_type)
);
CREATE TABLE IF NOT EXISTS rule_memory (
    device_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    memory TEXT NOT NULL,
    PRIMARY KEY (device_id, rule)
);
CREATE TABLE IF NOT EXISTS maintenance (
    target_kind TEXT NOT NULL,
    target TEXT NOT NULL,
    until_ts REAL NOT NULL,
    window TEXT NOT NULL,
    PRIMARY KEY (target_kind, target)
);
CREATE INDEX IF NOT EXISTS maintenance_until ON maintenance (until_ts);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    device_id TEXT NOT NULL,
    fault_type TEXT NOT NULL,
    state TEXT NOT NULL,
    emitted INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    note TEXT NOT NULL,
    draft TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_unsent ON history (sent) WHERE sent = 0;
"""

Key = tuple[str, str]  # (device_id, fault_type) or (device_id, rule)


@dataclass(frozen=True)
class HistoryRow:
    at: str
    device_id: str
    fault_type: str
    state: str
    emitted: bool  # False: recorded only (e.g. during maintenance)
    note: str
    draft: str  # FaultDraft JSON


@dataclass(frozen=True)
class StoredHistory:
    id: int
    row: HistoryRow
    sent: bool


@dataclass
class WriteBatch:
    """What one transaction writes. A record or memory of None is deleted."""

    records: dict[Key, str | None] = field(default_factory=dict)
    memory: dict[Key, str | None] = field(default_factory=dict)
    history: list[HistoryRow] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.records or self.memory or self.history or self.sent)


@dataclass(frozen=True)
class Snapshot:
    records: dict[Key, str]
    memory: dict[Key, str]
    unsent: list[StoredHistory]
    recent: list[StoredHistory]  # emitted rows, oldest first


class FaultStore:
    def __init__(self, path: Path, history_limit: int = 1000) -> None:
        self.path = path
        self.history_limit = history_limit
        self._conn = open_sqlite(path, SCHEMA, synchronous="FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")  # the CLI and the agent take turns

    def close(self) -> None:
        self._conn.close()

    def load(self, recent: int) -> Snapshot:
        c = self._conn
        records = {
            (d, t): r for d, t, r in c.execute("SELECT device_id, fault_type, record FROM fault")
        }
        memory = {
            (d, r): m for d, r, m in c.execute("SELECT device_id, rule, memory FROM rule_memory")
        }
        unsent = self._history("WHERE sent = 0 ORDER BY id", ())
        last = self._history("WHERE emitted = 1 ORDER BY id DESC LIMIT ?", (recent,))
        return Snapshot(records, memory, unsent, last[::-1])

    def _history(self, where: str, args: tuple[object, ...]) -> list[StoredHistory]:
        rows = self._conn.execute(
            "SELECT id, at, device_id, fault_type, state, emitted, note, draft, sent"
            f" FROM history {where}",
            args,
        )
        return [
            StoredHistory(i, HistoryRow(a, d, t, s, bool(e), n, j), bool(sent))
            for i, a, d, t, s, e, n, j, sent in rows
        ]

    def write(self, batch: WriteBatch) -> list[int]:
        """One transaction; returns the ids given to the new history rows, in order."""
        ids: list[int] = []
        c = self._conn
        with c:
            c.execute("BEGIN IMMEDIATE")
            for (device, ftype), record in batch.records.items():
                if record is None:
                    c.execute(
                        "DELETE FROM fault WHERE device_id=? AND fault_type=?", (device, ftype)
                    )
                else:
                    c.execute(
                        "INSERT INTO fault VALUES (?, ?, ?) ON CONFLICT(device_id, fault_type)"
                        " DO UPDATE SET record=excluded.record",
                        (device, ftype, record),
                    )
            for (device, rule), memory in batch.memory.items():
                if memory is None:
                    c.execute(
                        "DELETE FROM rule_memory WHERE device_id=? AND rule=?", (device, rule)
                    )
                else:
                    c.execute(
                        "INSERT INTO rule_memory VALUES (?, ?, ?) ON CONFLICT(device_id, rule)"
                        " DO UPDATE SET memory=excluded.memory",
                        (device, rule, memory),
                    )
            c.executemany("UPDATE history SET sent = 1 WHERE id = ?", [(i,) for i in batch.sent])
            for h in batch.history:
                cur = c.execute(
                    "INSERT INTO history (at, device_id, fault_type, state, emitted, sent, note,"
                    " draft) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        h.at,
                        h.device_id,
                        h.fault_type,
                        h.state,
                        int(h.emitted),
                        int(not h.emitted),
                        h.note,
                        h.draft,
                    ),
                )
                assert cur.lastrowid is not None
                ids.append(cur.lastrowid)
            if batch.history:  # bounded: the oldest sent rows go
                c.execute(
                    "DELETE FROM history WHERE sent = 1 AND id <= "
                    "(SELECT max(id) FROM history) - ?",
                    (self.history_limit,),
                )
        return ids

    # -- maintenance windows -----------------------------------------------------------------

    def maintenance(self, now: datetime) -> list[MaintenanceWindow]:
        """Windows still in force at `now` (indexed on their end)."""
        rows = self._conn.execute(
            "SELECT window FROM maintenance WHERE until_ts > ? ORDER BY target_kind, target",
            (now.timestamp(),),
        )
        return [MaintenanceWindow.model_validate_json(w) for (w,) in rows]

    def put_maintenance(self, window: MaintenanceWindow) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT INTO maintenance VALUES (?, ?, ?, ?) ON CONFLICT(target_kind, target)"
                " DO UPDATE SET until_ts=excluded.until_ts, window=excluded.window",
                (
                    window.target_kind,
                    window.target,
                    window.until.timestamp(),
                    window.model_dump_json(),
                ),
            )

    def end_maintenance(self, kind: TargetKind, target: str, now: datetime) -> bool:
        """End a window now; False when there was none in force."""
        found = self._conn.execute(
            "SELECT window FROM maintenance WHERE target_kind=? AND target=? AND until_ts > ?",
            (kind, target, now.timestamp()),
        ).fetchone()
        if found is None:
            return False
        window = MaintenanceWindow.model_validate_json(found[0]).model_copy(update={"until": now})
        self.put_maintenance(window)
        return True
