"""An SNMP v2c agent for the demo: many simulated devices on one UDP port, chosen by community.

Like snmpsim, the v2c community names the device. Two kinds of device:
- a live street-light controller (`LampController`): its values are computed on every request,
  so a scenario that changes the object is seen by the next GET;
- a device served from a `.snmprec` recording of a real one, as recorded, except for the objects
  a scenario overrides (`override()`, e.g. an uplink's ifOperStatus going down).

Built on pysnmp 7's agent side: one SnmpEngine whose community table maps each community to an
SNMP context of the same name, and one custom MIB instrumentation controller per context that
answers GET, GETNEXT and GETBULK from a sorted OID table. A SET is refused with notWritable,
except on a lamp's 3416/1 Command (lamp.COMMAND): an INTEGER 0..100 switches it (`command()`).
It runs in the caller's asyncio event loop. An unknown community gets no answer (as on a real
agent), and so does a lamp whose `online` is False.

    sim = SnmpSimulator()                       # host="127.0.0.1", port=0: a free port
    lamp = sim.add_lamp("pju-0001", LampController(rated_w=60))
    sim.add_recording("routeros", RECORDINGS / "routeros.snmprec")
    port = await sim.start()                    # devices may also be added after start()
    lamp.fail_lamp()                            # the next GET sees it
    sim.override("routeros", "1.3.6.1.2.1.2.2.1.8.3", 2)   # a recording changed live: WAN down
    sim.clear_override("routeros")              # back to the recording as it is
    # snmpset -v2c -c pju-0001 127.0.0.1:PORT 1.3.6.1.4.1.32473.3416.1.1 i 100   (lamp on, 100 %)
    sim.close()                                 # or: async with SnmpSimulator() as sim: ...
"""

from __future__ import annotations

import bisect
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.error import PySnmpError
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.proto.api import v2c
from pysnmp.smi import error as smi_error
from pysnmp.smi import instrum

from agent.demo.lamp import COMMAND, LampController
from agent.demo.snmprec import TYPE_TAGS, Oid, Record, parse_oid, read_snmprec

RECORDINGS = Path(__file__).parent / "recordings"

_TYPES: dict[str, Callable[[Any], Any]] = {
    "2": v2c.Integer,
    "4": lambda text: v2c.OctetString(text.encode("utf-8")),
    "4x": v2c.OctetString,
    "6": v2c.ObjectIdentifier,
    "64": v2c.IpAddress,
    "65": v2c.Counter32,
    "66": v2c.Gauge32,
    "67": v2c.TimeTicks,
    "70": v2c.Counter64,
}


def to_snmp(record: Record) -> Any:
    """The pysnmp value of a record."""
    return _TYPES[record.tag](record.value)


class _SilentError(PySnmpError):  # type: ignore[misc]
    """Raised to drop a request without an answer (a PySnmpError that is not an SmiError)."""


class OidTable:
    """A sorted, read-only view of one device's objects at one moment."""

    def __init__(self, records: Sequence[Record]) -> None:
        self._oids: list[Oid] = [r.oid for r in records]
        self._values: dict[Oid, Any] = {r.oid: to_snmp(r) for r in records}
        # objects: an instance's OID without its last sub-identifier (exact for scalars and
        # single-index tables; good enough for the rest)
        self._objects = {oid[:-1] for oid in self._oids}

    def __len__(self) -> int:
        return len(self._oids)

    def get(self, oid: Oid) -> Any:
        value = self._values.get(oid)
        if value is not None:
            return value
        if any(oid[:n] in self._objects for n in range(1, len(oid) + 1)):
            return v2c.NoSuchInstance()
        return v2c.NoSuchObject()

    def next(self, oid: Oid) -> tuple[Oid, Any] | None:
        """The first object instance after `oid`, or None at the end of the view."""
        i = bisect.bisect_right(self._oids, oid)
        if i == len(self._oids):
            return None
        found = self._oids[i]
        return found, self._values[found]


