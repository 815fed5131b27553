"""The SIARAN outbox's sender: operations queued in the ledger go to SIARAN in order.

A SIARAN outage delays reports, it loses none: an operation stays pending in the ledger until
SIARAN accepted it (retried with backoff, forever); one SIARAN refuses for good (4xx) is kept
aside as 'dead' and logged. One sender at a time works the outbox (a lease in the ledger), so
several consumer instances on one ledger do not send an operation twice.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import structlog

from agent.clock import Clock, pause
from central.ledger import Ledger, PendingOp
from central.siaran_api import ReportCreate
from central.siaran_client import SiaranClient, SiaranRejectedError, SiaranUnavailableError

log = structlog.get_logger(__name__)

BATCH = 50
LEASE_S = 30.0


class Delivery:
    def __init__(
        self,
        ledger: Ledger,
        client: SiaranClient,
        clock: Clock,
        holder: str,
        poll_interval_s: float = 2.0,
        backoff_max_s: float = 60.0,
    ) -> None:
        self._ledger = ledger
        self._client = client
        self._clock = clock
        self._holder = holder
        self._poll_s = poll_interval_s
        self._backoff_max_s = backoff_max_s
        self._wake = asyncio.Event()
        self.stats: Counter[str] = Counter()
        self.available = True  # SIARAN answered the last try

    def wake(self) -> None:
        """New operations were queued: look now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self.round()
                failures = 0
            except SiaranUnavailableError as exc:
                failures += 1
                if self.available or failures in (1, 10) or failures % 100 == 0:
                    log.warning("siaran_unavailable", error=str(exc), failures=failures)
                self.available = False
            except Exception:  # the sender never dies of one bad round
                failures += 1
                log.exception("siaran_delivery_error")
            if failures:  # back off: new work does not cut a backoff short
                ceiling = min(self._backoff_max_s, 2.0 ** min(failures, 16))
                await pause(random.uniform(ceiling / 2, ceiling), stop)
            else:
                await pause(self._poll_s, stop, self._wake)
            self._wake.clear()

    async def round(self) -> int:
        """Send what is due; raises SiaranUnavailableError when SIARAN does not answer."""
        sent = 0
        while True:
            if not await self._ledger.claim_sender(self._holder, self._clock.now(), LEASE_S):
                return sent
            ops = await self._ledger.due_ops(self._clock.now(), BATCH)
            if not ops:
                return sent
            for op in ops:
                await self._send(op)
                sent += 1
            if not self.available:
                log.info("siaran_available_again")
                self.available = True

    async def _send(self, op: PendingOp) -> None:
        siaran_id: str | None = None
        try:
            if op.kind == "create":
                report = ReportCreate.model_validate(op.body)
                created = await self._client.create_report(report, op.idem_key)
                siaran_id = created.id
            elif op.siaran_id is None:
                raise SiaranRejectedError(0, "the report was never filed")
            elif op.kind == "comment":
                await self._client.add_comment(op.siaran_id, op.body["body"], op.idem_key)
            elif op.kind == "status":
                b = op.body
                await self._client.set_status(op.siaran_id, b["status"], b["note"], op.idem_key)
            else:
                await self._client.red_flag(op.siaran_id, op.body["reason"], op.idem_key)
        except SiaranRejectedError as exc:
            self.stats["dead"] += 1
            log.error("siaran_refused", op=op.kind, report=op.report_uid, error=str(exc))
            await self._ledger.op_failed(op, str(exc), dead=True)
            return
        except SiaranUnavailableError as exc:
            self.stats["retry"] += 1
            await self._ledger.op_failed(op, str(exc), dead=False)
            raise
        self.stats[f"sent_{op.kind}"] += 1
        await self._ledger.op_sent(op, self._clock.now(), siaran_id)
        log.info(
            "siaran_sent", op=op.kind, report=op.report_uid, siaran_id=siaran_id or op.siaran_id
        )
