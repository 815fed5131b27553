"""Maintenance windows: a device, a circuit or the whole gateway is being worked on until a time.

Faults of a target in maintenance are still tracked (and noted in the history) but not raised;
one still present when the window ends is raised then. A fault raised before the window stays
raised, and its clear is still reported (good news is never noise).

A window is set by `siaran-edge maintenance` (agent/faults/maintenance_cli.py) or by
FaultEngine.set_maintenance; both write the fault store, which the engine re-reads every tick.
One window per target: setting it again replaces it (to extend or shorten it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from firmware_config.loader import LoadedConfig
from firmware_config.models import Device

TargetKind = Literal["device", "circuit"]


class MaintenanceWindow(BaseModel):
    model_config = ConfigDict(frozen=True)

    target_kind: TargetKind
    target: str  # a device id (the gateway id: the whole site) or a circuit name
    until: AwareDatetime
    by: str = ""
    note: str = ""
    set_at: AwareDatetime


class MaintenanceBook:
    """The windows in force, for quick lookups while reconciling."""

    def __init__(self, windows: Iterable[MaintenanceWindow] = (), gateway_id: str = "") -> None:
        self.gateway_id = gateway_id
        self._windows: dict[tuple[str, str], MaintenanceWindow] = {
            (w.target_kind, w.target): w for w in windows
        }

    def windows(self) -> list[MaintenanceWindow]:
        return sorted(self._windows.values(), key=lambda w: (w.target_kind, w.target))

    def put(self, window: MaintenanceWindow) -> None:
        self._windows[(window.target_kind, window.target)] = window

    def _on(self, kind: TargetKind, target: str | None, now: datetime) -> bool:
        w = self._windows.get((kind, target)) if target is not None else None
        return w is not None and w.until > now

    def gateway(self, now: datetime) -> bool:
        """The whole site (the gateway id as a device target)."""
        return self._on("device", self.gateway_id, now)

    def circuit(self, name: str | None, now: datetime) -> bool:
        return self.gateway(now) or self._on("circuit", name, now)

    def device(self, device: Device, now: datetime) -> bool:
        """The device itself, its circuit or the whole site."""
        return self._on("device", device.id, now) or self.circuit(device.circuit, now)


def check_target(config: LoadedConfig, target_kind: TargetKind, target: str) -> None:
    """Raise ValueError unless the target is a device (or the gateway) or a circuit we know."""
    if target_kind == "device":
        known = {d.id for d in config.devices} | {config.gateway.gateway.id}
    else:
        known = {d.circuit for d in config.devices if d.circuit is not None}
    if target not in known:
        some = ", ".join(sorted(known)[:10]) or "none"
        raise ValueError(f"no {target_kind} '{target}' in this configuration (known: {some})")
