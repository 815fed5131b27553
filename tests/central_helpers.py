"""Helpers for the central consumer's tests: events, configs, a running sandbox and consumer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.clock import Clock
from central.config import CentralConfig
from central.sandbox.server import SandboxServer
from central.service import Central
from central.siaran_api import Report
from tests.servers import free_port
from tests.waiting import until
from uplink.contract import FaultEvent, GatewayStatus, Location, Topics, encode

TOKEN = "test-token-1234"
ROOT = "siaran/v1"
T0 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)

PAMULANG = Location(
    lat=-6.3431,
    lon=106.7372,
    address="Jl. Siliwangi No. 1",
    kelurahan="Pamulang Barat",
    kecamatan="Pamulang",
)
SERPONG = Location(
    lat=-6.3166, lon=106.6647, address="Jl. Raya Serpong", kelurahan="Cilenggang",
    kecamatan="Serpong",
)  # fmt: skip
JAKARTA = Location(lat=-6.1754, lon=106.8272, address="Monas", kecamatan="Gambir")


def fault_event(
    seq: int,
    device: str = "pju-0042",
    state: str = "raised",
    *,
    gw: str = "gw-01",
    fault_type: str = "lamp_failure",
    kind: str = "streetlight",
    severity: str = "major",
    replayed: bool = False,
    location: Location | None = PAMULANG,
    circuit: str | None = "PNL-07/A",
    evidence: dict[str, Any] | None = None,
    at: datetime | None = None,
    first_seen: datetime | None = None,
    summary: str = "",
    event_id: uuid.UUID | None = None,
) -> FaultEvent:
    at = at or datetime.now(UTC)
    return FaultEvent.model_validate(
        {
            "event_id": event_id or uuid.uuid4(),
            "gateway_id": gw,
            "seq": seq,
            "device_id": device,
            "device_kind": kind,
            "fault_type": fault_type,
            "state": state,
            "severity": severity,
            "first_seen": first_seen or at - timedelta(minutes=5),
            "observed_at": at,
            "clock_synced": True,
            "location": location,
            "circuit": circuit,
            "summary": summary or f"Lampu {device} mati: daya 0 W saat seharusnya menyala",
            "evidence": evidence if evidence is not None else {"power_w": 0.0, "lamp_on": True},
            "replayed": replayed,
        }
    )


def gateway_status(
    gw: str, state: str, graceful: bool = True, at: datetime | None = None
) -> GatewayStatus:
    return GatewayStatus.model_validate(
        {
            "gateway_id": gw,
            "state": state,
            "graceful": graceful,
            "at": at or datetime.now(UTC),
            "agent_version": "0.1.0",
            "config_version": "cfg",
            "device_count": 12,
            "clock_synced": True,
            "last_seq": 0,
            "central_acked_seq": 0,
        }
    )


def central_config(
    state_dir: Path, broker_port: int, siaran_url: str, **over: Any
) -> CentralConfig:
    """A test config: fast polling and backoff, no grace periods unless asked."""
    raw: dict[str, Any] = {
        "state_dir": str(state_dir),
        "ledger_sync": "normal",
        "broker": {
            "host": "127.0.0.1",
            "port": broker_port,
            "client_id": "central-test-1",
            "reconnect_max_s": 0.5,
        },
        "siaran": {
            "base_url": siaran_url,
            "token": {"value": TOKEN},
            "timeout_s": 2.0,
            "attempts": 1,
            "backoff_max_s": 0.5,
            "poll_interval_s": 0.1,
        },
        "reports": {"replay_settle_s": 0, "gateway_offline_grace_s": 0},
        "escalation": {"check_interval_s": 3600},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return CentralConfig.model_validate(raw)


@asynccontextmanager
async def sandbox(data_dir: Path, port: int | None = None) -> AsyncIterator[SandboxServer]:
    server = SandboxServer(data_dir, port or free_port(), TOKEN)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class Api:
    """The sandbox's API as a test reads it."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def reports(self) -> list[Report]:
        async with httpx.AsyncClient(base_url=self.url) as http:
            resp = await http.get("/api/v1/reports", headers={"Authorization": f"Bearer {TOKEN}"})
            resp.raise_for_status()
            return [Report.model_validate(r) for r in resp.json()["reports"]]

    async def count(self) -> int:
        return len(await self.reports())

    async def one(self) -> Report:
        found = await self.reports()
        assert len(found) == 1, [r.title for r in found]
        return found[0]


@asynccontextmanager
async def running(config: CentralConfig, clock: Clock | None = None) -> AsyncIterator[Central]:
    """A central consumer running in this loop, connected to its broker."""
    central = Central(config, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(central.run(stop))
    try:
        await until(central.consumer.connected.is_set, 10, "central connected to the broker")
        yield central
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


class Gateway:
    """A stand-in gateway: a paho client (its own network thread) publishing contract messages."""

    def __init__(self, port: int, gw: str = "gw-01", will: GatewayStatus | None = None) -> None:
        self.topics = Topics(ROOT, gw)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-{gw}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        if will is not None:
            self.client.will_set(self.topics.status, encode(will), qos=1, retain=True)
        self.received: list[tuple[str, bytes, bool]] = []
        self.client.on_message = lambda _c, _u, m: self.received.append(
            (m.topic, bytes(m.payload), bool(m.retain))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)

    async def publish_raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        await asyncio.to_thread(info.wait_for_publish, 5)
        assert info.is_published()

    async def fault(self, ev: FaultEvent) -> None:
        await self.publish_raw(self.topics.fault, encode(ev))

    async def status(self, st: GatewayStatus) -> None:
        await self.publish_raw(self.topics.status, encode(st), retain=True)

    def vanish(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker sends the Last Will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
