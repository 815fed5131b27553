"""The composition root: wires collectors, scheduler and state store for a loaded config.

Seams for later parts: every Reading goes through `Agent.sinks` (the state store now; the fault
rules and telemetry will be added there), and the uplink will take what the rules emit.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.clock import Clock, SystemClock
from agent.scheduler import PollJob, ReadingSink, Scheduler, poll_guarded
from agent.state_store import StateStore
from collectors.mqtt_json import MqttDeviceCollector
from collectors.reading import Reading, ReadingError
from collectors.snmp import SnmpCollector
from firmware_config.loader import LoadedConfig

log = structlog.get_logger(__name__)

SILENCE_CHECK_S = 5.0


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
            await sink(reading)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and record until `stop` is set, then shut down cleanly."""
        log.info(
            "agent_started",
            gateway=self.config.gateway.gateway.id,
            devices=len(self.config.devices),
            config_version=self.config.version,
        )
        self.store = StateStore(self.config.gateway.state_dir / "state.db")
        self.sinks.insert(0, self.store.record)
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self.store.run(), name="state-store"),
        ]
        if self.mqtt is not None:
            tasks.append(asyncio.create_task(self.mqtt.run(), name="mqtt-devices"))
            tasks.append(asyncio.create_task(self._watch_silence(self.mqtt), name="mqtt-silence"))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        await self.close()
        for task in done - {stopper}:
            error = task.exception()  # a part that ended by itself ended on an error
            if error is not None:
                raise error
        log.info("agent_stopped")

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
