"""The shipped device profiles: they load, their docs and samples agree with them, and the SNMP ones
match recordings of real devices (MikroTik RouterOS) or the reference sample (pju-generic)."""

from __future__ import annotations

import json
import math
import shutil
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from agent.demo.snmp_sim import SnmpSimulator
from agent.demo.snmprec import Oid, parse_oid, read_snmprec
from collectors.base import convert
from firmware_config.loader import SHIPPED_PROFILES, load_config, load_profiles
from firmware_config.models import Device, InventoryFile, Location, SnmpV2c
from firmware_config.profiles import Profile
from tests.snmp_servers import snmpsim

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "profiles"
SAMPLES = DOCS / "samples"
SHARED_RECORDINGS = Path("/work/shared/devices/recordings")
ROUTEROS = ROOT / "agent" / "demo" / "recordings" / "routeros.snmprec"
PJU_SAMPLE = SAMPLES / "pju-generic.snmprec"
TANGSEL = Location(lat=-6.29, lon=106.71)
SHIPPED_NAMES = sorted(
    p.name[: -len(".toml")] for p in SHIPPED_PROFILES.iterdir() if p.name.endswith(".toml")
)

SHIPPED = {
    "pju-generic": ("snmp", ["streetlight"]),
    "snmp-host": ("snmp", ["hotspot"]),
    "mikrotik-routeros": ("snmp", ["hotspot"]),
    "pju-mqtt-json": ("mqtt", ["streetlight"]),
}

# The names the fault rules are written against.
PJU_METRICS = {
    "lamp_on", "dim_command", "dim_measured", "supply_voltage", "supply_current", "active_power",
    "power_factor", "active_energy", "lamp_hours", "switch_count", "gear_temperature", "daylight",
    "lux", "lamp_failure", "gear_failure", "relay_failure", "day_burner", "cycling_failure",
    "gear_comm_failure", "thermal_derating", "thermal_shutdown", "uptime", "sys_descr",
}  # fmt: skip

# snmp-host names absent from each real recording, as documented in docs/profiles/snmp-host.md
IF_COUNTERS = {"if_admin_status", "if_last_change", "if_in_discards", "if_in_errors",
               "if_out_discards", "if_out_errors"}  # fmt: skip
HC = {"if_in_octets", "if_out_octets", "if_high_speed"}
IF_BASIC = {"if_descr", "if_type", "if_oper_status"}
HOST_RES = {"cpu_load", "storage_type", "storage_descr", "storage_alloc_units", "storage_size",
            "storage_used"}  # fmt: skip
SNMP_HOST_ABSENT: dict[str, set[str]] = {
    "routeros": set(),
    "openwrt": {"uptime", "sys_name"} | IF_COUNTERS | HC,
    "airos_airos8": {"host_uptime", "if_name", "if_alias"} | HC | HOST_RES,
    "unifi": IF_BASIC | IF_COUNTERS | {"if_name", "if_alias"} | HC | HOST_RES,
}


@pytest.fixture(scope="module")
def profiles() -> dict[str, Profile]:
    return load_profiles()


def names_of(profile: Profile) -> set[str]:
    names = {m.name for m in profile.metrics} | {f.name for f in profile.fields}
    return names | {c.name for t in profile.tables for c in t.columns}


def oid_sets(path: Path) -> set[Oid]:
    return {record.oid for record in read_snmprec(path)}


def has_column(oids: set[Oid], column: str) -> bool:
    root = parse_oid(column)
    return any(len(oid) > len(root) and oid[: len(root)] == root for oid in oids)


def absent_from(profile: Profile, oids: set[Oid]) -> set[str]:
    """Metric names whose OID is not in the recording, and columns with no row in it."""
    missing = {m.name for m in profile.metrics if parse_oid(m.oid) not in oids}
    return missing | {
        c.name for t in profile.tables for c in t.columns if not has_column(oids, c.oid)
    }


def lookup(doc: Any, path: str) -> Any:
    for key in path.split("."):
        doc = doc[key]
    return doc


def now() -> datetime:
    return datetime.now(UTC)


# --- loading --------------------------------------------------------------------------------


def test_every_shipped_profile_loads(profiles: dict[str, Profile]) -> None:
    assert set(profiles) == set(SHIPPED_NAMES) >= set(SHIPPED)
    for name, (protocol, kinds) in SHIPPED.items():
        profile = profiles[name]
        assert (profile.protocol, profile.kinds) == (protocol, kinds), name
        assert profile.extends is None  # resolved by the loader
        assert profile.description


def test_pju_profiles_use_the_rule_metric_names(profiles: dict[str, Profile]) -> None:
    assert names_of(profiles["pju-generic"]) >= PJU_METRICS
    assert names_of(profiles["pju-mqtt-json"]) >= PJU_METRICS
    assert profiles["pju-mqtt-json"].expected_period_s == 60


