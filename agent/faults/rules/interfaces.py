"""Hotspot interfaces (IF-MIB): uplink_down (the WAN named by the inventory's uplink_if) and
radio_down (WiFi radios, ifType 71, enabled but not running).

RouterOS reports an AP-mode wlan as not running while no client is associated (the recorded
hAP ac lite: both idle APs are "down"); with its wireless_aps table at hand such an idle radio
counts as up, and no_clients judges whether the site should have had clients.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from agent.faults.rule import Observation, RuleContext, RuleSettings, Severity
from agent.faults.rules._common import (
    as_number,
    has_all,
    has_any,
    names_list,
    rows,
    settings_as,
    value_list,
)
from collectors.reading import Reading, Value
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue

UP, DOWN = 1, 2
OPER = {1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "notPresent",
        7: "lowerLayerDown"}  # fmt: skip
IEEE80211 = 71


def if_label(index: str, row: dict[str, Value]) -> str:
    for key in ("if_name", "if_descr"):
        value = row.get(key)
        if isinstance(value, str) and value:
            return value
    return f"ifIndex {index}"


def find_interface(
    table: dict[str, dict[str, Value]], name: str
) -> tuple[str, dict[str, Value]] | None:
    """The row whose ifName or ifDescr is `name` (exactly, else ignoring case)."""
    for exact in (True, False):
        for index, row in table.items():
            for key in ("if_name", "if_descr"):
                value = row.get(key)
                if isinstance(value, str) and (
                    value == name if exact else value.casefold() == name.casefold()
                ):
                    return index, row
    return None


def status(row: dict[str, Value], column: str) -> int | None:
    value = as_number(row.get(column))
    return int(value) if value is not None else None


def status_text(code: int | None) -> str:
    return OPER.get(code, str(code)) if code is not None else "?"


class UplinkDownSettings(RuleSettings):
    severity: Severity = "major"
    missing_is_down: bool = Field(
        True,
        description="An uplink absent from the interface table is down (a PPP link vanishes "
        "when it drops); False: not judged",
    )
    admin_down_is_down: bool = Field(
        True, description="An uplink disabled by an operator (admin down) counts as down too"
    )


class UplinkDown:
    name: ClassVar[str] = "uplink_down"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = UplinkDownSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return (
            device.kind in self.kinds
            and device.uplink_if is not None
            and has_all(profile, "interfaces", "if_oper_status")
            and has_any(profile, "if_name", "if_descr")
        )

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, UplinkDownSettings)
        wanted = ctx.device.uplink_if
        table = rows(reading, "interfaces")
        if wanted is None or not table:
            return None
        found = find_interface(table, wanted)
        evidence: dict[str, EvidenceValue] = {"uplink_if": wanted}
        if found is None:
            if not s.missing_is_down:
                return None
            known = sorted(if_label(i, r) for i, r in table.items())
            evidence |= {"found": False, "interfaces": value_list(known)}
            summary = (
                f"Uplink {wanted} tidak ada di perangkat (ada: {names_list(known)}): "
                "koneksi PPP/WAN terputus, atau periksa uplink_if di inventaris"
            )
            return Observation(True, evidence, summary)
        index, row = found
        admin, oper = status(row, "if_admin_status"), status(row, "if_oper_status")
        evidence |= {"found": True, "if_index": index, "admin_status": admin, "oper_status": oper}
        if oper is None:
            return None
        if oper == UP:
            return Observation(False, evidence, f"Uplink {wanted} aktif")
        if admin == DOWN:
            if not s.admin_down_is_down:
                return None
            return Observation(
                True,
                evidence,
                f"Uplink {wanted} dinonaktifkan (admin down): hotspot tanpa internet",
            )
        summary = (
            f"Uplink {wanted} putus (status {status_text(oper)}): hotspot tanpa internet; "
            "periksa kabel/modem/ISP"
        )
        return Observation(True, evidence, summary)


class RadioDownSettings(RuleSettings):
    idle_ap_is_up: bool = Field(
        True, description="A radio with a wireless_aps row and no clients counts as idle, not down"
    )
    ignore: list[str] = Field(
        default_factory=list, description="Radio interface names to leave alone"
    )
    radio_types: list[int] = Field(
        default_factory=lambda: [IEEE80211], description="ifType values that are WiFi radios"
    )


class RadioDown:
    name: ClassVar[str] = "radio_down"
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = RadioDownSettings

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds and has_all(
            profile, "interfaces", "if_type", "if_oper_status"
        )

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, RadioDownSettings)
        table = rows(reading, "interfaces")
        aps = rows(reading, "wireless_aps")
        radios = {
            i: r
            for i, r in table.items()
            if status(r, "if_type") in s.radio_types and if_label(i, r) not in s.ignore
        }
        judged = {i: r for i, r in radios.items() if status(r, "if_oper_status") is not None}
        if not judged:
            return None
        down, idle, disabled = [], [], []
        for index, row in sorted(judged.items(), key=lambda item: _index_key(item[0])):
            label = if_label(index, row)
            if status(row, "if_admin_status") == DOWN:
                disabled.append(label)
            elif status(row, "if_oper_status") != UP:
                clients = as_number(aps.get(index, {}).get("client_count"))
                if s.idle_ap_is_up and clients == 0:
                    idle.append(label)
                else:
                    down.append(label)
        evidence: dict[str, EvidenceValue] = {
            "radios": value_list(if_label(i, r) for i, r in judged.items()),
            "down": value_list(down),
            "idle_no_clients": value_list(idle),
            "disabled": value_list(disabled),
        }
        if down:
            summary = f"Radio WiFi mati: {names_list(down)}: periksa/restart access point"
            return Observation(True, evidence, summary)
        return Observation(False, evidence, f"Radio WiFi aktif ({len(judged) - len(disabled)})")


def _index_key(index: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in index.split("."))
    except ValueError:
        return (2**31,)
