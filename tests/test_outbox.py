"""The outbox and the Uplink's logic without a broker: a fake link, a clock that never sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firmware_config.models import BrokerConfig
from firmware_config.uplink_config import OutboxConfig
from tests.waiting import until
from uplink.contract import (
    Ack,
    ActionDraft,
    Command,
    DeviceSamples,
    FaultDraft,
    FaultEvent,
    TelemetryDraft,
    Topics,
    encode,
)
from uplink.mqtt_link import LinkError, LinkOptions, MessageHandler
from uplink.outbox import Outbox
from uplink.publisher import GatewayInfo, Uplink
from uplink.store import OutboxFullError, Row, Store

T0 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
GW = "gw-01"


class StepClock:
    """Wall time moves 1 s per reading; sleep() records the wish and returns at once."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        self.t += 1.0
        return T0 + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


def fault(i: int, **over: object) -> FaultDraft:
    fields: dict[str, object] = {
        "device_id": f"pju-{i:04d}",
        "device_kind": "streetlight",
        "fault_type": "lamp_out",
        "state": "raised",
        "severity": "major",
        "first_seen": T0,
        "observed_at": T0,
        "clock_synced": True,
        "evidence": {"i": i},
    }
    fields.update(over)
    return FaultDraft.model_validate(fields)


def telemetry(i: int, devices: int = 3) -> TelemetryDraft:
    return TelemetryDraft(
        samples=[
            DeviceSamples(device_id=f"pju-{d:04d}", at=T0, values={"power_w": float(i), "n": i})
            for d in range(devices)
        ]
    )


def outbox(tmp_path: Path, **cfg: int) -> Outbox:
    return Outbox(tmp_path / "outbox.db", OutboxConfig.model_validate(cfg), GW, StepClock().now)


def payloads(rows: list[object]) -> list[dict[str, object]]:
    return [json.loads(r) for r in rows]  # type: ignore[arg-type]


# -- the outbox on its own -------------------------------------------------------------------


async def test_seq_is_assigned_at_commit_and_increases_across_restarts(tmp_path: Path) -> None:
    box = outbox(tmp_path)
    await box.open()
    events = await asyncio.gather(*(box.add_fault(fault(i)) for i in range(5)))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert {e.gateway_id for e in events} == {GW}
    rows = await box.take(2)
    await box.done(rows)  # seq 1, 2 acknowledged: deleted
    # no close(): as after a kill, the next process opens the same file
    again = outbox(tmp_path)
    await again.open()
    assert (await again.add_fault(fault(9))).seq == 6
    again.link_up(123)
    left = await again.take(100)
    assert [r.key for r in left] == [3, 4, 5, 6]
    await again.close()
    await box.close()


async def test_render_marks_replayed_unless_sent_under_the_token_it_was_committed_with(
    tmp_path: Path,
) -> None:
    box = outbox(tmp_path)
    await box.open()
    await box.add_fault(fault(1))  # link down: it waits -> replayed
    box.link_up(111)
    await box.add_fault(fault(2))  # committed while up: live
    rows = await box.take(10)
    sent = [json.loads(box.render(r)) for r in rows]
    assert [(p["seq"], p["replayed"]) for p in sent] == [(1, True), (2, False)]
    await box.link_down()  # seq 2 never acknowledged: after a reconnect it is a replay
    box.link_up(222)
    again = [json.loads(box.render(r)) for r in await box.take(10)]
    assert [(p["seq"], p["replayed"]) for p in again] == [(1, True), (2, True)]
    assert {p["event_id"] for p in sent} == {p["event_id"] for p in again}
    await box.close()


def action(note: str) -> ActionDraft:
    return ActionDraft(
        kind="acknowledge", by="budi", at=T0, device_id="pju-0001", fault_type="lamp_out", note=note
    )


