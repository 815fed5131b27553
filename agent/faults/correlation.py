"""Correlation: many devices down at once are one problem (a circuit outage, the gateway's network).

Pure functions over "which members are down since when". A group forms when at least `min_count`
members, and at least `min_share` of the eligible ones, went down within `window_s` of each other
(many lamps burning out over a month are not an outage). While it stands, any member that is
down and went down no earlier than `window_s` before it began belongs to it (the list grows); it
ends when its members still down no longer meet the thresholds.

A group that has just formed waits, at most `window_s`, while other eligible members are still
pending (their debounce running), so the lamps of one outage arrive in one event, not in a
`raised` followed at once by `updated`s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from hashlib import sha1

from pydantic import BaseModel, Field

from agent.faults.rule import Severity

_ID_BAD = re.compile(r"[^A-Za-z0-9._-]+")


class GroupFault(BaseModel):
    """A correlated fault (circuit outage, gateway network down) and what was reported of it."""

    device_id: str  # the circuit id or the gateway id
    fault_type: str
    circuit: str | None = None  # the circuit's name as configured (circuit outages)
    members: list[str] = Field(default_factory=list)  # device ids down now, as part of it
    first_seen: datetime | None = None  # earliest member went down
    formed_at: datetime | None = None  # when it met the thresholds (it may wait to settle)
    reported: bool = False
    reported_members: list[str] = Field(default_factory=list)
    reported_first_seen: datetime | None = None
    reported_severity: Severity | None = None

    @property
    def trivial(self) -> bool:
        return not self.members and not self.reported


def largest_cluster(down: Mapping[str, datetime], window_s: float) -> list[str]:
    """The most members whose down times lie within one window (earliest first on ties)."""
    ordered = sorted(down.items(), key=lambda kv: (kv[1], kv[0]))
    best: list[str] = []
    span = timedelta(seconds=window_s)
    start = 0
    for end in range(len(ordered)):
        while ordered[end][1] - ordered[start][1] > span:
            start += 1
        if end + 1 - start > len(best):
            best = [name for name, _ in ordered[start : end + 1]]
    return best


def evaluate(
    down: Mapping[str, datetime],
    eligible: int,
    current: GroupFault,
    min_count: int,
    min_share: float,
    window_s: float,
) -> tuple[list[str], datetime | None]:
    """The group's members and first_seen now; ([], None) when there is no group."""

    def enough(n: int) -> bool:
        return n >= min_count and eligible > 0 and n / eligible >= min_share - 1e-9

    if current.members and current.first_seen is not None:
        since = current.first_seen - timedelta(seconds=window_s)
        members = sorted(d for d, t in down.items() if t >= since)
        if enough(len(members)):
            return members, min(down[d] for d in members)
        return [], None
    cluster = largest_cluster(down, window_s)
    if enough(len(cluster)):
        return sorted(cluster), min(down[d] for d in cluster)
    return [], None


def circuit_id(name: str) -> str:
    """A circuit name as a device id (an MQTT topic level): unsafe characters replaced."""
    clean = _ID_BAD.sub("-", name).strip("-._") or "circuit"
    if clean == name and len(name) <= 64:
        return name
    suffix = sha1(name.encode()).hexdigest()[:6]  # two names must not meet in one id
    return f"{clean[:57]}-{suffix}"
