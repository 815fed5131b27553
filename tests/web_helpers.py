"""Fakes for the status page's tests: an AgentView and Actions with no agent behind them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.actions import ActionError, LampTestResult, TargetKind
from agent.clock import FakeClock
from agent.faults.engine import ActiveFault
from agent.faults.maintenance import MaintenanceWindow
from agent.scheduler import DeviceStats
from agent.web.health import GatewayHealth
from agent.web.history import HistoryPoint
from agent.web.passwords import hash_password
from agent.web.view import AckInfo
from collectors.reading import Reading
from firmware_config.loader import LoadedConfig, load_profiles
from firmware_config.models import Device, GatewayConfig
from firmware_config.web_config import WebConfig
from uplink.contract import FaultDraft
from uplink.publisher import UplinkStats

START = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)  # 20:00 WIB: night in Tangerang Selatan
PASSWORD = "lampu-jalan-42"
LOCATION = {"lat": -6.3431, "lon": 106.7372, "kelurahan": "Pamulang Barat"}

# Made once: scrypt is slow on purpose. N = 2**14 is the weakest the config accepts.
_HASH = hash_password(PASSWORD, n=2**14)


def web_config(**changes: Any) -> WebConfig:
    raw: dict[str, Any] = {
        "users": [
            {"name": "budi", "password_hash": _HASH, "display_name": "Budi Santoso"},
            {"name": "sari", "password_hash": _HASH},
        ],
        "login_limit": {"max_failures": 3, "window_s": 60, "lockout_s": 120},
    }
    raw.update(changes)
    return WebConfig.model_validate(raw)


def _lamp(n: int) -> dict[str, Any]:
    return {
        "id": f"pju-{n:03d}",
        "kind": "streetlight",
        "profile": "pju-generic",
        "address": f"127.0.0.1:{16000 + n}",
        "snmp": {"version": "2c", "community": "public"},
        "pole_id": f"SLW-{n:03d}",
        "circuit": "PNL-A" if n <= 3 else "PNL-B",
        "rated_w": 60,
        "interval_s": 60,
        "location": {**LOCATION, "address": f"Jl. Siliwangi {n}"},
    }


def loaded_config() -> LoadedConfig:
    devices = [Device.model_validate(_lamp(n)) for n in (1, 2, 3, 4)]
    devices.append(
        Device.model_validate(
            {
                "id": "ap-taman",
                "kind": "hotspot",
                "profile": "mikrotik-routeros",
                "address": "127.0.0.1:16100",
                "snmp": {"version": "2c", "community": "public"},
                "uplink_if": "ether1",
                "interval_s": 60,
                "location": {**LOCATION, "address": "Taman Kota 1"},
            }
        )
    )
    gateway = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-test", "site": "Panel PJU Uji", "location": LOCATION},
            "state_dir": "/tmp/siaran-web-test",
        }
    )
    return LoadedConfig(Path("/tmp/gateway.toml"), gateway, tuple(devices), load_profiles(), "cfg1")


def lamp_reading(device_id: str, at: datetime, power: float, on: bool = True) -> Reading:
    return Reading(
        device_id=device_id,
        at=at,
        reachable=True,
        values={
            "lamp_on": on,
            "active_power": power,
            "supply_voltage": 221.5,
            "dim_command": 100,
            "daylight": False,
        },
        duration_s=0.012,
    )


def ap_reading(at: datetime) -> Reading:
    return Reading(
        device_id="ap-taman",
        at=at,
        reachable=True,
        values={"board_temperature": 41.0},
        tables={
            "wireless_aps": {"2": {"ssid": "TangselNet", "client_count": 7}},
            "interfaces": {"1": {"if_name": "ether1", "if_oper_status": 1}},
        },
        duration_s=0.05,
    )


def fault_draft(device_id: str, fault_type: str, at: datetime, state: str = "raised") -> FaultDraft:
    return FaultDraft.model_validate(
        {
            "event_id": uuid.uuid4(),
            "device_id": device_id,
            "device_kind": "streetlight",
            "fault_type": fault_type,
            "state": state,
            "severity": "major",
            "first_seen": at - timedelta(minutes=2),
            "observed_at": at,
            "clock_synced": True,
            "circuit": "PNL-A",
            "summary": "Lampu mati: daya 0,4 W dari 60 W",
            "evidence": {"active_power_w": 0.4, "rated_w": 60.0, "lamps": ["a", "b"]},
        }
    )


@dataclass
class FakeView:
    clock: FakeClock
    config: LoadedConfig = field(default_factory=loaded_config)
    agent_version: str = "0.1.0-test"
    readings: dict[str, Reading] = field(default_factory=dict)
    points: dict[str, list[HistoryPoint]] = field(default_factory=dict)
    stats: dict[str, DeviceStats] = field(default_factory=dict)
    faults: list[ActiveFault] = field(default_factory=list)
    events: list[FaultDraft] = field(default_factory=list)
    windows: list[MaintenanceWindow] = field(default_factory=list)
    acks: dict[tuple[str, str], AckInfo] = field(default_factory=dict)
    uplink_stats: UplinkStats | None = None

    def now(self) -> datetime:
        return self.clock.now()

    def latest(self) -> dict[str, Reading]:
        return dict(self.readings)

    def history(self, device_id: str) -> list[HistoryPoint]:
        return list(self.points.get(device_id, []))

    def poll_stats(self) -> dict[str, DeviceStats]:
        return dict(self.stats)

    def active_faults(self) -> list[ActiveFault]:
        return list(self.faults)

    def recent_events(self, limit: int) -> list[FaultDraft]:
        return self.events[-limit:]

    def maintenance_windows(self) -> list[MaintenanceWindow]:
        return [w for w in self.windows if w.until > self.now()]

    def acknowledgement(self, device_id: str, fault_type: str) -> AckInfo | None:
        return self.acks.get((device_id, fault_type))

    def uplink(self) -> UplinkStats | None:
        return self.uplink_stats

    def health(self) -> GatewayHealth:
        return GatewayHealth(
            uptime_s=90061.0,
            agent_uptime_s=3723.0,
            cpu_percent=12.5,
            memory_percent=41.0,
            disk_percent=23.0,
            temperature_c=52.3,
            clock_synced=True,
        )


@dataclass
class FakeActions:
    view: FakeView
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def acknowledge(self, device_id: str, fault_type: str, by: str, note: str) -> None:
        if not any(
            (f.device_id, f.fault_type) == (device_id, fault_type) for f in self.view.faults
        ):
            raise ActionError(f"tidak ada gangguan {fault_type} pada {device_id}")
        self.calls.append(("ack", device_id, fault_type, by, note))
        self.view.acks[(device_id, fault_type)] = AckInfo(by, self.view.now(), note)

    async def set_maintenance(
        self, kind: TargetKind, target: str, until: datetime, by: str, note: str = ""
    ) -> None:
        self.calls.append(("maintenance", kind, target, until, by, note))
        window = MaintenanceWindow(
            target_kind=kind, target=target, until=until, by=by, note=note, set_at=self.view.now()
        )
        self.view.windows = [
            w for w in self.view.windows if (w.target_kind, w.target) != (kind, target)
        ]
        self.view.windows.append(window)

    async def end_maintenance(self, kind: TargetKind, target: str, by: str) -> None:
        self.calls.append(("end", kind, target, by))
        self.view.windows = [
            w for w in self.view.windows if (w.target_kind, w.target) != (kind, target)
        ]

    def lamp_test_supported(self, device_id: str) -> bool:
        return device_id.startswith("pju-")

    async def lamp_test(self, device_id: str, minutes: int, by: str) -> LampTestResult:
        self.calls.append(("lamp_test", device_id, minutes, by))
        return LampTestResult(device_id, True, minutes, 59.6, 60.0, "59,6 W dari 60 W", {})


def populated_view(clock: FakeClock) -> FakeView:
    """Four lamps (pju-002 dead), one AP, a raised lamp failure, a few readings of history."""
    view = FakeView(clock)
    now = clock.now()
    for n in (1, 2, 3, 4):
        device_id = f"pju-{n:03d}"
        power = 0.4 if n == 2 else 60.4
        view.readings[device_id] = lamp_reading(device_id, now, power)
        view.stats[device_id] = DeviceStats(
            polls=10, failures=1 if n == 2 else 0, last_duration_s=0.012
        )
        view.points[device_id] = [
            HistoryPoint(
                now - timedelta(minutes=10 - i),
                True,
                {"active_power": power + i % 3, "poll_s": 0.01},
            )
            for i in range(10)
        ]
    view.readings["ap-taman"] = ap_reading(now)
    view.stats["ap-taman"] = DeviceStats(polls=10, failures=0, last_duration_s=0.05)
    view.faults.append(
        ActiveFault(
            "pju-002",
            "lamp_failure",
            "raised",
            "major",
            now - timedelta(minutes=2),
            "Lampu mati: daya 0,4 W dari 60 W",
        )
    )
    view.events.append(fault_draft("pju-002", "lamp_failure", now))
    view.uplink_stats = UplinkStats(
        connected=True, connected_since=now - timedelta(hours=1), last_publish_at=now,
        last_error=None, connects=1, faults_pending=2, telemetry_pending=5,
        telemetry_in_memory=5, oldest_pending_at=now - timedelta(seconds=30), bytes_on_disk=4096,
        telemetry_dropped=0, faults_refused=0, dead_letters=0, store_resets=0, last_seq=7,
        central_acked_seq=5,
    )  # fmt: skip
    return view
