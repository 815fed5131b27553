"""Samples -> line protocol (both paths use it), and the gateway writer's handling of bad data."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from firmware_config.telemetry_config import InfluxConfig, RateSpec
from uplink.contract import DeviceMeta, DeviceSamples, TelemetryDraft
from uplink.influx import InfluxRejectedError, InfluxWriter, scrub
from uplink.influx_points import RateTracker, sample_lines, split_name

T0 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
LAMP = DeviceMeta(
    kind="streetlight",
    profile="pju-generic",
    circuit="PNL 07,A",
    kelurahan="Pamulang Barat",
    kecamatan="Pamulang",
)
AP = DeviceMeta(kind="hotspot", profile="mikrotik-routeros", kecamatan="Serpong")


def rates() -> RateTracker:
    return RateTracker({"if_in_octets": RateSpec(field="if_in_bps", factor=8)})


def test_a_lamp_sample_is_one_point_with_escaped_tags_and_float_fields() -> None:
    s = DeviceSamples(
        device_id="pju-0001",
        at=T0 + timedelta(milliseconds=5),
        values={
            "active_power": 60,
            "lamp_on": True,
            "daylight": False,
            "sys_descr": 'fw "1.4"',
            "lux": None,
        },
    )
    (line,) = sample_lines("gw-01", s, LAMP, rates())
    assert line == (
        "streetlight,circuit=PNL\\ 07\\,A,device=pju-0001,gateway=gw-01,kecamatan=Pamulang,"
        "kelurahan=Pamulang\\ Barat,profile=pju-generic "
        'active_power=60.0,lamp_on=1.0,daylight=0.0,sys_descr="fw \\"1.4\\"" 1795863600005'
    )


def test_table_cells_become_one_point_per_row_with_a_rate_for_octets() -> None:
    tracker = rates()
    first = DeviceSamples(
        device_id="ap-01",
        at=T0,
        values={
            "interfaces.3.if_in_octets": 1000,
            "interfaces.3.if_oper_status": 1,
            "reachable": True,
        },
    )
    lines = sample_lines("gw-02", first, AP, tracker)
    assert lines == [
        "hotspot,device=ap-01,gateway=gw-02,kecamatan=Serpong,profile=mikrotik-routeros"
        " reachable=1.0 1795863600000",
        "hotspot,device=ap-01,gateway=gw-02,kecamatan=Serpong,profile=mikrotik-routeros,row=3,"
        "table=interfaces if_in_octets=1000.0,if_oper_status=1.0 1795863600000",
    ]  # no rate from a first value
    later = DeviceSamples(
        device_id="ap-01",
        at=T0 + timedelta(seconds=100),
        values={"interfaces.3.if_in_octets": 126000},
    )
    (line,) = sample_lines("gw-02", later, AP, tracker)
    assert "if_in_octets=126000.0,if_in_bps=10000.0 " in line  # 125000 B in 100 s = 10000 bit/s
    reset = DeviceSamples(
        device_id="ap-01", at=T0 + timedelta(seconds=200), values={"interfaces.3.if_in_octets": 5}
    )
    (line,) = sample_lines("gw-02", reset, AP, tracker)
    assert "if_in_bps" not in line  # a counter that went down (reboot, wrap) gives no rate


def test_names_split_into_table_row_and_column() -> None:
    assert split_name("active_power") == ("", "", "active_power")
    assert split_name("interfaces.3.if_in_octets") == ("interfaces", "3", "if_in_octets")
    assert split_name("wireless_clients.1.2.3.4.5.6.7.signal") == (
        "wireless_clients",
        "1.2.3.4.5.6.7",
        "signal",
    )


def test_scrub_keeps_the_token_out_of_error_texts() -> None:
    assert scrub("401 for token s3cret-tok, retry", "s3cret-tok") == "401 for token <token>, retry"
    assert len(scrub("x" * 1000, None)) == 300


class _Refusing:
    """A server that refuses the first request as bad data and takes the rest."""

    def __init__(self) -> None:
        self.written: list[list[str]] = []
        self.calls = 0

    async def write(self, lines: Sequence[str]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise InfluxRejectedError("HTTP 400 Bad Request: field type conflict")
        self.written.append(list(lines))

    async def close(self) -> None:
        pass


async def test_points_influxdb_refuses_are_dropped_and_counted_not_retried(tmp_path: Path) -> None:
    server = _Refusing()
    config = InfluxConfig(url="http://127.0.0.1:9", bucket="b", batch_size=1)
    writer = InfluxWriter(config, "gw-01", {"pju-0001": LAMP}, tmp_path, writer=server)
    task = asyncio.create_task(writer.run())
    for i in range(2):
        sample = DeviceSamples(
            device_id="pju-0001", at=T0 + timedelta(minutes=i), values={"active_power": 60.0 + i}
        )
        await writer.submit(TelemetryDraft(samples=[sample]))
    for _ in range(500):  # up to 5 s
        if writer.stats().points_written + writer.stats().points_rejected == 2:
            break
        await asyncio.sleep(0.01)
    stats = writer.stats()
    assert (stats.points_rejected, stats.points_written, stats.batches_pending) == (1, 1, 0)
    assert server.calls == 2 and "active_power=61.0" in server.written[0][0]
    task.cancel()
    await writer.close()


async def test_missing_ca_file_makes_points_wait_instead_of_failing(tmp_path: Path) -> None:
    import pytest

    from uplink.influx import InfluxHttp, InfluxUnavailableError

    config = InfluxConfig(
        url="https://127.0.0.1:9", bucket="b", ca_file=tmp_path / "missing-ca.pem"
    )
    with pytest.raises(InfluxUnavailableError, match=r"missing-ca\.pem"):
        await InfluxHttp(config).write(["m f=1 1"])
