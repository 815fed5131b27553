"""The MQTT side of central: one MQTT 5 connection (aiomqtt over paho-mqtt 2), subscribed to the
fault and status branches of every gateway through a shared subscription, and to the telemetry
branch when telemetry is written (`[influxdb]`).

- Persistent session (`clean_start=False` + Session Expiry): what arrives while central is away
  waits on the broker.
- Manual PUBACK: a message is acknowledged to the broker only after the ledger committed it (or
  after it was rejected), so a crash between receipt and commit means a redelivery, which the
  ledger recognises by event id; never a loss.
- A failure to apply (the ledger) ends the connection without acknowledging: the broker sends
  the message again on the next one. Reconnects back off exponentially with jitter.
- Outgoing messages (acks to gateways, escalation events) are published from a queue the
  ledger keeps, so a broker outage delays them and loses none.
- Telemetry goes to the sink's `on_telemetry`, which only buffers (never the ledger, no Ack to
  the gateway): a telemetry batch never waits for InfluxDB, nor keeps a fault waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.clock import pause
from central.config import BrokerSettings, TlsSettings
from central.intake import Rejected, check, subscriptions, telemetry_subscription
from uplink.contract import FaultEvent, GatewayStatus, TelemetryBatch

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool
    done: Callable[[], Awaitable[None]]  # called after the broker's PUBACK


class Sink(Protocol):
    """Where accepted messages go (central.service.Central)."""

    async def on_fault(self, ev: FaultEvent) -> None: ...

    async def on_status(self, st: GatewayStatus) -> None: ...

    async def on_telemetry(self, batch: TelemetryBatch) -> None: ...

    async def outgoing(self) -> list[Outgoing]: ...


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None and tls.key_file is not None:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


class Consumer:
    def __init__(
        self,
        settings: BrokerSettings,
        password: str | None,
        max_payload_bytes: int,
        sink: Sink,
        *,
        telemetry: bool = False,
    ) -> None:
        self._s = settings
        self._telemetry = telemetry
        self._password = password
        self._max_bytes = max_payload_bytes
        self._sink = sink
        self._tls = tls_context(settings.tls) if settings.tls is not None else None
        self._publish_wake = asyncio.Event()
        self.connected = asyncio.Event()
        self.stats: Counter[str] = Counter()

    def wake_publisher(self) -> None:
        self._publish_wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                failures = 0
            except aiomqtt.MqttError as exc:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("broker_unavailable", error=str(exc), failures=failures)
            except Exception:  # could not apply (ledger): unacknowledged, so sent again
                failures += 1
                self.stats["apply_failed"] += 1
                log.exception("apply_failed_reconnecting", failures=failures)
            finally:
                self.connected.clear()
            if not stop.is_set():
                ceiling = min(self._s.reconnect_max_s, 0.5 * 2.0 ** min(failures, 16))
                await pause(random.uniform(ceiling / 2, ceiling), stop)

    def _client(self) -> aiomqtt.Client:
        s = self._s
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if s.session_expiry_s:
            props.SessionExpiryInterval = s.session_expiry_s
        client = aiomqtt.Client(
            s.host,
            s.port,
            identifier=s.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=s.session_expiry_s == 0,
            properties=props,
            keepalive=s.keepalive_s,
            username=s.username,
            password=self._password,
            tls_context=self._tls,
            timeout=CONNECT_TIMEOUT_S,
        )
        # PUBACK only once the ledger has the message (paho's manual acknowledgement)
        client._client.manual_ack_set(True)
        return client

    async def _session(self, stop: asyncio.Event) -> None:
        async with self._client() as client:
            root, group = self._s.topic_root, self._s.share_group
            topics = subscriptions(root, group, telemetry=self._telemetry)
            await client.subscribe([(t, 1) for t in topics])
            if not self._telemetry:  # a session of a run with [influxdb] may still hold it
                await client.unsubscribe(telemetry_subscription(root, group))
            self.connected.set()
            log.info("broker_connected", host=self._s.host, port=self._s.port, topics=topics)
            self._publish_wake.set()  # what waited for the broker goes out first
            tasks = {
                asyncio.create_task(self._receive(client)),
                asyncio.create_task(self._publish(client, stop)),
                asyncio.create_task(stop.wait()),
            }
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await task
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        log.info("broker_disconnected")

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            raw = msg.payload
            payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw or "").encode()
            await self.handle(msg.topic.value, payload)
            if msg.qos > 0:
                client._client.ack(msg.mid, msg.qos)

    async def handle(self, topic: str, payload: bytes) -> None:
        """Check and apply one message; raises only when it could not be applied (ledger)."""
        self.stats["received"] += 1
        found = check(
            self._s.topic_root, topic, payload, self._max_bytes, telemetry=self._telemetry
        )
        if isinstance(found, Rejected):
            self.stats[f"rejected_{found.reason}"] += 1
            n = self.stats[f"rejected_{found.reason}"]
            if n <= 5 or n & (n - 1) == 0:  # the first ones, then 8, 16, 32...: no flood
                log.warning(
                    "message_rejected",
                    reason=found.reason,
                    detail=found.detail,
                    topic_gateway=found.gateway_id,
                    channel=found.channel,
                    bytes=len(payload),
                    count=n,
                )
            return
        if isinstance(found, FaultEvent):
            await self._sink.on_fault(found)
        elif isinstance(found, GatewayStatus):
            await self._sink.on_status(found)
        else:
            await self._sink.on_telemetry(found)

    async def _publish(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._publish_wake.clear()  # before reading: a wake while we publish is kept
            for item in await self._sink.outgoing():
                await client.publish(
                    item.topic, item.payload, qos=1, retain=item.retain, timeout=PUBLISH_TIMEOUT_S
                )
                await item.done()
            await pause(30.0, stop, self._publish_wake)