async def test_actions_are_durable_go_after_faults_and_have_no_seq(tmp_path: Path) -> None:
    box = outbox(tmp_path)
    await box.open()
    await box.add_telemetry(telemetry(1))  # link down: on disk
    first = await box.add_action(action("a1"))  # link down: replayed when sent
    assert (first.gateway_id, first.replayed, first.note) == (GW, False, "a1")
    await box.add_fault(fault(1))
    counts = box.snapshot().counts
    assert (counts.actions, counts.faults, counts.telemetry) == (1, 1, 1)
    assert counts.next_seq == 2, "an action takes no fault seq"
    # no close(): as after a kill, the action is on disk
    again = outbox(tmp_path)
    await again.open()
    again.link_up(42)
    await again.add_action(action("a2"))  # committed under this link: live
    rows = await again.take(10)
    assert [r.kind for r in rows] == ["fault", "action", "action", "telemetry"]
    sent = [json.loads(again.render(r)) for r in rows[1:3]]
    assert [(p["note"], p["replayed"]) for p in sent] == [("a1", True), ("a2", False)]
    assert "seq" not in sent[0]
    assert again.status().oldest_pending_at is not None
    await again.done(rows[:2])
    await again.link_down()
    again.link_up(43)
    left = await again.take(10)
    assert [(r.kind, json.loads(again.render(r)).get("note")) for r in left] == [
        ("action", "a2"),
        ("telemetry", None),
    ]
    assert json.loads(again.render(left[0]))["replayed"] is True  # sent before, not acked
    await again.done(left)
    assert again.snapshot().counts.actions == 0
    await again.add_action(action("a3"))  # keys keep increasing after deletes: not skipped
    assert [r.kind for r in await again.take(10)] == ["action"]
    await again.close()
    await box.close()


async def test_telemetry_stays_in_memory_while_up_and_goes_to_disk_while_down(
    tmp_path: Path,
) -> None:
    box = outbox(tmp_path)
    await box.open()
    box.link_up(5)
    await box.add_telemetry(telemetry(1))
    await box.add_telemetry(telemetry(2))
    snap = box.snapshot()
    assert (snap.memory_batches, snap.counts.telemetry) == (2, 0)  # nothing written
    first = await box.take(1)  # in flight when the link drops
    await box.link_down()
    await box.add_telemetry(telemetry(3))
    snap = box.snapshot()
    assert (snap.memory_batches, snap.counts.telemetry) == (0, 3)
    box.link_up(6)
    await box.add_telemetry(telemetry(4))  # disk backlog waits: this goes behind it, on disk
    assert box.snapshot().counts.telemetry == 4
    rows = await box.take(10)
    sent = [json.loads(box.render(r)) for r in rows]
    assert [p["samples"][0]["v"]["n"] for p in sent] == [1, 2, 3, 4]
    assert [p["replayed"] for p in sent] == [True, True, True, False]
    assert json.loads(first[0].payload)["samples"][0]["v"]["n"] == 1
    await box.done(rows)
    assert box.snapshot().counts.telemetry == 0
    await box.add_telemetry(telemetry(5))  # backlog gone: memory again
    assert box.snapshot().memory_batches == 1
    await box.close()  # shutdown spills memory
    reopened = outbox(tmp_path)
    await reopened.open()
    assert reopened.snapshot().counts.telemetry == 1
    await reopened.close()


async def test_memory_bound_spills_to_disk_and_keeps_order(tmp_path: Path) -> None:
    one = len(encode_telemetry(telemetry(0)))
    box = outbox(tmp_path, telemetry_memory_bytes=2 * one + 10)
    await box.open()
    box.link_up(7)
    for i in range(5):
        await box.add_telemetry(telemetry(i))
    snap = box.snapshot()
    assert (snap.memory_batches, snap.counts.telemetry) == (2, 3)
    rows = await box.take(10)
    assert [json.loads(r.payload)["samples"][0]["v"]["n"] for r in rows] == [0, 1, 2, 3, 4]
    await box.close()


