"""A simulated street-light controller whose SNMP values come from a mutable Python object.

The object layout is the one of the shipped `pju-generic` profile (docs/profiles/pju-generic.md):
uCIFI 3416 Outdoor Lamp Controller and 3418 Electrical Monitor resources under the documentation
enterprise number 32473, instance 1, plus a small extension branch for on/off and the photocell.

A scenario changes the fields at run time (`lamp.update(lamp_on=False)`, `lamp.fail_lamp()`...)
and the next SNMP request sees the change. Power, current and power factor are derived from the
rated power, the dimming level and `health` (the share of the expected power the light source
really draws: 1 healthy, about 0.5 for a degraded LED driver, 0 for a dead lamp). The energy and
operating-hour counters integrate over time, `speedup` times faster than real time.

`command(level)` is uCIFI 3416/1 Command, the one object an SNMP SET may change (the lamp test).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from agent.demo.snmprec import Oid, Record

ENTERPRISE: Oid = (1, 3, 6, 1, 4, 1, 32473)  # RFC 5612: enterprise number for documentation
LAMP: Oid = (*ENTERPRISE, 3416)  # uCIFI 3416 Outdoor Lamp Controller: LAMP + (resource, instance)
METER: Oid = (*ENTERPRISE, 3418)  # uCIFI 3418 Electrical Monitor: METER + (resource, instance)
EXT: Oid = (*ENTERPRISE, 1)  # extension (not in uCIFI): EXT + (resource, instance)
INSTANCE = 1  # a single-output controller
COMMAND: Oid = (*LAMP, 1, INSTANCE)  # 3416/1 Command: the only writable object

SYS_DESCR: Oid = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_OBJECT_ID: Oid = (1, 3, 6, 1, 2, 1, 1, 2, 0)
SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_NAME: Oid = (1, 3, 6, 1, 2, 1, 1, 5, 0)

STANDBY_W = 0.4  # what the controller itself draws with the lamp off or dead
TRUE, FALSE = 1, 2  # SNMPv2-TC TruthValue


def truth(flag: bool) -> int:
    return TRUE if flag else FALSE


@dataclass
class LampController:
    """One lamp output. Change fields directly or with update(); counters follow on each read."""

    rated_w: float = 60.0  # nominal wattage at 100 % (uCIFI 3416/36)
    lamp_on: bool = True
    dim: int = 100  # command in action, 0..100 % (uCIFI 3416/2)
    health: float = 1.0  # share of the expected power really drawn: 1 ok, 0.5 degraded, 0 dead
    supply_voltage: float = 220.0  # V (PLN: 220/230 V, 50 Hz)
    supply_frequency: float = 50.0  # Hz
    ambient_c: float = 28.0  # night-time air temperature in Tangerang Selatan
    gear_temperature: float | None = None  # °C; None: ambient plus heat from the load
    power_factor: float | None = None  # None: derived from the load (0.97 at full, 0.91 at 75 %)
    daylight: bool = False  # photocell sees daylight
    lux: float = 2.0
    lamp_failure: bool = False
    lamp_failure_reason: int = 0
    gear_failure: bool = False
    gear_failure_reason: int = 0
    relay_failure: bool = False
    day_burner: bool = False
    cycling_failure: bool = False
    gear_comm_failure: bool = False
    thermal_derating: bool = False
    thermal_shutdown: bool = False
    energy_wh: float = 0.0
    lamp_hours: float = 0.0
    switch_count: int = 0
    online: bool = True  # False: the controller does not answer (power cut, dead modem)
    sys_descr: str = "siaran-sim PJU controller, uCIFI 3416/3418 over SNMP, fw 1.4.2"
    sys_name: str = ""
    speedup: float = 1.0  # simulated seconds per real second, for energy and hours
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    booted_at: float = field(init=False)
    _last_tick: float = field(init=False, repr=False)
    _last_on: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        now = self.clock()
        self.booted_at = now
        self._last_tick = now
        self._last_on = self.lamp_on

    # --- derived values -------------------------------------------------------------------
    @property
    def dim_measured(self) -> int:
        return self.dim if self.lamp_on else 0

    @property
    def active_power(self) -> float:
        """W drawn by the luminaire including the controller's standby."""
        if not self.lamp_on or self.dim <= 0:
            return STANDBY_W
        return self.rated_w * self.dim / 100.0 * max(self.health, 0.0) + STANDBY_W

    @property
    def load(self) -> float:
        return min(self.active_power / self.rated_w, 1.0)

    @property
    def pf(self) -> float:
        if self.power_factor is not None:
            return self.power_factor
        if self.load < 0.05:
            return 0.35  # a controller in standby: small, mostly reactive current
        return round(0.97 - 0.25 * (1.0 - self.load), 2)

    @property
    def supply_current(self) -> float:
        """A, from P = V * I * pf."""
        if self.supply_voltage <= 0:
            return 0.0
        return self.active_power / (self.supply_voltage * self.pf)

    @property
    def temperature(self) -> float:
        if self.gear_temperature is not None:
            return self.gear_temperature
        return self.ambient_c + 18.0 * self.load

    @property
    def uptime_s(self) -> float:
        return self.clock() - self.booted_at

    # --- changes ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Bring the counters up to now (called before every read and every update)."""
        now = self.clock()
        hours = max(now - self._last_tick, 0.0) * self.speedup / 3600.0
        self._last_tick = now
        self.energy_wh += self.active_power * hours
        if self.lamp_on and self.dim > 0:
            self.lamp_hours += hours
        if self._last_on and not self.lamp_on:
            self.switch_count += 1
        self._last_on = self.lamp_on

    def update(self, **changes: Any) -> None:
        """Set fields after counting the time spent in the old state, e.g. update(dim=50)."""
        self.tick()
        known = {f.name for f in fields(self) if not f.name.startswith("_")}
        for name, value in changes.items():
            if name not in known:
                raise AttributeError(f"LampController has no field {name!r}")
            setattr(self, name, value)
        self.tick()

    def command(self, level: int) -> None:
        """uCIFI 3416/1 Command (a manual override): 0 switches off, 1..100 on at that level."""
        if not 0 <= level <= 100:
            raise ValueError(f"command {level} is outside 0..100")
        self.update(lamp_on=level > 0, dim=level)

    def reboot(self) -> None:
        """The controller restarts: sysUpTime starts again from 0."""
        self.tick()
        self.booted_at = self.clock()
        self.online = True

    def fail_lamp(self) -> None:
        """The light source is dead: ~0 W with the relay closed, and the controller says so."""
        self.update(health=0.0, lamp_failure=True, lamp_failure_reason=2)

    def degrade_driver(self, share: float = 0.5) -> None:
        """A failing LED driver draws only `share` of the expected power; no flag is raised."""
        self.update(health=share)

    def repair(self) -> None:
        """Back to a healthy lamp: full power, every failure flag cleared."""
        self.update(
            health=1.0,
            lamp_failure=False,
            lamp_failure_reason=0,
            gear_failure=False,
            gear_failure_reason=0,
            relay_failure=False,
            day_burner=False,
            cycling_failure=False,
            gear_comm_failure=False,
            thermal_derating=False,
            thermal_shutdown=False,
            online=True,
        )

    # --- SNMP view --------------------------------------------------------------------------------
    def records(self) -> list[Record]:
        """The controller's objects now, sorted by OID (values in the snmprec representation)."""
        self.tick()
        i = INSTANCE
        rows: list[Record] = [
            Record(SYS_DESCR, "4", self.sys_descr),
            Record(SYS_OBJECT_ID, "6", ".".join(map(str, LAMP))),
            Record(SYS_UPTIME, "67", int(self.uptime_s * 100) % 2**32),
            Record(SYS_NAME, "4", self.sys_name),
            Record((*EXT, 1, i), "2", truth(self.lamp_on)),
            Record((*EXT, 2, i), "2", truth(self.daylight)),
            Record((*EXT, 3, i), "66", max(round(self.lux), 0)),
            Record(COMMAND, "2", self.dim_measured),  # the level last commanded (0: off)
            Record((*LAMP, 2, i), "2", self.dim),
            Record((*LAMP, 3, i), "2", self.dim_measured),
            Record((*LAMP, 5, i), "2", truth(self.lamp_failure)),
            Record((*LAMP, 6, i), "2", self.lamp_failure_reason),
            Record((*LAMP, 7, i), "2", truth(self.gear_failure)),
            Record((*LAMP, 8, i), "2", self.gear_failure_reason),
            Record((*LAMP, 9, i), "2", truth(self.relay_failure)),
            Record((*LAMP, 10, i), "2", truth(self.day_burner)),
            Record((*LAMP, 11, i), "2", truth(self.cycling_failure)),
            Record((*LAMP, 12, i), "2", truth(self.gear_comm_failure)),
            Record((*LAMP, 15, i), "65", int(self.lamp_hours) % 2**32),
            Record((*LAMP, 18, i), "65", self.switch_count % 2**32),
            Record((*LAMP, 21, i), "2", round(self.temperature * 10)),
            Record((*LAMP, 22, i), "2", truth(self.thermal_derating)),
            Record((*LAMP, 25, i), "2", truth(self.thermal_shutdown)),
            Record((*LAMP, 36, i), "66", round(self.rated_w)),
            Record((*METER, 1, i), "66", max(round(self.supply_voltage * 10), 0)),
            Record((*METER, 2, i), "66", round(self.supply_current * 1000)),
            Record((*METER, 3, i), "66", max(round(self.supply_frequency * 100), 0)),
            Record((*METER, 4, i), "66", round(self.active_power * 10)),
            Record((*METER, 5, i), "2", round(self.pf * 100)),
            Record((*METER, 6, i), "70", int(self.energy_wh) % 2**64),
        ]
        rows.sort(key=lambda r: r.oid)
        return rows
