"""The gateway's direct path to the city's InfluxDB (v2 write API), for when it can reach it.

    writer = InfluxWriter(config.influxdb, gateway_id, meta, state_dir)
    await writer.open()
    task = asyncio.create_task(writer.run())
    await writer.submit(draft)          # the same TelemetryDraft that goes over MQTT
    await writer.close()

Durability reuses the uplink's outbox machinery: a second, telemetry-only Outbox in
`influx-outbox.db`. While InfluxDB answers, batches wait in memory only until they are written;
from the first failed write on, they go to disk (in order) and are written when it answers again.
Bound: `[influxdb] max_disk_bytes`; beyond it the oldest batches are dropped and counted.
Writes: influxdb-client's async API, up to `batch_size` points per request, retried forever with
exponential backoff and full jitter (tenacity) on connection errors, timeouts, 429 and 5xx and
401/403/404 (an operator fixes a token or bucket; points wait). A request InfluxDB refuses as bad
data (400, 413, 422) is dropped and counted: retrying could never succeed. The token is never
logged: error texts are cut and scrubbed of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import structlog
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from agent.clock import Clock, SystemClock
from firmware_config.telemetry_config import InfluxConfig
from firmware_config.uplink_config import OutboxConfig
from uplink.contract import DeviceMeta, TelemetryBatch, TelemetryDraft
from uplink.influx_points import PRECISION, RateTracker, sample_lines
from uplink.outbox import Outbox
from uplink.store import Row

log = structlog.get_logger(__name__)

OUTBOX_FILE = "influx-outbox.db"
REJECTED_STATUS = (400, 413, 422)  # bad data: retrying cannot help
ROWS_PER_ROUND = 20  # telemetry batches converted and written per round


class InfluxUnavailableError(Exception):
    """A write that may succeed later (connection, timeout, 429, 5xx, auth, bucket)."""


class InfluxRejectedError(Exception):
    """InfluxDB refused the data itself (400, 413, 422)."""


class LineWriter(Protocol):
    """Where line protocol goes; raises InfluxUnavailableError or InfluxRejectedError."""

    async def write(self, lines: Sequence[str]) -> None: ...

    async def close(self) -> None: ...


def scrub(text: str, token: str | None, limit: int = 300) -> str:
    """An error text fit for a log line: cut, and never with the token in it."""
    if token:
        text = text.replace(token, "<token>")
    return text[:limit]


class InfluxHttp:
    """influxdb-client's async write API, with errors sorted into retry or reject."""

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        self._token: str | None = None
        self._client: InfluxDBClientAsync | None = None

    def _open(self) -> InfluxDBClientAsync:
        if self._client is None:
            c = self.config
            try:  # read at the first write: a missing secret makes points wait, not the agent fail
                self._token = c.token.resolve().get_secret_value() if c.token else None
            except ValueError as exc:  # the message names the file or variable, not the value
                raise InfluxUnavailableError(f"token: {exc}") from None
            args: dict[str, Any] = {"token": self._token, "org": c.org or None}
            if c.ca_file is not None:
                try:  # a missing CA file makes points wait (and says so), like a missing token
                    args["ssl_context"] = ssl.create_default_context(cafile=str(c.ca_file))
                except OSError as exc:
                    raise InfluxUnavailableError(f"ca_file {c.ca_file}: {exc}") from None
            self._client = InfluxDBClientAsync(
                url=c.url, timeout=int(c.timeout_s * 1000), enable_gzip=c.gzip, **args
            )
        return self._client

    async def write(self, lines: Sequence[str]) -> None:
        api = self._open().write_api()
        try:
            args: dict[str, Any] = {"org": self.config.org or None, "write_precision": PRECISION}
            await api.write(bucket=self.config.bucket, record=list(lines), **args)
        except ApiException as exc:
            why = scrub(f"HTTP {exc.status} {exc.reason}: {exc.body or ''}", self._token)
            if exc.status in REJECTED_STATUS:
                raise InfluxRejectedError(why) from None
            raise InfluxUnavailableError(why) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            why = scrub(f"{type(exc).__name__}: {exc}", self._token)
            raise InfluxUnavailableError(why) from None

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()  # type: ignore[no-untyped-call]


async def write_retrying(
    writer: LineWriter,
    lines: Sequence[str],
    backoff_max_s: float,
    sleep: Callable[[float], Awaitable[None]],
    on_failure: Callable[[InfluxUnavailableError, int], Awaitable[None]],
) -> None:
    """Write until it succeeds (raises InfluxRejectedError for bad data)."""

    async def failed(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, InfluxUnavailableError):
            await on_failure(exc, state.attempt_number)

    async for attempt in AsyncRetrying(
        wait=wait_random_exponential(
            multiplier=1.0, min=min(1.0, backoff_max_s), max=backoff_max_s
        ),
        retry=retry_if_exception_type(InfluxUnavailableError),
        sleep=sleep,
        before_sleep=failed,
        reraise=True,
    ):
        with attempt:
            await writer.write(lines)


