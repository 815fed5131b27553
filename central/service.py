"""The composition root of the central consumer: MQTT consumer -> ledger -> SIARAN outbox,
plus escalation, acks to the gateways and periodic counters. The parts import nothing of each
other sideways; this module wires them."""

from __future__ import annotations

import asyncio
from collections import Counter
from functools import partial

import structlog

from central.clock import Clock, SystemClock, sleep_unless
from central.config import CentralConfig
from central.consumer import Consumer, Outgoing
from central.delivery import Delivery
from central.escalation import Escalator
from central.ledger import AckState, Escalation, Ledger
from central.ledger_sqlite import SqliteLedger
from central.lifecycle import Policy, decide_fault, decide_status
from central.siaran_api import Reporter
from central.siaran_client import SiaranClient
from uplink.contract import Ack, FaultEvent, GatewayStatus, Topics, encode

log = structlog.get_logger(__name__)


class Central:
    def __init__(
        self,
        config: CentralConfig,
        clock: Clock | None = None,
        siaran: SiaranClient | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        s = config.siaran
        self.ledger: Ledger = SqliteLedger(config.ledger_path, config.ledger_sync.upper())
        token = s.token.resolve() if s.token is not None else None
        self.siaran = siaran or SiaranClient(
            s.base_url, token, s.timeout_s, s.attempts, min(5.0, s.backoff_max_s)
        )
        self.policy = Policy(
            reports=config.reports,
            categories=config.categories,
            boundary=config.boundary.build(),
            sites=config.gateways,
            reporter=Reporter(kind="sensor", id=s.reporter_id, name=s.reporter_name),
        )
        b = config.broker
        password = b.password.resolve().get_secret_value() if b.password is not None else None
        self.consumer = Consumer(b, password, config.max_payload_bytes, self)
        self.delivery = Delivery(
            self.ledger, self.siaran, self.clock, b.client_id, s.poll_interval_s, s.backoff_max_s
        )
        self.escalator = Escalator(
            self.ledger,
            self.siaran,
            self.clock,
            config.escalation.check_interval_s,
            self._flagged,
        )
        self.outcomes: Counter[str] = Counter()

    # -- the consumer's sink ---------------------------------------------------------------

    async def on_fault(self, ev: FaultEvent) -> None:
        applied = await self.ledger.apply_fault(
            ev,
            lambda e, snap, now: decide_fault(e, snap, self.policy, now),
            self.clock.now(),
            self.config.broker.client_id,
        )
        self.outcomes[applied.outcome] += 1
        fields = {
            "gateway": ev.gateway_id,
            "seq": ev.seq,
            "device": ev.device_id,
            "fault": ev.fault_type,
            "state": ev.state,
            "outcome": applied.outcome,
            "report": applied.report_uid,
        }
        if applied.outcome == "config_error":
            log.error("fault_config_error", detail=applied.detail, **fields)
        elif applied.outcome != "duplicate":
            log.info("fault_applied", detail=applied.detail or None, **fields)
        self.delivery.wake()
        self.consumer.wake_publisher()

    async def on_status(self, st: GatewayStatus) -> None:
        applied = await self.ledger.apply_status(
            st, lambda s, snap, now: decide_status(s, snap, self.policy, now), self.clock.now()
        )
        self.outcomes[f"status_{applied.outcome}"] += 1
        if applied.outcome != "duplicate_status":
            log.info(
                "gateway_status",
                gateway=st.gateway_id,
                state=st.state,
                graceful=st.graceful,
                outcome=applied.outcome,
                detail=applied.detail or None,
            )
        self.delivery.wake()

    async def outgoing(self) -> list[Outgoing]:
        root = self.config.broker.topic_root
        out = [self._ack(root, a) for a in await self.ledger.unpublished_acks()]
        if self.config.escalation.enabled:
            topic = self.config.escalation.topic
            out += [
                Outgoing(topic, e.body, False, partial(self._escalated, e))
                for e in await self.ledger.unpublished_escalations()
            ]
        return out

    def _ack(self, root: str, a: AckState) -> Outgoing:
        ack = Ack(gateway_id=a.gateway_id, up_to=a.up_to, seqs=list(a.seqs), at=self.clock.now())
        topic = Topics(root, a.gateway_id).ack
        return Outgoing(
            topic, encode(ack), True, partial(self.ledger.ack_published, a.gateway_id, a.version)
        )

    async def _escalated(self, e: Escalation) -> None:
        await self.ledger.escalation_published(e.escalation_id, self.clock.now())

    def _flagged(self) -> None:
        self.delivery.wake()
        self.consumer.wake_publisher()

    # -- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.ledger.open()
        log.info(
            "central_started",
            client_id=self.config.broker.client_id,
            share_group=self.config.broker.share_group or None,
            ledger=str(self.config.ledger_path),
            siaran=self.config.siaran.base_url,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.consumer.run(stop))
                tg.create_task(self.delivery.run(stop))
                if self.config.escalation.enabled:
                    tg.create_task(self.escalator.run(stop))
                tg.create_task(self._stats_loop(stop))
        finally:
            self.log_stats()
            await self.siaran.aclose()
            await self.ledger.close()

    async def _stats_loop(self, stop: asyncio.Event) -> None:
        while not await sleep_unless(SystemClock(), self.config.stats_interval_s, stop):
            self.log_stats()

    def stats(self) -> dict[str, int]:
        out = dict(self.consumer.stats)
        out.update(self.outcomes)
        out.update({f"siaran_{k}": v for k, v in self.delivery.stats.items()})
        out.update({f"escalation_{k}": v for k, v in self.escalator.stats.items()})
        return out

    def log_stats(self) -> None:
        log.info("central_stats", **self.stats())
