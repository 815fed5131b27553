"""Telemetry into a real InfluxDB v2 write API (VictoriaMetrics): the gateway's direct path with a
simulated evening and an outage, and central's path from TelemetryBatch messages."""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.clock import FakeClock
from agent.demo.lamp import LampController
from agent.demo.readings import reading_from_records
from agent.telemetry import Telemetry, device_meta
from central.influx_sink import CentralInfluxSink
from firmware_config.loader import load_profiles
from firmware_config.models import Device, Location, SecretSource
from firmware_config.telemetry_config import InfluxConfig, TelemetryConfig
from tests.influx_servers import Series, VictoriaMetrics, count
from uplink.contract import DeviceSamples, TelemetryBatch, TelemetryDraft, Value
from uplink.influx import InfluxWriter

PROFILES = load_profiles()
GW = "gw-test-01"
TOKEN = "s3cret-influx-token-42"


def evening_start() -> datetime:
    """17:00 WIB yesterday: in VictoriaMetrics' past (it refuses times far in the future)."""
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    return datetime.combine(day, time(10, 0), tzinfo=UTC)


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "vm")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def influx_config(vm: VictoriaMetrics, **over: object) -> InfluxConfig:
    fields: dict[str, object] = {
        "url": vm.url,
        "org": "kota-tangsel",
        "bucket": "siaran",
        "token": SecretSource(value=TOKEN),
        "backoff_max_s": 0.2,
        "timeout_s": 2,
        "flush_interval_s": 0.1,
    }
    fields.update(over)
    return InfluxConfig.model_validate(fields)


def lamp_device(n: int) -> Device:
    return Device(
        id=f"pju-{n:04d}",
        kind="streetlight",
        profile="pju-generic",
        address=f"127.0.0.1:{16100 + n}",
        location=Location(lat=-6.34, lon=106.73, kelurahan="Pamulang Barat", kecamatan="Pamulang"),
        pole_id=f"P-{n}",
        circuit="PNL-07/A",
        rated_w=60,
    )


