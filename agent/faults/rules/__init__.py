"""The fault rules, by name (the fault type each reports). One module per rule or close family."""

from __future__ import annotations

from agent.faults.rule import Rule
from agent.faults.rules.clients import NoClients
from agent.faults.rules.controller_alarm import ControllerAlarm
from agent.faults.rules.cycling import Cycling
from agent.faults.rules.day_burning import DayBurning
from agent.faults.rules.if_errors import InterfaceErrors
from agent.faults.rules.interfaces import RadioDown, UplinkDown
from agent.faults.rules.lamp_failure import LampFailure
from agent.faults.rules.load import CpuHigh, MemoryHigh
from agent.faults.rules.photocell import PhotocellFault
from agent.faults.rules.power_deviation import PowerDeviation
from agent.faults.rules.reboot import Rebooted, RebootLoop
from agent.faults.rules.supply import LowPowerFactor, SupplyVoltage
from agent.faults.rules.temperature import OverTemperature
from agent.faults.rules.unreachable import Unreachable

_ALL: tuple[Rule, ...] = (
    # both kinds
    Unreachable(),
    Rebooted(),
    RebootLoop(),
    OverTemperature(),
    # street lights
    LampFailure(),
    DayBurning(),
    Cycling(),
    PowerDeviation(),
    SupplyVoltage(),
    LowPowerFactor(),
    ControllerAlarm(),
    PhotocellFault(),
    # hotspots
    UplinkDown(),
    RadioDown(),
    CpuHigh(),
    MemoryHigh(),
    NoClients(),
    InterfaceErrors(),
)

RULES: dict[str, Rule] = {rule.name: rule for rule in _ALL}
