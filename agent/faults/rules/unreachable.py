"""unreachable: the device does not answer (SNMP timeouts, or an MQTT device gone silent).

For an SNMP device one ICMP echo tells "SNMP agent dead" (host answers ping) from "device
offline" (no answer). icmplib pings without root when net.ipv4.ping_group_range allows the
agent's group; when ICMP cannot be sent the verdict says so ("unknown") instead of guessing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ClassVar, Literal

from icmplib import ICMPLibError, async_ping  # type: ignore[import-untyped]
from pydantic import Field

from agent.faults.rule import UNREACHABLE, Observation, RuleContext, RuleSettings
from agent.faults.rules._common import settings_as
from collectors.reading import Reading
from firmware_config.models import Device, DeviceKind
from firmware_config.profiles import Profile
from uplink.contract import EvidenceValue

# host, timeout_s, privileged -> whether it answered; raises when ICMP cannot be used
Ping = Callable[[str, float, bool], Awaitable[bool]]
IcmpVerdict = Literal["answers", "no_answer", "unknown", "not_tried"]


async def icmp_ping(host: str, timeout_s: float, privileged: bool) -> bool:
    """One ICMP echo with icmplib; raises icmplib's errors (permission, name lookup...)."""
    result = await async_ping(host, count=1, timeout=timeout_s, privileged=privileged)
    return bool(result.is_alive)


class UnreachableSettings(RuleSettings):
    raise_after: int = Field(
        3, ge=1, le=1000, description="Consecutive failed polls before the fault is raised"
    )
    clear_after: int = Field(2, ge=1, le=1000, description="Answered polls before it clears")
    icmp: bool = Field(True, description="SNMP devices: ping the host to tell agent from device")
    icmp_timeout_s: float = Field(1.0, gt=0, le=10, description="Wait for the echo reply")
    icmp_privileged: bool = Field(
        False,
        description="Raw ICMP socket (needs root or CAP_NET_RAW) instead of an unprivileged one",
    )


class Unreachable:
    name: ClassVar[str] = UNREACHABLE
    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({"streetlight", "hotspot"})
    settings_model: ClassVar[type[RuleSettings]] = UnreachableSettings

    def __init__(self, ping: Ping = icmp_ping) -> None:
        self._ping = ping

    def applies_to(self, device: Device, profile: Profile) -> bool:
        return device.kind in self.kinds

    async def observe(
        self, reading: Reading, ctx: RuleContext, settings: RuleSettings
    ) -> Observation | None:
        s = settings_as(settings, UnreachableSettings)
        if reading.reachable:
            return Observation(False, {"reachable": True}, "Perangkat menjawab")
        codes = sorted({e.code for e in reading.errors})
        evidence: dict[str, EvidenceValue] = {"reachable": False, "errors": list(codes)}
        if reading.errors:
            evidence["error"] = reading.errors[0].message[:200]
        if ctx.profile.protocol == "mqtt":
            period = ctx.profile.expected_period_s
            evidence["expected_period_s"] = period
            every = f" (seharusnya tiap {period:g} detik)" if period else ""
            return Observation(
                True, evidence, f"Pengendali tidak mengirim data MQTT{every}: periksa daya/modem"
            )
        host = ctx.device.host_port()[0]
        evidence["host"] = host
        verdict: IcmpVerdict = "not_tried"
        if s.icmp:
            verdict, detail = await self._icmp(host, s)
            if detail:
                evidence["icmp_detail"] = detail
        evidence["icmp"] = verdict
        return _verdict(evidence, host, verdict)

    async def _icmp(self, host: str, s: UnreachableSettings) -> tuple[IcmpVerdict, str]:
        try:
            async with asyncio.timeout(s.icmp_timeout_s + 1.0):
                alive = await self._ping(host, s.icmp_timeout_s, s.icmp_privileged)
        except (ICMPLibError, OSError, TimeoutError) as exc:
            return "unknown", f"{type(exc).__name__}: {exc}"[:200]
        return ("answers" if alive else "no_answer"), ""


def _verdict(evidence: dict[str, EvidenceValue], host: str, icmp: IcmpVerdict) -> Observation:
    if icmp == "answers":
        summary = (
            f"Agen SNMP mati (perangkat menjawab ping {host}, tetapi tidak SNMP): "
            "periksa layanan SNMP dan kredensialnya"
        )
        return Observation(True, evidence, summary, severity="minor")
    if icmp == "no_answer":
        summary = (
            f"Perangkat offline (tidak menjawab SNMP maupun ping {host}): "
            "periksa catu daya dan jaringan"
        )
        return Observation(True, evidence, summary)
    why = " (ping tidak dapat diuji)" if icmp == "unknown" else ""
    return Observation(True, evidence, f"Perangkat {host} tidak menjawab SNMP{why}")
