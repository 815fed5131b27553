"""What the engine keeps per fault and the FaultDrafts it makes of it (summaries in Indonesian)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from agent.faults.correlation import GroupFault
from agent.faults.lifecycle import Lifecycle
from agent.faults.rule import CIRCUIT_OUTAGE, Severity
from firmware_config.models import Device
from firmware_config.models import Location as ConfigLocation
from uplink.contract import DeviceKind, EvidenceValue, FaultDraft, FaultState, Location

SUMMARY_MAX = 500


class FaultRecord(BaseModel):
    """One (device, fault type): its lifecycle (the truth) and what central was told (reported)."""

    device_id: str
    fault_type: str
    device_kind: DeviceKind
    life: Lifecycle = Field(default_factory=Lifecycle)
    severity: Severity = "major"  # of the latest bad observation
    summary: str = ""  # of the latest bad observation that had one
    evidence: dict[str, EvidenceValue] = Field(default_factory=dict)
    hold_until: datetime | None = None  # not raised before: correlation gets its window
    absorbed_by: str | None = None  # the circuit or gateway fault that stands for it
    reported: bool = False  # a raised event went out and no cleared one since
    reported_severity: Severity | None = None
    reported_flapping: bool = False
    reported_first_seen: datetime | None = None
    reported_summary: str = ""

    @property
    def trivial(self) -> bool:
        return self.life.trivial and not self.reported and self.absorbed_by is None

    def mark_reported(self, on: bool) -> None:
        self.reported = on
        self.reported_severity = self.severity if on else None
        self.reported_flapping = self.life.flapping if on else False
        self.reported_first_seen = self.life.bad_since if on else None
        self.reported_summary = self.summary if on else ""


@dataclass(frozen=True)
class Subject:
    """Who an event is about."""

    device_id: str
    kind: DeviceKind
    location: Location | None = None
    circuit: str | None = None

    @classmethod
    def of(cls, device: Device) -> Subject:
        return cls(device.id, device.kind, location(device.location), device.circuit)


def location(loc: ConfigLocation) -> Location:
    return Location.model_validate(loc.model_dump())


def draft(
    subject: Subject,
    fault_type: str,
    state: FaultState,
    severity: Severity,
    first_seen: datetime,
    observed_at: datetime,
    synced: bool,
    summary: str,
    evidence: dict[str, EvidenceValue],
) -> FaultDraft:
    if len(summary) > SUMMARY_MAX:
        summary = summary[: SUMMARY_MAX - 1] + "…"
    return FaultDraft(
        device_id=subject.device_id,
        device_kind=subject.kind,
        fault_type=fault_type,
        state=state,
        severity=severity,
        first_seen=first_seen,
        observed_at=observed_at,
        clock_synced=synced,
        location=subject.location,
        circuit=subject.circuit,
        summary=summary,
        evidence=evidence,
    )


def _base_summary(rec: FaultRecord) -> str:
    return rec.summary or f"Gangguan {rec.fault_type} pada {rec.device_id}"


def _first_seen(rec: FaultRecord, at: datetime) -> datetime:
    return rec.reported_first_seen or rec.life.bad_since or at


def record_raised(subject: Subject, rec: FaultRecord, at: datetime, synced: bool) -> FaultDraft:
    evidence: dict[str, EvidenceValue] = {**rec.evidence, "bad_observations": rec.life.bad_count}
    if rec.life.flapping:
        evidence["flapping"] = True
    first = rec.life.bad_since or at
    return draft(
        subject, rec.fault_type, "raised", rec.severity, first, at, synced,
        _base_summary(rec), evidence,
    )  # fmt: skip


def record_updated(
    subject: Subject,
    rec: FaultRecord,
    at: datetime,
    synced: bool,
    previous_severity: Severity | None,
    flapping: bool,
) -> FaultDraft:
    evidence: dict[str, EvidenceValue] = {**rec.evidence, "bad_observations": rec.life.bad_count}
    summary = _base_summary(rec)
    if previous_severity is not None:
        evidence["previous_severity"] = previous_severity
        summary += f" (tingkat {previous_severity} → {rec.severity})"
    if flapping:
        evidence["flapping"] = True
        evidence["transitions"] = len(rec.life.transitions)
        summary += " (gangguan berulang: muncul dan hilang berkali-kali)"
    return draft(
        subject, rec.fault_type, "updated", rec.severity, _first_seen(rec, at), at, synced,
        summary, evidence,
    )  # fmt: skip


def record_cleared(
    subject: Subject,
    rec: FaultRecord,
    at: datetime,
    synced: bool,
    absorbed_by: GroupFault | None = None,
    reason: str | None = None,
) -> FaultDraft:
    was = rec.reported_summary or _base_summary(rec)
    evidence: dict[str, EvidenceValue] = {}
    if absorbed_by is not None:
        evidence["absorbed_by"] = absorbed_by.device_id
        evidence["absorbed_into"] = absorbed_by.fault_type
        what = (
            f"padamnya sirkuit {absorbed_by.circuit}"
            if absorbed_by.fault_type == CIRCUIT_OUTAGE
            else f"gangguan jaringan gateway {absorbed_by.device_id}"
        )
        summary = f"Digabung ke laporan {what}: {was}"
    elif reason is not None:
        evidence["reason"] = reason
        summary = f"Tidak dipantau lagi ({reason}): {was}"
    else:
        evidence["good_observations"] = rec.life.good_count
        summary = f"Pulih: {was}"
    if rec.reported_flapping:
        evidence["was_flapping"] = True
    return draft(
        subject, rec.fault_type, "cleared", rec.reported_severity or rec.severity,
        _first_seen(rec, at), at, synced, summary, evidence,
    )  # fmt: skip


def group_draft(
    subject: Subject,
    group: GroupFault,
    state: FaultState,
    severity: Severity,
    at: datetime,
    synced: bool,
    total: int,
    still_down: list[str],
    detail: dict[str, EvidenceValue] | None = None,
) -> FaultDraft:
    """A circuit outage or gateway network fault, naming its members (detail: more evidence)."""
    circuit = group.fault_type == CIRCUIT_OUTAGE
    noun = "lamps" if circuit else "devices"
    if state == "cleared":
        names = group.reported_members
        evidence: dict[str, EvidenceValue] = {noun: list(names), "still_down": list(still_down)}
        summary = (
            f"Sirkuit {group.circuit} menyala kembali"
            if circuit
            else f"Perangkat di belakang gateway {group.device_id} terjangkau kembali"
        )
    else:
        names = group.members
        added = sorted(set(names) - set(group.reported_members))
        evidence = {noun: list(names), f"{noun}_total": total, **(detail or {})}
        if state == "updated":
            evidence["added"] = list(added)
        n = len(names)
        summary = (
            f"Sirkuit {group.circuit} padam: {n} dari {total} lampu mati atau tidak terjangkau"
            " sekaligus"
            if circuit
            else f"Gateway {group.device_id}: {n} dari {total} perangkat tidak terjangkau"
            " sekaligus (port jaringan, switch atau catu daya gateway?)"
        )
    first = group.reported_first_seen or group.first_seen or at
    return draft(subject, group.fault_type, state, severity, first, at, synced, summary, evidence)
