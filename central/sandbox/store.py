"""The sandbox's storage: reports, comments and idempotency keys in one SQLite file."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from central.siaran_api import Comment, CommentCreate, Report, ReportCreate
from central.sqlite_worker import SqliteWorker, opt_ts, parse_ts, ts, write

SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    responded_at TEXT, done_at TEXT, red_flag INTEGER NOT NULL DEFAULT 0,
    red_flagged_at TEXT, red_flag_reason TEXT, external_ref TEXT);
CREATE INDEX IF NOT EXISTS reports_ref ON reports (external_ref);
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, report_id TEXT NOT NULL REFERENCES reports (id),
    author TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, request TEXT NOT NULL, status INTEGER NOT NULL,
    response TEXT NOT NULL, created_at TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Answer:
    """An API answer: HTTP status and JSON body (stored as-is for idempotent replays)."""

    status: int
    body: dict[str, Any]


class KeyReusedError(Exception):
    """An Idempotency-Key seen before with another request."""


def _error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"error": code, "message": message})


NOT_FOUND = _error(404, "not_found", "Laporan tidak ditemukan")


class SandboxStore:
    def __init__(self, path: Path) -> None:
        self._db = SqliteWorker(path, SCHEMA, "NORMAL")

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    # -- reading ---------------------------------------------------------------------------

    def _report(self, c: sqlite3.Connection, report_id: str) -> Report | None:
        row = c.execute("SELECT * FROM reports WHERE id = ?", (report_id,)).fetchone()
        return self._build(c, row) if row else None

    def _build(self, c: sqlite3.Connection, row: sqlite3.Row) -> Report:
        comments = [
            Comment(
                id=r["id"], author=r["author"], body=r["body"], created_at=parse_ts(r["created_at"])
            )
            for r in c.execute(
                "SELECT * FROM comments WHERE report_id = ? ORDER BY id", (row["id"],)
            )
        ]
        return Report.model_validate(
            {
                **json.loads(row["body"]),
                "id": row["id"],
                "status": row["status"],
                "created_at": parse_ts(row["created_at"]),
                "updated_at": parse_ts(row["updated_at"]),
                "responded_at": opt_ts(row["responded_at"]),
                "done_at": opt_ts(row["done_at"]),
                "red_flag": bool(row["red_flag"]),
                "red_flagged_at": opt_ts(row["red_flagged_at"]),
                "red_flag_reason": row["red_flag_reason"],
                "comments": comments,
            }
        )

    async def get(self, report_id: str) -> Report | None:
        return await self._db.call(lambda c: self._report(c, report_id))

    async def list(
        self, status: str | None = None, external_ref: str | None = None, limit: int = 200
    ) -> list[Report]:
        def read(c: sqlite3.Connection) -> list[Report]:
            sql, args = "SELECT * FROM reports WHERE 1 = 1", list[str]()
            if status:
                sql, args = sql + " AND status = ?", [*args, status]
            if external_ref:
                sql, args = sql + " AND external_ref = ?", [*args, external_ref]
            rows = c.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
            return [self._build(c, r) for r in rows]

        return await self._db.call(read)

    # -- writing (each in one transaction with its idempotency record) ---------------------

    async def _idempotent(
        self,
        key: str | None,
        request: str,
        now: datetime,
        work: Any,
    ) -> Answer:
        def run(c: sqlite3.Connection) -> Answer:
            with write(c):
                if key is not None:
                    seen = c.execute(
                        "SELECT request, status, response FROM idempotency WHERE key = ?", (key,)
                    ).fetchone()
                    if seen is not None:
                        if seen["request"] != request:
                            raise KeyReusedError(key)
                        replay = 200 if seen["status"] == 201 else seen["status"]
                        return Answer(replay, json.loads(seen["response"]))
                answer: Answer = work(c)
                if key is not None and answer.status < 400:
                    c.execute(
                        "INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)",
                        (key, request, answer.status, json.dumps(answer.body), ts(now)),
                    )
                return answer

        return await self._db.call(run)

    async def create(self, req: ReportCreate, key: str | None, now: datetime) -> Answer:
        def work(c: sqlite3.Connection) -> Answer:
            body = req.model_dump_json()
            cur = c.execute(
                "INSERT INTO reports (id, body, status, created_at, updated_at, external_ref)"
                " VALUES ('', ?, 'new', ?, ?, ?)",
                (body, ts(now), ts(now), req.external_ref),
            )
            rid = f"SRN-{now:%Y}-{cur.lastrowid:06d}"
            c.execute("UPDATE reports SET id = ? WHERE seq = ?", (rid, cur.lastrowid))
            report = self._report(c, rid)
            assert report is not None
            return Answer(201, report.model_dump(mode="json"))

        return await self._idempotent(key, "POST /reports", now, work)

    def _comment(
        self, c: sqlite3.Connection, rid: str, author: str, body: str, now: datetime
    ) -> Comment:
        cur = c.execute(
            "INSERT INTO comments (report_id, author, body, created_at) VALUES (?, ?, ?, ?)",
            (rid, author, body, ts(now)),
        )
        c.execute("UPDATE reports SET updated_at = ? WHERE id = ?", (ts(now), rid))
        assert cur.lastrowid is not None
        return Comment(id=cur.lastrowid, author=author, body=body, created_at=now)

    async def comment(self, rid: str, req: CommentCreate, key: str | None, now: datetime) -> Answer:
        def work(c: sqlite3.Connection) -> Answer:
            if self._report(c, rid) is None:
                return NOT_FOUND
            return Answer(
                201, self._comment(c, rid, req.author, req.body, now).model_dump(mode="json")
            )

        return await self._idempotent(key, f"POST /reports/{rid}/comments", now, work)

    async def set_status(
        self, rid: str, status: str, note: str, author: str, key: str | None, now: datetime
    ) -> Answer:
        """Any status; 'reopened' clears the agency's earlier answer (it must answer again)."""

        def work(c: sqlite3.Connection) -> Answer:
            if self._report(c, rid) is None:
                return NOT_FOUND
            n = ts(now)
            if status == "reopened":
                c.execute(
                    "UPDATE reports SET status = ?, responded_at = NULL, done_at = NULL,"
                    " updated_at = ? WHERE id = ?",
                    (status, n, rid),
                )
            elif status in ("in_progress", "done"):  # the agency answers
                c.execute(
                    "UPDATE reports SET status = ?, updated_at = ?, responded_at = ?,"
                    " done_at = CASE WHEN ? = 'done' THEN ? ELSE done_at END WHERE id = ?",
                    (status, n, n, status, n, rid),
                )
            else:
                c.execute(
                    "UPDATE reports SET status = ?, updated_at = ? WHERE id = ?", (status, n, rid)
                )
            if note:
                self._comment(c, rid, author, note, now)
            report = self._report(c, rid)
            assert report is not None
            return Answer(200, report.model_dump(mode="json"))

        return await self._idempotent(key, f"POST /reports/{rid}/status", now, work)

    async def red_flag(self, rid: str, reason: str, key: str | None, now: datetime) -> Answer:
        def work(c: sqlite3.Connection) -> Answer:
            report = self._report(c, rid)
            if report is None:
                return NOT_FOUND
            if not report.red_flag:
                c.execute(
                    "UPDATE reports SET red_flag = 1, red_flagged_at = ?, red_flag_reason = ?,"
                    " updated_at = ? WHERE id = ?",
                    (ts(now), reason, ts(now), rid),
                )
                self._comment(c, rid, "sistem", f"Bendera merah: {reason}", now)
            report = self._report(c, rid)
            assert report is not None
            return Answer(200, report.model_dump(mode="json"))

        return await self._idempotent(key, f"POST /reports/{rid}/red-flag", now, work)
