"""Read snmpsim `.snmprec` recordings: one `OID|TYPE|VALUE` line per object instance.

Only the plain types of a recording are understood (no snmpsim variation modules such as
`2:writecache`): 2 INTEGER, 4 OCTET STRING (text), 4x OCTET STRING (hex), 6 OBJECT IDENTIFIER,
64 IpAddress, 65 Counter32, 66 Gauge32, 67 TimeTicks, 70 Counter64.
The values stay plain Python (int, str, bytes) so that tests can use them without pysnmp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

Oid = tuple[int, ...]

TYPE_TAGS = ("2", "4", "4x", "6", "64", "65", "66", "67", "70")
_NUMERIC_OID = re.compile(r"^\d+(\.\d+)*$")


class SnmprecError(ValueError):
    """A line that is not a plain snmprec record."""


@dataclass(frozen=True)
class Record:
    oid: Oid
    tag: str  # one of TYPE_TAGS
    value: int | str | bytes  # int for numbers; str for 4 (text), 6 and 64; bytes for 4x


def parse_oid(text: str) -> Oid:
    """'1.3.6.1.2.1.1.3.0' (a leading dot is allowed) -> (1, 3, 6, 1, 2, 1, 1, 3, 0)."""
    text = text.strip().lstrip(".")
    if not _NUMERIC_OID.match(text):
        raise ValueError(f"not a numeric OID: {text!r}")
    return tuple(int(part) for part in text.split("."))


def format_oid(oid: Oid) -> str:
    return ".".join(str(part) for part in oid)


def parse_line(line: str) -> Record:
    """One 'OID|TYPE|VALUE' line (without its newline) -> Record; raises SnmprecError."""
    parts = line.split("|", 2)
    if len(parts) != 3:
        raise SnmprecError("expected OID|TYPE|VALUE")
    oid_text, tag, raw = parts
    try:
        oid = parse_oid(oid_text)
    except ValueError as exc:
        raise SnmprecError(str(exc)) from None
    if tag not in TYPE_TAGS:
        raise SnmprecError(f"unsupported type {tag!r} (plain types only: {', '.join(TYPE_TAGS)})")
    value: int | str | bytes
    try:
        if tag == "4":
            value = raw
        elif tag == "4x":
            value = bytes.fromhex(raw)
        elif tag == "6":
            parse_oid(raw)
            value = raw
        elif tag == "64":
            octets = [int(p) for p in raw.split(".")]
            if len(octets) != 4 or not all(0 <= o <= 255 for o in octets):
                raise ValueError(f"not an IPv4 address: {raw!r}")
            value = raw
        else:
            value = int(raw)
    except ValueError as exc:
        raise SnmprecError(f"bad value for type {tag}: {exc}") from None
    return Record(oid, tag, value)


def parse_snmprec(text: str, source: str = "<text>") -> list[Record]:
    """All records of a recording, sorted by OID; blank lines and '#' comments are skipped."""
    records: list[Record] = []
    seen: set[Oid] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            record = parse_line(line)
        except SnmprecError as exc:
            raise SnmprecError(f"{source}:{number}: {exc}") from None
        if record.oid in seen:
            raise SnmprecError(f"{source}:{number}: OID {format_oid(record.oid)} given twice")
        seen.add(record.oid)
        records.append(record)
    records.sort(key=lambda r: r.oid)
    return records


def read_snmprec(path: Path) -> list[Record]:
    return parse_snmprec(path.read_text(encoding="utf-8"), str(path))
