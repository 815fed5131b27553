"""GatewayActions: acknowledge, maintenance and the lamp test, against the real fault engine, the
demo SNMP simulator, and (for what reaches central) a real mosquitto."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import pytest

from agent.action_store import FILE_NAME, ActionStore, PendingRestore
from agent.actions import ActionError, Actions, GatewayActions
from agent.clock import FakeClock
from agent.demo.lamp import LampController
from agent.demo.snmp_sim import SnmpSimulator
from agent.faults.engine import FaultEngine
from agent.lamp_test import publish_once
from collectors.reading import Reading
from collectors.snmp import SnmpCollector
from firmware_config.loader import LoadedConfig, load_config
from firmware_config.models import BrokerConfig
from firmware_config.uplink_config import OutboxConfig
from tests.fault_fakes import FAKE_RULES
from tests.servers import Mosquitto
from tests.waiting import until
from uplink.contract import ActionDraft, OperatorAction, Topics
from uplink.publisher import GatewayInfo, Uplink

T = TypeVar("T")
GW = "gw-uji"
LAMP, DIM_LAMP, HOTSPOT, MQTT_LAMP, BARE = "pju-1", "pju-2", "ap-1", "pju-m1", "pju-bare"
MQTT_TOPIC = "pju/pju-m1/telemetry"


@dataclass
class Sink:
    """Stands in for the uplink: the actions submitted, in order."""

    drafts: list[ActionDraft] = field(default_factory=list)

    async def submit_action(self, draft: ActionDraft) -> OperatorAction:
        self.drafts.append(draft)
        return OperatorAction(**dict(draft), gateway_id=GW, replayed=False)

    def kinds(self) -> list[str]:
        return [d.kind for d in self.drafts]


def write_config(folder: Path, snmp_port: int, broker_port: int = 1883) -> LoadedConfig:
    """Two SNMP lamps on the simulator, a hotspot, an MQTT lamp, a lamp whose profile has no
    writes (a user profile extending nothing)."""
    profiles = folder / "profiles"
    profiles.mkdir()
    (profiles / "pju-readonly.toml").write_text(
        'name = "pju-readonly"\nprotocol = "snmp"\nkinds = ["streetlight"]\n'
        '[[metrics]]\nname = "active_power"\noid = "1.3.6.1.4.1.32473.3418.4.1"\nscale = 0.1\n'
    )
    lamp = "kind = 'streetlight'\nlocation = { lat = -6.34, lon = 106.73 }\nrated_w = 60\n"
    snmp = f"address = '127.0.0.1:{snmp_port}'\ntimeout_s = 0.5\nretries = 0\n"
    text = f"""
