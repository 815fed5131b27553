"""The report ledger's interface: which fault has which SIARAN report, which events were
applied, and the SIARAN outbox. `central.ledger_sqlite.SqliteLedger` backs it with one SQLite
file; a PostgreSQL ledger (a later issue) implements the same methods with the same
transactions (SELECT ... FOR UPDATE on the fault row) and unique constraints. The decisions
stay in `central.lifecycle` (pure functions the ledger calls inside its transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from central.lifecycle import Decision, OpKind, ReportRow, Snapshot
from uplink.contract import FaultEvent, GatewayStatus

ACK_SEQS_MAX = 100  # single seqs beyond up_to sent in an Ack


@dataclass(frozen=True)
class AckState:
    gateway_id: str
    up_to: int
    seqs: tuple[int, ...]
    version: int


@dataclass(frozen=True)
class Applied:
    outcome: str  # "duplicate", or the Decision's outcome
    detail: str
    report_uid: str | None
    ack: AckState | None  # fault events only


@dataclass(frozen=True)
class PendingOp:
    op_id: int
    report_uid: str
    kind: OpKind
    body: dict[str, Any]
    idem_key: str
    siaran_id: str | None
    attempts: int


@dataclass(frozen=True)
class Escalation:
    escalation_id: str
    body: bytes


FaultDecider = Callable[[FaultEvent, Snapshot, datetime], Decision]
StatusDecider = Callable[[GatewayStatus, Snapshot, datetime], Decision]


class Ledger(Protocol):
    """What the consumer needs of its store (SQLite now; PostgreSQL later)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def apply_fault(
        self, ev: FaultEvent, decide: FaultDecider, now: datetime, consumer: str
    ) -> Applied: ...

    async def apply_status(
        self, st: GatewayStatus, decide: StatusDecider, now: datetime
    ) -> Applied: ...

    async def unpublished_acks(self) -> list[AckState]: ...

    async def ack_published(self, gateway_id: str, version: int) -> None: ...

    async def claim_sender(self, holder: str, now: datetime, ttl_s: float) -> bool: ...

    async def due_ops(self, now: datetime, limit: int) -> list[PendingOp]: ...

    async def op_sent(self, op: PendingOp, now: datetime, siaran_id: str | None) -> None: ...

    async def op_failed(self, op: PendingOp, error: str, dead: bool) -> None: ...

    async def overdue_reports(self, now: datetime) -> list[ReportRow]: ...

    async def mark_responded(self, report_uid: str, at: datetime) -> None: ...

    async def red_flag(
        self, report_uid: str, now: datetime, reason: str, event: Callable[[str], bytes]
    ) -> bool: ...

    async def unpublished_escalations(self) -> list[Escalation]: ...

    async def escalation_published(self, escalation_id: str, now: datetime) -> None: ...

    async def reports(self) -> list[ReportRow]: ...

    async def counts(self) -> Mapping[str, int]: ...

    async def history(self, gateway_id: str | None = None) -> list[dict[str, Any]]: ...
