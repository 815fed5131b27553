"""The SNMP collector against real agents: net-snmp's snmpd and snmpsim serving recordings.

Every test runs on both SNMPv2c paths: "fast" (gufo-snmp, the default) and "pysnmp".
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pysnmp.hlapi.v3arch.asyncio import bulk_cmd, get_cmd
from structlog.testing import capture_logs

from collectors import snmp_fast
from collectors.reading import Reading
from collectors.snmp import SnmpCollector
from firmware_config.models import Device
from firmware_config.profiles import Profile
from tests.snmp_servers import SNMPREC_DIR, SNMPSIM_V3_USER, Snmpd, Snmpsim, V3User, snmpd

NOW = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
SYS = "1.3.6.1.2.1.1"
IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"
LAMP = "1.3.6.1.4.1.32473"


def clock() -> datetime:
    return NOW


def device(ident: str, address: str, snmp: dict[str, Any], timeout: float = 0.5) -> Device:
    return Device.model_validate(
        {
            "id": ident,
            "kind": "hotspot",
            "profile": "test",
            "address": address,
            "snmp": snmp,
            "timeout_s": timeout,
            "retries": 1,
            "location": {"lat": -6.29, "lon": 106.71},
        }
    )


def v2c(community: str) -> dict[str, Any]:
    return {"version": "2c", "community": community}


def v3(account: V3User, **override: str) -> dict[str, Any]:
    """Credentials for a snmpd user; net-snmp's 'SHA-512' is 'SHA512' in our config."""
    creds: dict[str, Any] = {"version": "3", "user": account.name}
    if account.auth_protocol:
        auth = account.auth_protocol.replace("-", "")
        creds |= {"auth_protocol": auth, "auth_key": account.auth_key}
    if account.priv_protocol:
        priv = account.priv_protocol.replace("-", "")
        creds |= {"priv_protocol": priv, "priv_key": account.priv_key}
    return creds | override


def profile(metrics: list[dict[str, Any]], tables: list[dict[str, Any]] | None = None) -> Profile:
    return Profile.model_validate(
        {
            "name": "test",
            "protocol": "snmp",
            "kinds": ["hotspot", "streetlight"],
            "metrics": metrics,
            "tables": tables or [],
        }
    )


SYSTEM = profile(
    [
        {"name": "descr", "oid": f"{SYS}.1.0", "type": "str"},
        {"name": "uptime", "oid": f"{SYS}.3.0", "type": "timeticks"},
        {"name": "name", "oid": f"{SYS}.5.0", "type": "str"},
    ]
)


def recording(name: str) -> dict[str, str]:
    """OID -> value text of a .snmprec file: the ground truth for what snmpsim serves."""
    lines = (SNMPREC_DIR / f"{name}.snmprec").read_text().splitlines()
    return {oid: value for oid, _, value in (line.split("|", 2) for line in lines if line)}


def codes(reading: Reading) -> list[tuple[str, str | None]]:
    return [(e.code, e.metric) for e in reading.errors]


class CallLog:
    """Wraps a pysnmp command in collectors.snmp to see what the collector sends."""

    def __init__(self, real: Any, delay: float = 0.0) -> None:
        self.real, self.delay = real, delay
        self.sizes: list[int] = []
        self.in_flight = self.peak = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.sizes.append(sum(1 for a in args if type(a).__name__ == "ObjectType"))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return await self.real(*args, **kwargs)
        finally:
            self.in_flight -= 1


class FastCalls:
    """Wraps FastV2c.get (and .walk) of the fast path the way CallLog wraps pysnmp's commands."""

    def __init__(self, delay: float = 0.0, answer: Any = None) -> None:
        self.delay, self.answer = delay, answer
        self.sizes: list[int] = []
        self.walks: list[tuple[str, int]] = []
        self.in_flight = self.peak = 0
        self.real_get, self.real_walk = snmp_fast.FastV2c.get, snmp_fast.FastV2c.walk

    async def get(self, client: snmp_fast.FastV2c, oids: list[str]) -> Any:
        self.sizes.append(len(oids))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.answer is not None:
                return await self.answer(client, oids)
            return await self.real_get(client, oids)
        finally:
            self.in_flight -= 1

    def walk(self, client: snmp_fast.FastV2c, root: str, repetitions: int) -> Any:
        self.walks.append((root, repetitions))
        return self.real_walk(client, root, repetitions)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FastCalls:
        # plain functions as class attributes: they get the client as their first argument
        monkeypatch.setattr(snmp_fast.FastV2c, "get", lambda c, oids: self.get(c, oids))
        monkeypatch.setattr(snmp_fast.FastV2c, "walk", lambda c, r, n: self.walk(c, r, n))
        return self