class _Recording:
    """A recording served as it is, except for the objects a scenario overrides."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = {r.oid: r for r in records}
        self.overrides: dict[Oid, Record] = {}
        self._table: OidTable | None = None

    def table(self) -> OidTable:
        if self._table is None:
            merged = {**self.records, **self.overrides}
            self._table = OidTable([merged[oid] for oid in sorted(merged)])
        return self._table

    def changed(self) -> None:
        self._table = None


Writer = Callable[[Oid, Any], None]  # applies a SET of one object; raises an smi_error to refuse


class _DeviceInstrum(instrum.AbstractMibInstrumController):  # type: ignore[misc]
    """The MIB of one simulated device; `view()` gives its table now, or None when silent."""

    def __init__(self, view: Callable[[], OidTable | None], write: Writer | None = None) -> None:
        self._view = view
        self._write = write

    def _table(self) -> OidTable:
        try:
            table = self._view()
        except Exception as exc:  # a broken simulated device answers genErr, like a real one
            raise smi_error.GenError(idx=0) from exc
        if table is None:
            raise _SilentError("device is offline")
        return table

    def read_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        table = self._table()
        return [(name, table.get(tuple(name))) for name, _ in var_binds]

    def read_next_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        table = self._table()
        out: list[tuple[Any, Any]] = []
        for name, _ in var_binds:
            found = table.next(tuple(name))
            if found is None:
                out.append((name, v2c.EndOfMibView()))
            else:
                out.append((rfc1902.ObjectName(found[0]), found[1]))
        return out

    def write_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        self._table()
        if self._write is None or not var_binds:
            raise smi_error.NotWritableError(name=var_binds[0][0] if var_binds else None, idx=0)
        for idx, (name, value) in enumerate(var_binds):  # all or nothing: check every one first
            _check_command(tuple(name), value, idx)
        for name, value in var_binds:
            self._write(tuple(name), value)
        return [(name, value) for name, value in var_binds]


def _check_command(oid: Oid, value: Any, idx: int) -> None:
    """A lamp accepts a SET of its Command only, an INTEGER 0..100."""
    if oid != COMMAND:
        raise smi_error.NotWritableError(name=oid, idx=idx)
    if value.tagSet != v2c.Integer.tagSet:
        raise smi_error.WrongTypeError(name=oid, idx=idx)
    if not 0 <= int(value) <= 100:
        raise smi_error.WrongValueError(name=oid, idx=idx)


class _BulkResponder(cmdrsp.BulkCommandResponder):  # type: ignore[misc]
    """GETBULK that ends its answer with the first repetition in which every repeated variable is
    endOfMibView, as net-snmp's snmpd does, instead of padding max-repetitions with them."""

    _shape: tuple[int, int] = (0, 0)  # non-repeaters, repeaters of the request being answered

    def handle_management_operation(
        self, snmp_engine: Any, state_reference: Any, context_name: Any, pdu: Any
    ) -> None:
        count = len(v2c.apiPDU.get_varbinds(pdu))
        non_repeaters = min(max(int(v2c.apiBulkPDU.get_non_repeaters(pdu)), 0), count)
        self._shape = (non_repeaters, count - non_repeaters)
        super().handle_management_operation(snmp_engine, state_reference, context_name, pdu)

    def send_varbinds(
        self,
        snmp_engine: Any,
        state_reference: Any,
        error_status: Any,
        error_index: Any,
        var_binds: list[tuple[Any, Any]],
    ) -> None:
        non_repeaters, repeaters = self._shape
        if repeaters:
            for start in range(non_repeaters, len(var_binds), repeaters):
                repetition = var_binds[start : start + repeaters]
                if all(isinstance(value, rfc1905.EndOfMibView) for _, value in repetition):
                    var_binds = var_binds[: start + repeaters]
                    break
        super().send_varbinds(snmp_engine, state_reference, error_status, error_index, var_binds)


