"""The report ledger in one SQLite file (state_dir/central.db): faults, reports, applied events
and the SIARAN outbox together, so that each event is applied, and its SIARAN operations
queued, in a single transaction.

`SqliteLedger` implements `central.ledger.Ledger` (WAL, BEGIN IMMEDIATE, a busy timeout:
several consumer processes may share one file).

Tables (docs/central.md, "Ledger"):
- events: every applied event id (primary key: a redelivered event changes nothing), its
  outcome; gateways: per-gateway ack mark (up_to), learned position, last status;
- faults: (gateway, device, fault type) -> status and report; reports: our report id, SIARAN's
  id once filed, agency, SLA, red flag; siaran_ops: the outbox of SIARAN operations, in order
  per report; escalations: events to publish on the broker; leases: one outbox sender at a time.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from central.ledger import (
    ACK_SEQS_MAX,
    AckState,
    Applied,
    Escalation,
    FaultDecider,
    PendingOp,
    StatusDecider,
)
from central.lifecycle import (
    Decision,
    FaultKey,
    FaultRow,
    GatewayRow,
    ReportRow,
    Snapshot,
    offline_key,
    status_key,
)
from central.sqlite_worker import SqliteWorker, opt_ts, parse_ts, ts, write
from uplink.contract import FaultEvent, GatewayStatus, Location

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gateways (
    gateway_id TEXT PRIMARY KEY,
    up_to INTEGER NOT NULL DEFAULT 0,
    ack_version INTEGER NOT NULL DEFAULT 0,
    ack_published INTEGER NOT NULL DEFAULT 0,
    location TEXT, location_note TEXT NOT NULL DEFAULT '', category TEXT,
    device_count INTEGER, status_key TEXT, online INTEGER, status_at TEXT,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    report_uid TEXT PRIMARY KEY,
    siaran_id TEXT UNIQUE,
    gateway_id TEXT NOT NULL, device_id TEXT NOT NULL, fault_type TEXT NOT NULL,
    category TEXT NOT NULL, agency TEXT NOT NULL, unit TEXT NOT NULL,
    kecamatan TEXT NOT NULL, title TEXT NOT NULL,
    state TEXT NOT NULL, withdrawable INTEGER NOT NULL, sla_h REAL NOT NULL,
    opened_at TEXT NOT NULL, delivered_at TEXT, sla_due_at TEXT, responded_at TEXT,
    red_flagged_at TEXT, reopen_count INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reports_due ON reports (state, sla_due_at);
CREATE TABLE IF NOT EXISTS faults (
    gateway_id TEXT NOT NULL, device_id TEXT NOT NULL, fault_type TEXT NOT NULL,
    device_kind TEXT NOT NULL, status TEXT NOT NULL,
    report_uid TEXT REFERENCES reports (report_uid),
    last_seq INTEGER NOT NULL, severity TEXT NOT NULL, first_seen TEXT NOT NULL,
    last_observed_at TEXT NOT NULL, cleared_at TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (gateway_id, device_id, fault_type));
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, gateway_id TEXT NOT NULL, seq INTEGER NOT NULL,
    device_id TEXT NOT NULL, fault_type TEXT NOT NULL, state TEXT NOT NULL,
    replayed INTEGER NOT NULL, observed_at TEXT NOT NULL, applied_at TEXT NOT NULL,
    outcome TEXT NOT NULL, detail TEXT NOT NULL, report_uid TEXT, consumer TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_seq ON events (gateway_id, seq);
CREATE TABLE IF NOT EXISTS status_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, gateway_id TEXT NOT NULL, state TEXT NOT NULL,
    graceful INTEGER NOT NULL, at TEXT NOT NULL, applied_at TEXT NOT NULL,
    outcome TEXT NOT NULL, detail TEXT NOT NULL, report_uid TEXT);
CREATE TABLE IF NOT EXISTS siaran_ops (
    op_id INTEGER PRIMARY KEY AUTOINCREMENT,
    report_uid TEXT NOT NULL REFERENCES reports (report_uid),
    kind TEXT NOT NULL, body TEXT NOT NULL, idem_key TEXT NOT NULL UNIQUE,
    not_before TEXT, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    created_at TEXT NOT NULL, done_at TEXT);
CREATE INDEX IF NOT EXISTS siaran_ops_pending ON siaran_ops (state, report_uid, op_id);
CREATE TABLE IF NOT EXISTS escalations (
    escalation_id TEXT PRIMARY KEY, report_uid TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
    created_at TEXT NOT NULL, published_at TEXT);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');
"""


