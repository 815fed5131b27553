"""The fault engine: readings -> rule observations -> lifecycles -> correlation -> fault events.

Every reading (`on_reading`, a ReadingSink) runs the device's rules, feeds each verdict to its
(device, fault type) lifecycle, then *settles*: correlation first (circuit outage, gateway
network down), then each fault's truth is compared with what central was told, and the
difference becomes FaultDrafts. `tick()` (every few seconds) does the time-based part: duration
debounce and hysteresis, held faults whose correlation window passed, maintenance windows that
ended (re-read from the fault store, where the CLI writes them), and the batched state flush.

What is reported, in order of precedence (docs/faults.md has the whole story):
- absorbed: a lamp in a circuit outage, a device in a gateway network fault: not raised; if it
  was raised already, a `cleared` event with evidence `absorbed_by` says it is now part of that.
- maintenance: not raised (noted in the history); raised when the window ends if still active.
  A fault raised before the window stays raised; its clear is still reported.
- muted: a device whose `unreachable` fault is pending or active: its other rules' verdicts
  are ignored, nothing of it is newly raised, and what was raised stays raised (no clear).
- held: a fault that could take part in a correlation waits the correlation window once
  active (and again when released from a group that ended), so a circuit outage is one event.

Persistence: a state change that produces events is written to faults.db together with the
events (the journal) before they are emitted; other changes are flushed every flush_interval_s.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import structlog
from pydantic import ValidationError

from agent.clock import Clock
from agent.faults.correlation import GroupFault, circuit_id, evaluate
from agent.faults.events import (
    FaultRecord,
    Subject,
    group_draft,
    location,
    record_cleared,
    record_raised,
    record_updated,
)
from agent.faults.fault_store import FILE_NAME, FaultStore, HistoryRow, Key, WriteBatch
from agent.faults.lifecycle import Change
from agent.faults.maintenance import MaintenanceBook, MaintenanceWindow, TargetKind, check_target
from agent.faults.rule import (
    CIRCUIT_OUTAGE,
    GATEWAY_ISOLATED,
    LAMP_FAILURE,
    UNREACHABLE,
    Observation,
    Rule,
    RuleContext,
    RuleSettings,
    Severity,
)
from agent.faults.settings import DeviceRules, resolve_settings
from collectors.reading import Reading
from firmware_config.loader import LoadedConfig
from firmware_config.models import Device
from uplink.contract import EvidenceValue, FaultDraft

log = structlog.get_logger(__name__)

T = TypeVar("T")
DOWN_TYPES = (LAMP_FAILURE, UNREACHABLE)  # what makes a lamp count as down for its circuit
GROUP_TYPES = (CIRCUIT_OUTAGE, GATEWAY_ISOLATED)
MIN_GAP_S = 180.0
MEMORY_FLUSH_S = 6 * 3600.0  # all rule memory is written this often (and at close)

Status = Literal["pending", "raised", "held", "absorbed", "maintenance", "muted"]


@dataclass(frozen=True)
class ActiveFault:
    """A fault that is not ok, for the status page."""

    device_id: str
    fault_type: str
    status: Status
    severity: Severity
    first_seen: datetime | None
    summary: str
    flapping: bool = False
    absorbed_by: str | None = None
    members: tuple[str, ...] = ()


class FaultEngine:
    def __init__(
        self,
        config: LoadedConfig,
        rules: Mapping[str, Rule],
        clock: Clock,
        emit: Callable[[FaultDraft], Awaitable[object]],
        clock_synced: Callable[[], bool] = lambda: True,
        *,
        flush_interval_s: float = 10.0,
        history_limit: int = 1000,
        recent_limit: int = 200,
    ) -> None:
        resolved = resolve_settings(config, rules)  # ConfigError on a bad setting
        self.config = config
        self._clock, self._emit, self._synced = clock, emit, clock_synced
        self._flush_interval_s, self._history_limit = flush_interval_s, history_limit
        self._plans: dict[str, DeviceRules] = resolved.devices  # settings shared per profile
        self._circuit_cfg = resolved.circuit_outage
        self._gateway_cfg = resolved.gateway_network_down
        self._settings: dict[Key, RuleSettings] = {
            (d, rule.name): s for d, plan in self._plans.items() for rule, s in plan.rules
        }
        self._gap = {d: _gap_s(plan) for d, plan in self._plans.items()}
        self._circuits: dict[str, list[Device]] = {}
        for device in config.devices:
            if device.kind == "streetlight" and device.circuit is not None:
                self._circuits.setdefault(device.circuit, []).append(device)
        self._circuit_of = {d.id: name for name, lamps in self._circuits.items() for d in lamps}
        self._gate: tuple[frozenset[str], bool] | None = None  # gateway inputs of the last settle
        self._unreachable_eligible = sum(
            1 for d in self._plans if (d, UNREACHABLE) in self._settings
        )
        gw = config.gateway.gateway
        self._gateway_id = gw.id
        self._gateway_subject = Subject(gw.id, "gateway", location(gw.location))
        self._records: dict[Key, FaultRecord] = {}
        self._groups: dict[Key, GroupFault] = {}
        self._memory: dict[Key, dict[str, Any]] = {}
        self._saved_memory: dict[Key, str] = {}
        self._dirty: set[Key] = set()  # written with the next batch
        self._touched: set[Key] = set()  # only counts moved: written with rule memory
        self._book = MaintenanceBook(gateway_id=gw.id)
        self._notes: list[HistoryRow] = []  # recorded-only history, written with the next batch
        self._unsent: deque[tuple[int, FaultDraft]] = deque()  # journal rows not yet emitted
        self._sent: list[int] = []  # emitted, marked sent with the next batch
        self._recent: deque[FaultDraft] = deque(maxlen=recent_limit)
        self._emit_failing = False
        self._lock = asyncio.Lock()
        self._device_locks: dict[str, asyncio.Lock] = {}
        self._store: FaultStore | None = None
        self._exec: ThreadPoolExecutor | None = None
        self._last_flush = 0.0
        self._last_memory_flush = 0.0

    # -- life ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Load the persisted state; re-emit journalled events that were never handed on."""
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faults")
        path = self.config.gateway.state_dir / FILE_NAME
        store = self._store = await self._io(FaultStore, path, self._history_limit)
        snap = await self._io(store.load, self._recent.maxlen or 0)
        now = self._clock.now()
        self._book = MaintenanceBook(await self._io(store.maintenance, now), self._gateway_id)
        for key, text in snap.records.items():
            try:
                if key[1] in GROUP_TYPES:
                    self._groups[key] = GroupFault.model_validate_json(text)
                else:
                    self._records[key] = FaultRecord.model_validate_json(text)
            except ValidationError:
                log.error("fault_state_unreadable", device=key[0], fault_type=key[1])
                self._dirty.add(key)  # dropped
        for key, text in snap.memory.items():
            try:
                self._memory[key] = json.loads(text)
                self._saved_memory[key] = text
            except ValueError:
                log.error("rule_memory_unreadable", device=key[0], rule=key[1])
        for h in snap.unsent:  # one unreadable journal row must not keep the agent from starting
            draft = _journal_draft(h.id, h.row.draft)
            if draft is None:
                self._sent.append(h.id)  # marked done, so it never blocks a start again
            else:
                self._unsent.append((h.id, draft))
        self._recent.extend(d for h in snap.recent if (d := _journal_draft(h.id, h.row.draft)))
        self._last_flush = self._last_memory_flush = self._clock.monotonic()
        log.info(
            "fault_engine_open",
            path=str(path),
            faults=len(self._records) + len(self._groups),
            unsent=len(self._unsent),
        )
        async with self._lock:
            await self._settle(now, self._retire_orphans(now))

    async def close(self) -> None:
        if self._exec is None:
            return
        async with self._lock:
            await self._flush(memory=True)
            if self._store is not None:
                await self._io(self._store.close)
            self._exec.shutdown(wait=True)
            self._exec, self._store = None, None

    async def run(self, interval_s: float = 5.0) -> None:
        """Tick until cancelled (a task of the runtime's)."""
        while True:
            await self._clock.sleep(interval_s)
            try:
                await self.tick()
            except Exception:  # a bug here must not stop fault reporting for good
                log.exception("fault_tick_failed")

    # -- inputs ----------------------------------------------------------------------------

    async def on_reading(self, reading: Reading) -> None:
        """A ReadingSink: judge the reading with the device's rules and report what changed."""
        plan = self._plans.get(reading.device_id)
        if plan is None or not plan.rules:
            return
        # Rules run outside the engine lock (one may ping a host for a second), one reading of
        # a device at a time; their verdicts are applied under the lock, unreachable first.
        async with self._device_locks.setdefault(reading.device_id, asyncio.Lock()):
            verdicts = [(r, s, await self._run_rule(plan, r, s, reading)) for r, s in plan.rules]
            async with self._lock:
                self._require_open()
                before = self._down_state(reading.device_id)
                for rule, settings, obs in verdicts:
                    if obs is not None:
                        self._apply(plan.device, rule.name, settings, obs, reading.at)
                changed = self._down_state(reading.device_id) != before
                await self._settle(reading.at, device_id=reading.device_id, down_changed=changed)

    async def tick(self) -> None:
        async with self._lock:
            store = self._require_open()
            now = self._clock.now()
            self._book = MaintenanceBook(await self._io(store.maintenance, now), self._gateway_id)
            for key, rec in self._records.items():
                settings = self._settings.get(key)
                if settings is None or self._muted(key):
                    continue
                change = rec.life.check(now, settings, self._gap[key[0]])
                if change is not Change.NONE:
                    self._changed(key, rec, change, now)
                elif rec.trivial:
                    self._dirty.add(key)  # old transitions pruned: forget it
            await self._settle(now)
            if self._clock.monotonic() - self._last_flush >= self._flush_interval_s:
                await self._flush()

    async def set_maintenance(
        self,
        target_kind: TargetKind,
        target: str,
        until: datetime,
        by: str,
        note: str = "",
    ) -> None:
        """Put a device (the gateway id: the whole site) or a circuit in maintenance until `until`.

        An `until` in the past ends the window. Raises ValueError for an unknown target.
        """
        check_target(self.config, target_kind, target)
        if until.tzinfo is None:
            raise ValueError("until needs a timezone")
        async with self._lock:
            store = self._require_open()
            now = self._clock.now()
            window = MaintenanceWindow(
                target_kind=target_kind, target=target, until=until, by=by, note=note, set_at=now
            )
            await self._io(store.put_maintenance, window)
            self._book.put(window)
            log.info("maintenance_set", target_kind=target_kind, target=target, until=str(until))
            await self._settle(now)

    # -- outputs for the status page -------------------------------------------------------

    def maintenance_windows(self) -> list[MaintenanceWindow]:
        now = self._clock.now()
        return [w for w in self._book.windows() if w.until > now]

    def recent_events(self, limit: int) -> list[FaultDraft]:
        """The latest events produced (newest last), including ones not yet handed on."""
        return list(self._recent)[-limit:] if limit > 0 else []

    def active_faults(self) -> list[ActiveFault]:
        now = self._clock.now()
        out: list[ActiveFault] = []
        for group in self._groups.values():
            if not group.members:
                continue
            circuit = group.fault_type == CIRCUIT_OUTAGE
            cfg = self._circuit_cfg if circuit else self._gateway_cfg
            quiet = self._book.circuit(group.circuit, now) if circuit else self._book.gateway(now)
            status: Status = "raised" if group.reported else "maintenance" if quiet else "held"
            out.append(
                ActiveFault(
                    group.device_id,
                    group.fault_type,
                    status,
                    cfg.severity,
                    group.first_seen,
                    f"{len(group.members)} perangkat",
                    members=tuple(group.members),
                )
            )
        for rec in self._records.values():
            if rec.life.phase == "ok":
                continue
            out.append(
                ActiveFault(
                    rec.device_id,
                    rec.fault_type,
                    self._status(rec, now),
                    rec.severity,
                    rec.life.bad_since,
                    rec.summary,
                    rec.life.flapping,
                    rec.absorbed_by,
                )
            )
        return sorted(out, key=lambda f: (f.device_id, f.fault_type))

    def _status(self, rec: FaultRecord, now: datetime) -> Status:
        if rec.life.phase == "pending":
            return "pending"
        if rec.reported:
            return "raised"
        if rec.absorbed_by is not None:
            return "absorbed"
        if self._in_maintenance(rec.device_id, now):
            return "maintenance"
        return "muted" if self._muted((rec.device_id, rec.fault_type)) else "held"

    # -- observing -------------------------------------------------------------------------

    async def _run_rule(
        self, plan: DeviceRules, rule: Rule, settings: RuleSettings, reading: Reading
    ) -> Observation | None:
        key = (plan.device.id, rule.name)
        memory = self._memory.get(key)
        if memory is None:  # kept only once the rule stores something: most rules never do
            memory = {}
        ctx = RuleContext(plan.device, plan.profile, reading.at, memory)
        try:
            return await rule.observe(reading, ctx, settings)
        except Exception:  # one rule's bug must not silence the device's other rules
            log.exception("fault_rule_failed", rule=rule.name, device=plan.device.id)
            return None
        finally:
            if memory and key not in self._memory:
                self._memory[key] = memory

    def _apply(
        self, device: Device, name: str, settings: RuleSettings, obs: Observation, at: datetime
    ) -> None:
        key = (device.id, name)
        if self._muted(key):
            return  # the device is (perhaps) unreachable: its other verdicts are ignored
        rec = self._records.get(key)
        if rec is None:
            if not obs.bad:
                return
            rec = FaultRecord(device_id=device.id, fault_type=name, device_kind=device.kind)
            self._records[key] = rec
        change = rec.life.observe(obs.bad, at, settings, self._gap[device.id])
        if obs.bad:
            rec.severity = obs.severity or settings.severity
            rec.evidence = dict(obs.evidence)
            rec.summary = obs.summary or rec.summary
        self._changed(key, rec, change, at)

    def _changed(self, key: Key, rec: FaultRecord, change: Change, at: datetime) -> None:
        (self._touched if change is Change.NONE else self._dirty).add(key)
        if change is Change.ACTIVATED:
            hold = self._hold_s(key)
            rec.hold_until = at + timedelta(seconds=hold) if hold else None
            if not rec.reported and self._in_maintenance(rec.device_id, at):
                self._note(
                    record_raised(self._subject(rec), rec, at, self._synced()), "maintenance"
                )
        elif change is Change.CLEARED:
            rec.hold_until = None

    def _muted(self, key: Key) -> bool:
        """Another fault of a device whose unreachable fault is pending or active."""
        if key[1] == UNREACHABLE:
            return False
        unreachable = self._records.get((key[0], UNREACHABLE))
        return unreachable is not None and unreachable.life.phase != "ok"

    def _in_maintenance(self, device_id: str, now: datetime) -> bool:
        plan = self._plans.get(device_id)
        return plan is not None and self._book.device(plan.device, now)

    def _hold_s(self, key: Key) -> float:
        """How long an active fault waits for its correlation before it is raised alone."""
        device_id, ftype = key
        plan = self._plans.get(device_id)
        if plan is None:
            return 0.0
        hold = 0.0
        gw = self._gateway_cfg
        if ftype == UNREACHABLE and gw.enabled and self._gateway_eligible() >= gw.min_devices:
            hold = gw.window_s
        c, lamp = self._circuit_cfg, plan.device
        if (
            c.enabled
            and ftype in DOWN_TYPES
            and lamp.circuit is not None
            and len(self._circuits.get(lamp.circuit, ())) >= c.min_lamps
        ):
            hold = max(hold, c.window_s)
        return hold

    def _gateway_eligible(self) -> int:
        return self._unreachable_eligible

    # -- settling: correlation, then reporting ---------------------------------------------

    async def _settle(
        self,
        now: datetime,
        drafts: list[FaultDraft] | None = None,
        device_id: str | None = None,
        down_changed: bool = True,
    ) -> None:
        """device_id: settling after a reading of this device (only its faults changed);
        down_changed: whether that changed its down faults (what correlation looks at)."""
        correlated = self._correlate(now, device_id, down_changed)
        drafts = [*(drafts or []), *correlated, *self._reconcile(now)]
        if drafts or self._notes:
            await self._journal(drafts)
        await self._drain()

    def _down_state(self, device_id: str) -> tuple[object, ...]:
        """What correlation sees of a device: its down faults' phases and start times."""
        out: list[object] = []
        for ftype in DOWN_TYPES:
            rec = self._records.get((device_id, ftype))
            if rec is not None:
                out += [ftype, rec.life.phase, rec.life.bad_since]
        return tuple(out)

    def _correlate(
        self, now: datetime, device_id: str | None = None, down_changed: bool = True
    ) -> list[FaultDraft]:
        if (
            device_id is not None
            and not down_changed
            and not self._book.windows()
            and not any(g.members and not g.reported for g in self._groups.values())
        ):
            # A reading that changed no down fault changes no group, unless one is still forming
            # (its settling depends on the time); maintenance windows are checked at the tick.
            return []
        drafts = self._correlate_gateway(now)
        gw = self._groups.get((self._gateway_id, GATEWAY_ISOLATED))
        explained = set(gw.members) if gw is not None else set()
        # Settling runs on every reading, so it looks only at circuits that can change: those
        # with a group or with a lamp whose down fault is pending or active (any other would
        # evaluate to no group).
        names = {g.circuit for g in self._groups.values() if g.circuit is not None}
        for (lamp_id, ftype), rec in self._records.items():
            if ftype in DOWN_TYPES and rec.life.phase != "ok" and lamp_id in self._circuit_of:
                names.add(self._circuit_of[lamp_id])
        # while a device's unreachable fault is pending, the gateway fault may yet explain lamps
        gw_forming = self._gateway_cfg.enabled and any(
            key[1] == UNREACHABLE and rec.life.phase == "pending"
            for key, rec in self._records.items()
        )
        gate = (frozenset(explained), gw_forming)
        if device_id is not None and gate == self._gate and not self._book.windows():
            # After a reading only that lamp's circuit can change, and a group still forming
            # (its settling depends on the time); the rest waits for the tick, as before.
            own = self._circuit_of.get(device_id)
            names = {
                n
                for n in names
                if n == own
                or any(
                    g.circuit == n and g.members and not g.reported for g in self._groups.values()
                )
            }
        self._gate = gate
        for name in sorted(names):
            drafts += self._correlate_circuit(name, explained, gw_forming, now)
        self._absorb(now)
        return drafts

    def _correlate_gateway(self, now: datetime) -> list[FaultDraft]:
        drafts: list[FaultDraft] = []
        key = (self._gateway_id, GATEWAY_ISOLATED)
        for old, group in list(self._groups.items()):  # the gateway was renamed
            if group.fault_type == GATEWAY_ISOLATED and old != key:
                drafts += self._set_group(group, [], None, now, 0, [], False, False)
        group = self._groups.get(key) or GroupFault(device_id=key[0], fault_type=key[1])
        cfg = self._gateway_cfg
        down: dict[str, datetime] = {}
        pending: set[str] = set()
        eligible = 0
        candidates: Iterable[str] = self._plans
        if not self._book.windows():  # nothing in maintenance: only recorded faults matter
            eligible = self._unreachable_eligible if cfg.enabled else 0
            candidates = [d for d, ftype in self._records if ftype == UNREACHABLE]
        for device_id in candidates:
            if not cfg.enabled or (device_id, UNREACHABLE) not in self._settings:
                continue
            if candidates is self._plans:
                if self._book.device(self._plans[device_id].device, now) and (
                    device_id not in group.members
                ):
                    continue  # in maintenance: starts or joins nothing
                eligible += 1
            rec = self._records.get((device_id, UNREACHABLE))
            if rec is not None and rec.life.phase == "active" and rec.life.bad_since:
                down[device_id] = rec.life.bad_since
            elif rec is not None and rec.life.phase == "pending":
                pending.add(device_id)
        members, first = evaluate(
            down, eligible, group, cfg.min_devices, cfg.min_share, cfg.window_s
        )
        waiting = bool(pending - set(members))
        circuits = {self._plans[d].device.circuit for d in members}
        detail: dict[str, EvidenceValue] = {"circuits": list(sorted(c for c in circuits if c))}
        quiet = self._book.gateway(now)
        return drafts + self._set_group(
            group, members, first, now, eligible, sorted(down), waiting, quiet, detail
        )

    def _correlate_circuit(
        self, name: str, explained: set[str], gw_forming: bool, now: datetime
    ) -> list[FaultDraft]:
        key = (circuit_id(name), CIRCUIT_OUTAGE)
        group = self._groups.get(key) or GroupFault(
            device_id=key[0], fault_type=CIRCUIT_OUTAGE, circuit=name
        )
        cfg = self._circuit_cfg
        lamps = self._circuits.get(name, []) if cfg.enabled else []
        down: dict[str, datetime] = {}
        pending = False
        unanswered: set[str] = set()  # lamps down (also) because they do not answer
        eligible = 0
        for lamp in lamps:
            if self._book.device(lamp, now) and lamp.id not in group.members:
                continue
            eligible += 1
            since: list[datetime] = []
            for ftype in DOWN_TYPES:
                rec = self._records.get((lamp.id, ftype))
                if rec is None or (ftype == UNREACHABLE and lamp.id in explained):
                    continue
                if rec.life.phase == "active" and rec.life.bad_since is not None:
                    since.append(rec.life.bad_since)
                    if ftype == UNREACHABLE:
                        unanswered.add(lamp.id)
                elif rec.life.phase == "pending":
                    pending = pending or lamp.id not in group.members
            if since:
                down[lamp.id] = min(since)
        members, first = evaluate(down, eligible, group, cfg.min_lamps, cfg.min_share, cfg.window_s)
        waiting = bool(members) and (pending or (gw_forming and bool(unanswered & set(members))))
        detail: dict[str, EvidenceValue] = {"unreachable": list(sorted(unanswered & set(members)))}
        quiet = self._book.circuit(name, now)
        return self._set_group(
            group, members, first, now, len(lamps), sorted(down), waiting, quiet, detail
        )

    def _set_group(
        self,
        group: GroupFault,
        members: list[str],
        first: datetime | None,
        now: datetime,
        total: int,
        down: list[str],
        waiting: bool,
        quiet: bool,
        detail: dict[str, EvidenceValue] | None = None,
    ) -> list[FaultDraft]:
        """Apply a group's new members and report what changed.

        waiting: eligible members still pending: not raised yet (at most window_s), so the
        members arrive in one event. quiet: its target is in maintenance: neither raised nor
        grown. A clear is always reported.
        """
        key = (group.device_id, group.fault_type)
        if members != group.members:
            self._dirty.add(key)
            if not group.members:
                group.formed_at = now
        group.members, group.first_seen = members, first
        if not members:
            group.formed_at = None
        cfg = self._circuit_cfg if group.fault_type == CIRCUIT_OUTAGE else self._gateway_cfg
        settled = not waiting or (
            group.formed_at is not None and now >= group.formed_at + timedelta(seconds=cfg.window_s)
        )
        severity = cfg.severity
        drafts: list[FaultDraft] = []

        def event(state: Literal["raised", "updated", "cleared"]) -> None:
            still = [d for d in group.reported_members if d in down]
            subject = self._group_subject(group)  # here: most settles report nothing
            drafts.append(
                group_draft(
                    subject, group, state, severity, now, self._synced(), total, still, detail
                )
            )
            self._dirty.add(key)

        if group.reported and not members:
            event("cleared")
            group.reported, group.reported_members, group.reported_first_seen = False, [], None
        elif group.reported and not quiet and set(members) - set(group.reported_members):
            event("updated")
            group.reported_members = list(members)
        elif not group.reported and members and settled and not quiet:
            event("raised")
            group.reported, group.reported_members = True, list(members)
            group.reported_first_seen = first
        if group.trivial:
            self._groups.pop(key, None)
        else:
            self._groups[key] = group
        return drafts

    def _group_subject(self, group: GroupFault) -> Subject:
        if group.fault_type == GATEWAY_ISOLATED:
            return self._gateway_subject
        lamps = self._circuits.get(group.circuit or "", [])
        first = next((d for d in lamps if d.id in group.members), lamps[0] if lamps else None)
        loc = location(first.location) if first else self._gateway_subject.location
        return Subject(group.device_id, "circuit", loc, group.circuit)

    def _absorb(self, now: datetime) -> None:
        """Mark the faults a group stands for; a fault released from one is held again."""
        by: dict[Key, str] = {}
        for group in sorted(self._groups.values(), key=lambda g: g.fault_type != GATEWAY_ISOLATED):
            types = (UNREACHABLE,) if group.fault_type == GATEWAY_ISOLATED else DOWN_TYPES
            for device_id in group.members:
                for ftype in types:
                    by.setdefault((device_id, ftype), group.device_id)
        for key, rec in self._records.items():
            new = by.get(key)
            if new == rec.absorbed_by:
                continue
            if new is None:  # its group ended while it is still down: its own turn, after a wait
                hold = self._hold_s(key)
                rec.hold_until = now + timedelta(seconds=hold) if hold else None
            rec.absorbed_by = new
            self._dirty.add(key)

    def _reconcile(self, now: datetime) -> list[FaultDraft]:
        """Compare each fault's truth with what was reported; the differences are events."""
        drafts: list[FaultDraft] = []
        # Only a fault that is active or was reported can produce an event: skip the rest
        # cheaply (this runs on every reading, over every device's faults). The clock flag is
        # asked for once, and only when there is something to report.
        due = [k for k, r in self._records.items() if r.reported or r.life.phase == "active"]
        synced: list[bool] = []

        def clock_ok() -> bool:
            if not synced:
                synced.append(self._synced())
            return synced[0]

        for key in sorted(due):
            rec = self._records[key]
            if key not in self._settings:
                continue  # retired at open
            active = rec.life.phase == "active"
            if _unchanged(rec, now):
                continue
            quiet = self._in_maintenance(rec.device_id, now) or self._muted(key)
            subject = self._subject(rec)
            if rec.reported and not active:
                drafts.append(record_cleared(subject, rec, now, clock_ok()))
                rec.mark_reported(False)
            elif rec.reported and rec.absorbed_by is not None:
                group = self._group_named(rec.absorbed_by)
                if not group.reported:
                    continue  # cleared into it once it is raised, not before
                drafts.append(record_cleared(subject, rec, now, clock_ok(), absorbed_by=group))
                rec.mark_reported(False)
            elif rec.reported and not quiet:
                severity_changed = rec.severity != rec.reported_severity
                flapping = rec.life.flapping and not rec.reported_flapping
                if severity_changed or flapping:
                    previous = rec.reported_severity if severity_changed else None
                    drafts.append(record_updated(subject, rec, now, clock_ok(), previous, flapping))
                    rec.reported_severity = rec.severity
                    rec.reported_flapping = rec.reported_flapping or flapping
                else:
                    continue
            elif (
                not rec.reported
                and active
                and rec.absorbed_by is None
                and not quiet
                and (rec.hold_until is None or now >= rec.hold_until)
            ):
                drafts.append(record_raised(subject, rec, now, clock_ok()))
                rec.mark_reported(True)
            else:
                continue
            self._dirty.add(key)
        return drafts

    def _group_named(self, device_id: str) -> GroupFault:
        for group in self._groups.values():
            if group.device_id == device_id:
                return group
        raise LookupError(device_id)  # _absorb only names groups that exist

    def _subject(self, rec: FaultRecord) -> Subject:
        plan = self._plans.get(rec.device_id)  # made when needed: events are rare
        return Subject.of(plan.device) if plan else Subject(rec.device_id, rec.device_kind)

    def _retire_orphans(self, now: datetime) -> list[FaultDraft]:
        """Faults of devices no longer in the inventory, or of rules that no longer apply."""
        drafts: list[FaultDraft] = []
        for key, rec in list(self._records.items()):
            if key in self._settings:
                continue
            if rec.reported:
                reason = "device_removed" if key[0] not in self._plans else "rule_disabled"
                drafts.append(
                    record_cleared(self._subject(rec), rec, now, self._synced(), None, reason)
                )
            del self._records[key]
            self._dirty.add(key)
        return drafts

    # -- journal and persistence -----------------------------------------------------------

    def _note(self, draft: FaultDraft, why: str) -> None:
        """Recorded in the history, not emitted (e.g. raised during maintenance)."""
        self._notes.append(_history(draft, emitted=False, note=why))

    async def _journal(self, drafts: list[FaultDraft]) -> None:
        """Write the state behind these events with them, then queue them for emitting.

        Rule memory goes with them only for the devices the events are about: all of it
        changes at every poll, and writing it with every event would wear the SD card."""
        batch = self._batch(self._memory_due(), devices={d.device_id for d in drafts})
        notes = len(batch.history)
        batch.history += [_history(d, emitted=True, note="") for d in drafts]
        try:
            ids = await self._io(self._require_open().write, batch)
            self._written(batch)
        except Exception:  # the disk failed: better sent than lost
            log.exception("fault_store_write_failed")
            self._unwritten(batch, notes)
            ids = [-1] * len(batch.history)
        self._last_flush = self._clock.monotonic()
        self._unsent.extend(zip(ids[notes:], drafts, strict=True))
        self._recent.extend(drafts)
        for d in drafts:
            log.info(
                "fault_event",
                device=d.device_id,
                fault_type=d.fault_type,
                state=d.state,
                severity=d.severity,
            )

    async def _drain(self) -> None:
        """Emit journalled events in order; on failure stop, and try again on the next tick."""
        while self._unsent:
            hid, draft = self._unsent[0]
            try:
                await self._emit(draft)
            except Exception as exc:
                if not self._emit_failing:
                    log.error("fault_emit_failed", error=str(exc), waiting=len(self._unsent))
                    self._emit_failing = True
                return
            self._unsent.popleft()
            if hid >= 0:
                self._sent.append(hid)
            if self._emit_failing:
                log.info("fault_emit_recovered")
                self._emit_failing = False

    def _batch(self, memory: bool = False, devices: Collection[str] = ()) -> WriteBatch:
        """What to write: changed records, history, and changed rule memory: all of it (and the
        records whose counts only moved) if `memory`, else that of `devices`. Rule memory does
        not count as written before _written()."""
        batch = WriteBatch(history=self._notes, sent=self._sent)
        self._notes, self._sent = [], []
        if memory:  # records whose counts moved (after a power cut: counted again)
            self._dirty |= self._touched
            self._touched.clear()
        for key in self._dirty:
            rec = self._records.get(key)
            group = self._groups.get(key)
            if rec is not None and rec.trivial:
                del self._records[key]
                rec = None
            item = rec or group
            batch.records[key] = item.model_dump_json() if item is not None else None
        self._dirty.clear()
        if memory:
            self._last_memory_flush = self._clock.monotonic()
        for key, mem in list(self._memory.items()):
            if not memory and key[0] not in devices:
                continue
            try:
                text = json.dumps(mem, sort_keys=True) if mem else None
            except (TypeError, ValueError):
                log.error("rule_memory_not_json", device=key[0], rule=key[1])
                continue
            if text != self._saved_memory.get(key):
                batch.memory[key] = text
        return batch

    def _memory_due(self) -> bool:
        return self._clock.monotonic() - self._last_memory_flush >= MEMORY_FLUSH_S

    def _written(self, batch: WriteBatch) -> None:
        for key, text in batch.memory.items():
            if text is None:
                self._saved_memory.pop(key, None)
            else:
                self._saved_memory[key] = text

    def _unwritten(self, batch: WriteBatch, notes: int | None = None) -> None:
        """A failed write: everything in it is written again with the next batch (the first
        `notes` history rows are notes; the rest, events, are emitted anyway)."""
        self._dirty |= set(batch.records)
        self._notes = batch.history[:notes] + self._notes
        self._sent = batch.sent + self._sent
        if batch.memory:
            self._last_memory_flush = -MEMORY_FLUSH_S  # all rule memory with the next flush

    async def _flush(self, memory: bool | None = None) -> None:
        """Write what changed; rule memory (last uptime, counters: it changes at every poll)
        only every MEMORY_FLUSH_S, for the devices of new events, and at close, to spare the
        SD card."""
        batch = self._batch(self._memory_due() if memory is None else memory)
        self._last_flush = self._clock.monotonic()
        if batch:
            try:
                await self._io(self._require_open().write, batch)
                self._written(batch)
            except Exception:
                log.exception("fault_store_write_failed")
                self._unwritten(batch)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        if self._exec is None:
            raise RuntimeError("the fault engine is not open")
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)

    def _require_open(self) -> FaultStore:
        if self._store is None:
            raise RuntimeError("the fault engine is not open")
        return self._store


