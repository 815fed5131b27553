"""Readings of simulated devices made directly from their records, without SNMP: for benchmarks
and tests that run days of polls in simulated time (the values go through the profile's
conversion exactly as the SNMP collector's do)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from agent.demo.snmprec import Oid, Record, parse_oid
from collectors.base import convert
from collectors.reading import Reading, Value
from firmware_config.profiles import Profile


def reading_from_records(
    records: Iterable[Record], device_id: str, profile: Profile, at: datetime
) -> Reading:
    """The Reading a poll through `profile` would give for these records."""
    by_oid = {r.oid: r.value for r in records}
    values: dict[str, Value] = {}
    for m in profile.metrics:
        raw = by_oid.get(parse_oid(m.oid))
        if raw is not None:
            values[m.name] = convert(m, raw)
    columns: dict[Oid, tuple[str, str]] = {}
    for t in profile.tables:
        for c in t.columns:
            columns[parse_oid(c.oid)] = (t.name, c.name)
    specs = {(t.name, c.name): c for t in profile.tables for c in t.columns}
    lengths = sorted({len(p) for p in columns})
    tables: dict[str, dict[str, dict[str, Value]]] = {}
    for oid, raw in by_oid.items():
        for n in lengths:
            found = columns.get(oid[:n])
            if found is not None and len(oid) > n:
                row = ".".join(str(a) for a in oid[n:])
                cell = convert(specs[found], raw)
                tables.setdefault(found[0], {}).setdefault(row, {})[found[1]] = cell
                break
    return Reading(device_id=device_id, at=at, reachable=True, values=values, tables=tables)
