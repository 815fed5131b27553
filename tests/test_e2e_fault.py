"""End to end: an SNMP agent (snmpsim) changes a value at run time, and the fault event that the
real agent raises arrives at a real mosquitto; the clear follows when the value comes back."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.runtime import Agent
from firmware_config.loader import load_config
from tests.servers import Mosquitto
from tests.snmp_servers import snmpsim

SAMPLE = Path(__file__).parents[1] / "docs" / "profiles" / "samples" / "pju-generic.snmprec"
ACTIVE_POWER = "1.3.6.1.4.1.32473.3418.4.1"

GATEWAY = """
state_dir = "state"
[gateway]
id = "gw-e2e"
site = "E2E panel"
location = {{ lat = -6.29, lon = 106.71 }}
[broker]
port = {broker_port}
keepalive_s = 10
[poll]
interval_s = 1
timeout_s = 0.5
retries = 0
jitter = 0
[rules.lamp_failure]
raise_after = 2
clear_after = 2
[rules.circuit_outage]
window_s = 1
[rules.unreachable]
icmp = false

[[device]]
id = "pju-e2e"
kind = "streetlight"
profile = "pju-generic"
address = "{snmp_address}"
snmp = {{ community = "pju-e2e" }}
pole_id = "E2E-1"
circuit = "PNL-E2E"
rated_w = 60
location = {{ lat = -6.29, lon = 106.71, kelurahan = "Serua", kecamatan = "Ciputat" }}
"""


def recording_with_writable_power(folder: Path) -> Path:
    """The pju-generic sample with active power writable (snmpsim's writecache variation)."""
    folder.mkdir()
    lines = SAMPLE.read_text().splitlines()
    lines = [
        f"{ACTIVE_POWER}|66:writecache|value=604" if line.startswith(ACTIVE_POWER + "|") else line
        for line in lines
    ]
    (folder / "pju-e2e.snmprec").write_text("\n".join(lines) + "\n")
    return folder


def snmpset_power(address: str, tenths_of_watt: int) -> None:
    host, port = address.rsplit(":", 1)
    snmpset = shutil.which("snmpset") or "snmpset"
    subprocess.run(
        [
            snmpset,
            "-m",
            "",
            "-M",
            "/nonexistent",
            "-v2c",
            "-c",
            "pju-e2e",
            "-r",
            "1",
            "-t",
            "1",
            f"{host}:{port}",
            ACTIVE_POWER,
            "u",
            str(tenths_of_watt),
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )


async def next_lamp_event(arrived: asyncio.Queue[dict[str, object]], state: str) -> None:
    """Wait (at most 25 s) until a lamp_failure event in `state` arrives."""
    async with asyncio.timeout(25):
        while True:
            event = await arrived.get()
            if event["fault_type"] == "lamp_failure" and event["state"] == state:
                return


async def healthy_polls(agent: Agent, device_id: str, n: int) -> None:
    """Wait (at most 20 s) until `n` readings of the device went through every part (the fault
    rules included): the poll counter moves before a reading is handed on, so wait for n + 1."""
    async with asyncio.timeout(20):
        while True:
            stats = agent.scheduler.stats.get(device_id)
            if stats is not None and stats.polls > n:
                return
            await asyncio.sleep(0.05)


async def test_value_changed_on_an_snmp_agent_becomes_a_fault_event_on_the_broker(
    tmp_path: Path, broker: Mosquitto
) -> None:
    events: list[dict[str, object]] = []
    arrived: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        event = json.loads(msg.payload)
        events.append(event)
        loop.call_soon_threadsafe(arrived.put_nowait, event)

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-watcher")
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("siaran/v1/gw-e2e/fault", qos=1)
    sub.loop_start()
    data = recording_with_writable_power(tmp_path / "data")
    with snmpsim(tmp_path / "snmpsim", data) as sim:
        config_path = tmp_path / "gateway.toml"
        config_path.write_text(GATEWAY.format(broker_port=broker.port, snmp_address=sim.address))
        agent = Agent(load_config(config_path))
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(stop))
        try:
            await healthy_polls(agent, "pju-e2e", 2)  # healthy readings first: nothing to report
            assert agent.uplink.stats().last_seq == 0  # no fault event was even committed
            assert events == []
            await asyncio.to_thread(snmpset_power, sim.address, 0)  # the lamp goes dark
            await next_lamp_event(arrived, "raised")
            await asyncio.to_thread(snmpset_power, sim.address, 604)  # repaired
            await next_lamp_event(arrived, "cleared")
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=20)
            sub.loop_stop()
            sub.disconnect()
    lamp = [e for e in events if e["fault_type"] == "lamp_failure"]
    assert [e["state"] for e in lamp] == ["raised", "cleared"]
    raised = lamp[0]
    assert raised["device_id"] == "pju-e2e" and raised["gateway_id"] == "gw-e2e"
    assert raised["circuit"] == "PNL-E2E" and raised["seq"] == 1
    evidence = raised["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["active_power_w"] == 0 and evidence["expected_by"] == "photocell"
    assert [e["fault_type"] for e in events] == ["lamp_failure", "lamp_failure"]  # nothing else