state_dir = "state"
profile_dirs = ["profiles"]
[gateway]
id = "{GW}"
site = "Panel PJU uji"
location = {{ lat = -6.3431, lon = 106.7372 }}
[device_broker]
port = {broker_port}
[[device]]
id = "{LAMP}"
profile = "pju-generic"
{lamp}{snmp}snmp = {{ community = "{LAMP}" }}
pole_id = "P-1"
circuit = "A"
[[device]]
id = "{DIM_LAMP}"
profile = "pju-generic"
{lamp}{snmp}snmp = {{ community = "{DIM_LAMP}" }}
pole_id = "P-2"
circuit = "A"
[[device]]
id = "{BARE}"
profile = "pju-readonly"
{lamp}{snmp}snmp = {{ community = "{LAMP}" }}
pole_id = "P-3"
circuit = "A"
[[device]]
id = "{MQTT_LAMP}"
profile = "pju-mqtt-json"
{lamp}address = "{MQTT_TOPIC}"
pole_id = "P-4"
circuit = "B"
[[device]]
id = "{HOTSPOT}"
kind = "hotspot"
profile = "snmp-host"
{snmp}snmp = {{ community = "ap" }}
location = {{ lat = -6.35, lon = 106.71 }}
"""
    path = folder / "gateway.toml"
    path.write_text(text)
    return load_config(path)


@dataclass
class World:
    config: LoadedConfig
    clock: FakeClock
    sim: SnmpSimulator
    engine: FaultEngine
    snmp: SnmpCollector
    sink: Sink
    published: list[tuple[str, bytes]]
    actions: GatewayActions

    def lamp(self, community: str = LAMP) -> LampController:
        return self.sim.lamp(community)

    def new_actions(self, uplink: Any = None, **kwargs: Any) -> GatewayActions:
        async def publish(topic: str, payload: bytes) -> None:
            self.published.append((topic, payload))

        return GatewayActions(
            self.config, self.engine, uplink or self.sink, self.clock, snmp=self.snmp,
            mqtt_publish=publish, **kwargs,
        )  # fmt: skip

    async def dark(self, device_id: str = LAMP) -> None:
        """A reading that the fake lamp_failure rule finds bad: the fault is then active."""
        reading = Reading(
            device_id=device_id, at=self.clock.now(), reachable=True,
            values={"active_power": 0.0},
        )  # fmt: skip
        await self.engine.on_reading(reading)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock()
    async with SnmpSimulator() as sim:
        sim.add_lamp(LAMP, LampController(rated_w=60, dim=75))  # night dimming at 75 %
        sim.add_lamp(DIM_LAMP, LampController(rated_w=60))
        config = write_config(tmp_path, sim.port)
        engine = FaultEngine(config, FAKE_RULES, clock, _ignore)
        await engine.open()
        snmp = SnmpCollector(clock.now)
        w = World(config, clock, sim, engine, snmp, Sink(), [], None)  # type: ignore[arg-type]
        w.actions = w.new_actions(settle_s=5.0)
        await w.actions.open()
        try:
            yield w
        finally:
            await w.actions.close()
            await engine.close()
            await snmp.close()


async def _ignore(draft: object) -> None:
    return None


async def with_time(clock: FakeClock, coro: Awaitable[T], step_s: float = 1.0) -> T:
    """Run `coro` while moving the fake clock on in steps (it sleeps on the clock)."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        await clock.advance(step_s)
        await asyncio.sleep(0.005)  # let real I/O (SNMP) happen between steps
    return task.result()


# -- acknowledge ------------------------------------------------------------------------------


def uplink_for(broker: Mosquitto, state: Path) -> Uplink:
    return Uplink(
        GW, BrokerConfig(port=broker.port, keepalive_s=5), OutboxConfig(), state,
        lambda: GatewayInfo("test", "cfg", 5, True), backoff_min_s=0.05, backoff_max_s=0.3,
    )  # fmt: skip


async def test_acknowledge_records_it_and_the_action_reaches_the_broker(
    world: World, broker: Mosquitto, tmp_path: Path
) -> None:
    uplink = uplink_for(broker, tmp_path / "uplink")
    runner = asyncio.create_task(uplink.run())
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="central") as central:
        await central.subscribe(Topics("siaran/v1", GW).action, qos=1)
        actions = world.new_actions(uplink)
        await actions.open()
        try:
            await world.dark()
            await world.clock.advance(30)
            await actions.acknowledge(LAMP, "lamp_failure", " budi ", "teknisi di lokasi")
            ack = actions.acknowledged_by(LAMP, "lamp_failure")
            assert ack is not None
            assert (ack.by, ack.note, ack.at) == ("budi", "teknisi di lokasi", world.clock.now())
            assert actions.acknowledged_by(LAMP, "unreachable") is None
            async with asyncio.timeout(10):
                message = await anext(aiter(central.messages))
            assert message.topic.value == f"siaran/v1/{GW}/action"
            assert isinstance(message.payload, bytes)
            sent = json.loads(message.payload)
            assert {k: sent[k] for k in ("kind", "by", "device_id", "fault_type", "note")} == {
                "kind": "acknowledge", "by": "budi", "device_id": LAMP,
                "fault_type": "lamp_failure", "note": "teknisi di lokasi",
            }  # fmt: skip
            assert sent["gateway_id"] == GW and sent["at"] == "2026-11-28T11:00:30Z"
        finally:
            await actions.close()
            await uplink.close()
            await asyncio.gather(runner, return_exceptions=True)
    again = world.new_actions()  # kept in actions.db: a restart still shows it
    await again.open()
    assert (again.acknowledged_by(LAMP, "lamp_failure") or ack).by == "budi"
    await again.close()


