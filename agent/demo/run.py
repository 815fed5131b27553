"""`siaran-edge demo`: simulated devices on loopback, polled by the real agent.

A street-light circuit of simulated controllers (pju-generic over SNMP) and a recorded real access
point (MikroTik hAP ac lite, RouterOS 6.40.5) answer on one UDP port on 127.0.0.1. The agent is
started on a generated config, exactly as `siaran-edge run` would be, and the demo prints what it
reads. Halfway, one lamp fails, so the readings show it. No external services, no root.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from pathlib import Path

from agent.demo.lamp import LampController
from agent.demo.snmp_sim import SnmpSimulator
from agent.readings_table import readings_table
from agent.runtime import Agent
from firmware_config.loader import load_config

RECORDINGS = Path(__file__).parent / "recordings"
LAMPS = (("pju-demo-001", 60.0), ("pju-demo-002", 60.0), ("pju-demo-003", 90.0))
AP_ID = "ap-warkop"

GATEWAY_TOML = """\
state_dir = "state"
inventory = ["devices.toml"]

[gateway]
id = "gw-demo"
site = "Demo: panel PJU Jl. Siliwangi (simulated)"
location = {{ lat = -6.3431, lon = 106.7372, kelurahan = "Pamulang Barat", kecamatan = "Pamulang" }}

[poll]
interval_s = {interval}
timeout_s = 1.0
retries = 1
jitter = 0.05
"""

LAMP_TOML = """
[[device]]
id = "{id}"
kind = "streetlight"
profile = "pju-generic"
address = "127.0.0.1:{port}"
snmp = {{ version = "2c", community = "{id}" }}
pole_id = "SLW-{n:03d}"
circuit = "PNL-SLW-A"
rated_w = {rated}
[device.location]
lat = {lat:.5f}
lon = 106.73712
address = "Jl. Siliwangi {n}"
kelurahan = "Pamulang Barat"
kecamatan = "Pamulang"
"""

AP_TOML = """
[[device]]
id = "{id}"
kind = "hotspot"
profile = "mikrotik-routeros"
address = "127.0.0.1:{port}"
snmp = {{ version = "2c", community = "{id}" }}
uplink_if = "ether1"
[device.location]
lat = -6.2886
lon = 106.7158
address = "Taman Kota 1"
kelurahan = "Lengkong Gudang"
kecamatan = "Serpong"
"""


def write_config(folder: Path, port: int, interval_s: float) -> Path:
    devices = "".join(
        LAMP_TOML.format(id=lamp_id, port=port, n=n, rated=rated, lat=-6.34301 - n * 0.0002)
        for n, (lamp_id, rated) in enumerate(LAMPS, start=1)
    )
    devices += AP_TOML.format(id=AP_ID, port=port)
    (folder / "devices.toml").write_text(devices)
    path = folder / "gateway.toml"
    path.write_text(GATEWAY_TOML.format(interval=interval_s))
    return path


def run_demo(rounds: int = 3, interval_s: float = 5.0) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_demo(rounds, interval_s))
    return 0


async def _demo(rounds: int, interval_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with tempfile.TemporaryDirectory(prefix="siaran-demo-") as tmp:
        async with SnmpSimulator() as sim:
            for lamp_id, rated in LAMPS:
                sim.add_lamp(lamp_id, LampController(rated_w=rated, sys_name=lamp_id))
            sim.add_recording(AP_ID, RECORDINGS / "routeros.snmprec")
            config = load_config(write_config(Path(tmp), sim.port, interval_s))
            print(f"Simulated devices on udp 127.0.0.1:{sim.port}: {', '.join(sim.communities)}")
            print(f"Config in {tmp} (state in {config.gateway.state_dir}); Ctrl-C stops.\n")
            agent = Agent(config)
            running = asyncio.create_task(agent.run(stop))
            await _show_rounds(agent, sim, rounds, interval_s, stop)
            stop.set()
            await running


async def _show_rounds(
    agent: Agent, sim: SnmpSimulator, rounds: int, interval_s: float, stop: asyncio.Event
) -> None:
    devices = {d.id: d for d in agent.config.devices}
    shown = 0
    while rounds == 0 or shown < rounds:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        if stop.is_set():
            return
        shown += 1
        assert agent.store is not None
        latest = list(agent.store.all_latest().values())
        print(f"== round {shown}: latest reading of {len(latest)} devices ==")
        print(readings_table(latest, devices, agent.config.profiles), "\n", flush=True)
        if shown == 1:
            sim.lamp("pju-demo-002").fail_lamp()
            print(">> scenario: the lamp of pju-demo-002 fails (0 W, lamp_failure flag)\n")
