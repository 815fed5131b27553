"""The latest reading of each device, kept in memory and in SQLite (WAL) in the state directory.

Written sparingly, for the SD card: a device's row is rewritten when the device's condition
changes (it stops or starts answering, or starts or stops reporting errors; at most once per
`condition_gap_s`, 30 min, so that a flapping device does not write at every poll), when the
stored row is older than `refresh_s` (default a day), and for every device on a clean shutdown.
Everything else lives in memory: after a power cut the status page shows each device as it was
at its last condition change or refresh until the first poll (one interval) replaces it.
Writes are batched by flush(), every flush_interval_s, in one transaction in a worker thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import structlog

from agent.clock import Clock, SystemClock
from agent.sqlite_files import open_sqlite
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


Condition = tuple[bool, bool]  # (reachable, ok): a change is written at the next flush


def _condition(reading: Reading) -> Condition:
    return reading.reachable, reading.ok


class StateStore:
    def __init__(
        self,
        path: Path,
        flush_interval_s: float = 10.0,
        refresh_s: float = 24 * 3600.0,
        condition_gap_s: float = 1800.0,
        clock: Clock | None = None,
    ) -> None:
        self.path = path
        self.flush_interval_s, self.refresh_s = flush_interval_s, refresh_s
        self.condition_gap_s = condition_gap_s  # a flapping device: one row write per gap
        self._clock = clock or SystemClock()
        self._conn = open_sqlite(path, SCHEMA)
        self._latest: dict[str, Reading] = {}
        self._saved: dict[str, tuple[Condition, float]] = {}  # as on disk, and when written
        self._unsaved: set[str] = set()  # recorded since its row was written
        self._dirty: set[str] = set()  # condition changed: written at the next flush
        self._lock = asyncio.Lock()
        self._writing: asyncio.Future[None] | None = None
        # loaded rows count as written a gap ago: a change after a start is written at once
        written = self._clock.monotonic() - condition_gap_s
        for (text,) in self._conn.execute("SELECT reading FROM latest_reading"):
            reading = Reading.model_validate_json(text)
            self._latest[reading.device_id] = reading
            self._saved[reading.device_id] = (_condition(reading), written)

    async def record(self, reading: Reading) -> None:
        device_id = reading.device_id
        self._latest[device_id] = reading
        self._unsaved.add(device_id)
        saved = self._saved.get(device_id)
        if saved is None or saved[0] != _condition(reading):
            self._dirty.add(device_id)
        else:  # back as it is stored (a flap shorter than the gap): nothing to write
            self._dirty.discard(device_id)

    def latest(self, device_id: str) -> Reading | None:
        return self._latest.get(device_id)

    def all_latest(self) -> dict[str, Reading]:
        return dict(self._latest)

    def _due(self, everything: bool) -> set[str]:
        if everything:
            return set(self._unsaved)
        now, saved = self._clock.monotonic(), self._saved
        stale, settled = now - self.refresh_s, now - self.condition_gap_s
        changed = {d for d in self._dirty if d not in saved or saved[d][1] <= settled}
        return changed | {d for d in self._unsaved if d in saved and saved[d][1] <= stale}

    async def flush(self, everything: bool = False) -> int:
        """Write the rows that are due (all unsaved ones when `everything`); returns how many.

        A failed write (disk full, I/O error, locked) is logged and its devices stay due for the
        next flush: the agent goes on polling and reporting faults.
        """
        async with self._lock:
            if self._writing is not None and not self._writing.done():
                await asyncio.wait([self._writing])  # a cancelled flush's write, still running
            due = self._due(everything)
            if not due:
                return 0
            readings = [self._latest[d] for d in due]
            rows = [
                (r.device_id, r.at.isoformat(), int(r.reachable), r.model_dump_json())
                for r in readings
            ]
            # Counted as written from now on: a reading recorded meanwhile is compared with these.
            now, before = self._clock.monotonic(), {d: self._saved.get(d) for d in due}
            for r in readings:
                self._saved[r.device_id] = (_condition(r), now)
            self._unsaved -= due
            self._dirty -= due
            self._writing = write = asyncio.ensure_future(asyncio.to_thread(self._write, rows))
            write.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen, even alone
            try:
                await asyncio.shield(write)  # cancelled: the write goes on, the next one waits
            except BaseException as exc:  # failed or cancelled: due again at the next flush
                for d, saved in before.items():
                    if saved is None:
                        self._saved.pop(d, None)
                    else:
                        self._saved[d] = saved
                self._unsaved |= due
                self._dirty |= due
                if not isinstance(exc, sqlite3.Error):
                    raise
                log.error(
                    "state_store_flush_failed",
                    path=str(self.path),
                    devices=len(rows),
                    error=str(exc),
                )
                return 0
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
        """Flush periodically until cancelled; writes every unsaved reading on the way out."""
        try:
            while True:
                await self._clock.sleep(self.flush_interval_s)
                await self.flush()
        finally:
            await asyncio.shield(self.flush(everything=True))

    def close(self) -> None:
        self._conn.close()
