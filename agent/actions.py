"""What a technician can tell the gateway (from the status page, later from central).

Each action is recorded with who and when, and sent on to the central side through the uplink.
This module is the seam between the web layer (agent/web/) and the rest of the agent: the web
layer calls an `Actions` object and knows nothing of SNMP, the fault store or the outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

import structlog

from agent.action_store import FILE_NAME as FILE
from agent.action_store import Acknowledgement, ActionStore, PendingRestore
from agent.clock import Clock
from agent.faults.engine import ActiveFault, FaultEngine
from agent.faults.rules.power_deviation import PowerDeviationSettings
from agent.lamp_test import (
    LAMP_COMMAND,
    ON_LEVEL,
    DeviceWriter,
    MqttPublish,
    WriteError,
    device_settings,
    judge,
    previous_level,
)
from collectors.reading import Reading
from collectors.snmp import SnmpCollector
from firmware_config.loader import LoadedConfig
from firmware_config.models import Device
from firmware_config.profiles import Profile
from uplink.contract import ActionDraft, LampTestReport, OperatorAction

log = structlog.get_logger(__name__)

T = TypeVar("T")
TargetKind = Literal["device", "circuit"]


class ActionError(Exception):
    """An action that cannot be done: unknown device, no such fault, write not supported...
    The message is for the technician (Bahasa Indonesia or English), never a stack trace."""


@dataclass(frozen=True)
class LampTestResult:
    device_id: str
    ok: bool  # the lamp drew power in the expected range while switched on
    minutes: int
    power_w: float | None  # active power read back while on
    expected_w: float | None  # rated power at the commanded level
    detail: str  # one line for the technician
    evidence: dict[str, float | int | str | bool | None] = field(default_factory=dict)


class Actions(Protocol):
    async def acknowledge(self, device_id: str, fault_type: str, by: str, note: str) -> None:
        """Acknowledge an active fault ("teknisi di lokasi"); ActionError if there is none."""
        ...

    async def set_maintenance(
        self, kind: TargetKind, target: str, until: datetime, by: str, note: str = ""
    ) -> None:
        """Put a device or circuit in maintenance until `until` (aware); ActionError if unknown."""
        ...

    async def end_maintenance(self, kind: TargetKind, target: str, by: str) -> None: ...

    def lamp_test_supported(self, device_id: str) -> bool:
        """A street light whose profile declares a write for switching the lamp."""
        ...

    async def lamp_test(self, device_id: str, minutes: int, by: str) -> LampTestResult:
        """Switch the lamp on for `minutes` (then back to its schedule), read back the power.
        Returns once the read-back is done (a few seconds); the switch-back happens later."""
        ...


# -- the gateway's implementation ------------------------------------------------------------

MAX_LAMP_TEST_MIN = 60  # a day-time test longer than day_burning's 15 min grace would raise it
RESTORE_RETRY_S = 60.0  # a failed switch-back is tried again, doubling up to RESTORE_RETRY_MAX_S
RESTORE_RETRY_MAX_S = 900.0
CLOSE_RESTORE_S = 10.0  # at shutdown, pending switch-backs are done now (at most this long)


class ActionSink(Protocol):
    """Where actions go on to central (uplink.publisher.Uplink fits)."""

    async def submit_action(self, draft: ActionDraft) -> OperatorAction: ...


class GatewayActions:
    """The Actions of this gateway: the fault engine, the devices and the uplink behind them.

    Each action is logged (who, when), kept where the gateway needs it (actions.db: the
    acknowledgements, pending lamp switch-backs; faults.db: maintenance windows) and submitted
    to the uplink as an OperatorAction. `open()` before use, `close()` at shutdown; add
    `on_reading` to the agent's sinks (an MQTT lamp reads its power back from its next message).
    """

    def __init__(
        self,
        config: LoadedConfig,
        engine: FaultEngine,
        uplink: ActionSink,
        clock: Clock,
        *,
        snmp: SnmpCollector | None = None,
        mqtt_publish: MqttPublish | None = None,
        settle_s: float = 5.0,
        mqtt_readback_s: float = 30.0,
    ) -> None:
        self._config, self._engine, self._uplink, self._clock = config, engine, uplink, clock
        self._devices = {d.id: d for d in config.devices}
        self._writer = DeviceWriter(snmp, mqtt_publish)
        self._snmp = snmp
        self._settle_s, self._readback_s = settle_s, mqtt_readback_s
        self._power = device_settings(config)
        self._acks: dict[tuple[str, str], Acknowledgement] = {}
        self._restores: dict[str, PendingRestore] = {}
        self._restore_tasks: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._latest: dict[str, Reading] = {}  # MQTT devices: their last message
        self._heard = asyncio.Condition()
        self._store: ActionStore | None = None
        self._exec: ThreadPoolExecutor | None = None

    # -- life --

    async def open(self) -> None:
        """Load acknowledgements; schedule the lamp switch-backs still due (at once if late)."""
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="actions")
        store = self._store = await self._io(ActionStore, self._config.gateway.state_dir / FILE)
        self._acks = {(a.device_id, a.fault_type): a for a in await self._io(store.acks)}
        for restore in await self._io(store.restores):
            log.info("lamp_restore_pending", device=restore.device_id, due=str(restore.due))
            self._schedule(restore)

    async def close(self) -> None:
        """Do the pending switch-backs now (a stopped agent must not leave a lamp on)."""
        tasks = list(self._restore_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        restores = list(self._restores.values())  # all at once: a dead lamp must not hold up
        try:  # the rest past systemd's stop timeout
            async with asyncio.timeout(CLOSE_RESTORE_S):
                results = await asyncio.gather(
                    *(self._restore(r) for r in restores), return_exceptions=True
                )
        except TimeoutError as exc:
            results = [exc] * len(restores)
        for restore, result in zip(restores, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "lamp_restore_left_for_next_start", device=restore.device_id, error=str(result)
                )
        if self._exec is not None:
            if self._store is not None:
                await self._io(self._store.close)
            self._exec.shutdown(wait=True)
            self._exec, self._store = None, None

    async def on_reading(self, reading: Reading) -> None:
        """A ReadingSink: the latest message of each MQTT device, for lamp tests."""
        device = self._devices.get(reading.device_id)
        if device is None or self._config.profile_of(device).protocol != "mqtt":
            return
        async with self._heard:
            self._latest[reading.device_id] = reading
            self._heard.notify_all()

    # -- acknowledge --

    async def acknowledge(self, device_id: str, fault_type: str, by: str, note: str) -> None:
        who, note = _who(by), _note(note)
        if self._active(device_id, fault_type) is None:
            raise ActionError(f"Tidak ada gangguan aktif {fault_type} pada {device_id}")
        ack = Acknowledgement(
            device_id=device_id, fault_type=fault_type, by=who, at=self._clock.now(), note=note
        )
        await self._io(self._open_store().put_ack, ack)
        self._acks[(device_id, fault_type)] = ack
        await self._submit(
            ActionDraft(
                kind="acknowledge",
                by=who,
                at=ack.at,
                device_id=device_id,
                fault_type=fault_type,
                note=note,
            )
        )

    def acknowledged_by(self, device_id: str, fault_type: str) -> Acknowledgement | None:
        """The acknowledgement of this fault as it is now (not of an earlier episode of it)."""
        ack = self._acks.get((device_id, fault_type))
        fault = self._active(device_id, fault_type)
        if ack is None or fault is None:
            return None
        return ack if fault.first_seen is None or fault.first_seen <= ack.at else None

    def _active(self, device_id: str, fault_type: str) -> ActiveFault | None:
        return next(
            (
                f
                for f in self._engine.active_faults()
                if (f.device_id, f.fault_type) == (device_id, fault_type)
            ),
            None,
        )

    # -- maintenance --

    async def set_maintenance(
        self, kind: TargetKind, target: str, until: datetime, by: str, note: str = ""
    ) -> None:
        who, note = _who(by), _note(note)
        if until.tzinfo is None:
            raise ActionError("Waktu selesai perlu zona waktu")
        now = self._clock.now()
        if until <= now:
            raise ActionError("Waktu selesai pemeliharaan harus di masa depan")
        try:
            await self._engine.set_maintenance(kind, target, until, who, note)
        except ValueError as exc:
            raise ActionError(str(exc)) from None
        await self._submit(
            ActionDraft(
                kind="maintenance", by=who, at=now, until=until, note=note, **_target(kind, target)
            )
        )

    async def end_maintenance(self, kind: TargetKind, target: str, by: str) -> None:
        who = _who(by)
        windows = self._engine.maintenance_windows()
        window = next((w for w in windows if (w.target_kind, w.target) == (kind, target)), None)
        if window is None:
            raise ActionError(f"Tidak ada pemeliharaan yang berjalan untuk {kind} {target}")
        now = self._clock.now()
        await self._engine.set_maintenance(kind, target, now, who, window.note)  # ends it
        await self._submit(
            ActionDraft(kind="maintenance_end", by=who, at=now, **_target(kind, target))
        )

    # -- lamp test --

    def lamp_test_supported(self, device_id: str) -> bool:
        device = self._devices.get(device_id)
        return (
            device is not None
            and device.kind == "streetlight"
            and self._writer.can_write(self._config.profile_of(device), LAMP_COMMAND)
        )

    async def lamp_test(self, device_id: str, minutes: int, by: str) -> LampTestResult:
        who = _who(by)
        if not self.lamp_test_supported(device_id):
            raise ActionError(f"Uji lampu tidak didukung untuk {device_id}")
        if not 1 <= minutes <= MAX_LAMP_TEST_MIN:
            raise ActionError(f"Lama uji lampu 1..{MAX_LAMP_TEST_MIN} menit")
        device = self._devices[device_id]
        profile = self._config.profile_of(device)
        async with self._lock(device_id):
            pending = self._restores.get(device_id)  # a test still on: keep its way back
            back_to = pending.value if pending else previous_level(await self._now(device))
            if back_to is None:
                raise ActionError(f"Keadaan lampu {device_id} tidak terbaca: uji dibatalkan")
            at = self._clock.now()
            try:
                await self._writer.write(device, profile, LAMP_COMMAND, ON_LEVEL)
            except WriteError as exc:
                log.warning("lamp_test_write_failed", device=device_id, by=who, error=str(exc))
                raise ActionError(f"Perintah nyala gagal: {exc}") from None
            due = at + timedelta(minutes=minutes)
            restore = PendingRestore(
                device_id=device_id, write=LAMP_COMMAND, value=back_to, due=due, by=who
            )
            self._schedule(restore)  # first: the lamp goes back even if the disk fails now
            try:
                await self._io(self._open_store().put_restore, restore)
            except Exception as exc:  # kept in memory only: lost if the agent dies meanwhile
                log.error("lamp_restore_not_saved", device=device_id, error=str(exc))
            await self._clock.sleep(self._settle_s)
            after = await self._read_back(device, profile)
        settings = self._power.get(device_id) or PowerDeviationSettings()
        verdict = judge(device, after, settings, ON_LEVEL)
        evidence = {**verdict.evidence, "back_to_level": back_to}
        result = LampTestResult(
            device_id,
            verdict.ok,
            minutes,
            verdict.power_w,
            verdict.expected_w,
            verdict.detail,
            evidence,
        )
        report = LampTestReport(
            ok=result.ok,
            minutes=minutes,
            power_w=result.power_w,
            expected_w=result.expected_w,
            detail=result.detail,
        )
        await self._submit(
            ActionDraft(kind="lamp_test", by=who, at=at, device_id=device_id, result=report)
        )
        return result

    async def _now(self, device: Device) -> Reading | None:
        """The device as it is now: a poll (SNMP) or its last message (MQTT)."""
        profile = self._config.profile_of(device)
        if profile.protocol == "snmp":
            assert self._snmp is not None
            return await self._snmp.poll(device, profile)
        return self._latest.get(device.id)

    async def _read_back(self, device: Device, profile: Profile) -> Reading | None:
        if profile.protocol == "snmp":
            return await self._now(device)
        since = self._clock.now()  # after the settle time: the first message from now on
        waiter = asyncio.create_task(self._next_message(device.id, since))
        sleeper = asyncio.create_task(self._clock.sleep(self._readback_s))
        await asyncio.wait([waiter, sleeper], return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, sleeper):
            task.cancel()
        await asyncio.gather(waiter, sleeper, return_exceptions=True)
        return waiter.result() if waiter.done() and not waiter.cancelled() else None

    async def _next_message(self, device_id: str, since: datetime) -> Reading:
        async with self._heard:
            await self._heard.wait_for(
                lambda: (r := self._latest.get(device_id)) is not None and r.at >= since
            )
            return self._latest[device_id]

    # -- back to schedule --

    def _schedule(self, restore: PendingRestore) -> None:
        old = self._restore_tasks.pop(restore.device_id, None)
        if old is not None:
            old.cancel()
        self._restores[restore.device_id] = restore
        task = asyncio.create_task(
            self._restore_when_due(restore), name=f"lamp-restore-{restore.device_id}"
        )
        self._restore_tasks[restore.device_id] = task

    async def _restore_when_due(self, restore: PendingRestore) -> None:
        wait = (restore.due - self._clock.now()).total_seconds()
        if wait > 0:
            await self._clock.sleep(wait)
        delay = RESTORE_RETRY_S
        while True:
            try:
                await self._restore(restore)
                return
            except WriteError as exc:
                log.error(
                    "lamp_restore_failed",
                    device=restore.device_id,
                    error=str(exc),
                    retry_in_s=delay,
                )
            await self._clock.sleep(delay)
            delay = min(2 * delay, RESTORE_RETRY_MAX_S)

    async def _restore(self, restore: PendingRestore) -> None:
        """Write the level from before the test back; WriteError when the device refuses."""
        device_id = restore.device_id
        async with self._lock(device_id):
            if self._restores.get(device_id) is not restore:
                return  # a new test took it over
            device = self._devices.get(device_id)
            if device is not None:  # gone from the inventory: nothing to switch back
                profile = self._config.profile_of(device)
                await self._writer.write(device, profile, restore.write, restore.value)
            await self._io(self._open_store().delete_restore, device_id)
            del self._restores[device_id]
            self._restore_tasks.pop(device_id, None)
            log.info("lamp_test_restored", device=device_id, level=restore.value, by=restore.by)

    def _lock(self, device_id: str) -> asyncio.Lock:
        return self._locks.setdefault(device_id, asyncio.Lock())

    # -- common --

    async def _submit(self, draft: ActionDraft) -> None:
        log.info(
            "operator_action",
            kind=draft.kind,
            by=draft.by,
            at=draft.at.isoformat(),
            device=draft.device_id,
            circuit=draft.circuit,
            fault_type=draft.fault_type,
            until=draft.until.isoformat() if draft.until else None,
            ok=draft.result.ok if draft.result else None,
        )
        try:
            await self._uplink.submit_action(draft)
        except Exception as exc:  # the outbox's disk: the action is done, its report is not
            log.error("operator_action_not_queued", kind=draft.kind, error=str(exc))
            raise ActionError(f"Tercatat di gateway, tetapi gagal dikirim ke pusat: {exc}") from exc

    def _open_store(self) -> ActionStore:
        if self._store is None:
            raise RuntimeError("GatewayActions is not open")
        return self._store

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        if self._exec is None:
            raise RuntimeError("GatewayActions is not open")
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)


def _who(by: str) -> str:
    who = by.strip()
    if not who or len(who) > 64:
        raise ActionError("Nama teknisi wajib diisi (paling panjang 64 karakter)")
    return who


def _note(note: str) -> str:
    note = note.strip()
    if len(note) > 500:
        raise ActionError("Catatan paling panjang 500 karakter")
    return note


def _target(kind: TargetKind, target: str) -> dict[str, str]:
    return {"device_id": target} if kind == "device" else {"circuit": target}
