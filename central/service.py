"""The composition root of the central consumer: MQTT consumer -> ledger -> SIARAN outbox,
plus escalation, acks to the gateways and periodic counters, and (with `[influxdb]`) telemetry
MQTT consumer -> CentralInfluxSink -> InfluxDB. The parts import nothing of each other sideways;
this module wires them."""

from __future__ import annotations

import asyncio
from collections import Counter
from functools import partial

import structlog

from agent.clock import Clock, SystemClock, pause, sleep_unless
from central.config import CentralConfig
from central.consumer import Consumer, Outgoing
from central.delivery import Delivery
from central.escalation import Escalator
from central.influx_sink import CentralInfluxSink
from central.ledger import AckState, Escalation, Ledger
from central.ledger_sqlite import SqliteLedger
from central.lifecycle import Policy, decide_fault, decide_status
from central.siaran_api import Reporter
from central.siaran_client import SiaranClient
from uplink.contract import Ack, FaultEvent, GatewayStatus, TelemetryBatch, Topics, encode

log = structlog.get_logger(__name__)

INFLUX_META_FILE = "influx-devices.json"  # in state_dir: the devices' tags (the sink's memory)
INFLUX_RESTART_S = 5.0  # the sink's writer crashed (a bug): it starts again after this


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
        self.influx = (
            CentralInfluxSink(config.influxdb, meta_path=config.state_dir / INFLUX_META_FILE)
            if config.influxdb is not None
            else None
        )
        b = config.broker
        password = b.password.resolve().get_secret_value() if b.password is not None else None
        self.consumer = Consumer(
            b, password, config.max_payload_bytes, self, telemetry=self.influx is not None
        )
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

    async def on_telemetry(self, batch: TelemetryBatch) -> None:
        """Into the sink's buffer (it never waits for InfluxDB); not the ledger, no Ack. A
        failure here is counted and the batch dropped: telemetry never holds up faults."""
        if self.influx is None:  # the consumer does not subscribe then
            return
        try:
            await self.influx.handle(batch)
        except Exception as exc:
            self.outcomes["telemetry_failed"] += 1
            n = self.outcomes["telemetry_failed"]
            if n <= 5 or n & (n - 1) == 0:
                log.error(
                    "telemetry_failed",
                    gateway=batch.gateway_id,
                    batch=str(batch.batch_id),
                    error=f"{type(exc).__name__}: {exc}"[:300],
                    count=n,
                )

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
            influxdb=self.config.influxdb.url if self.config.influxdb is not None else None,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.consumer.run(stop))
                tg.create_task(self.delivery.run(stop))
                if self.config.escalation.enabled:
                    tg.create_task(self.escalator.run(stop))
                if self.influx is not None:
                    tg.create_task(self._write_telemetry(self.influx, stop))
                tg.create_task(self._stats_loop(stop))
        finally:
            self.log_stats()
            try:
                if self.influx is not None:  # a last write of what is buffered (<= 5 s)
                    await self.influx.close()
            finally:
                await self.siaran.aclose()
                await self.ledger.close()

    async def _write_telemetry(self, sink: CentralInfluxSink, stop: asyncio.Event) -> None:
        """The sink's writer until `stop`. It is cancelled then rather than told to stop: a write
        retrying while InfluxDB is away would hold up the shutdown (its chunk goes back to the
        buffer; close() tries once more). A writer that fails is logged and started again:
        telemetry never takes the fault path down."""
        while not stop.is_set():
            writer = asyncio.create_task(sink.run())
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({writer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (writer, stopper):
                    task.cancel()
                await asyncio.gather(writer, stopper, return_exceptions=True)
            if stop.is_set():
                return
            failure = None if writer.cancelled() else writer.exception()
            log.error("influx_writer_failed", error=repr(failure)[:300], exc_info=failure)
            await pause(INFLUX_RESTART_S, stop)

    async def _stats_loop(self, stop: asyncio.Event) -> None:
        while not await sleep_unless(SystemClock(), self.config.stats_interval_s, stop):
            self.log_stats()

    def stats(self) -> dict[str, int]:
        out = dict(self.consumer.stats)
        out.update(self.outcomes)
        out.update({f"siaran_{k}": v for k, v in self.delivery.stats.items()})
        out.update({f"escalation_{k}": v for k, v in self.escalator.stats.items()})
        if self.influx is not None:
            out.update({f"influx_{k}": v for k, v in self.influx.stats().items()})
        return out

    def log_stats(self) -> None:
        log.info("central_stats", **self.stats())