def test_shared_pju_names_mean_the_same(profiles: dict[str, Profile]) -> None:
    snmp = {m.name: m for m in profiles["pju-generic"].metrics}
    mqtt = {f.name: f for f in profiles["pju-mqtt-json"].fields}
    assert set(mqtt) <= set(snmp), "every MQTT metric has its pju-generic twin"
    for name, field in mqtt.items():
        assert field.unit == snmp[name].unit, name
        assert (field.type == "bool") == (snmp[name].type == "bool"), name
        assert (field.type == "counter") == (snmp[name].type == "counter"), name


def test_mikrotik_extends_snmp_host(profiles: dict[str, Profile]) -> None:
    host, mikrotik = profiles["snmp-host"], profiles["mikrotik-routeros"]
    assert names_of(host) < names_of(mikrotik)
    assert [t.name for t in mikrotik.tables] == [
        "interfaces", "processors", "storage", "wireless_aps", "wireless_clients",
    ]  # fmt: skip


def test_every_table_shares_one_index(profiles: dict[str, Profile]) -> None:
    """Columns of one table are siblings (same entry OID) or, for IF-MIB, ifTable + ifXTable."""
    if_entries = {"1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1"}
    for profile in profiles.values():
        for table in profile.tables:
            entries = {c.oid.rsplit(".", 1)[0] for c in table.columns}
            assert len(entries) == 1 or entries == if_entries, (profile.name, table.name)


# --- writes -------------------------------------------------------------------------------------


def test_street_light_profiles_declare_the_lamp_command(profiles: dict[str, Profile]) -> None:
    snmp = profiles["pju-generic"].write("lamp_command")
    mqtt = profiles["pju-mqtt-json"].write("lamp_command")
    assert snmp is not None and mqtt is not None
    assert snmp.oid == "1.3.6.1.4.1.32473.3416.1.1"  # uCIFI 3416/1 Command, instance 1
    assert (mqtt.command_topic, mqtt.field) == ("{address}/set", "lamp.dim")
    for w in (snmp, mqtt):
        assert (w.type, w.min, w.max, w.unit) == ("int", 0, 100, "%")
        assert (w.raw(0), w.raw(100)) == (0, 100)
        with pytest.raises(ValueError, match="outside"):
            w.raw(101)
    assert profiles["snmp-host"].writes == profiles["mikrotik-routeros"].writes == []


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_docs_name_every_write(name: str, profiles: dict[str, Profile]) -> None:
    text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
    for write in profiles[name].writes:
        assert f"`{write.name}`" in text, f"{name}.md does not mention {write.name}"
        assert (write.oid or write.command_topic or "") in text


def test_the_write_must_fit_the_protocol() -> None:
    base = {"name": "x", "kinds": ["streetlight"], "protocol": "snmp"}
    snmp_write = {"name": "lamp_command", "min": 0, "max": 100, "oid": "1.3.6.1.4.1.1.0"}
    mqtt_write = {"name": "lamp_command", "min": 0, "max": 100,
                  "command_topic": "{address}/set", "field": "lamp.dim"}  # fmt: skip
    assert Profile.model_validate({**base, "writes": [snmp_write]}).write("lamp_command")
    for profile in (
        {**base, "writes": [mqtt_write]},
        {**base, "protocol": "mqtt", "writes": [snmp_write]},
        {**base, "protocol": "mqtt", "writes": [{**mqtt_write, "field": None}]},
        {**base, "writes": [snmp_write, snmp_write]},
        {**base, "writes": [{**snmp_write, "min": 101}]},
        {**base, "protocol": "mqtt", "writes": [{**mqtt_write, "command_topic": "a/#"}]},
    ):
        with pytest.raises(ValidationError):
            Profile.model_validate(profile)


def test_a_profile_that_extends_another_inherits_its_writes(tmp_path: Path) -> None:
    (tmp_path / "pju-vendor.toml").write_text(
        'name = "pju-vendor"\nprotocol = "snmp"\nkinds = ["streetlight"]\nextends = "pju-generic"\n'
    )
    profile = load_profiles([tmp_path])["pju-vendor"]
    assert profile.write("lamp_command") == load_profiles()["pju-generic"].write("lamp_command")