@pytest.fixture(params=["fast", "pysnmp"])
def v2c_path(request: pytest.FixtureRequest) -> str:
    if request.param == "fast" and not snmp_fast.AVAILABLE:
        pytest.skip("gufo-snmp is not installed")
    return str(request.param)


@pytest.fixture
async def collector(v2c_path: str) -> AsyncIterator[SnmpCollector]:
    c = SnmpCollector(clock, v2c_fast=v2c_path == "fast")
    yield c
    await c.close()


# -- snmpd: v2c, v3, errors -------------------------------------------------------------------


async def test_v2c_reads_system_scalars(collector: SnmpCollector, snmpd_agent: Snmpd) -> None:
    dev = device("pju-001", snmpd_agent.address, v2c(snmpd_agent.community))
    first = await collector.poll(dev, SYSTEM)
    await asyncio.sleep(0.1)
    second = await collector.poll(dev, SYSTEM)

    assert first.ok, first.errors
    assert (first.device_id, first.at, first.reachable) == ("pju-001", NOW, True)
    uname = os.uname()
    assert first.values["name"] == socket.gethostname()
    descr = first.values["descr"]
    assert isinstance(descr, str)
    assert descr.startswith(uname.sysname) and uname.release in descr
    up1, up2 = first.values["uptime"], second.values["uptime"]
    assert isinstance(up1, float) and isinstance(up2, float)
    assert 0 < up1 < up2 < 3600  # seconds since this snmpd started
    assert 0 < second.duration_s < 0.5
    # The fast path needs no pysnmp engine for v2c (pysnmp builds one on first use).
    assert (collector._engine is None) == collector.v2c_fast

    await collector.close()  # close() ends the engine; the next poll starts a new one
    assert (await collector.poll(dev, SYSTEM)).ok


@pytest.mark.parametrize(
    "user",
    [
        "siaran",  # authPriv SHA / AES-128
        "strong",  # authPriv SHA-512 / AES-256 (net-snmp's key extension)
        "legacy",  # authPriv MD5 / DES
        "signonly",  # authNoPriv SHA-256
        "plain",  # noAuthNoPriv
    ],
)
async def test_v3_security_levels_and_protocols(
    collector: SnmpCollector, snmpd_agent: Snmpd, user: str
) -> None:
    dev = device(f"hs-{user}", snmpd_agent.address, v3(snmpd_agent.user(user)))
    for _ in range(2):  # first contact (engine discovery) and a known engine
        reading = await collector.poll(dev, SYSTEM)
        assert reading.ok, reading.errors
        assert reading.values["name"] == socket.gethostname()


async def test_wrong_community_is_a_clear_timeout(
    collector: SnmpCollector, snmpd_agent: Snmpd
) -> None:
    dev = device("pju-wrong", snmpd_agent.address, v2c("not-our-community"))
    reading = await collector.poll(dev, SYSTEM)

    assert not reading.reachable
    assert codes(reading) == [("timeout", None)]
    message = reading.errors[0].message
    assert f"no SNMP answer from {snmpd_agent.address} within 0.5 s x 2 tries" in message
    assert "wrong community" in message
    assert "not-our-community" not in message
    assert reading.values == {} and reading.tables == {}
    assert 0.9 < reading.duration_s < 2.0
    good = device("pju-good", snmpd_agent.address, v2c(snmpd_agent.community))
    assert (await collector.poll(good, SYSTEM)).ok


