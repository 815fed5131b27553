"""Fault events become SIARAN reports, end to end: a real mosquitto, the SIARAN sandbox, the
central consumer in this test's loop, and a stand-in gateway publishing contract messages."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from agent.clock import FakeClock
from tests.central_helpers import (
    SERPONG,
    TOKEN,
    Api,
    Gateway,
    central_config,
    fault_event,
    gateway_status,
    running,
    sandbox,
)
from tests.servers import Mosquitto
from tests.waiting import until
from uplink.contract import Ack


async def test_fault_raised_updated_cleared_reopened(broker: Mosquitto, tmp_path: Path) -> None:
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        config = central_config(tmp_path / "central", broker.port, box.url)
        gw = Gateway(broker.port)
        gw.subscribe(gw.topics.ack)
        try:
            async with running(config) as central:
                now = datetime.now(UTC)
                raised = fault_event(1, at=now, evidence={"power_w": 0.0, "lamp_on": True})
                await gw.fault(raised)
                await gw.fault(raised)  # a QoS 1 redelivery: same event id
                report = await until(lambda: _only(api), what="one report filed")
                assert report.status == "new"
                assert report.agency == "Dinas Perhubungan (Dishub)"
                assert report.unit == "UPT PJU Wilayah II"  # Pamulang
                assert report.category == "penerangan_jalan_umum"
                assert report.priority == "tinggi"  # major
                assert (report.position.lat, report.position.lon) == (-6.3431, 106.7372)
                for needed in (
                    "Lampu PJU mati",
                    "pju-0042",
                    "Jl. Siliwangi No. 1",
                    "Kelurahan: Pamulang Barat",
                    "Kecamatan: Pamulang",
                    "Koordinat: -6.343100, 106.737200",
                    "Sejak: ",
                    "WIB",
                    "power_w: 0.0",
                    "Sirkuit/panel: PNL-07/A",
                    "Tindakan yang disarankan",
                ):
                    assert needed in report.description, needed
                assert "pju-0042" in report.title and "Pamulang" in report.title

                await gw.fault(fault_event(2, state="updated", severity="critical", at=now))
                await until(lambda: _comments(api, 1), what="update became a comment")

                cleared = now + timedelta(minutes=10)
                await gw.fault(fault_event(3, state="cleared", at=cleared, evidence={}))
                await until(lambda: _status(api, "verified"), what="verified by the sensors")

                again = fault_event(4, at=cleared + timedelta(hours=2))  # within 72 h
                await gw.fault(again)
                report = await until(lambda: _status(api, "reopened"), what="reopened")
                assert await api.count() == 1
                assert "muncul lagi" in report.comments[-1].body
                await until(lambda: central.outcomes["reopened"] == 1)
                assert central.outcomes["duplicate"] == 1

                acks = await until(lambda: _acks(gw, up_to=4), what="ack up to seq 4")
                assert acks[-1].gateway_id == "gw-01"
        finally:
            gw.close()


async def test_replayed_fault_already_gone_is_not_filed(broker: Mosquitto, tmp_path: Path) -> None:
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        config = central_config(
            tmp_path / "central", broker.port, box.url, reports={"replay_settle_s": 1.5}
        )
        gw = Gateway(broker.port)
        try:
            async with running(config) as central:
                old = datetime.now(UTC) - timedelta(hours=3)
                # a backlog sent after an outage: one lamp failed and was fixed meanwhile,
                # another failed and is still dark
                await gw.fault(fault_event(1, "pju-01", replayed=True, at=old))
                clear = fault_event(
                    2, "pju-01", "cleared", replayed=True, at=old + timedelta(hours=1)
                )
                await gw.fault(clear)
                await gw.fault(fault_event(3, "pju-02", replayed=True, at=old))
                report = await until(lambda: _only(api), what="the lasting fault filed")
                assert "pju-02" in report.title
                assert "dikirim terlambat" in report.description
                history = await central.ledger.history("gw-01")
                assert [h["outcome"] for h in history] == ["opened", "withdrawn", "opened"]
                counts = await central.ledger.counts()
                assert counts["ops_cancelled"] == 1
                assert await api.count() == 1
        finally:
            gw.close()


async def test_circuit_outage_is_one_report_listing_its_lamps(
    broker: Mosquitto, tmp_path: Path
) -> None:
    lamps = [f"pju-0{i}" for i in range(1, 6)]
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        config = central_config(tmp_path / "central", broker.port, box.url)
        gw = Gateway(broker.port)
        try:
            async with running(config):
                # one lamp was reported on its own before the rest of its circuit went dark
                await gw.fault(fault_event(1, "pju-03"))
                lamp_report = await until(lambda: _only(api), what="lamp report")
                outage = fault_event(
                    2,
                    "PNL-07-A",
                    kind="circuit",
                    fault_type="circuit_outage",
                    severity="critical",
                    evidence={"lamps": lamps, "lamps_total": 8},
                    summary="Sirkuit PNL-07/A padam: 5 dari 8 lampu mati sekaligus",
                )
                await gw.fault(outage)
                absorbed = fault_event(
                    3,
                    "pju-03",
                    "cleared",
                    evidence={"absorbed_by": "PNL-07-A", "absorbed_into": "circuit_outage"},
                )
                await gw.fault(absorbed)
                merged = await until(
                    lambda: _report_in(api, lamp_report.id, "closed"), what="lamp report merged"
                )
                assert "Digabung" in merged.comments[-1].body
                reports = await api.reports()
                assert len(reports) == 2
                circuit = next(r for r in reports if r.id != lamp_report.id)
                assert circuit.title.startswith("Sirkuit PJU padam: sirkuit PNL-07/A (5 lampu)")
                assert (
                    "Lampu yang terdampak (5 dari 8): pju-01, pju-02, pju-03, pju-04, pju-05"
                    in (circuit.description)
                )
                assert circuit.priority == "darurat"
                circuit = await until(lambda: _report_in(api, circuit.id, "new", comments=1))
                assert lamp_report.id in circuit.comments[0].body
        finally:
            gw.close()


async def test_gateway_last_will_is_one_report(broker: Mosquitto, tmp_path: Path) -> None:
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        site = {"name": "Panel PJU Jl. Raya Serpong", "location": SERPONG.model_dump()}
        config = central_config(
            tmp_path / "central", broker.port, box.url, gateways={"gw-07": site}
        )
        will = gateway_status("gw-07", "offline", graceful=False)
        async with running(config) as central:
            gw = Gateway(broker.port, "gw-07", will=will)
            await gw.status(gateway_status("gw-07", "online"))
            # the gateway's devices had faults of their own: they are not what goes offline
            for i in range(3):
                await gw.fault(fault_event(i + 1, f"pju-{i}", gw="gw-07", location=SERPONG))
            await until(lambda: _count(api, 3), what="device reports")
            gw.vanish()  # power cut: the broker publishes the Last Will
            report = await until(lambda: _titled(api, "offline"), what="offline report")
            assert "gw-07" in report.title and "Panel PJU Jl. Raya Serpong" in report.title
            assert report.unit == "UPT PJU Wilayah I"  # Serpong
            assert "Last Will" in report.description
            assert "12 perangkat" in report.description  # from its birth message
            await until(lambda: central.outcomes["status_opened"] == 1)
            assert await api.count() == 4  # one for the gateway, not one per device

            back = Gateway(broker.port, "gw-07")
            try:
                await back.status(gateway_status("gw-07", "online"))
                await until(lambda: _titled(api, "offline", status="verified"), what="back")
            finally:
                back.close()
        assert await api.count() == 4


async def test_late_agency_is_red_flagged_once(broker: Mosquitto, tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC))
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        config = central_config(
            tmp_path / "central", broker.port, box.url, escalation={"check_interval_s": 600}
        )
        watcher = Gateway(broker.port, "watcher")
        watcher.subscribe(config.escalation.topic)
        gw = Gateway(broker.port)
        try:
            async with running(config, clock) as central:
                await gw.fault(fault_event(1, "pju-01"))
                await gw.fault(fault_event(2, "pju-02"))
                await until(lambda: _count(api, 2), what="two reports")
                await until(lambda: _delivered(central, 2), what="both delivered")
                answered = next(r for r in await api.reports() if "pju-02" in r.title)
                await _agency_responds(box.url, answered.id)

                await clock.advance(71 * 3600)  # SLA 72 h: not yet
                await until(lambda: central.escalator.stats["rounds"] >= 1, what="its loop runs")
                # a round may have begun before the clock's jump: check at this time too
                assert await central.escalator.check() == 0
                assert not any(r.red_flag for r in await api.reports())

                await clock.advance(2 * 3600)
                await central.escalator.check()
                late = await until(lambda: _flagged(api), what="red flag")
                assert "pju-01" in late.title
                assert "72 jam" in (late.red_flag_reason or "")
                events = await until(lambda: watcher.received, what="escalation event")
                body = json.loads(events[0][1])
                assert body["report_id"] == late.id and body["agency"] == late.agency

                await clock.advance(24 * 3600)  # more rounds, concurrent ones: nothing more
                again = await asyncio.gather(*(central.escalator.check() for _ in range(3)))
                assert again == [0, 0, 0]
                counts = await central.ledger.counts()
                assert counts["escalations"] == 1
                reports = {r.id: r for r in await api.reports()}
                assert reports[late.id].red_flag and not reports[answered.id].red_flag
                flags = [c for c in reports[late.id].comments if c.body.startswith("Bendera")]
                assert len(flags) == 1
                assert len(watcher.received) == 1
        finally:
            gw.close()
            watcher.close()


# -- helpers ---------------------------------------------------------------------------------


async def _only(api: Api) -> object:
    found = await api.reports()
    assert len(found) <= 1, [r.title for r in found]
    return found[0] if found else None


async def _count(api: Api, n: int) -> bool:
    return await api.count() == n


async def _comments(api: Api, n: int) -> bool:
    found = await api.reports()
    return bool(found) and len(found[0].comments) >= n


async def _status(api: Api, status: str) -> object:
    found = await api.reports()
    return found[0] if found and found[0].status == status else None


async def _report_in(api: Api, rid: str, status: str, comments: int = 0) -> object:
    for r in await api.reports():
        if r.id == rid and r.status == status and len(r.comments) >= comments:
            return r
    return None


async def _titled(api: Api, word: str, status: str = "new") -> object:
    for r in await api.reports():
        if word in r.title and r.status == status:
            return r
    return None


async def _flagged(api: Api) -> object:
    return next((r for r in await api.reports() if r.red_flag), None)


async def _delivered(central: object, n: int) -> bool:
    from central.service import Central

    assert isinstance(central, Central)
    return sum(r.siaran_id is not None for r in await central.ledger.reports()) == n


def _acks(gw: Gateway, up_to: int) -> list[Ack] | None:
    acks = [Ack.model_validate_json(p) for t, p, _ in gw.received if t.endswith("/ack")]
    return acks if acks and max(a.up_to for a in acks) == up_to else None


async def _agency_responds(url: str, rid: str) -> None:
    """As a person on the sandbox's page: open it, press 'Tanggapi'."""
    async with httpx.AsyncClient(base_url=url) as http:
        page = await http.get("/")
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None
        resp = await http.post(
            f"/agency/{rid}/respond", data={"csrf": found.group(1), "note": "Petugas meluncur"}
        )
        assert resp.status_code == 303
        report = await http.get(
            f"/api/v1/reports/{rid}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert report.json()["status"] == "in_progress"
