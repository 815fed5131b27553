"""Everything the demo runs, started in order and always stopped (`async with DemoStack(...)`).

In this process and its event loop: the MQTT lamps and their photocells, the embedded MQTT
broker when no mosquitto is used, the SIARAN sandbox (uvicorn), the central consumer and the
gateway agent with its status page. Child processes: the SNMP devices (agent/demo/devices.py)
and mosquitto when it is used. Both ignore the terminal's Ctrl-C (mosquitto runs in a session of
its own) so that the demo stops the agent first and its goodbye still reaches the broker; both
get SIGTERM from the kernel if the demo dies (PR_SET_PDEATHSIG); both are stopped and waited for
in every other case.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import structlog

from agent.demo.clock import ScaledClock
from agent.demo.devices import Command, DeviceProcess, DistrictSpec, Sky, apply
from agent.demo.district import (
    IF_OPER_STATUS,
    MQTT_PERIOD_S,
    District,
    Hotspot,
    Pole,
    Ports,
    mqtt_payload,
    write_configs,
)
from agent.demo.mqtt_broker import MqttBroker

log = structlog.get_logger(__name__)

PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def _no_signal_capture(self: Any) -> Iterator[None]:
    yield


def keep_our_signal_handlers() -> None:
    """uvicorn.Server.serve() takes SIGINT/SIGTERM for itself while it runs and raises them
    again when it ends. The demo's Ctrl-C stops everything in order itself, so in this process
    the sandbox's uvicorn leaves the handlers alone (as the agent's status page does)."""
    import uvicorn

    uvicorn.Server.capture_signals = _no_signal_capture  # type: ignore[method-assign]


def cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def cancel_within(task: asyncio.Task[Any], limit_s: float = 5.0) -> None:
    """Cancel a task and wait for it, at most `limit_s`: a client stuck in its goodbye (an
    MQTT DISCONNECT the broker never answers) must not hold up the demo's end."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=limit_s)
    if not done:
        log.warning("demo_task_stuck_at_exit", task=task.get_name())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_tcp(host: str, port: int, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}") from None
            await asyncio.sleep(0.05)
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Mosquitto:
    """mosquitto on a free loopback port with its own config and log in `folder`."""

    def __init__(self, exe: str, folder: Path) -> None:
        self.exe, self.folder = exe, folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {self.folder / 'mosquitto.log'}",
        ]
        if os.geteuid() == 0:  # else it drops to user mosquitto, who cannot write the log
            lines.insert(0, "user root")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; waited for below
            [self.exe, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            await wait_tcp("127.0.0.1", self.port)
        except TimeoutError:
            self.stop()
            log_file = self.folder / "mosquitto.log"
            raise RuntimeError(f"mosquitto did not start; see {log_file}") from None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class BrokerChoice:
    kind: str  # "embedded", "mosquitto" or "external"
    host: str
    port: int

    @property
    def label(self) -> str:
        if self.kind == "embedded":
            return f"embedded MQTT broker (agent/demo/mqtt_broker.py) on {self.host}:{self.port}"
        if self.kind == "mosquitto":
            return f"mosquitto (started by the demo) on {self.host}:{self.port}"
        return f"your broker at {self.host}:{self.port}"


class MqttLamps:
    """The MQTT lamps: each publishes its JSON every `period_s` (demo time) while powered, and
    obeys a command on its topic + "/set" ({"lamp": {"dim": N}}), as pju-mqtt-json says."""

    def __init__(
        self, poles: list[Pole], host: str, port: int, clock: ScaledClock, period_s: float
    ) -> None:
        self.poles = {p.topic: p for p in poles if p.topic is not None}
        self.host, self.port, self.clock, self.period_s = host, port, clock, period_s
        self.published = 0

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier="demo-mqtt-lamps"
                ) as client:
                    await client.subscribe([(f"{t}/set", 1) for t in self.poles])
                    listener = asyncio.create_task(self._commands(client))
                    try:
                        while True:
                            for topic, pole in self.poles.items():
                                if pole.powered and pole.lamp.online:
                                    payload = mqtt_payload(pole, self.clock.now())
                                    await client.publish(topic, payload, qos=0)
                                    self.published += 1
                            await self.clock.sleep(self.period_s)
                    finally:
                        listener.cancel()
                        await asyncio.gather(listener, return_exceptions=True)
            except aiomqtt.MqttError as exc:
                if cancelling():  # aiomqtt may turn a cancellation into an MqttError
                    raise asyncio.CancelledError from exc
                log.warning("demo_mqtt_lamps_reconnecting", error=str(exc))
                await asyncio.sleep(0.5)

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            pole = self.poles.get(message.topic.value.removesuffix("/set"))
            raw = message.payload
            if pole is None or not isinstance(raw, bytes | bytearray):
                continue
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                level = json.loads(raw)["lamp"]["dim"]
                pole.lamp.command(int(level))


@dataclass
class Parts:
    """What a started stack holds (filled in by DemoStack.start)."""

    district: District
    devices: DeviceProcess
    broker: BrokerChoice
    ports: Ports
    password: str
    token: str
    gateway_config: Path
    central_config: Path
    agent: Any = None  # agent.runtime.Agent
    central: Any = None  # central.service.Central
    sandbox: Any = None  # central.sandbox.server.SandboxServer
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def do(self, command: Command) -> None:
        """A change in the district: to the MQTT lamps here, and to the SNMP devices."""
        apply(self.district, command, mqtt=True)
        await self.devices.do(command)


