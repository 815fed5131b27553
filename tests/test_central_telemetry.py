"""Telemetry through the central consumer: a real mosquitto, a real InfluxDB write API
(VictoriaMetrics), the SIARAN sandbox and the consumer in this test's loop with `[influxdb]`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from central.config import load_config
from central.intake import Rejected, check, subscriptions
from tests.central_helpers import (
    ROOT,
    Api,
    Gateway,
    central_config,
    fault_event,
    running,
    sandbox,
)
from tests.influx_servers import Series, VictoriaMetrics, count, victoria_metrics
from tests.servers import Mosquitto, free_port
from tests.waiting import until
from uplink.contract import DeviceMeta, DeviceSamples, TelemetryBatch, encode

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "central.toml"
META = DeviceMeta(
    kind="streetlight",
    profile="pju-generic",
    circuit="PNL-07/A",
    kelurahan="Pamulang Barat",
    kecamatan="Pamulang",
)


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    with victoria_metrics(tmp_path / "vm") as server:
        yield server


def influxdb(url: str) -> dict[str, Any]:
    return {
        "url": url,
        "org": "kota-tangsel",
        "bucket": "siaran",
        "token": {"value": "influx-token-0042"},
        "flush_interval_s": 0.1,
        "backoff_max_s": 0.2,
        "timeout_s": 2,
    }


def t0() -> datetime:
    """Yesterday, to the millisecond (VictoriaMetrics refuses times in the future)."""
    now = datetime.now(UTC) - timedelta(days=1)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def telemetry(gateway: str, device: str, at: datetime, meta: DeviceMeta | None) -> TelemetryBatch:
    return TelemetryBatch(
        gateway_id=gateway,
        replayed=False,
        samples=[
            DeviceSamples(
                device_id=device, at=at, values={"active_power": 60.4, "lamp_on": True}, meta=meta
            ),
            DeviceSamples(
                device_id=device, at=at + timedelta(minutes=5), values={"active_power": 0.4}
            ),
        ],
    )


def by_name(series: list[Series]) -> dict[str, Series]:
    return {s["metric"]["__name__"]: s for s in series}


async def test_telemetry_lands_in_influxdb_spoofs_do_not_and_faults_still_work(
    broker: Mosquitto, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    started = time.monotonic()
    state = tmp_path / "central"
    at = t0()
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        config = central_config(state, broker.port, box.url, influxdb=influxdb(vm.url))
        gw, evil = Gateway(broker.port, "gw-01"), Gateway(broker.port, "gw-99")
        gw.subscribe(gw.topics.ack)
        try:
            async with running(config) as central:
                # gw-99 writes as gw-01 on its own branch: rejected before the sink
                spoof = telemetry("gw-01", "pju-spoof", at, META)
                await evil.publish_raw(evil.topics.telemetry, encode(spoof))
                genuine = telemetry("gw-01", "pju-0042", at, META)
                await gw.publish_raw(gw.topics.telemetry, encode(genuine))
                await gw.fault(fault_event(1))

                report = await until(lambda: _only(api), what="the fault filed as a report")
                assert "pju-0042" in report.title
                await until(lambda: central.consumer.stats["received"] == 3, what="all received")
                await until(
                    lambda: central.stats().get("influx_points_written", 0) == 2,
                    what="2 points written (power + lamp_on at t0, power at t0 + 5 min)",
                )
                stats = central.stats()
                assert stats["rejected_gateway_mismatch"] == 1
                assert stats["influx_batches"] == 1  # the spoofed one never reached the sink
                assert stats["opened"] == 1
                series = vm.wait_for(3)
                # telemetry is not in the ledger: the one event there is the fault's
                history = await central.ledger.history()
                assert [(h["gateway_id"], h["seq"]) for h in history] == [("gw-01", 1)]
                acks = await until(
                    lambda: [p for t, p, _ in gw.received if t == gw.topics.ack], what="an ack"
                )
                assert json.loads(acks[-1])["up_to"] == 1
        finally:
            gw.close()
            evil.close()

    assert count(series) == 3
    assert {s["metric"]["device"] for s in series} == {"pju-0042"}  # nothing of pju-spoof
    got = by_name(series)
    tags = {
        "gateway": "gw-01",
        "device": "pju-0042",
        "profile": "pju-generic",
        "circuit": "PNL-07/A",
        "kelurahan": "Pamulang Barat",
        "kecamatan": "Pamulang",
    }
    power = got["streetlight_active_power"]
    assert power["metric"] == {"__name__": "streetlight_active_power", **tags}
    assert power["values"] == [60.4, 0.4]
    assert power["timestamps"] == [ms(at), ms(at + timedelta(minutes=5))]
    lamp = got["streetlight_lamp_on"]
    assert lamp["metric"] == {"__name__": "streetlight_lamp_on", **tags}
    assert (lamp["values"], lamp["timestamps"]) == ([1.0], [ms(at)])
    # the devices' tags are kept in state_dir for the next start
    kept = json.loads((state / "influx-devices.json").read_text())
    assert kept == {"gw-01": {"pju-0042": META.model_dump(mode="json")}}
    assert time.monotonic() - started < 20


async def test_influxdb_away_then_removed(broker: Mosquitto, tmp_path: Path) -> None:
    """InfluxDB unreachable: faults are filed all the same and central still stops at once.
    Then central restarts without `[influxdb]`: its persistent session no longer brings it
    telemetry (the telemetry branch is unsubscribed)."""
    state = tmp_path / "central"
    dead_influx = f"http://127.0.0.1:{free_port()}"
    async with sandbox(tmp_path / "box") as box:
        api = Api(box.url)
        with_influx = central_config(state, broker.port, box.url, influxdb=influxdb(dead_influx))
        gw = Gateway(broker.port, "gw-01")
        try:
            async with running(with_influx) as central:
                batch = telemetry("gw-01", "pju-1", t0(), META)
                await gw.publish_raw(gw.topics.telemetry, encode(batch))
                await until(
                    lambda: central.stats().get("influx_write_failures", 0) >= 2,
                    what="the writer retrying",
                )
                await gw.fault(fault_event(1, "pju-1"))
                await until(lambda: _count(api, 1), what="a fault filed while InfluxDB is away")
                stopping = time.monotonic()
            # the retrying write is cancelled, close() tries once more for at most 5 s
            assert time.monotonic() - stopping < 8
            assert central.stats()["influx_points_buffered"] == 2  # lost, and said so

            async with running(central_config(state, broker.port, box.url)) as central:
                assert central.influx is None
                batch = telemetry("gw-01", "pju-2", t0(), META)
                await gw.publish_raw(gw.topics.telemetry, encode(batch))
                await gw.fault(fault_event(2, "pju-2"))  # after the telemetry, same connection
                await until(lambda: _count(api, 2), what="the second fault filed")
                await until(lambda: central.outcomes["opened"] == 1, what="fault applied")
                stats = central.stats()
                assert stats["received"] == 1, stats
                assert not any(k.startswith("rejected_") for k in stats), stats
        finally:
            gw.close()


def test_intake_takes_telemetry_only_when_it_is_written() -> None:
    assert subscriptions(ROOT, "central", telemetry=True) == [
        "$share/central/siaran/v1/+/fault",
        "$share/central/siaran/v1/+/status",
        "$share/central/siaran/v1/+/telemetry",
    ]
    assert subscriptions(ROOT, "", telemetry=True)[-1] == "siaran/v1/+/telemetry"
    batch = telemetry("gw-01", "pju-1", t0(), META)
    raw, topic = encode(batch), "siaran/v1/gw-01/telemetry"
    assert check(ROOT, topic, raw, 65536, telemetry=True) == batch
    off = check(ROOT, topic, raw, 65536)  # no [influxdb]: not one of central's topics
    assert isinstance(off, Rejected) and off.reason == "foreign_topic"
    for where, payload, max_bytes, reason in [
        ("siaran/v1/gw-02/telemetry", raw, 65536, "gateway_mismatch"),
        (topic, raw, len(raw) - 1, "oversized"),
        (topic, encode(fault_event(1)), 65536, "malformed"),
        (topic, raw.replace(b'"schema":1', b'"schema":2'), 65536, "schema_version"),
    ]:
        found = check(ROOT, where, payload, max_bytes, telemetry=True)
        assert isinstance(found, Rejected) and found.reason == reason, (reason, found)
        assert found.channel == "telemetry"


def test_the_example_influxdb_table_is_valid_and_anchored(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    start = text.index("# [influxdb]")
    table = "\n".join(line.removeprefix("# ") for line in text[start:].splitlines())
    path = tmp_path / "etc" / "central.toml"
    path.parent.mkdir()
    path.write_text(text[:start] + table + "\n")
    config = load_config(path)
    assert config.influxdb is not None and config.influxdb.bucket == "siaran"
    assert config.influxdb.token is not None
    assert config.influxdb.token.file == path.parent / "influx.token"  # relative to the file
    assert load_config(EXAMPLE).influxdb is None  # commented out: telemetry off by default


async def _only(api: Api) -> Any:
    found = await api.reports()
    assert len(found) <= 1, [r.title for r in found]
    return found[0] if found else None


async def _count(api: Api, n: int) -> bool:
    return await api.count() == n
