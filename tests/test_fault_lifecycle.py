"""The per-key state machine: debounce by count and by duration, hysteresis, flapping, gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.faults.lifecycle import Change, Lifecycle
from agent.faults.rule import RuleSettings

T0 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
GAP = 180.0


def phase(life: Lifecycle) -> str:
    return life.phase  # (a plain str: mypy would narrow the attribute between asserts)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def feed(
    life: Lifecycle, s: RuleSettings, verdicts: str, start: float = 0, step: float = 60
) -> list[Change]:
    """Observe 'b' (bad) / 'g' (good) every `step` seconds; returns the changes."""
    return [life.observe(v == "b", at(start + i * step), s, GAP) for i, v in enumerate(verdicts)]


def test_count_debounce_raises_on_the_nth_bad_observation_only() -> None:
    s = RuleSettings(raise_after=3)
    life = Lifecycle()
    assert feed(life, s, "bb") == [Change.NONE, Change.NONE]
    assert phase(life) == "pending" and life.bad_since == at(0) and life.bad_count == 2
    assert life.observe(True, at(120), s, GAP) is Change.ACTIVATED
    assert phase(life) == "active" and life.active_since == at(120)
    assert feed(life, s, "bbb", start=180) == [Change.NONE] * 3  # raised once
    assert life.bad_since == at(0) and life.bad_count == 6


def test_a_good_observation_while_pending_starts_the_count_again() -> None:
    s = RuleSettings(raise_after=3)
    life = Lifecycle()
    assert Change.ACTIVATED not in feed(life, s, "bbgbb")
    assert phase(life) == "pending" and life.bad_since == at(180)
    assert life.observe(True, at(300), s, GAP) is Change.ACTIVATED


def test_duration_debounce_on_observations_and_on_ticks() -> None:
    s = RuleSettings(raise_after=1000, raise_after_s=300)
    life = Lifecycle()
    assert Change.ACTIVATED not in feed(life, s, "bbbbb")  # 0..240 s: bad for 240 s
    assert life.observe(True, at(300), s, GAP) is Change.ACTIVATED

    ticked = Lifecycle()
    assert ticked.observe(True, at(0), s, GAP) is Change.NONE
    assert ticked.observe(True, at(150), s, GAP) is Change.NONE
    assert ticked.check(at(299), s, GAP) is Change.NONE
    assert ticked.check(at(300), s, GAP) is Change.ACTIVATED


def test_a_stale_pending_fault_expires_instead_of_raising() -> None:
    s = RuleSettings(raise_after=1000, raise_after_s=300)
    life = Lifecycle()
    life.observe(True, at(0), s, GAP)
    assert life.check(at(GAP + 1), s, GAP) is Change.EXPIRED  # no fresh observation
    assert phase(life) == "ok" and life.trivial


def test_a_gap_between_observations_breaks_the_streak() -> None:
    s = RuleSettings(raise_after=3)
    life = Lifecycle()
    feed(life, s, "bb")
    assert life.observe(True, at(60 + GAP + 1), s, GAP) is Change.NONE
    assert life.bad_count == 1 and life.bad_since == at(60 + GAP + 1)


def test_hysteresis_needs_consecutive_good_observations() -> None:
    s = RuleSettings(raise_after=1, clear_after=3)
    life = Lifecycle()
    assert life.observe(True, at(0), s, GAP) is Change.ACTIVATED
    assert feed(life, s, "ggbgg", start=60) == [Change.NONE] * 5  # the bad one reset it
    assert phase(life) == "active"
    assert life.observe(False, at(360), s, GAP) is Change.CLEARED
    assert phase(life) == "ok" and life.bad_since is None


def test_hysteresis_by_duration_on_ticks() -> None:
    s = RuleSettings(raise_after=1, clear_after=1000, clear_after_s=600)
    life = Lifecycle()
    assert Change.CLEARED not in feed(life, s, "b" + "g" * 10)  # good from 60 s to 600 s
    assert life.check(at(659), s, GAP) is Change.NONE
    assert life.check(at(660), s, GAP) is Change.CLEARED


def test_flapping_keeps_the_fault_active_until_quiet_for_a_whole_window() -> None:
    s = RuleSettings(raise_after=1, clear_after=1, flap_transitions=4, flap_window_s=3600)
    life = Lifecycle()
    changes = feed(life, s, "bgbg")  # activate, clear, activate, (clear -> flapping)
    assert changes == [Change.ACTIVATED, Change.CLEARED, Change.ACTIVATED, Change.FLAPPING]
    assert phase(life) == "active" and life.flapping
    assert feed(life, s, "gggb", start=240, step=600) == [Change.NONE] * 4  # bad at 2040 s
    assert life.observe(False, at(2100), s, GAP) is Change.NONE
    assert life.check(at(2100 + 3599), s, 10_000) is Change.NONE
    assert life.check(at(2100 + 3600), s, 10_000) is Change.CLEARED
    assert phase(life) == "ok" and not life.flapping and life.transitions == []


def test_transitions_older_than_the_window_do_not_count() -> None:
    s = RuleSettings(raise_after=1, clear_after=1, flap_transitions=4, flap_window_s=300)
    life = Lifecycle()
    changes = feed(life, s, "bgbgbgbg", step=100)  # never 4 transitions within 300 s
    assert Change.FLAPPING not in changes and not life.flapping
    assert changes.count(Change.CLEARED) == 4


def test_the_flapping_threshold_reached_by_a_raise_marks_it_flapping() -> None:
    s = RuleSettings(raise_after=1, clear_after=1, flap_transitions=3)
    life = Lifecycle()
    assert feed(life, s, "bgb") == [Change.ACTIVATED, Change.CLEARED, Change.ACTIVATED]
    assert life.flapping  # raised (3rd transition) flapping: the next good does not clear
    assert life.observe(False, at(180), s, GAP) is Change.NONE


def test_out_of_order_observations_are_ignored() -> None:
    s = RuleSettings(raise_after=2)
    life = Lifecycle()
    life.observe(True, at(60), s, GAP)
    assert life.observe(True, at(0), s, GAP) is Change.NONE
    assert life.bad_count == 1