# --- docs and samples -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_docs_name_every_metric(name: str, profiles: dict[str, Profile]) -> None:
    text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
    documented = names_of(profiles[name])
    base = tomllib.loads((SHIPPED_PROFILES / f"{name}.toml").read_text()).get("extends")
    if base:  # the inherited part is documented with the base profile
        documented -= names_of(profiles[base])
    for metric in documented:
        assert f"`{metric}`" in text, f"{name}.md does not mention {metric}"
    for scalar in profiles[name].metrics:
        if scalar.name in documented:
            assert scalar.oid in text, f"{name}.md lacks the OID of {scalar.name}"


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_inventory_sample_validates(name: str, profiles: dict[str, Profile]) -> None:
    raw = tomllib.loads((SAMPLES / f"{name}.devices.toml").read_text(encoding="utf-8"))
    inventory = InventoryFile.model_validate(raw)
    assert inventory.device
    for device in inventory.device:
        assert device.profile == name
        assert device.kind in profiles[name].kinds
        if device.kind == "streetlight":
            assert -6.40 < device.location.lat < -6.20  # Tangerang Selatan
            assert 106.60 < device.location.lon < 106.80
        if profiles[name].protocol == "snmp":
            assert device.credentials and device.snmp is None  # a named set, not inline
            device.host_port()


def test_samples_load_through_a_gateway_config(tmp_path: Path) -> None:
    """All inventory samples together pass the loader's cross-checks (profiles, credentials)."""
    inventory = sorted(SAMPLES.glob("*.devices.toml"))
    lines = [f"inventory = {json.dumps([str(p) for p in inventory])}"]
    lines += [
        "[gateway]", 'id = "gw-tangsel-01"', 'site = "Panel PJU Jl. Pahlawan Seribu"',
        "[gateway.location]", "lat = -6.2975", "lon = 106.669",
        "[device_broker]", 'host = "127.0.0.1"',
        "[snmp_credentials.pju-snmp]", 'version = "2c"', 'community = "pju-ro"',
        "[snmp_credentials.hotspot-snmp]", 'version = "3"', 'user = "siaran"',
        'auth_protocol = "SHA"', 'auth_key = "auth-key-1"',
        'priv_protocol = "AES"', 'priv_key = "priv-key-1"',
    ]  # fmt: skip
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join(lines) + "\n")
    loaded = load_config(config)
    assert len(loaded.devices) == 5
    for device in loaded.devices:
        profile = loaded.profile_of(device)
        assert (device.snmp is not None) == (profile.protocol == "snmp"), device.id


def test_payload_sample_maps_through_the_mqtt_profile(profiles: dict[str, Profile]) -> None:
    from collectors.mqtt_json import reading_from_payload

    profile = profiles["pju-mqtt-json"]
    payload = (SAMPLES / "pju-mqtt-json.payload.json").read_bytes()
    doc = json.loads(payload)
    for spec in profile.fields:
        lookup(doc, spec.field)  # KeyError names a field missing from the sample
    device = InventoryFile.model_validate(
        tomllib.loads((SAMPLES / "pju-mqtt-json.devices.toml").read_text(encoding="utf-8"))
    ).device[0]
    reading = reading_from_payload(device, profile, payload, now())
    assert reading.errors == []
    assert set(reading.values) == {f.name for f in profile.fields}
    assert reading.values["lamp_on"] is True
    assert reading.values["lamp_failure"] is False
    assert reading.values["active_energy"] == pytest.approx(780.412)
    assert reading.values["power_factor"] == pytest.approx(0.97)


# --- pju-generic against its reference sample -----------------------------------------------


def sample_values(profile: Profile) -> dict[str, Any]:
    """What each metric of the profile should read from the sample, converted from the file."""
    records = {r.oid: r for r in read_snmprec(PJU_SAMPLE)}
    return {m.name: convert(m, records[parse_oid(m.oid)].value) for m in profile.metrics}


def test_pju_sample_is_one_healthy_lamp(profiles: dict[str, Profile]) -> None:
    profile = profiles["pju-generic"]
    assert absent_from(profile, oid_sets(PJU_SAMPLE)) == set()
    v = sample_values(profile)
    assert v["lamp_on"] is True and v["daylight"] is False
    flags = ["lamp_failure", "gear_failure", "relay_failure", "day_burner", "cycling_failure",
             "gear_comm_failure", "thermal_derating", "thermal_shutdown"]  # fmt: skip
    assert not any(v[f] for f in flags)
    assert 198 <= v["supply_voltage"] <= 242  # PLN 220 V +-10 %
    expected_w = v["nominal_power"] * v["dim_measured"] / 100
    assert 0.75 * expected_w <= v["active_power"] <= 1.3 * expected_w
    assert 0.9 <= v["power_factor"] <= 1
    apparent = v["supply_voltage"] * v["supply_current"] * v["power_factor"]
    assert math.isclose(apparent, v["active_power"], rel_tol=0.02)


