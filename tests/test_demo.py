"""The README's first command: `siaran-edge demo` plays its script on a simulated district, and
what it builds on: the demo's clock, the embedded MQTT broker, live overrides of a recording,
the generated district and configs. The end-to-end runs start the real command in a subprocess
and check that every scripted step shows its event and SIARAN report, and that nothing (child
process, port) is left behind, also after Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import psutil
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    get_cmd,
)

from agent.demo.clock import ScaledClock
from agent.demo.devices import apply
from agent.demo.district import (
    RECORDED_APS,
    RECORDINGS,
    Ports,
    build_district,
    inventory_toml,
    write_configs,
)
from agent.demo.mqtt_broker import (
    CONNACK,
    CONNECT,
    MqttBroker,
    matches,
    packet,
    utf8,
    valid_filter,
)
from agent.demo.snmp_sim import SnmpSimulator
from central.geo import Boundary

ROOT = Path(__file__).parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "snmprec"
WAN_OPER = "1.3.6.1.2.1.2.2.1.8.3"  # ifOperStatus of the recorded hAP's WAN (ifIndex 3)
SMALL = ["--circuits", "2", "--poles-per-circuit", "5", "--hotspots", "2", "--mqtt-lamps", "1"]


# --- the clock ------------------------------------------------------------------------------------
async def test_scaled_clock_runs_speed_times_faster() -> None:
    real = [100.0]
    start = datetime(2026, 11, 28, 10, 30, tzinfo=UTC)
    clock = ScaledClock(start, speed=60, real=lambda: real[0])
    assert clock.now() == start and clock.monotonic() == 0
    real[0] += 2.5
    assert clock.now() == start + timedelta(minutes=2, seconds=30)
    assert clock.monotonic() == pytest.approx(150.0)
    same = ScaledClock(start, speed=60, real=lambda: real[0], real_start=100.0)
    assert same.now() == clock.now()  # another process makes the same clock
    fast = ScaledClock(speed=600)
    began = time.monotonic()
    await fast.sleep(60)  # one demo minute: 0.1 s
    assert 0.09 < time.monotonic() - began < 1.0
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(speed=0)


# --- the recording override -----------------------------------------------------------------------
async def _get(engine: SnmpEngine, port: int, community: str, oid: str) -> object:
    target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=1, retries=1)
    err, status, _, binds = await get_cmd(
        engine,
        CommunityData(community, mpModel=1),
        target,
        ContextData(),
        ObjectType(ObjectIdentity(oid)),
        lookupMib=False,
    )
    assert err is None and not int(status), (err, status)
    return binds[0][1]


async def test_a_recording_can_be_changed_live_and_back() -> None:
    engine = SnmpEngine()
    async with SnmpSimulator() as sim:

        async def get(oid: str) -> str:
            return str(await _get(engine, sim.port, "routeros", oid))

        sim.add_recording("routeros", RECORDINGS / "routeros.snmprec")
        assert await get(WAN_OPER) == "1"
        sim.override("routeros", WAN_OPER, 2)
        assert await get(WAN_OPER) == "2"
        sim.override("routeros", "1.3.6.1.2.1.1.5.0", "hap-demo", tag="4")
        assert await get("1.3.6.1.2.1.1.5.0") == "hap-demo"
        sim.clear_override("routeros", WAN_OPER)
        assert await get(WAN_OPER) == "1"
        sim.clear_override("routeros")
        assert await get("1.3.6.1.2.1.1.5.0") == "<private>"
        with pytest.raises(ValueError, match="snmprec type"):
            sim.override("routeros", WAN_OPER, 2, tag="99")
        with pytest.raises(Exception):  # noqa: B017, PT011 - pyasn1's error for a non-integer
            sim.override("routeros", WAN_OPER, "down")
        with pytest.raises(KeyError):
            sim.override("no-such-device", WAN_OPER, 2)
    engine.close_dispatcher()


def test_the_demos_recordings_are_the_fixtures_byte_for_byte() -> None:
    for recording in RECORDED_APS:
        assert (RECORDINGS / recording.file).read_bytes() == (
            FIXTURES / recording.file
        ).read_bytes()
        assert f"`{recording.file}`" in (RECORDINGS / "SOURCES.md").read_text()


# --- the embedded broker --------------------------------------------------------------------------
def test_topic_filters() -> None:
    assert matches("a/+/fault", "a/gw/fault") and not matches("a/+/fault", "a/gw/x/fault")
    assert matches("a/#", "a") and matches("a/#", "a/b/c") and matches("#", "a/b")
    assert not matches("#", "$SYS/x") and matches("$SYS/#", "$SYS/x")
    assert valid_filter("a/+/#") and not valid_filter("a/#/b") and not valid_filter("a+/b")


async def _next(client: aiomqtt.Client, limit_s: float = 3.0) -> aiomqtt.Message:
    async def first() -> aiomqtt.Message:
        async for message in client.messages:
            return message
        raise AssertionError("no message")

    return await asyncio.wait_for(first(), limit_s)


async def test_embedded_broker_serves_mqtt5_and_311_clients() -> None:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    v5 = aiomqtt.ProtocolVersion.V5
    async with MqttBroker() as broker:
        port = broker.port
        async with (
            aiomqtt.Client(
                "127.0.0.1", port, identifier="c1", protocol=v5, clean_start=False, properties=props
            ) as c1,
            aiomqtt.Client("127.0.0.1", port, identifier="c2", protocol=v5) as c2,
            aiomqtt.Client("127.0.0.1", port, identifier="old") as old,  # MQTT 3.1.1
        ):
            for c in (c1, c2):  # a shared subscription: each message to one of them
                await c.subscribe([("$share/central/root/+/fault", 1)])
            await old.publish("root/status", b"online", qos=1, retain=True)
            for n in range(4):
                await old.publish("root/gw/fault", f"e{n}".encode(), qos=1)
            got = [await _next(c1), await _next(c1), await _next(c2), await _next(c2)]
            assert sorted(m.payload for m in got) == [b"e0", b"e1", b"e2", b"e3"]
            assert all(m.qos == 1 and not m.retain for m in got)
            await c2.subscribe("root/status", qos=1)  # a plain one gets the retained message
            retained = await _next(c2)
            assert (retained.topic.value, retained.payload, retained.retain) == (
                "root/status",
                b"online",
                True,
            )
            await c1.subscribe("root/gw/status", qos=1)
            # a gateway with a Last Will whose connection dies without DISCONNECT
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            will = utf8("root/gw/status") + struct.pack("!H", 7) + b"offline"
            body = utf8("MQTT") + bytes([4, 0x02 | 0x04 | 0x08 | 0x20]) + struct.pack("!H", 60)
            writer.write(packet(CONNECT, 0, body + utf8("gw") + will))
            assert await reader.readexactly(4) == bytes([CONNACK << 4, 2, 0, 0])
            writer.transport.abort()
            message = await _next(c1, 5.0)
            assert (message.topic.value, message.payload) == ("root/gw/status", b"offline")


# --- the district and its configs ------------------------------------------------------------
def test_district_configs_are_valid_and_inside_the_city(tmp_path: Path) -> None:
    from agent.faults.rules import RULES
    from agent.faults.settings import check_rule_settings
    from central.config import load_config as load_central
    from firmware_config.loader import load_config

    clock = ScaledClock(speed=60)
    district = build_district(12, 4, 24, 3, clock.monotonic)
    assert district.device_count == 12 * 4 + 3 + 24
    ids = [p.device_id for p in district.poles] + [h.device_id for h in district.hotspots]
    assert len(set(ids)) == len(ids)
    city = Boundary.default()
    places = [(p.lat, p.lon) for p in district.poles]
    places += [(h.site.lat, h.site.lon) for h in district.hotspots]
    assert all(city.contains(lat, lon) for lat, lon in places)
    ports = Ports(snmp=16100, broker_host="127.0.0.1", broker=18830, web=18080, sandbox=18700)
    from agent.web.passwords import hash_password

    gateway, central = write_configs(
        tmp_path, district, ports, hash_password("rahasia-demo", n=2**14), "token", 60
    )
    config = load_config(gateway)
    assert check_rule_settings(config, RULES) == []
    assert len(config.devices) == district.device_count
    assert config.gateway.web is not None and config.gateway.device_broker is not None
    assert load_central(central).siaran.base_url == "http://127.0.0.1:18700"
    assert 'profile = "pju-mqtt-json"' in inventory_toml(district, 16100)


def test_commands_change_only_this_processes_poles() -> None:
    clock = ScaledClock(speed=60)
    district = build_district(1, 3, 0, 1, clock.monotonic)
    snmp, mqtt = district.poles[0], district.poles[-1]
    assert mqtt.mqtt and not snmp.mqtt
    apply(district, ("power", district.circuits[0].name, False), mqtt=True)
    assert not mqtt.powered and not mqtt.lamp.online and snmp.powered
    apply(district, ("power", district.circuits[0].name, True), mqtt=True)
    assert mqtt.powered and mqtt.lamp.online
    apply(district, ("fail", snmp.device_id))
    assert snmp.lamp.lamp_failure and snmp.lamp.health == 0
    apply(district, ("repair", snmp.device_id))
    assert not snmp.lamp.lamp_failure
    with pytest.raises(ValueError, match="unknown command"):
        apply(district, ("explode",))


# --- the command, end to end ---------------------------------------------------------------
def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _children_while_running(
    proc: subprocess.Popen[str], until: str, limit_s: float
) -> tuple[str, set[tuple[int, float]]]:
    """stdout up to the line containing `until`, and every descendant seen meanwhile."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    seen: set[tuple[int, float]] = set()
    raw = b""
    deadline = time.monotonic() + limit_s
    while until.encode() not in raw:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"never saw {until!r}; got:\n{raw.decode(errors='replace')}")
        with contextlib.suppress(BlockingIOError):
            raw += os.read(fd, 65536)
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    seen.add((child.pid, child.create_time()))
        time.sleep(0.1)
    os.set_blocking(fd, True)
    return raw.decode(), seen


