"""The JSON API's shapes (also what the HTML pages render): one source for both, and for OpenAPI."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from collectors.reading import Value
from uplink.contract import EvidenceValue

DeviceState = Literal["ok", "warning", "fault", "unreachable", "maintenance", "unknown"]
DEVICE_STATES: tuple[DeviceState, ...] = (
    "fault",
    "unreachable",
    "warning",
    "maintenance",
    "unknown",
    "ok",
)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class HealthOut(_Out):
    uptime_s: float = Field(description="Since the board booted")
    agent_uptime_s: float = Field(description="Since the agent started")
    cpu_percent: float
    memory_percent: float
    disk_percent: float | None = Field(description="File system of the state directory")
    temperature_c: float | None = Field(description="Board temperature; null when not reported")
    clock_synced: bool = Field(description="The system clock is NTP-synchronised")


class UplinkOut(_Out):
    configured: bool = Field(description="False: no [broker], events stay in the outbox")
    connected: bool
    connected_since: datetime | None
    last_publish_at: datetime | None
    last_error: str | None
    faults_pending: int = Field(description="Fault events not yet accepted by the broker")
    telemetry_pending: int
    oldest_pending_at: datetime | None = Field(description="Oldest unsent item")
    dead_letters: int


class MaintenanceOut(_Out):
    target_kind: Literal["device", "circuit"]
    target: str
    until: datetime
    by: str
    note: str
    set_at: datetime


class OverviewOut(_Out):
    gateway_id: str
    site: str
    now: datetime
    agent_version: str
    config_version: str
    health: HealthOut
    uplink: UplinkOut
    devices_total: int
    devices_by_state: dict[str, int]
    faults_active: int
    maintenance: list[MaintenanceOut]


class KeyValuesOut(_Out):
    lamp_on: bool | None = None
    active_power_w: float | None = None
    supply_voltage_v: float | None = None
    dim_percent: float | None = None
    clients: int | None = None
    uplink_if: str | None = None
    uplink_status: str | None = None


class DeviceOut(_Out):
    id: str
    kind: Literal["streetlight", "hotspot"]
    profile: str
    circuit: str | None
    pole_id: str | None
    address: str = Field(description="Street address of the device")
    state: DeviceState
    last_reading_at: datetime | None
    reachable: bool | None
    key: KeyValuesOut
    polls: int
    poll_failures: int
    last_poll_s: float | None
    faults: list[str] = Field(description="Fault types not ok now")


class PointOut(_Out):
    at: datetime
    values: dict[str, float]


class AckOut(_Out):
    by: str
    at: datetime | None
    note: str


class FaultOut(_Out):
    device_id: str
    fault_type: str
    status: str = Field(description="pending, raised, held, absorbed, maintenance or muted")
    severity: str
    first_seen: datetime | None
    summary: str
    flapping: bool
    absorbed_by: str | None
    members: list[str]
    acknowledged: AckOut | None
    evidence: dict[str, EvidenceValue] = Field(description="Of the latest event, if any")


class EventOut(_Out):
    event_id: uuid.UUID
    device_id: str
    device_kind: str
    fault_type: str
    state: str
    severity: str
    first_seen: datetime
    observed_at: datetime
    circuit: str | None
    summary: str
    evidence: dict[str, EvidenceValue]


class FaultsOut(_Out):
    active: list[FaultOut]
    recent: list[EventOut] = Field(description="Newest first")


class DeviceDetailOut(DeviceOut):
    values: dict[str, Value]
    errors: list[str]
    history: list[PointOut] = Field(description="Recent readings' chart values, oldest first")
    active_faults: list[FaultOut]
    events: list[EventOut] = Field(description="Newest first; includes its circuit's events")
    maintenance_until: datetime | None
    lamp_test_supported: bool


# -- actions ---------------------------------------------------------------------------------


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=64)
    fault_type: str = Field(min_length=1, max_length=64)
    note: str = Field("", max_length=500)


class MaintenanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_kind: Literal["device", "circuit"]
    target: str = Field(min_length=1, max_length=128)
    minutes: int | None = Field(None, ge=1, le=7 * 24 * 60, description="Or give `until`")
    until: AwareDatetime | None = None
    note: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _one_end(self) -> MaintenanceIn:
        if (self.minutes is None) == (self.until is None):
            raise ValueError("give either minutes or until")
        return self


class MaintenanceEndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_kind: Literal["device", "circuit"]
    target: str = Field(min_length=1, max_length=128)


class LampTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: int = Field(5, ge=1, le=60)


class LampTestOut(_Out):
    device_id: str
    ok: bool
    minutes: int
    power_w: float | None
    expected_w: float | None
    detail: str
    evidence: dict[str, EvidenceValue]


class ActionOut(_Out):
    ok: bool
    message: str


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(_Out):
    user: str
    display_name: str
    csrf_token: str = Field(description="Send as X-CSRF-Token with every action")
    expires_in_s: float
