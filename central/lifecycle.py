"""What a fault event or a gateway status does to a report: pure decisions over the ledger's rows.

The ledger (central.ledger) loads a Snapshot inside its transaction, calls `decide_fault` or
`decide_status`, and stores the Decision (rows, and SIARAN operations for the outbox) in the
same transaction. Nothing here does I/O, so every rule is unit-tested without a database.

Rules (docs/central.md, "Report lifecycle"):
- an event older (seq) than the last applied one of its fault is stale: recorded, nothing else;
- raised/updated on a fault without an open report: a new report, or the previous one reopened
  when the fault cleared less than `reopen_window_h` before; on an open report: a comment;
- a replayed raise is filed only after `replay_settle_s`; a clear arriving before that withdraws
  it (the problem was already gone); a lamp absorbed by a circuit outage is merged into it;
- cleared: the report is marked verified by the sensors (and closed if configured);
- a position outside the city boundary (or none) is a configuration error, not a report; a
  report SIARAN refused for good is 'refused', and the fault's next event files a new one;
- a gateway's Last Will: one report for the gateway after `gateway_offline_grace_s`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from central.config import SEVERITIES, Categories, Category, GatewaySite, ReportSettings
from central.geo import Boundary
from central.siaran_api import Position, Priority, ReportCreate, Reporter, StatusChange
from central.wording import (
    GATEWAY_OFFLINE,
    Routing,
    cleared_note,
    merged_into_comment,
    merged_note,
    offline_description,
    offline_title,
    online_note,
    raised_again_comment,
    reopened_note,
    report_description,
    report_title,
    update_comment,
)
from uplink.contract import FaultEvent, GatewayStatus, Location

FaultStatus = Literal["open", "cleared", "config_error", "ignored", "merged"]
ReportState = Literal["open", "verified", "closed", "merged", "withdrawn", "refused"]
OpKind = Literal["create", "comment", "status", "red_flag"]
REOPENABLE: frozenset[str] = frozenset({"verified", "closed", "merged"})
_UID_NS = uuid.UUID("5b0c9a57-7d5e-4a53-9f0e-2c1f3e9d6a10")


@dataclass(frozen=True)
class FaultKey:
    gateway_id: str
    device_id: str
    fault_type: str

    def __str__(self) -> str:
        return f"{self.gateway_id}/{self.device_id}/{self.fault_type}"


@dataclass(frozen=True)
class FaultRow:
    key: FaultKey
    device_kind: str
    status: FaultStatus
    report_uid: str | None
    last_seq: int
    severity: str
    first_seen: datetime
    last_observed_at: datetime
    cleared_at: datetime | None


@dataclass(frozen=True)
class ReportRow:
    report_uid: str
    siaran_id: str | None
    key: FaultKey
    category: Category
    agency: str
    unit: str
    kecamatan: str
    title: str
    state: ReportState
    withdrawable: bool
    sla_h: float
    opened_at: datetime
    delivered_at: datetime | None
    sla_due_at: datetime | None
    responded_at: datetime | None
    red_flagged_at: datetime | None
    reopen_count: int


@dataclass(frozen=True)
class GatewayRow:
    gateway_id: str
    location: Location | None = None
    location_note: str = ""  # "" = the gateway's own position; else how it was guessed
    category: Category | None = None
    device_count: int | None = None
    status_key: str | None = None


@dataclass(frozen=True)
class Snapshot:
    fault: FaultRow | None
    report: ReportRow | None
    gateway: GatewayRow
    absorber: ReportRow | None = None  # for an absorbed lamp: the circuit outage's report


@dataclass(frozen=True)
class OpDraft:
    report_uid: str
    kind: OpKind
    body: dict[str, Any]
    not_before: datetime | None = None


@dataclass(frozen=True)
class NewReport:
    report_uid: str
    key: FaultKey
    category: Category
    agency: str
    unit: str
    kecamatan: str
    title: str
    sla_h: float
    withdrawable: bool


@dataclass(frozen=True)
class Decision:
    outcome: str  # what happened, as recorded in the history
    detail: str = ""
    fault: FaultRow | None = None  # the fault's new row (None: unchanged)
    new_report: NewReport | None = None
    report_state: ReportState | None = None  # the new state of the snapshot's report
    reopen: bool = False  # the snapshot's report is reopened (its SLA starts again)
    withdraw: bool = False  # the snapshot's report was never sent: cancel its operations
    ops: tuple[OpDraft, ...] = ()


@dataclass(frozen=True)
class Policy:
    reports: ReportSettings
    categories: Categories
    boundary: Boundary
    sites: Mapping[str, GatewaySite]
    reporter: Reporter


def report_uid_for(event_id: uuid.UUID | str) -> str:
    """The report's own id (and creation idempotency key): derived from the opening event."""
    return str(uuid.uuid5(_UID_NS, str(event_id)))