# -- row mapping ---------------------------------------------------------------------------


def _fault_row(r: sqlite3.Row) -> FaultRow:
    return FaultRow(
        key=FaultKey(r["gateway_id"], r["device_id"], r["fault_type"]),
        device_kind=r["device_kind"],
        status=r["status"],
        report_uid=r["report_uid"],
        last_seq=r["last_seq"],
        severity=r["severity"],
        first_seen=parse_ts(r["first_seen"]),
        last_observed_at=parse_ts(r["last_observed_at"]),
        cleared_at=opt_ts(r["cleared_at"]),
    )


def report_row(r: sqlite3.Row) -> ReportRow:
    return ReportRow(
        report_uid=r["report_uid"],
        siaran_id=r["siaran_id"],
        key=FaultKey(r["gateway_id"], r["device_id"], r["fault_type"]),
        category=r["category"],
        agency=r["agency"],
        unit=r["unit"],
        kecamatan=r["kecamatan"],
        title=r["title"],
        state=r["state"],
        withdrawable=bool(r["withdrawable"]),
        sla_h=r["sla_h"],
        opened_at=parse_ts(r["opened_at"]),
        delivered_at=opt_ts(r["delivered_at"]),
        sla_due_at=opt_ts(r["sla_due_at"]),
        responded_at=opt_ts(r["responded_at"]),
        red_flagged_at=opt_ts(r["red_flagged_at"]),
        reopen_count=r["reopen_count"],
    )


def _gateway_row(gateway_id: str, r: sqlite3.Row | None) -> GatewayRow:
    if r is None:
        return GatewayRow(gateway_id)
    loc = Location.model_validate_json(r["location"]) if r["location"] else None
    return GatewayRow(
        gateway_id, loc, r["location_note"], r["category"], r["device_count"], r["status_key"]
    )