def expected_series(drafts: list[TelemetryDraft]) -> dict[tuple[str, str], dict[int, float]]:
    """What the samples sent must become: (series name, device) -> {unix ms: value}."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for draft in drafts:
        for s in draft.samples:
            t = round(s.at.timestamp() * 1000)
            for name, v in s.values.items():
                out.setdefault((f"streetlight_{name}", s.device_id), {})[t] = _number(v)
    return out


def _number(v: Value) -> float:
    return 0.0 if isinstance(v, str) or v is None else float(v)  # VM keeps strings as 0


def stored(series: list[Series]) -> dict[tuple[str, str], dict[int, float]]:
    return {
        (s["metric"]["__name__"], s["metric"]["device"]): dict(
            zip(s["timestamps"], s["values"], strict=True)
        )
        for s in series
    }


async def until(cond: Callable[[], object], limit_s: float = 15.0) -> None:
    """Let the loop work (writes, retries) until cond() holds."""
    deadline = _time.monotonic() + limit_s
    while not cond():
        if _time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def wait_written(writer: InfluxWriter, limit_s: float = 15) -> None:
    await until(lambda: not writer.stats().batches_pending, limit_s)


class Evening:
    """Two lamps from 17:00 to 21:00 WIB, polled every minute: on at 18:00; pju-0002's driver
    degrades at 19:30 and its lamp dies at 20:00."""

    def __init__(self, telemetry: Telemetry, clock: FakeClock) -> None:
        self.telemetry, self.clock = telemetry, clock
        self.lamps = {
            d.id: LampController(
                rated_w=60, lamp_on=False, daylight=True, lux=800, clock=clock.monotonic
            )
            for d in (lamp_device(1), lamp_device(2))
        }

    async def run(self, minutes: range, flush_every: int = 5) -> None:
        for minute in minutes:
            for lamp in self.lamps.values():
                if minute == 60:
                    lamp.update(lamp_on=True, daylight=False, lux=2)
                lamp.update(supply_voltage=220 + (minute % 7) * 0.4)
            if minute == 150:
                self.lamps["pju-0002"].degrade_driver(0.8)
            if minute == 180:
                self.lamps["pju-0002"].fail_lamp()
            for device_id, lamp in self.lamps.items():
                reading = reading_from_records(
                    lamp.records(), device_id, PROFILES["pju-generic"], self.clock.now()
                )
                await self.telemetry.on_reading(reading)
            if minute % flush_every == flush_every - 1:
                await self.telemetry.flush()
            await self.clock.advance(60)


def gateway_path(
    config: InfluxConfig, state: Path, clock: FakeClock
) -> tuple[Telemetry, InfluxWriter, list[TelemetryDraft]]:
    devices = [(d, PROFILES[d.profile]) for d in (lamp_device(1), lamp_device(2))]
    # the writer on real time (its retries wait for real), the readings on simulated time
    writer = InfluxWriter(config, GW, {d.id: device_meta(d, p) for d, p in devices}, state)
    drafts: list[TelemetryDraft] = []

    async def keep(draft: TelemetryDraft) -> None:
        drafts.append(draft)

    telemetry = Telemetry(TelemetryConfig(), devices, clock, [keep, writer.submit])
    return telemetry, writer, drafts


async def test_a_simulated_evening_lands_with_tags_fields_and_timestamps(
    vm: VictoriaMetrics, tmp_path: Path
) -> None:
    clock = FakeClock(evening_start())
    telemetry, writer, drafts = gateway_path(influx_config(vm), tmp_path / "state", clock)
    task = asyncio.create_task(writer.run())
    await Evening(telemetry, clock).run(range(240))
    await wait_written(writer)
    want = expected_series(drafts)
    series = vm.wait_for(sum(len(v) for v in want.values()))
    assert stored(series) == want  # every value sent, at its reading's time, nothing else
    power = next(
        s
        for s in series
        if s["metric"]["__name__"] == "streetlight_active_power"
        and s["metric"]["device"] == "pju-0002"
    )
    assert power["metric"] == {
        "__name__": "streetlight_active_power",
        "gateway": GW,
        "device": "pju-0002",
        "circuit": "PNL-07/A",
        "kelurahan": "Pamulang Barat",
        "kecamatan": "Pamulang",
        "profile": "pju-generic",
    }
    start_ms = round(evening_start().timestamp() * 1000)
    watts = dict(zip(power["timestamps"], power["values"], strict=True))
    assert watts[start_ms + 60 * 60_000] == 60.4  # on at 18:00 (60 W + 0.4 W standby)
    assert watts[start_ms + 150 * 60_000] == 48.4  # the driver degrades at 19:30: sent at once
    assert watts[start_ms + 180 * 60_000] == 0.4  # the lamp dies at 20:00
    lamp_on = stored(series)[("streetlight_lamp_on", "pju-0001")]
    assert lamp_on[start_ms + 60 * 60_000] == 1.0
    # report by exception: far fewer points than readings (2 lamps x 240 polls x 28 values)
    assert count(series) < 2 * 240 * 28 / 10
    task.cancel()
    await writer.close()


async def test_an_influxdb_outage_in_the_middle_loses_nothing(
    vm: VictoriaMetrics, tmp_path: Path
) -> None:
    clock = FakeClock(evening_start())
    state = tmp_path / "state"
    config = influx_config(vm)
    telemetry, writer, drafts = gateway_path(config, state, clock)
    task = asyncio.create_task(writer.run())
    evening = Evening(telemetry, clock)
    with capture_logs() as logs:
        await evening.run(range(0, 60))
        await wait_written(writer)
        vm.stop()  # InfluxDB away from 18:00 to 20:00, while the lamps switch on and fail
        await evening.run(range(60, 120))
        await until(lambda: not writer.stats().reachable)
        # the gateway restarts during the outage: what waited is on disk, in influx-outbox.db
        task.cancel()
        await writer.close()
        assert (state / "influx-outbox.db").exists()
        telemetry, writer, more = gateway_path(config, state, clock)
        evening.telemetry = telemetry
        task = asyncio.create_task(writer.run())
        await evening.run(range(120, 240))
        assert writer.stats().batches_pending > 0 and not writer.stats().reachable
        vm.start()  # same port, same storage folder
        await wait_written(writer, limit_s=20)
    want = expected_series(drafts + more)
    series = vm.wait_for(sum(len(v) for v in want.values()))
    assert stored(series) == want
    stats = writer.stats()
    assert stats.reachable and stats.batches_dropped == 0 and stats.points_rejected == 0
    events = [e["event"] for e in logs]
    assert "influx_unreachable" in events and "influx_reachable_again" in events
    assert TOKEN not in repr(logs)
    task.cancel()
    await writer.close()


def batch(gateway: str, samples: list[DeviceSamples]) -> TelemetryBatch:
    return TelemetryBatch(samples=samples, gateway_id=gateway, replayed=False)


async def test_central_turns_telemetry_batches_into_the_same_points(
    vm: VictoriaMetrics, tmp_path: Path
) -> None:
    meta_file = tmp_path / "central" / "influx-devices.json"
    config = influx_config(vm, batch_size=3)
    sink = CentralInfluxSink(config, meta_path=meta_file)
    task = asyncio.create_task(sink.run())
    t0 = evening_start()
    lamp, ap = (
        lamp_device(7),
        Device(
            id="ap-01",
            kind="hotspot",
            profile="mikrotik-routeros",
            address="127.0.0.1:16200",
            location=Location(lat=-6.3, lon=106.7, kecamatan="Serpong"),
        ),
    )
    lamp_meta = device_meta(lamp, PROFILES["pju-generic"])
    ap_meta = device_meta(ap, PROFILES["mikrotik-routeros"])
    # a device seen before its tags (central restarted): its samples wait for them
    early = DeviceSamples(device_id=lamp.id, at=t0, values={"active_power": 60.4})
    await sink.handle(batch(GW, [early]))
    assert sink.stats()["samples_waiting"] == 1
    tagged = DeviceSamples(
        device_id=lamp.id,
        at=t0 + timedelta(minutes=5),
        values={"active_power": 48.0},
        meta=lamp_meta,
    )
    first_ap = DeviceSamples(
        device_id=ap.id,
        at=t0,
        values={"wireless_aps.1.client_count": 12, "interfaces.3.if_in_octets": 1_000_000},
        meta=ap_meta,
    )
    second = batch(
        "gw-hotspot-02",
        [
            DeviceSamples(
                device_id=ap.id,
                at=t0 + timedelta(seconds=600),
                values={"interfaces.3.if_in_octets": 76_000_000},
            )
        ],
    )
    await sink.handle(batch(GW, [tagged]))
    await sink.handle(batch("gw-hotspot-02", [first_ap]))
    await sink.handle(second)
    await sink.handle(second)  # a QoS 1 duplicate
    assert sink.stats()["batches_duplicate"] == 1
    await until(lambda: sink.stats().get("points_written", 0) == 5)  # lines: 2 lamp, 3 AP rows
    series = vm.wait_for(6)
    got = {(s["metric"]["__name__"], s["metric"].get("row", "")): s for s in series}
    power = got[("streetlight_active_power", "")]
    assert power["values"] == [60.4, 48.0]
    assert power["timestamps"] == [round(t0.timestamp() * 1000) + k * 300_000 for k in (0, 1)]
    assert power["metric"]["circuit"] == "PNL-07/A" and power["metric"]["gateway"] == GW
    bps = got[("hotspot_if_in_bps", "3")]
    assert bps["values"] == [1_000_000.0]  # 75 MB in 600 s = 1 Mbit/s
    assert bps["metric"]["table"] == "interfaces" and bps["metric"]["kecamatan"] == "Serpong"
    assert got[("hotspot_client_count", "1")]["values"] == [12]
    # InfluxDB away: points wait in the buffer and are written when it is back
    vm.stop()
    later = DeviceSamples(
        device_id=lamp.id, at=t0 + timedelta(minutes=10), values={"active_power": 0.4}
    )
    await sink.handle(batch(GW, [later]))
    await until(lambda: not sink.stats()["reachable"])
    vm.start()
    await until(lambda: not sink.stats()["points_buffered"] and sink.stats()["reachable"])
    series = vm.wait_for(7)
    power = next(s for s in series if s["metric"]["__name__"] == "streetlight_active_power")
    assert power["values"] == [60.4, 48.0, 0.4]
    task.cancel()
    await sink.close()
    # the tags are remembered across a restart of central
    again = CentralInfluxSink(config, meta_path=meta_file)
    await again.handle(batch(GW, [later]))
    assert again.stats()["points_buffered"] == 1 and again.stats()["samples_waiting"] == 0
    await again.close()