@pytest.mark.parametrize(
    ("user", "override", "expected"),
    [
        ("siaran", {"auth_key": "not-the-auth-key"}, "wrongDigest"),
        ("siaran", {"user": "nobody"}, "does not know SNMPv3 user 'nobody' (unknownUserName)"),
        ("signonly", {"priv_protocol": "AES", "priv_key": "some-priv-key"}, "unsupportedSecLevel"),
        ("siaran", {"priv_key": "not-the-priv-key"}, "wrong privacy key"),
    ],
)
async def test_v3_auth_problems_are_auth_errors(
    collector: SnmpCollector,
    snmpd_agent: Snmpd,
    user: str,
    override: dict[str, str],
    expected: str,
) -> None:
    creds = v3(snmpd_agent.user(user), **override)
    reading = await collector.poll(device("hs-bad", snmpd_agent.address, creds), SYSTEM)

    assert reading.reachable  # the agent answered: it is there, our credentials are wrong
    assert codes(reading) == [("auth", None)]
    message = reading.errors[0].message
    assert expected in message
    for secret in ("auth_key", "priv_key"):
        if creds.get(secret):
            assert creds[secret] not in message
    assert reading.values == {}


async def test_wrong_v3_key_does_not_disturb_a_good_device_with_the_same_user(
    collector: SnmpCollector, snmpd_agent: Snmpd
) -> None:
    user = snmpd_agent.user("siaran")
    good = device("hs-good", snmpd_agent.address, v3(user))
    bad = device("hs-bad", snmpd_agent.address, v3(user, auth_key="not-the-auth-key"))
    for _ in range(3):
        readings = await asyncio.gather(*(collector.poll(d, SYSTEM) for d in (good, bad, good)))
        assert readings[0].ok and readings[2].ok, [r.errors for r in readings]
        assert codes(readings[1]) == [("auth", None)]


async def test_missing_scalar_is_no_such_object(
    collector: SnmpCollector, snmpd_agent: Snmpd
) -> None:
    prof = profile(
        [
            {"name": "name", "oid": f"{SYS}.5.0", "type": "str"},
            {"name": "not_there", "oid": f"{SYS}.99.0", "type": "int"},
            {"name": "no_instance", "oid": f"{SYS}.5.7", "type": "str"},
        ]
    )
    dev = device("pju-002", snmpd_agent.address, v2c(snmpd_agent.community))
    reading = await collector.poll(dev, prof)

    assert reading.reachable
    assert reading.values == {"name": socket.gethostname()}
    assert codes(reading) == [("no_such_object", "not_there"), ("no_such_object", "no_instance")]


async def test_snmpd_if_table_matches_the_kernel(
    collector: SnmpCollector, snmpd_agent: Snmpd
) -> None:
    prof = profile(
        [],
        [
            {
                "name": "interfaces",
                "columns": [
                    {"name": "index", "oid": f"{IF}.1", "type": "int"},
                    {"name": "descr", "oid": f"{IF}.2", "type": "str"},
                    {"name": "type", "oid": f"{IF}.3", "type": "int"},
                    {"name": "mac", "oid": f"{IF}.6", "type": "str"},
                    {"name": "in_octets", "oid": f"{IFX}.6", "type": "counter"},
                ],
            }
        ],
    )
    dev = device("hs-001", snmpd_agent.address, v2c(snmpd_agent.community))
    reading = await collector.poll(dev, prof)

    assert reading.ok, reading.errors
    rows = reading.tables["interfaces"]
    assert {i: row["descr"] for i, row in rows.items()} == {
        str(index): name for index, name in socket.if_nameindex()
    }
    for index, row in rows.items():
        assert row["index"] == int(index)
        name = str(row["descr"])
        sysfs = Path("/sys/class/net") / name / "address"
        if name != "lo" and sysfs.exists():
            assert row["mac"] == "0x" + sysfs.read_text().strip().replace(":", "")
    loopback = next(row for row in rows.values() if row["descr"] == "lo")
    assert loopback["type"] == 24  # softwareLoopback
    in_octets = loopback["in_octets"]
    assert isinstance(in_octets, int) and in_octets > 0  # our own SNMP traffic runs over lo


# -- snmpsim: recordings of real devices --------------------------------------------------------

