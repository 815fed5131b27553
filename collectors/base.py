"""What every collector is, and the conversion of raw values through a profile's ValueSpec."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from collectors.reading import Reading, Value
from firmware_config.models import Device
from firmware_config.profiles import Profile, ValueSpec

Now = Callable[[], datetime]


class PolledCollector(Protocol):
    """A collector the scheduler calls: one poll of one device gives one Reading.

    It must not raise for device trouble (no answer, bad value): that goes into the Reading.
    """

    async def poll(self, device: Device, profile: Profile) -> Reading: ...

    async def close(self) -> None: ...


class WrongType(ValueError):  # noqa: N818 (reads better at the raise site)
    """A raw value that cannot be what the profile says it is."""


def convert(spec: ValueSpec, raw: int | float | str | bytes | bool) -> Value:
    """Apply type and scale to a raw value; raises WrongType naming what was expected."""
    if spec.type == "str":
        if isinstance(raw, bytes):
            return raw.decode("utf-8", errors="replace")
        if isinstance(raw, bool | int | float):
            return str(raw)
        return raw
    if isinstance(raw, bytes | str):
        raw = _number_in_text(spec, raw)
    if spec.type == "bool":
        return int(raw) in spec.true_values
    number = float(raw)
    if spec.type == "timeticks":
        return round(number / 100.0 * spec.scale, 6)
    if spec.type in ("int", "counter") and spec.scale == 1.0:
        return int(raw)
    return round(number * spec.scale, 6)  # 604 x 0.1 is 60.4, not 60.400000000000006


def _number_in_text(spec: ValueSpec, raw: bytes | str) -> int | float:
    """Some agents give numbers as text (NET-SNMP-EXTEND output such as '3'): accept those."""
    text = raw.decode("ascii", errors="replace") if isinstance(raw, bytes) else raw
    try:
        number = float(text.strip())
    except ValueError:
        raise WrongType(
            f"{spec.name}: expected a number ({spec.type}), got text {text[:40]!r}"
        ) from None
    if not math.isfinite(number):
        raise WrongType(f"{spec.name}: expected a finite number, got {text[:40]!r}")
    return int(number) if number.is_integer() else number
