"""The SNMPv2c fast path: GET and GETBULK through gufo-snmp instead of pysnmp.

gufo-snmp (Gufo Labs, Rust core, asyncio, wheels for x86_64 and aarch64) encodes the request,
sends it, and decodes the answer into plain Python values in native code, with the GIL released
around the socket calls. pysnmp's engine and pyasn1's BER codec cost about 5 ms of CPU for a
10-scalar GET and 37 ms for a 4 x 22 ifTable walk on the reference machine; this path costs
about a tenth of that (docs/performance.md, "Poll cost"). SNMPv3 and SET stay on pysnmp.

What gufo-snmp does differently, and how the collector makes up for it:
- a GET answer is a dict of the OIDs that had a value: noSuchObject, noSuchInstance,
  endOfMibView and the error-status (tooBig, genErr...) are not reported. An OID missing from the
  answer is no_such_object; an answer with no value at all to a GET of several OIDs may be a
  tooBig, so the collector splits the GET in halves until single OIDs remain.
- GETBULK walks one subtree per stream (no multi-column streams): a table's columns of one
  entry are walked as one subtree when they are at least half of the entry's columns up to the
  last one asked for (few round trips), else each column on its own (no unwanted data).
- no retries: this module retries a request that timed out (`tries` = retries + 1).
- one connected UDP socket per client: the collector opens one per poll and drops it after.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from collectors.snmp_values import Raw, text_or_hex

try:
    from gufo.snmp import SnmpDecodeError, SnmpError, SnmpVersion
    from gufo.snmp.aio import SnmpSession

    AVAILABLE = True
except ImportError:  # no wheel for this platform (e.g. 32-bit ARM): pysnmp serves v2c too
    AVAILABLE = False

    class SnmpError(Exception):  # type: ignore[no-redef]  # never raised without gufo-snmp
        """gufo-snmp's own error (decoding, encoding, socket)."""

    class SnmpDecodeError(SnmpError):  # type: ignore[no-redef]
        """An answer gufo-snmp could not decode."""


Oid = tuple[int, ...]
Value = None | str | bytes | int | float  # what gufo-snmp returns for a varbind


def raw(value: Value) -> Raw | float:
    """gufo-snmp's value as the collector's raw value (OCTET STRING: text or 0x-hex)."""
    if isinstance(value, bytes):
        return text_or_hex(value)
    if value is None:
        raise TypeError("no value: NULL")
    return value


@dataclass(frozen=True)
class Walk:
    """One GETBULK stream: the subtree `root`, serving the table columns `columns` (indexes)."""

    root: Oid
    columns: tuple[int, ...]

    @property
    def whole_entry(self) -> bool:
        return len(self.columns) > 1


def plan_walks(columns: list[Oid], whole_entries: bool = True) -> list[Walk]:
    """How to walk a table's columns with single-subtree GETBULK streams.

    Columns of one table entry (same OID but the last arc) are walked as the entry's subtree
    when they are at least half of the entry's columns up to the last one wanted, e.g. all 22
    ifTable columns (one stream instead of 22); otherwise, or without `whole_entries` (a table
    longer than its max_rows: an entry walk would pass every row of a column to reach the
    next), each column is walked on its own and stops at max_rows.
    """
    entries: dict[Oid, list[int]] = {}
    for index, column in enumerate(columns):
        entries.setdefault(column[:-1], []).append(index)
    walks: list[Walk] = []
    for entry, members in entries.items():
        span = max(columns[i][-1] for i in members)
        if whole_entries and len(members) > 1 and span <= 2 * len(members):
            walks.append(Walk(entry, tuple(members)))
        else:
            walks += [Walk(columns[i], (i,)) for i in members]
    return walks


class RequestTimedOut(Exception):  # noqa: N818 (the name pysnmp gives the same event)
    """No answer within timeout x tries (an ICMP port unreachable counts as no answer)."""


class FastV2c:
    """SNMPv2c requests to one agent through one gufo-snmp session (one UDP socket)."""

    def __init__(self, host: str, port: int, community: str, timeout: float, tries: int) -> None:
        self.tries = max(1, tries)
        self.session = SnmpSession(
            addr=host,
            port=port,
            community=community,
            version=SnmpVersion.v2c,
            timeout=timeout,
        )

    async def get(self, oids: list[str]) -> dict[str, Value]:
        """One GET; the OIDs that had a value. RequestTimedOut after every try."""
        for _ in range(self.tries):
            try:
                return await self.session.get_many(oids)
            except (TimeoutError, ConnectionRefusedError):
                continue
        raise RequestTimedOut

    async def walk(self, root: str, repetitions: int) -> AsyncGenerator[tuple[str, Value]]:
        """(OID, value) of the subtree `root` in order, GETBULK with `repetitions` per request."""
        stream = aiter(self.session.getbulk(root, max_repetitions=repetitions))
        while True:
            for _ in range(self.tries):
                try:
                    item = await anext(stream)
                except StopAsyncIteration:
                    return
                except (TimeoutError, ConnectionRefusedError):
                    continue
                else:
                    break
            else:
                raise RequestTimedOut
            yield item


__all__ = [
    "AVAILABLE",
    "FastV2c",
    "RequestTimedOut",
    "SnmpDecodeError",
    "SnmpError",
    "Walk",
    "plan_walks",
    "raw",
]
