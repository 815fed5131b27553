"""One fault's state machine, keyed by (device, fault type): debounce, hysteresis, flapping.

Pure: no clock, no I/O, no reporting. The engine feeds it observations (bad or good, at the
reading's time) and ticks (the current time); this module says what the condition *is*. Whether
and when that is reported (maintenance, correlation, an unreachable device) is the engine's.

    ok ──bad──▶ pending ──raise_after bad, or bad for raise_after_s──▶ active
    pending ──good──▶ ok                                   (never reported)
    active ──clear_after good, or good for clear_after_s──▶ ok
    active ──that clear would be the flap_transitions-th
             transition within flap_window_s──▶ active + flapping
    active + flapping ──good continuously for flap_window_s──▶ ok

A gap of more than `gap_s` between two observations breaks a streak: a pending fault starts
again, a good streak of an active one starts again (nobody knows what happened in between).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from agent.faults.rule import RuleSettings

Phase = Literal["ok", "pending", "active"]


class Change(StrEnum):
    NONE = "none"
    ACTIVATED = "activated"  # debounce passed: the fault is real (see .flapping)
    CLEARED = "cleared"  # hysteresis passed: the fault is over
    FLAPPING = "flapping"  # a clear that would have made it flap: stays active, flapping
    EXPIRED = "expired"  # a pending fault went stale (no fresh observation): back to ok


class Lifecycle(BaseModel):
    """The state of one (device, fault type); a pydantic model so it persists as JSON."""

    phase: Phase = "ok"
    bad_count: int = 0  # bad observations since first_seen (not reset by a good one once active)
    bad_since: datetime | None = None  # first_seen: start of pending
    good_count: int = 0  # consecutive good observations while active
    good_since: datetime | None = None  # start of the current good streak while active
    last_observed_at: datetime | None = None
    active_since: datetime | None = None  # when the debounce passed
    transitions: list[datetime] = Field(default_factory=list)  # activations and clears
    flapping: bool = False

    @property
    def trivial(self) -> bool:
        """Nothing worth keeping: ok and no recent transitions."""
        return self.phase == "ok" and not self.transitions

    def observe(self, bad: bool, at: datetime, s: RuleSettings, gap_s: float) -> Change:
        """One rule verdict at `at` (the reading's time)."""
        last = self.last_observed_at
        if last is not None and at < last:
            return Change.NONE  # out of order: the newer observation already counted
        if last is not None and (at - last).total_seconds() > gap_s:
            self._break_streaks()
        self.last_observed_at = at
        if bad:
            self.good_count, self.good_since = 0, None
            if self.phase == "ok":
                self.phase, self.bad_count, self.bad_since = "pending", 0, at
            self.bad_count += 1
            if self.phase == "pending" and self._debounced(at, s):
                return self._activate(at, s)
            return Change.NONE
        if self.phase == "pending":
            self._to_ok()
        elif self.phase == "active":
            self.good_count += 1
            self.good_since = self.good_since or at
            if self._recovered(at, s):
                return self._clear(at, s)
        return Change.NONE

    def check(self, now: datetime, s: RuleSettings, gap_s: float) -> Change:
        """A tick: duration-based debounce and hysteresis, stale pending faults, old transitions."""
        self.transitions = self._recent(now, s)
        last = self.last_observed_at
        if last is None or self.phase == "ok":
            return Change.NONE
        fresh = (now - last).total_seconds() <= gap_s
        if self.phase == "pending":
            if not fresh:
                self._to_ok()
                return Change.EXPIRED
            if s.raise_after_s is not None and self._debounced(now, s):
                return self._activate(now, s)
            return Change.NONE
        if fresh and self.good_since is not None and self._recovered(now, s):
            return self._clear(now, s)
        return Change.NONE

    # -- internals -------------------------------------------------------------------------

    def _debounced(self, t: datetime, s: RuleSettings) -> bool:
        if self.bad_count >= s.raise_after:
            return True
        assert self.bad_since is not None
        return s.raise_after_s is not None and _secs(t, self.bad_since) >= s.raise_after_s

    def _recovered(self, t: datetime, s: RuleSettings) -> bool:
        assert self.good_since is not None
        good_for = _secs(t, self.good_since)
        if self.flapping:
            return good_for >= s.flap_window_s
        if self.good_count >= s.clear_after:
            return True
        return s.clear_after_s is not None and good_for >= s.clear_after_s

    def _recent(self, t: datetime, s: RuleSettings) -> list[datetime]:
        since = t - timedelta(seconds=s.flap_window_s)
        return [x for x in self.transitions if x > since]

    def _activate(self, at: datetime, s: RuleSettings) -> Change:
        self.transitions = [*self._recent(at, s), at]
        self.flapping = len(self.transitions) >= s.flap_transitions
        self.phase, self.active_since = "active", at
        self.good_count, self.good_since = 0, None
        return Change.ACTIVATED

    def _clear(self, at: datetime, s: RuleSettings) -> Change:
        if self.flapping:  # quiet for a full flap window: over, and the count starts afresh
            self.flapping, self.transitions = False, []
            self._to_ok()
            return Change.CLEARED
        recent = self._recent(at, s)
        if len(recent) + 1 >= s.flap_transitions:
            self.flapping, self.transitions = True, [*recent, at]
            return Change.FLAPPING  # stays active; good_since keeps counting the quiet time
        self.transitions = [*recent, at]
        self._to_ok()
        return Change.CLEARED

    def _to_ok(self) -> None:
        self.phase = "ok"
        self.bad_count, self.bad_since, self.active_since = 0, None, None
        self.good_count, self.good_since = 0, None

    def _break_streaks(self) -> None:
        if self.phase == "pending":
            self._to_ok()
        self.good_count, self.good_since = 0, None


def _secs(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()