def _unchanged(rec: FaultRecord, now: datetime) -> bool:
    """An active fault that reconciling cannot report on, in maintenance or not (the common
    case, told without the maintenance lookups): raised and unchanged, held, or absorbed."""
    if rec.life.phase != "active":
        return False
    if not rec.reported:
        return rec.absorbed_by is not None or (rec.hold_until is not None and now < rec.hold_until)
    return (
        rec.absorbed_by is None
        and rec.severity == rec.reported_severity
        and (rec.reported_flapping or not rec.life.flapping)
    )


def _gap_s(plan: DeviceRules) -> float:
    """Observations further apart than this do not make one streak."""
    period = max(plan.device.interval_s or 0.0, plan.profile.expected_period_s or 0.0)
    return max(3 * period, MIN_GAP_S)


def _history(draft: FaultDraft, emitted: bool, note: str) -> HistoryRow:
    return HistoryRow(
        at=draft.observed_at.isoformat(),
        device_id=draft.device_id,
        fault_type=draft.fault_type,
        state=draft.state,
        emitted=emitted,
        note=note,
        draft=draft.model_dump_json(),
    )


def _journal_draft(history_id: int, text: str) -> FaultDraft | None:
    try:
        return FaultDraft.model_validate_json(text)
    except ValidationError:
        log.error("fault_journal_row_unreadable", history_id=history_id)
        return None