@dataclass(frozen=True)
class InfluxStats:
    reachable: bool
    points_written: int
    points_rejected: int  # refused by InfluxDB as bad data (since start)
    write_failures: int  # failed attempts (retried)
    last_write_at: datetime | None
    last_error: str | None
    batches_pending: int  # telemetry batches waiting (memory + disk)
    bytes_on_disk: int
    batches_dropped: int  # dropped because influx-outbox.db was full (since install)


class InfluxWriter:
    def __init__(
        self,
        config: InfluxConfig,
        gateway_id: str,
        meta: Mapping[str, DeviceMeta],
        state_dir: Path,
        *,
        clock: Clock | None = None,
        writer: LineWriter | None = None,
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self._meta = dict(meta)
        self._clock: Clock = clock or SystemClock()
        self._writer: LineWriter = writer or InfluxHttp(config)
        outbox = OutboxConfig(
            file_name=OUTBOX_FILE,
            max_bytes=config.max_disk_bytes,
            fault_hard_cap_bytes=config.max_disk_bytes,
        )
        self.outbox = Outbox(state_dir / OUTBOX_FILE, outbox, gateway_id, self._clock.now)
        self._rates = RateTracker(config.rates)
        self._opened = False
        self._open_lock = asyncio.Lock()  # run() and submit() may both open first
        self._reachable = True
        self._written = 0
        self._rejected = 0
        self._failures = 0
        self._last_write: datetime | None = None
        self._last_error: str | None = None
        self._unknown: set[str] = set()
        self._rejected_rows = 0

    async def open(self) -> None:
        async with self._open_lock:
            if not self._opened:
                await self.outbox.open()
                self._opened = True
                self.outbox.link_up(_token())

    async def submit(self, draft: TelemetryDraft) -> None:
        """Keep a batch for InfluxDB: in memory while it answers, else on disk."""
        await self.open()
        await self.outbox.add_telemetry(draft)

    async def run(self) -> None:
        """Write what is submitted, in order, until cancelled."""
        await self.open()
        while True:
            rows = await self.outbox.take(ROWS_PER_ROUND)
            if not rows:
                await self.outbox.wait_for_work()
                continue
            await self._write_rows(rows)

    async def _write_rows(self, rows: list[Row]) -> None:
        lines: list[str] = []
        for row in rows:
            if row.kind != "telemetry":
                continue  # the store's own reset report (a fault row): not for InfluxDB
            try:
                lines += self._lines(TelemetryBatch.model_validate_json(row.payload))
            except ValidationError as exc:  # unreadable row: skipped, never blocks the rest
                self._rejected_rows += 1
                log.error("influx_row_unreadable", key=row.key, error=str(exc)[:200])
        size = self.config.batch_size
        for start in range(0, len(lines), size):
            chunk = lines[start : start + size]
            try:
                await write_retrying(
                    self._writer, chunk, self.config.backoff_max_s, self._clock.sleep, self._failed
                )
                self._written += len(chunk)
                self._last_write = self._clock.now()
            except InfluxRejectedError as exc:
                self._rejected += len(chunk)
                self._last_error = str(exc)
                log.error("influx_points_rejected", points=len(chunk), error=str(exc))
        await self.outbox.done(rows)
        if not self._reachable:
            self._reachable = True
            self.outbox.link_up(_token())
            log.info("influx_reachable_again", url=self.config.url)

    def _lines(self, batch: TelemetryBatch) -> list[str]:
        out: list[str] = []
        for sample in batch.samples:
            meta = self._meta.get(sample.device_id) or sample.meta
            if meta is None:
                if sample.device_id not in self._unknown:
                    self._unknown.add(sample.device_id)
                    log.warning("influx_unknown_device", device=sample.device_id)
                continue
            out += sample_lines(batch.gateway_id, sample, meta, self._rates)
        return out

    async def _failed(self, exc: InfluxUnavailableError, attempt: int) -> None:
        self._failures += 1
        self._last_error = str(exc)
        if self._reachable:
            self._reachable = False
            log.warning("influx_unreachable", url=self.config.url, error=str(exc))
            await self.outbox.link_down()  # from now on batches wait on disk
        elif attempt in (10, 100) or attempt % 1000 == 0:
            log.warning("influx_still_unreachable", attempts=attempt, error=str(exc))

    def stats(self) -> InfluxStats:
        st = self.outbox.status()
        return InfluxStats(
            reachable=self._reachable,
            points_written=self._written,
            points_rejected=self._rejected,
            write_failures=self._failures,
            last_write_at=self._last_write,
            last_error=self._last_error,
            batches_pending=st.telemetry_pending,
            bytes_on_disk=st.bytes_on_disk,
            batches_dropped=st.telemetry_dropped,
        )

    async def close(self) -> None:
        """Spill what waits in memory to disk and close (call run()'s task cancel first)."""
        if self._opened:
            await self.outbox.close()
            self._opened = False
        with contextlib.suppress(Exception):
            await self._writer.close()


def _token() -> int:
    return secrets.randbits(62) | 1
