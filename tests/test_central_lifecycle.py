"""The report lifecycle's decisions, without I/O: a snapshot of the ledger in, a decision out."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from central.config import CentralConfig, GatewaySite, SiteLocation
from central.lifecycle import (
    Decision,
    FaultKey,
    FaultRow,
    GatewayRow,
    Policy,
    ReportRow,
    Snapshot,
    decide_fault,
    decide_status,
    report_uid_for,
    status_key,
)
from central.siaran_api import ReportCreate, Reporter
from central.wording import GATEWAY_OFFLINE
from tests.central_helpers import JAKARTA, SERPONG, T0, fault_event, gateway_status
from uplink.contract import FaultEvent, Location

KEY = FaultKey("gw-01", "pju-0042", "lamp_failure")


def policy(**reports: Any) -> Policy:
    config = CentralConfig.model_validate(
        {"reports": reports, "gateways": {"gw-07": {"name": "Panel 7", "category": "wifi"}}}
    )
    return Policy(
        config.reports,
        config.categories,
        config.boundary.build(),
        config.gateways,
        Reporter(id="siaran-edge"),
    )


def fault_row(status: str = "open", uid: str | None = "r1", **over: Any) -> FaultRow:
    row = FaultRow(KEY, "streetlight", status, uid, 5, "major", T0, T0, None)  # type: ignore[arg-type]
    return replace(row, **over)


def report(state: str = "open", siaran_id: str | None = "SRN-1", **over: Any) -> ReportRow:
    row = ReportRow(
        "r1", siaran_id, KEY, "streetlight", "Dishub", "UPT", "Pamulang", "t", state,  # type: ignore[arg-type]
        False, 72, T0, T0, T0 + timedelta(hours=72), None, None, 0,
    )  # fmt: skip
    return replace(row, **over)


def decide(
    ev: FaultEvent, f: FaultRow | None = None, r: ReportRow | None = None, **p: Any
) -> Decision:
    return decide_fault(ev, Snapshot(f, r, GatewayRow("gw-01")), policy(**p), T0)


def event(seq: int = 6, state: str = "raised", **over: Any) -> FaultEvent:
    return fault_event(seq, state=state, at=over.pop("at", T0), **over)


def test_a_new_fault_opens_a_report_with_its_routing() -> None:
    ev = event(location=SERPONG, severity="critical")
    d = decide(ev)
    assert d.outcome == "opened" and d.new_report is not None
    assert d.new_report.report_uid == report_uid_for(ev.event_id)
    assert (d.new_report.agency, d.new_report.unit) == (
        "Dinas Perhubungan (Dishub)",
        "UPT PJU Wilayah I",
    )
    (op,) = d.ops
    assert op.kind == "create" and op.not_before is None
    body = ReportCreate.model_validate(op.body)
    assert body.priority == "darurat"
    assert body.external_ref == "siaran-edge:gw-01/pju-0042/lamp_failure"
    assert d.fault is not None and d.fault.status == "open" and d.fault.last_seq == 6


def test_hotspot_faults_go_to_diskominfo() -> None:
    d = decide(event(kind="hotspot", fault_type="uplink_down", device="ap-01", circuit=None))
    assert d.new_report is not None and d.new_report.category == "wifi"
    assert d.new_report.agency.startswith("Dinas Komunikasi")
    assert "Koneksi internet hotspot terputus" in ReportCreate.model_validate(d.ops[0].body).title


def test_an_older_event_is_stale() -> None:
    d = decide(event(seq=5), fault_row(last_seq=5), report())
    assert d.outcome == "stale" and not d.ops and d.fault is None


def test_a_replaced_gateway_counting_from_one_again_is_not_stale() -> None:
    later = event(seq=1, state="updated", at=T0 + timedelta(days=3))
    assert decide(later, fault_row(last_seq=900), report()).outcome == "commented"


def test_a_refused_report_gets_a_new_one_on_the_next_event() -> None:
    d = decide(event(state="updated"), fault_row(), report("refused", None))
    assert d.outcome == "opened" and d.new_report is not None


def test_update_on_an_open_report_is_a_comment() -> None:
    d = decide(event(state="updated", severity="critical"), fault_row(), report())
    assert d.outcome == "commented"
    assert [o.kind for o in d.ops] == ["comment"]
    assert "kritis" in d.ops[0].body["body"]


def test_an_update_without_a_report_opens_one() -> None:
    assert decide(event(state="updated")).outcome == "opened"


@pytest.mark.parametrize(
    ("location", "detail"),
    [(JAKARTA, "outside Kota Tangerang Selatan"), (None, "no position")],
)
def test_a_position_outside_the_city_is_a_configuration_error(
    location: Location | None, detail: str
) -> None:
    d = decide(event(location=location))
    assert d.outcome == "config_error" and detail in d.detail
    assert not d.ops and d.fault is not None and d.fault.status == "config_error"


def test_below_min_severity_is_recorded_only() -> None:
    d = decide(event(severity="info"))
    assert d.outcome == "below_min_severity" and not d.ops


def test_clear_verifies_or_closes() -> None:
    d = decide(event(state="cleared"), fault_row(), report())
    assert d.outcome == "verified" and d.report_state == "verified"
    assert [o.body["status"] for o in d.ops] == ["verified"]
    assert d.fault is not None and d.fault.cleared_at == T0
    d = decide(event(state="cleared"), fault_row(), report(), close_on_clear=True)
    assert [o.body["status"] for o in d.ops] == ["verified", "closed"]
    assert d.report_state == "closed"


def test_clear_without_a_report_is_remembered() -> None:
    d = decide(event(state="cleared"))
    assert d.outcome == "clear_recorded" and d.fault is not None
    # so that the raise it followed, if it comes late (another consumer), is stale
    late = decide(event(seq=5), d.fault, None)
    assert late.outcome == "stale"


@pytest.mark.parametrize(("gap_h", "outcome"), [(71.9, "reopened"), (72.1, "opened")])
def test_reopen_window(gap_h: float, outcome: str) -> None:
    cleared = fault_row("cleared", cleared_at=T0)
    ev = event(at=T0 + timedelta(hours=gap_h, minutes=5))  # first_seen = at - 5 min
    d = decide(ev, cleared, report("verified"))
    assert d.outcome == outcome
    if outcome == "reopened":
        assert d.reopen and d.report_state == "open" and d.ops[0].body["status"] == "reopened"
    else:
        assert d.new_report is not None and d.new_report.report_uid != "r1"


def test_a_withdrawn_report_is_not_reopened() -> None:
    d = decide(event(), fault_row("cleared", cleared_at=T0), report("withdrawn", None))
    assert d.outcome == "opened"


def test_replayed_raise_waits_and_its_clear_withdraws_it() -> None:
    d = decide(event(replayed=True), replay_settle_s=120)
    assert d.ops[0].not_before == T0 + timedelta(seconds=120)
    assert d.new_report is not None and d.new_report.withdrawable
    unsent = report(siaran_id=None, withdrawable=True)
    w = decide(event(seq=7, state="cleared", replayed=True), fault_row(), unsent)
    assert w.outcome == "withdrawn" and w.withdraw and w.report_state == "withdrawn"
    assert w.fault is not None and w.fault.report_uid is None and not w.ops


def test_a_live_report_is_not_withdrawn_even_if_unsent() -> None:
    unsent = report(siaran_id=None, withdrawable=False)
    assert decide(event(state="cleared"), fault_row(), unsent).outcome == "verified"


def test_absorbed_lamp_is_merged_into_the_circuit_report() -> None:
    circuit = replace(report(), report_uid="c1", siaran_id="SRN-9")
    ev = event(
        state="cleared", evidence={"absorbed_by": "PNL-7", "absorbed_into": "circuit_outage"}
    )
    d = decide_fault(
        ev, Snapshot(fault_row(), report(), GatewayRow("gw-01"), circuit), policy(), T0
    )
    assert d.outcome == "merged" and d.report_state == "merged"
    assert [(o.report_uid, o.kind) for o in d.ops] == [("r1", "status"), ("c1", "comment")]
    assert "SRN-9" in d.ops[0].body["note"] and d.ops[0].body["status"] == "closed"
    assert d.fault is not None and d.fault.status == "merged"
    unsent = decide(ev, fault_row(), report(siaran_id=None))
    assert unsent.outcome == "withdrawn"


def test_circuit_report_lists_its_lamps() -> None:
    lamps = ["pju-1", "pju-2", "pju-3"]
    ev = event(
        kind="circuit", device="PNL-7", fault_type="circuit_outage",
        evidence={"lamps": lamps, "lamps_total": 10},
    )  # fmt: skip
    body = ReportCreate.model_validate(decide(ev).ops[0].body)
    assert "Lampu yang terdampak (3 dari 10): pju-1, pju-2, pju-3" in body.description
    assert body.title.startswith("Sirkuit PJU padam: sirkuit PNL-07/A (3 lampu)")


# -- gateway status ------------------------------------------------------------------------


def offline_snapshot(f: FaultRow | None = None, r: ReportRow | None = None, **gw: Any) -> Snapshot:
    return Snapshot(f, r, GatewayRow("gw-07", **gw))


def test_last_will_opens_one_report_for_the_gateway_after_its_grace() -> None:
    p = policy(gateway_offline_grace_s=600)
    will = gateway_status("gw-07", "offline", graceful=False, at=T0)
    d = decide_status(will, offline_snapshot(location=SERPONG), p, T0)
    assert d.outcome == "opened" and d.new_report is not None
    assert d.new_report.key.fault_type == GATEWAY_OFFLINE
    assert d.new_report.category == "wifi"  # from the configured site
    assert d.ops[0].not_before == T0 + timedelta(minutes=10)
    body = ReportCreate.model_validate(d.ops[0].body)
    assert "gw-07 (Panel 7)" in body.title
    # back before the grace ran out: nothing was filed
    unsent = report(siaran_id=None, withdrawable=True)
    f = fault_row(key=d.new_report.key)
    online = gateway_status("gw-07", "online", at=T0 + timedelta(minutes=2))
    back = decide_status(online, offline_snapshot(f, unsent), p, T0)
    assert back.outcome == "withdrawn"
    # back after it was filed: verified
    assert decide_status(online, offline_snapshot(f, report()), p, T0).outcome == "verified"


def test_gateway_statuses_that_file_nothing() -> None:
    p = policy()
    graceful = gateway_status("gw-07", "offline", graceful=True)
    assert decide_status(graceful, offline_snapshot(), p, T0).outcome == "status_recorded"
    will = gateway_status("gw-07", "offline", graceful=False)
    seen = offline_snapshot(status_key=status_key(will), location=SERPONG)
    assert decide_status(will, seen, p, T0).outcome == "duplicate_status"
    assert decide_status(will, offline_snapshot(), p, T0).outcome == "config_error"
    birth = gateway_status("gw-07", "online")
    assert decide_status(birth, offline_snapshot(), p, T0).outcome == "status_recorded"
    refresh = offline_snapshot(status_key=status_key(birth))
    later = gateway_status("gw-07", "online", at=birth.at + timedelta(minutes=5))
    assert decide_status(later, refresh, p, T0).outcome == "status_refresh"
    site = GatewaySite(location=SiteLocation(**SERPONG.model_dump()))
    p2 = replace(p, sites={"gw-07": site})
    assert decide_status(will, offline_snapshot(), p2, T0).outcome == "opened"
