"""The SQLite report ledger: idempotent application, acks, the SIARAN outbox, escalation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from central.config import CentralConfig
from central.ledger_sqlite import SqliteLedger
from central.lifecycle import Policy, decide_fault
from central.siaran_api import Reporter
from tests.central_helpers import T0, fault_event
from uplink.contract import FaultEvent

CONFIG = CentralConfig()
POLICY = Policy(
    CONFIG.reports, CONFIG.categories, CONFIG.boundary.build(), {}, Reporter(id="siaran-edge")
)


def decide(ev: FaultEvent, snap: object, now: object) -> object:
    return decide_fault(ev, snap, POLICY, T0)  # type: ignore[arg-type]


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqliteLedger]:
    led = SqliteLedger(tmp_path / "central.db", "NORMAL")
    await led.open()
    yield led
    await led.close()


async def apply(led: SqliteLedger, ev: FaultEvent, consumer: str = "c1") -> str:
    return (await led.apply_fault(ev, decide, T0, consumer)).outcome  # type: ignore[arg-type]


async def test_an_event_applies_once(ledger: SqliteLedger) -> None:
    ev = fault_event(1, at=T0)
    assert await apply(ledger, ev) == "opened"
    assert await apply(ledger, ev) == "duplicate"
    counts = await ledger.counts()
    assert counts["events"] == 1 and counts["reports"] == 1 and counts["ops_pending"] == 1


async def test_ack_counts_contiguous_seqs_and_never_goes_back(ledger: SqliteLedger) -> None:
    acks = []
    for seq in (3, 4, 6, 7, 5, 1):
        applied = await ledger.apply_fault(fault_event(seq, f"d{seq}", at=T0), decide, T0, "c")  # type: ignore[arg-type]
        assert applied.ack is not None
        acks.append((applied.ack.up_to, applied.ack.seqs))
    # the first seq seen starts the count; a gap holds it; seqs beyond it are listed
    assert acks == [(3, ()), (4, ()), (4, (6,)), (4, (6, 7)), (7, ()), (7, ())]
    (pending,) = await ledger.unpublished_acks()
    assert pending.up_to == 7
    await ledger.ack_published("gw-01", pending.version)
    assert await ledger.unpublished_acks() == []


async def test_two_processes_on_one_file(tmp_path: Path) -> None:
    """Two ledgers (as two consumer processes would) applying concurrently, duplicates too."""
    path = tmp_path / "central.db"
    one, two = SqliteLedger(path, "NORMAL"), SqliteLedger(path, "NORMAL")
    await asyncio.gather(one.open(), two.open())
    events = [fault_event(i + 1, f"pju-{i}", at=T0) for i in range(40)]
    try:
        outcomes = await asyncio.gather(
            *(apply(one, ev, "one") for ev in events), *(apply(two, ev, "two") for ev in events)
        )
        assert outcomes.count("opened") == 40 and outcomes.count("duplicate") == 40
        counts = await one.counts()
        assert counts["events"] == 40 and counts["reports"] == 40
        (ack,) = await two.unpublished_acks()
        assert ack.up_to == 40
    finally:
        await one.close()
        await two.close()


async def test_outbox_order_lease_and_dead_letters(ledger: SqliteLedger) -> None:
    await apply(ledger, fault_event(1, "a", at=T0))
    await apply(ledger, fault_event(2, "a", "updated", at=T0))
    await apply(ledger, fault_event(3, "b", at=T0))
    assert await ledger.claim_sender("x", T0, 30)
    assert not await ledger.claim_sender("y", T0 + timedelta(seconds=10), 30)
    # only the head of each report's queue is due: a's create and b's create
    ops = await ledger.due_ops(T0, 10)
    assert [(o.kind, o.siaran_id) for o in ops] == [("create", None), ("create", None)]
    a_create, b_create = ops
    await ledger.op_sent(a_create, T0, "SRN-1")
    (a_comment, _) = await ledger.due_ops(T0, 10)
    assert a_comment.kind == "comment" and a_comment.siaran_id == "SRN-1"
    # SIARAN refuses b for good: kept aside, not retried
    await ledger.op_failed(b_create, "HTTP 422", dead=True)
    assert [o.kind for o in await ledger.due_ops(T0, 10)] == ["comment"]
    report_a, report_b = await ledger.reports()
    assert report_b.state == "refused"
    assert report_a.sla_due_at == T0 + timedelta(hours=72)
    counts = await ledger.counts()
    assert counts["ops_dead"] == 1 and counts["ops_done"] == 1
    # the lease passes on once it ran out
    assert await ledger.claim_sender("y", T0 + timedelta(seconds=31), 30)


async def test_red_flag_once(ledger: SqliteLedger) -> None:
    await apply(ledger, fault_event(1, at=T0))
    (op,) = await ledger.due_ops(T0, 10)
    await ledger.op_sent(op, T0, "SRN-1")
    assert await ledger.overdue_reports(T0 + timedelta(hours=71)) == []
    late = T0 + timedelta(hours=73)
    (report,) = await ledger.overdue_reports(late)
    flags = await asyncio.gather(
        *(ledger.red_flag(report.report_uid, late, "telat", lambda i: i.encode()) for _ in range(3))
    )
    assert sorted(flags) == [False, False, True]
    assert await ledger.overdue_reports(late) == []
    (esc,) = await ledger.unpublished_escalations()
    await ledger.escalation_published(esc.escalation_id, late)
    assert await ledger.unpublished_escalations() == []
    assert (await ledger.counts())["ops_pending"] == 1  # the red flag for SIARAN


async def test_responded_reports_are_not_overdue(ledger: SqliteLedger) -> None:
    await apply(ledger, fault_event(1, at=T0))
    (op,) = await ledger.due_ops(T0, 10)
    await ledger.op_sent(op, T0, "SRN-1")
    (report,) = await ledger.reports()
    await ledger.mark_responded(report.report_uid, T0 + timedelta(hours=1))
    assert await ledger.overdue_reports(T0 + timedelta(days=9)) == []
