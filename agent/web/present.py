"""From what the agent knows (AgentView) to the API's shapes, which the pages render too."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from agent.faults.engine import ActiveFault
from agent.faults.maintenance import MaintenanceBook, MaintenanceWindow
from agent.scheduler import DeviceStats
from agent.web.keyvalues import key_values
from agent.web.models import (
    DEVICE_STATES,
    AckOut,
    DeviceDetailOut,
    DeviceOut,
    DeviceState,
    EventOut,
    FaultOut,
    FaultsOut,
    HealthOut,
    KeyValuesOut,
    MaintenanceOut,
    OverviewOut,
    PointOut,
    UplinkOut,
)
from agent.web.view import AgentView
from collectors.reading import Reading
from firmware_config.models import Device
from uplink.contract import FaultDraft

RECENT_EVENTS = 200
BAD = frozenset({"raised", "held", "absorbed", "muted"})  # a fault that is real now


def _book(view: AgentView) -> MaintenanceBook:
    return MaintenanceBook(view.maintenance_windows(), view.config.gateway.gateway.id)


def device_state(
    reading: Reading | None, faults: list[ActiveFault], in_maintenance: bool
) -> DeviceState:
    if in_maintenance:
        return "maintenance"
    if reading is None:
        return "unknown"
    if not reading.reachable:
        return "unreachable"
    if any(f.status in BAD for f in faults):
        return "fault"
    return "warning" if faults else "ok"


def _device_out(
    device: Device,
    reading: Reading | None,
    faults: list[ActiveFault],
    stats: DeviceStats | None,
    in_maintenance: bool,
) -> DeviceOut:
    kv = key_values(device, reading)
    return DeviceOut(
        id=device.id,
        kind=device.kind,
        profile=device.profile,
        circuit=device.circuit,
        pole_id=device.pole_id,
        address=device.location.address,
        state=device_state(reading, faults, in_maintenance),
        last_reading_at=reading.at if reading else None,
        reachable=reading.reachable if reading else None,
        key=KeyValuesOut(**kv.__dict__),
        polls=stats.polls if stats else 0,
        poll_failures=stats.failures if stats else 0,
        last_poll_s=stats.last_duration_s if stats and stats.polls else None,
        faults=sorted({f.fault_type for f in faults}),
    )


def _faults_by_device(view: AgentView) -> dict[str, list[ActiveFault]]:
    out: dict[str, list[ActiveFault]] = {}
    for fault in view.active_faults():
        out.setdefault(fault.device_id, []).append(fault)
    return out


def devices(
    view: AgentView,
    kind: str | None = None,
    circuit: str | None = None,
    state: str | None = None,
) -> list[DeviceOut]:
    latest, faults, stats = view.latest(), _faults_by_device(view), view.poll_stats()
    book, now = _book(view), view.now()
    out = [
        _device_out(d, latest.get(d.id), faults.get(d.id, []), stats.get(d.id), book.device(d, now))
        for d in view.config.devices
        if (not kind or d.kind == kind) and (not circuit or d.circuit == circuit)
    ]
    return [d for d in out if not state or d.state == state]


def maintenance_out(windows: list[MaintenanceWindow]) -> list[MaintenanceOut]:
    return [
        MaintenanceOut(
            target_kind=w.target_kind,
            target=w.target,
            until=w.until,
            by=w.by,
            note=w.note,
            set_at=w.set_at,
        )
        for w in windows
    ]


def overview(view: AgentView) -> OverviewOut:
    cfg = view.config
    all_devices = devices(view)
    counts = Counter(d.state for d in all_devices)
    h = view.health()
    u = view.uplink()
    uplink = UplinkOut(
        configured=cfg.gateway.broker is not None,
        connected=u.connected if u else False,
        connected_since=u.connected_since if u else None,
        last_publish_at=u.last_publish_at if u else None,
        last_error=u.last_error if u else None,
        faults_pending=u.faults_pending if u else 0,
        telemetry_pending=u.telemetry_pending if u else 0,
        oldest_pending_at=u.oldest_pending_at if u else None,
        dead_letters=u.dead_letters if u else 0,
    )
    return OverviewOut(
        gateway_id=cfg.gateway.gateway.id,
        site=cfg.gateway.gateway.site,
        now=view.now(),
        agent_version=view.agent_version,
        config_version=cfg.version,
        health=HealthOut(**h.__dict__),
        uplink=uplink,
        devices_total=len(all_devices),
        devices_by_state={s: counts.get(s, 0) for s in DEVICE_STATES},
        faults_active=sum(1 for f in view.active_faults() if f.status != "pending"),
        maintenance=maintenance_out(view.maintenance_windows()),
    )


def event_out(d: FaultDraft) -> EventOut:
    return EventOut(
        event_id=d.event_id,
        device_id=d.device_id,
        device_kind=d.device_kind,
        fault_type=d.fault_type,
        state=d.state,
        severity=d.severity,
        first_seen=d.first_seen,
        observed_at=d.observed_at,
        circuit=d.circuit,
        summary=d.summary,
        evidence=d.evidence,
    )


def fault_out(view: AgentView, fault: ActiveFault, events: list[FaultDraft]) -> FaultOut:
    latest = next(
        (e for e in reversed(events) if (e.device_id, e.fault_type) == fault_key(fault)), None
    )
    ack = view.acknowledgement(fault.device_id, fault.fault_type)
    return FaultOut(
        device_id=fault.device_id,
        fault_type=fault.fault_type,
        status=fault.status,
        severity=fault.severity,
        first_seen=fault.first_seen,
        summary=fault.summary,
        flapping=fault.flapping,
        absorbed_by=fault.absorbed_by,
        members=list(fault.members),
        acknowledged=AckOut(by=ack.by, at=ack.at, note=ack.note) if ack else None,
        evidence=latest.evidence if latest else {},
    )


def fault_key(fault: ActiveFault) -> tuple[str, str]:
    return fault.device_id, fault.fault_type


def faults(view: AgentView) -> FaultsOut:
    events = view.recent_events(RECENT_EVENTS)
    return FaultsOut(
        active=[fault_out(view, f, events) for f in view.active_faults()],
        recent=[event_out(e) for e in reversed(events)],
    )


def device_detail(view: AgentView, device_id: str, lamp_test: bool) -> DeviceDetailOut | None:
    device = next((d for d in view.config.devices if d.id == device_id), None)
    if device is None:
        return None
    reading = view.latest().get(device_id)
    mine = _faults_by_device(view).get(device_id, [])
    book, now = _book(view), view.now()
    stats = view.poll_stats().get(device_id)
    base = _device_out(device, reading, mine, stats, book.device(device, now))
    events = view.recent_events(RECENT_EVENTS)
    related = [
        e
        for e in events
        if e.device_id == device_id
        or (
            device.circuit is not None
            and e.device_kind == "circuit"
            and e.circuit == device.circuit
        )
    ]
    return DeviceDetailOut(
        **base.model_dump(),
        values=dict(reading.values) if reading else {},
        errors=[f"{e.code}: {e.message}" for e in reading.errors] if reading else [],
        history=[PointOut(at=p.at, values=p.values) for p in view.history(device_id)],
        active_faults=[fault_out(view, f, events) for f in mine],
        events=[event_out(e) for e in reversed(related)],
        maintenance_until=_maintenance_until(view, device, now),
        lamp_test_supported=lamp_test,
    )


def _maintenance_until(view: AgentView, device: Device, now: datetime) -> datetime | None:
    """The latest end among the windows that cover the device (itself, its circuit, the site)."""
    targets = {
        ("device", device.id),
        ("device", view.config.gateway.gateway.id),
        ("circuit", device.circuit),
    }
    ends = [
        w.until
        for w in view.maintenance_windows()
        if w.until > now and (w.target_kind, w.target) in targets
    ]
    return max(ends, default=None)


def circuits(view: AgentView) -> list[str]:
    return sorted({d.circuit for d in view.config.devices if d.circuit is not None})
