"""Hotspot rules on the recording of a real MikroTik hAP ac lite (served by snmpsim, polled with
SnmpCollector and the mikrotik-routeros profile) and on readings derived from it; the unreachable
rule with a real and an injected ping; and the registry of rules as a whole."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from datetime import datetime
from typing import Any

import pytest
from icmplib import SocketPermissionError  # type: ignore[import-untyped]
from pydantic import SecretStr

from agent.faults.rule import UNREACHABLE, Observation, RuleContext, RuleSettings
from agent.faults.rules import RULES
from agent.faults.rules.unreachable import Unreachable, icmp_ping
from collectors.reading import Reading, ReadingError, Value
from collectors.snmp import SnmpCollector
from firmware_config.models import SnmpV2c
from tests.rule_helpers import (
    DAY,
    NIGHT,
    Judge,
    hotspot_device,
    lamp_device,
    minutes,
    profile,
    profiles,
    reading,
    wib,
)
from tests.servers import free_port
from tests.snmp_servers import Snmpsim

HOTSPOT_RULES = [name for name, rule in RULES.items() if "hotspot" in rule.kinds]
Tables = dict[str, dict[str, dict[str, Value]]]


# --- the real recording -----------------------------------------------------------------------


async def poll_twice(address: str) -> list[Reading]:
    times = iter([wib(2026, 11, 28, 14, 0), wib(2026, 11, 28, 14, 1)])
    collector = SnmpCollector(lambda: next(times))
    device = hotspot_device(
        address=address, snmp=SnmpV2c(community=SecretStr("routeros")), timeout_s=3
    )
    try:
        return [await collector.poll(device, profile("mikrotik-routeros")) for _ in range(2)]
    finally:
        await collector.close()


@pytest.fixture(scope="module")
def routeros(snmpsim_agent: Snmpsim) -> list[Reading]:
    """Two polls of the recorded hAP ac lite, one minute apart (in the readings' time)."""
    polled = asyncio.run(poll_twice(snmpsim_agent.address))
    for r in polled:
        assert r.reachable and r.errors == []
    return polled


def busy_history(clients: float = 6.0, days: int = 7) -> dict[str, Any]:
    """no_clients memory of a site with `clients` users at every hour of the last days."""
    hours = {f"{h:02d}": [clients * 4, 4] for h in range(24)}
    return {"history": {f"2026-11-{28 - d:02d}": dict(hours) for d in range(1, days + 1)}}


async def test_healthy_recording_gives_no_bad_verdict(routeros: list[Reading]) -> None:
    device = hotspot_device()
    verdicts: dict[str, list[Observation | None]] = {}
    for name in HOTSPOT_RULES:
        j = Judge(RULES[name], device)  # asserts that the rule applies
        if name == "no_clients":
            j.memory = busy_history()
        verdicts[name] = [await j(r) for r in routeros]
    bad = {n: v for n, v in verdicts.items() if any(o is not None and o.bad for o in v)}
    assert bad == {}
    last = {n: v[-1] for n, v in verdicts.items()}
    for name in ("unreachable", "uplink_down", "radio_down", "cpu_high", "memory_high",
                 "over_temperature", "rebooted", "reboot_loop", "no_clients",
                 "interface_errors"):  # fmt: skip
        assert last[name] is not None, f"{name} judged nothing"
    assert verdicts["interface_errors"][0] is None  # no earlier counters yet
    # what the recording shows: wlan2 and the virtual wlan3 have no clients and are "down"
    radio = last["radio_down"]
    assert radio is not None
    assert radio.evidence["idle_no_clients"] == ["wlan2", "wlan3"]
    assert radio.evidence["down"] == [] and radio.evidence["disabled"] == []
    summaries = {n: o.summary for n, o in last.items() if o is not None}
    assert summaries["cpu_high"] == "Beban CPU 21 % (batas 90 %)"
    assert summaries["memory_high"] == "Memori wajar: memori 41,5 % terpakai (batas 90 %)"
    assert summaries["over_temperature"] == "Suhu wajar: suhu papan perangkat 33 °C (batas 70 °C)"
    assert summaries["no_clients"] == "11 klien WiFi terhubung"
    assert summaries["uplink_down"] == "Uplink pppoe-out1 aktif"


def with_interface(r: Reading, name: str, **columns: Value) -> Reading:
    tables: Tables = json.loads(json.dumps(r.tables))
    row = next(row for row in tables["interfaces"].values() if row.get("if_name") == name)
    row.update(columns)
    return r.model_copy(update={"tables": tables})


async def test_uplink_down_on_the_recording(routeros: list[Reading]) -> None:
    j = Judge(RULES["uplink_down"], hotspot_device())
    up, later = routeros
    await j.good(up)
    bad = await j.bad(with_interface(later, "pppoe-out1", if_oper_status=7))
    assert bad.summary.startswith("Uplink pppoe-out1 putus (status lowerLayerDown)")
    assert bad.evidence["if_index"] == "11"
    disabled = await j.bad(with_interface(later, "pppoe-out1", if_admin_status=2, if_oper_status=2))
    assert "admin down" in disabled.summary
    quiet = Judge(RULES["uplink_down"], hotspot_device(), admin_down_is_down=False)
    await quiet.none(with_interface(later, "pppoe-out1", if_admin_status=2, if_oper_status=2))
    await j.good(later)


async def test_uplink_by_descr_case_and_missing(routeros: list[Reading]) -> None:
    r = routeros[0]
    await Judge(RULES["uplink_down"], hotspot_device(uplink_if="wan")).good(r)  # "WAN"
    missing = await Judge(RULES["uplink_down"], hotspot_device(uplink_if="ppp0")).bad(r)
    assert missing.summary.startswith("Uplink ppp0 tidak ada di perangkat (ada: WAN, bridge-admin")
    assert missing.evidence["found"] is False
    lenient = Judge(RULES["uplink_down"], hotspot_device(uplink_if="ppp0"), missing_is_down=False)
    await lenient.none(r)
    assert not RULES["uplink_down"].applies_to(
        hotspot_device(uplink_if=None), profile("mikrotik-routeros")
    )
    await Judge(RULES["uplink_down"], hotspot_device()).none(reading(DAY, {"uptime": 5.0}))


async def test_radio_down_on_the_recording(routeros: list[Reading]) -> None:
    j = Judge(RULES["radio_down"], hotspot_device())
    r = routeros[1]
    bad = await j.bad(with_interface(r, "wlan1", if_oper_status=2))  # 7 clients, yet down
    assert bad.summary == "Radio WiFi mati: wlan1: periksa/restart access point"
    await j.good(r)
    strict = Judge(RULES["radio_down"], hotspot_device(), idle_ap_is_up=False)
    assert (await strict.bad(r)).evidence["down"] == ["wlan2", "wlan3"]
    ignoring = Judge(
        RULES["radio_down"], hotspot_device(), idle_ap_is_up=False, ignore=["wlan2", "wlan3"]
    )
    await ignoring.good(r)
    await j.none(reading(DAY, {"uptime": 5.0}))


# --- cpu_high, memory_high, over_temperature -------------------------------------------------


def cpu(*loads: Value) -> Reading:
    return reading(
        DAY, tables={"processors": {str(i): {"cpu_load": x} for i, x in enumerate(loads)}}
    )


async def test_cpu_high() -> None:
    j = Judge(RULES["cpu_high"], hotspot_device())
    bad = await j.bad(cpu(95, 88))  # mean 91.5
    assert bad.summary == "Beban CPU 91,5 % (batas 90 %) selama 10 menit: periksa trafik/proses"
    await j.good(cpu(90))  # exactly the limit
    await j.good(cpu(21, None))
    await j.none(cpu(None))
    s = RULES["cpu_high"].settings_model()
    assert (s.raise_after_s, s.raise_after) == (600, 1000)


def storage(*rows: tuple[str, str, int, int]) -> Reading:
    table: dict[str, dict[str, Value]] = {
        str(i): {
            "storage_type": kind,
            "storage_descr": descr,
            "storage_alloc_units": 1024,
            "storage_size": size,
            "storage_used": used,
        }
        for i, (kind, descr, size, used) in enumerate(rows, start=1)
    }
    return reading(DAY, tables={"storage": table})


RAM, OTHER, DISK = "1.3.6.1.2.1.25.2.1.2", "1.3.6.1.2.1.25.2.1.1", "1.3.6.1.2.1.25.2.1.4"


async def test_memory_high() -> None:
    j = Judge(RULES["memory_high"], hotspot_device())
    await j.bad(storage((RAM, "main memory", 65536, 59000), (DISK, "system disk", 16384, 16000)))
    await j.good(storage((RAM, "main memory", 1000, 900)))  # exactly 90 %
    await j.bad(storage(("", "RAM", 1000, 901)))  # found by its description
    # net-snmp on Linux: buffers and cache are not memory in use
    linux = storage(
        (RAM, "Physical memory", 1000, 950),
        (OTHER, "Memory buffers", 1000, 100),
        (OTHER, "Cached memory", 1000, 400),
    )
    assert (await j.good(linux)).evidence["memory_used_pct"] == 45.0
    await j.none(storage((DISK, "system disk", 16384, 16000)))


async def test_over_temperature_board() -> None:
    j = Judge(RULES["over_temperature"], hotspot_device())
    bad = await j.bad(reading(DAY, {"board_temperature": 71.0}))
    assert bad.summary.startswith("Terlalu panas: suhu papan perangkat 71 °C (batas 70 °C)")
    await j.good(reading(DAY, {"board_temperature": 70.0}))
    await j.none(reading(DAY, {"uptime": 5.0}))
    assert not RULES["over_temperature"].applies_to(
        hotspot_device(profile="snmp-host"), profile("snmp-host")
    )


# --- rebooted, reboot_loop --------------------------------------------------------------------


async def test_hotspot_reboot_uses_host_uptime() -> None:
    j = Judge(RULES["rebooted"], hotspot_device())
    await j.good(reading(DAY, {"uptime": 100.0, "host_uptime": 90000.0}))
    # the SNMP agent restarted, the host did not
    await j.good(reading(DAY + minutes(1), {"uptime": 5.0, "host_uptime": 90060.0}))
    bad = await j.bad(reading(DAY + minutes(2), {"uptime": 40.0, "host_uptime": 40.0}))
    assert bad.summary.startswith("Perangkat restart sekitar 12:01 WIB")
    assert bad.evidence["uptime_metric"] == "host_uptime"


async def test_hotspot_reboot_loop() -> None:
    j = Judge(RULES["reboot_loop"], hotspot_device())
    t = DAY
    await j.good(reading(t, {"host_uptime": 90000.0}))
    for i in (1, 2):
        await j.good(reading(t + minutes(5 * i), {"host_uptime": 60.0}))
    bad = await j.bad(reading(t + minutes(15), {"host_uptime": 60.0}))
    assert bad.summary.startswith("Perangkat restart berulang: 3 kali dalam 1 jam")
    assert RULES["reboot_loop"].settings_model().severity == "major"


# --- no_clients -------------------------------------------------------------------------------


def aps(*counts: Value) -> dict[str, dict[str, Value]]:
    return {str(i): {"ssid": f"TANGSEL-{i}", "client_count": c} for i, c in enumerate(counts, 1)}


async def test_no_clients_learns_the_site_then_raises_and_clears() -> None:
    j = Judge(RULES["no_clients"], hotspot_device())
    start = wib(2026, 11, 25, 0, 0)
    for h in range(3 * 24):  # three days, five clients every hour
        await j(reading(start + minutes(60 * h), tables={"wireless_aps": aps(3, 2)}))
    t = wib(2026, 11, 28, 14, 0)
    bad = await j.bad(reading(t, tables={"wireless_aps": aps(0, 0)}))
    assert bad.summary.startswith("Tidak ada klien WiFi (biasanya sekitar 5 pada jam ini)")
    assert bad.evidence["usual_clients"] == 5.0 and bad.evidence["history_days"] == 3
    again = await j.bad(reading(t + minutes(3), tables={"wireless_aps": aps(0, 0)}))
    assert again.evidence["history_days"] == 3  # today's own zeros are no baseline
    await j.good(reading(t + minutes(5), tables={"wireless_aps": aps(1, 0)}))
    await j.none(reading(wib(2026, 11, 28, 23, 0), tables={"wireless_aps": aps(0, 0)}))


async def test_no_clients_not_judged_without_enough_history_or_users() -> None:
    t = wib(2026, 11, 28, 14, 0)
    empty = reading(t, tables={"wireless_aps": aps(0)})
    j = Judge(RULES["no_clients"], hotspot_device())
    await j.none(empty)  # nothing learnt yet
    j.memory = busy_history(days=2)
    await j.none(empty)  # 2 days < min_history_days
    j.memory = busy_history(clients=1.0)
    await j.none(empty)  # a quiet site: 1 < min_expected
    j.memory = busy_history(clients=2.0)
    await j.bad(empty)  # exactly min_expected
    await j.none(reading(t, tables={"wireless_aps": aps(None)}))
    assert not RULES["no_clients"].applies_to(
        hotspot_device(profile="snmp-host"), profile("snmp-host")
    )


async def test_no_clients_forgets_old_days() -> None:
    j = Judge(RULES["no_clients"], hotspot_device())
    j.memory = busy_history(days=20)
    await j(reading(DAY, tables={"wireless_aps": aps(4)}))
    assert len(j.memory["history"]) == 8  # 7 days back and today


# --- interface_errors -------------------------------------------------------------------------


def if_errors(at: datetime, **per_if: tuple[Value, Value]) -> Reading:
    table = {
        str(i): {"if_name": name, "if_in_errors": ins, "if_out_errors": outs}
        for i, (name, (ins, outs)) in enumerate(per_if.items(), start=1)
    }
    return reading(at, tables={"interfaces": table})


async def test_interface_errors_rate_raise_and_clear() -> None:
    j = Judge(RULES["interface_errors"], hotspot_device())
    t = DAY
    await j.none(if_errors(t, wlan1=(0, 0), ether1=(5, 0)))
    bad = await j.bad(if_errors(t + minutes(1), wlan1=(500, 100), ether1=(5, 0)))
    assert bad.summary.startswith("Galat antarmuka tinggi: wlan1 600/menit (batas 10/menit)")
    assert bad.evidence["bad_interfaces"] == ["wlan1: 600/menit"]
    edge = await j.good(if_errors(t + minutes(3), wlan1=(510, 110), ether1=(5, 0)))  # 10/min
    assert edge.evidence["worst_per_min"] == 10.0
    await j.good(if_errors(t + minutes(4), wlan1=(510, 110), ether1=(5, 0)))


async def test_interface_errors_wrap_reset_and_spacing() -> None:
    j = Judge(RULES["interface_errors"], hotspot_device())
    t = DAY
    await j.none(if_errors(t, wlan1=(2**32 - 5, 0)))
    wrapped = await j.good(if_errors(t + minutes(1), wlan1=(4, 0)))  # 9 errors across the wrap
    assert wrapped.evidence["worst_per_min"] == 9.0
    await j.none(if_errors(t + minutes(2), wlan1=(1, 0)))  # counters reset (reboot): no rate
    await j.none(if_errors(t + minutes(2.1), wlan1=(900, 0)))  # 6 s later: too close to compare
    bad = await j.bad(if_errors(t + minutes(3), wlan1=(30, 0)))  # 29 over the minute since t+2
    assert bad.evidence["worst_per_min"] == 29.0
    await j.none(reading(t + minutes(4), tables={"interfaces": {"1": {"if_name": "x"}}}))


# --- unreachable ------------------------------------------------------------------------------


def timeout_reading(at: datetime = NIGHT) -> Reading:
    error = ReadingError(code="timeout", message="no SNMP answer from 10.30.0.1:161")
    return reading(at, reachable=False, errors=[error])


def fake_ping(answer: bool | Exception) -> tuple[Unreachable, list[str]]:
    calls: list[str] = []

    async def ping(host: str, timeout_s: float, privileged: bool) -> bool:
        calls.append(host)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return Unreachable(ping), calls


async def test_unreachable_tells_agent_dead_from_offline() -> None:
    rule, calls = fake_ping(True)
    j = Judge(rule, hotspot_device())
    await j.good(reading(NIGHT, {"uptime": 5.0}))
    assert calls == []  # no ping while it answers
    dead = await j.bad(timeout_reading())
    assert dead.summary.startswith("Agen SNMP mati (perangkat menjawab ping 10.30.0.1")
    assert dead.severity == "minor" and dead.evidence["icmp"] == "answers"
    assert calls == ["10.30.0.1"]
    rule, _ = fake_ping(False)
    offline = await Judge(rule, hotspot_device()).bad(timeout_reading())
    assert offline.summary.startswith("Perangkat offline (tidak menjawab SNMP maupun ping 10.30")
    assert offline.severity is None and offline.evidence["icmp"] == "no_answer"


async def test_unreachable_when_icmp_cannot_be_used() -> None:
    rule, _ = fake_ping(SocketPermissionError(False))
    unknown = await Judge(rule, hotspot_device()).bad(timeout_reading())
    assert unknown.evidence["icmp"] == "unknown"
    assert str(unknown.evidence["icmp_detail"]).startswith("SocketPermissionError")
    assert unknown.summary == "Perangkat 10.30.0.1 tidak menjawab SNMP (ping tidak dapat diuji)"
    rule, calls = fake_ping(True)
    off = await Judge(rule, hotspot_device(), icmp=False).bad(timeout_reading())
    assert calls == [] and off.evidence["icmp"] == "not_tried"


async def test_unreachable_real_ping_of_a_host_without_snmp_agent() -> None:
    """127.0.0.1 with nothing on the SNMP port: the poll times out, the host answers ping."""
    device = hotspot_device(
        address=f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
        snmp=SnmpV2c(community=SecretStr("public")),
        timeout_s=0.3,
        retries=0,
    )
    collector = SnmpCollector(lambda: NIGHT)
    try:
        polled = await collector.poll(device, profile("mikrotik-routeros"))
    finally:
        await collector.close()
    assert not polled.reachable
    found = await Judge(Unreachable(), device, icmp_timeout_s=0.5).bad(polled)
    try:
        await icmp_ping("127.0.0.1", 0.5, False)
        allowed = True
    except SocketPermissionError:  # net.ipv4.ping_group_range excludes us
        allowed = False
    if allowed:
        assert found.evidence["icmp"] == "answers" and found.summary.startswith("Agen SNMP mati")
    else:
        assert found.evidence["icmp"] == "unknown"
        assert "SocketPermissionError" in str(found.evidence["icmp_detail"])
    if os.geteuid() == 0:  # a raw socket works for root
        raw = await Judge(Unreachable(), device, icmp_privileged=True).bad(polled)
        assert raw.evidence["icmp"] == "answers"


# --- the registry -----------------------------------------------------------------------------


def test_registry_names_settings_and_profiles() -> None:
    assert all(name == rule.name for name, rule in RULES.items())
    assert {UNREACHABLE, "lamp_failure", "day_burning", "cycling", "power_deviation",
            "supply_voltage", "low_power_factor", "over_temperature", "rebooted",
            "reboot_loop", "uplink_down", "radio_down", "cpu_high", "memory_high",
            "no_clients", "interface_errors"} <= set(RULES)  # fmt: skip
    lamp, hotspot = lamp_device(), hotspot_device()
    for name, rule in RULES.items():
        defaults = rule.settings_model()
        assert isinstance(defaults, RuleSettings)
        schema = rule.settings_model.model_json_schema()
        own = set(schema["properties"]) - set(RuleSettings.model_fields)
        for field in own:  # every threshold explains itself
            assert rule.settings_model.model_fields[field].description, (name, field)
        judged = [
            p.name
            for p in profiles().values()
            for d in (lamp, hotspot)
            if d.kind in rule.kinds
            and p.name in {"pju-generic", "mikrotik-routeros"}
            and rule.applies_to(d, p)
        ]
        assert judged, f"{name} applies to no shipped profile"
    # pju-mqtt-json uses pju-generic's names: every street-light rule judges it too
    mqtt = profile("pju-mqtt-json")
    for name, rule in RULES.items():
        if "streetlight" in rule.kinds:
            assert rule.applies_to(lamp_device(profile="pju-mqtt-json"), mqtt), name


async def test_settings_from_the_config_are_checked() -> None:
    model = RULES["supply_voltage"].settings_model
    with pytest.raises(ValueError, match="min_v must be below max_v"):
        model.model_validate({"min_v": 250})
    with pytest.raises(ValueError, match="Extra inputs"):
        model.model_validate({"min_volt": 190})
    plain = RuleSettings(raise_after=2)  # the engine may pass base settings: defaults fill in
    ctx = RuleContext(lamp_device(), profile("pju-generic"), NIGHT, {})
    low = reading(NIGHT, {"supply_voltage": 190.0})
    found = await RULES["supply_voltage"].observe(low, ctx, plain)
    assert found is not None and found.bad and "batas 198-242 V" in found.summary
