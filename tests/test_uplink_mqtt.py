"""The uplink against a real mosquitto started by the tests: contract, TLS, ACL, outages, kills."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from paho.mqtt.publish import single

from firmware_config.models import BrokerConfig, SecretSource, TlsConfig
from firmware_config.uplink_config import OutboxConfig
from tests.servers import Mosquitto
from tests.tls_certs import make_ca
from tests.waiting import until
from uplink.contract import (
    Ack,
    Command,
    DeviceSamples,
    FaultDraft,
    GatewayStatus,
    TelemetryDraft,
    Topics,
    encode,
)
from uplink.mqtt_link import ConnectRefusedError, LinkError, LinkOptions, MqttLink, tls_context
from uplink.publisher import GatewayInfo, Uplink
from uplink.tail import tail

ROOT = Path(__file__).resolve().parent.parent
GW = "gw-01"
TOPICS = Topics("siaran/v1", GW)
INFO = GatewayInfo("0.1.0-test", "cfg-test", 3, True)


def fault(i: int) -> FaultDraft:
    now = datetime.now(UTC)
    return FaultDraft(
        device_id=f"dev-{i}",
        device_kind="streetlight",
        fault_type="lamp_out",
        state="raised",
        severity="major",
        first_seen=now,
        observed_at=now,
        clock_synced=True,
        circuit="PNL-1",
        evidence={"i": i, "power_w": 0.0},
    )


def telemetry(i: int, devices: int = 5) -> TelemetryDraft:
    now = datetime.now(UTC)
    return TelemetryDraft(
        samples=[
            DeviceSamples(device_id=f"dev-{d}", at=now, values={"i": i, "power_w": 70.5})
            for d in range(devices)
        ]
    )


class Central:
    """A stand-in for the central consumer: a persistent MQTT 5 session on the whole tree."""

    def __init__(self, port: int, **options: object) -> None:
        self.port = port
        self.options = options
        self.messages: list[tuple[str, dict[str, object], bool]] = []
        self.link: MqttLink | None = None

    def _on(self, topic: str, payload: bytes, retained: bool) -> None:
        self.messages.append((topic, json.loads(payload), retained))

    async def connect(self, topic: str = "siaran/v1/#") -> None:
        opts = LinkOptions(
            "127.0.0.1",
            self.port,
            "central-test",
            session_expiry_s=600,
            **self.options,  # type: ignore[arg-type]
        )
        self.link = MqttLink(opts, self._on)
        await self.link.connect()
        await self.link.subscribe([(topic, 1)])

    async def close(self) -> None:
        if self.link is not None:
            await self.link.disconnect()

    def of(self, channel: str, gw: str = GW) -> list[dict[str, object]]:
        return [p for t, p, _ in self.messages if t == f"siaran/v1/{gw}/{channel}"]

    def fault_seqs(self) -> list[int]:
        return [int(str(p["seq"])) for p in self.of("fault")]


def first_occurrences(seqs: list[int]) -> list[int]:
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def assert_in_order_none_lost(seqs: list[int], last: int) -> None:
    """Every seq 1..last arrived, first arrivals in order; only QoS 1 duplicates beyond that."""
    assert first_occurrences(seqs) == list(range(1, last + 1)), seqs


def persistent_broker(tmp_path: Path, extra: list[str] | None = None) -> Mosquitto:
    """A broker that keeps sessions across its own restart (as a real central broker does)."""
    conf = ["persistence true", f"persistence_location {tmp_path}/", *(extra or [])]
    return Mosquitto(tmp_path, extra_conf=conf)


def uplink_for(port: int, state: Path, **broker_fields: object) -> Uplink:
    broker = BrokerConfig.model_validate({"port": port, "keepalive_s": 5, **broker_fields})
    return Uplink(
        GW,
        broker,
        OutboxConfig(),
        state,
        lambda: INFO,
        backoff_min_s=0.05,
        backoff_max_s=0.3,
    )


@pytest.fixture
def pbroker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A persistent broker, not started yet; stopped after the test whatever happens."""
    b = persistent_broker(tmp_path)
    yield b
    b.stop()


