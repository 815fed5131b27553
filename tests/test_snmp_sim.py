"""The demo's SNMP simulator: the snmprec parser, the lamp model, and the agent itself as seen by
net-snmp's command-line tools and by the gateway's own SnmpCollector."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent.demo.lamp import LampController
from agent.demo.snmp_sim import SnmpSimulator
from agent.demo.snmprec import SnmprecError, format_oid, parse_snmprec, read_snmprec
from collectors.reading import Reading
from firmware_config.loader import load_profiles
from firmware_config.models import Device, Location, SnmpV2c

ROUTEROS = (
    Path(__file__).resolve().parent.parent / "agent" / "demo" / "recordings" / "routeros.snmprec"
)
TANGSEL = Location(lat=-6.29, lon=106.71)
CLI = ["-v2c", "-m", "", "-M", "/nonexistent", "-On", "-Oe", "-t", "1", "-r", "1"]
END = "No more variables left in this MIB View"

V = "1.3.6.1.4.1.32473.3418.1.1"  # supply voltage, 0.1 V
P = "1.3.6.1.4.1.32473.3418.4.1"  # active power, 0.1 W
DIM = "1.3.6.1.4.1.32473.3416.2.1"
COMMAND = "1.3.6.1.4.1.32473.3416.1.1"  # 3416/1: the one writable object
LAMP_FAILURE = "1.3.6.1.4.1.32473.3416.5.1"
LAMP_ON = "1.3.6.1.4.1.32473.1.1.1"
UPTIME = "1.3.6.1.2.1.1.3.0"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def now() -> datetime:
    return datetime.now(UTC)


# --- the snmprec parser -------------------------------------------------------------------------


def test_parser_reads_the_real_recording() -> None:
    records = read_snmprec(ROUTEROS)
    assert len(records) == 515
    assert [r.oid for r in records] == sorted(r.oid for r in records)
    by_oid = {format_oid(r.oid): r for r in records}
    assert by_oid["1.3.6.1.2.1.1.2.0"].tag == "6"
    assert by_oid["1.3.6.1.2.1.2.2.1.6.1"].value == bytes.fromhex("6C3B6BA200FC")
    assert by_oid["1.3.6.1.2.1.2.2.1.6.11"].value == ""  # empty OCTET STRING
    assert by_oid["1.3.6.1.2.1.31.1.1.1.6.3"].value == 6422347895
    assert by_oid["1.3.6.1.2.1.4.20.1.3.192.168.11.1"].value == "255.255.255.0"
    assert by_oid["1.3.6.1.4.1.14988.1.1.1.3.1.9.1"].value == -117
    assert {r.tag for r in records} == {"2", "4", "4x", "6", "64", "65", "66", "67", "70"}


def test_parser_keeps_pipes_in_values_and_skips_comments() -> None:
    records = parse_snmprec("# comment\n\n1.3.6.1.2.1.1.1.0|4|a|b\n1.3.6.1.2.1.1.3.0|67|5\n")
    assert [(format_oid(r.oid), r.value) for r in records] == [
        ("1.3.6.1.2.1.1.1.0", "a|b"),
        ("1.3.6.1.2.1.1.3.0", 5),
    ]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("1.3.6.1.2.1.1.1.0|2:writecache|value=2", "unsupported type"),
        ("1.3.6.1.2.1.1.1.0|4x|zz", "bad value"),
        ("1.3.6.1.2.1.1.1.0|2|abc", "bad value"),
        ("1.3.6.1.2.1.1.1.0|64|300.1.1.1", "bad value"),
        ("1.3.6.x|2|1", "not a numeric OID"),
        ("1.3.6.1.2.1.1.1.0", "expected OID|TYPE|VALUE"),
        ("1.3.6.1|2|1\n1.3.6.1|2|2", "given twice"),
    ],
)
def test_parser_rejects_what_it_cannot_serve(line: str, why: str) -> None:
    with pytest.raises(SnmprecError, match=why):
        parse_snmprec(line, "x.snmprec")


# --- the lamp model -----------------------------------------------------------------------------


def test_lamp_power_follows_rating_dimming_and_health() -> None:
    lamp = LampController(rated_w=60, clock=FakeClock())
    assert lamp.active_power == pytest.approx(60.4)
    assert lamp.pf == pytest.approx(0.97)
    assert lamp.supply_current == pytest.approx(60.4 / (220 * 0.97))
    lamp.update(dim=75)
    assert lamp.active_power == pytest.approx(45.4)
    assert 0.89 <= lamp.pf <= 0.92  # like the EXEDRA sample: 0.907 at 75 %
    lamp.update(dim=100)
    lamp.degrade_driver(0.5)
    assert lamp.active_power == pytest.approx(30.4)
    assert not lamp.lamp_failure  # a degraded driver raises no flag: the rules must see it
    lamp.fail_lamp()
    assert lamp.active_power < 1 and lamp.lamp_failure
    lamp.repair()
    assert lamp.active_power == pytest.approx(60.4) and not lamp.lamp_failure
    lamp.update(lamp_on=False)
    assert lamp.active_power < 1 and lamp.dim_measured == 0


def test_lamp_counters_integrate_over_time() -> None:
    clock = FakeClock()
    lamp = LampController(rated_w=100, speedup=60.0, clock=clock)  # one real minute = one hour
    clock.t += 60
    lamp.tick()
    assert lamp.lamp_hours == pytest.approx(1.0)
    assert lamp.energy_wh == pytest.approx(100.4)
    lamp.update(lamp_on=False)
    assert lamp.switch_count == 1
    clock.t += 60
    lamp.update(lamp_on=True)
    assert lamp.lamp_hours == pytest.approx(1.0)  # off: no operating hours
    assert lamp.energy_wh == pytest.approx(100.4 + 0.4)  # standby only
    assert lamp.switch_count == 1  # counts on -> off only
    assert lamp.uptime_s == pytest.approx(120)
    lamp.reboot()
    assert lamp.uptime_s == 0


def test_lamp_command_sets_level_and_switch() -> None:
    lamp = LampController(rated_w=60, clock=FakeClock())
    lamp.command(75)
    assert (lamp.dim, lamp.lamp_on) == (75, True)
    assert lamp.active_power == pytest.approx(45.4)
    lamp.command(0)
    assert (lamp.lamp_on, lamp.dim_measured, lamp.switch_count) == (False, 0, 1)
    with pytest.raises(ValueError, match="outside"):
        lamp.command(101)


def test_lamp_update_rejects_unknown_fields() -> None:
    lamp = LampController(clock=FakeClock())
    with pytest.raises(AttributeError, match="no field 'dimm'"):
        lamp.update(dimm=50)
    with pytest.raises(AttributeError):
        lamp.update(_last_on=False)


def test_lamp_records_cover_the_pju_generic_profile() -> None:
    profile = load_profiles()["pju-generic"]
    served = {format_oid(r.oid) for r in LampController(clock=FakeClock()).records()}
    assert {m.oid for m in profile.metrics} <= served


# --- the agent through net-snmp's tools ---------------------------------------------------------


async def cli(tool: str, port: int, community: str, *args: str) -> tuple[int, list[str], str]:
    """Run a net-snmp tool without blocking the event loop the simulator answers in."""
    proc = await asyncio.create_subprocess_exec(
        shutil.which(tool) or tool, *CLI, "-c", community, f"127.0.0.1:{port}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode().splitlines(), err.decode()


def value_of(line: str) -> str:
    return line.split(" = ", 1)[1]


@pytest.fixture
async def sim() -> AsyncIterator[SnmpSimulator]:
    simulator = SnmpSimulator()
    simulator.add_lamp("pju-0001", LampController(rated_w=60, sys_name="pju-0001"))
    simulator.add_lamp("pju-0002", LampController(rated_w=90, supply_voltage=231.0))
    simulator.add_recording("routeros", ROUTEROS)
    await simulator.start()
    try:
        yield simulator
    finally:
        simulator.close()


async def test_snmpget_returns_the_lamp_values(sim: SnmpSimulator) -> None:
    rc, out, err = await cli("snmpget", sim.port, "pju-0001", V, P, DIM, LAMP_ON, LAMP_FAILURE)
    assert rc == 0, err
    assert [value_of(line) for line in out] == [
        "Gauge32: 2200", "Gauge32: 604", "INTEGER: 100", "INTEGER: 1", "INTEGER: 2",
    ]  # fmt: skip
    rc, out, err = await cli("snmpget", sim.port, "pju-0002", V, P)
    assert rc == 0, err
    assert [value_of(line) for line in out] == ["Gauge32: 2310", "Gauge32: 904"]


async def test_snmpget_sees_a_change_at_run_time(sim: SnmpSimulator) -> None:
    lamp = sim.lamp("pju-0001")
    lamp.update(dim=50)
    _, out, _ = await cli("snmpget", sim.port, "pju-0001", DIM, P)
    assert [value_of(line) for line in out] == ["INTEGER: 50", "Gauge32: 304"]
    lamp.fail_lamp()
    _, out, _ = await cli("snmpget", sim.port, "pju-0001", LAMP_FAILURE, P)
    assert [value_of(line) for line in out] == ["INTEGER: 1", "Gauge32: 4"]


async def test_missing_objects_and_end_of_view(sim: SnmpSimulator) -> None:
    _, out, _ = await cli(
        "snmpget", sim.port, "pju-0001",
        "1.3.6.1.4.1.32473.3418.4.2",  # power of a second output: the object exists, not instance
        "1.3.6.1.4.1.32473.3418.99.1",  # no such object
        "1.3.6.1.2.1.1.3",  # sysUpTime without its .0
    )  # fmt: skip
    assert [value_of(line) for line in out] == [
        "No Such Instance currently exists at this OID",
        "No Such Object available on this agent at this OID",
        "No Such Instance currently exists at this OID",
    ]
    _, out, _ = await cli("snmpgetnext", sim.port, "routeros", "1.3.6.1.4.1.14988.1.1.19.1.1.10.25")
    assert out == [
        f".1.3.6.1.4.1.14988.1.1.19.1.1.10.25 = {END} (It is past the end of the MIB tree)"
    ]
    _, out, _ = await cli("snmpgetnext", sim.port, "routeros", "1.3.6.1.2.1.1.2.0")
    assert out == [".1.3.6.1.2.1.1.3.0 = Timeticks: (2020400) 5:36:44.00"]


async def test_bulkwalk_returns_the_whole_recording(sim: SnmpSimulator) -> None:
    rc, out, err = await cli("snmpbulkwalk", sim.port, "routeros", ".1")
    assert rc == 0, err
    assert END in out[-1]  # one endOfMibView at the end, as snmpd gives, not a padding of them
    assert sum(END in line for line in out) == 1
    varbinds = [line for line in out if END not in line]
    assert len(varbinds) == len(ROUTEROS.read_text().splitlines()) == 515
    assert [line.split(" = ")[0] for line in varbinds] == [
        "." + format_oid(r.oid) for r in read_snmprec(ROUTEROS)
    ]
    assert '.1.3.6.1.4.1.14988.1.1.1.3.1.4.1 = STRING: "WARKOP-KOPIBOSS-B"' in varbinds
    assert ".1.3.6.1.2.1.2.2.1.6.1 = Hex-STRING: 6C 3B 6B A2 00 FC " in varbinds
    assert ".1.3.6.1.2.1.31.1.1.1.6.3 = Counter64: 6422347895" in varbinds
    assert ".1.3.6.1.2.1.4.20.1.3.192.168.11.1 = IpAddress: 255.255.255.0" in varbinds


async def test_bulkwalk_of_a_column_stays_in_it(sim: SnmpSimulator) -> None:
    rc, out, _ = await cli("snmpbulkwalk", sim.port, "routeros", "1.3.6.1.4.1.14988.1.1.1.3.1.6")
    assert rc == 0
    assert [value_of(line) for line in out] == [
        "Counter32: 7", "Counter32: 0", "Counter32: 0", "Counter32: 4",
    ]  # fmt: skip


async def test_bulkwalk_of_a_lamp_sees_every_object(sim: SnmpSimulator) -> None:
    rc, out, _ = await cli("snmpbulkwalk", sim.port, "pju-0001", ".1")
    assert rc == 0
    walked = [line.split(" = ")[0] for line in out if END not in line]
    records = LampController(clock=FakeClock()).records()
    assert walked == ["." + format_oid(r.oid) for r in records]


async def test_unknown_community_gets_no_answer(sim: SnmpSimulator) -> None:
    rc, out, err = await cli("snmpget", sim.port, "pju-9999", UPTIME)
    assert rc != 0 and out == []
    assert "Timeout" in err
    rc, out, _ = await cli("snmpget", sim.port, "routeros", UPTIME)
    assert rc == 0 and out  # the agent itself is alive


async def test_offline_lamp_gets_no_answer_until_it_comes_back(sim: SnmpSimulator) -> None:
    lamp = sim.lamp("pju-0001")
    lamp.online = False
    rc, _, err = await cli("snmpget", sim.port, "pju-0001", UPTIME)
    assert rc != 0 and "Timeout" in err
    rc, _, _ = await cli("snmpget", sim.port, "pju-0002", UPTIME)
    assert rc == 0  # the other devices still answer
    lamp.reboot()
    rc, out, _ = await cli("snmpget", sim.port, "pju-0001", UPTIME)
    assert rc == 0 and value_of(out[0]).startswith("Timeticks: (")


async def test_set_of_the_lamp_command_switches_the_lamp(sim: SnmpSimulator) -> None:
    lamp = sim.lamp("pju-0001")
    rc, out, err = await cli("snmpset", sim.port, "pju-0001", COMMAND, "i", "40")
    assert rc == 0, err
    assert value_of(out[0]) == "INTEGER: 40"
    assert (lamp.dim, lamp.lamp_on) == (40, True)
    _, out, _ = await cli("snmpget", sim.port, "pju-0001", COMMAND, DIM, P, LAMP_ON)
    assert [value_of(line) for line in out] == [
        "INTEGER: 40", "INTEGER: 40", "Gauge32: 244", "INTEGER: 1",
    ]  # fmt: skip
    rc, _, _ = await cli("snmpset", sim.port, "pju-0001", COMMAND, "i", "0")
    assert rc == 0 and (lamp.dim, lamp.lamp_on) == (0, False)
    assert sim.lamp("pju-0002").lamp_on, "only the addressed lamp"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((DIM, "i", "10"), "notWritable"),  # 3416/2 command in action: read-only
        ((UPTIME, "t", "5"), "notWritable"),
        ((COMMAND, "i", "101"), "wrongValue"),
        ((COMMAND, "u", "50"), "wrongType"),  # Gauge32, not INTEGER
        ((COMMAND, "i", "50", DIM, "i", "10"), "notWritable"),  # all or nothing
    ],
)
async def test_every_other_set_is_refused(
    sim: SnmpSimulator, args: tuple[str, ...], reason: str
) -> None:
    rc, _, err = await cli("snmpset", sim.port, "pju-0001", *args)
    assert rc != 0 and reason in err
    assert (sim.lamp("pju-0001").dim, sim.lamp("pju-0001").lamp_on) == (100, True)


async def test_set_on_a_recording_or_an_offline_lamp(sim: SnmpSimulator) -> None:
    rc, _, err = await cli("snmpset", sim.port, "routeros", COMMAND, "i", "10")
    assert rc != 0 and "notWritable" in err
    sim.lamp("pju-0001").online = False
    rc, _, err = await cli("snmpset", sim.port, "pju-0001", COMMAND, "i", "10")
    assert rc != 0 and "Timeout" in err
    assert sim.lamp("pju-0001").dim == 100


async def test_devices_can_be_added_after_start(sim: SnmpSimulator) -> None:
    sim.add_lamp("pju-0003", LampController(rated_w=120))
    _, out, _ = await cli("snmpget", sim.port, "pju-0003", P)
    assert [value_of(line) for line in out] == ["Gauge32: 1204"]
    with pytest.raises(ValueError, match="already served"):
        sim.add_lamp("pju-0003", LampController())


async def test_close_releases_the_port() -> None:
    first = SnmpSimulator()
    first.add_lamp("pju-0001", LampController())
    port = await first.start()
    first.close()
    first.close()
    again = SnmpSimulator(port=port)
    again.add_lamp("pju-0001", LampController())
    assert await again.start() == port
    rc, _, _ = await cli("snmpget", port, "pju-0001", UPTIME)
    again.close()
    assert rc == 0


# --- the agent through the gateway's SnmpCollector -----------------------------------------------


def lamp_device(port: int, community: str) -> Device:
    return Device(
        id=community, kind="streetlight", profile="pju-generic", address=f"127.0.0.1:{port}",
        snmp=SnmpV2c(community=SecretStr(community)), location=TANGSEL, timeout_s=1, retries=1,
        pole_id="SRP-0001", circuit="PANEL-SRP-07/R", rated_w=60,
    )  # fmt: skip


async def poll(device: Device, profile_name: str) -> Reading:
    from collectors.snmp import SnmpCollector

    collector = SnmpCollector(now)
    try:
        return await collector.poll(device, load_profiles()[profile_name])
    finally:
        await collector.close()


async def test_pju_generic_polled_through_the_simulator(sim: SnmpSimulator) -> None:
    profile = load_profiles()["pju-generic"]
    reading = await poll(lamp_device(sim.port, "pju-0001"), "pju-generic")
    assert reading.reachable and reading.errors == []
    assert set(reading.values) == {m.name for m in profile.metrics}
    v = reading.values
    assert v["lamp_on"] is True and v["lamp_failure"] is False and v["daylight"] is False
    assert v["supply_voltage"] == pytest.approx(220.0)
    assert v["active_power"] == pytest.approx(60.4)
    assert v["power_factor"] == pytest.approx(0.97)
    assert v["supply_current"] == pytest.approx(0.283)
    assert v["dim_command"] == v["dim_measured"] == 100
    assert v["nominal_power"] == 60
    assert v["sys_descr"] == sim.lamp("pju-0001").sys_descr
    assert isinstance(v["uptime"], float) and 0 <= v["uptime"] < 60


async def test_collector_sees_scenario_changes(sim: SnmpSimulator) -> None:
    lamp = sim.lamp("pju-0001")
    device = lamp_device(sim.port, "pju-0001")
    lamp.update(energy_wh=1500.0, lamp_hours=12.0, switch_count=3)
    lamp.degrade_driver(0.5)
    v = (await poll(device, "pju-generic")).values
    assert v["active_power"] == pytest.approx(30.4)
    assert v["lamp_failure"] is False
    assert v["active_energy"] == pytest.approx(1.5, abs=0.002)
    assert (v["lamp_hours"], v["switch_count"]) == (12, 3)
    lamp.fail_lamp()
    lamp.update(day_burner=True, daylight=True, lux=12000)
    v = (await poll(device, "pju-generic")).values
    assert v["lamp_failure"] is True and v["lamp_failure_reason"] == 2
    assert v["day_burner"] is True and v["daylight"] is True and v["lux"] == 12000
    assert v["active_power"] == pytest.approx(0.4)
    lamp.online = False
    reading = await poll(device, "pju-generic")
    assert not reading.reachable
    assert [e.code for e in reading.errors] == ["timeout"]


async def test_mikrotik_profile_polled_through_the_simulator(sim: SnmpSimulator) -> None:
    device = Device(
        id="wifi-warkop", kind="hotspot", profile="mikrotik-routeros",
        address=f"127.0.0.1:{sim.port}", snmp=SnmpV2c(community=SecretStr("routeros")),
        location=TANGSEL,
    )  # fmt: skip
    reading = await poll(device, "mikrotik-routeros")
    assert reading.reachable and reading.errors == []
    aps = reading.tables["wireless_aps"]
    assert (aps["1"]["client_count"], aps["9"]["client_count"]) == (7, 4)
    assert (aps["1"]["frequency"], aps["2"]["frequency"]) == (2412, 5805)
    interfaces = reading.tables["interfaces"]
    assert len(interfaces) == 12
    assert interfaces["1"]["if_name"] == "wlan1"
    assert len(reading.tables["wireless_clients"]) == 11