class SqliteLedger:
    """The ledger in one SQLite file; every method runs on the file's worker thread."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = path
        self._db = SqliteWorker(path, SCHEMA, synchronous)

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    # -- applying events ---------------------------------------------------------------------

    async def apply_fault(
        self, ev: FaultEvent, decide: FaultDecider, now: datetime, consumer: str
    ) -> Applied:
        return await self._db.call(lambda c: self._apply_fault(c, ev, decide, now, consumer))

    def _apply_fault(
        self,
        c: sqlite3.Connection,
        ev: FaultEvent,
        decide: FaultDecider,
        now: datetime,
        consumer: str,
    ) -> Applied:
        with write(c):
            eid = str(ev.event_id)
            if c.execute("SELECT 1 FROM events WHERE event_id = ?", (eid,)).fetchone():
                return Applied("duplicate", "", None, self._ack_state(c, ev.gateway_id))
            key = FaultKey(ev.gateway_id, ev.device_id, ev.fault_type)
            snap = self._snapshot(c, key)
            absorbed_by = ev.evidence.get("absorbed_by")
            if ev.state == "cleared" and isinstance(absorbed_by, str):
                into = ev.evidence.get("absorbed_into")
                ftype = into if isinstance(into, str) else "circuit_outage"
                owner = self._fault(c, FaultKey(ev.gateway_id, absorbed_by, ftype))
                if owner is not None and owner.status == "open" and owner.report_uid:
                    absorber = self._report(c, owner.report_uid)
                    snap = Snapshot(snap.fault, snap.report, snap.gateway, absorber)
            d = decide(ev, snap, now)
            uid = self._store(c, d, snap, now)
            c.execute(
                "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    eid, ev.gateway_id, ev.seq, ev.device_id, ev.fault_type, ev.state,
                    int(ev.replayed), ts(ev.observed_at), ts(now), d.outcome, d.detail, uid,
                    consumer,
                ),
            )  # fmt: skip
            self._learn(c, ev, now)
            ack = self._advance_ack(c, ev.gateway_id, ev.seq)
            return Applied(d.outcome, d.detail, uid, ack)

    async def apply_status(
        self, st: GatewayStatus, decide: StatusDecider, now: datetime
    ) -> Applied:
        return await self._db.call(lambda c: self._apply_status(c, st, decide, now))

    def _apply_status(
        self, c: sqlite3.Connection, st: GatewayStatus, decide: StatusDecider, now: datetime
    ) -> Applied:
        with write(c):
            self._ensure_gateway(c, st.gateway_id, now)
            snap = self._snapshot(c, offline_key(st.gateway_id))
            d = decide(st, snap, now)
            if d.outcome == "duplicate_status":
                return Applied(d.outcome, d.detail, None, None)
            uid = self._store(c, d, snap, now)
            if d.outcome != "status_refresh":
                c.execute(
                    "INSERT INTO status_events (gateway_id, state, graceful, at, applied_at,"
                    " outcome, detail, report_uid) VALUES (?,?,?,?,?,?,?,?)",
                    (st.gateway_id, st.state, int(st.graceful), ts(st.at), ts(now), d.outcome,
                     d.detail, uid),
                )  # fmt: skip
            count = st.device_count if st.state == "online" else None
            c.execute(
                "UPDATE gateways SET status_key = ?, online = ?, status_at = ?,"
                " device_count = COALESCE(?, device_count), updated_at = ? WHERE gateway_id = ?",
                (status_key(st), int(st.state == "online"), ts(st.at), count, ts(now),
                 st.gateway_id),
            )  # fmt: skip
            return Applied(d.outcome, d.detail, uid, None)

    def _snapshot(self, c: sqlite3.Connection, key: FaultKey) -> Snapshot:
        fault = self._fault(c, key)
        report = self._report(c, fault.report_uid) if fault and fault.report_uid else None
        gw = c.execute("SELECT * FROM gateways WHERE gateway_id = ?", (key.gateway_id,))
        return Snapshot(fault, report, _gateway_row(key.gateway_id, gw.fetchone()))

    def _fault(self, c: sqlite3.Connection, key: FaultKey) -> FaultRow | None:
        row = c.execute(
            "SELECT * FROM faults WHERE gateway_id = ? AND device_id = ? AND fault_type = ?",
            (key.gateway_id, key.device_id, key.fault_type),
        ).fetchone()
        return _fault_row(row) if row else None

    def _report(self, c: sqlite3.Connection, uid: str) -> ReportRow | None:
        row = c.execute("SELECT * FROM reports WHERE report_uid = ?", (uid,)).fetchone()
        return report_row(row) if row else None

    def _store(
        self, c: sqlite3.Connection, d: Decision, snap: Snapshot, now: datetime
    ) -> str | None:
        """Write a decision's rows and operations; the report it concerns."""
        n = ts(now)
        uid = snap.report.report_uid if snap.report else None
        if d.new_report is not None:
            r = d.new_report
            uid = r.report_uid
            c.execute(
                "INSERT INTO reports (report_uid, gateway_id, device_id, fault_type, category,"
                " agency, unit, kecamatan, title, state, withdrawable, sla_h, opened_at,"
                " updated_at) VALUES (?,?,?,?,?,?,?,?,?,'open',?,?,?,?)",
                (r.report_uid, r.key.gateway_id, r.key.device_id, r.key.fault_type, r.category,
                 r.agency, r.unit, r.kecamatan, r.title, int(r.withdrawable), r.sla_h, n, n),
            )  # fmt: skip
        elif snap.report is not None and (d.report_state or d.withdraw):
            rep = snap.report
            if d.withdraw:
                c.execute(
                    "UPDATE siaran_ops SET state = 'cancelled', done_at = ?"
                    " WHERE report_uid = ? AND state = 'pending'",
                    (n, rep.report_uid),
                )
            due = None
            if d.reopen and rep.delivered_at is not None:
                due = ts(now + timedelta(hours=rep.sla_h))
            c.execute(
                "UPDATE reports SET state = ?, updated_at = ?,"
                " reopen_count = reopen_count + ?,"
                " responded_at = CASE WHEN ? THEN NULL ELSE responded_at END,"
                " sla_due_at = CASE WHEN ? THEN ? ELSE sla_due_at END"
                " WHERE report_uid = ?",
                (d.report_state or rep.state, n, int(d.reopen), int(d.reopen), int(due is not None),
                 due, rep.report_uid),
            )  # fmt: skip
        for op in d.ops:
            c.execute(
                "INSERT INTO siaran_ops (report_uid, kind, body, idem_key, not_before, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (op.report_uid, op.kind, json.dumps(op.body), _idem_key(op.kind, op.report_uid),
                 ts(op.not_before) if op.not_before else None, n),
            )  # fmt: skip
        if d.fault is not None:
            f = d.fault
            c.execute(
                "INSERT OR REPLACE INTO faults VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (f.key.gateway_id, f.key.device_id, f.key.fault_type, f.device_kind, f.status,
                 f.report_uid, f.last_seq, f.severity, ts(f.first_seen), ts(f.last_observed_at),
                 ts(f.cleared_at) if f.cleared_at else None, n),
            )  # fmt: skip
        return uid

    def _ensure_gateway(self, c: sqlite3.Connection, gateway_id: str, now: datetime) -> None:
        c.execute(
            "INSERT OR IGNORE INTO gateways (gateway_id, updated_at) VALUES (?, ?)",
            (gateway_id, ts(now)),
        )

    def _learn(self, c: sqlite3.Connection, ev: FaultEvent, now: datetime) -> None:
        """What a fault event tells of its gateway: its position, its category."""
        self._ensure_gateway(c, ev.gateway_id, now)
        if ev.location is not None:
            loc = ev.location.model_dump_json()
            if ev.device_kind == "gateway":
                c.execute(
                    "UPDATE gateways SET location = ?, location_note = '' WHERE gateway_id = ?",
                    (loc, ev.gateway_id),
                )
            else:
                note = f"perkiraan: lokasi perangkat {ev.device_id} di belakang gateway ini"
                c.execute(
                    "UPDATE gateways SET location = ?, location_note = ?"
                    " WHERE gateway_id = ? AND location IS NULL",
                    (loc, note, ev.gateway_id),
                )
        kind = {"streetlight": "streetlight", "circuit": "streetlight", "hotspot": "wifi"}
        if ev.device_kind in kind:
            c.execute(
                "UPDATE gateways SET category = ? WHERE gateway_id = ? AND category IS NULL",
                (kind[ev.device_kind], ev.gateway_id),
            )

    # -- acknowledgements to the gateways ----------------------------------------------------

    def _advance_ack(self, c: sqlite3.Connection, gateway_id: str, seq: int) -> AckState:
        """up_to: every seq <= up_to applied. The first event seen of a gateway starts it
        (a ledger that starts after the gateway has history counts from there); it never
        goes back."""
        (up_to,) = c.execute(
            "SELECT up_to FROM gateways WHERE gateway_id = ?", (gateway_id,)
        ).fetchone()
        if up_to == 0:
            up_to = seq
        while c.execute(
            "SELECT 1 FROM events WHERE gateway_id = ? AND seq = ?", (gateway_id, up_to + 1)
        ).fetchone():
            up_to += 1
        c.execute(
            "UPDATE gateways SET up_to = ?, ack_version = ack_version + 1 WHERE gateway_id = ?",
            (up_to, gateway_id),
        )
        return self._ack_state(c, gateway_id)

    def _ack_state(self, c: sqlite3.Connection, gateway_id: str) -> AckState:
        up_to, version = c.execute(
            "SELECT up_to, ack_version FROM gateways WHERE gateway_id = ?", (gateway_id,)
        ).fetchone()
        seqs = c.execute(
            "SELECT DISTINCT seq FROM events WHERE gateway_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (gateway_id, up_to, ACK_SEQS_MAX),
        ).fetchall()
        return AckState(gateway_id, up_to, tuple(s for (s,) in seqs), version)

    async def unpublished_acks(self) -> list[AckState]:
        def read(c: sqlite3.Connection) -> list[AckState]:
            rows = c.execute(
                "SELECT gateway_id FROM gateways WHERE ack_version > ack_published"
            ).fetchall()
            return [self._ack_state(c, gw) for (gw,) in rows]

        return await self._db.call(read)

    async def ack_published(self, gateway_id: str, version: int) -> None:
        def mark(c: sqlite3.Connection) -> None:
            with write(c):
                c.execute(
                    "UPDATE gateways SET ack_published = MAX(ack_published, ?)"
                    " WHERE gateway_id = ?",
                    (version, gateway_id),
                )

        await self._db.call(mark)

    # -- the SIARAN outbox -------------------------------------------------------------------

    async def claim_sender(self, holder: str, now: datetime, ttl_s: float) -> bool:
        """Only one sender at a time, across processes: a lease renewed while it works."""

        def claim(c: sqlite3.Connection) -> bool:
            until = ts(now + timedelta(seconds=ttl_s))
            with write(c):
                c.execute(
                    "INSERT OR IGNORE INTO leases VALUES ('siaran_sender', ?, ?)", (holder, until)
                )
                cur = c.execute(
                    "UPDATE leases SET holder = ?, expires_at = ? WHERE name = 'siaran_sender'"
                    " AND (holder = ? OR expires_at < ?)",
                    (holder, until, holder, ts(now)),
                )
                return cur.rowcount == 1

        return await self._db.call(claim)

    async def release_sender(self, holder: str) -> None:
        def release(c: sqlite3.Connection) -> None:
            with write(c):
                c.execute(
                    "DELETE FROM leases WHERE name = 'siaran_sender' AND holder = ?", (holder,)
                )

        await self._db.call(release)

    async def due_ops(self, now: datetime, limit: int) -> list[PendingOp]:
        """The first pending operation of each report, when due: a report's operations go in
        the order they were queued (its creation first)."""

        def read(c: sqlite3.Connection) -> list[PendingOp]:
            rows = c.execute(
                "SELECT o.*, r.siaran_id FROM siaran_ops o JOIN reports r USING (report_uid)"
                " WHERE o.state = 'pending' AND o.op_id = (SELECT MIN(p.op_id) FROM siaran_ops p"
                "   WHERE p.report_uid = o.report_uid AND p.state = 'pending')"
                " AND (o.not_before IS NULL OR o.not_before <= ?) ORDER BY o.op_id LIMIT ?",
                (ts(now), limit),
            ).fetchall()
            return [
                PendingOp(
                    r["op_id"],
                    r["report_uid"],
                    r["kind"],
                    json.loads(r["body"]),
                    r["idem_key"],
                    r["siaran_id"],
                    r["attempts"],
                )
                for r in rows
            ]

        return await self._db.call(read)

    async def op_sent(self, op: PendingOp, now: datetime, siaran_id: str | None) -> None:
        def mark(c: sqlite3.Connection) -> None:
            with write(c):
                c.execute(
                    "UPDATE siaran_ops SET state = 'done', done_at = ?, attempts = attempts + 1"
                    " WHERE op_id = ?",
                    (ts(now), op.op_id),
                )
                if op.kind == "create" and siaran_id is not None:
                    (sla_h,) = c.execute(
                        "SELECT sla_h FROM reports WHERE report_uid = ?", (op.report_uid,)
                    ).fetchone()
                    c.execute(
                        "UPDATE reports SET siaran_id = ?, delivered_at = ?, sla_due_at = ?,"
                        " updated_at = ? WHERE report_uid = ?",
                        (siaran_id, ts(now), ts(now + timedelta(hours=sla_h)), ts(now),
                         op.report_uid),
                    )  # fmt: skip

        await self._db.call(mark)

    async def op_failed(self, op: PendingOp, error: str, dead: bool) -> None:
        """A failed try; `dead`: SIARAN refused it for good (this and the report's later
        operations are kept aside as 'dead', never deleted)."""

        def mark(c: sqlite3.Connection) -> None:
            with write(c):
                c.execute(
                    "UPDATE siaran_ops SET attempts = attempts + 1, last_error = ? WHERE op_id = ?",
                    (error[:1000], op.op_id),
                )
                if dead and op.kind == "create":
                    c.execute(
                        "UPDATE reports SET state = 'refused' WHERE report_uid = ?",
                        (op.report_uid,),
                    )
                if dead:
                    cond = "op_id >= ?" if op.kind == "create" else "op_id = ?"
                    c.execute(
                        f"UPDATE siaran_ops SET state = 'dead' WHERE report_uid = ?"
                        f" AND state = 'pending' AND {cond}",
                        (op.report_uid, op.op_id),
                    )

        await self._db.call(mark)

    # -- escalation ------------------------------------------------------------------------

    async def overdue_reports(self, now: datetime) -> list[ReportRow]:
        def read(c: sqlite3.Connection) -> list[ReportRow]:
            rows = c.execute(
                "SELECT * FROM reports WHERE state = 'open' AND siaran_id IS NOT NULL"
                " AND red_flagged_at IS NULL AND responded_at IS NULL AND sla_due_at <= ?"
                " ORDER BY sla_due_at",
                (ts(now),),
            ).fetchall()
            return [report_row(r) for r in rows]

        return await self._db.call(read)

    async def mark_responded(self, report_uid: str, at: datetime) -> None:
        def mark(c: sqlite3.Connection) -> None:
            with write(c):
                c.execute(
                    "UPDATE reports SET responded_at = ? WHERE report_uid = ?",
                    (ts(at), report_uid),
                )

        await self._db.call(mark)

    async def red_flag(
        self, report_uid: str, now: datetime, reason: str, event: Callable[[str], bytes]
    ) -> bool:
        """Flag once: the flag, its SIARAN operation and the escalation event to publish are
        written together; False when it was flagged already (by this or another consumer)."""

        def flag(c: sqlite3.Connection) -> bool:
            with write(c):
                cur = c.execute(
                    "UPDATE reports SET red_flagged_at = ?, updated_at = ?"
                    " WHERE report_uid = ? AND red_flagged_at IS NULL",
                    (ts(now), ts(now), report_uid),
                )
                if cur.rowcount != 1:
                    return False
                c.execute(
                    "INSERT INTO siaran_ops (report_uid, kind, body, idem_key, created_at)"
                    " VALUES (?, 'red_flag', ?, ?, ?)",
                    (report_uid, json.dumps({"reason": reason}),
                     _idem_key("red_flag", report_uid), ts(now)),
                )  # fmt: skip
                eid = str(uuid.uuid4())
                c.execute(
                    "INSERT INTO escalations VALUES (?, ?, ?, ?, NULL)",
                    (eid, report_uid, event(eid).decode(), ts(now)),
                )
                return True

        return await self._db.call(flag)

    async def unpublished_escalations(self) -> list[Escalation]:
        def read(c: sqlite3.Connection) -> list[Escalation]:
            rows = c.execute(
                "SELECT escalation_id, body FROM escalations WHERE published_at IS NULL"
                " ORDER BY created_at"
            ).fetchall()
            return [Escalation(r[0], r[1].encode()) for r in rows]

        return await self._db.call(read)

    async def escalation_published(self, escalation_id: str, now: datetime) -> None:
        def mark(c: sqlite3.Connection) -> None:
            with write(c):
                c.execute(
                    "UPDATE escalations SET published_at = ? WHERE escalation_id = ?",
                    (ts(now), escalation_id),
                )

        await self._db.call(mark)

    # -- inspection (operators, tests) -------------------------------------------------------

    async def reports(self) -> list[ReportRow]:
        def read(c: sqlite3.Connection) -> list[ReportRow]:
            return [report_row(r) for r in c.execute("SELECT * FROM reports ORDER BY opened_at")]

        return await self._db.call(read)

    async def counts(self) -> Mapping[str, int]:
        def read(c: sqlite3.Connection) -> dict[str, int]:
            out: dict[str, int] = {}
            for table in ("events", "status_events", "reports", "faults", "escalations"):
                (out[table],) = c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
            for state, n in c.execute("SELECT state, COUNT(*) FROM siaran_ops GROUP BY state"):
                out[f"ops_{state}"] = n
            for state, n in c.execute("SELECT state, COUNT(*) FROM reports GROUP BY state"):
                out[f"reports_{state}"] = n
            return out

        return await self._db.call(read)

    async def history(self, gateway_id: str | None = None) -> list[dict[str, Any]]:
        def read(c: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = "SELECT * FROM events"
            args: tuple[str, ...] = ()
            if gateway_id is not None:
                sql, args = sql + " WHERE gateway_id = ?", (gateway_id,)
            return [dict(r) for r in c.execute(sql + " ORDER BY applied_at, seq", args)]

        return await self._db.call(read)


def _idem_key(kind: str, report_uid: str) -> str:
    """The create's key is the report's own id (a retry after a crash finds the same report);
    every other operation gets a fresh one, so a retried comment is not added twice."""
    return report_uid if kind == "create" else f"{kind}-{uuid.uuid4()}"