async def test_pju_sample_polls_without_error(profiles: dict[str, Profile]) -> None:
    from collectors.snmp import SnmpCollector

    profile = profiles["pju-generic"]
    async with SnmpSimulator() as sim:
        sim.add_recording("pju-generic", PJU_SAMPLE)
        device = Device(
            id="pju-srp-0142", kind="streetlight", profile="pju-generic",
            address=f"127.0.0.1:{sim.port}", snmp=SnmpV2c(community=SecretStr("pju-generic")),
            location=TANGSEL, pole_id="SRP-0142", circuit="PANEL-SRP-07/R", rated_w=60,
        )  # fmt: skip
        collector = SnmpCollector(now)
        try:
            reading = await collector.poll(device, profile)
        finally:
            await collector.close()
    assert reading.reachable and reading.errors == []
    assert reading.values == pytest.approx(sample_values(profile))


# --- snmp-host and mikrotik-routeros against real recordings ---------------------------------


def test_routeros_copy_is_unchanged() -> None:
    assert ROUTEROS.read_bytes() == (SHARED_RECORDINGS / "routeros.snmprec").read_bytes()
    assert len(ROUTEROS.read_text().splitlines()) == 515


def test_mikrotik_profile_oids_are_in_the_recording(profiles: dict[str, Profile]) -> None:
    profile = profiles["mikrotik-routeros"]
    oids = oid_sets(ROUTEROS)
    assert absent_from(profile, oids) == set()
    assert len(profile.metrics) == 10 and len(profile.tables) == 5


@pytest.mark.parametrize("recording", sorted(SNMP_HOST_ABSENT))
def test_snmp_host_oids_in_real_recordings(recording: str, profiles: dict[str, Profile]) -> None:
    """Exactly the metrics documented as absent on a device are missing from its recording."""
    oids = oid_sets(SHARED_RECORDINGS / f"{recording}.snmprec")
    assert absent_from(profiles["snmp-host"], oids) == SNMP_HOST_ABSENT[recording]


@pytest.fixture
async def routeros_snmpsim(tmp_path: Path) -> AsyncIterator[str]:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(ROUTEROS, data / "routeros.snmprec")
    with snmpsim(tmp_path / "snmpsim", data) as sim:
        yield sim.address


async def test_mikrotik_profile_polls_the_recording(
    routeros_snmpsim: str, profiles: dict[str, Profile]
) -> None:
    from collectors.snmp import SnmpCollector

    device = Device(
        id="wifi-warkop", kind="hotspot", profile="mikrotik-routeros", address=routeros_snmpsim,
        snmp=SnmpV2c(community=SecretStr("routeros")), location=TANGSEL, timeout_s=3,
    )  # fmt: skip
    collector = SnmpCollector(now)
    try:
        reading = await collector.poll(device, profiles["mikrotik-routeros"])
    finally:
        await collector.close()
    assert reading.reachable and reading.errors == []
    v, t = reading.values, reading.tables
    assert v["sys_object_id"] == "1.3.6.1.4.1.14988.1"
    assert v["uptime"] == pytest.approx(20204.0)
    assert v["ros_version"] == "6.40.5"
    assert v["psu_voltage"] == pytest.approx(15.4)
    assert v["board_temperature"] == pytest.approx(33.0)
    assert v["dhcp_leases"] == 33
    assert len(t["interfaces"]) == 12
    assert t["interfaces"]["1"]["if_name"] == "wlan1"
    assert t["interfaces"]["1"]["if_type"] == 71
    assert t["interfaces"]["11"]["if_descr"] == "pppoe-out1"
    assert t["interfaces"]["3"]["if_in_octets"] == 6422347895  # beyond 32 bits: HC counter
    aps = t["wireless_aps"]
    assert {k: r["client_count"] for k, r in aps.items()} == {"1": 7, "2": 0, "8": 0, "9": 4}
    assert (aps["1"]["frequency"], aps["2"]["frequency"]) == (2412, 5805)
    assert aps["1"]["ssid"] == "WARKOP-KOPIBOSS-B"
    assert aps["1"]["band"] == "2412/20-Ce/gn"
    assert (aps["1"]["noise_floor"], aps["2"]["noise_floor"]) == (-117, -112)
    clients = t["wireless_clients"]
    assert len(clients) == 11
    assert clients["164.228.184.74.213.202.1"]["signal"] == -43
    assert sorted(key.rsplit(".", 1)[1] for key in clients).count("9") == 4
    assert t["processors"] == {"1": {"cpu_load": 21}}
    ram = t["storage"]["65536"]
    assert ram["storage_type"] == "1.3.6.1.2.1.25.2.1.2"
    assert (ram["storage_used"], ram["storage_alloc_units"], ram["storage_size"]) == (
        27196,
        1024,
        65536,
    )