def category_of(kind: str, gateway: GatewayRow, site: GatewaySite | None) -> Category:
    if kind in ("streetlight", "circuit"):
        return "streetlight"
    if kind == "hotspot":
        return "wifi"
    if site is not None:
        return site.category
    return gateway.category or "streetlight"


def _site_location(site: GatewaySite | None) -> Location | None:
    return None if site is None or site.location is None else Location(**site.location.model_dump())


def gateway_location(gateway: GatewayRow, site: GatewaySite | None) -> tuple[Location | None, str]:
    configured = _site_location(site)
    if configured is not None:
        return configured, ""
    return gateway.location, gateway.location_note


def _status_op(uid: str, status: str, note: str, at: datetime | None = None) -> OpDraft:
    body = StatusChange.model_validate({"status": status, "note": note}).model_dump(mode="json")
    return OpDraft(uid, "status", body, at)


def _comment_op(uid: str, text: str) -> OpDraft:
    return OpDraft(uid, "comment", {"body": text, "author": "sensor"})


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


class _Fault:
    """Decisions for one fault event (a small namespace over its inputs)."""

    def __init__(self, ev: FaultEvent, snap: Snapshot, p: Policy, now: datetime) -> None:
        self.ev, self.snap, self.p, self.now = ev, snap, p, now
        self.key = FaultKey(ev.gateway_id, ev.device_id, ev.fault_type)

    def row(self, status: FaultStatus, report_uid: str | None, **over: Any) -> FaultRow:
        ev, f = self.ev, self.snap.fault
        base = FaultRow(
            key=self.key,
            device_kind=ev.device_kind,
            status=status,
            report_uid=report_uid,
            last_seq=ev.seq,
            severity=ev.severity,
            first_seen=ev.first_seen,
            last_observed_at=ev.observed_at,
            cleared_at=f.cleared_at if f is not None else None,
        )
        return replace(base, **over)

    def decide(self) -> Decision:
        ev, f = self.ev, self.snap.fault
        if f is not None and ev.seq <= f.last_seq and ev.observed_at <= f.last_observed_at:
            # (a gateway replaced with a fresh outbox counts from 1 again, but with newer times)
            return Decision("stale", f"seq {ev.seq} <= {f.last_seq}: a later one was applied")
        if ev.state == "cleared":
            return self.cleared()
        r = self.snap.report
        if f is not None and f.status == "open" and r is not None and r.state == "open":
            text = raised_again_comment(ev) if ev.state == "raised" else update_comment(ev)
            row = self.row("open", r.report_uid, first_seen=f.first_seen)
            return Decision("commented", fault=row, ops=(_comment_op(r.report_uid, text),))
        return self.opened()

    def opened(self) -> Decision:
        ev, f, r, p = self.ev, self.snap.fault, self.snap.report, self.p
        keep = f.report_uid if f is not None else None
        if _rank(ev.severity) < _rank(p.reports.min_severity):
            return Decision(
                "below_min_severity",
                f"{ev.severity} < {p.reports.min_severity}",
                fault=self.row("ignored", keep),
            )
        site = p.sites.get(ev.gateway_id)
        loc, note = ev.location, ""
        if loc is None and ev.device_kind == "gateway":
            loc, note = gateway_location(self.snap.gateway, site)
        if loc is None:
            return Decision(
                "config_error", "no position known", fault=self.row("config_error", keep)
            )
        if not p.boundary.contains(loc.lat, loc.lon):
            detail = f"position {loc.lat:.6f}, {loc.lon:.6f} is outside {p.boundary.name}"
            return Decision("config_error", detail, fault=self.row("config_error", keep))
        if (
            f is not None
            and r is not None
            and r.state in REOPENABLE
            and f.cleared_at is not None
            and ev.first_seen - f.cleared_at <= timedelta(hours=p.reports.reopen_window_h)
        ):
            op = _status_op(r.report_uid, "reopened", reopened_note(ev, f.cleared_at))
            return Decision(
                "reopened",
                fault=self.row("open", r.report_uid),
                report_state="open",
                reopen=True,
                ops=(op,),
            )
        category = category_of(ev.device_kind, self.snap.gateway, site)
        cat = p.categories.of(category)
        agency, unit = cat.assignment(loc.kecamatan)
        priority: Priority = p.reports.priority[ev.severity]
        routing = Routing(cat.label, agency, unit, priority)
        uid = report_uid_for(ev.event_id)
        title = report_title(ev, loc)
        create = ReportCreate(
            category=cat.siaran_category,
            title=title,
            description=report_description(ev, loc, routing, note),
            position=Position(**loc.model_dump()),
            agency=agency,
            unit=unit,
            priority=priority,
            reporter=p.reporter,
            external_ref=f"siaran-edge:{self.key}",
            observed_at=ev.first_seen,
            evidence=dict(ev.evidence),
        )
        settle = p.reports.replay_settle_s
        later = self.now + timedelta(seconds=settle) if ev.replayed and settle > 0 else None
        new = NewReport(
            uid, self.key, category, agency, unit, loc.kecamatan, title, cat.sla_h, ev.replayed
        )
        op = OpDraft(uid, "create", create.model_dump(mode="json"), later)
        return Decision("opened", fault=self.row("open", uid), new_report=new, ops=(op,))

    def cleared(self) -> Decision:
        ev, f, r, p = self.ev, self.snap.fault, self.snap.report, self.p
        absorbed = ev.evidence.get("absorbed_by")
        status: FaultStatus = "merged" if absorbed is not None else "cleared"
        if f is None or f.status != "open" or r is None:
            keep = f.report_uid if f is not None else None
            first = f.first_seen if f is not None else ev.first_seen
            row = self.row(status, keep, cleared_at=ev.observed_at, first_seen=first)
            return Decision("clear_recorded", "no open report", fault=row)
        row = self.row(status, r.report_uid, cleared_at=ev.observed_at, first_seen=f.first_seen)
        if r.siaran_id is None and (r.withdrawable or absorbed is not None):
            why = "merged before it was filed" if absorbed else "cleared before it was filed"
            return Decision(
                "withdrawn",
                why,
                fault=replace(row, report_uid=None),
                report_state="withdrawn",
                withdraw=True,
            )
        if absorbed is not None:
            into = self.snap.absorber
            ref = (into.siaran_id if into else None) or f"sensor {absorbed}"
            ops = [_status_op(r.report_uid, "closed", merged_note(ev, ref))]
            if into is not None:
                merged = r.siaran_id or r.title
                ops.append(_comment_op(into.report_uid, merged_into_comment(ev, merged)))
            return Decision(
                "merged", str(absorbed), fault=row, report_state="merged", ops=tuple(ops)
            )
        closing = p.reports.close_on_clear
        ops = [_status_op(r.report_uid, "verified", cleared_note(ev, closing))]
        if closing:
            ops.append(_status_op(r.report_uid, "closed", ""))
        state: ReportState = "closed" if closing else "verified"
        return Decision("verified", fault=row, report_state=state, ops=tuple(ops))


