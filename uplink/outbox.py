"""The durable outbox: faults on disk before they are published, telemetry in memory while it can.

- Every SQLite call runs on one worker thread (never on the event loop). Concurrent submits are
  committed together (group commit): one transaction, one fsync, for all faults that arrived
  while the previous commit ran.
- Faults: committed (seq assigned, `synchronous=FULL`) before `add_fault` returns; deleted only
  after their PUBACK. Technician actions (`add_action`) the same, without a seq.
- Telemetry: held in memory (bounded by `telemetry_memory_bytes`) while the link is up; written
  to the store only while the link is down, when the memory bound is reached, or at shutdown.
  While spilled telemetry waits on disk, new telemetry goes to disk too, so it stays in order.
- Replay: each row remembers the link token it was committed under (0 = link down). A row sent
  under that same token goes out live (`replayed=false`); any other row (committed while the
  link was down, by an earlier process, or sent before a disconnect and not acknowledged) goes
  out with `replayed=true`.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar

import structlog

from agent.sqlite_files import is_corruption
from firmware_config.uplink_config import OutboxConfig
from uplink.contract import (
    ActionDraft,
    FaultDraft,
    FaultEvent,
    OperatorAction,
    OutboxStatus,
    TelemetryBatch,
    TelemetryDraft,
    encode,
)
from uplink.store import FaultOutcome, Kind, Row, Store, StoreCounts

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# The wire form ends with the `replayed` flag (encode() of FaultEvent, OperatorAction and
# TelemetryBatch): a replay flips it in the bytes instead of parsing and encoding the message.
_LIVE_TAIL, _REPLAYED_TAIL = b',"replayed":false}', b',"replayed":true}'


class _GroupCommit(Generic[T, R]):
    """Queue items; one running batch call handles all that queued up while the last ran."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        self._run = run
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:  # every waiter gets the error, none is left hanging
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)


@dataclass(frozen=True)
class OutboxSnapshot:
    counts: StoreCounts
    memory_batches: int
    memory_bytes: int
    oldest_memory: float | None


