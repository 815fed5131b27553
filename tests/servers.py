"""Real servers for the tests, started on free loopback ports (never the machine's own)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on 127.0.0.1 now (TCP by default, SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tcp(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PortTakenError(RuntimeError):
    """Another process took the port between free_port() and the server's start."""


@dataclass
class Mosquitto:
    """A mosquitto broker of the test's own; extra_conf lines are appended to its config."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_conf: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    _started: bool = False

    @property
    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Start; on the first start a port taken meanwhile (free_port() is only a guess) is
        traded for another one. A restart keeps its port, as a real broker would."""
        for attempt in range(1, 4):
            try:
                self._start_on_port()
                self._started = True
                return
            except PortTakenError:
                if self._started or attempt == 3:
                    raise
                self.port = free_port()

    def _start_on_port(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type all",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")
        if not any(
            line.startswith(("allow_anonymous", "password_file")) for line in self.extra_conf
        ):
            lines.append("allow_anonymous true")
        conf.write_text("\n".join(lines + self.extra_conf) + "\n")
        self.proc = proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_tcp(self.port)
            time.sleep(0.05)  # what answered must be this broker, still running
            if proc.poll() is not None:
                raise TimeoutError("exited")
        except TimeoutError:
            stop(proc)
            self.proc = None
            if "Address already in use" in self.log:
                raise PortTakenError(self.port) from None
            raise RuntimeError(f"mosquitto did not start:\n{self.log}") from None

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@contextmanager
def mosquitto(workdir: Path, extra_conf: list[str] | None = None) -> Iterator[Mosquitto]:
    broker = Mosquitto(workdir, extra_conf=extra_conf or [])
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
