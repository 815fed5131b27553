"""Maintenance windows: recorded, not raised; raised at the end if still there; the CLI."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.cli import main
from agent.clock import FakeClock
from agent.faults.rule import CIRCUIT_OUTAGE
from tests.fault_fakes import Harness, load, write_config

UPLINK = "uplink_down"


async def test_nothing_is_raised_during_maintenance_and_what_is_left_is_raised_at_its_end(
    tmp_path: Path,
) -> None:
    h = await Harness(load(tmp_path, hotspots=1)).open()
    until = h.clock.now() + timedelta(minutes=10)
    await h.engine.set_maintenance("device", "ap-1", until, by="budi", note="ganti kabel")
    t_bad = h.clock.now()
    for _ in range(8):
        await h.poll(h.hotspot("ap-1", up=False))
    assert h.events == []
    assert [f.status for f in h.engine.active_faults()] == ["maintenance"]
    await h.idle(180)  # no readings needed: the tick notices the end
    [raised] = h.events
    assert (raised.fault_type, raised.state, raised.first_seen) == (UPLINK, "raised", t_bad)
    assert until <= raised.observed_at < until + timedelta(seconds=10)
    await h.engine.close()
    db = sqlite3.connect(tmp_path / "state" / "faults.db")
    rows = db.execute("SELECT fault_type, state, emitted, note FROM history ORDER BY id")
    assert rows.fetchall() == [(UPLINK, "raised", 0, "maintenance"), (UPLINK, "raised", 1, "")]
    db.close()


async def test_a_fault_raised_before_stays_raised_and_its_clear_is_still_reported(
    tmp_path: Path,
) -> None:
    h = await Harness(load(tmp_path, hotspots=1)).open()
    for _ in range(3):
        await h.poll(h.hotspot("ap-1", up=False))
    assert h.take() == [("ap-1", UPLINK, "raised")]
    until = h.clock.now() + timedelta(hours=1)
    await h.engine.set_maintenance("device", "ap-1", until, by="budi")
    for _ in range(5):
        await h.poll(h.hotspot("ap-1", up=False, severity="critical"))  # no update either
    assert h.events == []
    for _ in range(2):
        await h.poll(h.hotspot("ap-1", up=True))
    assert h.take() == [("ap-1", UPLINK, "cleared")]  # good news is never noise
    await h.engine.close()


async def test_a_fault_that_came_and_went_during_maintenance_is_never_raised(
    tmp_path: Path,
) -> None:
    h = await Harness(load(tmp_path, hotspots=1)).open()
    until = h.clock.now() + timedelta(minutes=15)
    await h.engine.set_maintenance("device", "ap-1", until, by="budi")
    for up in [False] * 5 + [True] * 3:
        await h.poll(h.hotspot("ap-1", up=up))
    await h.idle(900)
    assert h.events == []
    await h.engine.close()


async def test_a_circuit_in_maintenance_then_still_dark_is_one_outage(tmp_path: Path) -> None:
    h = await Harness(load(tmp_path, circuits={"A": 4})).open()
    until = h.clock.now() + timedelta(minutes=20)
    await h.engine.set_maintenance("circuit", "A", until, by="budi", note="ganti MCB")
    while h.clock.now() < until + timedelta(minutes=5):
        await h.poll(*(h.lamp(f"lamp-A-{i}", on=False) for i in range(1, 5)))
    assert h.take() == [("A", CIRCUIT_OUTAGE, "raised")]  # at the end, and not one per lamp
    for _ in range(3):
        await h.poll(*(h.lamp(f"lamp-A-{i}") for i in range(1, 5)))
    await h.idle(600)
    assert h.take() == [("A", CIRCUIT_OUTAGE, "cleared")]
    await h.engine.close()


async def test_set_maintenance_refuses_an_unknown_target(tmp_path: Path) -> None:
    h = await Harness(load(tmp_path, hotspots=1)).open()
    with pytest.raises(ValueError, match="no device 'ap-9'"):
        await h.engine.set_maintenance("device", "ap-9", h.clock.now(), by="x")
    await h.engine.close()


# -- the command line -------------------------------------------------------------------------


async def test_the_cli_writes_a_window_the_running_engine_honours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, hotspots=1)
    h = await Harness(load(tmp_path, hotspots=1), clock=FakeClock(datetime.now(UTC))).open()
    config = ["maintenance", "--config", str(path)]
    rc = main([*config, "--device", "ap-1", "--for", "2h", "--by", "budi", "--note", "ganti AP"])
    assert rc == 0
    for _ in range(5):  # the engine reads the window on its next tick
        await h.poll(h.hotspot("ap-1", up=False))
    assert h.events == []
    capsys.readouterr()
    assert main([*config, "--list"]) == 0
    listed = capsys.readouterr().out
    assert "device ap-1 until" in listed and "by budi: ganti AP" in listed
    assert main([*config, "--device", "ap-1", "--end"]) == 0
    await h.poll(h.hotspot("ap-1", up=False))
    assert h.take() == [("ap-1", UPLINK, "raised")]
    assert main([*config, "--device", "ap-1", "--end"]) == 1  # nothing in force any more
    await h.engine.close()


def test_the_cli_refuses_unknown_targets_and_unclear_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, circuits={"A": 2}, hotspots=1)
    config = ["maintenance", "--config", str(path)]
    later = (datetime.now(UTC) + timedelta(hours=3)).astimezone().isoformat(timespec="minutes")
    assert main([*config, "--device", "ap-9", "--until", later]) == 2
    assert main([*config, "--device", "ap-1", "--until", "2026-11-28T23:00"]) == 2  # no offset
    assert main([*config, "--device", "ap-1", "--until", "2020-01-01T23:00+07:00"]) == 2
    assert main([*config, "--device", "ap-1", "--for", "soon"]) == 2
    assert main([*config, "--until", later]) == 2  # no target
    err = capsys.readouterr().err
    assert "no device 'ap-9'" in err and "+07:00" in err and "already past" in err
    assert main([*config, "--circuit", "A", "--until", later]) == 0
    assert main([*config, "--device", "gw-uji", "--for", "30m"]) == 0  # the whole site
    capsys.readouterr()
    main([*config, "--list"])
    assert capsys.readouterr().out.splitlines()[0].startswith("circuit A until")


async def test_an_outage_that_ends_during_circuit_maintenance_is_cleared_then(
    tmp_path: Path,
) -> None:
    h = await Harness(load(tmp_path, circuits={"A": 4})).open()
    for _ in range(4):
        await h.poll(*(h.lamp(f"lamp-A-{i}", on=False) for i in range(1, 5)))
    assert h.take() == [("A", CIRCUIT_OUTAGE, "raised")]
    until = h.clock.now() + timedelta(hours=2)
    await h.engine.set_maintenance("circuit", "A", until, by="budi", note="ganti kontaktor")
    for _ in range(5):
        await h.poll(*(h.lamp(f"lamp-A-{i}", on=False) for i in range(1, 5)))
    for _ in range(3):
        await h.poll(*(h.lamp(f"lamp-A-{i}") for i in range(1, 5)))
    assert h.take() == [("A", CIRCUIT_OUTAGE, "cleared")]  # not held back to the window's end
    await h.engine.close()


def test_the_cli_says_what_is_wrong_with_a_locked_store_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, hotspots=1)
    config = ["maintenance", "--config", str(path)]
    assert main([*config, "--list"]) == 0  # creates faults.db
    holder = sqlite3.connect(tmp_path / "state" / "faults.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # e.g. a sqlite3 shell in the middle of a change
    capsys.readouterr()
    try:
        assert main([*config, "--device", "ap-1", "--for", "2h"]) == 1  # after the 5 s wait
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert "faults.db: database is locked" in err and "nothing was changed; try again" in err
    assert "Traceback" not in err
    assert main([*config, "--list"]) == 0
    assert "no maintenance window in force" in capsys.readouterr().out


def test_the_cli_refuses_a_config_with_a_bad_rule_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, hotspots=1, rules="[rules.uplink_down]\nraise_after = -1\n")
    assert main(["maintenance", "--config", str(path), "--list"]) == 2
    err = capsys.readouterr().err
    assert "problem(s) in the configuration" in err and "raise_after" in err
