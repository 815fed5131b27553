"""Report by exception: deadbands, heartbeats, counters, text, tables, tags, one batch per flush."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.telemetry import Telemetry, telemetry_from_config
from collectors.reading import Reading, Value
from firmware_config.loader import load_config, load_profiles
from firmware_config.models import Device, Location
from firmware_config.profiles import Profile
from firmware_config.telemetry_config import MetricTelemetry, TelemetryConfig
from uplink.contract import DeviceSamples, TelemetryBatch, TelemetryDraft, encode

T0 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
PROFILES = load_profiles()


def lamp(device_id: str = "pju-0001") -> Device:
    return Device(
        id=device_id,
        kind="streetlight",
        profile="pju-generic",
        address="127.0.0.1:16100",
        location=Location(lat=-6.34, lon=106.73, kelurahan="Pamulang Barat", kecamatan="Pamulang"),
        pole_id="P-1",
        circuit="PNL-07/A",
        rated_w=60,
    )


def hotspot(device_id: str = "ap-01") -> Device:
    return Device(
        id=device_id,
        kind="hotspot",
        profile="mikrotik-routeros",
        address="127.0.0.1:16101",
        location=Location(lat=-6.3, lon=106.7, kecamatan="Serpong"),
    )


def filter_for(
    *devices: Device, config: TelemetryConfig | None = None
) -> tuple[Telemetry, list[TelemetryDraft], FakeClock]:
    clock = FakeClock(T0)
    sent: list[TelemetryDraft] = []

    async def out(draft: TelemetryDraft) -> None:
        sent.append(draft)

    pairs: list[tuple[Device, Profile]] = [(d, PROFILES[d.profile]) for d in devices]
    return Telemetry(config or TelemetryConfig(), pairs, clock, [out]), sent, clock


def reading(
    at_s: float,
    device_id: str = "pju-0001",
    reachable: bool = True,
    tables: dict[str, dict[str, dict[str, Value]]] | None = None,
    **values: Value,
) -> Reading:
    return Reading(
        device_id=device_id,
        at=T0 + timedelta(seconds=at_s),
        reachable=reachable,
        values=values if reachable else {},
        tables=tables or {},
    )


def sent_values(t: Telemetry, r: Reading) -> dict[str, Value]:
    sample = t.decide(r)
    return {} if sample is None else dict(sample.values)


def test_unchanged_values_are_not_resent_until_the_heartbeat() -> None:
    t, _, _ = filter_for(lamp(), config=TelemetryConfig(heartbeat_s=900))
    first = sent_values(t, reading(0, supply_voltage=220.0, active_power=60.4))
    assert first == {"reachable": True, "supply_voltage": 220.0, "active_power": 60.4}
    for minute in range(1, 15):  # 14 polls, nothing moved: nothing sent
        assert t.decide(reading(60 * minute, supply_voltage=220.0, active_power=60.4)) is None
    # 900 s after it was sent, each number is due again (heartbeat_s); reachable (a boolean,
    # state_heartbeat_s) is not
    assert sent_values(t, reading(900, supply_voltage=220.0, active_power=60.4)) == {
        "supply_voltage": 220.0,
        "active_power": 60.4,
    }
    assert t.decide(reading(960, supply_voltage=220.0, active_power=60.4)) is None


def test_a_change_beyond_the_deadband_is_sent_at_once_and_within_it_not() -> None:
    t, _, _ = filter_for(lamp(), config=TelemetryConfig(heartbeat_s=900))  # deadband 1 %
    sent_values(t, reading(0, supply_voltage=220.0))
    assert t.decide(reading(60, supply_voltage=221.9)) is None  # 0.86 %
    assert t.decide(reading(120, supply_voltage=218.0)) is None  # 0.91 %
    assert sent_values(t, reading(180, supply_voltage=217.7)) == {"supply_voltage": 217.7}
    # the band is now around the value just sent, and the heartbeat restarted from it
    assert t.decide(reading(240, supply_voltage=219.8)) is None
    assert t.decide(reading(180 + 840, supply_voltage=217.7)) is None
    assert sent_values(t, reading(180 + 900, supply_voltage=217.7)) == {"supply_voltage": 217.7}


def test_per_metric_overrides_absolute_deadband_and_heartbeat() -> None:
    config = TelemetryConfig(
        deadband_pct=0,
        metrics={
            "gear_temperature": MetricTelemetry(deadband_abs=1.0, heartbeat_s=120),
            "lux": MetricTelemetry(send=False),
        },
    )
    t, _, _ = filter_for(lamp(), config=config)
    sent_values(t, reading(0, gear_temperature=40.0, lux=3))
    assert t.decide(reading(60, gear_temperature=40.9, lux=9)) is None  # lux is never sent
    assert sent_values(t, reading(100, gear_temperature=41.1)) == {"gear_temperature": 41.1}
    assert sent_values(t, reading(220, gear_temperature=41.1)) == {"gear_temperature": 41.1}
    # deadband_pct 0 and no absolute band: any change of another gauge is sent
    assert sent_values(t, reading(230, supply_voltage=220.0)) == {"supply_voltage": 220.0}
    assert sent_values(t, reading(240, supply_voltage=220.1)) == {"supply_voltage": 220.1}


def test_counters_are_sent_at_the_heartbeat_or_when_they_go_down() -> None:
    t, _, _ = filter_for(lamp())
    sent_values(t, reading(0, active_energy=12.345, uptime=5000.0))
    for minute in range(1, 60):  # energy grows every minute: still not sent (a running total)
        r = reading(60 * minute, active_energy=12.345 + minute * 0.001, uptime=5000.0 + 60 * minute)
        assert t.decide(r) is None, minute
    assert sent_values(t, reading(3600, active_energy=12.405, uptime=8600.0)) == {
        "active_energy": 12.405,
        "uptime": 8600.0,
    }
    # a reboot: uptime goes down and is sent at once (the counter of energy did not move)
    assert sent_values(t, reading(3660, active_energy=12.406, uptime=3.0)) == {"uptime": 3.0}


def test_a_counter_with_its_own_deadband_is_sent_when_it_grew_that_much() -> None:
    config = TelemetryConfig(metrics={"switch_count": MetricTelemetry(deadband_abs=0)})
    t, _, _ = filter_for(lamp(), config=config)
    sent_values(t, reading(0, switch_count=41))
    assert t.decide(reading(60, switch_count=41)) is None
    assert sent_values(t, reading(120, switch_count=42)) == {"switch_count": 42}


def test_booleans_and_text_are_sent_on_change_and_at_their_own_heartbeat() -> None:
    t, _, _ = filter_for(lamp())
    sent_values(t, reading(0, lamp_on=True, sys_descr="fw 1.4.2"))
    assert t.decide(reading(60, lamp_on=True, sys_descr="fw 1.4.2")) is None
    assert sent_values(t, reading(120, lamp_on=False, sys_descr="fw 1.4.2")) == {"lamp_on": False}
    assert sent_values(t, reading(180, lamp_on=False, sys_descr="fw 1.5.0")) == {
        "sys_descr": "fw 1.5.0"
    }
    # booleans and text: state_heartbeat_s (21600 s) after each was last sent
    assert t.decide(reading(21540, lamp_on=False, sys_descr="fw 1.5.0")) is None
    assert sent_values(t, reading(21600, lamp_on=False, sys_descr="fw 1.5.0")) == {
        "reachable": True
    }
    assert sent_values(t, reading(21720, lamp_on=False, sys_descr="fw 1.5.0")) == {"lamp_on": False}
    assert sent_values(t, reading(21780, lamp_on=False, sys_descr="fw 1.5.0")) == {
        "sys_descr": "fw 1.5.0"
    }


def test_an_unreachable_device_sends_reachable_false_once() -> None:
    t, _, _ = filter_for(lamp())
    sent_values(t, reading(0, active_power=60.0))
    assert sent_values(t, reading(60, reachable=False)) == {"reachable": False}
    assert t.decide(reading(120, reachable=False)) is None
    assert sent_values(t, reading(180, active_power=60.0)) == {"reachable": True}


def test_table_columns_are_flattened_and_only_the_chosen_ones_sent() -> None:
    t, _, _ = filter_for(hotspot())
    rows: dict[str, dict[str, Value]] = {
        "1": {"if_name": "wlan1", "if_in_octets": 1000, "if_out_octets": 50, "if_oper_status": 1},
        "3": {"if_name": "WAN", "if_in_octets": 9000, "if_out_octets": 70, "if_oper_status": 1},
    }
    clients: dict[str, dict[str, Value]] = {"aa": {"signal": -60}}
    first = sent_values(
        t, reading(0, "ap-01", tables={"interfaces": rows, "wireless_clients": clients})
    )
    assert first == {
        "reachable": True,
        "interfaces.1.if_oper_status": 1,
        "interfaces.1.if_in_octets": 1000,
        "interfaces.1.if_out_octets": 50,
        "interfaces.3.if_oper_status": 1,
        "interfaces.3.if_in_octets": 9000,
        "interfaces.3.if_out_octets": 70,
    }  # no if_name, no per-client rows (MAC addresses are personal data)
    rows["3"] = {**rows["3"], "if_oper_status": 2, "if_in_octets": 9100}
    assert sent_values(t, reading(60, "ap-01", tables={"interfaces": rows})) == {
        "interfaces.3.if_oper_status": 2
    }


def test_tags_ride_with_the_first_sample_and_every_meta_interval() -> None:
    t, _, _ = filter_for(lamp(), config=TelemetryConfig(meta_interval_s=3600))
    first = t.decide(reading(0, active_power=60.0))
    assert first is not None and first.meta is not None
    assert first.meta.model_dump() == {
        "kind": "streetlight",
        "profile": "pju-generic",
        "circuit": "PNL-07/A",
        "kelurahan": "Pamulang Barat",
        "kecamatan": "Pamulang",
    }
    second = t.decide(reading(60, active_power=70.0))
    assert second is not None and second.meta is None
    assert (
        '"m"'
        not in encode(TelemetryBatch(samples=[second], gateway_id="g", replayed=False)).decode()
    )
    later = t.decide(reading(3600, active_power=60.0))
    assert later is not None and later.meta is not None


async def test_one_batch_per_flush_interval_with_every_device_and_nothing_when_quiet() -> None:
    config = TelemetryConfig(min_batch_bytes=0)  # every flush sends what it has
    t, sent, clock = filter_for(lamp("pju-0001"), lamp("pju-0002"), config=config)
    for dev in ("pju-0001", "pju-0002"):
        await t.on_reading(reading(0, dev, active_power=60.0))
    await t.flush()
    assert len(sent) == 1
    assert [s.device_id for s in sent[0].samples] == ["pju-0001", "pju-0002"]
    await t.flush()  # nothing new: nothing submitted
    assert len(sent) == 1
    task = asyncio.create_task(t.run())
    await t.on_reading(reading(10, "pju-0002", active_power=30.0))
    await clock.advance(t.config.flush_interval_s - 1)
    assert len(sent) == 1
    await clock.advance(1)
    assert len(sent) == 2 and sent[1].samples[0].values == {"active_power": 30.0}
    task.cancel()


async def test_a_few_bytes_wait_for_more_or_for_max_wait() -> None:
    """A lone street light does not pay a publish's overhead for a few bytes every 5 minutes."""
    config = TelemetryConfig(flush_interval_s=300, min_batch_bytes=400, max_wait_s=3600)
    t, sent, clock = filter_for(lamp("pju-0001"), lamp("pju-0002"), config=config)
    task = asyncio.create_task(t.run())
    await t.on_reading(reading(0, active_power=60.0))  # about 100 B
    await clock.advance(3300)  # 11 flushes: each found too little
    assert sent == [] and not t.worth_sending()
    await clock.advance(300)  # it has waited max_wait_s: sent, never later
    assert [len(d.samples) for d in sent] == [1]
    for i in range(8):  # enough bytes: sent at the next flush, not an hour later
        await t.on_reading(reading(3600 + i, "pju-0002", active_power=10.0 + 10 * i))
    assert t.worth_sending()
    await clock.advance(300)
    assert [len(d.samples) for d in sent] == [1, 8]
    task.cancel()
    await t.on_reading(reading(4000, active_power=30.0))
    await t.flush()  # a flush (as at shutdown) sends whatever waits
    assert [len(d.samples) for d in sent] == [1, 8, 1]


