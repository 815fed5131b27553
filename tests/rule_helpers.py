"""Helpers for the fault-rule tests: devices at Tangerang Selatan, readings at fixed WIB times,
a simulated lamp read through the pju-generic profile, and a Judge that keeps a rule's memory
between readings the way the engine does (as JSON)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from agent.demo.lamp import LampController
from agent.demo.snmprec import format_oid
from agent.faults.astro import WIB
from agent.faults.rule import Observation, Rule, RuleContext
from collectors.base import convert
from collectors.reading import Reading, ReadingError, Value
from firmware_config.loader import load_profiles
from firmware_config.models import Device, Location
from firmware_config.profiles import Profile

TANGSEL = Location(lat=-6.29, lon=106.71, kecamatan="Serpong")


@cache
def profiles() -> dict[str, Profile]:
    return load_profiles()


def profile(name: str) -> Profile:
    return profiles()[name]


def wib(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A WIB wall-clock time as the timezone-aware UTC datetime a Reading carries."""
    return datetime(year, month, day, hour, minute, second, tzinfo=WIB).astimezone(UTC)


NIGHT = wib(2026, 11, 28, 21, 0)
DAY = wib(2026, 11, 28, 12, 0)


def lamp_device(**changes: Any) -> Device:
    fields: dict[str, Any] = {
        "id": "pju-srp-0142",
        "kind": "streetlight",
        "profile": "pju-generic",
        "address": "10.20.0.42:161",
        "location": TANGSEL,
        "pole_id": "SRP-0142",
        "circuit": "PANEL-SRP-07/R",
        "rated_w": 60,
    }
    return Device(**(fields | changes))


def hotspot_device(**changes: Any) -> Device:
    fields: dict[str, Any] = {
        "id": "wifi-warkop",
        "kind": "hotspot",
        "profile": "mikrotik-routeros",
        "address": "10.30.0.1:161",
        "location": TANGSEL,
        "uplink_if": "pppoe-out1",
    }
    return Device(**(fields | changes))


def reading(
    at: datetime,
    values: dict[str, Value] | None = None,
    tables: dict[str, dict[str, dict[str, Value]]] | None = None,
    reachable: bool = True,
    errors: list[ReadingError] | None = None,
    device_id: str = "dev",
) -> Reading:
    return Reading(
        device_id=device_id,
        at=at,
        reachable=reachable,
        values=values or {},
        tables=tables or {},
        errors=errors or [],
    )


class Judge:
    """One rule judging one device's readings; memory goes through JSON between readings."""

    def __init__(
        self,
        rule: Rule,
        device: Device,
        profile_name: str | None = None,
        **settings: Any,
    ) -> None:
        self.rule = rule
        self.device = device
        self.profile = profile(profile_name or device.profile)
        self.settings = rule.settings_model.model_validate(settings)
        self.memory: dict[str, Any] = {}
        assert device.kind in rule.kinds and rule.applies_to(device, self.profile)

    async def __call__(self, r: Reading) -> Observation | None:
        ctx = RuleContext(self.device, self.profile, r.at, json.loads(json.dumps(self.memory)))
        found = await self.rule.observe(r, ctx, self.settings)
        self.memory = json.loads(json.dumps(ctx.memory))  # the engine persists it as JSON
        if found is not None:
            json.dumps(found.evidence)  # evidence must serialise too
            assert found.summary, "every verdict carries a summary"
        return found

    async def bad(self, r: Reading) -> Observation:
        found = await self(r)
        assert found is not None and found.bad, found
        return found

    async def good(self, r: Reading) -> Observation:
        found = await self(r)
        assert found is not None and not found.bad, found
        return found

    async def none(self, r: Reading) -> None:
        found = await self(r)
        assert found is None, found


class SimTime:
    """Seconds for LampController's clock, moved by the test."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def lamp_values(lamp: LampController, profile_name: str = "pju-generic") -> dict[str, Value]:
    """The simulated controller's objects as the SNMP collector would give them."""
    raw = {format_oid(r.oid): r.value for r in lamp.records()}
    return {m.name: convert(m, raw[m.oid]) for m in profile(profile_name).metrics if m.oid in raw}


def lamp_reading(lamp: LampController, at: datetime) -> Reading:
    return reading(at, lamp_values(lamp), device_id="pju-srp-0142")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
