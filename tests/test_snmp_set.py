"""SnmpCollector.set: a profile's write reaches the device, and every refusal is a clear error
that names the device and the cause, never the community or a key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from agent.demo.lamp import LampController
from agent.demo.snmp_sim import SnmpSimulator
from collectors.snmp import SnmpCollector, SnmpSetError
from firmware_config.loader import load_profiles
from firmware_config.models import Device, Location, SnmpCredentials, SnmpV2c, SnmpV3
from firmware_config.profiles import Profile
from tests.snmp_servers import Snmpd

TANGSEL = Location(lat=-6.29, lon=106.71)
PROFILES = load_profiles()
PJU = PROFILES["pju-generic"]
COMMUNITY = "pju-0001"  # the simulator's community names the lamp: a secret all the same
IF_ADMIN_STATUS = "1.3.6.1.2.1.2.2.1.7.1"  # INTEGER, read-write in IF-MIB (lo)


def now() -> datetime:
    return datetime.now(UTC)


def lamp_device(address: str, snmp: SnmpCredentials | None = None, **over: object) -> Device:
    fields: dict[str, object] = {
        "id": "pju-srp-0001", "kind": "streetlight", "profile": "pju-generic",
        "address": address, "snmp": snmp or SnmpV2c(community=SecretStr(COMMUNITY)),
        "location": TANGSEL, "pole_id": "SRP-0001", "circuit": "PANEL-SRP-07/R", "rated_w": 60,
        "timeout_s": 0.5, "retries": 0,
    }  # fmt: skip
    fields.update(over)
    return Device.model_validate(fields)


def with_write(oid: str) -> Profile:
    """pju-generic whose lamp_command points elsewhere (a wrong vendor layout)."""
    moved = PJU.writes[0].model_copy(update={"oid": oid})
    return PJU.model_copy(update={"writes": [moved]})


@pytest.fixture
async def sim() -> AsyncIterator[SnmpSimulator]:
    async with SnmpSimulator() as simulator:
        simulator.add_lamp(COMMUNITY, LampController(rated_w=60, dim=75))
        yield simulator


@pytest.fixture
async def collector() -> AsyncIterator[SnmpCollector]:
    c = SnmpCollector(now)
    yield c
    await c.close()


async def set_error(
    collector: SnmpCollector, device: Device, profile: Profile, value: float = 100
) -> SnmpSetError:
    with pytest.raises(SnmpSetError) as caught:
        await collector.set(device, profile, "lamp_command", value)
    error = caught.value
    assert error.device_id == device.id and device.id in str(error)
    for secret in (COMMUNITY, "siaran-auth-1", "wrong-auth-key", "siaran-priv-1"):
        assert secret not in str(error).replace(device.id, ""), str(error)
    return error


async def test_set_switches_the_simulated_lamp(
    sim: SnmpSimulator, collector: SnmpCollector
) -> None:
    device = lamp_device(f"127.0.0.1:{sim.port}")
    lamp = sim.lamp(COMMUNITY)
    await collector.set(device, PJU, "lamp_command", 100)
    assert (lamp.dim, lamp.lamp_on) == (100, True)
    reading = await collector.poll(device, PJU)  # the same engine and session poll on
    assert reading.values["dim_command"] == 100
    assert reading.values["active_power"] == pytest.approx(60.4)
    await collector.set(device, PJU, "lamp_command", 0)
    assert lamp.lamp_on is False


async def test_a_read_only_object_is_not_writable(
    sim: SnmpSimulator, collector: SnmpCollector
) -> None:
    device = lamp_device(f"127.0.0.1:{sim.port}")
    error = await set_error(collector, device, with_write("1.3.6.1.4.1.32473.3416.2.1"))
    assert error.code == "not_writable"
    assert "refused SET lamp_command = 100 (1.3.6.1.4.1.32473.3416.2.1): notWritable" in str(error)
    assert sim.lamp(COMMUNITY).dim == 75


async def test_values_outside_the_write_range_are_not_sent(
    sim: SnmpSimulator, collector: SnmpCollector
) -> None:
    device = lamp_device(f"127.0.0.1:{sim.port}")
    error = await set_error(collector, device, PJU, value=150)
    assert error.code == "bad_value" and "outside 0..100" in str(error)
    wide = PJU.writes[0].model_copy(update={"max": 1000.0})  # the profile allows it, the lamp not
    error = await set_error(collector, device, PJU.model_copy(update={"writes": [wide]}), 150)
    assert error.code == "wrong_value" and "wrongValue" in str(error)


async def test_a_profile_without_the_write(sim: SnmpSimulator, collector: SnmpCollector) -> None:
    device = lamp_device(f"127.0.0.1:{sim.port}", kind="hotspot", profile="snmp-host")
    error = await set_error(collector, device, PROFILES["snmp-host"])
    assert error.code == "unsupported" and "has no SNMP write 'lamp_command'" in str(error)


async def test_no_answer_is_a_timeout(sim: SnmpSimulator, collector: SnmpCollector) -> None:
    sim.lamp(COMMUNITY).online = False
    error = await set_error(collector, lamp_device(f"127.0.0.1:{sim.port}"), PJU)
    assert error.code == "timeout"
    assert "not done: no SNMP answer from 127.0.0.1" in str(error)


async def test_a_read_only_community_gets_no_access(
    snmpd_agent: Snmpd, collector: SnmpCollector
) -> None:
    ro = SnmpV2c(community=SecretStr(snmpd_agent.community))
    device = lamp_device(snmpd_agent.address, ro, timeout_s=2.0)
    error = await set_error(collector, device, with_write(IF_ADMIN_STATUS))
    assert error.code == "no_access", str(error)
    assert snmpd_agent.community not in str(error)


async def test_snmpv3_wrong_key_is_an_auth_error(
    snmpd_agent: Snmpd, collector: SnmpCollector
) -> None:
    user = snmpd_agent.user("siaran")
    bad = SnmpV3(
        user=user.name, auth_protocol="SHA", auth_key=SecretStr("wrong-auth-key"),
        priv_protocol="AES", priv_key=SecretStr(user.priv_key or ""),
    )  # fmt: skip
    error = await set_error(
        collector, lamp_device(snmpd_agent.address, bad), with_write(IF_ADMIN_STATUS)
    )
    assert error.code == "auth" and "wrongDigest" in str(error)


async def test_snmpv3_read_only_user_gets_no_access(
    snmpd_agent: Snmpd, collector: SnmpCollector
) -> None:
    user = snmpd_agent.user("siaran")
    good = SnmpV3(
        user=user.name, auth_protocol="SHA", auth_key=SecretStr(user.auth_key or ""),
        priv_protocol="AES", priv_key=SecretStr(user.priv_key or ""),
    )  # fmt: skip
    device = lamp_device(snmpd_agent.address, good, timeout_s=2.0)
    error = await set_error(collector, device, with_write(IF_ADMIN_STATUS))
    assert error.code == "no_access" and "noAccess" in str(error), str(error)