def encode_telemetry(draft: TelemetryDraft) -> bytes:
    from uplink.contract import TelemetryBatch

    return encode(TelemetryBatch(**dict(draft), gateway_id=GW, replayed=False))


async def test_full_store_drops_oldest_telemetry_keeps_faults_and_says_so(tmp_path: Path) -> None:
    one_t = len(encode_telemetry(telemetry(0, devices=40)))
    one_f = len(encode(await probe_fault(tmp_path)))
    bound = 64 * 1024
    box = outbox(tmp_path / "b", max_bytes=bound, fault_hard_cap_bytes=bound + 4 * one_f)
    await box.open()
    n_t = bound // one_t + 5  # more telemetry than fits
    for i in range(n_t):
        await box.add_telemetry(telemetry(i, devices=40))
    st = box.status()
    assert st.telemetry_dropped >= 5
    assert st.full and not st.faults_over_bound
    assert st.bytes_on_disk <= bound
    kept = [json.loads(r.payload)["samples"][0]["v"]["n"] for r in await take_all(box)]
    await box.link_down()
    assert kept == list(range(n_t - len(kept), n_t)), "oldest dropped first, order kept"
    # faults push telemetry out, then go beyond the bound, up to the hard cap
    seqs: list[int] = []
    while True:
        try:
            seqs.append((await box.add_fault(fault(len(seqs)))).seq)
        except OutboxFullError:
            break
    st = box.status()
    assert st.faults_pending == len(seqs) and seqs == list(range(1, len(seqs) + 1))
    assert st.telemetry_pending == 0, "all telemetry made room for faults"
    assert st.faults_over_bound and st.faults_refused == 1
    assert bound < st.bytes_on_disk <= bound + 4 * one_f
    dropped_before = st.telemetry_dropped
    await box.add_telemetry(telemetry(999, devices=40))  # no room at all: refused, counted
    assert box.status().telemetry_dropped == dropped_before + 1
    with pytest.raises(OutboxFullError):
        await box.add_fault(fault(0))
    assert box.status().faults_refused == 2
    await box.close()
    again = outbox(tmp_path / "b", max_bytes=bound, fault_hard_cap_bytes=bound + 4 * one_f)
    await again.open()
    assert again.status().faults_refused == 2  # counters survive restarts
    assert again.status().telemetry_dropped == dropped_before + 1
    await again.close()


async def probe_fault(tmp_path: Path) -> FaultEvent:
    box = outbox(tmp_path / "probe")
    await box.open()
    event = await box.add_fault(fault(0))
    await box.close()
    return event


async def take_all(box: Outbox) -> list[Row]:
    box.link_up(box.token or 99)
    return await box.take(100_000)


async def test_a_corrupt_file_is_moved_aside_reported_and_seq_still_increases(
    tmp_path: Path,
) -> None:
    box = outbox(tmp_path)
    await box.open()
    for i in range(3):
        await box.add_fault(fault(i))
    await box.close()
    db = tmp_path / "outbox.db"
    db.write_bytes(b"this is not a database" * 500)
    again = outbox(tmp_path)
    await again.open()
    await asyncio.sleep(0.05)  # the reset is reported through the outbox itself
    aside = list(tmp_path.glob("outbox.db.corrupt-*"))
    assert len(aside) == 1
    st = again.status()
    assert st.store_resets == 1
    again.link_up(1)
    rows = await again.take(10)
    assert len(rows) == 1
    report = json.loads(rows[0].payload)
    assert report["fault_type"] == "outbox_store_reset"
    assert report["device_kind"] == "gateway"
    assert report["seq"] > 3, "seq floor from the clock: never goes back"
    await again.close()


