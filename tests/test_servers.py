"""The test servers themselves: a port taken between free_port() and the start is not fatal."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.servers import Mosquitto, PortTakenError, wait_tcp


def test_mosquitto_moves_to_another_port_when_its_first_one_was_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:  # something else listening: it even accepts connections
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        broker = Mosquitto(tmp_path, port=taken)
        broker.start()
        try:
            assert broker.port != taken and broker.proc is not None and broker.proc.poll() is None
            wait_tcp(broker.port)
            broker.stop()
            broker.start()  # a restart keeps its port
            assert broker.proc is not None and broker.proc.poll() is None
        finally:
            broker.stop()


def test_a_restart_on_a_port_taken_meanwhile_fails_loudly(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    broker.start()
    broker.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past any TIME_WAIT
        squatter.bind(("127.0.0.1", broker.port))
        squatter.listen()
        try:
            broker.start()
        except PortTakenError:
            pass
        else:
            broker.stop()
            raise AssertionError("a restarted broker must keep its port, not move silently")
