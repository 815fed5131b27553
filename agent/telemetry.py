"""Telemetry by exception: a ReadingSink that sends a metric only when it changed or is due.

Per device and metric it keeps the last value sent and when. A metric is sent when
- it changed beyond its deadband: numbers (gauges) by more than max(deadband_abs,
  deadband_pct % of the last value sent); booleans and text on any change;
  counters and timeticks when they went down (reset, wrap, reboot) or, if the metric has its
  own `deadband_abs`, grew by more than that;
- or its heartbeat ran out: `heartbeat_s` for numbers and counters, `state_heartbeat_s` for
  booleans and text (both overridable per metric; a few noisy metrics of the shipped profiles
  have built-in deadbands: BUILTIN_METRICS).
Table cells are sent only for the columns listed in `[telemetry] tables`, named
`TABLE.ROW.COLUMN`. `reachable` (bool) tells whether the device answered. A device's tags
(DeviceMeta) ride along with its first sample after start and every `meta_interval_s`.
Every `flush_interval_s` the samples collected are handed, as one TelemetryDraft, to each output
(the uplink, the InfluxDB writer), if they make at least `min_batch_bytes` or the oldest has
waited `max_wait_s`: a gateway with one street light sends once an hour, not a few bytes behind
300 B of overhead every 5 minutes. Nothing is persisted: after a restart everything is sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple, Protocol

import structlog
from pydantic import ValidationError

from agent.clock import Clock
from collectors.reading import Reading, Value
from firmware_config.loader import LoadedConfig
from firmware_config.models import Device
from firmware_config.profiles import Profile
from firmware_config.telemetry_config import BUILTIN_METRICS, TelemetryConfig
from uplink.contract import DeviceMeta, DeviceSamples, TelemetryDraft

log = structlog.get_logger(__name__)

REACHABLE = "reachable"
HEARTBEAT_SLACK_S = 1.0  # a poll a little early still counts as due

MetricClass = Literal["gauge", "counter", "state", "text"]
Output = Callable[[TelemetryDraft], Awaitable[None]]


@dataclass(frozen=True)
class Policy:
    cls: MetricClass
    send: bool
    heartbeat_s: float
    deadband_abs: float
    deadband_pct: float


class _Pending(NamedTuple):
    """A sample waiting for the next flush (up to flush_interval_s: several per device), kept
    lighter than its DeviceSamples (a pydantic model), which is made at the flush."""

    device_id: str
    at: datetime
    values: dict[str, Value]
    meta: DeviceMeta | None

    def sample(self) -> DeviceSamples:
        return DeviceSamples(
            device_id=self.device_id, at=self.at, values=self.values, meta=self.meta
        )


@dataclass(slots=True)
class _Device:
    """What telemetry last sent of a device's values (and when).

    The profile's scalar values sit in two flat lists, at their position in `index` (one
    dict shared by the devices of a profile): about 0.5 KB a device instead of 2.5 KB for a
    dict of small records. Other names (table cells, which rows a device has) go in `other`.
    """

    profile: Profile
    meta: DeviceMeta
    columns: dict[str, list[str]]  # table -> columns sent (those the profile has)
    index: dict[str, int]  # value name -> position in sent_values and sent_at
    sent_values: list[Value] = field(init=False)
    sent_at: list[datetime | None] = field(init=False)  # None: never sent
    other: dict[str, tuple[Value, datetime]] = field(default_factory=dict)
    meta_at: datetime | None = None

    def __post_init__(self) -> None:
        self.sent_values = [None] * len(self.index)
        self.sent_at = [None] * len(self.index)

    def last_sent(self, name: str) -> tuple[Value, datetime] | None:
        i = self.index.get(name)
        if i is None:
            return self.other.get(name)
        at = self.sent_at[i]
        return None if at is None else (self.sent_values[i], at)

    def record_sent(self, name: str, value: Value, at: datetime) -> None:
        i = self.index.get(name)
        if i is None:
            self.other[name] = (value, at)
        else:
            self.sent_values[i], self.sent_at[i] = value, at


@dataclass
class TelemetryStats:
    readings: int = 0
    values_seen: int = 0
    values_sent: int = 0
    samples: int = 0
    batches: int = 0
    output_failures: int = 0


def device_meta(device: Device, profile: Profile) -> DeviceMeta:
    return DeviceMeta(
        kind=device.kind,
        profile=profile.name,
        circuit=device.circuit,
        kelurahan=device.location.kelurahan,
        kecamatan=device.location.kecamatan,
    )


def device_metas(devices: Iterable[tuple[Device, Profile]]) -> dict[str, DeviceMeta]:
    """Each device's meta; equal ones (frozen models) are one object: the lamps of a circuit
    share theirs, a gateway holds about one per circuit instead of one per lamp."""
    shared: dict[DeviceMeta, DeviceMeta] = {}
    out = {}
    for device, profile in devices:
        meta = device_meta(device, profile)
        out[device.id] = shared.setdefault(meta, meta)
    return out


def _class_of(profile: Profile, table: str, name: str, value: Value) -> MetricClass:
    specs = profile.fields if profile.protocol == "mqtt" else profile.metrics
    found = next((m.type for m in specs if m.name == name), None) if not table else None
    if table:
        tab = next((t for t in profile.tables if t.name == table), None)
        found = next((c.type for c in tab.columns if c.name == name), None) if tab else None
    if found in ("counter", "timeticks"):
        return "counter"
    if found == "bool" or (found is None and isinstance(value, bool)):
        return "state"
    if found == "str" or (found is None and not isinstance(value, int | float)):
        return "text"
    return "gauge"


class Telemetry:
    """The report-by-exception filter. `on_reading` is the agent's sink; `run` flushes."""

    def __init__(
        self,
        config: TelemetryConfig,
        devices: Iterable[tuple[Device, Profile]],
        clock: Clock,
        outputs: Sequence[Output] = (),
    ) -> None:
        self.config = config
        self.clock = clock
        self.outputs = list(outputs)
        devices = list(devices)
        metas = device_metas(devices)
        shared: dict[str, tuple[dict[str, list[str]], dict[str, int]]] = {}  # by profile
        for _, p in devices:
            if p.name not in shared:
                scalars = [REACHABLE, *(m.name for m in (*p.metrics, *p.fields))]
                shared[p.name] = (
                    self._columns(p),
                    {n: i for i, n in enumerate(dict.fromkeys(scalars))},
                )
        self._devices = {d.id: _Device(p, metas[d.id], *shared[p.name]) for d, p in devices}
        self._policies: dict[tuple[str, str, str], Policy] = {}
        self._pending: list[_Pending] = []
        self._waiting_since: float | None = None  # clock.monotonic() of the oldest pending
        self.stats = TelemetryStats()

    def _columns(self, profile: Profile) -> dict[str, list[str]]:
        out = {}
        for table in profile.tables:
            wanted = self.config.tables.get(table.name, [])
            cols = [c.name for c in table.columns if c.name in wanted]
            if cols:
                out[table.name] = cols
        return out

    # -- deciding ------------------------------------------------------------------------

    def policy(self, profile: Profile, table: str, name: str, value: Value) -> Policy:
        key = (profile.name, table, name)
        found = self._policies.get(key)
        if found is None:
            c = self.config
            cls = _class_of(profile, table, name, value)
            heartbeat = c.state_heartbeat_s if cls in ("state", "text") else c.heartbeat_s
            o = c.metrics.get(name) or BUILTIN_METRICS.get(name)
            if cls == "counter":  # a percentage of a running total means nothing
                abs_db = o.deadband_abs if o and o.deadband_abs is not None else float("inf")
                pct = 0.0
            else:
                abs_db = o.deadband_abs if o and o.deadband_abs is not None else c.deadband_abs
                pct = o.deadband_pct if o and o.deadband_pct is not None else c.deadband_pct
            found = Policy(
                cls=cls,
                send=o.send if o else True,
                heartbeat_s=o.heartbeat_s if o and o.heartbeat_s is not None else heartbeat,
                deadband_abs=abs_db,
                deadband_pct=pct,
            )
            self._policies[key] = found
        return found

    def candidates(self, reading: Reading) -> dict[str, tuple[str, str, Value]]:
        """Every value of a reading that telemetry may send: name -> (table, column, value)."""
        dev = self._devices.get(reading.device_id)
        out: dict[str, tuple[str, str, Value]] = {REACHABLE: ("", REACHABLE, reading.reachable)}
        if dev is None:
            return out
        for name, value in reading.values.items():
            out[name] = ("", name, value)
        for table, columns in dev.columns.items():
            for row, cells in reading.tables.get(table, {}).items():
                for col in columns:
                    if col in cells:
                        out[f"{table}.{row}.{col}"] = (table, col, cells[col])
        return out

    def decide(self, reading: Reading) -> DeviceSamples | None:
        """The sample to send for this reading (None: nothing changed, nothing due)."""
        pending = self._decide(reading)
        return None if pending is None else pending.sample()

    def _decide(self, reading: Reading) -> _Pending | None:
        dev = self._devices.get(reading.device_id)
        if dev is None:
            return None
        self.stats.readings += 1
        at = reading.at
        values: dict[str, Value] = {}
        for name, (table, column, value) in self.candidates(reading).items():
            self.stats.values_seen += 1
            pol = self.policy(dev.profile, table, column, value)
            if not pol.send:
                continue
            last = dev.last_sent(name)
            if last is None or _due(last[1], at, pol.heartbeat_s) or _changed(pol, last[0], value):
                values[name] = value
                dev.record_sent(name, value, at)
        if not values:
            return None
        meta = None
        if dev.meta_at is None or _due(dev.meta_at, at, self.config.meta_interval_s):
            meta, dev.meta_at = dev.meta, at
        self.stats.values_sent += len(values)
        self.stats.samples += 1
        return _Pending(reading.device_id, at, values, meta)

    async def on_reading(self, reading: Reading) -> None:
        pending = self._decide(reading)
        if pending is not None:
            if not self._pending:
                self._waiting_since = self.clock.monotonic()
            self._pending.append(pending)

    # -- flushing ------------------------------------------------------------------------

    def take(self) -> list[TelemetryDraft]:
        """The samples collected since the last call, as batches of at most `max_batch_bytes`
        (one, unless a big gateway's heartbeats come together; none when nothing changed)."""
        return list(self.batches())

    def batches(self) -> Iterator[TelemetryDraft]:
        """As take(), one batch made at a time: a flush never holds all its samples as models."""
        group: list[DeviceSamples] = []
        size = 0
        pending, self._pending, self._waiting_since = self._pending, [], None
        pending.reverse()  # popped oldest first: each one is freed as its sample is made
        while pending:
            try:
                sample = pending.pop().sample()
            except ValidationError:  # lost alone, as it was when samples were made on reading
                log.exception("telemetry_sample_invalid")
                continue
            n = len(sample.model_dump_json(by_alias=True)) + 1
            if group and size + n > self.config.max_batch_bytes:
                self.stats.batches += 1
                yield TelemetryDraft(samples=group)
                group, size = [], 0
            group.append(sample)
            size += n
        if group:
            self.stats.batches += 1
            yield TelemetryDraft(samples=group)

    async def flush(self) -> None:
        for draft in self.batches():
            for output in self.outputs:
                try:
                    await output(draft)
                except Exception:  # one output's trouble must not stop the other
                    self.stats.output_failures += 1
                    log.exception("telemetry_output_failed")

    def worth_sending(self) -> bool:
        """Whether what waits makes min_batch_bytes, or its oldest sample waited max_wait_s."""
        if self._waiting_since is None:
            return False
        waited = self.clock.monotonic() - self._waiting_since
        return worth_a_batch(self._valid_samples(), waited, self.config)

    def _valid_samples(self) -> Iterator[DeviceSamples]:
        """The waiting samples that can be made (a bad one is dropped, and logged, at the flush)."""
        for pending in self._pending:
            try:
                yield pending.sample()
            except ValidationError:
                continue

    async def tick(self) -> None:
        """A flush, if what waits is worth sending (see worth_sending)."""
        if self.worth_sending():
            await self.flush()

    async def run(self) -> None:
        while True:
            await self.clock.sleep(self.config.flush_interval_s)
            await self.tick()