@pytest.fixture
def broker_up(pbroker: Mosquitto) -> Mosquitto:
    pbroker.start()
    return pbroker


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Driver processes of the test; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        finish(proc)


# -- the contract on the wire ----------------------------------------------------------------


async def test_contract_messages_travel_through_mosquitto(
    broker_up: Mosquitto, tmp_path: Path
) -> None:
    central = Central(broker_up.port)
    await central.connect()
    up = uplink_for(broker_up.port, tmp_path / "state")
    runner = asyncio.create_task(up.run())
    events = [await up.submit_fault(fault(i)) for i in range(3)]
    await up.submit_telemetry(telemetry(1))
    await until(lambda: len(central.of("fault")) == 3 and central.of("telemetry"), what="events")
    births = [GatewayStatus.model_validate(p) for p in central.of("status")]
    assert births[0].state == "online" and births[0].agent_version == "0.1.0-test"
    assert [p["seq"] for p in central.of("fault")] == [e.seq for e in events] == [1, 2, 3]
    assert central.of("fault")[0]["event_id"] == str(events[0].event_id)
    batch = central.of("telemetry")[0]
    assert batch["gateway_id"] == GW and len(batch["samples"]) == 5  # type: ignore[arg-type]

    # the birth is retained: a consumer arriving later still learns the gateway is online
    late: list[tuple[str, bytes, bool]] = []
    watcher = MqttLink(
        LinkOptions("127.0.0.1", broker_up.port, "late"), lambda t, p, r: late.append((t, p, r))
    )
    await watcher.connect()
    await watcher.subscribe([(TOPICS.status, 1)])
    await until(lambda: late, what="retained status")
    assert late[0][2] is True and json.loads(late[0][1])["state"] == "online"
    await watcher.disconnect()

    # central confirms what it applied (retained ack): the gateway records it
    assert central.link is not None
    ack = Ack(gateway_id=GW, up_to=2, seqs=[3], at=datetime.now(UTC))
    await central.link.publish(TOPICS.ack, encode(ack), 1, True)
    await until(lambda: up.stats().central_acked_seq == 3, what="central ack")
    # a command gets a result on cmd-result/{name}
    cmd = Command.model_validate(
        {
            "command_id": "2f1e3b1c-52a5-4c55-9d37-4f3d1c9b6a10",
            "name": "lamp_test",
            "issued_at": datetime.now(UTC),
        }
    )
    await central.link.publish(TOPICS.cmd("lamp_test"), encode(cmd), 1, False)
    await until(lambda: central.of("cmd-result/lamp_test"), what="command result")
    assert central.of("cmd-result/lamp_test")[0]["outcome"] == "unsupported"

    await up.close()
    await runner
    await until(lambda: central.of("status")[-1]["state"] == "offline", what="goodbye")
    assert central.of("status")[-1]["graceful"] is True
    await central.close()

    # after a restart the gateway still knows what central has (persisted)
    again = uplink_for(broker_up.port, tmp_path / "state")
    await again.open()
    assert again.stats().central_acked_seq == 3 and again.stats().last_seq == 3
    await again.close()


async def test_tail_prints_the_branch(broker_up: Mosquitto, tmp_path: Path) -> None:
    lines: list[str] = []
    stop = asyncio.Event()
    broker_cfg = BrokerConfig(port=broker_up.port)
    watcher = asyncio.create_task(tail(broker_cfg, GW, lines.append, stop=stop))
    await until(lambda: lines, what="tail header")
    up = uplink_for(broker_up.port, tmp_path / "state")
    runner = asyncio.create_task(up.run())
    await up.submit_fault(fault(7))
    await until(lambda: any("FAULT #1" in line for line in lines), what="fault line")
    stop.set()
    assert await watcher == 0
    await up.close()
    await runner
    assert lines[0].startswith("# watching siaran/v1/gw-01/#")
    assert any("STATUS ONLINE" in line for line in lines)
    fault_line = next(line for line in lines if "FAULT #1" in line)
    assert "RAISED major lamp_out streetlight:dev-7" in fault_line and "i=7" in fault_line