async def test_an_acknowledgement_ends_with_its_fault(world: World) -> None:
    await world.dark()
    await world.actions.acknowledge(LAMP, "lamp_failure", "budi", "")
    assert world.actions.acknowledged_by(LAMP, "lamp_failure") is not None
    for _ in range(5):  # lit again: the fault clears
        await world.clock.advance(60)
        await world.engine.on_reading(
            Reading(device_id=LAMP, at=world.clock.now(), reachable=True,
                    values={"active_power": 60.0})
        )  # fmt: skip
    await world.clock.advance(60)
    await world.dark()  # dark again: a new episode, not acknowledged yet
    assert [f.device_id for f in world.engine.active_faults()] == [LAMP]
    assert world.actions.acknowledged_by(LAMP, "lamp_failure") is None


async def test_acknowledging_what_is_not_active_is_refused(world: World) -> None:
    with pytest.raises(ActionError, match="Tidak ada gangguan aktif lamp_failure pada pju-1"):
        await world.actions.acknowledge(LAMP, "lamp_failure", "budi", "")
    await world.dark()
    with pytest.raises(ActionError, match="Tidak ada gangguan aktif"):
        await world.actions.acknowledge("pju-9", "lamp_failure", "budi", "")
    with pytest.raises(ActionError, match="Nama teknisi"):
        await world.actions.acknowledge(LAMP, "lamp_failure", "  ", "")
    with pytest.raises(ActionError, match="500"):
        await world.actions.acknowledge(LAMP, "lamp_failure", "budi", "x" * 501)
    assert world.sink.drafts == []


# -- maintenance --------------------------------------------------------------------------------


async def test_maintenance_through_the_actions(world: World) -> None:
    until = world.clock.now() + timedelta(hours=2)
    await world.actions.set_maintenance("device", LAMP, until, "sari", "ganti driver")
    [window] = world.engine.maintenance_windows()
    assert (window.target, window.until, window.by, window.note) == (
        LAMP, until, "sari", "ganti driver",
    )  # fmt: skip
    await world.dark()
    [fault] = world.engine.active_faults()
    assert fault.status == "maintenance" or fault.status == "pending"
    await world.actions.set_maintenance("circuit", "A", until, "sari")
    [device_draft, circuit_draft] = world.sink.drafts
    assert (device_draft.kind, device_draft.device_id, device_draft.until) == (
        "maintenance", LAMP, until,
    )  # fmt: skip
    assert (circuit_draft.circuit, circuit_draft.device_id) == ("A", None)
    await world.actions.end_maintenance("device", LAMP, "sari")
    assert [w.target for w in world.engine.maintenance_windows()] == ["A"]
    assert world.sink.drafts[-1].kind == "maintenance_end"
    assert world.sink.drafts[-1].device_id == LAMP
    with pytest.raises(ActionError, match="Tidak ada pemeliharaan"):
        await world.actions.end_maintenance("device", LAMP, "sari")
    with pytest.raises(ActionError, match="no device 'pju-9'"):
        await world.actions.set_maintenance("device", "pju-9", until, "sari")
    with pytest.raises(ActionError, match="masa depan"):
        await world.actions.set_maintenance("device", LAMP, world.clock.now(), "sari")
    assert len(world.sink.drafts) == 3


async def test_the_engine_honours_maintenance_set_through_the_actions(world: World) -> None:
    raised: list[str] = []

    async def emit(draft: Any) -> None:
        raised.append(draft.fault_type)

    engine = FaultEngine(world.config, FAKE_RULES, world.clock, emit)
    await engine.open()
    actions = GatewayActions(world.config, engine, world.sink, world.clock)
    await actions.open()
    until = world.clock.now() + timedelta(minutes=30)
    await actions.set_maintenance("device", DIM_LAMP, until, "sari")
    for _ in range(6):
        await engine.on_reading(
            Reading(device_id=DIM_LAMP, at=world.clock.now(), reachable=True,
                    values={"active_power": 0.0})
        )  # fmt: skip
        await world.clock.advance(60)
    assert raised == []
    assert [f.status for f in engine.active_faults()] == ["maintenance"]
    await actions.end_maintenance("device", DIM_LAMP, "sari")
    for _ in range(6):  # (after the circuit correlation's wait)
        await world.clock.advance(60)
        await engine.tick()
    assert raised == ["lamp_failure"]  # still dark when the window ended: raised now
    await actions.close()
    await engine.close()