def test_the_wire_form_is_compact_and_round_trips() -> None:
    s = DeviceSamples(
        device_id="pju-0001",
        at=T0 + timedelta(milliseconds=250),
        values={"active_power": 60.4, "lamp_on": True},
    )
    batch = TelemetryBatch(samples=[s], gateway_id="gw-01", replayed=False)
    wire = encode(batch)
    data = json.loads(wire)
    assert data["samples"] == [
        {"d": "pju-0001", "t": 1795863600250, "v": {"active_power": 60.4, "lamp_on": True}}
    ]
    assert TelemetryBatch.model_validate_json(wire) == batch


@pytest.mark.parametrize("bad", [-1.0, 1001.0])
def test_deadband_pct_is_checked(bad: float) -> None:
    with pytest.raises(ValueError, match="deadband_pct"):
        TelemetryConfig(deadband_pct=bad)


async def test_the_gateway_wiring_follows_the_config(tmp_path: Path) -> None:
    (tmp_path / "influx.token").write_text("t0ken\n")
    (tmp_path / "gateway.toml").write_text(
        'state_dir = "state"\n'
        "[gateway]\n"
        'id = "gw-01"\nsite = "Panel"\nlocation = { lat = -6.3, lon = 106.7 }\n'
        "[broker]\n"
        'host = "127.0.0.1"\n'
        "[telemetry]\nflush_interval_s = 120\n"
        "[telemetry.metrics.active_power]\ndeadband_pct = 0.5\n"
        "[influxdb]\n"
        'url = "http://127.0.0.1:9"\nbucket = "siaran"\ntoken = { file = "influx.token" }\n'
        "[[device]]\n"
        'id = "pju-0001"\nkind = "streetlight"\nprofile = "pju-generic"\n'
        'address = "127.0.0.1:16100"\npole_id = "P-1"\ncircuit = "PNL-07/A"\nrated_w = 60\n'
        'snmp = { community = "public" }\n'
        "location = { lat = -6.3, lon = 106.7 }\n"
    )
    config = load_config(tmp_path / "gateway.toml")
    sent: list[TelemetryDraft] = []

    async def mqtt(draft: TelemetryDraft) -> None:
        sent.append(draft)

    service = telemetry_from_config(config, FakeClock(T0), mqtt)
    assert service is not None and service.influx is not None
    assert service.telemetry.config.flush_interval_s == 120
    assert service.telemetry.outputs[0] is mqtt and len(service.telemetry.outputs) == 2
    token = service.influx.config.token  # type: ignore[attr-defined]
    assert token.resolve().get_secret_value() == "t0ken"  # relative to the config file
    await service.open()
    await service.on_reading(reading(0, active_power=60.0))
    await service.close()  # the last samples still go out
    assert len(sent) == 1 and sent[0].samples[0].values["active_power"] == 60.0
    assert (tmp_path / "state" / "influx-outbox.db").exists()

    no_broker = config.gateway.model_copy(update={"broker": None, "influxdb": None})
    alone = dataclasses.replace(config, gateway=no_broker)
    assert telemetry_from_config(alone, FakeClock(T0), mqtt) is None  # nowhere to send