def test_tail_cli_entry_runs_until_ctrl_c(broker_up: Mosquitto, tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        f"""
[gateway]
id = "{GW}"
site = "Test panel"
location = {{ lat = -6.3, lon = 106.7 }}

[broker]
port = {broker_up.port}
"""
    )
    code = "import sys; from pathlib import Path; from uplink.tail import main; "
    code += "sys.exit(main(Path(sys.argv[1])))"
    with subprocess.Popen(
        [sys.executable, "-c", code, str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            header = proc.stdout.readline()
            assert header.startswith("# watching siaran/v1/gw-01/#"), header
            single(TOPICS.fault, "{}", hostname="127.0.0.1", port=broker_up.port)
            assert proc.stdout.readline().startswith("! siaran/v1/gw-01/fault")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- TLS and ACL -----------------------------------------------------------------------------

ACL = """
pattern write siaran/v1/%u/status
pattern write siaran/v1/%u/fault
pattern write siaran/v1/%u/telemetry
pattern write siaran/v1/%u/cmd-result/#
pattern read siaran/v1/%u/#

user central
topic readwrite siaran/v1/#
"""


async def test_mutual_tls_with_a_test_ca(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    ca = make_ca(pki)
    server = ca.issue(pki, "broker", server=True)
    gw_cert = ca.issue(pki, GW, server=False)
    central_cert = ca.issue(pki, "central", server=False)
    (tmp_path / "acl").write_text(ACL)
    b = Mosquitto(
        tmp_path,
        extra_conf=[
            "allow_anonymous false",
            f"cafile {ca.cert}",
            f"certfile {server.cert}",
            f"keyfile {server.key}",
            "require_certificate true",
            "use_identity_as_username true",
            f"acl_file {tmp_path / 'acl'}",
        ],
    )
    b.start()
    try:
        central = Central(
            b.port,
            tls=tls_context(
                TlsConfig(ca_file=ca.cert, cert_file=central_cert.cert, key_file=central_cert.key)
            ),
        )
        await central.connect()
        tls = {
            "ca_file": str(ca.cert),
            "cert_file": str(gw_cert.cert),
            "key_file": str(gw_cert.key),
        }
        up = uplink_for(b.port, tmp_path / "state", tls=tls)
        runner = asyncio.create_task(up.run())
        await up.submit_fault(fault(1))
        await until(lambda: central.of("fault"), what="fault over mutual TLS")
        assert central.of("fault")[0]["seq"] == 1
        await up.close()
        await runner
        await central.close()

        no_cert = MqttLink(
            LinkOptions("127.0.0.1", b.port, "x", tls=tls_context(TlsConfig(ca_file=ca.cert))),
            lambda *a: None,
        )
        with pytest.raises(LinkError):
            await no_cert.connect()  # the broker demands a client certificate
        other_ca = make_ca(tmp_path / "other", "someone-else")
        wrong_trust = MqttLink(
            LinkOptions(
                "127.0.0.1", b.port, "y", tls=tls_context(TlsConfig(ca_file=other_ca.cert))
            ),
            lambda *a: None,
        )
        with pytest.raises(LinkError, match="certificate verify failed"):
            await wrong_trust.connect()  # we do not talk to a broker we cannot verify
        gc.collect()  # a socket left open by the failed handshake would warn here
    finally:
        b.stop()


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    pw = tmp_path / "passwd"
    for i, (user, secret) in enumerate(
        [("gw-01", "pw-gw-01"), ("gw-02", "pw-gw-02"), ("central", "pw-central")]
    ):
        flags = ["-c"] if i == 0 else []
        subprocess.run(["mosquitto_passwd", "-b", *flags, str(pw), user, secret], check=True)
    pw.chmod(0o600)
    (tmp_path / "acl").write_text(ACL)
    b = Mosquitto(
        tmp_path,
        extra_conf=[
            "allow_anonymous false",
            f"password_file {pw}",
            f"acl_file {tmp_path / 'acl'}",
        ],
    )
    b.start()
    yield b
    b.stop()


async def test_acl_confines_a_gateway_to_its_own_branch(
    acl_broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    central = Central(acl_broker.port, username="central", password="pw-central")
    await central.connect()
    monkeypatch.setenv("GW_PASSWORD", "pw-gw-01")
    up = uplink_for(
        acl_broker.port, tmp_path / "s1", username=GW, password=SecretSource(env="GW_PASSWORD")
    )
    runner = asyncio.create_task(up.run())
    await up.submit_fault(fault(1))
    await until(lambda: central.of("fault"), what="own branch")

    intruder = MqttLink(
        LinkOptions("127.0.0.1", acl_broker.port, "gw-01-x", username=GW, password="pw-gw-01"),
        lambda *a: None,
    )
    await intruder.connect()
    other = Topics("siaran/v1", "gw-02")
    forged = await intruder.publish(other.fault, b'{"forged": true}', 1, False)
    forged_ack = await intruder.publish(TOPICS.ack, b'{"forged": true}', 1, False)
    own = await intruder.publish(TOPICS.telemetry, b'{"fine": true}', 1, False)
    assert (forged, forged_ack) == (135, 135)  # MQTT 5: PUBACK "Not authorized"
    assert own < 0x80
    await until(lambda: central.of("telemetry"), what="own telemetry")
    assert central.of("fault", gw="gw-02") == [] and central.of("ack") == []
    await intruder.disconnect()

    # a gateway whose id and broker user disagree: refused, and kept as a dead letter
    monkeypatch.setenv("GW_PASSWORD", "pw-gw-01")
    liar = Uplink(
        "gw-02",
        BrokerConfig(
            port=acl_broker.port,
            username=GW,
            password=SecretSource(env="GW_PASSWORD"),
            client_id="liar",
        ),
        OutboxConfig(),
        tmp_path / "s2",
        lambda: INFO,
        backoff_min_s=0.05,
        backoff_max_s=0.3,
    )
    liar_run = asyncio.create_task(liar.run())
    await liar.submit_fault(fault(2))
    await until(lambda: liar.stats().dead_letters == 1, what="dead letter")
    assert liar.stats().faults_pending == 0
    assert central.of("fault", gw="gw-02") == []

    bad = MqttLink(
        LinkOptions("127.0.0.1", acl_broker.port, "bad", username=GW, password="wrong"),
        lambda *a: None,
    )
    with pytest.raises(ConnectRefusedError):
        await bad.connect()
    for u, task in ((up, runner), (liar, liar_run)):
        await u.close()
        await task
    await central.close()


# -- outages, kills, a full outbox -----------------------------------------------------------


async def test_broker_outage_loses_nothing_and_keeps_order(
    tmp_path: Path, pbroker: Mosquitto
) -> None:
    b = pbroker
    b.start()
    central = Central(b.port)
    await central.connect()
    up = uplink_for(b.port, tmp_path / "state")
    runner = asyncio.create_task(up.run())
    await until(lambda: up.stats().connected, what="connected")
    phase = {"name": "before"}
    committed: list[tuple[int, str]] = []
    batches: list[str] = []

    async def produce() -> None:
        i = 0
        while phase["name"] != "stop":
            up_before = up.stats().connected
            e = await up.submit_fault(fault(i))
            offline = not up_before and not up.stats().connected
            label = "outage" if offline else "before" if phase["name"] == "before" else "live"
            committed.append((e.seq, label))
            if i % 5 == 0:
                d = telemetry(i)
                await up.submit_telemetry(d)
                batches.append(str(d.batch_id))
            i += 1
            await asyncio.sleep(0.01)

    producer = asyncio.create_task(produce())
    await until(lambda: len(committed) >= 30, what="some live events")
    b.stop()
    await until(lambda: not up.stats().connected, what="outage seen")
    phase["name"] = "outage"
    await asyncio.sleep(1.5)  # the agent goes on recording
    during = up.stats()
    assert during.faults_pending > 0 and during.telemetry_in_memory == 0
    assert up.outbox.snapshot().counts.telemetry > 0, "telemetry spills to disk while down"
    b.start()
    await central.connect()
    await until(lambda: up.stats().connected, what="reconnected")
    phase["name"] = "after"
    await asyncio.sleep(0.5)
    phase["name"] = "stop"
    await producer
    last = committed[-1][0]
    await until(lambda: len(set(central.fault_seqs())) == last, what="all faults")
    await until(lambda: up.stats().telemetry_pending == 0, what="telemetry drained")

    assert_in_order_none_lost(central.fault_seqs(), last)
    replayed = {int(str(p["seq"])) for p in central.of("fault") if p["replayed"]}
    outage = {seq for seq, ph in committed if ph == "outage"}
    assert outage and outage <= replayed, "events that waited out the outage are marked"
    early = [seq for seq, ph in committed if ph == "before"][:10]
    assert not replayed & set(early), "live events were sent live"
    got = {str(p["batch_id"]) for p in central.of("telemetry")}
    assert set(batches) <= got, "no telemetry lost either"
    await up.close()
    await runner
    await central.close()
    b.stop()


def driver(
    procs: list[subprocess.Popen[str]], port: int, state: Path, *args: str
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.uplink_driver",
            "--port",
            str(port),
            "--state",
            str(state),
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    procs.append(proc)
    return proc


async def read_until(proc: subprocess.Popen[str], want: Callable[[list[str]], bool]) -> list[str]:
    """Lines the driver printed, until want(lines) holds (read in a thread: no loop blocking)."""
    lines: list[str] = []
    assert proc.stdout is not None
    while not want(lines):
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            raise AssertionError(f"driver ended early: {lines[-3:]}")
        lines.append(line.strip())
    return lines


def stored(lines: list[str], kind: str) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith(kind + " ")]


def kill(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    proc.send_signal(sig)
    if sig == signal.SIGKILL:
        finish(proc)


def finish(proc: subprocess.Popen[str]) -> int:
    code = proc.wait(timeout=15)
    if proc.stdout is not None:
        proc.stdout.close()
    return code


async def test_sigkill_and_restart_lose_nothing_and_lwt_is_delivered(
    tmp_path: Path, pbroker: Mosquitto, procs: list[subprocess.Popen[str]]
) -> None:
    b = pbroker
    b.start()
    state = tmp_path / "state"
    central = Central(b.port)
    await central.connect()

    # 1. killed while connected and streaming: the Last Will says so at once
    p1 = driver(procs, b.port, state, "--start", "0", "--count", "100000")
    lines1 = await read_until(p1, lambda ls: len(stored(ls, "fault")) >= 60)
    kill(p1)
    await until(lambda: any(p["graceful"] is False for p in central.of("status")), 5, "LWT")
    faults_done, tele_done = stored(lines1, "fault"), stored(lines1, "telemetry")

    # 2. restarted, then the broker goes away, then killed while offline
    start = faults_done[-1] + 1
    p2 = driver(procs, b.port, state, "--start", str(start), "--count", "100000")
    lines2 = await read_until(p2, lambda ls: len(stored(ls, "fault")) >= 30)
    b.stop()
    more = await read_until(p2, lambda ls: len(stored(ls, "fault")) >= 40)
    kill(p2)
    lines2 += more
    offline_seqs = {int(x.split()[2]) for x in more if x.startswith("fault ")}
    faults_done += stored(lines2, "fault")
    tele_done += stored(lines2, "telemetry")

    # 3. broker back, agent restarted: the backlog goes out first, marked replayed
    b.start()
    await central.connect()
    start = faults_done[-1] + 1
    p3 = driver(procs, b.port, state, "--start", str(start), "--count", "20", "--exit-when-drained")
    lines3 = await read_until(p3, lambda ls: any(x.startswith("drained") for x in ls))
    assert finish(p3) == 0
    last_seq = int(next(x for x in lines3 if x.startswith("drained")).split()[1])
    faults_done += stored(lines3, "fault")
    tele_done += stored(lines3, "telemetry")

    await until(lambda: len(set(central.fault_seqs())) >= last_seq, 15, "all faults")
    assert_in_order_none_lost(central.fault_seqs(), last_seq)
    got_faults = {int(str(p["evidence"]["i"])) for p in central.of("fault")}  # type: ignore[index]
    assert set(faults_done) <= got_faults
    replayed = {int(str(p["seq"])) for p in central.of("fault") if p["replayed"]}
    assert offline_seqs <= replayed
    got_tele = {int(str(p["samples"][0]["v"]["i"])) for p in central.of("telemetry")}  # type: ignore[index]
    offline_tele = set(stored(more, "telemetry"))
    assert offline_tele and offline_tele <= got_tele, "telemetry stored offline survives the kill"
    assert set(stored(lines3, "telemetry")) <= got_tele
    await until(lambda: central.of("status")[-1]["state"] == "offline", 5, "goodbye")
    await central.close()
    b.stop()


async def test_lwt_within_keepalive_when_the_gateway_freezes(
    broker_up: Mosquitto, procs: list[subprocess.Popen[str]]
) -> None:
    """No FIN (power cut, modem gone): the broker notices by the keep-alive (5 s here).

    MQTT says 1.5 x keep-alive; mosquitto 2.0.11 was measured at about 2 x (10 s).
    """
    central = Central(broker_up.port)
    await central.connect(TOPICS.status)
    proc = driver(procs, broker_up.port, broker_up.workdir / "state", "--count", "1")
    await read_until(proc, lambda ls: any(x.startswith("drained") for x in ls))
    await until(lambda: central.of("status"), what="birth")
    kill(proc, signal.SIGSTOP)
    frozen_at = time.monotonic()
    await until(lambda: central.of("status")[-1]["state"] == "offline", 14, "LWT")
    waited = time.monotonic() - frozen_at
    assert central.of("status")[-1]["graceful"] is False
    assert 5.0 < waited < 12.0, waited  # keep-alive driven, not a closed socket
    await central.close()


async def test_a_full_outbox_drops_old_telemetry_keeps_every_fault_and_reports_it(
    tmp_path: Path, pbroker: Mosquitto
) -> None:
    b = pbroker  # not started yet: the gateway begins offline
    up = Uplink(
        GW,
        BrokerConfig(port=b.port, keepalive_s=5),
        OutboxConfig(max_bytes=64 * 1024, fault_hard_cap_bytes=1024 * 1024),
        tmp_path / "state",
        lambda: INFO,
        backoff_min_s=0.05,
        backoff_max_s=0.2,
    )
    runner = asyncio.create_task(up.run())
    drafts = [telemetry(i, devices=30) for i in range(60)]  # ~ 3x the bound
    for i, d in enumerate(drafts):
        await up.submit_telemetry(d)
        if i % 3 == 0:
            await up.submit_fault(fault(i))
    s = up.stats()
    assert s.telemetry_dropped > 0 and s.faults_pending == 20
    assert s.bytes_on_disk <= 64 * 1024
    b.start()
    central = Central(b.port)
    await central.connect()
    await until(lambda: len(central.of("fault")) == 20, what="every fault")
    await until(lambda: up.stats().telemetry_pending == 0, what="telemetry drained")
    await up.close()
    await runner
    assert_in_order_none_lost(central.fault_seqs(), 20)
    got = [str(p["batch_id"]) for p in central.of("telemetry")]
    kept = [str(d.batch_id) for d in drafts[-len(got) :]]
    assert got == kept, "the newest telemetry survives, oldest dropped first, order kept"
    assert len(got) + s.telemetry_dropped == 60
    birth = next(p for p in central.of("status") if p["state"] == "online")
    outbox = birth["outbox"]
    assert isinstance(outbox, dict) and outbox["telemetry_dropped"] == s.telemetry_dropped
    assert outbox["full"] is True
    await central.close()
    b.stop()