def worth_a_batch(
    samples: Iterable[DeviceSamples], waited_s: float, config: TelemetryConfig
) -> bool:
    """The batching rule: enough bytes (counted only until there are), or the oldest would
    wait longer than max_wait_s by the next flush."""
    if waited_s + config.flush_interval_s > config.max_wait_s:
        return True
    size = 0
    for sample in samples:
        size += len(sample.model_dump_json(by_alias=True)) + 1
        if size >= config.min_batch_bytes:
            return True
    return False


def _due(last: datetime, now: datetime, interval_s: float) -> bool:
    elapsed = (now - last).total_seconds()
    return elapsed < 0 or elapsed + HEARTBEAT_SLACK_S >= interval_s  # < 0: the clock went back


def _changed(pol: Policy, old: Value, value: Value) -> bool:
    if not _number(old) or not _number(value):
        return value != old or type(value) is not type(old)
    assert isinstance(old, int | float) and isinstance(value, int | float)
    if pol.cls == "counter":
        return value < old or value - old > pol.deadband_abs
    band = max(pol.deadband_abs, pol.deadband_pct / 100.0 * abs(old))
    return abs(value - old) > band if band > 0 else value != old


def _number(v: Value) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# -- the gateway's wiring ------------------------------------------------------------------


class TelemetryService:
    """The filter plus, when `[influxdb]` is configured, the direct InfluxDB writer."""

    def __init__(self, telemetry: Telemetry, influx: InfluxWriterLike | None) -> None:
        self.telemetry = telemetry
        self.influx = influx
        self._task: asyncio.Task[None] | None = None

    async def on_reading(self, reading: Reading) -> None:
        await self.telemetry.on_reading(reading)

    async def open(self) -> None:
        if self.influx is not None:
            await self.influx.open()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.telemetry.run())
            if self.influx is not None:
                group.create_task(self.influx.run())

    async def close(self) -> None:
        """Stop, send what was collected (to the uplink's and InfluxDB's queues), close."""
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.telemetry.flush()
        if self.influx is not None:
            await self.influx.close()


class InfluxWriterLike(Protocol):
    async def open(self) -> None: ...

    async def submit(self, draft: TelemetryDraft) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


def telemetry_from_config(
    config: LoadedConfig, clock: Clock, submit_mqtt: Output
) -> TelemetryService | None:
    """The gateway's telemetry as configured (None when disabled or with nowhere to go)."""
    gw = config.gateway
    tc = gw.telemetry
    outputs: list[Output] = []
    if tc.over_mqtt and gw.broker is not None:
        outputs.append(submit_mqtt)
    influx = None
    if gw.influxdb is not None:
        from uplink.influx import InfluxWriter  # only a gateway that writes directly needs it

        devices = [(d, config.profile_of(d)) for d in config.devices]
        influx = InfluxWriter(
            gw.influxdb,  # its token file and ca_file are anchored by the loader
            gw.gateway.id,
            device_metas(devices),
            gw.state_dir,
            clock=clock,
        )
        outputs.append(influx.submit)
    if not tc.enabled or not outputs:
        return None
    telemetry = Telemetry(tc, [(d, config.profile_of(d)) for d in config.devices], clock, outputs)
    return TelemetryService(telemetry, influx)