class Outbox:
    def __init__(
        self,
        path: Path,
        config: OutboxConfig,
        gateway_id: str,
        now: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self._now = now
        self._store = Store(path, config, now)
        self._exec: ThreadPoolExecutor | None = None
        self._mem: deque[Row] = deque()
        self._mem_bytes = 0
        self._mem_inflight: dict[int, Row] = {}
        self._spilling = 0
        self._token = 0
        self._after = {"fault": 0, "action": 0, "telemetry": 0}
        self._tkeys = itertools.count(1)
        self._work = asyncio.Event()
        self._faults = _GroupCommit[FaultDraft, FaultOutcome](self._commit_faults)
        self._actions = _GroupCommit[ActionDraft, OperatorAction](self._commit_actions)
        self._spills = _GroupCommit[Row, int](self._commit_spills)
        self._reported_resets = 0
        self._background: set[asyncio.Task[None]] = set()

    # -- life ----------------------------------------------------------------------------

    async def open(self) -> None:
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        await self._call(self._store.open)
        c = self._store.counts
        self._tkeys = itertools.count(c.max_tkey + 1)
        log.info(
            "outbox_open",
            path=str(self._store.path),
            faults=c.faults,
            telemetry=c.telemetry,
            next_seq=c.next_seq,
        )

    async def close(self) -> None:
        """Spill what is in memory and close the file."""
        if self._exec is None:
            return
        await self.link_down()
        for task in list(self._background):
            await task
        await self._call(self._store.close)
        self._exec.shutdown(wait=True)
        self._exec = None

    async def _call(self, fn: Callable[..., R], *args: object) -> R:
        if self._exec is None:
            raise RuntimeError("outbox is not open")
        result = await asyncio.get_running_loop().run_in_executor(
            self._exec, self._guarded, fn, *args
        )
        self._report_resets()
        return result

    def _guarded(self, fn: Callable[..., R], *args: object) -> R:
        """Run on the worker thread; a corrupt file is moved aside and the call tried again."""
        try:
            return fn(*args)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self._store.recover(str(exc))
            return fn(*args)

    def _report_resets(self) -> None:
        """Tell the city that the store was reset: a gateway fault, through the outbox itself."""
        moved = self._store.moved_aside
        if self._reported_resets < len(moved):  # a new file starts its row keys at 1 again
            self._after = {"fault": 0, "action": 0, "telemetry": 0}
        while self._reported_resets < len(moved):
            path = moved[self._reported_resets]
            self._reported_resets += 1
            now = self._now()
            draft = FaultDraft(
                device_id=self.gateway_id,
                device_kind="gateway",
                fault_type="outbox_store_reset",
                state="raised",
                severity="major",
                first_seen=now,
                observed_at=now,
                clock_synced=False,
                summary="Outbox file unreadable (SD card?): moved aside, a new one started",
                evidence={"moved_to": path.name},
            )
            task = asyncio.create_task(self._report(draft))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _report(self, draft: FaultDraft) -> None:
        try:
            await self.add_fault(draft)
        except Exception as exc:  # reporting must not take the outbox down
            log.error("outbox_reset_report_failed", error=str(exc))

    # -- producers -----------------------------------------------------------------------

    async def add_fault(self, draft: FaultDraft) -> FaultEvent:
        """Commit a fault (seq assigned); raises OutboxFullError at the hard cap."""
        outcome = await self._faults.submit(draft)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.event is not None
        self._work.set()
        return outcome.event

    async def _commit_faults(self, drafts: list[FaultDraft]) -> list[FaultOutcome]:
        token = self._token
        return await self._call(self._store.add_faults, drafts, self.gateway_id, token)

    async def add_action(self, draft: ActionDraft) -> OperatorAction:
        """Commit a technician action (on disk, fsync, when this returns)."""
        action = await self._actions.submit(draft)
        self._work.set()
        return action

    async def _commit_actions(self, drafts: list[ActionDraft]) -> list[OperatorAction]:
        token = self._token
        return await self._call(self._store.add_actions, drafts, self.gateway_id, token)

    async def add_telemetry(self, draft: TelemetryDraft) -> None:
        """Keep a batch: in memory while the link is up, else on disk (returns once stored)."""
        batch = TelemetryBatch(
            batch_id=draft.batch_id,
            samples=draft.samples,
            gateway_id=self.gateway_id,
            replayed=False,
        )
        row = Row(
            "telemetry", next(self._tkeys), self._token, self._now().timestamp(), encode(batch)
        )
        size = len(row.payload)
        disk_backlog = self._store.counts.telemetry + self._spilling
        if (
            self._token
            and not disk_backlog
            and self._mem_bytes + size <= self.config.telemetry_memory_bytes
        ):
            self._mem.append(row)
            self._mem_bytes += size
            self._work.set()
            return
        await self._spill([row])

    async def _spill(self, rows: Sequence[Row]) -> None:
        self._spilling += len(rows)
        try:
            await asyncio.gather(*(self._spills.submit(r) for r in rows))
        finally:
            self._spilling -= len(rows)
        self._work.set()

    async def _commit_spills(self, rows: list[Row]) -> list[int]:
        dropped = await self._call(self._store.add_telemetry, rows)
        return [dropped] + [0] * (len(rows) - 1)

    # -- the link ------------------------------------------------------------------------

    def link_up(self, token: int) -> None:
        """A new connection (token != 0): everything stored is due again, in order."""
        self._token = token
        self._after = {"fault": 0, "action": 0, "telemetry": 0}
        self._work.set()

    async def link_down(self) -> None:
        """The connection is gone: telemetry held in memory goes to disk."""
        self._token = 0
        rows = sorted([*self._mem_inflight.values(), *self._mem], key=lambda r: r.key)
        self._mem.clear()
        self._mem_inflight.clear()
        self._mem_bytes = 0
        if rows:
            await self._spill(rows)

    @property
    def token(self) -> int:
        return self._token

    # -- the publisher's side ------------------------------------------------------------

    async def take(self, limit: int) -> list[Row]:
        """The next rows to publish on this connection: faults, actions, then telemetry in order."""
        rows: list[Row] = []
        kinds: tuple[Kind, ...] = ("fault", "action")
        for kind in kinds:
            if len(rows) < limit:
                more = await self._call(
                    self._store.next_rows, kind, self._after[kind], limit - len(rows)
                )
                if more:
                    self._after[kind] = more[-1].key
                rows += more
        while self._mem and len(rows) < limit:
            row = self._mem.popleft()
            self._mem_bytes -= len(row.payload)
            self._mem_inflight[row.key] = row
            rows.append(row)
        if len(rows) < limit and not self._mem:
            tele = await self._call(
                self._store.next_rows, "telemetry", self._after["telemetry"], limit - len(rows)
            )
            if tele:
                self._after["telemetry"] = tele[-1].key
            rows += tele
        return rows

    async def wait_for_work(self) -> None:
        await self._work.wait()
        self._work.clear()

    def has_work_signal(self) -> bool:
        return self._work.is_set()

    def render(self, row: Row) -> bytes:
        """The payload to send now: live under the token it was committed with, else replayed."""
        if row.origin != 0 and row.origin == self._token:
            return row.payload
        if row.payload.endswith(_LIVE_TAIL):  # `replayed` is every message's last field
            return row.payload[: -len(_LIVE_TAIL)] + _REPLAYED_TAIL
        if row.kind == "fault":
            fault = FaultEvent.model_validate_json(row.payload)
            return encode(fault.model_copy(update={"replayed": True}))
        if row.kind == "action":
            action = OperatorAction.model_validate_json(row.payload)
            return encode(action.model_copy(update={"replayed": True}))
        batch = TelemetryBatch.model_validate_json(row.payload)
        return encode(batch.model_copy(update={"replayed": True}))

    async def done(self, rows: Sequence[Row]) -> None:
        """The broker acknowledged these (PUBACK): forget them."""
        on_disk = []
        for r in rows:
            if r.kind == "telemetry" and self._mem_inflight.pop(r.key, None) is not None:
                continue  # it was only ever in memory
            on_disk.append(r)
        if on_disk:
            await self._call(self._store.delete, on_disk)

    async def reject(self, rows: Sequence[tuple[Row, str]]) -> None:
        """The broker refused these: keep them aside in the dead-letter table."""
        for row, _ in rows:
            if row.kind == "telemetry":
                self._mem_inflight.pop(row.key, None)
        if rows:
            await self._call(self._store.dead_letter, rows)
            log.error("outbox_dead_letter", count=len(rows), reason=rows[0][1])

    async def set_central_ack(self, up_to: int) -> bool:
        return await self._call(self._store.set_central_ack, up_to)

    async def dead_letters(self) -> list[tuple[Row, str]]:
        return await self._call(self._store.dead_letters)

    # -- numbers -------------------------------------------------------------------------

    def snapshot(self) -> OutboxSnapshot:
        oldest_mem = min(
            (r.created for r in itertools.chain(self._mem_inflight.values(), self._mem)),
            default=None,
        )
        return OutboxSnapshot(
            self._store.counts,
            len(self._mem) + len(self._mem_inflight),
            self._mem_bytes + sum(len(r.payload) for r in self._mem_inflight.values()),
            oldest_mem,
        )

    def status(self) -> OutboxStatus:
        s = self.snapshot()
        c = s.counts
        times = (c.oldest_fault, c.oldest_action, c.oldest_telemetry, s.oldest_memory)
        oldest = min((t for t in times if t is not None), default=None)
        return OutboxStatus(
            faults_pending=c.faults,
            telemetry_pending=c.telemetry + s.memory_batches,
            oldest_pending_at=None if oldest is None else datetime.fromtimestamp(oldest, UTC),
            bytes_on_disk=c.total_bytes,
            telemetry_dropped=c.telemetry_dropped,
            full=self._store.dropping or c.fault_bytes >= self.config.max_bytes,
            faults_over_bound=c.fault_bytes >= self.config.max_bytes,
            faults_refused=c.faults_refused,
            dead_letters=c.dead_letters,
            store_resets=c.resets,
        )
