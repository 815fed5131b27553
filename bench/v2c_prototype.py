"""A bench-only prototype: SNMPv2c GET / GETBULK with a hand-written BER codec (no pysnmp).

Not used by the agent (whose v2c path is gufo-snmp, collectors/snmp_fast.py). It shows what a
poll costs with nothing but a minimal codec: the same OIDs, the same conversion into a Reading
(collectors.base.convert), one asyncio UDP socket with request ids. No retries, no SNMPv3, no
tooBig handling: a lower bound to compare the agent with, not a collector.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from collectors.base import WrongType, convert
from collectors.reading import Reading, ReadingError, Value
from firmware_config.profiles import Profile, ValueSpec

Oid = tuple[int, ...]
GET, GETBULK, RESPONSE = 0xA0, 0xA5, 0xA2
END = 0x82  # endOfMibView; 0x80 noSuchObject, 0x81 noSuchInstance


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _len(len(payload)) + payload


def _int(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def _oid(oid: Oid) -> bytes:
    out = bytearray([40 * oid[0] + oid[1]])
    for arc in oid[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


_NULL_VARBIND_CACHE: dict[Oid, bytes] = {}


def _varbind(oid: Oid) -> bytes:
    vb = _NULL_VARBIND_CACHE.get(oid)
    if vb is None:
        vb = _NULL_VARBIND_CACHE[oid] = _tlv(0x30, _oid(oid) + b"\x05\x00")
    return vb


def request(community: bytes, pdu: int, rid: int, oids: Sequence[Oid], reps: int = 0) -> bytes:
    a, b = (0, reps) if pdu == GETBULK else (0, 0)  # non-repeaters, max-repetitions
    body = _int(rid) + _int(a) + _int(b) + _tlv(0x30, b"".join(_varbind(o) for o in oids))
    return _tlv(0x30, b"\x02\x01\x01" + _tlv(0x04, community) + _tlv(pdu, body))


def _head(data: bytes, i: int) -> tuple[int, int, int]:
    """tag, start of the content, its end."""
    tag, n = data[i], data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[i : i + k], "big")
        i += k
    return tag, i, i + n


def _decode_oid(raw: bytes) -> Oid:
    first = raw[0]
    out = [first // 40 if first < 80 else 2, first % 40 if first < 80 else first - 80]
    arc = 0
    for byte in raw[1:]:
        arc = (arc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            out.append(arc)
            arc = 0
    return tuple(out)


def response(data: bytes) -> tuple[int, int, int, list[tuple[Oid, Any]]]:
    """request id, error status, error index, [(oid, value)] (value None: no such / end)."""
    _, i, _ = _head(data, 0)  # message
    _, s, e = _head(data, i)  # version
    _, s, e = _head(data, e)  # community
    _, s, _ = _head(data, e)  # PDU
    values = []
    for _ in range(3):
        _, s, e = _head(data, s)
        values.append(int.from_bytes(data[s:e], "big", signed=True))
        s = e
    _, s, end = _head(data, s)  # varbind list
    out: list[tuple[Oid, Any]] = []
    while s < end:
        _, vs, ve = _head(data, s)
        _, os_, oe = _head(data, vs)
        oid = _decode_oid(data[os_:oe])
        vtag, xs, xe = _head(data, oe)
        raw = data[xs:xe]
        value: Any
        if vtag == 0x02:
            value = int.from_bytes(raw, "big", signed=True)
        elif vtag in (0x41, 0x42, 0x43, 0x46):
            value = int.from_bytes(raw, "big")
        elif vtag == 0x04:
            value = bytes(raw)
        elif vtag == 0x06:
            value = ".".join(map(str, _decode_oid(raw)))
        elif vtag == 0x40:
            value = ".".join(map(str, raw))
        else:
            value = None if vtag >= 0x80 else bytes(raw)
        out.append((oid, value))
        s = ve
    return values[0], values[1], values[2], out


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.ids = itertools.count(1)

    @classmethod
    async def open(cls) -> Client:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # not a subclass in 3.11

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            _, s, _ = _head(data, 0)
            _, s, e = _head(data, s)
            _, s, e = _head(data, e)
            _, s, _ = _head(data, e)
            _, s, e = _head(data, s)
            rid = int.from_bytes(data[s:e], "big", signed=True)
        except IndexError:
            return
        fut = self.waiting.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_result(data)

    async def ask(
        self, addr: tuple[str, int], community: bytes, pdu: int, oids: Sequence[Oid], reps: int = 0
    ) -> list[tuple[Oid, Any]]:
        assert self.transport is not None
        rid = next(self.ids) & 0x7FFFFFFF
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        self.transport.sendto(request(community, pdu, rid, oids, reps), addr)
        try:
            data = await asyncio.wait_for(fut, 2.0)
        finally:
            self.waiting.pop(rid, None)
        _, status, _, varbinds = response(data)
        if status:
            raise RuntimeError(f"error status {status}")
        return varbinds

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _convert(spec: ValueSpec, value: Any) -> Value | ReadingError:
    if value is None:
        return ReadingError(code="no_such_object", message=f"{spec.name}: missing")
    try:
        return convert(spec, value)
    except (WrongType, TypeError) as exc:
        return ReadingError(code="wrong_type", message=str(exc))


def _tuple(oid: str) -> Oid:
    return tuple(int(x) for x in oid.split("."))


async def poll(
    client: Client, addr: tuple[str, int], community: bytes, device_id: str, profile: Profile
) -> Reading:
    """One poll of a profile's scalars (one GET) and tables (GETBULK of all columns)."""
    at, started = datetime.now(UTC), time.monotonic()
    values: dict[str, Value] = {}
    tables: dict[str, dict[str, dict[str, Value]]] = {}
    errors: list[ReadingError] = []
    if profile.metrics:
        answer = await client.ask(addr, community, GET, [_tuple(m.oid) for m in profile.metrics])
        for metric, (_, value) in zip(profile.metrics, answer, strict=False):
            result = _convert(metric, value)
            if isinstance(result, ReadingError):
                errors.append(result)
            else:
                values[metric.name] = result
    for table in profile.tables:
        roots = [_tuple(c.oid) for c in table.columns]
        last = list(roots)
        active = list(range(len(roots)))
        rows: dict[Oid, dict[str, Value]] = {}
        reps = max(2, min(25, 60 // len(roots)))
        while active:
            answer = await client.ask(addr, community, GETBULK, [last[i] for i in active], reps)
            done: set[int] = set()
            for position, (oid, value) in enumerate(answer):
                i = active[position % len(active)]
                root = roots[i]
                if i in done or value is None or oid[: len(root)] != root or oid <= last[i]:
                    done.add(i)
                    continue
                last[i] = oid
                result = _convert(table.columns[i], value)
                if not isinstance(result, ReadingError):
                    rows.setdefault(oid[len(root) :], {})[table.columns[i].name] = result
            if not answer:
                break
            active = [i for i in active if i not in done]
        tables[table.name] = {".".join(map(str, k)): rows[k] for k in sorted(rows)}
    return Reading(
        device_id=device_id,
        at=at,
        reachable=True,
        values=values,
        tables=tables,
        errors=errors,
        duration_s=time.monotonic() - started,
    )
