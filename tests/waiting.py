"""Waiting in tests for something another task, thread or process does (real time, bounded)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def until(
    cond: Callable[[], Any], limit_s: float = 15.0, what: str = "", every_s: float = 0.02
) -> Any:
    """Poll until cond() (sync or async) is truthy and return its value; fail after limit_s."""
    deadline = time.monotonic() + limit_s
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {limit_s}s: {what or cond}")
        await asyncio.sleep(every_s)
