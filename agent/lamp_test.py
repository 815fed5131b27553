"""What a lamp test needs besides its orchestration (agent/actions.py): sending a profile's
write to a device (SNMP SET or an MQTT command), the level to go back to, and the verdict.

The verdict uses the power_deviation rule's band at full output (75..130 % of the rated power by
default, the device's own [rules.power_deviation] settings if it has any), so a lamp that passes
the test does not raise that rule a minute later, and the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiomqtt
import structlog

from agent.faults.rules._common import fmt, number
from agent.faults.rules.power_deviation import PowerDeviation, PowerDeviationSettings, limits
from agent.faults.settings import resolve_settings
from collectors.mqtt_json import broker_client
from collectors.reading import Reading
from collectors.snmp import SnmpCollector, SnmpSetError
from firmware_config.loader import LoadedConfig
from firmware_config.models import BrokerConfig, Device
from firmware_config.problems import ConfigError
from firmware_config.profiles import Profile, Write

log = structlog.get_logger(__name__)

LAMP_COMMAND = "lamp_command"  # the write a profile declares for switching its lamp
ON_LEVEL = 100.0  # % commanded during a test
MQTT_TIMEOUT_S = 10.0

MqttPublish = Callable[[str, bytes], Awaitable[None]]  # (topic, payload): QoS 1, not retained
Evidence = dict[str, float | int | str | bool | None]


class WriteError(Exception):
    """A write that was not done; the message names the device and the cause, never a secret."""


class DeviceWriter:
    """Sends a profile's write to a device: SNMP SET, or a JSON command on the device broker."""

    def __init__(self, snmp: SnmpCollector | None, mqtt_publish: MqttPublish | None) -> None:
        self._snmp = snmp
        self._mqtt = mqtt_publish

    def can_write(self, profile: Profile, name: str) -> bool:
        write = profile.write(name)
        if write is None:
            return False
        return self._snmp is not None if profile.protocol == "snmp" else self._mqtt is not None

    async def write(self, device: Device, profile: Profile, name: str, value: float) -> None:
        write = profile.write(name)
        if write is None or not self.can_write(profile, name):
            raise WriteError(f"{device.id}: no way to write {name} ({profile.name})")
        if profile.protocol == "snmp":
            assert self._snmp is not None
            try:
                await self._snmp.set(device, profile, name, value)
            except SnmpSetError as exc:
                raise WriteError(str(exc)) from None
            return
        assert self._mqtt is not None
        try:
            topic, payload = mqtt_command(write, device, value)
            await self._mqtt(topic, payload)
        except (ValueError, OSError, aiomqtt.MqttError) as exc:
            raise WriteError(f"{device.id}: {name} not sent: {exc}") from None
        log.info("mqtt_command", device=device.id, write=name, topic=topic, value=value)


def mqtt_command(write: Write, device: Device, value: float) -> tuple[str, bytes]:
    """The topic and JSON payload of an MQTT write; ValueError for a bad value or template."""
    assert write.command_topic is not None and write.field is not None
    try:
        topic = write.command_topic.format(address=device.address, id=device.id)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"bad command_topic template {write.command_topic!r}: {exc}") from None
    doc: object = write.raw(value)
    for key in reversed(write.field.split(".")):
        doc = {key: doc}
    return topic, json.dumps(doc).encode()


async def publish_once(broker: BrokerConfig, topic: str, payload: bytes) -> None:
    """Publish one command on the device broker (own short connection, QoS 1, not retained)."""
    async with broker_client(broker, timeout=MQTT_TIMEOUT_S) as client:
        await client.publish(topic, payload, qos=1, timeout=MQTT_TIMEOUT_S)


def previous_level(reading: Reading | None) -> float | None:
    """The level to go back to after a test: 0 when the lamp is off, else the command in
    action (dim_command); None when there is no reading or it tells neither."""
    if reading is None or not reading.reachable:
        return None
    if reading.values.get("lamp_on") is False:
        return 0.0
    dim = number(reading, "dim_command")
    return None if dim is None else min(max(dim, 0.0), 100.0)


def device_settings(config: LoadedConfig) -> Mapping[str, PowerDeviationSettings]:
    """Each street light's power_deviation settings (profile and gateway overrides applied)."""
    rule = PowerDeviation()
    try:
        resolved = resolve_settings(config, {rule.name: rule})
    except ConfigError:  # the fault engine reports it; the test falls back to the defaults
        return {}
    out: dict[str, PowerDeviationSettings] = {}
    for device_id, plan in resolved.devices.items():
        for _, settings in plan.rules:
            if isinstance(settings, PowerDeviationSettings):
                out[device_id] = settings
    return out


@dataclass(frozen=True)
class Verdict:
    ok: bool
    power_w: float | None
    expected_w: float | None
    detail: str
    evidence: Evidence = field(default_factory=dict)


def judge(
    device: Device, reading: Reading | None, s: PowerDeviationSettings, level: float = ON_LEVEL
) -> Verdict:
    """Whether the lamp, commanded to `level` %, draws what its rating says."""
    if reading is None or not reading.reachable:
        why = reading.errors[0].message if reading and reading.errors else "tidak ada data"
        return Verdict(False, None, None, f"Perangkat tidak menjawab setelah perintah: {why}")
    rated = device.rated_w or number(reading, "nominal_power")
    power = number(reading, "active_power")
    evidence: Evidence = {
        name: value
        for name in ("lamp_on", "dim_command", "dim_measured", "supply_voltage", "lamp_failure")
        if isinstance(value := reading.values.get(name), bool | int | float | str)
    }
    if rated is None:
        return Verdict(False, power, None, "Rating lampu tidak diketahui (rated_w)", evidence)
    expected = rated * level / 100.0
    if power is None:
        return Verdict(False, None, expected, "Daya lampu tidak terbaca (active_power)", evidence)
    low, high = limits(expected, level, s)
    evidence.update(
        active_power_w=power, expected_w=expected, low_w=round(low, 2), high_w=round(high, 2)
    )
    told = f"{fmt(power)} W, seharusnya {fmt(expected)} W (batas {fmt(low)}-{fmt(high)} W)"
    if power < s.dark_share * expected:
        detail = f"Lampu tidak menyala saat diperintah {fmt(level, 0)} %: {told}"
    elif power < low:
        detail = f"Daya lampu terlalu rendah: {told}: driver LED/LED sebagian rusak"
    elif power > high:
        detail = f"Daya lampu terlalu tinggi: {told}: periksa driver/rating lampu"
    else:
        return Verdict(True, power, expected, f"Lampu menyala normal: {told}", evidence)
    return Verdict(False, power, expected, detail, evidence)
