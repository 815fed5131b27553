"""The demo's story: what happens in the district, and what the person watching should see.

`Narrator` prints one line per thing that happened, on the demo's clock (WIB): each scripted
step, each fault event the gateway publishes (heard on the broker like central hears it), each
SIARAN report the sandbox receives or changes, red flags. It also keeps them, so a step can wait
for its outcome (`expect_event`, `expect_report`) and the summary can count them.

`play()` is the script:

  1. a lamp burns by day (its relay is stuck; the sun is still up)     -> day_burning
  2. an access point loses its uplink (ifOperStatus of its WAN: down)  -> uplink_down, and
     later, nobody at Diskominfo having answered within the SLA         -> red flag
  3. dusk: the photocells switch the poles on; one lamp stays dark     -> lamp_failure
     (and the day burner is no longer a fault: it is night)           -> day_burning cleared
  4. a circuit's breaker trips: its poles lose power                    -> circuit_outage
  5. a technician puts that circuit in maintenance on the status page and restores the power:
     the controllers restart, which raises nothing (maintenance)        -> circuit_outage cleared
  6. the uplink comes back, the dead lamp is replaced                    -> both cleared
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO

import aiomqtt
import httpx
import structlog

from agent.demo.clock import ScaledClock
from agent.demo.district import (
    DAY_BURNING_AFTER_S,
    ESCALATION_TOPIC,
    GATEWAY_ID,
    POLL_S,
    SLA_H,
    TOPIC_ROOT,
    WEB_USER,
    Circuit,
    District,
    Hotspot,
    Pole,
)
from agent.demo.stack import DemoStack, Parts, cancelling, uplink_oid
from agent.faults.astro import WIB, sun_times
from central.siaran_api import Report
from uplink.contract import FaultEvent, parse_topic

log = structlog.get_logger(__name__)

REPORT_POLL_S = 0.2  # real seconds between looks at the sandbox's reports
STEP_LIMIT_S = 20 * 60.0  # demo seconds a step waits for its outcome before it is called missed
MAX_SUMMARY = 96


def short(agency: str) -> str:
    """'Dinas Perhubungan (Dishub)' -> 'Dishub'."""
    if agency.endswith(")") and "(" in agency:
        return agency[agency.rindex("(") + 1 : -1]
    return agency


def clip(text: str, n: int = MAX_SUMMARY) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass
class Outcome:
    step: str
    ok: bool
    detail: str


@dataclass
class Narrator:
    clock: ScaledClock
    sandbox_url: str
    out: TextIO = field(default_factory=lambda: sys.stdout)
    events: list[FaultEvent] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[str] = field(default_factory=list)
    reports: dict[str, Report] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # --- printing -------------------------------------------------------------------------------
    def stamp(self, at: datetime | None = None) -> str:
        return f"{(at or self.clock.now()).astimezone(WIB):%H:%M}"

    def say(self, text: str = "", stamp: bool = False) -> None:
        prefix = f"{self.stamp()}  " if stamp else ""
        print(prefix + text, file=self.out, flush=True)

    def step(self, number: int, title: str, what: str) -> None:
        self.say()
        self.say(f"{number}. {title}", stamp=True)
        for line in what.splitlines():
            self.say(f"       {line}")

    def note(self, text: str) -> None:
        self.say(f"   ·   {text}", stamp=True)

    def outcome(self, step: str, ok: bool, detail: str) -> None:
        self.outcomes.append(Outcome(step, ok, detail))
        if not ok:
            self.say(f"   !!  {detail}", stamp=True)

    # --- watching -------------------------------------------------------------------------------
    async def tap(self, host: str, port: int) -> None:
        """Hear the gateway's branch and the escalations on the broker, as central does."""
        while True:
            try:
                async with aiomqtt.Client(host, port, identifier="demo-narrator") as client:
                    await client.subscribe(
                        [
                            (f"{TOPIC_ROOT}/+/fault", 1),
                            (f"{TOPIC_ROOT}/+/action", 1),
                            (ESCALATION_TOPIC, 1),
                        ]
                    )
                    async for message in client.messages:
                        raw = message.payload
                        if isinstance(raw, bytes | bytearray):
                            self._heard(message.topic.value, bytes(raw))
            except aiomqtt.MqttError as exc:
                if cancelling():  # aiomqtt may turn a cancellation into an MqttError
                    raise asyncio.CancelledError from exc
                log.warning("demo_tap_reconnecting", error=str(exc))
                await asyncio.sleep(0.5)

    def _heard(self, topic: str, payload: bytes) -> None:
        if topic == ESCALATION_TOPIC:
            self.escalations.append(payload.decode(errors="replace"))
            return
        parsed = parse_topic(TOPIC_ROOT, topic)
        if parsed is None:
            return
        if parsed.channel == "action":
            import json

            with contextlib.suppress(ValueError):
                self.actions.append(json.loads(payload))
            return
        try:
            event = FaultEvent.model_validate_json(payload)
        except ValueError:
            return
        self.events.append(event)
        self._changed.set()
        if event.state == "cleared":
            absorbed = event.evidence.get("absorbed_by")
            why = f"absorbed into {absorbed}'s report" if absorbed else "the condition is gone"
            if event.evidence.get("reason"):
                why = str(event.evidence["reason"])
            self.say(
                f"   gateway  cleared {event.fault_type} on {event.device_id}: {why}", stamp=True
            )
            return
        self.say(
            f"   gateway  {event.state.upper()} {event.fault_type} on {event.device_id} "
            f"({event.severity})",
            stamp=True,
        )
        self.say(f"            {clip(event.summary, 110)}")

    async def watch_reports(self, parts: Parts) -> None:
        """Follow the sandbox's reports (its own store: what the agency's page shows)."""
        store = parts.sandbox.sandbox.store
        while True:
            for report in reversed(await store.list(limit=1000)):
                self._report_seen(report)
            await asyncio.sleep(REPORT_POLL_S)

    def _report_seen(self, r: Report) -> None:
        old = self.reports.get(r.id)
        self.reports[r.id] = r
        if old is None:
            self._changed.set()
            self.say(f"   SIARAN   report {r.id} filed: {clip(r.title, 90)}", stamp=True)
            self.say(
                f"            for {short(r.agency)} / {r.unit}: {self.sandbox_url}/reports/{r.id}"
            )
            return
        if old.status != r.status:
            self._changed.set()
            self.say(f"   SIARAN   report {r.id}: {old.status} -> {r.status}", stamp=True)
        if r.red_flag and not old.red_flag:
            self._changed.set()
            reason = clip(r.red_flag_reason or "", 110)
            self.say(f"   SIARAN   report {r.id} RED FLAG: {reason}", stamp=True)

    # --- waiting for outcomes ---------------------------------------------------------------------
    async def _until(self, found: Callable[[], Any], limit_s: float) -> Any:
        """`found()` once it is truthy, or None after `limit_s` demo seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self.clock.real_seconds(limit_s), 5.0)
        while True:
            value = found()
            if value:
                return value
            left = deadline - loop.time()
            if left <= 0:
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def expect_event(
        self,
        step: str,
        state: str,
        fault_types: tuple[str, ...],
        match: Callable[[FaultEvent], bool],
        limit_s: float = STEP_LIMIT_S,
    ) -> FaultEvent | None:
        def found() -> FaultEvent | None:
            return next(
                (
                    e
                    for e in self.events
                    if e.state == state and e.fault_type in fault_types and match(e)
                ),
                None,
            )

        event: FaultEvent | None = await self._until(found, limit_s)
        if event is None:
            self.outcome(step, False, f"no {state} {'/'.join(fault_types)} event came")
        return event

    async def expect_report(
        self,
        step: str,
        event: FaultEvent | None,
        ok: Callable[[Report], bool],
        what: str,
        limit_s: float = STEP_LIMIT_S,
    ) -> Report | None:
        if event is None:
            return None
        ref = _ref(event)

        def found() -> Report | None:
            return next((r for r in self.reports.values() if r.external_ref == ref and ok(r)), None)

        report: Report | None = await self._until(found, limit_s)
        if report is None:
            self.outcome(step, False, f"the sandbox shows no report {what} for {ref}")
        else:
            self.outcome(step, True, f"{event.fault_type} {event.device_id} -> {report.id} {what}")
        return report

    def raised_since(self, count: int, devices: set[str]) -> list[FaultEvent]:
        return [e for e in self.events[count:] if e.state == "raised" and e.device_id in devices]


# --- the technician ---------------------------------------------------------------------------
class Technician:
    """A technician on the gateway's status page (its JSON API, as the page's forms do)."""

    def __init__(self, base_url: str, password: str) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=10.0)
        self._password = password
        self._csrf = ""

    async def __aenter__(self) -> Technician:
        r = await self._client.post(
            "/api/v1/session", json={"user": WEB_USER, "password": self._password}
        )
        r.raise_for_status()
        self._csrf = str(r.json()["csrf_token"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def post(self, path: str, body: dict[str, Any]) -> str:
        r = await self._client.post(path, json=body, headers={"X-CSRF-Token": self._csrf})
        r.raise_for_status()
        return str(r.json().get("message", ""))


# --- the script -------------------------------------------------------------------------------
@dataclass
class Cast:
    """Who plays what in the script, chosen from the district."""

    burner: Pole
    dead: Pole
    tripped: Circuit
    ap: Hotspot | None

    @classmethod
    def of(cls, district: District) -> Cast:
        first = district.circuits[0]
        snmp = [p for p in first.poles if not p.mqtt]
        burner, dead = snmp[0], snmp[min(2, len(snmp) - 1)]
        ap = next((h for h in district.hotspots if h.recording.uplink_if is not None), None)
        return cls(burner, dead, district.circuits[-1], ap)


def sunset_of(clock_start: datetime, lat: float, lon: float) -> datetime:
    return sun_times(lat, lon, clock_start.astimezone(WIB).date())[1]


async def wait_until(clock: ScaledClock, at: datetime) -> None:
    await clock.sleep((at - clock.now()).total_seconds())


async def until_all_read(parts: Parts, n: Narrator, expected: int, limit_s: float = 600) -> int:
    def count() -> int:
        store = parts.agent.store
        return len(store.all_latest()) if store is not None else 0

    await n._until(lambda: count() >= expected, limit_s)
    return count()


async def play(stack: DemoStack, parts: Parts, district: District, n: Narrator) -> None:
    clock = n.clock
    cast = Cast.of(district)
    sunset = sunset_of(clock.now(), cast.burner.lat, cast.burner.lon)
    read = await until_all_read(parts, n, district.device_count)
    n.say(
        f"{n.stamp()}  The district answers: {read} of {district.device_count} devices read. "
        f"The sun sets at {n.stamp(sunset)};"
    )
    n.say("       until then the photocells see daylight and the street lights are off.")
    await _burns_by_day(n, parts, cast)
    await _uplink_lost(n, parts, cast)
    b = cast.burner
    burning = await n.expect_event(
        "day burning", "raised", ("day_burning",), lambda e: e.device_id == b.device_id
    )
    ap_event = None
    if cast.ap is not None:
        ap_id = cast.ap.device_id
        ap_event = await n.expect_event(
            "uplink down", "raised", ("uplink_down",), lambda e: e.device_id == ap_id
        )
    await n.expect_report("day burning", burning, lambda r: True, "filed")
    await n.expect_report("uplink down", ap_event, lambda r: True, "filed")
    failed = await _dusk(n, parts, cast, sunset)
    outage = await _circuit_trips(n, parts, cast, failed)
    await _maintenance(n, parts, cast, outage)
    await _repairs(n, parts, cast, ap_event)
    failure = stack.failed_part()
    if failure:
        n.outcome("stack", False, f"a part of the demo stopped: {failure}")


async def _burns_by_day(n: Narrator, parts: Parts, cast: Cast) -> None:
    b = cast.burner
    n.step(
        1,
        "A street light burns by day",
        f"The relay of pole {b.pole_id} ({b.device_id}, {b.street.name}, circuit {b.circuit}) "
        f"is stuck:\nits lamp burns in daylight. The gateway gives it "
        f"{_minutes(DAY_BURNING_AFTER_S)} before it reports.",
    )
    await parts.do(("stuck", b.device_id))


async def _uplink_lost(n: Narrator, parts: Parts, cast: Cast) -> None:
    if cast.ap is None:
        n.say("   (no hotspot with an uplink in this district: no uplink step)")
        return
    ap = cast.ap
    n.step(
        2,
        "A WiFi hotspot loses its uplink",
        f"{ap.device_id} ({ap.recording.model}, a recording of a real one): its "
        f"{ap.recording.uplink_if} interface goes down.\nVisitors still see the SSID, but "
        f"there is no internet behind it. Diskominfo has {_minutes(SLA_H * 3600)} to answer\n"
        "the report; nobody will, so central red-flags it (watch for RED FLAG).",
    )
    await parts.do(("override", ap.device_id, uplink_oid(ap), 2))


async def _dusk(n: Narrator, parts: Parts, cast: Cast, sunset: datetime) -> FaultEvent | None:
    b, d = cast.burner, cast.dead
    await wait_until(n.clock, sunset - timedelta(minutes=1))
    n.step(
        3,
        "Dusk",
        f"The sun sets at {n.stamp(sunset)}: the photocells switch the poles on, one by one.\n"
        f"The lamp of pole {d.pole_id} ({d.device_id}) is dead: its controller closes the "
        "relay, but it draws no power.\nThe lamp with the stuck relay burns as it should now: "
        "its day-burning fault ends.",
    )
    await parts.do(("fail", d.device_id))
    night = await n.expect_event(
        "day burning over", "cleared", ("day_burning",), lambda e: e.device_id == b.device_id
    )
    await n.expect_report("day burning over", night, lambda r: r.status == "verified", "verified")
    return await n.expect_event(
        "lamp failure", "raised", ("lamp_failure",), lambda e: e.device_id == d.device_id
    )


async def _circuit_trips(
    n: Narrator, parts: Parts, cast: Cast, failed: FaultEvent | None
) -> FaultEvent | None:
    c = cast.tripped
    n.step(
        4,
        "A circuit trips",
        f"The breaker of panel {c.name} ({c.street.name}, {len(c.poles)} poles) trips: its "
        "lamps and controllers lose power.\nOne problem, so one report: a circuit outage, "
        "not one per pole.",
    )
    await parts.do(("power", c.name, False))
    await n.expect_report("lamp failure", failed, lambda r: True, "filed")
    outage = await n.expect_event(
        "circuit outage",
        "raised",
        ("circuit_outage", "gateway_network_down"),
        lambda e: e.circuit == c.name or c.name in str(e.evidence.get("circuits", "")),
    )
    await n.expect_report("circuit outage", outage, lambda r: True, "filed")
    return outage


async def _maintenance(n: Narrator, parts: Parts, cast: Cast, outage: FaultEvent | None) -> None:
    c = cast.tripped
    n.step(
        5,
        "A technician on the tripped circuit",
        f"{WEB_USER} logs in to the gateway's status page, puts circuit {c.name} in maintenance "
        "for an hour\nand resets the breaker. The controllers restart as the power comes back; "
        "nothing of that is\nreported while the circuit is in maintenance, but the end of the "
        "outage is (good news is never noise).",
    )
    count = len(n.events)
    async with Technician(f"http://127.0.0.1:{parts.ports.web}", parts.password) as tech:
        said = await tech.post(
            "/api/v1/maintenance",
            {"target_kind": "circuit", "target": c.name, "minutes": 60, "note": "reset MCB"},
        )
        n.note(f"status page: {said}")
        await n.clock.sleep(60)
        await parts.do(("power", c.name, True))
        n.note(f"the breaker is back on: {len(c.poles)} controllers restart")
        if outage is not None:
            over = await n.expect_event(
                "outage over",
                "cleared",
                (outage.fault_type,),
                lambda e: e.device_id == outage.device_id,
            )
            await n.expect_report("outage over", over, lambda r: r.status == "verified", "verified")
        await n.clock.sleep(2 * POLL_S)  # the restarts are seen and judged meanwhile
        said = await tech.post(
            "/api/v1/maintenance/end", {"target_kind": "circuit", "target": c.name}
        )
        n.note(f"status page: {said}")
    noisy = n.raised_since(count, {p.device_id for p in c.poles})
    if noisy:
        kinds = Counter(e.fault_type for e in noisy)
        n.outcome("maintenance", False, f"raised during maintenance: {dict(kinds)}")
    else:
        n.outcome("maintenance", True, f"{len(c.poles)} restarts in maintenance: no report")
        n.note(f"{len(c.poles)} controllers restarted in maintenance: nothing was reported")
    if not any(a.get("kind") == "maintenance" for a in n.actions):
        n.outcome("maintenance", False, "central never heard of the technician's action")


async def _repairs(n: Narrator, parts: Parts, cast: Cast, ap_event: FaultEvent | None) -> None:
    if ap_event is not None:
        ref = _ref(ap_event)
        flagged = await n._until(
            lambda: next(
                (r for r in n.reports.values() if r.external_ref == ref and r.red_flag), None
            ),
            STEP_LIMIT_S,
        )
        if flagged is None:
            n.outcome("red flag", False, f"the report of {ap_event.device_id} was not red-flagged")
        else:
            n.outcome("red flag", True, f"{flagged.id} red-flagged")
    d = cast.dead
    n.step(
        6,
        "Repairs",
        "The ISP fixes the hotspot's line; a crew replaces the lamp of pole "
        f"{d.pole_id}.\nThe sensors see both faults gone: SIARAN's reports become verified.",
    )
    if cast.ap is not None:
        await parts.do(("clear", cast.ap.device_id))
    await parts.do(("repair", d.device_id))
    back = None
    if ap_event is not None:
        back = await n.expect_event(
            "uplink back", "cleared", ("uplink_down",), lambda e: e.device_id == ap_event.device_id
        )
    lit = await n.expect_event(
        "lamp repaired", "cleared", ("lamp_failure",), lambda e: e.device_id == d.device_id
    )
    await n.expect_report("uplink back", back, lambda r: r.status == "verified", "verified")
    await n.expect_report("lamp repaired", lit, lambda r: r.status == "verified", "verified")


def _ref(event: FaultEvent) -> str:
    return f"siaran-edge:{event.gateway_id}/{event.device_id}/{event.fault_type}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} minutes"


def summary(n: Narrator, gateway_id: str = GATEWAY_ID) -> list[str]:
    events = Counter((e.state, e.fault_type) for e in n.events)
    reports = list(n.reports.values())
    lines = [
        "",
        "Summary",
        f"  fault events the gateway published   {len(n.events):4d}   "
        + ", ".join(f"{k[0]} {k[1]} x{v}" for k, v in sorted(events.items())),
        f"  SIARAN reports filed                 {len(reports):4d}   "
        + ", ".join(f"{s} x{c}" for s, c in sorted(Counter(r.status for r in reports).items())),
        f"  red flags                            {sum(r.red_flag for r in reports):4d}",
        f"  technician actions heard by central  {len(n.actions):4d}",
        "",
        f"  {'report':<22} {'status':<10} {'flag':<5} title",
    ]
    for r in sorted(reports, key=lambda r: r.created_at):
        flag = "RED" if r.red_flag else ""
        lines.append(f"  {r.id:<22} {r.status:<10} {flag:<5} {clip(r.title, 70)}")
    missed = [o for o in n.outcomes if not o.ok]
    lines.append("")
    if missed:
        lines.append(f"  {len(missed)} step(s) did not show their outcome:")
        lines += [f"    - {o.step}: {o.detail}" for o in missed]
    else:
        lines.append(f"  every step showed its outcome ({len(n.outcomes)} checks)")
    return lines