def decide_fault(ev: FaultEvent, snap: Snapshot, policy: Policy, now: datetime) -> Decision:
    return _Fault(ev, snap, policy, now).decide()


def status_key(st: GatewayStatus) -> str:
    return f"{st.state}|{st.graceful}|{st.at.isoformat()}"


def offline_key(gateway_id: str) -> FaultKey:
    return FaultKey(gateway_id, gateway_id, GATEWAY_OFFLINE)


def decide_status(st: GatewayStatus, snap: Snapshot, p: Policy, now: datetime) -> Decision:
    """A gateway's birth or Last Will: one report for a gateway gone without a goodbye."""
    if snap.gateway.status_key == status_key(st):
        return Decision("duplicate_status")
    f, r = snap.fault, snap.report
    is_open = f is not None and f.status == "open" and r is not None
    key = offline_key(st.gateway_id)

    def row(status: FaultStatus, uid: str | None, **over: Any) -> FaultRow:
        base = FaultRow(
            key, "gateway", status, uid, 0, "major", st.at, st.at, f.cleared_at if f else None
        )
        return replace(base, **over)

    if st.state == "online":
        if not is_open or f is None or r is None:
            last = snap.gateway.status_key or ""
            # the birth is refreshed every few minutes: only a change goes to the history
            return Decision("status_refresh" if last.startswith("online|") else "status_recorded")
        done = row("cleared", r.report_uid, first_seen=f.first_seen, cleared_at=st.at)
        if r.siaran_id is None and r.withdrawable:
            return Decision(
                "withdrawn",
                "back online before it was filed",
                fault=replace(done, report_uid=None),
                report_state="withdrawn",
                withdraw=True,
            )
        closing = p.reports.close_on_clear
        ops = [_status_op(r.report_uid, "verified", online_note(st.at))]
        if closing:
            ops.append(_status_op(r.report_uid, "closed", ""))
        state: ReportState = "closed" if closing else "verified"
        return Decision("verified", fault=done, report_state=state, ops=tuple(ops))
    if st.graceful:
        return Decision("status_recorded", "offline (graceful: a planned stop)")
    if is_open:
        return Decision("status_recorded", "offline again, report open")
    site = p.sites.get(st.gateway_id)
    loc, note = gateway_location(snap.gateway, site)
    keep = f.report_uid if f is not None else None
    if loc is None:
        return Decision("config_error", "gateway position unknown", fault=row("config_error", keep))
    if not p.boundary.contains(loc.lat, loc.lon):
        detail = f"gateway position {loc.lat:.6f}, {loc.lon:.6f} is outside {p.boundary.name}"
        return Decision("config_error", detail, fault=row("config_error", keep))
    window = timedelta(hours=p.reports.reopen_window_h)
    if (
        f is not None
        and r is not None
        and r.state in REOPENABLE
        and f.cleared_at is not None
        and st.at - f.cleared_at <= window
    ):
        note_text = "Gateway terputus lagi tanpa pamit; laporan dibuka kembali."
        op = _status_op(r.report_uid, "reopened", note_text)
        return Decision(
            "reopened", fault=row("open", r.report_uid), report_state="open", reopen=True, ops=(op,)
        )
    category = category_of("gateway", snap.gateway, site)
    cat = p.categories.of(category)
    agency, unit = cat.assignment(loc.kecamatan)
    priority: Priority = p.reports.priority["major"]
    routing = Routing(cat.label, agency, unit, priority)
    name = site.name if site is not None else ""
    uid = str(uuid.uuid5(_UID_NS, f"{key}|{status_key(st)}"))
    title = offline_title(st.gateway_id, name, loc)
    create = ReportCreate(
        category=cat.siaran_category,
        title=title,
        description=offline_description(
            st.gateway_id, name, st.at, snap.gateway.device_count, loc, routing, note
        ),
        position=Position(**loc.model_dump()),
        agency=agency,
        unit=unit,
        priority=priority,
        reporter=p.reporter,
        external_ref=f"siaran-edge:{key}",
        observed_at=st.at,
        evidence={"agent_version": st.agent_version, "last_seq": st.last_seq},
    )
    grace = p.reports.gateway_offline_grace_s
    later = now + timedelta(seconds=grace) if grace > 0 else None
    new = NewReport(uid, key, category, agency, unit, loc.kecamatan, title, cat.sla_h, grace > 0)
    op = OpDraft(uid, "create", create.model_dump(mode="json"), later)
    return Decision("opened", fault=row("open", uid), new_report=new, ops=(op,))