class SnmpSimulator:
    """Simulated SNMP v2c devices on one UDP port, selected by community."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._devices: dict[str, _DeviceInstrum] = {}
        self._engine: Any = None
        self._context: Any = None
        self._sock: socket.socket | None = None
        self._lamps: dict[str, LampController] = {}
        self._recordings: dict[str, _Recording] = {}

    # --- devices -------------------------------------------------------------------------------
    def add_lamp(self, community: str, lamp: LampController) -> LampController:
        """Serve a live street-light controller; returns it, for the scenario to change."""

        def view() -> OidTable | None:
            return OidTable(lamp.records()) if lamp.online else None

        def write(oid: Oid, value: Any) -> None:
            lamp.command(int(value))

        self._add(community, view, write)
        self._lamps[community] = lamp
        return lamp

    def add_recording(self, community: str, path: Path) -> int:
        """Serve a `.snmprec` recording unchanged; returns its number of records."""
        recording = _Recording(read_snmprec(path))
        self._add(community, recording.table)
        self._recordings[community] = recording
        return len(recording.records)

    def override(self, community: str, oid: str | Oid, value: int | str, tag: str = "2") -> None:
        """Serve `value` (snmprec type `tag`, INTEGER by default) for one object of a recording,
        from the next request on, e.g. ifOperStatus of its uplink: override(c, IF_OPER + ".3", 2).
        """
        recording = self._recordings[community]
        key = parse_oid(oid) if isinstance(oid, str) else tuple(oid)
        if tag not in TYPE_TAGS:
            raise ValueError(f"unknown snmprec type {tag!r}")
        record = Record(key, tag, value)
        to_snmp(record)  # a value that does not fit the type fails here, not in a request
        recording.overrides[key] = record
        recording.changed()

    def clear_override(self, community: str, oid: str | Oid | None = None) -> None:
        """Back to the recorded value of one object, or of every object (oid None)."""
        recording = self._recordings[community]
        if oid is None:
            recording.overrides.clear()
        else:
            recording.overrides.pop(parse_oid(oid) if isinstance(oid, str) else tuple(oid), None)
        recording.changed()

    def lamp(self, community: str) -> LampController:
        return self._lamps[community]

    @property
    def communities(self) -> list[str]:
        return sorted(self._devices)

    def _add(
        self, community: str, view: Callable[[], OidTable | None], write: Writer | None = None
    ) -> None:
        if not community or not community.isascii():
            raise ValueError(f"community must be non-empty ASCII: {community!r}")
        if community in self._devices:
            raise ValueError(f"community {community!r} is already served")
        self._devices[community] = _DeviceInstrum(view, write)
        if self._context is not None:  # already serving: register it now
            self._register(len(self._devices), community)

    def _register(self, number: int, community: str) -> None:
        # community -> security name 'dev<n>' -> context named like the community -> its MIB
        config.add_v1_system(self._engine, f"dev{number}", community, contextName=community)
        self._context.register_context_name(community.encode(), self._devices[community])

    # --- life cycle ----------------------------------------------------------------------------
    async def start(self) -> int:
        """Bind the UDP port in the running event loop and answer requests; returns the port."""
        if self._sock is not None:
            raise RuntimeError("already started")
        self._sock = sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
            sock.setblocking(False)
            self.port = int(sock.getsockname()[1])
            self._engine = snmp_engine = engine.SnmpEngine()
            transport = udp.UdpAsyncioTransport().open_server_mode(sock=sock)
            config.add_transport(snmp_engine, udp.DOMAIN_NAME, transport)
            await transport._lport  # the endpoint exists once this is done
            self._context = context.SnmpContext(snmp_engine)
            for number, community in enumerate(self._devices, start=1):
                self._register(number, community)
            for responder in (
                cmdrsp.GetCommandResponder,
                cmdrsp.NextCommandResponder,
                _BulkResponder,
                cmdrsp.SetCommandResponder,
            ):
                responder(snmp_engine, self._context)
        except BaseException:
            self.close()
            raise
        return self.port

    def close(self) -> None:
        """Stop answering and release the port (safe to call twice)."""
        if self._engine is not None:
            self._engine.close_dispatcher()  # closes the transport, which closes its socket later
            self._engine = None
            self._context = None
        if self._sock is not None:
            self._sock.close()  # ... so close it now: the port is free when close() returns
            self._sock = None

    async def __aenter__(self) -> SnmpSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