def _ports(out: str) -> list[int]:
    found = [
        re.search(r"status page http://127\.0\.0\.1:(\d+)/", out),
        re.search(r"SIARAN sandbox http://127\.0\.0\.1:(\d+)/", out),
        re.search(r"on 127\.0\.0\.1:(\d+)", out),
    ]
    assert all(found), out
    return [int(m.group(1)) for m in found if m]


def _assert_nothing_left(children: set[tuple[int, float]], ports: list[int]) -> None:
    """No child seen during the run is still there (a few seconds' grace for one on its way
    out, e.g. multiprocessing's resource tracker); no port of the demo still listens."""
    deadline = time.monotonic() + 5.0
    left = children
    while left and time.monotonic() < deadline:
        left = {c for c in left if _still_there(*c)}
        time.sleep(0.1)
    assert not left, f"children still running: {left}"
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listens"


def _still_there(pid: int, created: float) -> bool:
    try:
        child = psutil.Process(pid)
        return child.create_time() == created and child.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(120)
def test_demo_plays_the_script_and_leaves_nothing_running() -> None:
    proc = _start(*SMALL, "--broker", "embedded")
    try:
        head, children = _children_while_running(proc, "1. A street light burns by day", 30)
        rest, err = proc.communicate(timeout=100)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    out = head + rest
    assert proc.returncode == 0, out + err
    assert children, "the SNMP devices run in a child process"
    assert "embedded MQTT broker" in out
    assert "The district answers: 13 of 13 devices read" in out
    steps = [
        "1. A street light burns by day",
        "2. A WiFi hotspot loses its uplink",
        "3. Dusk",
        "4. A circuit trips",
        "5. A technician on the tripped circuit",
        "6. Repairs",
    ]
    at = [out.index(s) for s in steps]
    assert at == sorted(at), out
    for line in (
        "RAISED day_burning on pju-a-001",
        "RAISED uplink_down on ap-taman-kota-1-bsd",
        "cleared day_burning on pju-a-001",
        "RAISED lamp_failure on pju-a-003",
        "RAISED circuit_outage on PNL-PSP-B",
        "cleared circuit_outage on PNL-PSP-B",
        "cleared uplink_down on ap-taman-kota-1-bsd",
        "cleared lamp_failure on pju-a-003",
        "status page: PNL-PSP-B dalam perawatan",
        "5 controllers restarted in maintenance: nothing was reported",
        "every step showed its outcome",
        "Stopped; nothing is left running.",
    ):
        assert line in out, f"{line!r} missing:\n{out}"
    filed = re.findall(r"SIARAN   report (SRN-\S+) filed: (.+)", out)
    titles = " | ".join(t for _, t in filed)
    assert len(filed) >= 4, out
    for words in ("menyala di siang hari", "hotspot terputus", "Lampu PJU mati", "Sirkuit PJU"):
        assert words in titles, titles
    assert re.search(r"report SRN-\S+ RED FLAG: ", out), out
    assert len(re.findall(r"report SRN-\S+: new -> verified", out)) >= 4, out
    assert "RAISED unreachable" not in out and "RAISED rebooted" not in out, out
    assert "{" not in out, "no JSON log lines on stdout"
    assert err == "", err
    _assert_nothing_left(children, _ports(out))


@pytest.mark.timeout(60)
def test_ctrl_c_stops_the_demo_and_everything_it_started() -> None:
    broker = [] if _mosquitto() else ["--broker", "embedded"]
    proc = _start(*SMALL, *broker)
    try:
        head, children = _children_while_running(proc, "1. A street light burns by day", 30)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    out = head + rest
    assert proc.returncode in (0, 130), out + err
    assert "Ctrl-C: stopping" in out and "Stopped; nothing is left running." in out, out
    assert len(children) >= (2 if broker == [] else 1), children  # devices (+ mosquitto)
    _assert_nothing_left(children, _ports(out))


def _mosquitto() -> bool:
    import shutil

    return bool(shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin"))
