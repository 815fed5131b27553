"""Central's path to InfluxDB: telemetry received over MQTT, written as points in batches.

    sink = CentralInfluxSink(config.influxdb, meta_path=state_dir / "influx-devices.json")
    task = asyncio.create_task(sink.run(stop))  # returns when `stop` is set
    await sink.handle(batch)            # each TelemetryBatch from {root}/+/telemetry
    sink.stats()
    await sink.close()                  # after run() returned or was cancelled

The points are those of the gateway's direct path (uplink.influx_points). A device's tags come
with its samples now and then (DeviceMeta, at least every `[telemetry] meta_interval_s` of the
gateway): they are remembered per gateway and device, and kept in `meta_path` so that a restart
does not forget them. Samples of a device whose tags are not known yet wait for them.

Bounds (memory only): `max_buffer_points` lines wait for InfluxDB (while it is away); beyond,
the oldest are dropped and counted (`points_dropped`). Samples waiting for tags are bounded the
same way (`samples_dropped`). Writes: `batch_size` points per request, at least every
`flush_interval_s`, retried with backoff while InfluxDB is unreachable; data InfluxDB refuses
(400, 413, 422) is dropped and counted. Duplicates (QoS 1) are dropped by batch id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import Counter, OrderedDict, deque
from pathlib import Path

import structlog

from firmware_config.telemetry_config import InfluxConfig
from uplink.contract import DeviceMeta, DeviceSamples, TelemetryBatch
from uplink.influx import (
    InfluxHttp,
    InfluxRejectedError,
    InfluxUnavailableError,
    LineWriter,
    write_retrying,
)
from uplink.influx_points import RateTracker, sample_lines

log = structlog.get_logger(__name__)

SEEN_BATCHES = 10_000  # batch ids remembered for dropping duplicates
CLOSE_FLUSH_S = 5.0  # at close, how long a last write may take


class CentralInfluxSink:
    def __init__(
        self,
        config: InfluxConfig,
        *,
        meta_path: Path | None = None,
        writer: LineWriter | None = None,
    ) -> None:
        self.config = config
        self._writer: LineWriter = writer or InfluxHttp(config)
        self._meta_path = meta_path
        self._meta: dict[str, dict[str, DeviceMeta]] = _load_meta(meta_path)
        self._rates = RateTracker(config.rates)
        self._lines: deque[str] = deque()
        self._waiting: deque[tuple[str, DeviceSamples]] = deque()  # tags not known yet
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._stopping = False
        self._reachable = True
        self._counts: Counter[str] = Counter()

    # -- in --------------------------------------------------------------------------------

    async def handle(self, batch: TelemetryBatch) -> None:
        """Turn a batch into points in the buffer (never waits for InfluxDB)."""
        key = str(batch.batch_id)
        if key in self._seen:
            self._counts["batches_duplicate"] += 1
            return
        self._seen[key] = None
        if len(self._seen) > SEEN_BATCHES:
            self._seen.popitem(last=False)
        self._counts["batches"] += 1
        known = self._meta.setdefault(batch.gateway_id, {})
        changed = False
        for sample in batch.samples:
            if sample.meta is not None and known.get(sample.device_id) != sample.meta:
                known[sample.device_id] = sample.meta
                changed = True
                self._release(batch.gateway_id, sample.device_id)
            meta = known.get(sample.device_id)
            if meta is None:
                self._wait(batch.gateway_id, sample)
            else:
                self._add(sample_lines(batch.gateway_id, sample, meta, self._rates))
        if changed:
            await self._save_meta()

    def _add(self, lines: list[str]) -> None:
        self._lines.extend(lines)
        over = len(self._lines) - self.config.max_buffer_points
        if over > 0:
            for _ in range(over):
                self._lines.popleft()
            if self._counts["points_dropped"] == 0:
                log.warning("influx_buffer_full_dropping", max_points=self.config.max_buffer_points)
            self._counts["points_dropped"] += over
        if len(self._lines) >= self.config.batch_size:
            self._wake.set()

    def _wait(self, gateway_id: str, sample: DeviceSamples) -> None:
        self._waiting.append((gateway_id, sample))
        if len(self._waiting) > self.config.max_buffer_points:
            self._waiting.popleft()
            self._counts["samples_dropped"] += 1
        self._counts["samples_waiting_for_tags"] += 1

    def _release(self, gateway_id: str, device_id: str) -> None:
        """Tags arrived: the device's waiting samples become points (in order)."""
        if not self._waiting:
            return
        keep: deque[tuple[str, DeviceSamples]] = deque()
        meta = self._meta[gateway_id][device_id]
        for gw, sample in self._waiting:
            if gw == gateway_id and sample.device_id == device_id:
                self._add(sample_lines(gw, sample, meta, self._rates))
            else:
                keep.append((gw, sample))
        self._waiting = keep

    # -- out -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Write the buffer, `batch_size` points at a time, until `stop` is set or close() (or
        cancellation; a chunk being retried then goes back to the front of the buffer)."""
        watcher = asyncio.create_task(self._watch(stop)) if stop is not None else None
        try:
            await self._loop()
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping = True
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.flush_interval_s)
            self._wake.clear()
            while self._lines and not self._stopping:
                await self._write_some()
                if len(self._lines) < self.config.batch_size:
                    break

    async def _write_some(self) -> None:
        n = min(len(self._lines), self.config.batch_size)
        chunk = [self._lines.popleft() for _ in range(n)]
        try:
            await write_retrying(
                self._writer, chunk, self.config.backoff_max_s, asyncio.sleep, self._failed
            )
            self._counts["points_written"] += n
            if not self._reachable:
                self._reachable = True
                log.info("influx_reachable_again", url=self.config.url)
        except InfluxRejectedError as exc:
            self._counts["points_rejected"] += n
            log.error("influx_points_rejected", points=n, error=str(exc))
        except asyncio.CancelledError:
            self._lines.extendleft(reversed(chunk))  # not written: back to the front
            raise

    async def _failed(self, exc: InfluxUnavailableError, attempt: int) -> None:
        self._counts["write_failures"] += 1
        if self._reachable:
            self._reachable = False
            log.warning("influx_unreachable", url=self.config.url, error=str(exc))
        elif attempt in (10, 100) or attempt % 1000 == 0:
            log.warning("influx_still_unreachable", attempts=attempt, error=str(exc))

    async def close(self) -> None:
        """One last write of what is buffered (bounded in time), then close the client.
        Cancel the task running run() first."""
        self._stopping = True
        self._wake.set()
        try:
            async with asyncio.timeout(CLOSE_FLUSH_S):
                while self._lines:
                    await self._write_some()
        except TimeoutError:
            pass
        if self._lines or self._waiting:
            log.warning(
                "influx_points_lost_at_close", points=len(self._lines), samples=len(self._waiting)
            )
        await self._writer.close()

    def stats(self) -> dict[str, int]:
        out = dict(self._counts)
        out.update(
            points_buffered=len(self._lines),
            samples_waiting=len(self._waiting),
            reachable=int(self._reachable),
        )
        return out

    # -- remembered tags -------------------------------------------------------------------

    async def _save_meta(self) -> None:
        if self._meta_path is None:
            return
        data = {
            gw: {d: m.model_dump(mode="json") for d, m in devs.items()}
            for gw, devs in self._meta.items()
        }
        await asyncio.to_thread(_write_json, self._meta_path, data)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _load_meta(path: Path | None) -> dict[str, dict[str, DeviceMeta]]:
    if path is None or not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            gw: {d: DeviceMeta.model_validate(m) for d, m in devs.items()}
            for gw, devs in raw.items()
        }
    except (OSError, ValueError) as exc:
        log.warning("influx_meta_unreadable", path=str(path), error=str(exc)[:200])
        return {}
