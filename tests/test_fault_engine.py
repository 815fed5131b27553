"""The fault engine with fake rules on a fake clock: what reaches the broker, exactly.

Polls are 60 s apart. Defaults: raised after 3 bad polls, cleared after 2 good ones; a lamp's
(or an unreachable) fault waits the 300 s correlation window before it is raised alone.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.faults.engine import MEMORY_FLUSH_S, FaultEngine
from agent.faults.fault_store import WriteBatch
from agent.faults.rule import CIRCUIT_OUTAGE, GATEWAY_ISOLATED, LAMP_FAILURE, UNREACHABLE
from agent.faults.settings import check_rule_settings, resolve_settings
from collectors.reading import Reading
from firmware_config.loader import load_config
from firmware_config.problems import ConfigError
from tests.fault_fakes import FAKE_RULES, POLL_S, Harness, load, write_config
from uplink.contract import FaultDraft

UPLINK = "uplink_down"


async def bad_polls(h: Harness, n: int, device: str = "ap-1") -> None:
    for _ in range(n):
        await h.poll(h.hotspot(device, up=False))


async def good_polls(h: Harness, n: int, device: str = "ap-1") -> None:
    for _ in range(n):
        await h.poll(h.hotspot(device, up=True))


# -- lifecycle through the engine -------------------------------------------------------------


async def test_raised_once_after_the_debounce_and_cleared_after_the_hysteresis(
    tmp_path: Path,
) -> None:
    h = await Harness(load(tmp_path, hotspots=1)).open()
    t0 = h.clock.now()
    await bad_polls(h, 2)
    assert h.events == []  # N-1 bad polls: nothing
    await bad_polls(h, 1)
    [raised] = h.events
    assert (raised.device_id, raised.fault_type, raised.state) == ("ap-1", UPLINK, "raised")
    assert raised.device_kind == "hotspot" and raised.severity == "major"
    assert raised.first_seen == t0 and raised.observed_at == t0 + timedelta(seconds=120)
    assert raised.evidence == {"uplink_up": False, "seen": 3, "bad_observations": 3}
    assert raised.summary == "Uplink hotspot ap-1 putus" and raised.clock_synced
    assert raised.location is not None and raised.location.lat == -6.35
    await bad_polls(h, 4)
    await good_polls(h, 1)
    assert len(h.events) == 1  # raised once; one good poll is not enough
    await good_polls(h, 1)
    cleared = h.events[-1]
    assert (cleared.state, cleared.first_seen) == ("cleared", t0)
    assert cleared.summary == "Pulih: Uplink hotspot ap-1 putus"
    assert cleared.event_id != raised.event_id
    await h.engine.close()


async def test_duration_debounce_raises_on_a_tick(tmp_path: Path) -> None:
    rules = f"[rules.{UPLINK}]\nraise_after = 100\nraise_after_s = 150\n"
    h = await Harness(load(tmp_path, hotspots=1, rules=rules)).open()
    t0 = h.clock.now()
    await h.engine.on_reading(h.hotspot("ap-1", up=False))
    await h.clock.advance(100)
    await h.engine.on_reading(h.hotspot("ap-1", up=False))
    await h.clock.advance(49)
    await h.engine.tick()
    assert h.events == []
    await h.clock.advance(1)
    await h.engine.tick()
    assert [(e.state, e.observed_at) for e in h.events] == [("raised", t0 + timedelta(seconds=150))]
    await h.engine.close()


async def test_severity_change_is_one_update(tmp_path: Path) -> None:
    h = await Harness(load(tmp_path, hotspots=1)).open()
    await bad_polls(h, 3)
    for _ in range(3):
        await h.poll(h.hotspot("ap-1", up=False, severity="critical"))
    assert [(e.state, e.severity) for e in h.events] == [
        ("raised", "major"),
        ("updated", "critical"),
    ]
    assert h.events[1].evidence["previous_severity"] == "major"
    await h.engine.close()


async def test_flapping_is_reported_once_then_cleared_after_a_quiet_window(
    tmp_path: Path,
) -> None:
    rules = (
        f"[rules.{UPLINK}]\nraise_after = 1\nclear_after = 1\n"
        "flap_transitions = 4\nflap_window_s = 1800\n"
    )
    h = await Harness(load(tmp_path, hotspots=1, rules=rules)).open()
    for _ in range(10):  # down one minute, up the next, for 20 minutes
        await bad_polls(h, 1)
        await good_polls(h, 1)
    assert h.take() == [
        ("ap-1", UPLINK, "raised"),
        ("ap-1", UPLINK, "cleared"),
        ("ap-1", UPLINK, "raised"),
        ("ap-1", UPLINK, "updated"),
    ]
    quiet_since = h.clock.now() - timedelta(seconds=POLL_S)
    await good_polls(h, 29)  # good for 29 minutes: still flapping
    assert h.events == []
    await good_polls(h, 2)
    [cleared] = h.events
    assert cleared.state == "cleared" and cleared.evidence["was_flapping"] is True
    assert cleared.observed_at == quiet_since + timedelta(seconds=1800)
    await h.engine.close()


async def test_flapping_update_carries_the_flag(tmp_path: Path) -> None:
    rules = f"[rules.{UPLINK}]\nraise_after = 1\nclear_after = 1\nflap_transitions = 3\n"
    h = await Harness(load(tmp_path, hotspots=1, rules=rules)).open()
    for _ in range(3):
        await bad_polls(h, 1)
        await good_polls(h, 1)
    raised = [e for e in h.events if e.state == "raised"]
    assert len(raised) == 2 and raised[1].evidence["flapping"] is True
    assert [e.state for e in h.events] == ["raised", "cleared", "raised"]
    await h.engine.close()


# -- persistence ------------------------------------------------------------------------------


async def test_restart_neither_raises_again_nor_forgets(tmp_path: Path) -> None:
    h = await Harness(load(tmp_path, hotspots=1)).open()
    t0 = h.clock.now()
    await bad_polls(h, 2)
    await h.restart()
    await bad_polls(h, 1)  # the count survived the restart
    [raised] = h.take()
    assert raised == ("ap-1", UPLINK, "raised")
    assert h.engine.recent_events(1)[0].evidence["seen"] == 3  # rule memory survived too
    await h.restart()
    await bad_polls(h, 5)
    assert h.events == []  # not raised twice
    await h.restart()
    await good_polls(h, 2)
    [cleared] = h.events
    assert cleared.state == "cleared" and cleared.first_seen == t0
    await h.restart()
    await h.idle(60)
    assert h.events == [cleared]
    await h.engine.close()


def rule_memory(tmp_path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "faults.db")) as db:
        rows = db.execute("SELECT device_id, memory FROM rule_memory").fetchall()
    return {device: json.loads(text)["seen"] for device, text in rows}


async def test_rule_memory_is_written_with_its_devices_events_and_every_6_hours(
    tmp_path: Path,
) -> None:
    """Rule memory changes at every poll: the SD card sees it only when it matters."""
    h = await Harness(load(tmp_path, hotspots=2)).open()
    for _ in range(3):
        await h.poll(h.hotspot("ap-1", up=False), h.hotspot("ap-2", up=True))
    assert h.take() == [("ap-1", UPLINK, "raised")]
    assert rule_memory(tmp_path) == {"ap-1": 3}  # with ap-1's event; ap-2 had none
    await h.idle(MEMORY_FLUSH_S - 3 * POLL_S - 60, step_s=60)
    assert rule_memory(tmp_path) == {"ap-1": 3}
    await h.idle(120)
    assert rule_memory(tmp_path) == {"ap-1": 3, "ap-2": 3}  # the 6-hourly flush
    await h.poll(h.hotspot("ap-2", up=True))
    await h.engine.close()
    assert rule_memory(tmp_path) == {"ap-1": 3, "ap-2": 4}  # and at close


def stored_counts(tmp_path: Path) -> dict[str, tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "faults.db")) as db:
        rows = db.execute("SELECT device_id, record FROM fault").fetchall()
    lives = {device: json.loads(text)["life"] for device, text in rows}
    return {device: (life["phase"], life["bad_count"]) for device, life in lives.items()}


async def test_a_fault_is_written_when_its_phase_changes_not_at_every_count(
    tmp_path: Path,
) -> None:
    h = await Harness(load(tmp_path, hotspots=1)).open()
    await bad_polls(h, 2)
    assert stored_counts(tmp_path) == {}  # pending: after a power cut it is counted again
    await bad_polls(h, 1)
    assert stored_counts(tmp_path) == {"ap-1": ("active", 3)}  # raised: written with the event
    await bad_polls(h, 5)
    assert stored_counts(tmp_path) == {"ap-1": ("active", 3)}
    await h.idle(MEMORY_FLUSH_S)
    assert stored_counts(tmp_path) == {"ap-1": ("active", 8)}  # with the rule memory
    await h.engine.close()


async def test_a_failed_write_is_written_again_notes_and_memory_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await Harness(load(tmp_path, hotspots=2)).open()
    until = h.clock.now() + timedelta(hours=2)
    await h.engine.set_maintenance("device", "ap-2", until, by="budi")
    store = h.engine._require_open()
    real_write, failed = store.write, []
    disk_failing = False

    def write(batch: WriteBatch) -> list[int]:
        if disk_failing:
            failed.append(([row.note for row in batch.history], sorted(batch.memory)))
            raise sqlite3.OperationalError("disk I/O error")
        return real_write(batch)

    monkeypatch.setattr(store, "write", write)
    both_bad = (h.hotspot("ap-2", up=False), h.hotspot("ap-1", up=False))
    await h.poll(*both_bad)
    await h.poll(*both_bad)
    disk_failing = True
    await h.poll(*both_bad, step_s=1)  # ap-2 raised in maintenance (a note), ap-1 raised
    disk_failing = False
    assert failed == [  # each time again, with what the failed one held
        (["maintenance"], []),
        (["maintenance", ""], [("ap-1", UPLINK)]),  # ap-1's event, with ap-1's memory
        (["maintenance"], [("ap-1", UPLINK), ("ap-2", UPLINK)]),  # all memory, at once
    ]
    assert h.take() == [("ap-1", UPLINK, "raised")]  # the event went out all the same
    assert rule_memory(tmp_path) == {}
    await h.clock.advance(10)
    await h.engine.tick()  # the next flush
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "faults.db")) as db:
        notes = db.execute("SELECT device_id, note FROM history WHERE emitted = 0").fetchall()
    assert notes == [("ap-2", "maintenance")]
    assert rule_memory(tmp_path) == {"ap-1": 3, "ap-2": 3}  # all of it, not in 6 hours
    await h.engine.close()


async def test_an_event_the_outbox_refused_is_sent_later_in_order(tmp_path: Path) -> None:
    h = await Harness(load(tmp_path, hotspots=1)).open()
    h.failing = True
    await bad_polls(h, 3)
    await good_polls(h, 2)
    assert h.events == []
    journalled = [e.event_id for e in h.engine.recent_events(10)]
    assert len(journalled) == 2
    h.failing = False
    await h.engine.tick()
    assert [e.event_id for e in h.events] == journalled
    assert [e.state for e in h.events] == ["raised", "cleared"]
    await h.engine.close()


async def test_journalled_events_are_handed_on_after_a_restart_with_their_ids(
    tmp_path: Path,
) -> None:
    h = await Harness(load(tmp_path, hotspots=1)).open()
    h.failing = True
    await bad_polls(h, 3)
    [journalled] = h.engine.recent_events(10)
    await h.engine.close()  # the agent stops before the outbox took it
    h.failing = False
    await h.restart()
    assert [e.event_id for e in h.events] == [journalled.event_id]
    await bad_polls(h, 3)
    await h.restart()
    assert len(h.events) == 1  # sent once, and marked so
    await h.engine.close()


async def test_an_unreadable_journal_row_does_not_stop_the_engine(tmp_path: Path) -> None:
    import sqlite3

    h = await Harness(load(tmp_path, hotspots=1)).open()
    h.failing = True
    await bad_polls(h, 3)
    await h.engine.close()  # one event journalled, not handed on
    db = sqlite3.connect(tmp_path / "state" / "faults.db")
    with db:
        db.execute('UPDATE history SET draft = \'{"not": "a draft"}\' WHERE sent = 0')
    db.close()
    h.failing = False
    await h.restart()  # opens; the bad row is logged and marked done instead of crashing
    assert h.events == []
    await h.restart()
    assert h.events == []
    await h.engine.close()


async def test_a_raised_fault_of_a_removed_device_is_cleared(tmp_path: Path) -> None:
    h = await Harness(load(tmp_path, hotspots=2)).open()
    await bad_polls(h, 3, device="ap-2")
    await h.engine.close()
    smaller = load(tmp_path, hotspots=1)
    again = await Harness(smaller, clock=h.clock).open()
    [cleared] = again.events
    assert (cleared.device_id, cleared.state) == ("ap-2", "cleared")
    assert cleared.evidence["reason"] == "device_removed"
    await again.engine.close()


# -- correlation ------------------------------------------------------------------------------


def lamps(h: Harness, circuit: str, dark: set[int], n: int) -> list[Reading]:
    return [h.lamp(f"lamp-{circuit}-{i}", on=i not in dark) for i in range(1, n + 1)]


async def test_circuit_outage_is_one_event_naming_the_lamps(tmp_path: Path) -> None:
    h = await Harness(load(tmp_path, circuits={"A": 5})).open()
    await h.poll(*lamps(h, "A", set(), 5))
    t_dark = h.clock.now()
    for _ in range(10):
        await h.poll(*lamps(h, "A", {1, 2, 3, 4}, 5))
    [outage] = h.events
    assert (outage.device_id, outage.fault_type, outage.state) == ("A", CIRCUIT_OUTAGE, "raised")
    assert outage.device_kind == "circuit" and outage.circuit == "A"
    assert outage.severity == "critical" and outage.first_seen == t_dark
    assert outage.evidence["lamps"] == ["lamp-A-1", "lamp-A-2", "lamp-A-3", "lamp-A-4"]
    assert outage.evidence["lamps_total"] == 5 and outage.evidence["unreachable"] == []
    assert outage.location is not None and outage.location.address == "Jl. Uji 1"
    h.events.clear()
    for _ in range(3):
        await h.poll(*lamps(h, "A", set(), 5))
    await h.idle(600)
    assert h.take() == [("A", CIRCUIT_OUTAGE, "cleared")]  # and no lamp event at all
    await h.engine.close()


async def test_a_raised_lamp_is_cleared_into_the_outage_and_a_dark_one_left_raises_again(
    tmp_path: Path,
) -> None:
    h = await Harness(
        load(tmp_path, circuits={"A": 4}, rules="[rules.lamp_failure]\nraise_after = 1\n")
    ).open()
    t0 = h.clock.now()
    for _ in range(3):  # lamp 1 dark from t0
        await h.poll(*lamps(h, "A", {1}, 4))
    for _ in range(3):  # at t0+180 the controllers of lamps 2-4 stop answering
        await h.poll(h.lamp("lamp-A-1", on=False), *(h.dead(f"lamp-A-{i}") for i in (2, 3, 4)))
    assert h.take() == [
        ("lamp-A-1", LAMP_FAILURE, "raised"),  # its 300 s wait was over
        ("A", CIRCUIT_OUTAGE, "raised"),
        ("lamp-A-1", LAMP_FAILURE, "cleared"),  # ... into the outage
    ]
    absorbed = h.engine.recent_events(1)[0]
    assert absorbed.evidence["absorbed_by"] == "A"
    assert absorbed.evidence["absorbed_into"] == CIRCUIT_OUTAGE
    for _ in range(3):  # lamps 2-4 back, lamp 1 still dark
        await h.poll(*lamps(h, "A", {1}, 4))
    assert h.take() == [("A", CIRCUIT_OUTAGE, "cleared")]
    cleared = h.engine.recent_events(1)[0]
    assert cleared.evidence["lamps"] == [f"lamp-A-{i}" for i in (1, 2, 3, 4)]
    assert "lamp-A-1" in cleared.evidence["still_down"]  # type: ignore[operator]
    await h.idle(300)
    [again] = h.events
    assert (again.device_id, again.state, again.first_seen) == ("lamp-A-1", "raised", t0)
    await h.engine.close()


async def test_lamps_failing_far_apart_are_separate_faults(tmp_path: Path) -> None:
    h = await Harness(load(tmp_path, circuits={"A": 4})).open()
    dark: set[int] = set()
    for lamp in (1, 2, 3):  # one more lamp dark every 10 minutes
        dark.add(lamp)
        for _ in range(10):
            await h.poll(*lamps(h, "A", dark, 4))
    assert h.take() == [(f"lamp-A-{i}", LAMP_FAILURE, "raised") for i in (1, 2, 3)]
    await h.engine.close()


async def test_an_unreachable_device_mutes_its_other_faults(tmp_path: Path) -> None:
    no_flapping = "[rules.unreachable]\nflap_transitions = 10\n"  # it fails twice in an hour
    h = await Harness(load(tmp_path, hotspots=1, rules=no_flapping)).open()
    for _ in range(5):  # verdicts of its other rules are ignored while it does not answer
        await h.poll(h.dead("ap-1", uplink_up=False))
    assert h.take() == [("ap-1", UNREACHABLE, "raised")]
    await good_polls(h, 3)
    assert h.take() == [("ap-1", UNREACHABLE, "cleared")]

    await bad_polls(h, 3)
    assert h.take() == [("ap-1", UPLINK, "raised")]
    for _ in range(5):  # a raised fault stays as it is: no clear from a dead device
        await h.poll(h.dead("ap-1", uplink_up=True))
    await h.poll(h.hotspot("ap-1", up=False))
    await h.poll(h.hotspot("ap-1", up=False))
    assert h.take() == [("ap-1", UNREACHABLE, "raised"), ("ap-1", UNREACHABLE, "cleared")]
    await good_polls(h, 2)
    assert h.take() == [("ap-1", UPLINK, "cleared")]
    await h.engine.close()


async def test_everything_unreachable_is_one_gateway_fault(tmp_path: Path) -> None:
    h = await Harness(load(tmp_path, circuits={"A": 3}, hotspots=2)).open()
    ids = ["lamp-A-1", "lamp-A-2", "lamp-A-3", "ap-1", "ap-2"]
    for _ in range(10):
        await h.poll(*(h.dead(d) for d in ids))
    [down] = h.events
    assert (down.device_id, down.fault_type, down.state) == ("gw-uji", GATEWAY_ISOLATED, "raised")
    assert down.device_kind == "gateway" and down.evidence["devices"] == sorted(ids)
    assert down.evidence["devices_total"] == 5 and down.evidence["circuits"] == ["A"]
    h.events.clear()
    for _ in range(3):  # all back but ap-2
        await h.poll(*(h.lamp(d) for d in ids[:3]), h.hotspot("ap-1"), h.dead("ap-2"))
    assert h.take() == [("gw-uji", GATEWAY_ISOLATED, "cleared")]
    for _ in range(5):
        await h.poll(*(h.lamp(d) for d in ids[:3]), h.hotspot("ap-1"), h.dead("ap-2"))
    assert h.take() == [("ap-2", UNREACHABLE, "raised")]  # after its own 300 s wait
    await h.engine.close()


async def test_one_unreachable_device_is_its_own_fault(tmp_path: Path) -> None:
    h = await Harness(load(tmp_path, hotspots=4)).open()
    for _ in range(10):
        await h.poll(h.dead("ap-1"), *(h.hotspot(f"ap-{i}") for i in (2, 3, 4)))
    assert h.take() == [("ap-1", UNREACHABLE, "raised")]
    await h.engine.close()


# -- the evening the issue describes ---------------------------------------------------------


async def test_a_simulated_evening_reports_exactly_the_injected_problems(tmp_path: Path) -> None:
    """Six lamps on circuit A and three hotspots, polled every minute from 18:00 WIB.

    Injected: lamp 2 dark from minute 3 to 60; ap-2's uplink down minutes 5-14; the breaker of
    circuit A trips at minute 20 (lamps 1, 3-6 dark until 44); ap-3 in maintenance minutes
    24-40 with its uplink down minutes 26-33; the agent restarts at minute 30.
    """
    h = await Harness(load(tmp_path, circuits={"A": 6}, hotspots=3)).open()
    start = h.clock.now()
    for minute in range(75):
        if minute == 24:
            until = start + timedelta(minutes=40)
            await h.engine.set_maintenance("device", "ap-3", until, by="budi", note="ganti AP")
        if minute == 30:
            await h.restart()
        dark = {2} if 3 <= minute < 60 else set()
        dark |= {1, 3, 4, 5, 6} if 20 <= minute < 45 else set()
        await h.poll(
            *lamps(h, "A", dark, 6),
            h.hotspot("ap-1"),
            h.hotspot("ap-2", up=not 5 <= minute < 15),
            h.hotspot("ap-3", up=not 26 <= minute < 34),
        )
    events = list(h.events)
    assert h.take() == [
        ("ap-2", UPLINK, "raised"),
        ("lamp-A-2", LAMP_FAILURE, "raised"),
        ("ap-2", UPLINK, "cleared"),
        ("A", CIRCUIT_OUTAGE, "raised"),
        ("A", CIRCUIT_OUTAGE, "cleared"),
        ("lamp-A-2", LAMP_FAILURE, "cleared"),
    ]
    outage = events[3]
    assert outage.evidence["lamps"] == [f"lamp-A-{i}" for i in (1, 3, 4, 5, 6)]
    assert outage.first_seen == start + timedelta(minutes=20)
    assert len({e.event_id for e in events}) == len(events)
    await h.engine.close()
    # ap-3's fault during maintenance was recorded, not sent
    db = sqlite3.connect(h.config.gateway.state_dir / "faults.db")
    notes = db.execute("SELECT device_id, fault_type, note FROM history WHERE emitted = 0")
    assert notes.fetchall() == [("ap-3", UPLINK, "maintenance")]
    db.close()


# -- rule settings ----------------------------------------------------------------------------


PROFILE = """
name = "pju-kita"
protocol = "snmp"
kinds = ["streetlight"]
extends = "pju-generic"

