"""Real SNMP agents for the tests: net-snmp's snmpd and snmpsim, on free loopback UDP ports.

Both are started as child processes with everything they write kept under the test's own
directory, and are only handed to the test once they answer an SNMP GET.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import free_port, stop

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


def _ber(tag: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 0x80:
        return bytes([tag, size]) + payload
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + payload


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(x) for x in dotted.split("."))
    out = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _ber(0x06, bytes(out))


def v2c_get_packet(community: str, oid: str = SYS_UPTIME, request_id: int = 1) -> bytes:
    """A hand-encoded SNMPv2c GetRequest (so the readiness probe needs no SNMP library)."""
    varbind = _ber(0x30, _oid(oid) + b"\x05\x00")
    pdu = _ber(
        0xA0,
        _ber(0x02, request_id.to_bytes(4, "big"))
        + b"\x02\x01\x00\x02\x01\x00"
        + _ber(0x30, varbind),
    )
    return _ber(0x30, b"\x02\x01\x01" + _ber(0x04, community.encode()) + pdu)


def snmp_answers(port: int, community: str, timeout: float = 0.3) -> bool:
    """True when an agent on 127.0.0.1:port answers a v2c GET with this community."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(v2c_get_packet(community), ("127.0.0.1", port))
        try:
            data = s.recv(65535)
        except OSError:
            return False
        return data[:1] == b"\x30"


def wait_snmp(
    port: int, community: str, proc: subprocess.Popen[bytes], timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"SNMP agent exited with code {proc.returncode}")
        if snmp_answers(port, community):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no SNMP agent answers on 127.0.0.1:{port} after {timeout}s")


@dataclass(frozen=True)
class V3User:
    """A USM user created in snmpd.conf; protocols are net-snmp's names (SHA, SHA-512, AES-256)."""

    name: str
    auth_protocol: str | None = None
    auth_key: str | None = None
    priv_protocol: str | None = None
    priv_key: str | None = None

    @property
    def level(self) -> str:
        if self.priv_protocol:
            return "authpriv"
        return "auth" if self.auth_protocol else "noauth"

    def conf_lines(self) -> list[str]:
        create = ["createUser", self.name]
        if self.auth_protocol and self.auth_key:
            create += [self.auth_protocol, self.auth_key]
            if self.priv_protocol and self.priv_key:
                create += [self.priv_protocol, self.priv_key]
        return [" ".join(create), f"rouser {self.name} {self.level}"]


DEFAULT_V3_USERS = (
    V3User("siaran", "SHA", "siaran-auth-1", "AES", "siaran-priv-1"),
    V3User("strong", "SHA-512", "strong-auth-1", "AES-256", "strong-priv-1"),
    V3User("legacy", "MD5", "legacy-auth-1", "DES", "legacy-priv-1"),
    V3User("signonly", "SHA-256", "signonly-auth-1"),
    V3User("plain"),
)


@dataclass
class Snmpd:
    """net-snmp snmpd with a v2c community and SNMPv3 users, serving its own MIB-II/IF-MIB."""

    workdir: Path
    port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    community: str = "siaran-ro"
    v3_users: tuple[V3User, ...] = DEFAULT_V3_USERS
    extra_conf: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.workdir / "snmpd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def user(self, name: str) -> V3User:
        return next(u for u in self.v3_users if u.name == name)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [f"rocommunity {self.community} 127.0.0.1"]
        for user in self.v3_users:
            lines += user.conf_lines()
        (self.workdir / "snmpd.conf").write_text("\n".join(lines + self.extra_conf) + "\n")
        exe = shutil.which("snmpd") or "/usr/sbin/snmpd"
        cmd = [exe, "-f", "-m", "", "-M", "/nonexistent", "-C", "-c"]
        cmd += [str(self.workdir / "snmpd.conf"), "-Lf", str(self.workdir / "snmpd.log")]
        cmd += [f"udp:127.0.0.1:{self.port}"]
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(self.workdir))
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_snmp(self.port, self.community, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"snmpd did not start ({exc}):\n{self.log}") from None

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def kill(self) -> None:
        """Kill -9: the agent vanishes without a word, like a device losing power."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None


SNMPSIM_V3_USER = V3User("simuser", "SHA", "simuser-auth-1", "AES", "simuser-priv-1")


@dataclass
class Snmpsim:
    """One snmpsim process; each .snmprec in data_dir is an agent whose v2c community and
    SNMPv3 context name are the file stem. v3_user (SHA/AES names only) reaches them all."""

    workdir: Path
    data_dir: Path
    port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    v3_user: V3User | None = SNMPSIM_V3_USER
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def communities(self) -> list[str]:
        return sorted(p.stem for p in self.data_dir.glob("*.snmprec"))

    @property
    def log(self) -> str:
        path = self.workdir / "snmpsim.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        exe = shutil.which("snmpsim-command-responder") or "snmpsim-command-responder"
        cmd = [
            exe,
            f"--cache-dir={self.workdir / 'cache'}",
            f"--logging-method=file:{self.workdir / 'snmpsim.log'}",
            "--v3-engine-id=auto",
            f"--data-dir={self.data_dir}",
        ]
        user = self.v3_user
        if user is not None:
            cmd.append(f"--v3-user={user.name}")
            if user.auth_protocol and user.auth_key:
                cmd += [f"--v3-auth-proto={user.auth_protocol}", f"--v3-auth-key={user.auth_key}"]
            if user.priv_protocol and user.priv_key:
                cmd += [f"--v3-priv-proto={user.priv_protocol}", f"--v3-priv-key={user.priv_key}"]
        cmd.append(f"--agent-udpv4-endpoint=127.0.0.1:{self.port}")
        env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_snmp(self.port, self.communities[0], self.proc, timeout=30.0)
        except (RuntimeError, TimeoutError, IndexError) as exc:
            self.stop()
            raise RuntimeError(f"snmpsim did not start ({exc!r}):\n{self.log}") from None

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@contextmanager
def snmpd(
    workdir: Path, users: Iterable[V3User] = DEFAULT_V3_USERS, extra_conf: list[str] | None = None
) -> Iterator[Snmpd]:
    agent = Snmpd(workdir, v3_users=tuple(users), extra_conf=extra_conf or [])
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


@contextmanager
def snmpsim(workdir: Path, data_dir: Path) -> Iterator[Snmpsim]:
    """snmpsim serving every .snmprec file of data_dir (copy only what you need there)."""
    sim = Snmpsim(workdir, data_dir)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


SNMPREC_DIR = Path(__file__).parent / "fixtures" / "snmprec"


@pytest.fixture(scope="module")
def snmpd_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpd]:
    """snmpd shared by a test module: community 'siaran-ro' and the users of DEFAULT_V3_USERS.

    Do not stop or kill it in a test: start your own with `snmpd(tmp_path)` for that.
    """
    with snmpd(tmp_path_factory.mktemp("snmpd")) as agent:
        yield agent


@pytest.fixture(scope="module")
def snmpsim_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpsim]:
    """snmpsim serving tests/fixtures/snmprec/*.snmprec, one agent per file (community = stem)."""
    with snmpsim(tmp_path_factory.mktemp("snmpsim"), SNMPREC_DIR) as sim:
        yield sim
