"""The composition root: wires collectors, scheduler and state store for a loaded config.

Seams for later parts: every Reading goes through `Agent.sinks` (the state store now; the fault
rules and telemetry will be added there), and the uplink will take what the rules emit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.actions import GatewayActions
from agent.clock import Clock, SystemClock
from agent.clock_sync import clock_synchronised
from agent.faults.engine import FaultEngine
from agent.faults.rules import RULES
from agent.lamp_test import publish_once
from agent.scheduler import PollJob, ReadingSink, Scheduler, poll_guarded
from agent.state_store import StateStore
from agent.telemetry import telemetry_from_config
from agent.version import agent_version
from agent.watchdog import PollProgress, Watchdog, status_line
from collectors.mqtt_json import MqttDeviceCollector
from collectors.reading import Reading, ReadingError
from collectors.snmp import SnmpCollector
from firmware_config.loader import LoadedConfig
from uplink.publisher import GatewayInfo, Uplink

log = structlog.get_logger(__name__)

SILENCE_CHECK_S = 5.0


class StateDirError(Exception):
    """The state directory or a store in it cannot be opened (permissions, disk, lock)."""


ENGINE_TICK_S = 5.0


async def _until_stop_or_failure(
    stopper: asyncio.Task[Any], tasks: list[asyncio.Task[Any]]
) -> BaseException | None:
    """Wait for the stop signal, or for a part to fail (a part may also end normally, e.g. the
    uplink when there is no broker); returns the failure, if that is what ended the wait."""
    pending = {stopper, *tasks}
    while stopper in pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stopper}:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                log.error("agent_part_failed", part=task.get_name(), error=repr(error))
                return error
    return None


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Agent:
    config: LoadedConfig
    clock: Clock = field(default_factory=SystemClock)
    sinks: list[ReadingSink] = field(default_factory=list)

    def __post_init__(self) -> None:
        gw = self.config.gateway
        self.snmp = SnmpCollector(now=self.clock.now, max_concurrency=gw.poll.max_concurrency)
        self.store: StateStore | None = None  # opened by run(); --once needs no state dir
        jobs = [
            PollJob(d, self.config.profile_of(d), self.snmp)
            for d in self.config.devices
            if self.config.profile_of(d).protocol == "snmp"
        ]
        self.scheduler = Scheduler(self.clock, jobs, self._fan_out, jitter=gw.poll.jitter)
        mqtt_devices = [
            (d, self.config.profile_of(d))
            for d in self.config.devices
            if self.config.profile_of(d).protocol == "mqtt"
        ]
        self._mqtt_ids = [d.id for d, _ in mqtt_devices]
        self.mqtt: MqttDeviceCollector | None = None
        if mqtt_devices and gw.device_broker is not None:
            self.mqtt = MqttDeviceCollector(
                gw.device_broker, mqtt_devices, now=self.clock.now, on_reading=self._fan_out
            )

    async def _fan_out(self, reading: Reading) -> None:
        for sink in self.sinks:
            try:
                await sink(reading)
            except Exception:  # one part's bug must not keep a reading from the others
                log.exception("reading_sink_failed", device=reading.device_id)

    def _gateway_info(self) -> GatewayInfo:
        return GatewayInfo(
            agent_version=agent_version(),
            config_version=self.config.version,
            device_count=len(self.config.devices),
            clock_synced=clock_synchronised(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, judge, record and report until `stop` is set, then shut down cleanly.

        Shutdown order: the sources (scheduler, MQTT devices, status page) stop first, then the
        telemetry flush and the fault engine (their last messages go to the outbox), then the
        uplink (goodbye status), then the stores.
        """
        gw = self.config.gateway
        log.info(
            "agent_started",
            gateway=gw.gateway.id,
            devices=len(self.config.devices),
            config_version=self.config.version,
        )
        store = await self._open_parts()
        sources: list[asyncio.Task[Any]] = [
            asyncio.create_task(self.scheduler.run(), name="scheduler")
        ]
        if self.mqtt is not None:
            sources.append(asyncio.create_task(self.mqtt.run(), name="mqtt-devices"))
            sources.append(asyncio.create_task(self._watch_silence(self.mqtt), name="silence"))
        if gw.web is not None:  # the technician status page (agent/web/)
            from agent.web.server import serve_agent

            sources.append(asyncio.create_task(serve_agent(self, stop), name="web"))
        if self.telemetry is not None:
            sources.append(asyncio.create_task(self.telemetry.run(), name="telemetry"))
        engine = asyncio.create_task(self.engine.run(ENGINE_TICK_S), name="fault-engine")
        background = [
            asyncio.create_task(store.run(), name="state-store"),
            asyncio.create_task(self.uplink.run(), name="uplink"),
            asyncio.create_task(self._watchdog().run(stop), name="watchdog"),
        ]
        stopper = asyncio.create_task(stop.wait())
        failed = await _until_stop_or_failure(stopper, [*sources, engine, *background])
        await _cancel(sources)
        closing: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("actions", self.actions.close),  # pending lamp switch-backs are done now
            ("fault-engine", lambda: _cancel([engine])),
            ("fault-engine", self.engine.close),
            ("uplink", self.uplink.close),
        ]
        if self.telemetry is not None:  # first: the last samples reach the outbox
            closing.insert(0, ("telemetry", self.telemetry.close))
        for part, step in closing:
            try:  # one part failing to close must not keep the others from closing
                await step()
            except Exception:
                log.exception("agent_close_failed", part=part)
        await _cancel([*background, stopper])
        await self.close()
        if failed is not None:
            raise failed
        log.info("agent_stopped")

    async def _open_parts(self) -> StateStore:
        try:
            return await self._open_stores()
        except (OSError, sqlite3.Error) as exc:
            raise StateDirError(f"state_dir {self.config.gateway.state_dir}: {exc}") from exc

    async def _open_stores(self) -> StateStore:
        gw = self.config.gateway
        self.store = store = StateStore(gw.state_dir / "state.db")
        self.uplink = Uplink.from_config(gw, self._gateway_info, clock=self.clock)
        await self.uplink.open()
        self.engine = FaultEngine(
            self.config,
            RULES,
            self.clock,
            self.uplink.submit_fault,
            clock_synced=clock_synchronised,
        )
        await self.engine.open()
        broker = gw.device_broker
        self.actions = GatewayActions(
            self.config,
            self.engine,
            self.uplink,
            self.clock,
            snmp=self.snmp,
            mqtt_publish=functools.partial(publish_once, broker) if broker else None,
        )
        await self.actions.open()
        self.telemetry = telemetry_from_config(
            self.config, self.clock, self.uplink.submit_telemetry
        )
        parts: list[ReadingSink] = [
            store.record,
            self.engine.on_reading,
            self.actions.on_reading,
        ]
        if self.telemetry is not None:
            await self.telemetry.open()
            parts.append(self.telemetry.on_reading)
        self.sinks[:0] = parts
        return store

    def _watchdog(self) -> Watchdog:
        """sd_notify for systemd: READY, then WATCHDOG only while polls make progress."""

        def status() -> str:
            connected = self.uplink.stats().connected if self.config.gateway.broker else None
            return status_line(
                len(self.config.devices), len(self.engine.active_faults()), connected
            )

        return Watchdog(PollProgress(self.scheduler, self.clock), self.clock, status)

    async def _watch_silence(self, mqtt: MqttDeviceCollector) -> None:
        while True:
            await self.clock.sleep(SILENCE_CHECK_S)
            for reading in mqtt.silent_devices():
                await self._fan_out(reading)

    async def poll_once(self, mqtt_wait_s: float = 5.0) -> list[Reading]:
        """Poll every SNMP device once; wait up to mqtt_wait_s for each MQTT device's message."""
        readings = list(
            await asyncio.gather(*(poll_guarded(job, self.clock) for job in self.scheduler.jobs))
        )
        if self.mqtt is not None:
            readings += await self._first_mqtt_readings(self.mqtt, mqtt_wait_s)
        await self.close()
        return readings

    async def _first_mqtt_readings(self, mqtt: MqttDeviceCollector, wait_s: float) -> list[Reading]:
        first: dict[str, Reading] = {}
        expected = set(self._mqtt_ids)
        all_heard = asyncio.Event()

        async def keep(reading: Reading) -> None:
            first.setdefault(reading.device_id, reading)
            if expected <= set(first):
                all_heard.set()

        self.sinks[:] = [keep]
        task = asyncio.create_task(mqtt.run())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await all_heard.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for device_id in sorted(expected - set(first)):
            first[device_id] = Reading(
                device_id=device_id,
                at=self.clock.now(),
                reachable=False,
                errors=[
                    ReadingError(code="silent", message=f"no MQTT message within {wait_s:.0f} s")
                ],
            )
        return list(first.values())

    async def close(self) -> None:
        if self.store is not None:
            await self.store.flush()
            self.store.close()
        await self.snmp.close()
