"""Draining a large outbox backlog through a real mosquitto: the sliding window, the in-flight
limit the broker sets (MQTT 5 Receive Maximum), and a broker that dies mid-drain."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.servers import mosquitto
from tests.test_uplink_mqtt import (
    Central,
    assert_in_order_none_lost,
    fault,
    persistent_broker,
    uplink_for,
)
from tests.waiting import until
from uplink.mqtt_link import LinkOptions, MqttLink

BACKLOG = 6000


async def test_in_flight_publishes_never_exceed_the_brokers_receive_maximum(
    tmp_path: Path,
) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "roomy").mkdir()
    with (
        mosquitto(tmp_path / "plain") as plain,  # mosquitto's default: Receive Maximum 20
        mosquitto(tmp_path / "roomy", ["max_inflight_messages 50"]) as roomy,
    ):
        for port, asked, allowed in [
            (plain.port, 100, 20),
            (roomy.port, 100, 50),
            (roomy.port, 30, 30),
        ]:
            options = LinkOptions("127.0.0.1", port, f"cap-{asked}", max_inflight=asked)
            link = MqttLink(options, lambda *_: None)
            await link.connect()
            assert link.max_inflight == allowed, (port, asked)
            futures = [link.publish("drain/test", b"x" * 300, 1, False) for _ in range(120)]
            assert link.in_flight == allowed, "the rest is held back until PUBACKs come"
            codes = await asyncio.gather(*futures)  # 16: no matching subscribers, a success
            assert len(codes) == 120 and all(rc < 0x80 for rc in codes)
            assert link.in_flight == 0
            await link.disconnect()


async def test_a_large_backlog_survives_a_broker_that_dies_mid_drain(tmp_path: Path) -> None:
    # the central stand-in may fall behind: it must not lose what it is sent (mosquitto's
    # default max_queued_messages 1000 would drop beyond that, which is not the uplink's doing)
    b = persistent_broker(tmp_path, ["max_queued_messages 0"])
    up = uplink_for(b.port, tmp_path / "state")
    await up.open()
    for start in range(0, BACKLOG, 500):  # an outage: everything waits in the outbox
        await asyncio.gather(*(up.submit_fault(fault(i)) for i in range(start, start + 500)))
    assert up.stats().faults_pending == BACKLOG
    try:
        b.start()
        central = Central(b.port)
        await central.connect()
        runner = asyncio.create_task(up.run())
        # the uplink's own count, checked often: the in-process central may lag far behind
        await until(
            lambda: up.stats().faults_pending <= BACKLOG - 300,
            every_s=0.001,
            what="the drain under way",
        )
        b.stop()  # the broker goes away in the middle of the drain
        await until(lambda: not up.stats().connected, what="the loss seen")
        mid = up.stats().faults_pending
        assert 0 < mid < BACKLOG, "stopped mid-drain; what had its PUBACK is forgotten"
        b.start()
        await central.connect()
        await until(
            lambda: len(set(central.fault_seqs())) == BACKLOG, limit_s=90, what="every fault"
        )
        await until(lambda: up.stats().faults_pending == 0, what="outbox empty")
        seqs = central.fault_seqs()
        assert_in_order_none_lost(seqs, BACKLOG)
        assert len(seqs) - BACKLOG <= up.config.publish_window, "duplicates: one window at most"
        assert all(p["replayed"] for p in central.of("fault")), "all waited out the outage"
        await up.close()
        await runner
        await central.close()
    finally:
        b.stop()