async def test_a_big_flush_is_split_below_central_s_payload_limit() -> None:
    devices = [lamp(f"pju-{i:04d}") for i in range(300)]
    t, sent, _ = filter_for(*devices, config=TelemetryConfig(max_batch_bytes=8192))
    for d in devices:
        await t.on_reading(reading(0, d.id, supply_voltage=220.0, sys_descr="fw 1.4.2 " * 3))
    await t.flush()
    assert len(sent) > 1
    sizes = [
        len(encode(TelemetryBatch(samples=d.samples, gateway_id="gw-01", replayed=False)))
        for d in sent
    ]
    assert max(sizes) <= 8192 + 200  # the batch's own fields on top
    assert [s.device_id for d in sent for s in d.samples] == [d.id for d in devices]


async def test_a_sample_that_is_not_valid_on_the_wire_is_lost_alone() -> None:
    """Samples are made at the flush: one that cannot be (a naive time from a faulty collector)
    is dropped there, as it was when made on reading, not the whole flush."""
    t, sent, _ = filter_for(lamp("pju-0001"), lamp("pju-0002"))
    naive = reading(0, "pju-0001", active_power=60.0).model_copy(
        update={"at": T0.replace(tzinfo=None)}
    )
    await t.on_reading(naive)
    await t.on_reading(reading(0, "pju-0002", active_power=60.0))
    await t.flush()
    assert [s.device_id for d in sent for s in d.samples] == ["pju-0002"]