[rules.lamp_failure]
raise_after = 5
clear_after = 4

[rules.lamp_failur]
raise_after = 2

[rules.circuit_outage]
min_lamps = 4
"""


def test_settings_are_defaults_then_profile_then_gateway(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "pju-kita.toml").write_text(PROFILE.split("[rules.lamp_failur]")[0])
    path = write_config(
        tmp_path, circuits={"A": 1}, rules="[rules.lamp_failure]\nraise_after = 2\n"
    )
    text = path.read_text().replace('profile = "pju-generic"', 'profile = "pju-kita"')
    path.write_text('profile_dirs = ["profiles"]\n' + text)
    config = load_config(path)
    assert check_rule_settings(config, FAKE_RULES) == []
    resolved = resolve_settings(config, FAKE_RULES)
    rules = dict((r.name, s) for r, s in resolved.devices["lamp-A-1"].rules)
    assert list(rules) == [UNREACHABLE, LAMP_FAILURE]  # unreachable first
    lamp = rules[LAMP_FAILURE]
    assert (lamp.raise_after, lamp.clear_after, lamp.flap_transitions) == (2, 4, 4)
    assert resolved.circuit_outage.min_lamps == 3


def test_check_rule_settings_names_the_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    profile = tmp_path / "profiles" / "pju-kita.toml"
    profile.write_text(PROFILE.replace("clear_after = 4", 'clear_after = "sering"'))
    rules = (
        "[rules.lamp_failure]\nraise_after = 0\nmin_w = -1\n"
        "[rules.lamp_fail]\nraise_after = 2\n"
        "[rules.circuit_outage]\nmin_share = 2\nraise_after = 5\n"
    )
    path = write_config(tmp_path, circuits={"A": 1}, rules=rules)
    path.write_text('profile_dirs = ["profiles"]\n' + path.read_text())
    config = load_config(path)
    found = {(p.file, p.where) for p in check_rule_settings(config, FAKE_RULES)}
    assert found == {
        (path, "rules.lamp_failure.raise_after"),
        (path, "rules.lamp_failure.min_w"),
        (path, "rules.lamp_fail"),
        (path, "rules.circuit_outage.min_share"),
        (path, "rules.circuit_outage.raise_after"),
        (profile, "rules.lamp_failure.clear_after"),
        (profile, "rules.lamp_failur"),
        (profile, "rules.circuit_outage"),
    }
    unknown = next(
        p for p in check_rule_settings(config, FAKE_RULES) if p.where == "rules.lamp_fail"
    )
    assert "unknown rule" in unknown.message and "lamp_failure" in unknown.message
    with pytest.raises(ConfigError):
        FaultEngine(config, FAKE_RULES, FakeClock(), _nowhere)


async def _nowhere(_: FaultDraft) -> None:
    return None
