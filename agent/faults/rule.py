"""What a fault rule is. A rule looks at one device's reading and says whether its condition is
bad now (an Observation); debounce, hysteresis, flapping, correlation and maintenance are the
engine's (agent/faults/engine.py), so a rule stays one small module with its settings.

Adding a rule: a module in agent/faults/rules/ with a class implementing Rule, its settings model
(a RuleSettings subclass with the rule's thresholds as field defaults), one row in
agent/faults/rules/__init__.py's RULES, and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue

Severity = Literal["info", "minor", "major", "critical"]

# Fault types the engine itself correlates on.
UNREACHABLE = "unreachable"  # the device did not answer (any kind)
LAMP_FAILURE = "lamp_failure"  # a street light that should be on is dark
CIRCUIT_OUTAGE = "circuit_outage"  # raised by the engine: many lamps of one circuit dark at once
GATEWAY_ISOLATED = "gateway_network_down"  # raised by the engine: (almost) every device unreachable


class RuleSettings(BaseModel):
    """Debounce before raising, hysteresis before clearing, flapping and severity: every rule's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="False: the rule judges no device")
    severity: Severity = Field("major", description="info, minor, major or critical")
    raise_after: int = Field(
        3, ge=1, le=1000, description="Consecutive bad observations before the fault is raised"
    )
    raise_after_s: float | None = Field(
        None, gt=0, description="Or: bad for at least this long (whichever comes first)"
    )
    clear_after: int = Field(
        2, ge=1, le=1000, description="Consecutive good observations before it clears"
    )
    clear_after_s: float | None = Field(
        None, gt=0, description="Or: good for at least this long (whichever comes first)"
    )
    flap_transitions: int = Field(
        4, ge=2, le=100, description="Raise/clear transitions within flap_window_s mean flapping"
    )
    flap_window_s: float = Field(3600.0, gt=0, description="Window for flap_transitions")


@dataclass(frozen=True)
class Observation:
    """A rule's verdict on one reading."""

    bad: bool
    evidence: dict[str, EvidenceValue] = field(default_factory=dict)
    summary: str = ""  # one line for a technician, in Bahasa Indonesia
    severity: Severity | None = None  # None: the settings' severity


@dataclass
class RuleContext:
    device: Device
    profile: Profile
    now: datetime  # the reading's time, timezone-aware UTC
    memory: dict[str, Any]  # the rule's own memory for this device (JSON values; persisted)


class Rule(Protocol):
    name: ClassVar[str]  # the fault type it reports, e.g. "lamp_failure"
    kinds: ClassVar[frozenset[DeviceKind]]
    settings_model: ClassVar[type[RuleSettings]]

    def applies_to(self, device: Device, profile: Profile) -> bool:
        """Whether this device can be judged by this rule (its profile has the metrics)."""
        ...

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        """The verdict on this reading; None when it cannot tell (a value missing, not night)."""
        ...