ROUTEROS_IFS = {
    "name": "interfaces",
    "columns": [
        {"name": "descr", "oid": f"{IF}.2", "type": "str"},
        {"name": "type", "oid": f"{IF}.3", "type": "int"},
        {"name": "in_octets", "oid": f"{IFX}.6", "type": "counter"},
        {"name": "out_octets", "oid": f"{IFX}.10", "type": "counter"},
    ],
}


async def test_routeros_interfaces_in_one_bulk_stream(
    collector: SnmpCollector, snmpsim_agent: Snmpsim, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk = CallLog(bulk_cmd)
    monkeypatch.setattr("collectors.snmp.bulk_cmd", bulk)
    fast = FastCalls().install(monkeypatch)
    dev = device("hs-routeros", snmpsim_agent.address, v2c("routeros"))
    reading = await collector.poll(dev, profile([], [ROUTEROS_IFS]))

    assert reading.ok, reading.errors
    rec = recording("routeros")
    rows = reading.tables["interfaces"]
    assert sorted(rows, key=int) == [str(i) for i in range(1, 13)]
    for index, row in rows.items():
        assert row == {
            "descr": rec[f"{IF}.2.{index}"],
            "type": int(rec[f"{IF}.3.{index}"]),
            "in_octets": int(rec[f"{IFX}.6.{index}"]),
            "out_octets": int(rec[f"{IFX}.10.{index}"]),
        }
    wlans = sorted(str(row["descr"]) for row in rows.values() if row["type"] == 71)
    assert wlans == ["wlan1", "wlan2", "wlan3", "wlan4"]
    assert rows["3"]["descr"] == "WAN" and rows["3"]["in_octets"] == 6_422_347_895  # > 2**32
    if collector.v2c_fast:
        # One subtree per stream: ifEntry once (columns 1-3 for 2 and 3), the two ifXTable
        # columns (6 and 10, far apart) one by one; next time just past the known end.
        assert fast.walks == [(IF, 60), (f"{IFX}.6", 25), (f"{IFX}.10", 25)]
        assert bulk.sizes == []
        fast.walks.clear()
        again = await collector.poll(dev, profile([], [ROUTEROS_IFS]))
        assert again.tables == reading.tables
        assert fast.walks == [(IF, 3 * 12 + 1), (f"{IFX}.6", 13), (f"{IFX}.10", 13)]
        return
    # All four columns travel together: one GETBULK per round, not one walk per column.
    assert bulk.sizes[0] == 4 and len(bulk.sizes) <= 2
    # Next time it knows the table's size: one GETBULK that just reaches past its end.
    bulk.sizes.clear()
    again = await collector.poll(dev, profile([], [ROUTEROS_IFS]))
    assert again.tables == reading.tables
    assert bulk.sizes == [4]


async def test_table_max_rows_is_respected(
    collector: SnmpCollector, snmpsim_agent: Snmpsim, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = FastCalls().install(monkeypatch)
    table = ROUTEROS_IFS | {"max_rows": 5}
    dev = device("hs-routeros", snmpsim_agent.address, v2c("routeros"))
    reading = await collector.poll(dev, profile([], [table]))

    assert reading.ok, reading.errors
    rows = reading.tables["interfaces"]
    assert list(rows) == ["1", "2", "3", "4", "5"]
    assert all(len(row) == 4 for row in rows.values())
    if collector.v2c_fast:  # the table is longer than max_rows: next time column by column,
        fast.walks.clear()  # each stopping at its 5th row (an entry walk passes every row)
        again = await collector.poll(dev, profile([], [table]))
        assert again.tables == reading.tables
        assert fast.walks == [(f"{IF}.2", 7), (f"{IF}.3", 7), (f"{IFX}.6", 7), (f"{IFX}.10", 7)]


async def test_missing_objects_in_real_recordings(
    collector: SnmpCollector, snmpsim_agent: Snmpsim
) -> None:
    prof = profile(
        [
            {"name": "uptime", "oid": f"{SYS}.3.0", "type": "timeticks"},
            {"name": "host_uptime", "oid": "1.3.6.1.2.1.25.1.1.0", "type": "timeticks"},
        ],
        [ROUTEROS_IFS],
    )
    openwrt = await collector.poll(
        device("hs-openwrt", snmpsim_agent.address, v2c("openwrt")), prof
    )
    unifi = await collector.poll(device("hs-unifi", snmpsim_agent.address, v2c("unifi")), prof)

    # OpenWrt has no sysUpTime but hrSystemUptime, and ifDescr/ifType without HC counters.
    host_uptime = int(recording("openwrt")["1.3.6.1.2.1.25.1.1.0"]) / 100
    assert openwrt.values == {"host_uptime": pytest.approx(host_uptime)}
    assert ("no_such_object", "uptime") in codes(openwrt)
    assert len(openwrt.tables["interfaces"]) == 18
    assert all(set(row) == {"descr", "type"} for row in openwrt.tables["interfaces"].values())
    # The UniFi AP has no ifTable at all: an empty table and an error naming it.
    assert unifi.reachable
    assert unifi.tables == {"interfaces": {}}
    assert ("no_such_object", "interfaces") in codes(unifi)


async def test_v3_context_selects_the_agent(
    collector: SnmpCollector, snmpsim_agent: Snmpsim
) -> None:
    """snmpsim serves each recording as an SNMPv3 context of one engine, with one user."""
    readings = {
        context: await collector.poll(
            device(f"hs-{context}", snmpsim_agent.address, v3(SNMPSIM_V3_USER, context=context)),
            SYSTEM,
        )
        for context in ("routeros", "unifi", "airos_airos8")
    }
    for context, reading in readings.items():
        assert reading.ok, reading.errors
        assert reading.values["descr"] == recording(context)[f"{SYS}.1.0"]
        assert reading.values["uptime"] == pytest.approx(
            int(recording(context)[f"{SYS}.3.0"]) / 100
        )


async def test_value_types_and_a_wrong_type_value(
    collector: SnmpCollector, snmpsim_agent: Snmpsim
) -> None:
    prof = profile(
        [
            {"name": "uptime", "oid": f"{SYS}.3.0", "type": "timeticks"},
            {"name": "lamp_on", "oid": f"{LAMP}.1.1.0", "type": "bool"},
            {"name": "lamp_power", "oid": f"{LAMP}.1.2.0", "type": "float", "unit": "W"},
            {"name": "voltage", "oid": f"{LAMP}.1.3.0", "scale": 0.1, "unit": "V"},
            {"name": "ip", "oid": f"{LAMP}.1.4.0", "type": "str"},
            {"name": "energy", "oid": f"{LAMP}.1.5.0", "type": "counter"},
            {"name": "mac", "oid": f"{LAMP}.1.6.0", "type": "str"},
            {"name": "kind", "oid": f"{LAMP}.1.7.0", "type": "str"},
            {"name": "street", "oid": f"{LAMP}.1.8.0", "type": "str"},
            {"name": "number_as_text", "oid": f"{LAMP}.1.3.0", "type": "str"},
        ],
        [
            {
                "name": "lamps",
                "columns": [
                    {"name": "label", "oid": f"{LAMP}.2.1.1.2", "type": "str"},
                    {"name": "power_w", "oid": f"{LAMP}.2.1.1.3", "type": "float"},
                    {"name": "state", "oid": f"{LAMP}.2.1.1.4", "type": "int"},
                ],
            }
        ],
    )
    dev = device("pju-lamp", snmpsim_agent.address, v2c("lamp_controller"))
    reading = await collector.poll(dev, prof)

    assert reading.reachable
    assert codes(reading) == [("wrong_type", "lamp_power"), ("wrong_type", "lamps")]
    assert "N/A" in reading.errors[0].message
    assert "power_w" in reading.errors[1].message
    assert reading.values == {
        "uptime": pytest.approx(1234.56),
        "lamp_on": True,
        "voltage": pytest.approx(230.4),
        "ip": "10.20.30.40",
        "energy": 2**64 - 1,
        "mac": "0x00a0c914c829",
        "kind": "1.3.6.1.4.1.32473.2",
        "street": "Jl. Pahlawan Seribu 12",
        "number_as_text": "2304",
    }
    assert reading.tables["lamps"] == {
        "1": {"label": "lamp-A", "power_w": 120.0, "state": 1},
        "2": {"label": "lamp-B", "state": 2},  # no power reading for lamp 2
        "3": {"label": "lamp-C", "state": 1},  # 'err' is not a number
    }


async def test_many_scalars_are_chunked_and_too_big_is_split(
    collector: SnmpCollector, snmpsim_agent: Snmpsim, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = recording("routeros")
    columns = (2, 3, 4, 7, 8, 9, 13, 14)  # 8 columns x 12 interfaces = 96 scalars
    metrics = [
        {"name": f"c{col}_{i}", "oid": f"{IF}.{col}.{i}", "type": "str"}
        for col in columns
        for i in range(1, 13)
    ]
    limit = 10

    async def small_agent(*args: Any, **kwargs: Any) -> Any:
        """Like a small embedded agent: tooBig for more than `limit` varbinds."""
        if sum(1 for a in args if type(a).__name__ == "ObjectType") > limit:
            return None, 1, 0, []
        return await get_cmd(*args, **kwargs)

    async def small_fast_agent(client: snmp_fast.FastV2c, oids: list[str]) -> Any:
        """What gufo-snmp makes of a tooBig: an answer without any value."""
        if len(oids) > limit:
            return {}
        return await fast.real_get(client, oids)

    get = CallLog(small_agent)
    monkeypatch.setattr("collectors.snmp.get_cmd", get)
    fast = FastCalls(answer=small_fast_agent).install(monkeypatch)
    dev = device("hs-routeros", snmpsim_agent.address, v2c("routeros"))
    reading = await collector.poll(dev, profile(metrics))
    if collector.v2c_fast:
        get.sizes = fast.sizes

    assert reading.ok, reading.errors
    assert reading.values == {m["name"]: rec[m["oid"]] for m in metrics}
    answered = [n for n in get.sizes if n <= limit]
    assert sum(answered) == len(metrics)  # every scalar asked once in an answered GET
    assert len(get.sizes) < 40  # chunked and split, not one GET per scalar


async def test_a_get_of_objects_the_device_does_not_have_is_split_only_once(
    snmpsim_agent: Snmpsim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gufo-snmp answers "nothing" both for a tooBig and for OIDs that all do not exist: the
    halves are tried once; a device without that MIB is not asked 2n-1 times at every poll."""
    if not snmp_fast.AVAILABLE:
        pytest.skip("gufo-snmp is not installed")
    fast = FastCalls().install(monkeypatch)
    absent = [
        {"name": f"x{i}", "oid": f"1.3.6.1.4.1.32473.99.{i}.0", "type": "int"} for i in range(8)
    ]
    collector = SnmpCollector(clock)
    dev = device("hs-routeros", snmpsim_agent.address, v2c("routeros"))
    first = await collector.poll(dev, profile(absent))
    asked_first = len(fast.sizes)
    second = await collector.poll(dev, profile(absent))
    await collector.close()

    assert first.reachable and {c for c, _ in codes(first)} == {"no_such_object"}
    assert codes(second) == codes(first)
    assert asked_first == 15  # 8 OIDs: 1 + 2 + 4 + 8 GETs, finding nothing
    assert len(fast.sizes) - asked_first == 1  # next time: one GET


# -- dead devices, deadlines, concurrency --------------------------------------------------------


async def test_dead_device_goes_unreachable_fast_and_does_not_stall_others(
    tmp_path: Path, v2c_path: str
) -> None:
    collector = SnmpCollector(clock, max_concurrency=2, v2c_fast=v2c_path == "fast")
    system_and_ifs = profile(SYSTEM.model_dump()["metrics"], [ROUTEROS_IFS])
    with snmpd(tmp_path / "dying") as dying, snmpd(tmp_path / "healthy") as healthy:
        doomed = device("pju-doomed", dying.address, v2c(dying.community))
        others = [device(f"pju-{i}", healthy.address, v2c(healthy.community)) for i in range(6)]
        with capture_logs() as logs:
            readings = await asyncio.gather(
                *(collector.poll(d, system_and_ifs) for d in [doomed, *others])
            )
            assert all(r.ok for r in readings), [r.errors for r in readings]

            dying.kill()
            for _ in range(2):
                started = time.monotonic()
                dead, *alive = await asyncio.gather(
                    *(collector.poll(d, system_and_ifs) for d in [doomed, *others])
                )
                assert not dead.reachable
                assert codes(dead) == [("timeout", None)]
                assert dead.duration_s < 0.5 * 2 + 0.6  # one timeout x tries, not one per request
                assert all(r.ok for r in alive), [r.errors for r in alive]
                assert max(r.duration_s for r in alive) < 0.6  # not held up by the dead one
                if not collector.v2c_fast:  # (gufo's connected socket may hear ICMP at once)
                    assert max(r.duration_s for r in alive) < dead.duration_s / 2
                assert time.monotonic() - started < 2.0

            dying.start()  # the device comes back on the same port
            back = await collector.poll(doomed, system_and_ifs)
            assert back.ok, back.errors
    await collector.close()

    events = [e["event"] for e in logs if e.get("device") == "pju-doomed"]
    assert events == ["snmp device unreachable", "snmp device recovered"]  # changes only


async def test_poll_returns_even_if_pysnmp_never_does(
    collector: SnmpCollector, snmpd_agent: Snmpd, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def hang(*args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    monkeypatch.setattr("collectors.snmp.get_cmd", hang)
    monkeypatch.setattr(snmp_fast.FastV2c, "get", hang)
    dev = device("pju-hang", snmpd_agent.address, v2c(snmpd_agent.community), timeout=0.2)
    reading = await asyncio.wait_for(collector.poll(dev, SYSTEM), timeout=5)

    assert not reading.reachable
    assert codes(reading) == [("timeout", None)]
    assert reading.duration_s < 0.2 * 2 + 1.5


async def test_concurrency_bound_is_respected(
    snmpd_agent: Snmpd, monkeypatch: pytest.MonkeyPatch, v2c_path: str
) -> None:
    if v2c_path == "fast":
        get: CallLog | FastCalls = FastCalls(delay=0.05).install(monkeypatch)
    else:
        get = CallLog(get_cmd, delay=0.05)
        monkeypatch.setattr("collectors.snmp.get_cmd", get)
    collector = SnmpCollector(clock, max_concurrency=3, v2c_fast=v2c_path == "fast")
    devices = [
        device(f"pju-{i:03}", snmpd_agent.address, v2c(snmpd_agent.community)) for i in range(12)
    ]
    readings = await asyncio.gather(*(collector.poll(d, SYSTEM) for d in devices))
    assert all(r.ok for r in readings), [r.errors for r in readings]
    assert get.peak == 12  # first contact: the silent devices' set, 4 x 3 (none heard from yet)
    get.peak = 0
    readings = await asyncio.gather(*(collector.poll(d, SYSTEM) for d in devices))
    await collector.close()

    assert all(r.ok for r in readings), [r.errors for r in readings]
    assert len(get.sizes) == 24
    assert get.peak == 3  # devices that answered: the bound is used, and never exceeded


async def test_an_answer_the_fast_path_cannot_decode_moves_the_device_to_pysnmp(
    snmpd_agent: Snmpd, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not snmp_fast.AVAILABLE:
        pytest.skip("gufo-snmp is not installed")

    async def undecodable(client: snmp_fast.FastV2c, oids: list[str]) -> Any:
        raise snmp_fast.SnmpDecodeError("cannot decode")

    fast = FastCalls(answer=undecodable).install(monkeypatch)
    pysnmp_get = CallLog(get_cmd)
    monkeypatch.setattr("collectors.snmp.get_cmd", pysnmp_get)
    collector = SnmpCollector(clock)
    dev = device("pju-001", snmpd_agent.address, v2c(snmpd_agent.community))
    first = await collector.poll(dev, SYSTEM)
    second = await collector.poll(dev, SYSTEM)
    await collector.close()

    assert first.reachable and codes(first) == [("protocol", None)]  # it did answer
    assert "gufo-snmp cannot decode" in first.errors[0].message and "1 h" in first.errors[0].message
    assert second.ok and second.values["name"], second.errors
    assert len(fast.sizes) == 1 and len(pysnmp_get.sizes) >= 1  # the second through pysnmp
