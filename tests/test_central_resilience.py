"""The central consumer through outages, bad messages and a second instance: real mosquitto,
the SIARAN sandbox, consumers in this test's loop."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.central_helpers import (
    Api,
    Gateway,
    central_config,
    fault_event,
    running,
    sandbox,
)
from tests.servers import Mosquitto, free_port
from tests.waiting import until
from uplink.contract import Ack, encode


async def test_siaran_outage_delays_reports_and_loses_none(
    broker: Mosquitto, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = central_config(tmp_path / "central", broker.port, url)
    gw = Gateway(broker.port)
    try:
        async with running(config) as central:
            async with sandbox(tmp_path / "box", port) as box:
                await gw.fault(fault_event(1, "pju-01"))
                await until(lambda: _count(Api(box.url), 1), what="first report, SIARAN up")
            # SIARAN is down now
            for i in range(2, 7):
                await gw.fault(fault_event(i, f"pju-0{i}"))
            await gw.fault(fault_event(7, "pju-01", "updated", severity="critical"))
            await until(lambda: central.delivery.stats["retry"] >= 2, what="tries while down")
            counts = await central.ledger.counts()
            assert counts["ops_pending"] == 6 and counts["events"] == 7
            async with sandbox(tmp_path / "box", port) as box:  # back, same storage
                api = Api(box.url)
                await until(lambda: _count(api, 6), what="the queued reports arrive")
                await until(lambda: _ops_done(central), what="outbox drained")
                reports = await api.reports()
                assert len({r.external_ref for r in reports}) == 6
                first = next(r for r in reports if "pju-01" in r.title)
                assert len(first.comments) == 1  # the update, once
    finally:
        gw.close()


async def test_bad_messages_are_rejected_and_counted(broker: Mosquitto, tmp_path: Path) -> None:
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        config = central_config(tmp_path / "central", broker.port, box.url, max_payload_bytes=2048)
        gw = Gateway(broker.port)
        try:
            async with running(config) as central:
                topic = gw.topics.fault
                await gw.publish_raw(topic, b"{not json")
                await gw.publish_raw(topic, json.dumps({"schema": 1, "seq": 1}).encode())
                big = fault_event(1, evidence={"samples": ["x" * 100] * 40})
                await gw.publish_raw(topic, encode(big))
                spoof = fault_event(2, gw="gw-02")  # gw-02's event on gw-01's branch
                await gw.publish_raw(topic, encode(spoof))
                future = encode(fault_event(3)).replace(b'"schema":1', b'"schema":2')
                await gw.publish_raw(topic, future)
                await gw.publish_raw(gw.topics.status, b"\xff\xfe")
                await gw.fault(fault_event(4))  # and a good one still goes through
                await until(lambda: _count(api, 1), what="the good event filed")
                stats = central.stats()
                assert stats["rejected_malformed"] == 3
                assert stats["rejected_oversized"] == 1
                assert stats["rejected_gateway_mismatch"] == 1
                assert stats["rejected_schema_version"] == 1
                assert stats["received"] == 7
                assert (await central.ledger.counts())["events"] == 1
        finally:
            gw.close()


async def test_two_consumers_in_a_shared_group_apply_each_event_once(
    broker: Mosquitto, tmp_path: Path
) -> None:
    n_gateways, per_gateway = 3, 12
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        state = tmp_path / "central"  # one ledger file for both instances
        one = central_config(state, broker.port, box.url)
        two = central_config(state, broker.port, box.url, broker={"client_id": "central-test-2"})
        gateways = [Gateway(broker.port, f"gw-{g}") for g in range(n_gateways)]
        for gw in gateways:
            gw.subscribe(gw.topics.ack)
        try:
            async with running(one) as first, running(two) as second:
                for seq in range(1, per_gateway + 1):
                    for g, gw in enumerate(gateways):
                        ev = fault_event(seq, f"pju-{seq:02d}", gw=f"gw-{g}")
                        await gw.fault(ev)
                        if seq % 4 == 0:
                            await gw.fault(ev)  # duplicates too
                total = n_gateways * per_gateway
                await until(lambda: _count(api, total), what="every event filed", limit_s=20)
                applied = _applied_by(state / "central.db")
                assert sum(applied.values()) == total
                assert applied["central-test-1"] > 0 and applied["central-test-2"] > 0
                assert first.outcomes["opened"] + second.outcomes["opened"] == total
                dups = first.outcomes["duplicate"] + second.outcomes["duplicate"]
                assert dups == n_gateways * per_gateway // 4

                def acked() -> bool:
                    return all(_max_ack(gw) == per_gateway for gw in gateways)

                await until(acked, what="every gateway acked up to its last seq")
                await asyncio.sleep(0.3)  # nothing more arrives
                assert await api.count() == total
        finally:
            for gw in gateways:
                gw.close()


async def test_consumer_restart_and_redelivery(broker: Mosquitto, tmp_path: Path) -> None:
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        config = central_config(tmp_path / "central", broker.port, box.url)
        gw = Gateway(broker.port)
        try:
            first = fault_event(1, "pju-01")
            async with running(config):
                await gw.fault(first)
                await until(lambda: _count(api, 1))
            # central is away: its persistent session keeps what arrives
            await gw.fault(fault_event(2, "pju-02"))
            await gw.fault(first)  # a redelivery of what was applied before the restart
            async with running(config) as central:
                await until(lambda: _count(api, 2), what="the event sent while away")
                await until(lambda: central.outcomes["duplicate"] == 1, what="the redelivery")
                await asyncio.sleep(0.2)
                assert await api.count() == 2
        finally:
            gw.close()


async def test_broker_restart(broker: Mosquitto, tmp_path: Path) -> None:
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        config = central_config(tmp_path / "central", broker.port, box.url)
        async with running(config) as central:
            broker.stop()
            await until(lambda: not central.consumer.connected.is_set(), what="link lost")
            broker.start()  # same port
            await until(central.consumer.connected.is_set, what="reconnected")
            gw = Gateway(broker.port)
            try:
                await gw.fault(fault_event(1))
                await until(lambda: _count(api, 1), what="report after the broker outage")
            finally:
                gw.close()


async def test_sandbox_refuses_outside_positions_and_central_does_not_send_them(
    broker: Mosquitto, tmp_path: Path
) -> None:
    from tests.central_helpers import JAKARTA

    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        config = central_config(tmp_path / "central", broker.port, box.url)
        gw = Gateway(broker.port)
        try:
            async with running(config) as central:
                await gw.fault(fault_event(1, "pju-99", location=JAKARTA))
                await gw.fault(fault_event(2, "pju-98", location=None))
                await gw.fault(fault_event(3, "pju-01"))
                await until(lambda: _count(api, 1))
                assert central.outcomes["config_error"] == 2
                history = await central.ledger.history("gw-01")
                assert "outside Kota Tangerang Selatan" in history[0]["detail"]
                assert (await central.ledger.counts())["reports"] == 1
        finally:
            gw.close()


# -- helpers ---------------------------------------------------------------------------------


async def _count(api: Api, n: int) -> bool:
    return await api.count() == n


async def _ops_done(central: object) -> bool:
    from central.service import Central

    assert isinstance(central, Central)
    counts = await central.ledger.counts()
    return counts.get("ops_pending", 0) == 0


def _applied_by(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT consumer, COUNT(*) FROM events GROUP BY consumer").fetchall()
    conn.close()
    return {c: n for c, n in rows}


def _max_ack(gw: Gateway) -> int:
    acks = [Ack.model_validate_json(p) for t, p, _ in gw.received if t.endswith("/ack")]
    return max((a.up_to for a in acks), default=0)


async def test_a_message_that_could_not_be_applied_comes_again(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """PUBACK only after the commit: a failed commit means a redelivery, not a loss."""
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        config = central_config(tmp_path / "central", broker.port, box.url)
        gw = Gateway(broker.port)
        try:
            async with running(config) as central:
                real = central.ledger.apply_fault
                failures = [sqlite3.OperationalError("disk I/O error")]

                async def flaky(*args: Any, **kwargs: Any) -> Any:
                    if failures:
                        raise failures.pop()
                    return await real(*args, **kwargs)

                central.ledger.apply_fault = flaky  # type: ignore[method-assign]
                await gw.fault(fault_event(1))
                await until(lambda: _count(api, 1), what="applied on the redelivery")
                assert central.stats()["apply_failed"] == 1
                assert central.outcomes["opened"] == 1
        finally:
            gw.close()
