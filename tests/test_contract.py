"""The MQTT contract: topics, payload models, committed JSON Schemas, tail's lines."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest
from pydantic import BaseModel, ValidationError

from uplink.contract import (
    SCHEMA_VERSION,
    WIRE_MODELS,
    Ack,
    ActionDraft,
    Command,
    CommandResult,
    DeviceMeta,
    DeviceSamples,
    FaultDraft,
    FaultEvent,
    GatewayStatus,
    LampTestReport,
    Location,
    OperatorAction,
    OutboxStatus,
    ParsedTopic,
    TelemetryBatch,
    Topics,
    central_subscriptions,
    encode,
    parse_topic,
)
from uplink.schemas import render_schemas
from uplink.tail import format_message

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)


def draft(**over: object) -> FaultDraft:
    fields: dict[str, object] = {
        "device_id": "pju-0042",
        "device_kind": "streetlight",
        "fault_type": "lamp_out",
        "state": "raised",
        "severity": "major",
        "first_seen": T0,
        "observed_at": T0,
        "clock_synced": True,
        "location": Location(
            lat=-6.29, lon=106.71, address="Jl. Siliwangi 1", kecamatan="Pamulang"
        ),
        "circuit": "PNL-07/A",
        "evidence": {"power_w": 0.0, "lamp_on": True, "samples_w": [0.0, 0.1, 0.0]},
    }
    fields.update(over)
    return FaultDraft.model_validate(fields)


def fault_event(seq: int = 7, replayed: bool = False) -> FaultEvent:
    return FaultEvent(**dict(draft()), gateway_id="gw-01", seq=seq, replayed=replayed)


def action(**over: object) -> OperatorAction:
    fields: dict[str, object] = {
        "kind": "acknowledge",
        "by": "budi",
        "at": T0,
        "device_id": "pju-0042",
        "fault_type": "lamp_out",
        "note": "teknisi di lokasi",
        "gateway_id": "gw-01",
        "replayed": False,
    }
    fields.update(over)
    return OperatorAction.model_validate(fields)


def samples() -> list[BaseModel]:
    """One message of every wire model."""
    status = GatewayStatus(
        gateway_id="gw-01",
        state="online",
        at=T0,
        agent_version="0.1.0",
        config_version="abc123",
        device_count=500,
        clock_synced=True,
        last_seq=7,
        central_acked_seq=5,
        outbox=OutboxStatus(
            faults_pending=1,
            telemetry_pending=2,
            oldest_pending_at=T0,
            bytes_on_disk=1000,
            telemetry_dropped=0,
            full=False,
            faults_over_bound=False,
            faults_refused=0,
            dead_letters=0,
            store_resets=0,
        ),
    )
    batch = TelemetryBatch(
        samples=[
            DeviceSamples(device_id="pju-0042", at=T0, values={"power_w": 71.5, "on": True}),
            DeviceSamples(
                device_id="pju-0043",
                at=T0,
                values={"interfaces.3.if_in_octets": 10},
                meta=DeviceMeta(kind="streetlight", profile="pju-generic", circuit="PNL-07/A"),
            ),
        ],
        gateway_id="gw-01",
        replayed=False,
    )
    ack = Ack(gateway_id="gw-01", up_to=5, seqs=[7], at=T0)
    cmd = Command(command_id=uuid.uuid4(), name="lamp_test", args={"device": "pju-1"}, issued_at=T0)
    result = CommandResult(
        gateway_id="gw-01", command_id=cmd.command_id, name="lamp_test", outcome="done", at=T0
    )
    lamp_test = action(
        kind="lamp_test",
        fault_type=None,
        note="",
        result=LampTestReport(ok=True, minutes=5, power_w=60.4, expected_w=60.0, detail="ok"),
    )
    return [status, fault_event(), batch, ack, cmd, result, action(), lamp_test]


def test_topic_tree_puts_the_gateway_right_under_the_root() -> None:
    t = Topics("siaran/v1", "gw-01")
    assert t.status == "siaran/v1/gw-01/status"
    assert t.fault == "siaran/v1/gw-01/fault"
    assert t.telemetry == "siaran/v1/gw-01/telemetry"
    assert t.action == "siaran/v1/gw-01/action"
    assert t.ack == "siaran/v1/gw-01/ack"
    assert t.cmd("lamp_test") == "siaran/v1/gw-01/cmd/lamp_test"
    assert t.cmd() == "siaran/v1/gw-01/cmd/+"
    assert t.cmd_result("lamp_test") == "siaran/v1/gw-01/cmd-result/lamp_test"
    assert t.all == "siaran/v1/gw-01/#"
    assert central_subscriptions("siaran/v1") == [
        "siaran/v1/+/status",
        "siaran/v1/+/fault",
        "siaran/v1/+/telemetry",
        "siaran/v1/+/action",
        "siaran/v1/+/cmd-result/+",
    ]


@pytest.mark.parametrize(
    ("root", "gw"), [("siaran/v1", "gw/01"), ("siaran/v1", "+"), ("siaran/#", "gw"), ("a/", "gw")]
)
def test_topics_refuse_levels_that_would_escape_the_branch(root: str, gw: str) -> None:
    with pytest.raises(ValueError, match="bad topic"):
        Topics(root, gw)


def test_parse_topic() -> None:
    assert parse_topic("siaran/v1", "siaran/v1/gw-01/fault") == ParsedTopic("gw-01", "fault", None)
    assert parse_topic("siaran/v1", "siaran/v1/gw-01/action") == ParsedTopic(
        "gw-01", "action", None
    )
    assert parse_topic("siaran/v1", "siaran/v1/gw-01/cmd-result/x") == ParsedTopic(
        "gw-01", "cmd-result", "x"
    )
    for bad in (
        "siaran/v1/gw-01/fault/extra",
        "siaran/v1/gw-01/action/x",
        "siaran/v1/gw-01/cmd",
        "siaran/v1/gw-01/nope",
        "siaran/v2/gw-01/fault",
        "siaran/v1/gw-01",
    ):
        assert parse_topic("siaran/v1", bad) is None, bad


@pytest.mark.parametrize("message", samples(), ids=lambda m: type(m).__name__)
def test_every_message_round_trips_and_matches_its_committed_schema(message: BaseModel) -> None:
    wire = encode(message)
    data = json.loads(wire)
    assert data["schema"] == SCHEMA_VERSION
    assert type(message).model_validate_json(wire) == message
    name = next(n for n, m in WIRE_MODELS.items() if m is type(message))
    schema = json.loads((ROOT / "docs" / "schemas" / f"{name}.json").read_text())
    jsonschema.validate(data, schema)
    data["unexpected"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_fault_event_fields_of_the_issue() -> None:
    e = json.loads(encode(fault_event()))
    for key in (
        "event_id",
        "seq",
        "gateway_id",
        "device_id",
        "device_kind",
        "fault_type",
        "state",
        "severity",
        "first_seen",
        "observed_at",
        "clock_synced",
        "location",
        "circuit",
        "evidence",
        "replayed",
        "schema",
    ):
        assert key in e, key
    assert e["first_seen"] == "2026-11-28T11:00:00Z"
    uuid.UUID(e["event_id"])


def test_models_refuse_what_the_contract_does_not_allow() -> None:
    with pytest.raises(ValidationError):
        FaultEvent(**dict(draft()), gateway_id="gw-01", seq=0, replayed=False)  # seq from 1
    with pytest.raises(ValidationError):
        draft(observed_at=datetime(2026, 1, 1))  # naive time: ambiguous
    with pytest.raises(ValidationError):
        draft(state="open")
    with pytest.raises(ValidationError):
        draft(severity="urgent")
    with pytest.raises(ValidationError):
        FaultEvent.model_validate({**json.loads(encode(fault_event())), "gateway_id": "a/b"})


def test_operator_action_fields_and_kinds() -> None:
    a = json.loads(encode(action()))
    assert a["schema"] == SCHEMA_VERSION and a["replayed"] is False
    assert (a["kind"], a["by"], a["at"], a["note"]) == (
        "acknowledge", "budi", "2026-11-28T11:00:00Z", "teknisi di lokasi",
    )  # fmt: skip
    assert "seq" not in a  # actions are not in the fault seq space (docs/contract.md)
    uuid.UUID(a["action_id"])
    until = T0.replace(hour=15)
    for ok in (
        {"kind": "maintenance", "fault_type": None, "until": until},
        {
            "kind": "maintenance",
            "fault_type": None,
            "device_id": None,
            "circuit": "A",
            "until": until,
        },
        {"kind": "maintenance_end", "fault_type": None, "device_id": None, "circuit": "A"},
    ):
        action(**ok)
    for bad in (
        {"fault_type": None},  # acknowledge of what?
        {"kind": "maintenance", "until": None},
        {"kind": "maintenance", "circuit": "A", "until": until},  # device and circuit
        {"kind": "maintenance_end", "device_id": None},
        {"kind": "lamp_test"},  # no result
        {"by": ""},
        {"at": datetime(2026, 11, 28, 11, 0)},
        {"note": "x" * 501},
    ):
        with pytest.raises(ValidationError):
            action(**bad)
    draft_ = ActionDraft(kind="maintenance_end", by="budi", at=T0, circuit="A")
    assert OperatorAction(**dict(draft_), gateway_id="gw-01", replayed=True).circuit == "A"


def test_committed_schemas_are_up_to_date() -> None:
    folder = ROOT / "docs" / "schemas"
    rendered = render_schemas()
    on_disk = {name: (folder / name).read_text() for name in rendered if (folder / name).exists()}
    assert on_disk == rendered, "run: python -m uplink.schemas docs/schemas"


def test_contract_imports_nothing_of_the_project() -> None:
    code = (
        "import sys, uplink.contract\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('agent', 'collectors', 'firmware_config', 'central')]\n"
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_tail_lines_are_readable() -> None:
    root = "siaran/v1"
    status, fault, batch, ack, cmd, result, acked, lamp_test = samples()
    line = format_message(root, "siaran/v1/gw-01/status", encode(status), retained=True)
    assert "STATUS ONLINE" in line and "devices=500" in line and "(retained)" in line
    offline = GatewayStatus.model_validate({**status.model_dump(), "state": "offline"})
    offline = offline.model_copy(update={"graceful": False})
    assert "Last Will" in format_message(root, "siaran/v1/gw-01/status", encode(offline))
    line = format_message(root, "siaran/v1/gw-01/fault", encode(fault))
    assert "FAULT #7 RAISED major lamp_out streetlight:pju-0042" in line
    assert "power_w=0" in line and "circuit=PNL-07/A" in line
    replayed = fault_event(replayed=True)
    assert "#7 REPLAYED" in format_message(root, "siaran/v1/gw-01/fault", encode(replayed))
    assert "TELEMETRY 2 samples, 3 values" in format_message(
        root, "siaran/v1/gw-01/telemetry", encode(batch)
    )
    assert "ACK central applied up to #5" in format_message(
        root, "siaran/v1/gw-01/ack", encode(ack)
    )
    assert "COMMAND lamp_test" in format_message(root, "siaran/v1/gw-01/cmd/lamp_test", encode(cmd))
    assert "COMMAND-RESULT lamp_test done" in format_message(
        root, "siaran/v1/gw-01/cmd-result/lamp_test", encode(result)
    )
    line = format_message(root, "siaran/v1/gw-01/action", encode(acked))
    assert "ACTION acknowledge pju-0042 by budi lamp_out 'teknisi di lokasi'" in line
    line = format_message(root, "siaran/v1/gw-01/action", encode(lamp_test))
    assert "ACTION lamp_test pju-0042 by budi OK: ok" in line
    assert format_message(root, "siaran/v1/gw-01/fault", b"{}").startswith("! ")
    assert format_message(root, "elsewhere/x", b"hi").startswith("? ")
