"""Escalation: a report the agency has not answered within its category's SLA is red-flagged,
once, and an escalation event is published on the broker.

The SLA runs from when SIARAN accepted the report (or from its reopening). Before flagging,
SIARAN is asked for the report's status: an agency that answered (in progress, done, or a
response time) is not flagged, and the report is not checked again until it is reopened.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from agent.clock import Clock, sleep_unless
from central.ledger import Ledger
from central.lifecycle import ReportRow
from central.siaran_api import AWAITING_AGENCY
from central.siaran_client import SiaranClient, SiaranRejectedError, SiaranUnavailableError
from central.wording import red_flag_reason

log = structlog.get_logger(__name__)

ESCALATION_SCHEMA = 1


class EscalationEvent(BaseModel):
    """Published (QoS 1, not retained) on `[escalation] topic` when a report is red-flagged."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True
    )

    schema_version: int = Field(ESCALATION_SCHEMA, alias="schema")
    escalation_id: uuid.UUID
    report_id: str = Field(description="SIARAN's id of the report")
    report_uid: str = Field(description="central's own id of the report")
    gateway_id: str
    device_id: str
    fault_type: str
    category: str
    agency: str
    unit: str
    kecamatan: str
    title: str
    sla_h: float
    filed_at: AwareDatetime
    due_at: AwareDatetime
    flagged_at: AwareDatetime
    reason: str


class Escalator:
    def __init__(
        self,
        ledger: Ledger,
        client: SiaranClient,
        clock: Clock,
        interval_s: float,
        on_flag: Callable[[], None],
    ) -> None:
        self._ledger = ledger
        self._client = client
        self._clock = clock
        self._interval_s = interval_s
        self._on_flag = on_flag
        self.stats: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        while not await sleep_unless(self._clock, self._interval_s, stop):
            try:
                await self.check()
            except Exception:  # one bad round never ends escalation
                log.exception("escalation_check_failed")

    async def check(self) -> int:
        """One round over the overdue reports; how many were flagged."""
        self.stats["rounds"] += 1
        flagged = 0
        for report in await self._ledger.overdue_reports(self._clock.now()):
            try:
                flagged += await self._check_one(report)
            except SiaranUnavailableError as exc:
                log.warning("escalation_siaran_unavailable", error=str(exc))
                return flagged
        return flagged

    async def _check_one(self, r: ReportRow) -> int:
        assert r.siaran_id is not None and r.sla_due_at is not None
        self.stats["checked"] += 1
        try:
            seen = await self._client.get_report(r.siaran_id)
        except SiaranRejectedError as exc:
            log.error("escalation_report_unreadable", report=r.report_uid, error=str(exc))
            return 0
        if seen.responded_at is not None or seen.status not in AWAITING_AGENCY:
            await self._ledger.mark_responded(r.report_uid, seen.responded_at or self._clock.now())
            self.stats["responded"] += 1
            return 0
        now = self._clock.now()
        reason = red_flag_reason(r.agency, r.unit, r.sla_h, r.sla_due_at)
        due, filed = r.sla_due_at, r.delivered_at or r.opened_at

        def event(escalation_id: str) -> bytes:
            return (
                EscalationEvent(
                    escalation_id=uuid.UUID(escalation_id),
                    report_id=seen.id,
                    report_uid=r.report_uid,
                    gateway_id=r.key.gateway_id,
                    device_id=r.key.device_id,
                    fault_type=r.key.fault_type,
                    category=r.category,
                    agency=r.agency,
                    unit=r.unit,
                    kecamatan=r.kecamatan,
                    title=r.title,
                    sla_h=r.sla_h,
                    filed_at=filed,
                    due_at=due,
                    flagged_at=now,
                    reason=reason,
                )
                .model_dump_json(by_alias=True)
                .encode()
            )

        if not await self._ledger.red_flag(r.report_uid, now, reason, event):
            return 0
        self.stats["flagged"] += 1
        log.warning(
            "report_escalated",
            report=r.report_uid,
            siaran_id=r.siaran_id,
            agency=r.agency,
            unit=r.unit,
            sla_h=r.sla_h,
        )
        self._on_flag()
        return 1
