"""The SNMPv2c fast path's own parts (collectors/snmp_fast.py): walk plans, values, retries.

The collector's behaviour on this path (scalars, tables, errors, timeouts, tooBig, concurrency)
is tested in test_snmp_collector.py, where every test runs on both v2c paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from collectors import snmp_fast
from collectors.snmp import SnmpCollector
from collectors.snmp_fast import FastV2c, RequestTimedOut, Walk, plan_walks, raw
from collectors.snmp_values import oid_tuple
from firmware_config.models import Device
from firmware_config.profiles import Profile
from tests.snmp_servers import Snmpd, Snmpsim

pytestmark = pytest.mark.skipif(not snmp_fast.AVAILABLE, reason="gufo-snmp is not installed")

IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"


def cols(*oids: str) -> list[tuple[int, ...]]:
    return [oid_tuple(oid) for oid in oids]


def test_plan_walks_whole_entry_when_dense_else_column_by_column() -> None:
    every_if_column = cols(*(f"{IF}.{c}" for c in range(1, 23)))
    assert plan_walks(every_if_column) == [Walk(oid_tuple(IF), tuple(range(22)))]

    # ifDescr, ifType (2 of the first 3 columns): one entry walk; ifHCInOctets and
    # ifHCOutOctets (columns 6 and 10): each on its own, not 10 columns for 2.
    mixed = cols(f"{IF}.2", f"{IFX}.6", f"{IF}.3", f"{IFX}.10")
    assert plan_walks(mixed) == [
        Walk(oid_tuple(IF), (0, 2)),
        Walk(oid_tuple(f"{IFX}.6"), (1,)),
        Walk(oid_tuple(f"{IFX}.10"), (3,)),
    ]
    # one column alone is walked as a column even if it is the first
    assert plan_walks(cols(f"{IF}.1")) == [Walk(oid_tuple(f"{IF}.1"), (0,))]


def test_raw_values() -> None:
    assert raw(b"lamp-A") == "lamp-A"
    assert raw(b"\x00\xa0\xc9\x14\xc8)") == "0x00a0c914c829"  # a MAC address: hex
    assert raw(2**64 - 1) == 2**64 - 1
    assert raw("10.20.30.40") == "10.20.30.40"  # IpAddress and OIDs come as text
    with pytest.raises(TypeError):
        raw(None)


class Silent(asyncio.DatagramProtocol):
    """A UDP port that takes requests and never answers: counts them."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1


@pytest.fixture
async def silent() -> AsyncIterator[tuple[int, Silent]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Silent, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1], proto
    transport.close()


async def test_a_request_is_tried_retries_plus_one_times(silent: tuple[int, Silent]) -> None:
    port, counter = silent
    client = FastV2c("127.0.0.1", port, "public", timeout=0.1, tries=3)
    with pytest.raises(RequestTimedOut):
        await client.get(["1.3.6.1.2.1.1.3.0"])
    assert counter.received == 3

    with pytest.raises(RequestTimedOut):
        async for _ in client.walk(IF, 10):
            pass
    assert counter.received == 6


async def test_walk_and_get_against_snmpsim(snmpsim_agent: Snmpsim) -> None:
    client = FastV2c("127.0.0.1", snmpsim_agent.port, "routeros", timeout=1.0, tries=2)
    names = [name async for name, _ in client.walk(f"{IFX}.6", 5)]  # several GETBULKs
    assert names == [f"{IFX}.6.{i}" for i in range(1, 13)]
    answer = await client.get([f"{IF}.2.3", "1.3.6.1.2.1.1.99.0"])
    assert answer == {f"{IF}.2.3": b"WAN"}  # the missing object is just not there


async def test_collector_falls_back_to_pysnmp_without_gufo(
    snmpd_agent: Snmpd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snmp_fast, "AVAILABLE", False)
    collector = SnmpCollector(lambda: datetime.now(UTC))
    assert not collector.v2c_fast
    device = Device.model_validate(
        {
            "id": "pju-1",
            "kind": "hotspot",
            "profile": "t",
            "address": snmpd_agent.address,
            "snmp": {"community": snmpd_agent.community},
            "location": {"lat": -6.3, "lon": 106.7},
        }
    )
    profile = Profile.model_validate(
        {
            "name": "t",
            "protocol": "snmp",
            "kinds": ["hotspot"],
            "metrics": [{"name": "uptime", "oid": "1.3.6.1.2.1.1.3.0", "type": "timeticks"}],
        }
    )
    reading = await collector.poll(device, profile)
    assert reading.ok, reading.errors
    assert collector._engine is not None  # pysnmp did it
    await collector.close()
