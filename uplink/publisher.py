"""The Uplink: the agent's one door to the central broker (outbox + one MQTT connection).

    uplink = Uplink.from_config(config, info=lambda: GatewayInfo(...))
    await uplink.open()
    task = asyncio.create_task(uplink.run())     # connects, reconnects, drains the outbox
    event = await uplink.submit_fault(draft)     # durable when it returns (seq assigned)
    action = await uplink.submit_action(draft)   # a technician's action, durable likewise
    await uplink.submit_telemetry(batch)
    await uplink.close()                         # goodbye (offline status), rows stay on disk

Per connection: Last Will = retained offline status; birth = retained online status; subscribe
to the branch's `ack` and `cmd/+`; then drain the outbox in order, QoS 1, a row deleted only
after its PUBACK (a PUBACK with a failure reason code moves it to the dead-letter table).
Reconnects: tenacity, exponential backoff with full jitter, capped; the backoff starts again
after a connection that lasted STABLE_AFTER_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from agent.clock import Clock, SystemClock, sleep_unless
from firmware_config.models import BrokerConfig, GatewayConfig
from firmware_config.uplink_config import OutboxConfig
from uplink.contract import (
    QOS_ACTION,
    QOS_FAULT,
    QOS_STATUS,
    QOS_TELEMETRY,
    Ack,
    ActionDraft,
    Command,
    CommandResult,
    FaultDraft,
    FaultEvent,
    GatewayStatus,
    OperatorAction,
    OutboxStatus,
    TelemetryDraft,
    Topics,
    encode,
    parse_topic,
)
from uplink.mqtt_link import Link, LinkError, LinkFactory, LinkOptions, MqttLink, Will, tls_context
from uplink.outbox import Outbox
from uplink.store import Row

log = structlog.get_logger(__name__)

STABLE_AFTER_S = 60.0
SUCCESS_MAX = 0x7F  # PUBACK reason codes above are failures (MQTT 5)
STATUS_CHECK_S = 15.0  # how often flag changes (full, refused...) are looked for


@dataclass(frozen=True)
class GatewayInfo:
    """What the status message says about the gateway; asked for at each status."""

    agent_version: str
    config_version: str
    device_count: int
    clock_synced: bool


@dataclass(frozen=True)
class UplinkStats:
    """For the status page: all counts are of this moment unless said otherwise."""

    connected: bool
    connected_since: datetime | None
    last_publish_at: datetime | None
    last_error: str | None
    connects: int  # successful connections since start
    faults_pending: int
    telemetry_pending: int  # in memory + on disk
    telemetry_in_memory: int
    oldest_pending_at: datetime | None
    bytes_on_disk: int
    telemetry_dropped: int  # since install
    faults_refused: int  # since install
    dead_letters: int
    store_resets: int
    last_seq: int
    central_acked_seq: int
    actions_pending: int = 0  # technician actions not yet acknowledged by PUBACK


CommandHandler = Callable[[Command], Awaitable[CommandResult]]


class _LinkLostError(LinkError):
    def __init__(self, message: str, stable: bool) -> None:
        super().__init__(message)
        self.stable = stable


class Uplink:
    def __init__(
        self,
        gateway_id: str,
        broker: BrokerConfig | None,
        outbox: OutboxConfig,
        state_dir: Path,
        info: Callable[[], GatewayInfo],
        *,
        clock: Clock | None = None,
        link_factory: LinkFactory = MqttLink,
        backoff_min_s: float = 1.0,
        backoff_max_s: float = 60.0,
        command_handler: CommandHandler | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.broker = broker
        self.config = outbox
        self.topics = Topics(broker.topic_root if broker else "siaran/v1", gateway_id)
        self._info = info
        self._clock: Clock = clock or SystemClock()
        self._link_factory = link_factory
        self._backoff = (backoff_min_s, backoff_max_s)
        self._command_handler = command_handler
        self.outbox = Outbox(state_dir / outbox.file_name, outbox, gateway_id, self._clock.now)
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._link: Link | None = None
        self._connected_since: datetime | None = None
        self._last_publish: datetime | None = None
        self._last_error: str | None = None
        self._connects = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._run_task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(
        cls,
        config: GatewayConfig,
        info: Callable[[], GatewayInfo],
        *,
        clock: Clock | None = None,
        command_handler: CommandHandler | None = None,
    ) -> Uplink:
        return cls(
            config.gateway.id,
            config.broker,
            config.outbox,
            config.state_dir,
            info,
            clock=clock,
            command_handler=command_handler,
        )

    # -- the agent's side ----------------------------------------------------------------

    async def open(self) -> None:
        async with self._open_lock:
            if not self._opened:
                await self.outbox.open()
                self._opened = True

    async def submit_fault(self, draft: FaultDraft) -> FaultEvent:
        """Commit a fault; it is on disk (fsync) with its seq when this returns.

        Raises store.OutboxFullError only when faults alone fill the store to its hard cap.
        """
        await self.open()
        return await self.outbox.add_fault(draft)

    async def submit_action(self, draft: ActionDraft) -> OperatorAction:
        """Commit a technician's action; it is on disk (fsync) when this returns."""
        await self.open()
        return await self.outbox.add_action(draft)

    async def submit_telemetry(self, draft: TelemetryDraft) -> None:
        """Queue a telemetry batch (memory while online, disk while offline). Submit one batch
        per poll cycle rather than one per device: every disk write costs a page or more."""
        await self.open()
        await self.outbox.add_telemetry(draft)

    def stats(self) -> UplinkStats:
        s = self.outbox.snapshot()
        st = self.outbox.status()
        c = s.counts
        return UplinkStats(
            connected=self._connected_since is not None,
            connected_since=self._connected_since,
            last_publish_at=self._last_publish,
            last_error=self._last_error,
            connects=self._connects,
            faults_pending=c.faults,
            telemetry_pending=st.telemetry_pending,
            telemetry_in_memory=s.memory_batches,
            oldest_pending_at=st.oldest_pending_at,
            bytes_on_disk=c.total_bytes,
            telemetry_dropped=c.telemetry_dropped,
            faults_refused=c.faults_refused,
            dead_letters=c.dead_letters,
            store_resets=c.resets,
            last_seq=c.next_seq - 1,
            central_acked_seq=c.central_acked_seq,
            actions_pending=c.actions,
        )

    async def run(self) -> None:
        """Connect and keep connected until close() (or cancellation). Returns at once when
        there is no broker in the config: events then stay in the outbox."""
        await self.open()
        if self.broker is None:
            log.warning("uplink_disabled", reason="no [broker] in the config")
            return
        self._run_task = asyncio.current_task()
        while not self._stopping.is_set():
            try:
                async for attempt in AsyncRetrying(
                    wait=wait_random_exponential(
                        multiplier=self._backoff[0], min=self._backoff[0], max=self._backoff[1]
                    ),
                    retry=retry_if_exception(lambda e: isinstance(e, LinkError) and not _stable(e)),
                    sleep=self._sleep_unless_stopping,
                    before_sleep=self._log_retry,
                    reraise=True,
                ):
                    with attempt:
                        await self._session()
            except _LinkLostError as exc:  # after a stable connection: start the backoff anew
                if not exc.stable:
                    raise

    async def _wait_stop(self) -> None:
        await self._stopping.wait()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        await sleep_unless(self._clock, seconds, self._stopping)

    async def close(self) -> None:
        """Say goodbye (retained offline status, DISCONNECT), spill memory, close the store."""
        self._stopping.set()
        task = self._run_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(task), 10.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except LinkError:
                pass
        for handler in list(self._tasks):  # ack and command handlers still running
            handler.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._opened:
            await self.outbox.close()
            self._opened = False

    # -- one connection ------------------------------------------------------------------

    def _options(self) -> LinkOptions:
        b = self.broker
        assert b is not None
        password = b.password.resolve().get_secret_value() if b.password else None
        will = GatewayStatus(
            gateway_id=self.gateway_id,
            state="offline",
            graceful=False,
            at=self._clock.now(),
            last_seq=self.outbox.snapshot().counts.next_seq - 1,
            central_acked_seq=self.outbox.snapshot().counts.central_acked_seq,
            **_info_fields(self._info()),
        )
        return LinkOptions(
            host=b.host,
            port=b.port,
            client_id=b.client_id or self.gateway_id,
            keepalive_s=b.keepalive_s,
            username=b.username,
            password=password,
            tls=tls_context(b.tls) if b.tls is not None else None,
            will=Will(self.topics.status, encode(will), QOS_STATUS, True),
            session_expiry_s=self.config.session_expiry_s,
            max_inflight=self.config.max_inflight,
        )

    async def _session(self) -> None:
        if self._stopping.is_set():
            return
        try:
            options = self._options()
        except (ValueError, OSError) as exc:  # secret or certificate files unreadable
            self._last_error = str(exc)
            raise LinkError(f"cannot prepare the connection: {exc}") from None
        link = self._link_factory(options, self._on_message)
        try:
            await link.connect()
        except LinkError as exc:
            self._last_error = str(exc)
            raise
        started = self._clock.monotonic()
        self._link = link
        token = secrets.randbits(62) | 1
        tasks: list[asyncio.Task[None]] = []
        try:
            await link.subscribe([(self.topics.ack, 1), (self.topics.cmd(), 1)])
            await self._publish_status(link, "online")
            self._connects += 1
            self._connected_since = self._clock.now()
            self.outbox.link_up(token)
            log.info("uplink_connected", host=options.host, port=options.port)
            tasks = [
                asyncio.create_task(self._drain(link)),
                asyncio.create_task(self._status_loop(link)),
                asyncio.create_task(link.wait_closed()),
                asyncio.create_task(self._wait_stop()),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if tasks[3] in done:
                await self._cancel(tasks)
                await self._goodbye(link)
                return
            why = "connection lost"
            for t in done:
                failure = t.exception()
                if failure is not None:
                    why = str(failure)
                    if not isinstance(failure, LinkError):
                        log.error("uplink_internal_error", error=repr(failure))
            raise LinkError(why)
        except LinkError as exc:
            self._last_error = str(exc)
            stable = self._clock.monotonic() - started >= STABLE_AFTER_S
            log.warning("uplink_disconnected", error=str(exc), stable=stable)
            raise _LinkLostError(str(exc), stable) from None
        finally:
            await self._cancel(tasks)
            self._connected_since = None
            self._link = None
            link.abort()
            await self.outbox.link_down()

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _goodbye(self, link: Link) -> None:
        with contextlib.suppress(LinkError, TimeoutError):
            await asyncio.wait_for(self._publish_status(link, "offline"), 5.0)
        await link.disconnect()
        log.info("uplink_closed")

    def _status(self, state: str) -> GatewayStatus:
        c = self.outbox.snapshot().counts
        return GatewayStatus(
            gateway_id=self.gateway_id,
            state="online" if state == "online" else "offline",
            graceful=True,
            at=self._clock.now(),
            last_seq=c.next_seq - 1,
            central_acked_seq=c.central_acked_seq,
            outbox=self.outbox.status(),
            **_info_fields(self._info()),
        )

    async def _publish_status(self, link: Link, state: str) -> None:
        rc = await link.publish(self.topics.status, encode(self._status(state)), QOS_STATUS, True)
        if rc > SUCCESS_MAX:
            log.error("uplink_status_refused", reason_code=rc, topic=self.topics.status)

    async def _status_loop(self, link: Link) -> None:
        """Refresh the retained status every status_interval_s, or when a flag changes."""
        last = _flags(self.outbox.status())
        since = self._clock.monotonic()
        while True:
            await self._clock.sleep(min(STATUS_CHECK_S, self.config.status_interval_s))
            now_flags = _flags(self.outbox.status())
            due = self._clock.monotonic() - since >= self.config.status_interval_s
            if due or now_flags != last:
                await self._publish_status(link, "online")
                last, since = now_flags, self._clock.monotonic()

    async def _drain(self, link: Link) -> None:
        """Publish the outbox in order through a sliding window: up to `publish_window` rows
        handed to the link ahead of their PUBACKs, more taken as soon as the oldest are
        acknowledged (or new rows come while the outbox was empty). A row is forgotten only
        after its PUBACK (deletions batched)."""
        outbox = self.outbox
        window = self.config.publish_window
        refill = max(1, window // 4)  # take more once this many of the window are acknowledged
        pending: deque[tuple[Row, asyncio.Future[int]]] = deque()
        settled = _Settled()
        exhausted = False  # the last take found fewer rows than it asked for
        due = False  # new rows were committed since
        try:
            while True:
                room = window - len(pending)
                if room and (room >= refill or not pending or due):
                    rows = await outbox.take(room)
                    exhausted, due = len(rows) < room, False
                    for row in rows:
                        topic = self._topic_of(row)
                        fut = link.publish(topic, outbox.render(row), _qos_of(row), False)
                        pending.append((row, fut))
                if not pending:
                    await self._settle(settled)
                    await outbox.wait_for_work()
                    continue
                # PUBACKs come in order on one connection: wait for the refill-th oldest; if it is
                # done but an older one is not (a broker out of order, one publish failed alone),
                # for that one; with all of them done, take_done() moves at least the oldest on
                mark: asyncio.Future[int] | None = pending[min(refill, len(pending)) - 1][1]
                if mark is not None and mark.done():
                    head = itertools.islice(pending, refill)
                    mark = next((f for _, f in head if not f.done()), None)
                if mark is not None:
                    if exhausted and len(pending) < window:  # also wake for new rows
                        work = asyncio.ensure_future(outbox.wait_for_work())
                        either: list[asyncio.Future[Any]] = [mark, work]
                        try:
                            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                        finally:
                            due = work.done()
                            work.cancel()
                    else:
                        await asyncio.wait([mark])
                lost = settled.take_done(pending)
                if lost is not None:
                    raise lost
                if len(settled.acked) >= window or not pending:
                    await self._settle(settled)
        finally:  # lost, stopped or cancelled: what was acknowledged is still forgotten
            settled.take_done(pending, everything=True)
            await asyncio.shield(self._settle(settled))

    async def _settle(self, settled: _Settled) -> None:
        """Forget the acknowledged rows, keep the refused ones aside (in order)."""
        acked, refused = settled.acked, settled.refused
        settled.acked, settled.refused = [], []
        if acked:
            await self.outbox.done(acked)
            self._last_publish = self._clock.now()
        if refused:
            await self.outbox.reject(refused)

    def _topic_of(self, row: Row) -> str:
        if row.kind == "fault":
            return self.topics.fault
        return self.topics.action if row.kind == "action" else self.topics.telemetry

    # -- messages from central -----------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = parse_topic(self.topics.root, topic)
        if parsed is None or parsed.gateway_id != self.gateway_id:
            return
        if parsed.channel == "ack":
            self._spawn(self._handle_ack(payload))
        elif parsed.channel == "cmd" and not retained:
            self._spawn(self._handle_command(payload))

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # one bad message must not stop the uplink
                log.error("uplink_message_failed", error=repr(exc))

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_ack(self, payload: bytes) -> None:
        try:
            ack = Ack.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("uplink_bad_ack", error=str(exc)[:200])
            return
        if ack.gateway_id != self.gateway_id:
            return
        mark = ack.up_to
        for s in sorted(ack.seqs):
            if s == mark + 1:
                mark = s
        if await self.outbox.set_central_ack(mark):
            log.info("uplink_central_ack", up_to=mark)

    async def _handle_command(self, payload: bytes) -> None:
        try:
            cmd = Command.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("uplink_bad_command", error=str(exc)[:200])
            return
        now = self._clock.now()
        if cmd.expires_at is not None and cmd.expires_at < now:
            result = self._result(cmd, "expired", "")
        elif self._command_handler is None:
            result = self._result(cmd, "unsupported", "this agent runs no commands yet")
        else:
            try:
                result = await self._command_handler(cmd)
            except Exception as exc:  # a failing command is reported, not fatal
                result = self._result(cmd, "failed", str(exc)[:300])
        link = self._link
        if link is not None:
            with contextlib.suppress(LinkError):
                await link.publish(self.topics.cmd_result(cmd.name), encode(result), 1, False)

    def _result(self, cmd: Command, outcome: str, detail: str) -> CommandResult:
        return CommandResult.model_validate(
            {
                "gateway_id": self.gateway_id,
                "command_id": cmd.command_id,
                "name": cmd.name,
                "outcome": outcome,
                "detail": detail,
                "at": self._clock.now(),
            }
        )

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info(
            "uplink_reconnect_wait",
            attempt=state.attempt_number,
            wait_s=round(wait, 2),
            error=str(exc),
        )


class _Settled:
    """Rows whose PUBACK came (acked, or refused with a failure reason code), not yet stored."""

    def __init__(self) -> None:
        self.acked: list[Row] = []
        self.refused: list[tuple[Row, str]] = []

    def take_done(
        self, pending: deque[tuple[Row, asyncio.Future[int]]], everything: bool = False
    ) -> BaseException | None:
        """Move the finished rows at the head of `pending` here and return the first failure.
        After a failure (a lost connection fails every row in flight), or with `everything`,
        every row of `pending` that got its PUBACK is taken and `pending` is emptied."""
        lost: BaseException | None = None
        while pending and pending[0][1].done():
            row, fut = pending.popleft()
            err = self._note(row, fut)
            lost = lost or err
        if lost is not None or everything:
            for row, fut in pending:
                if fut.done():
                    err = self._note(row, fut)
                    lost = lost or err
            pending.clear()
        return lost

    def _note(self, row: Row, fut: asyncio.Future[int]) -> BaseException | None:
        if fut.cancelled():
            return LinkError("publish cancelled")
        exc = fut.exception()
        if exc is not None:
            return exc
        rc = fut.result()
        if rc > SUCCESS_MAX:
            self.refused.append((row, f"PUBACK reason code {rc}"))
        else:
            self.acked.append(row)
        return None


def _stable(exc: BaseException) -> bool:
    return isinstance(exc, _LinkLostError) and exc.stable


def _qos_of(row: Row) -> int:
    return {"fault": QOS_FAULT, "action": QOS_ACTION}.get(row.kind, QOS_TELEMETRY)


def _flags(status: OutboxStatus) -> tuple[object, ...]:
    return (
        status.full,
        status.faults_over_bound,
        status.faults_refused,
        status.dead_letters,
        status.store_resets,
    )


def _info_fields(info: GatewayInfo) -> dict[str, object]:
    return {
        "agent_version": info.agent_version,
        "config_version": info.config_version,
        "device_count": info.device_count,
        "clock_synced": info.clock_synced,
    }
