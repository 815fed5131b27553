from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Mosquitto, mosquitto
from tests.snmp_servers import snmpd_agent, snmpsim_agent

__all__ = ["broker", "snmpd_agent", "snmpsim_agent"]  # fixtures for every test module

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto on a free loopback port, anonymous access allowed."""
    with mosquitto(tmp_path) as b:
        yield b