class DemoStack:
    def __init__(self, folder: Path, spec: DistrictSpec, broker: str) -> None:
        self.folder, self.spec = folder, spec
        self.clock = spec.clock()
        self.district = spec.district(self.clock)
        self.broker_option = broker
        self._exit = contextlib.AsyncExitStack()
        self.parts: Parts | None = None
        self._agent_stop = asyncio.Event()
        self._central_stop = asyncio.Event()

    async def __aenter__(self) -> Parts:
        try:
            return await self._start()
        except BaseException:
            await self._exit.aclose()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self._exit.aclose()

    # --- starting -------------------------------------------------------------------------------
    async def _start(self) -> Parts:
        from agent.web.passwords import hash_password

        devices = DeviceProcess(self.spec)
        self._exit.callback(devices.stop)
        await devices.start()

        choice = await self._broker()
        ports = Ports(
            snmp=devices.port,
            broker_host=choice.host,
            broker=choice.port,
            web=free_port(),
            sandbox=free_port(),
        )
        password = secrets.token_urlsafe(9)
        token = secrets.token_urlsafe(24)
        pw_hash = await asyncio.to_thread(hash_password, password)
        gateway_path, central_path = write_configs(
            self.folder, self.district, ports, pw_hash, token, self.clock.speed
        )
        parts = Parts(
            self.district, devices, choice, ports, password, token, gateway_path, central_path
        )
        self.parts = parts

        from central.sandbox.server import SandboxServer

        keep_our_signal_handlers()
        sandbox = SandboxServer(self.folder / "sandbox", ports.sandbox, token, clock=self.clock)
        (self.folder / "sandbox").mkdir(exist_ok=True)
        await sandbox.start()
        parts.sandbox = sandbox
        self._exit.push_async_callback(sandbox.stop)

        lamps = [p for p in self.district.poles if p.mqtt]
        if lamps:
            sky = Sky(self.district, self.clock, mqtt=True)
            sky.update()  # the photocells see the sky before the first message
            self._task(parts, sky.run(), "sky")
            mqtt_lamps = MqttLamps(lamps, choice.host, choice.port, self.clock, MQTT_PERIOD_S)
            self._task(parts, mqtt_lamps.run(), "mqtt-lamps")

        parts.central = await self._start_central(parts)
        parts.agent = await self._start_agent(parts)
        return parts

    def _task(self, parts: Parts, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        parts.tasks.append(task)

        async def cancel() -> None:
            await cancel_within(task)

        self._exit.push_async_callback(cancel)
        return task

    async def _broker(self) -> BrokerChoice:
        option = self.broker_option
        if option not in ("auto", "embedded", "mosquitto"):
            host, _, port = option.rpartition(":")
            await wait_tcp(host or "127.0.0.1", int(port), timeout_s=5.0)
            return BrokerChoice("external", host or "127.0.0.1", int(port))
        exe = shutil.which("mosquitto") or shutil.which(
            "mosquitto", path="/usr/sbin:/usr/local/sbin"
        )
        if option == "mosquitto" or (option == "auto" and exe is not None):
            if exe is None:
                raise RuntimeError("--broker mosquitto: no mosquitto on PATH")
            mosquitto = Mosquitto(exe, self.folder / "mosquitto")
            await mosquitto.start()
            self._exit.callback(mosquitto.stop)
            return BrokerChoice("mosquitto", "127.0.0.1", mosquitto.port)
        broker = MqttBroker()
        await broker.start()
        self._exit.push_async_callback(broker.close)
        return BrokerChoice("embedded", "127.0.0.1", broker.port)

    async def _start_central(self, parts: Parts) -> Any:
        from central.config import load_config as load_central
        from central.service import Central

        central = Central(load_central(parts.central_config), clock=self.clock)
        task = asyncio.create_task(central.run(self._central_stop), name="central")
        parts.tasks.append(task)

        async def stop() -> None:
            self._central_stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), 15.0)
            except TimeoutError:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self._exit.push_async_callback(stop)
        return central

    async def _start_agent(self, parts: Parts) -> Any:
        from agent.faults.rules import RULES
        from agent.faults.settings import check_rule_settings
        from agent.runtime import Agent
        from firmware_config.loader import load_config
        from firmware_config.problems import ConfigError

        importlib.import_module("agent.web.server")  # now, not while the agent starts
        config = load_config(parts.gateway_config)
        problems = check_rule_settings(config, RULES)
        if problems:
            raise ConfigError(problems)
        agent = Agent(config, clock=self.clock)
        task = asyncio.create_task(agent.run(self._agent_stop), name="agent")
        parts.tasks.append(task)

        async def stop() -> None:
            self._agent_stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), 20.0)
            except TimeoutError:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self._exit.push_async_callback(stop)
        return agent

    async def wait_started(self, timeout_s: float = 15.0) -> None:
        """Until the agent serves its status page and its uplink and central are connected."""
        parts = self.parts
        assert parts is not None
        await wait_tcp("127.0.0.1", parts.ports.web, timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            uplink = getattr(parts.agent, "uplink", None)
            if (
                uplink is not None
                and uplink.stats().connected
                and parts.central.consumer.connected.is_set()
            ):
                return
            for task in parts.tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"{task.get_name()} failed: {task.exception()!r}")
            await asyncio.sleep(0.05)
        raise TimeoutError("the agent or central did not connect to the broker")

    def failed_part(self) -> str | None:
        """The name of a part that stopped by itself (a failure), if any."""
        assert self.parts is not None
        if not self.parts.devices.alive:
            return "the device simulator process died"
        for task in self.parts.tasks:
            if task.done() and not task.cancelled():
                error = task.exception()
                return f"{task.get_name()}: {error!r}" if error else f"{task.get_name()} ended"
        return None


def uplink_oid(hotspot: Hotspot) -> str:
    assert hotspot.recording.uplink_index is not None
    return f"{IF_OPER_STATUS}.{hotspot.recording.uplink_index}"
