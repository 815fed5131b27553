"""What the web layer may read of the agent: a narrow Protocol, and its adapter for the runtime.

Pages, API and metrics use `AgentView` (and `agent.actions.Actions` for writes) only, so tests
run them on fakes. `AgentViewAdapter(agent)` reads a running `agent.runtime.Agent`; it also adds
a ReadingHistory to the agent's reading sinks, for the device page's charts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from agent.clock_sync import clock_synchronised
from agent.faults.engine import ActiveFault
from agent.faults.maintenance import MaintenanceWindow
from agent.scheduler import DeviceStats
from agent.version import agent_version
from agent.web.health import GatewayHealth, HealthProbe
from agent.web.history import HistoryPoint, ReadingHistory
from collectors.reading import Reading
from firmware_config.loader import LoadedConfig
from uplink.contract import FaultDraft
from uplink.publisher import UplinkStats

if TYPE_CHECKING:
    from agent.runtime import Agent


@dataclass(frozen=True)
class AckInfo:
    """Who acknowledged a fault, when, with what note."""

    by: str
    at: datetime | None = None
    note: str = ""


class AgentView(Protocol):
    @property
    def config(self) -> LoadedConfig: ...

    @property
    def agent_version(self) -> str: ...

    def now(self) -> datetime: ...

    def latest(self) -> dict[str, Reading]: ...

    def history(self, device_id: str) -> list[HistoryPoint]: ...

    def poll_stats(self) -> dict[str, DeviceStats]: ...

    def active_faults(self) -> list[ActiveFault]: ...

    def recent_events(self, limit: int) -> list[FaultDraft]:
        """Newest last."""
        ...

    def maintenance_windows(self) -> list[MaintenanceWindow]: ...

    def acknowledgement(self, device_id: str, fault_type: str) -> AckInfo | None: ...

    def uplink(self) -> UplinkStats | None:
        """None before the uplink exists."""
        ...

    def health(self) -> GatewayHealth: ...


def ack_info(found: Any) -> AckInfo | None:
    """Whatever `acknowledged_by` returns (None, a name, or an object/dict with by/at/note)."""
    if found is None or found is False:
        return None
    if isinstance(found, AckInfo):
        return found
    if isinstance(found, str):
        return AckInfo(by=found)
    fields: dict[str, Any] = (
        found
        if isinstance(found, dict)
        else {k: getattr(found, k, None) for k in ("by", "at", "note")}
    )
    at = fields.get("at")
    return AckInfo(
        by=str(fields.get("by") or ""),
        at=at if isinstance(at, datetime) else None,
        note=str(fields.get("note") or ""),
    )


class AgentViewAdapter:
    """AgentView of a running Agent (built after Agent.run() opened its engine and uplink)."""

    def __init__(self, agent: Agent, history_points: int = 120) -> None:
        self._agent = agent
        self._history = ReadingHistory({d.id: d for d in agent.config.devices}, history_points)
        agent.sinks.append(self._history.record)
        self._probe = HealthProbe(agent.config.gateway.state_dir, clock_synchronised)
        self._version = agent_version()

    @property
    def config(self) -> LoadedConfig:
        return self._agent.config

    @property
    def agent_version(self) -> str:
        return self._version

    def now(self) -> datetime:
        return self._agent.clock.now()

    def latest(self) -> dict[str, Reading]:
        store = self._agent.store
        return store.all_latest() if store is not None else {}

    def history(self, device_id: str) -> list[HistoryPoint]:
        return self._history.of(device_id)

    def poll_stats(self) -> dict[str, DeviceStats]:
        return dict(self._agent.scheduler.stats)

    def active_faults(self) -> list[ActiveFault]:
        engine = getattr(self._agent, "engine", None)
        return engine.active_faults() if engine is not None else []

    def recent_events(self, limit: int) -> list[FaultDraft]:
        engine = getattr(self._agent, "engine", None)
        return engine.recent_events(limit) if engine is not None else []

    def maintenance_windows(self) -> list[MaintenanceWindow]:
        engine = getattr(self._agent, "engine", None)
        return engine.maintenance_windows() if engine is not None else []

    def acknowledgement(self, device_id: str, fault_type: str) -> AckInfo | None:
        lookup = getattr(getattr(self._agent, "actions", None), "acknowledged_by", None)
        return ack_info(lookup(device_id, fault_type)) if lookup is not None else None

    def uplink(self) -> UplinkStats | None:
        uplink = getattr(self._agent, "uplink", None)
        return uplink.stats() if uplink is not None else None

    def health(self) -> GatewayHealth:
        return self._probe.read()