# -- lamp test ----------------------------------------------------------------------------------


async def test_a_healthy_lamp_passes_and_goes_back_to_its_level(world: World) -> None:
    lamp = world.lamp()
    task = asyncio.create_task(world.actions.lamp_test(LAMP, 5, "budi"))
    await until(lambda: lamp.dim == 100)  # switched on at once...
    await world.clock.advance(4)
    assert not task.done()  # ...and read back after the settle time only
    result = await with_time(world.clock, task)
    assert result.ok and result.device_id == LAMP and result.minutes == 5
    assert result.power_w == pytest.approx(60.4) and result.expected_w == 60
    assert "normal" in result.detail
    assert result.evidence["back_to_level"] == 75
    [draft] = world.sink.drafts
    assert (draft.kind, draft.by, draft.device_id) == ("lamp_test", "budi", LAMP)
    assert draft.result is not None and draft.result.ok and draft.result.minutes == 5
    assert draft.result.power_w == result.power_w
    await world.clock.advance(4 * 60)
    await asyncio.sleep(0.2)
    assert (lamp.dim, lamp.lamp_on) == (100, True)  # still in the test
    await world.clock.advance(60)
    await until(lambda: lamp.dim == 75)  # back to what it was
    assert lamp.lamp_on
    store = ActionStore(world.config.gateway.state_dir / FILE_NAME)
    await until(lambda: store.restores() == [])
    store.close()


async def test_a_degraded_lamp_fails_with_a_clear_detail(world: World) -> None:
    world.lamp().degrade_driver(0.5)
    result = await with_time(world.clock, world.actions.lamp_test(LAMP, 1, "budi"))
    assert not result.ok
    assert result.power_w == pytest.approx(30.4)
    assert result.detail.startswith("Daya lampu terlalu rendah: 30,4 W, seharusnya 60 W")
    assert "driver LED" in result.detail
    assert world.sink.drafts[0].result is not None
    assert world.sink.drafts[0].result.ok is False


async def test_a_lamp_off_by_day_goes_back_off(world: World) -> None:
    lamp = world.lamp(DIM_LAMP)
    lamp.update(lamp_on=False, daylight=True)
    result = await with_time(world.clock, world.actions.lamp_test(DIM_LAMP, 2, "budi"))
    assert result.ok and lamp.lamp_on
    await world.clock.advance(120)
    await until(lambda: not lamp.lamp_on)


async def test_a_second_test_keeps_the_first_ones_way_back(world: World) -> None:
    lamp = world.lamp()
    await with_time(world.clock, world.actions.lamp_test(LAMP, 5, "budi"))
    await with_time(world.clock, world.actions.lamp_test(LAMP, 10, "sari"))  # lamp at 100 now
    await world.clock.advance(6 * 60)
    await asyncio.sleep(0.2)
    assert lamp.dim == 100, "the second test's 10 minutes count"
    await world.clock.advance(5 * 60)
    await until(lambda: lamp.dim == 75)


async def test_pending_switch_backs_are_done_at_close_and_after_a_restart(world: World) -> None:
    lamp = world.lamp()
    await with_time(world.clock, world.actions.lamp_test(LAMP, 30, "budi"))
    assert lamp.dim == 100
    await world.actions.close()  # the agent stops: no lamp left burning
    assert lamp.dim == 75
    store = ActionStore(world.config.gateway.state_dir / FILE_NAME)
    assert store.restores() == []
    left = PendingRestore(  # as a killed agent leaves it
        device_id=LAMP, write="lamp_command", value=40, by="budi",
        due=world.clock.now() - timedelta(minutes=1),
    )  # fmt: skip
    store.put_restore(left)
    store.close()
    world.actions = world.new_actions()
    await world.actions.open()  # overdue: done at once
    await until(lambda: lamp.dim == 40)