async def test_a_sample_that_cannot_be_made_does_not_stop_the_flushing_task() -> None:
    """The periodic check of a batch's size meets the bad sample first: it must go on."""
    t, sent, clock = filter_for(lamp("pju-0001"), lamp("pju-0002"))
    task = asyncio.create_task(t.run())
    naive = reading(0, "pju-0001", active_power=60.0).model_copy(
        update={"at": T0.replace(tzinfo=None)}
    )
    await t.on_reading(naive)
    await clock.advance(t.config.flush_interval_s)  # checked: too small, waits
    await t.on_reading(reading(0, "pju-0002", active_power=60.0))
    await clock.advance(t.config.max_wait_s)
    assert not task.done(), task
    assert [s.device_id for d in sent for s in d.samples] == ["pju-0002"]
    task.cancel()


def test_lamps_of_a_circuit_share_their_tags_and_profile_layout() -> None:
    t, _, _ = filter_for(lamp("pju-0001"), lamp("pju-0002"))
    one, two = (t._devices[d] for d in ("pju-0001", "pju-0002"))
    assert one.meta is two.meta and one.index is two.index
    assert sent_values(t, reading(0, "pju-0001", active_power=60.0)) == {
        "reachable": True,
        "active_power": 60.0,
    }
    assert sent_values(t, reading(0, "pju-0002", active_power=61.0))["active_power"] == 61.0
    assert sent_values(t, reading(60, "pju-0001", active_power=60.3)) == {}  # within deadband
