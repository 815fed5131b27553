"""The simulated devices of the district, and the scenario's changes to them.

The SNMP devices (the poles' controllers and the recorded access points) run in a child process
(`DeviceProcess`): answering SNMP costs as much CPU as polling it (BER encoding in pyasn1), so
the simulator gets the machine's second core and the agent keeps the first. The child builds the
same district from the same `DistrictSpec` (the district is deterministic), runs its own
photocells on the demo's clock (the same `ScaledClock`: time.monotonic is system-wide), and
applies the scenario's commands (`Command`) that the parent sends over a pipe. The MQTT lamps
stay in the parent, where the MQTT publisher is; the parent applies each command to them too.

The child dies with the demo: it ignores Ctrl-C (the terminal sends SIGINT to the whole process
group; the demo stops it in order), asks the kernel for SIGTERM when its parent dies
(PR_SET_PDEATHSIG), and stops when its pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import signal
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

from agent.demo.clock import ScaledClock
from agent.demo.district import RECORDINGS, District, build_district
from agent.faults.astro import sun_window

PR_SET_PDEATHSIG = 1
SKY_TICK_S = 0.25  # real seconds between photocell updates

# ("stuck", device_id)             its relay sticks: the lamp burns whatever the photocell says
# ("fail", device_id)              its light source dies (0 W, lamp_failure flag)
# ("repair", device_id)            a healthy lamp again
# ("power", circuit, on)           the circuit's breaker: off = no power, on = back (restart)
# ("override", device_id, oid, value)   a recorded access point's object changes (INTEGER)
# ("clear", device_id)             the recording as recorded again
Command = tuple[Any, ...]


@dataclass(frozen=True)
class DistrictSpec:
    circuits: int
    poles_per_circuit: int
    hotspots: int
    mqtt_lamps: int
    start: datetime
    speed: float
    real_start: float

    def clock(self) -> ScaledClock:
        return ScaledClock(self.start, self.speed, real_start=self.real_start)

    def district(self, clock: ScaledClock) -> District:
        return build_district(
            self.circuits, self.poles_per_circuit, self.hotspots, self.mqtt_lamps, clock.monotonic
        )


def apply(district: District, command: Command, sim: Any = None, mqtt: bool = False) -> None:
    """Apply a command to the poles this process simulates: the MQTT ones (mqtt=True) or the
    SNMP ones and the access points (mqtt=False, with the SnmpSimulator `sim`)."""
    kind, *args = command
    mine = [p for p in district.poles if p.mqtt == mqtt]
    if kind in ("stuck", "fail", "repair"):
        for pole in (p for p in mine if p.device_id == args[0]):
            if kind == "stuck":
                pole.relay_stuck = True
                pole.lamp.update(lamp_on=True)
            elif kind == "fail":
                pole.lamp.fail_lamp()
            else:
                pole.lamp.repair()
    elif kind == "power":
        circuit, on = args
        for pole in (p for p in mine if p.circuit == circuit):
            pole.powered = on
            if on:
                pole.lamp.reboot()  # a controller that lost its power starts again
            else:
                pole.lamp.update(online=False)
    elif kind == "override":
        if sim is not None:
            sim.override(args[0], args[1], int(args[2]))
    elif kind == "clear":
        if sim is not None:
            sim.clear_override(args[0])
    else:
        raise ValueError(f"unknown command {command!r}")


class Sky:
    """Photocells: each pole's sees daylight between sunrise and sunset at its place (a minute or
    so late, each its own), and its controller switches the lamp by it, unless its relay is
    stuck (then it burns whatever the photocell says)."""

    def __init__(self, district: District, clock: ScaledClock, mqtt: bool) -> None:
        self.district, self.clock = district, clock
        self.poles = [p for p in district.poles if p.mqtt == mqtt]  # this process's

    def update(self) -> None:
        now = self.clock.now()
        for pole in self.poles:
            seen_at = now - timedelta(seconds=pole.photocell_delay_s)
            daylight = not sun_window(pole.lat, pole.lon, seen_at).night
            lamp = pole.lamp
            on = pole.relay_stuck or not daylight
            if lamp.daylight != daylight or (lamp.lamp_on != on and lamp.dim > 0):
                lamp.update(daylight=daylight, lux=12000.0 if daylight else 2.0, lamp_on=on)

    async def run(self) -> None:
        while True:
            self.update()
            await asyncio.sleep(SKY_TICK_S)


# --- the child ----------------------------------------------------------------------------------
def _child(conn: Connection, spec: DistrictSpec) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(conn, spec))


async def _serve(conn: Connection, spec: DistrictSpec) -> None:
    from agent.demo.snmp_sim import SnmpSimulator

    clock = spec.clock()
    district = spec.district(clock)
    sim = SnmpSimulator()
    for pole in district.poles:
        if not pole.mqtt:
            sim.add_lamp(pole.device_id, pole.lamp)
    for hotspot in district.hotspots:
        sim.add_recording(hotspot.device_id, RECORDINGS / hotspot.recording.file)
    sky = Sky(district, clock, mqtt=False)
    sky.update()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    try:
        await sim.start()
        conn.send(("ready", sim.port))

        def readable() -> None:
            try:
                command = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                done.set()
                return
            if command == ("stop",):
                done.set()
                return
            try:
                apply(district, command, sim)
                conn.send(("ok",))
            except Exception as exc:
                conn.send(("error", repr(exc)))

        loop.add_reader(conn.fileno(), readable)
        sky_task = asyncio.create_task(sky.run())
        await done.wait()
        sky_task.cancel()
        loop.remove_reader(conn.fileno())
    finally:
        sim.close()


# --- the parent's handle ------------------------------------------------------------------------
class DeviceProcess:
    """The child process that serves the district's SNMP devices."""

    def __init__(self, spec: DistrictSpec) -> None:
        self.spec = spec
        self.port = 0
        self._conn: Connection | None = None
        self._proc: Any = None
        self._lock = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return self._proc is not None and bool(self._proc.is_alive())

    @property
    def pid(self) -> int | None:
        return int(self._proc.pid) if self._proc is not None else None

    async def start(self, timeout_s: float = 30.0) -> int:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child, args=(child, self.spec), name="siaran-demo-devices", daemon=True
        )
        self._proc.start()
        child.close()
        self._conn = parent
        try:
            answer = await asyncio.wait_for(asyncio.to_thread(self._recv), timeout_s)
        except BaseException:
            self.stop()
            raise
        if answer[0] != "ready":
            self.stop()
            raise RuntimeError(f"the device simulator did not start: {answer!r}")
        self.port = int(answer[1])
        return self.port

    def _recv(self) -> Any:
        assert self._conn is not None
        try:
            return self._conn.recv()
        except EOFError:
            return ("died",)

    async def do(self, command: Command) -> None:
        """Apply a command in the child; raises when the child refused it."""
        async with self._lock:
            assert self._conn is not None
            self._conn.send(command)
            answer = await asyncio.wait_for(asyncio.to_thread(self._recv), 10.0)
        if answer[0] != "ok":
            raise RuntimeError(f"the device simulator: {command!r}: {answer!r}")

    def stop(self) -> None:
        """Stop the child (politely, then by force) and wait for it; safe to call twice."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
            conn.close()
        if proc is None:
            return
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