async def test_the_lamp_test_is_refused_where_it_cannot_be_done(world: World) -> None:
    for device_id in (HOTSPOT, BARE, "pju-9"):
        assert not world.actions.lamp_test_supported(device_id)
        with pytest.raises(ActionError, match=f"Uji lampu tidak didukung untuk {device_id}"):
            await world.actions.lamp_test(device_id, 5, "budi")
    no_snmp: Actions = GatewayActions(world.config, world.engine, world.sink, world.clock)
    assert not no_snmp.lamp_test_supported(LAMP)  # (and mypy checks it is an Actions)
    assert world.actions.lamp_test_supported(LAMP)
    with pytest.raises(ActionError, match=r"1\.\.60 menit"):
        await world.actions.lamp_test(LAMP, 0, "budi")
    world.lamp().online = False  # its state cannot be read: nothing is switched
    with pytest.raises(ActionError, match="Keadaan lampu pju-1 tidak terbaca"):
        await world.actions.lamp_test(LAMP, 5, "budi")
    assert world.sink.drafts == []


async def test_a_refused_set_is_a_clear_error(world: World, tmp_path: Path) -> None:
    profile = world.config.profiles["pju-generic"]
    read_only = profile.writes[0].model_copy(update={"oid": "1.3.6.1.4.1.32473.3416.2.1"})
    world.config.profiles["pju-generic"] = profile.model_copy(update={"writes": [read_only]})
    with pytest.raises(ActionError) as caught:
        await world.actions.lamp_test(LAMP, 5, "budi")
    message = str(caught.value)
    assert message.startswith("Perintah nyala gagal: pju-1 (127.0.0.1:")
    assert message.endswith("notWritable")
    assert world.lamp().dim == 75 and world.sink.drafts == []


# -- an MQTT lamp ------------------------------------------------------------------------------


def mqtt_reading(world: World, power: float, dim: int, on: bool = True) -> Reading:
    return Reading(
        device_id=MQTT_LAMP, at=world.clock.now(), reachable=True,
        values={"active_power": power, "dim_command": dim, "lamp_on": on},
    )  # fmt: skip


async def test_an_mqtt_lamp_is_commanded_and_read_back_from_its_next_message(
    world: World,
) -> None:
    await world.actions.on_reading(mqtt_reading(world, 45.4, 75))
    start = world.clock.now()
    task = asyncio.create_task(world.actions.lamp_test(MQTT_LAMP, 3, "budi"))
    await until(lambda: len(world.published) == 1)
    assert world.published[0] == (f"{MQTT_TOPIC}/set", b'{"lamp": {"dim": 100}}')
    while not task.done():  # the device reports every second, the new level only after 5 s
        await world.clock.advance(1)
        settled = world.clock.now() - start >= timedelta(seconds=5)
        await world.actions.on_reading(mqtt_reading(world, 59.0 if settled else 45.4, 100))
        await asyncio.sleep(0.005)
    result = task.result()
    assert result.ok and result.power_w == 59.0  # not a message from before the settle time
    await world.clock.advance(3 * 60)
    await until(lambda: len(world.published) == 2)
    assert world.published[1] == (f"{MQTT_TOPIC}/set", b'{"lamp": {"dim": 75}}')


async def test_an_mqtt_lamp_that_stays_silent(world: World) -> None:
    with pytest.raises(ActionError, match="tidak terbaca"):  # nothing heard yet: no way back
        await world.actions.lamp_test(MQTT_LAMP, 3, "budi")
    await world.actions.on_reading(mqtt_reading(world, 0.4, 0, on=False))
    result = await with_time(world.clock, world.actions.lamp_test(MQTT_LAMP, 3, "budi"))
    assert not result.ok and "tidak menjawab" in result.detail


@pytest.fixture
def device_broker(broker: Mosquitto) -> BrokerConfig:
    return BrokerConfig(port=broker.port)


async def test_publish_once_reaches_the_device_broker(device_broker: BrokerConfig) -> None:
    async with aiomqtt.Client("127.0.0.1", device_broker.port, identifier="device") as device:
        await device.subscribe(f"{MQTT_TOPIC}/set", qos=1)
        await publish_once(device_broker, f"{MQTT_TOPIC}/set", b'{"lamp": {"dim": 100}}')
        async with asyncio.timeout(5):
            message = await anext(aiter(device.messages))
    assert message.payload == b'{"lamp": {"dim": 100}}' and message.qos == 1
