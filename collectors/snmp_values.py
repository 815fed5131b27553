"""pysnmp values to the plain Python values that `collectors.base.convert` takes.

Numbers (INTEGER, Gauge32, Counter32/64, TimeTicks, Unsigned32) become int, IpAddress a dotted
string, OBJECT IDENTIFIER a dotted string, OCTET STRING its text when it is printable UTF-8 or
else '0x' and its hex digits (net-snmp's Hex-STRING, pysnmp's prettyPrint), e.g. a MAC address.
"""

from __future__ import annotations

from typing import Any

from pyasn1.type import univ
from pysnmp.proto import rfc1902, rfc1905

# Exception values a v2c/v3 agent puts in a varbind instead of a value.
MISSING = (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView)

Raw = int | str | bytes


def is_missing(value: Any) -> bool:
    """noSuchObject, noSuchInstance or endOfMibView (or a NULL, which carries no value either)."""
    return isinstance(value, (*MISSING, univ.Null))


def missing_name(value: Any) -> str:
    if isinstance(value, rfc1905.NoSuchObject):
        return "noSuchObject"
    if isinstance(value, rfc1905.NoSuchInstance):
        return "noSuchInstance"
    if isinstance(value, rfc1905.EndOfMibView):
        return "endOfMibView"
    return "NULL"


def text_or_hex(data: bytes) -> str:
    """Printable UTF-8 text as such (trailing NULs dropped), anything else as '0x' + hex."""
    stripped = data.rstrip(b"\x00")
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + data.hex()
    if all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return text
    return "0x" + data.hex()


def raw_value(value: Any) -> Raw:
    """The Python value of a pysnmp/pyasn1 value; raises TypeError for one without a value."""
    if is_missing(value):
        raise TypeError(f"no value: {missing_name(value)}")
    if isinstance(value, rfc1902.IpAddress):
        return ".".join(str(b) for b in value.asNumbers())
    if isinstance(value, univ.Integer):
        return int(value)
    if isinstance(value, univ.OctetString):
        return text_or_hex(value.asOctets())
    if isinstance(value, univ.ObjectIdentifier):
        return str(value)
    raise TypeError(f"unsupported SNMP type {type(value).__name__}")


def oid_tuple(oid: str) -> tuple[int, ...]:
    return tuple(int(arc) for arc in oid.split("."))


def oid_str(oid: tuple[int, ...]) -> str:
    return ".".join(str(arc) for arc in oid)
