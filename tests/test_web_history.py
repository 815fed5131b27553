"""The device page's chart history: the last `points` readings' chart numbers, per device."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.web.history import HistoryPoint, ReadingHistory
from collectors.reading import Reading
from tests.test_telemetry import hotspot, lamp

T0 = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)


async def test_the_last_points_of_each_device_come_back_as_they_were_read() -> None:
    history = ReadingHistory({d.id: d for d in (lamp("pju-1"), hotspot("ap-1"))}, points=3)
    for minute in range(5):
        at = T0 + timedelta(minutes=minute)
        values = {"active_power": 60.5 + minute, "supply_voltage": 221, "lamp_on": True}
        await history.record(Reading(device_id="pju-1", at=at, reachable=True, values=values))
    await history.record(Reading(device_id="ap-1", at=T0, reachable=False, duration_s=2.5))
    await history.record(Reading(device_id="unknown", at=T0, reachable=True))
    assert history.of("pju-1") == [
        HistoryPoint(
            T0 + timedelta(minutes=m),
            True,
            {"poll_s": 0.0, "active_power": 60.5 + m, "supply_voltage": 221.0},
        )
        for m in (2, 3, 4)
    ]
    assert history.of("ap-1") == [HistoryPoint(T0, False, {"poll_s": 2.5})]
    assert history.of("unknown") == [] and history.of("pju-2") == []