async def test_salvageable_meta_keeps_the_seq_exactly(tmp_path: Path) -> None:
    box = outbox(tmp_path)
    await box.open()
    for i in range(4):
        await box.add_fault(fault(i))
    await box.close()
    damage_table(tmp_path / "outbox.db", "fault")  # quick_check fails; meta is still readable
    again = outbox(tmp_path)
    await again.open()
    await asyncio.sleep(0.05)
    assert again.status().store_resets == 1
    assert (await again.add_fault(fault(9))).seq == 6  # 5 went to the reset report
    await again.close()


def damage_table(path: Path, table: str) -> None:
    """Overwrite the cells of a table's root page: the header stays valid, quick_check fails."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        query = "SELECT rootpage FROM sqlite_master WHERE name = ?"
        (root,) = db.execute(query, (table,)).fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
    with path.open("r+b") as f:
        f.seek(root * size - 600)
        f.write(b"\xff" * 600)


def test_a_locked_file_is_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    store = Store(path, OutboxConfig(), StepClock().now)
    store.open()
    store.close()
    holder = sqlite3.connect(path, isolation_level=None)  # e.g. a sqlite3 shell left open
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE meta SET value = value")
    again = Store(path, OutboxConfig(), StepClock().now)
    again.busy_timeout_s = 0.2
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        again.open()
    holder.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []
    again.open()  # the same file, once the lock is gone
    assert again.counts.resets == 0 and again.moved_aside == []
    again.close()


async def test_central_ack_is_kept_and_only_moves_up(tmp_path: Path) -> None:
    box = outbox(tmp_path)
    await box.open()
    assert await box.set_central_ack(5)
    assert not await box.set_central_ack(3)
    await box.close()
    again = outbox(tmp_path)
    await again.open()
    assert again.snapshot().counts.central_acked_seq == 5
    await again.close()


# -- the Uplink with a fake link -------------------------------------------------------------


@dataclass
class FakeBroker:
    up: bool = True
    hold: bool = False  # publishes wait for release()
    refuse: str | None = None  # topics starting so get PUBACK 135
    published: list[tuple[str, bytes, bool]] = field(default_factory=list)
    links: list[FakeLink] = field(default_factory=list)
    connects: int = 0

    def factory(self, options: LinkOptions, on_message: MessageHandler) -> FakeLink:
        link = FakeLink(self, options, on_message)
        self.links.append(link)
        return link

    def of(self, suffix: str) -> list[dict[str, object]]:
        return [json.loads(p) for t, p, _ in self.published if t.endswith(suffix)]


class FakeLink:
    def __init__(self, broker: FakeBroker, options: LinkOptions, on_message: MessageHandler):
        self.broker = broker
        self.options = options
        self.on_message = on_message
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.held: list[tuple[asyncio.Future[int], tuple[str, bytes, bool]]] = []
        self.subscribed: list[str] = []

    async def connect(self) -> None:
        if not self.broker.up:
            raise LinkError("connection refused")
        self.broker.connects += 1

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self.closed.done():
            fut.set_exception(LinkError("lost"))
        elif self.broker.hold:
            self.held.append((fut, (topic, payload, retain)))
        elif self.broker.refuse and topic.startswith(self.broker.refuse):
            fut.set_result(135)
        else:
            self.broker.published.append((topic, payload, retain))
            fut.set_result(0)
        return fut

    def release(self, faults: int | None = None) -> None:
        """PUBACK what is held (with `faults`: up to that many fault events, oldest first)."""
        keep: list[tuple[asyncio.Future[int], tuple[str, bytes, bool]]] = []
        for fut, msg in self.held:
            if faults is not None and msg[0].endswith("/fault"):
                if faults == 0:
                    keep.append((fut, msg))
                    continue
                faults -= 1
            self.broker.published.append(msg)
            fut.set_result(0)
        self.held = keep

    def held_seqs(self) -> list[int]:
        return [json.loads(m[1])["seq"] for _, m in self.held if m[0].endswith("/fault")]

    async def subscribe(self, topics: list[tuple[str, int]]) -> list[int]:
        self.subscribed += [t for t, _ in topics]
        return [q for _, q in topics]

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)

    def drop(self, deliver_held: bool = False) -> None:
        """The network goes: held publishes may have reached the broker, but no PUBACK came."""
        for fut, msg in self.held:
            if deliver_held:
                self.broker.published.append(msg)
            if not fut.done():  # the uplink may have given up on it already
                fut.set_exception(LinkError("lost"))
        self.held.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    async def disconnect(self) -> None:
        self.drop()

    def abort(self) -> None:
        self.drop()


def make_uplink(tmp_path: Path, broker: FakeBroker, clock: StepClock, **cfg: int) -> Uplink:
    return Uplink(
        GW,
        BrokerConfig(),
        OutboxConfig.model_validate(cfg),
        tmp_path,
        lambda: GatewayInfo("0.1.0", "cfg1", 500, True),
        clock=clock,
        link_factory=broker.factory,
        backoff_min_s=0.5,
        backoff_max_s=8.0,
    )


async def test_birth_will_order_and_live_flags(tmp_path: Path) -> None:
    broker, clock = FakeBroker(), StepClock()
    up = make_uplink(tmp_path, broker, clock)
    early = await up.submit_fault(fault(0))  # before any connection: it waits
    task = asyncio.create_task(up.run())
    await until(lambda: up.stats().connected)
    for i in range(1, 4):
        await up.submit_fault(fault(i))
    await up.submit_telemetry(telemetry(1))
    await until(lambda: len(broker.of("/fault")) == 4 and broker.of("/telemetry"))
    link = broker.links[0]
    assert link.subscribed == [f"siaran/v1/{GW}/ack", f"siaran/v1/{GW}/cmd/+"]
    will = json.loads(link.options.will.payload) if link.options.will else {}
    assert (will["state"], will["graceful"]) == ("offline", False)
    assert link.options.will is not None and link.options.will.retain
    status = [(t, json.loads(p), r) for t, p, r in broker.published if t.endswith("/status")]
    assert status[0][1]["state"] == "online" and status[0][2] is True
    assert status[0][1]["device_count"] == 500
    faults = broker.of("/fault")
    assert [f["seq"] for f in faults] == [1, 2, 3, 4] and early.seq == 1
    assert [f["replayed"] for f in faults] == [True, False, False, False]
    assert broker.of("/telemetry")[0]["replayed"] is False
    await until(lambda: up.stats().faults_pending == 0)
    await up.close()
    await task
    last = [json.loads(p) for t, p, _ in broker.published if t.endswith("/status")][-1]
    assert (last["state"], last["graceful"]) == ("offline", True)


async def test_a_drop_before_puback_resends_everything_in_order_as_replayed(
    tmp_path: Path,
) -> None:
    broker, clock = FakeBroker(), StepClock()
    up = make_uplink(tmp_path, broker, clock)
    task = asyncio.create_task(up.run())
    await until(lambda: up.stats().connected)
    broker.hold = True
    await asyncio.gather(*(up.submit_fault(fault(i)) for i in range(5)))  # one group commit
    await until(lambda: sum(m[0].endswith("/fault") for _, m in broker.links[0].held) == 5)
    broker.links[0].drop(deliver_held=True)  # the broker got them; the PUBACKs were lost
    broker.hold = False
    await until(lambda: len(broker.links) == 2 and up.stats().faults_pending == 0)
    faults = broker.of("/fault")
    assert [f["seq"] for f in faults] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
    assert [f["replayed"] for f in faults] == [False] * 5 + [True] * 5
    assert len({f["event_id"] for f in faults}) == 5
    await up.close()
    await task


async def test_reconnect_backs_off_exponentially_with_jitter_and_a_cap(tmp_path: Path) -> None:
    broker, clock = FakeBroker(up=False), StepClock()
    up = make_uplink(tmp_path, broker, clock)
    task = asyncio.create_task(up.run())
    await until(lambda: len(clock.sleeps) >= 12)
    waits = clock.sleeps[:12]
    assert all(0.5 <= w <= 8.0 for w in waits)
    assert max(waits[6:]) > 2.0, "the window widens"
    assert len(set(waits)) > 6, "jitter"
    await up.submit_fault(fault(1))  # the agent goes on recording while the broker is away
    broker.up = True
    await until(lambda: len(broker.of("/fault")) == 1)
    assert broker.of("/fault")[0]["replayed"] is True
    await up.close()
    await task


async def test_a_refused_publish_goes_to_dead_letters_not_away(tmp_path: Path) -> None:
    broker, clock = FakeBroker(refuse=f"siaran/v1/{GW}/fault"), StepClock()
    up = make_uplink(tmp_path, broker, clock)
    task = asyncio.create_task(up.run())
    await until(lambda: up.stats().connected)
    await up.submit_fault(fault(1))
    await until(lambda: up.stats().dead_letters == 1)
    assert up.stats().faults_pending == 0
    rows = await up.outbox.dead_letters()
    assert rows[0][1] == "PUBACK reason code 135"
    assert json.loads(rows[0][0].payload)["seq"] == 1
    await up.close()
    await task


async def test_acks_and_commands_from_central(tmp_path: Path) -> None:
    broker, clock = FakeBroker(), StepClock()
    up = make_uplink(tmp_path, broker, clock)
    task = asyncio.create_task(up.run())
    await until(lambda: up.stats().connected)
    topics = Topics("siaran/v1", GW)
    link = broker.links[0]
    ack = Ack(gateway_id=GW, up_to=4, seqs=[5, 6, 9], at=T0)
    link.on_message(topics.ack, encode(ack), True)
    await until(lambda: up.stats().central_acked_seq == 6)  # 5, 6 extend the mark; 9 does not
    other = Ack(gateway_id="gw-99", up_to=50, at=T0)
    link.on_message(topics.ack, encode(other), False)
    link.on_message(topics.ack, b"not json", False)
    cmd = Command.model_validate(
        {"command_id": "0b69fc05-f6c4-4d74-a31c-e79b7ff110ba", "name": "lamp_test", "issued_at": T0}
    )
    link.on_message(topics.cmd("lamp_test"), encode(cmd), False)
    await until(lambda: broker.of("/cmd-result/lamp_test"))
    assert broker.of("/cmd-result/lamp_test")[0]["outcome"] == "unsupported"
    assert up.stats().central_acked_seq == 6
    await up.close()
    await task


# -- the drain: a sliding window ---------------------------------------------------------------


async def test_the_window_slides_as_pubacks_come_and_rows_go_only_after_theirs(
    tmp_path: Path,
) -> None:
    broker, clock = FakeBroker(), StepClock()
    up = make_uplink(tmp_path, broker, clock, publish_window=8, max_inflight=4)
    task = asyncio.create_task(up.run())
    await until(lambda: up.stats().connected)
    assert broker.links[0].options.max_inflight == 4
    broker.hold = True
    await asyncio.gather(*(up.submit_fault(fault(i)) for i in range(40)))
    link = broker.links[0]
    await until(lambda: len(link.held_seqs()) == 8)
    assert link.held_seqs() == list(range(1, 9)), "a window, in order"
    link.release(2)  # two PUBACKs: two more rows go out, without waiting for the other six
    await until(lambda: link.held_seqs() == list(range(3, 11)))
    assert up.stats().faults_pending >= 40 - len(broker.of("/fault")), "none without its PUBACK"
    while link.held_seqs():
        link.release(3)
        await until(lambda: len(link.held_seqs()) == min(8, 40 - len(broker.of("/fault"))))
    await until(lambda: up.stats().faults_pending == 0)
    assert [f["seq"] for f in broker.of("/fault")] == list(range(1, 41))
    broker.hold = False
    link.release()
    await up.close()
    await task


async def test_a_drop_mid_drain_resends_only_what_had_no_puback_in_order(tmp_path: Path) -> None:
    broker, clock = FakeBroker(), StepClock()
    up = make_uplink(tmp_path, broker, clock, publish_window=8)
    task = asyncio.create_task(up.run())
    await until(lambda: up.stats().connected)
    broker.hold = True
    await asyncio.gather(*(up.submit_fault(fault(i)) for i in range(20)))
    first = broker.links[0]
    await until(lambda: len(first.held_seqs()) == 8)
    first.release(3)  # seqs 1-3 acknowledged
    await until(lambda: first.held_seqs() == list(range(4, 12)))
    first.drop(deliver_held=False)  # the broker dies: 4-11 never arrived
    broker.hold = False
    await until(lambda: len(broker.links) == 2 and up.stats().faults_pending == 0)
    faults = broker.of("/fault")
    assert [f["seq"] for f in faults] == list(range(1, 21)), "no seq twice, none lost, in order"
    assert all(f["replayed"] for f in faults[3:]), "sent again after the drop: replayed"
    await up.close()
    await task


async def test_a_refused_row_in_the_middle_of_a_window_is_kept_aside(tmp_path: Path) -> None:
    broker, clock = FakeBroker(), StepClock()
    up = make_uplink(tmp_path, broker, clock, publish_window=4)
    task = asyncio.create_task(up.run())
    await until(lambda: up.stats().connected)
    broker.hold = True
    await asyncio.gather(*(up.submit_fault(fault(i)) for i in range(6)))
    link = broker.links[0]
    await until(lambda: link.held_seqs() == [1, 2, 3, 4])
    fut, _ = next(h for h in link.held if json.loads(h[1][1]).get("seq") == 2)
    link.held = [h for h in link.held if h[0] is not fut]
    fut.set_result(135)  # seq 2: PUBACK with reason code 135 (not authorised)
    link.release()
    await until(lambda: link.held_seqs() == [5, 6])
    link.release()
    broker.hold = False
    await until(lambda: up.stats().faults_pending == 0 and up.stats().dead_letters == 1)
    rows = await up.outbox.dead_letters()
    assert json.loads(rows[0][0].payload)["seq"] == 2
    assert [f["seq"] for f in broker.of("/fault")] == [1, 3, 4, 5, 6]
    await up.close()
    await task


async def test_a_puback_out_of_order_does_not_stall_or_spin_the_drain(tmp_path: Path) -> None:
    """A broker (or proxy) acknowledging seq 2 before seq 1: the drain waits for seq 1 and the
    event loop stays free (it used to spin on the already-done refill mark)."""
    broker, clock = FakeBroker(), StepClock()
    up = make_uplink(tmp_path, broker, clock, publish_window=8)
    task = asyncio.create_task(up.run())
    await until(lambda: up.stats().connected)
    broker.hold = True
    await asyncio.gather(*(up.submit_fault(fault(i)) for i in range(12)))
    link = broker.links[0]
    await until(lambda: link.held_seqs() == list(range(1, 9)))
    fut, _ = next(h for h in link.held if json.loads(h[1][1]).get("seq") == 2)
    link.held = [h for h in link.held if h[0] is not fut]
    fut.set_result(0)  # seq 2 (the window's refill mark) before seq 1
    ticks = 0
    for _ in range(20):  # the loop must keep turning: a spinning drain would starve this
        await asyncio.sleep(0.005)
        ticks += 1
    assert ticks == 20 and link.held_seqs() == [1, *range(3, 9)], "waits for seq 1"
    broker.hold = False
    link.release()
    await until(lambda: up.stats().faults_pending == 0)
    delivered = [f["seq"] for f in broker.of("/fault")]  # seq 2 was acked by hand above
    assert delivered == [1, *range(3, 13)]
    await up.close()
    await task
